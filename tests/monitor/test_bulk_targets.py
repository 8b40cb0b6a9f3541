"""A bulk close closes what the operator saw: never a position opened after the command was written.

A command can wait in the queue (terminal away, monitor restarting); the book it finally runs on may
hold positions nobody saw when "close all" was clicked. In-process engine on the simulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fxnb.bench.common import OpenEngine, drop_command, open_engine
from fxnb.config import Config
from fxnb.testing import make_workspace


@pytest.fixture
def oe(tmp_path: Path) -> Iterator[OpenEngine]:
    cfg: Config = make_workspace(tmp_path / "ws", sim_positions=5, sim_frozen=True,
                                 overrides={"profit_monitor": {"rules_mode": "off"}})
    oe = open_engine(cfg)
    assert oe.engine.poll()
    yield oe
    oe.close()


def _open(oe: OpenEngine, symbol: str = "EURUSD") -> int:
    t = oe.terminal
    res = t.order_send({"action": t.TRADE_ACTION_DEAL, "symbol": symbol, "volume": 0.1,
                        "type": t.ORDER_TYPE_BUY, "type_filling": t.ORDER_FILLING_IOC})
    assert res.retcode == t.TRADE_RETCODE_DONE, res
    return int(res.order)


@pytest.mark.parametrize("kind", ["all", "profit", "loss"])
def test_a_position_opened_after_the_click_is_left_open(oe: OpenEngine, kind: str) -> None:
    seen = {p.ticket for p in oe.terminal.positions_get()}
    clicked = datetime.now(UTC) - timedelta(seconds=3)  # written 3 s ago, run only now
    drop_command(oe.engine.cfg.paths.commands, "late-1", {"type": kind, "timestamp": clicked.isoformat()})
    newer = _open(oe)
    assert oe.engine.process_pending() == 1
    op = oe.engine.store.get_operation_by_command("late-1")
    assert op is not None and op["status"] in ("completed", "failed"), op
    assert newer not in op["target_tickets"] and set(op["target_tickets"]) <= seen
    if kind == "all":
        assert set(op["target_tickets"]) == seen
    assert [p.ticket for p in oe.terminal.positions_get(ticket=newer)] == [newer]  # untouched


def test_positions_open_at_the_click_are_all_closed(oe: OpenEngine) -> None:
    seen = {p.ticket for p in oe.terminal.positions_get()}
    drop_command(oe.engine.cfg.paths.commands, "now-1", {"type": "all"})
    assert oe.engine.process_pending() == 1
    op = oe.engine.store.get_operation_by_command("now-1")
    assert op is not None and op["status"] == "completed" and set(op["target_tickets"]) == seen
    assert oe.terminal.positions_get() == ()
