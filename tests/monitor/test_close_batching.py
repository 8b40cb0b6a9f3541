"""Engine._close_tickets: results written in ONE transaction with their closed mark, bulk closes in batches.

In-process engines built as the monitor builds them, on the simulator. What matters: every
ticket's result ends up recorded, in ticket order, with its position marked closed; batches stay
small; anything reconciliation could not recover from the terminal is written before the next
ticket is touched; and a batch lost to a crash is recovered on restart without closing anything twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fxnb.bench.common import OpenEngine, drop_command, open_engine
from fxnb.broker.sim import write_control
from fxnb.config import Config
from fxnb.storage import Store, writer
from fxnb.testing import make_workspace

N = 130
CLOSE_BATCH_TICKETS = 50  # several batches out of N tickets (the monitor's own size is larger)


@pytest.fixture(autouse=True)
def _batch_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer, "CLOSE_BATCH_TICKETS", CLOSE_BATCH_TICKETS)


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    return make_workspace(tmp_path / "ws", sim_positions=N, sim_frozen=True,
                          overrides={"profit_monitor": {"rules_mode": "off"}, "commands": {"max_age_seconds": 600}})


class Spy:
    """Records the size of every ``record_closes`` call and what ``broker.close`` was called for, in order."""

    def __init__(self, oe: OpenEngine, *, die_on_batch: int | None = None) -> None:
        self.events: list[tuple[str, Any]] = []
        store, broker = oe.engine.store, oe.engine.broker
        record_closes, close = store.record_closes, broker.close
        self.writes = 0

        def recording(op_id: int, records: Any) -> int:
            records = list(records)
            self.writes += 1
            if die_on_batch is not None and self.writes >= die_on_batch:
                raise Killed  # the process is gone: this write and every later one never happen
            self.events.append(("record", [r.result.ticket for r in records]))
            return record_closes(op_id, records)

        def closing(ticket: int, **kw: Any) -> Any:
            self.events.append(("close", ticket))
            return close(ticket, **kw)

        store.record_closes = recording  # type: ignore[method-assign]
        broker.close = closing  # type: ignore[method-assign]

    def recorded(self) -> list[list[int]]:
        return [t for kind, t in self.events if kind == "record"]


class Killed(BaseException):
    """Stands for kill -9: not an Exception, so nothing in the monitor handles it."""


@pytest.fixture
def engine(cfg: Config) -> Iterator[OpenEngine]:
    oe = open_engine(cfg)
    assert oe.engine.poll()
    yield oe
    oe.close()


def _all(oe: OpenEngine, cfg: Config, cmd_id: str = "all-1") -> dict[str, Any]:
    drop_command(cfg.paths.commands, cmd_id, {"type": "all"})
    assert oe.engine.process_pending() == 1
    op = oe.engine.store.get_operation_by_command(cmd_id)
    assert op is not None
    return op


def _outs_per_position(oe: OpenEngine) -> Counter[int]:
    deals = oe.terminal.history_deals_get(0, 2**31 - 1)
    return Counter(d.position_id for d in deals if d.entry == 1)


def test_close_all_records_every_ticket_in_small_batches(engine: OpenEngine, cfg: Config) -> None:
    spy = Spy(engine)
    op = _all(engine, cfg)
    assert op["status"] == "completed" and op["positions_closed"] == N
    batches = spy.recorded()
    assert sum(len(b) for b in batches) == N and max(len(b) for b in batches) <= CLOSE_BATCH_TICKETS
    assert len(batches) >= -(-N // CLOSE_BATCH_TICKETS)
    # a batch holds only tickets already closed, and is written before the next ticket is touched
    closed_so_far: list[int] = []
    for kind, what in spy.events:
        if kind == "close":
            closed_so_far.append(what)
        else:
            assert closed_so_far[-len(what):] == what
    store = engine.engine.store
    results = store.results(op["id"])
    assert [r["ticket"] for r in results] == op["target_tickets"]  # in ticket order
    for r in results:
        pos = store.position(r["ticket"])
        assert pos is not None and (pos["status"], pos["close_reason"]) == ("closed", "command")
        assert pos["realised_profit"] == r["profit"] and pos["closed_at"] == r["finished_at"]
    assert not engine.terminal.positions_get()
    assert set(_outs_per_position(engine).values()) == {1}


def test_results_that_reconciliation_cannot_recover_are_written_at_once(engine: OpenEngine, cfg: Config) -> None:
    sym = Counter(p.symbol for p in engine.terminal.positions_get()).most_common(1)[0][0]
    write_control(cfg.base_dir / cfg.broker.sim["state_file"], trade_disabled=[sym])
    spy = Spy(engine)
    op = _all(engine, cfg)
    assert op["status"] == "partially_completed"
    store = engine.engine.store
    results = store.results(op["id"])
    assert [r["ticket"] for r in results] == op["target_tickets"]  # still in ticket order
    failed = {r["ticket"] for r in results if r["status"] == "failed"}
    assert failed and all(r["symbol"] == sym for r in results if r["ticket"] in failed)
    events = spy.events
    for i, (kind, ticket) in enumerate(events):
        if kind == "close" and ticket in failed:  # written (after the batch before it) before the next close
            following = events[i + 1:i + 3]
            assert ("record", [ticket]) in following, following
            assert all(k == "record" for k, _ in following[:following.index(("record", [ticket])) + 1])
    assert all(store.position(t)["status"] == "open" for t in failed)


def test_a_batch_lost_to_a_crash_is_recovered_on_restart(cfg: Config) -> None:
    oe = open_engine(cfg)
    assert oe.engine.poll()
    spy = Spy(oe, die_on_batch=2)  # dies writing the second batch: tickets closed, not recorded
    drop_command(cfg.paths.commands, "all-1", {"type": "all"})
    with pytest.raises(Killed):
        oe.engine.process_pending()
    sent = [t for kind, t in spy.events if kind == "close"]
    (first,) = spy.recorded()
    oe.close()  # what SQLite committed stays; nothing else is written
    with Store.open(cfg.paths.database) as db:
        op = db.get_operation_by_command("all-1")
        assert op is not None and op["status"] == "processing"
        assert [r["ticket"] for r in db.results(op["id"])] == first
        lost = [t for t in sent if t not in first]
        assert lost and all(db.position(t)["status"] == "open" for t in lost)  # closed, but not recorded

    again = open_engine(cfg)  # restart: reconcile runs on connect
    try:
        store = again.engine.store
        op = store.get_operation_by_command("all-1")
        assert op is not None and op["status"] == "completed"
        results = {r["ticket"]: r for r in store.results(op["id"])}
        assert set(results) == set(op["target_tickets"]) and len(op["target_tickets"]) == N
        for t in lost:  # found gone on the terminal: recorded as closed (by fxnb), not sent again
            assert results[t]["status"] == "closed" and "reconciliation" in results[t]["message"]
            pos = store.position(t)
            assert pos is not None and (pos["status"], pos["close_reason"]) == ("closed", "command")
        assert not again.terminal.positions_get()
        outs = _outs_per_position(again)
        assert len(outs) == N and set(outs.values()) == {1}, "a position was closed twice"
    finally:
        again.close()
