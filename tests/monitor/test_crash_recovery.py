"""kill -9 in the middle of a close-all, then restart: nothing closed twice, the command ends final."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from fxnb.broker.sim import SimSettings, create_terminal
from fxnb.config import Config
from fxnb.storage import Reader
from fxnb.testing import MonitorProcess, make_workspace, run_cli, wait_for_operation


def _results_count(cfg: Config, command_id: str) -> int:
    op = Reader(cfg.paths.database).operation(command_id)
    return len(op["results"]) if op else 0


def _terminal_deals(cfg: Config) -> list:
    term = create_terminal(SimSettings.from_mapping(cfg.broker.sim, cfg.base_dir))
    assert term.initialize()
    try:
        deals = term.history_deals_get(0, 2**31 - 1)
        positions = term.positions_get()
        return list(deals), list(positions)
    finally:
        term.shutdown()


def test_kill_9_during_close_all_then_restart(tmp_path: Path) -> None:
    n = 300
    cfg = make_workspace(
        tmp_path / "ws", sim_positions=n,
        overrides={"profit_monitor": {"rules_mode": "off"}, "commands": {"max_age_seconds": 600},
                   "broker": {"sim": {"faults": {"latency_ms": 2.0}}}},
    )
    mon = MonitorProcess(cfg).start()
    out = run_cli("close", "all", cfg=cfg)
    assert out.returncode == 0, out.stderr
    cid = out.stdout.split()[3]
    deadline = time.monotonic() + 60
    while _results_count(cfg, cid) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    mon.kill9()
    recorded_before = _results_count(cfg, cid)
    assert 0 < recorded_before < n, "the kill must land mid-command"

    mon2 = MonitorProcess(cfg).start()
    try:
        op = wait_for_operation(cfg, cid, timeout=120)
    finally:
        mon2.stop()
    assert op["status"] in {"completed", "partially_completed"}
    assert len(op["results"]) == len(op["target_tickets"]) == n
    deals, positions = _terminal_deals(cfg)
    outs = Counter(d.position_id for d in deals if d.entry == 1)
    assert outs and max(outs.values()) == 1, "a position was closed twice"
    assert positions == []
    assert list(cfg.paths.commands.glob("cmd_*.json")) == []
    assert list((cfg.paths.commands / "processing").iterdir()) == []
