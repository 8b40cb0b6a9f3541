"""Profit rules in the running monitor: live, dry run, and the partial close that happens once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fxnb.config import Config
from fxnb.storage import Reader
from fxnb.testing import MonitorProcess, make_workspace, run_cli, wait_for_operation

# Frozen EURUSD bid is 1.08500; balance 10,000 USD.
BOOK = [
    {"symbol": "EURUSD", "type": "buy", "volume": 1.0, "price_open": 1.08200},   # +300 = 3.0 %
    {"symbol": "EURUSD", "type": "buy", "volume": 0.5, "price_open": 1.07500},   # +500 = 5.0 %
    {"symbol": "EURUSD", "type": "buy", "volume": 0.1, "price_open": 1.08600},   # -10
]


def _ws(tmp_path: Path, mode: str) -> Config:
    return make_workspace(tmp_path / "ws", sim_positions=0, overrides={
        "profit_monitor": {"rules_mode": mode, "min_profit_percent": 4.0, "partial_close_threshold": 2.0,
                           "partial_close_percent": 50},
        "broker": {"sim": {"positions": {"count": 0, "list": BOOK}}},
    })


def _rule_ops(cfg: Config, n: int, timeout: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    ops: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        ops = [o for o in Reader(cfg.paths.database).operations(last=50) if o["source"] == "rule"]
        if len(ops) >= n and all(o["status"] not in ("pending", "processing") for o in ops):
            return ops
        time.sleep(0.05)
    raise TimeoutError(f"expected {n} rule operations, got {ops}")


def test_live_rules_close_and_partial_once_across_restart(tmp_path: Path) -> None:
    cfg = _ws(tmp_path, "live")
    with MonitorProcess(cfg):
        ops = _rule_ops(cfg, 2)
    by_rule = {o["operation_type"]: wait_for_operation(cfg, o["command_id"]) for o in ops}
    (full,) = by_rule["single"]["results"]
    assert full["status"] == "closed" and abs(full["profit"] - 500.0) < 1e-6
    (part,) = by_rule["partial"]["results"]
    assert part["status"] == "closed" and part["closed_volume"] == 0.5
    assert abs(part["profit"] - 150.0) < 1e-6

    with MonitorProcess(cfg) as mon:  # restart: the partial close is remembered in the database
        mon.wait_healthy()
        first_polls = Reader(cfg.paths.database).heartbeat()["last_poll_at"]
        deadline = time.monotonic() + 10
        while Reader(cfg.paths.database).heartbeat()["last_poll_at"] == first_polls and time.monotonic() < deadline:
            time.sleep(0.05)
    ops = [o for o in Reader(cfg.paths.database).operations(last=50) if o["source"] == "rule"]
    assert len(ops) == 2
    left = {p["ticket"]: p for p in Reader(cfg.paths.database).open_positions()}
    assert sorted(round(p["volume"], 2) for p in left.values()) == [0.1, 0.5]


def test_dry_run_records_but_sends_nothing(tmp_path: Path) -> None:
    cfg = _ws(tmp_path, "dry_run")
    with MonitorProcess(cfg):
        ops = _rule_ops(cfg, 2)
        st = run_cli("status", "--json", cfg=cfg)
    assert all(o["status"] == "completed" for o in ops)
    results = [r for o in ops for r in Reader(cfg.paths.database).results(o["id"])]
    assert {r["status"] for r in results} == {"dry_run"}
    assert '"volume": 1.0' in st.stdout and '"volume": 0.5' in st.stdout  # nothing closed
    ops_again = [o for o in Reader(cfg.paths.database).operations(last=50) if o["source"] == "rule"]
    assert len(ops_again) == 2  # recorded once, not every poll


def test_paused_rules_do_nothing_until_resumed(tmp_path: Path) -> None:
    cfg = _ws(tmp_path, "off")
    out = run_cli("rules", "pause", cfg=cfg)
    assert out.returncode == 0
    from fxnb.testing import update_config

    cfg = update_config(cfg, {"profit_monitor": {"rules_mode": "live"}})
    with MonitorProcess(cfg):
        cid = out.stdout.split()[3]
        assert wait_for_operation(cfg, cid)["status"] == "completed"
        assert Reader(cfg.paths.database).heartbeat()["rules_paused"] is True
        assert [o for o in Reader(cfg.paths.database).operations() if o["source"] == "rule"] == []
        res = run_cli("rules", "resume", "--wait", cfg=cfg)
        assert res.returncode == 0, res.stdout + res.stderr
        assert len(_rule_ops(cfg, 2)) == 2
