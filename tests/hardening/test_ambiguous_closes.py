"""A close whose reply is lost, on a terminal whose reads lag its trades (as real ones do, 300-800 ms).

The simulator's control file ``lose_next_replies`` makes the next ``order_send`` execute and then
answer ``None`` with an IPC error; ``visibility_delay_ms`` keeps positions and history showing the
pre-trade state for that long. The seed's §5 C1: "a None result from order_send ... retrying after
that can duplicate a partial close". Found by the soak (a close recorded 'failed' that the terminal
had executed); reproduced here deterministically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _hardening_util import CrashingMonitor, op_status, query, seed_doc, wait_until, write_command

from fxnb.broker.sim import write_control
from fxnb.soak import invariants as inv
from fxnb.testing import FINAL, MonitorProcess, make_workspace, update_config

BOOK = [{"symbol": "EURUSD", "type": "buy", "volume": 1.0, "price_open": 1.08400}]


@dataclass
class Outcome:
    status: str | None
    outs: list[float]
    result: dict[str, Any]
    close_reason: str | None


def _close_with_lost_reply(directory: Path, lag_ms: float, body: dict[str, Any]) -> Outcome:
    cfg = make_workspace(directory, sim_positions=0, overrides={
        "profit_monitor": {"rules_mode": "off"}, "broker": {"sim": {"positions": {"count": 0, "list": BOOK}}}})
    cfg = update_config(cfg, {"broker": {"sim": {"faults": {"visibility_delay_ms": lag_ms}}}})
    with MonitorProcess(cfg):
        wait_until(lambda: query(cfg, "SELECT 1 FROM position_tracking"), 20, "the first poll")
        (ticket,) = [r["ticket"] for r in query(cfg, "SELECT ticket FROM position_tracking")]
        write_control(cfg.base_dir / cfg.broker.sim["state_file"], lose_next_replies=1)
        write_command(cfg, "cmd_x.json", seed_doc("x", body["type"], ticket=ticket,
                                                  **{k: v for k, v in body.items() if k != "type"}))
        wait_until(lambda: op_status(cfg, "x") in FINAL, 30, "the close")
        # the terminal has caught up and the monitor has polled it since
        wait_until(lambda: inv.check_db_matches_terminal(cfg.paths.database, inv.read_terminal(cfg)).ok, 20,
                   "the database to show what the terminal holds")
    ledger = inv.read_terminal(cfg)
    (result,) = query(cfg, "SELECT * FROM close_results")
    (row,) = query(cfg, "SELECT close_reason FROM position_tracking")
    return Outcome(op_status(cfg, "x"), [d["volume"] for d in ledger.outs()], result, row["close_reason"])


def test_lost_reply_without_lag_is_settled_correctly(tmp_path: Path) -> None:
    """The control: with an up-to-date terminal the adapter's re-read finds the close, sends nothing more."""
    part = _close_with_lost_reply(tmp_path / "partial", 0, {"type": "partial", "volume": 0.1})
    assert part.outs == [0.1] and part.status == "completed"
    assert part.result["closed_volume"] == 0.1 and json.loads(part.result["deals"])
    full = _close_with_lost_reply(tmp_path / "full", 0, {"type": "single"})
    assert full.outs == [1.0] and full.status == "completed" and full.close_reason == "command"


def test_lost_reply_partial_close_is_not_sent_twice_on_a_lagging_terminal(tmp_path: Path) -> None:
    out = _close_with_lost_reply(tmp_path / "ws", 600, {"type": "partial", "volume": 0.1})
    assert out.outs == [0.1], f"the terminal closed {out.outs} for a request of 0.1 lots ({out.result['message']})"


def test_lost_reply_full_close_is_recorded_as_closed_on_a_lagging_terminal(tmp_path: Path) -> None:
    out = _close_with_lost_reply(tmp_path / "ws", 600, {"type": "single"})
    assert out.outs == [1.0]  # it did close, once
    assert (out.status, out.result["status"], out.result["closed_volume"]) == ("completed", "closed", 1.0), \
        out.result["message"]
    assert out.close_reason == "command"


@pytest.mark.parametrize(("body", "closed", "reason"), [
    ({"type": "single"}, 1.0, "command"),  # the position vanishes: settled when it does
    ({"type": "partial", "volume": 0.4}, 0.4, None),  # it stays open, smaller: settled when the volume drops
], ids=["full", "partial"])
def test_lost_reply_then_terminal_gone_is_recorded_once_it_is_back(tmp_path: Path, body: dict[str, Any],
                                                                   closed: float, reason: str | None) -> None:
    cfg = make_workspace(tmp_path / "ws", sim_positions=0, overrides={
        "profit_monitor": {"rules_mode": "off"}, "broker": {"sim": {"positions": {"count": 0, "list": BOOK}}}})
    cfg = update_config(cfg, {"broker": {"sim": {"faults": {"visibility_delay_ms": 600}}}})
    state = cfg.base_dir / cfg.broker.sim["state_file"]
    # the first order_send executes, its reply is lost, and right after it the terminal goes away
    mon = CrashingMonitor(cfg, "fxnb.broker.sim.terminal:SimTerminal.order_send:after:1",
                          env={"FXNB_HOOK_ACTION": "disconnect", "FXNB_HOOK_STATE": str(state)})
    mon.start(wait=True)
    try:
        wait_until(lambda: query(cfg, "SELECT 1 FROM position_tracking"), 20, "the first poll")
        (ticket,) = [r["ticket"] for r in query(cfg, "SELECT ticket FROM position_tracking")]
        write_control(state, lose_next_replies=1)
        write_command(cfg, "cmd_x.json", seed_doc("x", body["type"], ticket=ticket,
                                                  **{k: v for k, v in body.items() if k != "type"}))
        wait_until(lambda: op_status(cfg, "x") in FINAL or mon.get("/healthz")[0] == 503, 30, "the terminal gone")
        write_control(state, disconnected=None)  # the terminal is back
        mon.wait_healthy(40)
        # recorded 'failed' first (the answer never came), 'completed' once the deal history shows it
        wait_until(lambda: op_status(cfg, "x") == "completed", 30, "the close to be settled")
    finally:
        mon.stop()
    ledger = inv.read_terminal(cfg)
    assert [d["volume"] for d in ledger.outs()] == [closed]  # it executed, once
    (result,) = query(cfg, "SELECT * FROM close_results")
    (row,) = query(cfg, "SELECT close_reason FROM position_tracking")
    assert (result["status"], result["closed_volume"]) == ("closed", closed), result["message"]
    assert json.loads(result["deals"]) == [d["ticket"] for d in ledger.outs()]
    assert row["close_reason"] == reason
