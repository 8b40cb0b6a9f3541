"""The notebook API: DataFrames from the database, commands through files, waiting for their outcome."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pandas as pd
import pytest
from console_helpers import FakeClock, command_files

import fxnb.api as fx
from fxnb.config import Config
from fxnb.errors import CommandError
from fxnb.models import CloseResult, CloseStatus
from fxnb.storage import Store
from fxnb.testing import MonitorProcess, make_workspace


def test_frames_from_the_database(cfg: Config, store: Store, mixed_book, monkeypatch) -> None:
    monkeypatch.setenv("FXNB_CONFIG", str(cfg.path))
    pos = fx.positions()
    assert sorted(pos.index) == [1, 2, 3, 4, 5] and pos.loc[4, "net"] == -75.25
    floating = fx.floating_by_symbol()
    assert floating.loc["EURUSD", "net"] == 77.0 and floating.loc["GBPUSD", "positions"] == 2
    hist = fx.account_history()
    assert isinstance(hist.index, pd.DatetimeIndex) and hist["equity"].iloc[-1] == 10_050.0
    assert fx.account()["currency"] == "EUR"
    assert sorted(fx.preview("loss", symbol="EURUSD").index) == [2, 5]
    assert sorted(fx.preview("profit").index) == [1, 3]


def test_operations_and_results_frames(cfg: Config, store: Store, mixed_book, clock: FakeClock) -> None:
    op = store.create_operation("c-1", "loss", source="operator", requested_by="nb")
    store.claim_operation(op, target_tickets=[2])
    store.add_result(op, CloseResult(ticket=2, status=CloseStatus.CLOSED, requested_volume=1, closed_volume=1,
                                     profit=-41.0, retcode=10009, message="done", symbol="EURUSD"))
    store.finish_operation(op, "completed")
    store.mark_closed(2, realised_profit=-41.0, reason="command", closed_at=clock())
    ops = fx.operations(config=cfg)
    assert ops.iloc[0]["command_id"] == "c-1" and ops.iloc[0]["status"] == "completed"
    res = fx.results("c-1", config=cfg)
    assert res[["ticket", "status", "retcode", "profit"]].values.tolist() == [[2, "closed", 10009, -41.0]]
    assert fx.results(config=cfg)["command_id"].tolist() == ["c-1"]
    assert fx.realised_by_symbol(config=cfg).loc["EURUSD", "profit"] == -41.0
    assert fx.realised_by_day(config=cfg)["profit"].sum() == -41.0
    assert fx.operation("nope", config=cfg) is None


def test_commands_are_files(cfg: Config, store: Store) -> None:
    fx.close_ticket(7, config=cfg)
    fx.close_ticket(7, percent=50, config=cfg)
    fx.close_losing(symbol="EURUSD", config=cfg)
    fx.close_profitable(side="buy", config=cfg)
    fx.close_all(config=cfg)
    fx.pause_rules(config=cfg)
    fx.resume_rules(config=cfg)
    fx.flatten(config=cfg)
    got = [(f["type"], f.get("ticket"), f.get("percent"), f.get("symbol"), f.get("side"), f["requested_by"])
           for f in command_files(cfg)]
    assert got == [("single", 7, None, None, None, "notebook"), ("partial", 7, 50.0, None, None, "notebook"),
                   ("loss", None, None, "EURUSD", None, "notebook"), ("profit", None, None, None, "buy", "notebook"),
                   ("all", None, None, None, None, "notebook"), ("pause_rules", None, None, None, None, "notebook"),
                   ("resume_rules", None, None, None, None, "notebook"),
                   ("flatten", None, None, None, None, "notebook")]
    with pytest.raises(CommandError):
        fx.close_ticket(7, volume=0.1, percent=10, config=cfg)


def test_guard_status_state_paused_by_and_events(cfg: Config, store: Store) -> None:
    empty = fx.guard_status(config=cfg)  # the monitor has not evaluated any guard yet
    assert empty.empty and list(empty.columns) == ["enabled", "state", "value", "limit", "distance",
                                                   "distance_text", "last_action"]
    assert fx.guard_state(config=cfg) == {} and fx.rules_paused_by(config=cfg) is None
    store.set_rule_state("guard_status", [
        {"guard": "drawdown", "enabled": True, "state": "warning", "value": 8.5, "limit": 10.0, "distance": 1.5,
         "distance_text": "1.50 percentage points to go", "last_action": None},
        {"guard": "spread", "enabled": False, "state": "off", "value": None, "limit": None, "distance": None,
         "distance_text": "", "last_action": None}])
    store.set_rule_state("guards", {"locked": True, "lock_kind": "until_resume", "lock_reason": "drawdown"})
    store.set_rule_state("rules_paused_by", "guard:drawdown")
    store.event("info", "connected", "terminal connected")
    store.event("info", "flattened", "flatten by notebook: book flat", {"closed": 3, "status": "completed"})
    gs = fx.guard_status(config=cfg)
    assert gs.loc["drawdown", "state"] == "warning" and gs.loc["drawdown", "distance"] == 1.5
    assert gs["enabled"].tolist() == [True, False] and gs.loc["spread", "value"] != gs.loc["spread", "value"]  # NaN
    assert fx.guard_state(config=cfg)["lock_kind"] == "until_resume"
    assert fx.rules_paused_by(config=cfg) == "guard:drawdown"
    flat = fx.events(kind="flattened", config=cfg)
    assert flat["message"].tolist() == ["flatten by notebook: book flat"] and flat.iloc[0]["data"]["closed"] == 3


def test_wait_times_out_with_the_monitors_state(cfg: Config, store: Store) -> None:
    cmd = fx.close_all(config=cfg)
    with pytest.raises(fx.CommandTimeout, match="not recorded by the monitor yet; monitor: no heartbeat"):
        fx.wait(cmd, timeout=0.3, config=cfg)
    with pytest.raises(fx.CommandTimeout):
        asyncio.run(fx.result(cmd.id, timeout=0.2, config=cfg))


@pytest.fixture(scope="module")
def live_ws(tmp_path_factory: pytest.TempPathFactory):
    cfg = make_workspace(tmp_path_factory.mktemp("api") / "ws", sim_positions=8, sim_frozen=True,
                         overrides={"profit_monitor": {"rules_mode": "off"}})
    with MonitorProcess(cfg) as mon:
        yield cfg, mon


def test_result_and_wait_against_the_real_monitor(live_ws) -> None:
    cfg, _mon = live_ws
    book = fx.positions(config=cfg)
    losers = sorted(book.index[book["net"] < 0])
    ticket = int(book.index[0])

    async def close_one() -> dict:
        cmd = fx.close_ticket(ticket, config=cfg)
        return await fx.result(cmd, timeout=20, config=cfg)

    t0 = time.perf_counter()
    op = asyncio.run(close_one())
    assert op["status"] == "completed" and [r["ticket"] for r in op["results"]] == [ticket]
    assert op["results"][0]["retcode"] == 10009
    print(f"\nclose_ticket -> completed in {time.perf_counter() - t0:.3f} s")
    op = fx.wait(fx.close_losing(config=cfg), timeout=20, config=cfg)
    assert op["status"] == "completed" and sorted(op["target_tickets"]) == [t for t in losers if t != ticket]
    assert (fx.positions(config=cfg)["net"] >= 0).all()
    failed = fx.wait(fx.close_ticket(999_999_999, config=cfg), timeout=20, config=cfg)
    assert failed["status"] == "failed" and "not open" in failed["error_message"]
    assert not fx.health(config=cfg)["stale"]


def test_malformed_file_is_rejected_with_a_reason(live_ws) -> None:
    cfg, _mon = live_ws
    path = Path(cfg.paths.commands) / "cmd_bad-typo-1.json"
    path.write_text(json.dumps({"id": "bad-typo-1", "type": "single", "tiket": 5,
                                "timestamp": pd.Timestamp.now(tz="UTC").isoformat()}))
    op = fx.wait("bad-typo-1", timeout=20, config=cfg)
    assert op["status"] == "rejected" and "tiket" in op["error_message"]
