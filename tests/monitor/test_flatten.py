"""flatten: pause the rules, close everything, report the book flat, stay flat."""

from __future__ import annotations

import json
from pathlib import Path

from fxnb.storage import Reader
from fxnb.testing import MonitorProcess, make_workspace, run_cli


def test_flatten_pauses_rules_and_leaves_the_book_flat(tmp_path: Path) -> None:
    cfg = make_workspace(tmp_path / "ws", sim_positions=25, overrides={
        "profit_monitor": {"rules_mode": "live", "min_profit_percent": 50.0, "partial_close_threshold": 40.0},
    })
    with MonitorProcess(cfg):
        out = run_cli("flatten", "--wait", cfg=cfg)
        assert out.returncode == 0, out.stdout + out.stderr
        status = json.loads(run_cli("status", "--json", cfg=cfg).stdout)
    assert "completed" in out.stdout
    assert status["monitor"]["rules_paused"] is True
    reader = Reader(cfg.paths.database)
    op = reader.operations(last=1)[0]
    assert op["operation_type"] == "flatten" and op["positions_closed"] == 25
    events = [e for e in reader.events(last=20) if e["kind"] == "flattened"]
    assert events and "book flat" in events[0]["message"]


def test_flatten_with_the_market_closed_reports_what_is_left(tmp_path: Path) -> None:
    from fxnb.broker.sim import write_control

    cfg = make_workspace(tmp_path / "ws", sim_positions=6, overrides={"profit_monitor": {"rules_mode": "off"}})
    write_control(cfg.base_dir / cfg.broker.sim["state_file"], market_closed=["*"])
    with MonitorProcess(cfg):
        out = run_cli("flatten", "--wait", cfg=cfg)
    assert out.returncode == 1
    op = Reader(cfg.paths.database).operations(last=1)[0]
    assert op["status"] == "failed"
    assert "6 position(s) still open" in op["error_message"]
    assert "10018" in out.stdout  # the terminal's retcode reaches the operator
