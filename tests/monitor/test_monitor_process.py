"""The real ``fxnb monitor`` process, driven only through files, the CLI, HTTP and the database."""

from __future__ import annotations

import json
import os
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from fxnb.broker.sim import write_control
from fxnb.config import Config
from fxnb.storage import Reader
from fxnb.testing import MonitorProcess, make_workspace, run_cli, wait_for_operation

RULES_OFF = {"profit_monitor": {"rules_mode": "off"}}


def seed_file(cfg: Config, cmd_id: int | str, body: dict[str, Any], *, atomic: bool = True) -> Path:
    """A command written the way the seed's writers (or a person) did: plain JSON, naive local timestamp."""
    doc = {"id": cmd_id, "timestamp": datetime.now().isoformat(timespec="seconds"), "status": "pending", **body}
    path = cfg.paths.commands / f"cmd_{cmd_id}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path) if atomic else None
    return path


def open_positions(cfg: Config) -> list[dict[str, Any]]:
    return Reader(cfg.paths.database).open_positions()


@pytest.fixture
def ws(tmp_path: Path) -> Config:
    return make_workspace(tmp_path / "ws", sim_positions=16, overrides=RULES_OFF)


@pytest.fixture
def monitor(ws: Config) -> MonitorProcess:
    m = MonitorProcess(ws).start()
    yield m
    m.stop()


def _wait_polled(cfg: Config, n: int) -> list[dict[str, Any]]:
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rows = open_positions(cfg)
        if len(rows) >= n:
            return rows
        time.sleep(0.05)
    raise TimeoutError("positions never reached the database")


def test_seed_command_types(ws: Config, monitor: MonitorProcess) -> None:
    rows = _wait_polled(ws, 16)
    winners = {r["ticket"] for r in rows if r["profit"] + r["swap"] > 0}
    losers = {r["ticket"] for r in rows if r["profit"] + r["swap"] < 0}
    assert winners and losers

    seed_file(ws, 101, {"type": "loss", "ticket": None})
    op = wait_for_operation(ws, "101")
    assert op["status"] == "completed"
    assert {r["ticket"] for r in op["results"]} == losers
    assert all(r["status"] == "closed" and r["retcode"] == 10009 for r in op["results"])

    one = sorted(winners)[0]
    seed_file(ws, 102, {"type": "single", "ticket": one})
    op = wait_for_operation(ws, "102")
    assert op["status"] == "completed" and [r["ticket"] for r in op["results"]] == [one]

    seed_file(ws, 103, {"type": "profit", "ticket": None})
    op = wait_for_operation(ws, "103")
    assert {r["ticket"] for r in op["results"]} == winners - {one}

    seed_file(ws, 104, {"type": "all"})
    op = wait_for_operation(ws, "104")
    assert op["status"] == "completed"
    st = json.loads(run_cli("status", "--json", cfg=ws).stdout)
    assert st["positions"] == [] or all(p["ticket"] not in winners | losers for p in st["positions"])
    assert list(ws.paths.commands.glob("cmd_*.json")) == []  # processed files are removed
    assert list((ws.paths.commands / "errors").iterdir()) == []


def test_partial_and_filters(ws: Config, monitor: MonitorProcess) -> None:
    rows = _wait_polled(ws, 16)
    big = max(rows, key=lambda r: r["volume"])
    seed_file(ws, "p1", {"type": "partial", "ticket": big["ticket"], "percent": 50})
    op = wait_for_operation(ws, "p1")
    (res,) = op["results"]
    assert op["status"] == "completed", op
    assert 0 < res["closed_volume"] <= big["volume"] / 2 + 1e-9

    symbol = rows[0]["symbol"]
    expected = {r["ticket"] for r in rows if r["symbol"] == symbol and r["type"] == "buy"}
    out = run_cli("close", "all", "--symbol", symbol, "--side", "buy", "--wait", cfg=ws)
    assert out.returncode == 0, out.stderr + out.stdout
    cid = out.stdout.split()[3]
    op = wait_for_operation(ws, cid)
    assert {r["ticket"] for r in op["results"]} == expected
    left = {r["ticket"] for r in open_positions(ws)}
    assert not (left & expected)


def test_malformed_files_are_rejected_and_the_monitor_stays_up(ws: Config, monitor: MonitorProcess) -> None:
    _wait_polled(ws, 16)
    bad = {
        "cmd_b1.json": b"{not json",
        "cmd_b2.json": json.dumps({"id": "b2", "type": "explode", "timestamp": "2026-01-01T00:00:00"}).encode(),
        "cmd_b3.json": json.dumps({"id": "b3", "type": "single", "timestamp": datetime.now().isoformat()}).encode(),
        "cmd_b4.json": json.dumps({"id": "b4", "type": "single", "ticket": "abc",
                                   "timestamp": datetime.now().isoformat()}).encode(),
        "cmd_b5.json": json.dumps({"id": "b5", "type": "single", "ticket": 10**30,
                                   "timestamp": datetime.now().isoformat()}).encode(),
        "cmd_b6.json": b"[" * 200_000,
        "cmd_b7.json": json.dumps({"id": "b7", "type": "all", "tiket": 5,
                                   "timestamp": datetime.now().isoformat()}).encode(),
    }
    for name, data in bad.items():
        (ws.paths.commands / name).write_bytes(data)
    errors = ws.paths.commands / "errors"
    import time

    deadline = time.monotonic() + 30  # bad JSON waits out a short grace period first
    while time.monotonic() < deadline and len(list(errors.glob("*.error.json"))) < len(bad):
        time.sleep(0.05)
    reasons = {p.name.removesuffix(".error.json"): json.loads(p.read_text())["reason"]
               for p in errors.glob("*.error.json")}
    assert set(reasons) == set(bad), reasons
    assert "ticket" in reasons["cmd_b3.json"] and "ticket" in reasons["cmd_b4.json"]
    assert "tiket" in reasons["cmd_b7.json"]
    ops = Reader(ws.paths.database).operations(last=50)
    assert sum(o["status"] == "rejected" for o in ops) == len(bad)
    assert Reader(ws.paths.database).operation("b2")["status"] == "rejected"  # found by the id in its name
    assert len(open_positions(ws)) == 16  # nothing closed
    assert monitor.get("/healthz")[0] == 200


def test_duplicate_id_runs_once(ws: Config, monitor: MonitorProcess) -> None:
    rows = _wait_polled(ws, 16)
    first, second = sorted(r["ticket"] for r in rows)[:2]
    seed_file(ws, 7, {"type": "single", "ticket": first})
    assert wait_for_operation(ws, "7")["status"] == "completed"
    seed_file(ws, 7, {"type": "single", "ticket": second})
    import time

    deadline = time.monotonic() + 20
    err = ws.paths.commands / "errors" / "cmd_7.json.error.json"
    while time.monotonic() < deadline and not err.exists():
        time.sleep(0.05)
    assert "duplicate" in json.loads(err.read_text())["reason"]
    assert second in {r["ticket"] for r in open_positions(ws)}


def test_expired_command_is_not_run(ws: Config, monitor: MonitorProcess) -> None:
    _wait_polled(ws, 16)
    old = datetime.fromtimestamp(datetime.now().timestamp() - 600).isoformat(timespec="seconds")
    path = ws.paths.commands / "cmd_900.json"
    path.write_text(json.dumps({"id": 900, "type": "all", "ticket": None, "timestamp": old, "status": "pending"}))
    op = wait_for_operation(ws, "900")
    assert op["status"] == "expired"
    assert op["results"] == []
    assert len(open_positions(ws)) == 16


def test_second_instance_is_refused(ws: Config, monitor: MonitorProcess) -> None:
    out = run_cli("monitor", cfg=ws, timeout=30)
    assert out.returncode != 0
    assert "already running" in (out.stderr + out.stdout)
    assert "Traceback" not in out.stderr


def test_healthz_follows_the_terminal_connection(ws: Config, monitor: MonitorProcess) -> None:
    state_file = ws.base_dir / ws.broker.sim["state_file"]
    write_control(state_file, disconnected=True)
    body = monitor.wait_health(503, timeout=20)
    assert not body["connected"]
    status, st = monitor.get("/status")
    assert status == 200 and st["connected"] is False
    hb = Reader(ws.paths.database).heartbeat()
    assert hb["connected"] is False
    write_control(state_file, disconnected=False)
    monitor.wait_healthy(timeout=40)


def test_commands_wait_while_disconnected_then_expire(ws: Config, monitor: MonitorProcess) -> None:
    _wait_polled(ws, 16)
    state_file = ws.base_dir / ws.broker.sim["state_file"]
    write_control(state_file, disconnected=True)
    monitor.wait_health(503, timeout=20)
    out = run_cli("close", "all", "--expires-in", "2", "--wait", "--timeout", "30", cfg=ws)
    assert out.returncode == 1
    assert "expired" in out.stdout
    write_control(state_file, disconnected=False)
    monitor.wait_healthy(timeout=40)
    assert len(open_positions(ws)) == 16


def test_sigterm_exits_cleanly(ws: Config) -> None:
    m = MonitorProcess(ws).start()
    assert m.stop(signal.SIGTERM) == 0
    hb = Reader(ws.paths.database).heartbeat()
    assert hb["state"] == "stopped"
    out = json.loads(run_cli("status", "--json", cfg=ws).stdout)
    assert out["monitor"]["stale"] is True


def test_bad_config_is_one_clear_line(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"profit_monitor": {"check_interval": "fast"}}))
    out = run_cli("monitor", "--config", str(cfg))
    assert out.returncode != 0
    assert "profit_monitor.check_interval: expected a number" in out.stderr
    assert "Traceback" not in out.stderr


def test_partial_of_everything_is_recorded_as_ours(ws: Config, monitor: MonitorProcess) -> None:
    rows = _wait_polled(ws, 16)
    t = rows[0]["ticket"]
    seed_file(ws, "all-of-it", {"type": "partial", "ticket": t, "percent": 100})
    op = wait_for_operation(ws, "all-of-it")
    assert op["status"] == "completed"
    import time

    deadline = time.monotonic() + 10
    closed: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not closed:
        closed = [r for r in Reader(ws.paths.database).closed_positions() if r["ticket"] == t]
        time.sleep(0.05)
    assert closed and closed[0]["close_reason"] == "command"  # not mistaken for a close outside fxnb
