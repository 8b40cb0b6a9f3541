"""sync_positions keeps the table equal to the terminal, whatever the book does between polls.

The fast path compares each position with a cache of what the table holds and writes only the
rows that differ (a narrow UPDATE when only the quote moved). These tests check the result
against the book itself after every sync: over long random sequences, across a restart (the
cache re-read from the table), with a ticket twice in one book, and after a sync that failed
half way (the cache must not keep what the rolled back transaction did not write).
"""

from __future__ import annotations

import gc
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import T0, FakeClock

from fxnb.errors import StorageError
from fxnb.models import CloseResult, CloseStatus, Position, Side, Snapshot
from fxnb.storage import Store
from fxnb.storage.writer import CloseRecord

# position_tracking column -> the Position attribute it mirrors
_MIRRORED = {
    "ticket": "ticket", "symbol": "symbol", "type": "side", "volume": "volume", "open_price": "price_open",
    "current_price": "price_current", "profit": "profit", "swap": "swap", "sl": "sl", "tp": "tp",
    "magic": "magic", "identifier": "identifier", "comment": "comment",
}  # fmt: skip


def assert_table_is_book(store: Store, book: dict[int, Position], pct: dict[int, float]) -> None:
    """Every position of the book is an open row holding exactly its values (and nothing else is open
    except tickets the caller still has to mark closed, which the tests here always do)."""
    cols = ", ".join(_MIRRORED) + ", profit_percent, status"
    rows = {r[0]: r for r in store.db.execute(f"SELECT {cols} FROM position_tracking WHERE status = 'open'")}
    assert set(rows) == set(book)
    for ticket, pos in book.items():
        got = dict(zip([*_MIRRORED, "profit_percent", "status"], rows[ticket], strict=True))
        want = {col: getattr(pos, attr) for col, attr in _MIRRORED.items()}
        want["type"] = pos.side.value
        assert {k: got[k] for k in want} == want, ticket
        assert got["profit_percent"] == pct.get(ticket)


def _evolve(rng: random.Random, book: dict[int, Position], next_ticket: list[int]) -> dict[int, Position]:
    """The next poll's book: most quotes move, some positions close, open, change SL/volume/side.

    Half the polls are usual ones: the same tickets in the same order, only some quotes moved
    (the store compares those column against column).
    """
    if rng.random() < 0.5:
        return {t: Position(**{**p.__dict__, "profit": round(p.profit + rng.uniform(-5, 5), 2)})
                if rng.random() < 0.6 else p for t, p in book.items()}
    out: dict[int, Position] = {}
    for ticket, p in book.items():
        r = rng.random()
        if r < 0.05:
            continue  # closed on the terminal
        if r < 0.7:  # the quote moved
            p = Position(**{**p.__dict__, "price_current": round(p.price_current + rng.uniform(-1e-3, 1e-3), 5),
                            "profit": round(p.profit + rng.uniform(-5, 5), 2)})
        elif r < 0.75:  # swap charged
            p = Position(**{**p.__dict__, "swap": round(p.swap - 0.37, 2)})
        elif r < 0.8:  # SL/TP moved, or a partial close, or a netting position reversed
            field, value = rng.choice([("sl", 1.05), ("tp", 1.2), ("volume", round(p.volume / 2, 2)),
                                       ("side", Side.SELL if p.side is Side.BUY else Side.BUY),
                                       ("comment", "moved"), ("price_open", 1.0999)])
            p = Position(**{**p.__dict__, field: value, "profit": p.profit + 1.0})
        out[ticket] = p
    for _ in range(rng.randrange(0, 4)):
        t = next_ticket[0]
        next_ticket[0] += 1
        out[t] = Position(ticket=t, symbol=rng.choice(["EURUSD", "XAUUSD"]), side=rng.choice(list(Side)),
                          volume=rng.choice([0.01, 0.1, 1.0]), price_open=1.1, price_current=1.1,
                          profit=0.0, time=int(T0))
    items = list(out.items())
    rng.shuffle(items)  # the terminal's order is not the ticket order
    return dict(items)


def _pct(rng: random.Random, book: dict[int, Position]) -> dict[int, float]:
    # usually every ticket, sometimes some missing (stored as NULL), the same value often repeated
    return {t: round(p.profit / 100.0, 4) for t, p in book.items() if rng.random() > 0.1}


def _sync(store: Store, book: dict[int, Position], at: float, pct: dict[int, float]) -> Any:
    result = store.sync_positions(Snapshot.of(None, book.values(), at),  # type: ignore[arg-type]
                                  server_offset_s=0, profit_percent=pct)
    for ticket in result.disappeared:
        store.mark_closed(ticket, realised_profit=None, reason="external", closed_at=at)
    return result


@pytest.mark.parametrize("seed", range(8))
def test_table_equals_the_book_after_every_sync(db_path: Path, clock: FakeClock, seed: int) -> None:
    rng = random.Random(seed)
    next_ticket = [1000]
    book = _evolve(rng, {}, next_ticket)
    store = Store.open(db_path, clock=clock)
    try:
        for step in range(80):
            if step % 20 == 19:  # a restart: the cache is read back from the table
                store.close()
                store = Store.open(db_path, clock=clock)
            before = {r[0]: r for r in store.db.execute("SELECT * FROM position_tracking")}
            pct = _pct(rng, book)
            result = _sync(store, book, T0 + step, pct)
            assert_table_is_book(store, book, pct)
            after = {r[0]: r for r in store.db.execute("SELECT * FROM position_tracking")}
            rewritten = {t for t in after if t in before and after[t] != before[t]}
            # only what changed was written (mark_closed rewrote the disappeared ones)
            assert rewritten == set(result.changed) | set(result.disappeared)
            assert set(result.appeared) == set(after) - set(before)
            book = _evolve(rng, book, next_ticket)
    finally:
        store.close()


@pytest.mark.parametrize("close", ["mark_closed", "record_closes", "settle_result"])
def test_a_position_closed_between_usual_polls_is_not_taken_for_open(
    store: Store, make_position, make_snapshot, close: str
) -> None:
    """After usual polls the store compares with the last book; a close recorded in between must end
    that, so the ticket is inserted again (reopened) if the terminal still shows it."""
    book = [make_position(t, profit=float(t)) for t in (3, 1, 2)]
    for k in range(3):  # a first sight, then usual polls
        store.sync_positions(make_snapshot(book, T0 + k), server_offset_s=0)
    op = store.create_operation(f"c-{close}", "single", source="operator")
    store.claim_operation(op, target_tickets=[1])
    if close == "mark_closed":
        store.mark_closed(1, realised_profit=1.0, reason="command", closed_at=T0 + 3)
    elif close == "record_closes":
        done = CloseResult(ticket=1, status=CloseStatus.CLOSED, requested_volume=0.1, closed_volume=0.1,
                           price=1.1, profit=1.0, symbol="EURUSD")
        store.record_closes(op, [CloseRecord(done, T0 + 3, close_reason="command")])
    else:  # a lost answer, found executed in the deal history later
        store.record_close(op, CloseResult(ticket=1, status=CloseStatus.FAILED, requested_volume=0.1,
                                           message="reply lost"))
        store.finish_operation(op, "failed", error_message="1: reply lost")
        (rid,) = [r["id"] for r in store.results(op)]
        assert store.settle_result(rid, status="closed", closed_volume=0.1, profit=1.0, price=1.1, deals=[7],
                                   note="settled later", operation_status="completed", close_reason="command")
    assert store.db.execute("SELECT status FROM position_tracking WHERE ticket = 1").fetchone()[0] == "closed"
    again = store.sync_positions(make_snapshot(book, T0 + 4), server_offset_s=0)  # the terminal still shows it
    assert again.appeared == (1,) and again.reopened == (1,)
    assert store.db.execute("SELECT status FROM position_tracking WHERE ticket = 1").fetchone()[0] == "open"
    gone = store.sync_positions(make_snapshot(book[:1], T0 + 5), server_offset_s=0)
    assert gone.disappeared == (1, 2)


def test_a_ticket_twice_in_one_book_keeps_the_last_copy(store: Store, make_position, make_snapshot) -> None:
    store.sync_positions(make_snapshot([make_position(1), make_position(2)]), server_offset_s=0)
    twice = [make_position(1, profit=5.0), make_position(2), make_position(1, profit=7.0, sl=1.05)]
    result = store.sync_positions(make_snapshot(twice, T0 + 1), server_offset_s=0)
    assert result.changed == (1,) and result.unchanged == 2  # three positions seen, one of them changed
    row = store.db.execute("SELECT profit, sl FROM position_tracking WHERE ticket = 1").fetchone()
    assert row == (7.0, 1.05)
    again = store.sync_positions(make_snapshot([make_position(1, profit=7.0, sl=1.05), make_position(2)],
                                               T0 + 2), server_offset_s=0)
    assert again.changed == () and again.unchanged == 2  # the cache holds what the table holds


def test_new_ticket_twice_is_inserted_once(store: Store, make_position, make_snapshot) -> None:
    twice = [make_position(5, profit=1.0), make_position(5, profit=2.0)]
    result = store.sync_positions(make_snapshot(twice), server_offset_s=0)
    assert result.appeared == (5,)
    assert store.db.execute("SELECT profit FROM position_tracking WHERE ticket = 5").fetchone()[0] == 2.0


@pytest.mark.parametrize("failure", ["sqlite", "python"])
def test_a_failed_sync_leaves_no_trace_in_the_cache(store: Store, make_position, make_snapshot,
                                                    failure: str) -> None:
    """A sync that fails half way rolls back; the next one must write the book again, not trust
    the values the failed one had already put in the cache."""
    book = [make_position(t, profit=float(t)) for t in range(1, 6)]
    store.sync_positions(make_snapshot(book), server_offset_s=0)
    moved = [make_position(t, profit=float(t) + 10) for t in range(1, 6)]
    if failure == "sqlite":  # a value SQLite cannot bind: the UPDATE fails after the loop ran
        pct: dict[int, Any] = {5: object()}
        with pytest.raises(StorageError):
            store.sync_positions(make_snapshot(moved, T0 + 1), server_offset_s=0, profit_percent=pct)
    else:  # an unhashable ticket: the loop itself fails after the first positions were compared
        bad = Position(**{**make_position(3).__dict__, "ticket": [3]})  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            store.sync_positions(make_snapshot([*moved[:3], bad], T0 + 1), server_offset_s=0)
    assert store.db.execute("SELECT SUM(profit) FROM position_tracking").fetchone()[0] == 15.0
    result = store.sync_positions(make_snapshot(moved, T0 + 2), server_offset_s=0)
    assert result.changed == (1, 2, 3, 4, 5)
    assert store.db.execute("SELECT SUM(profit) FROM position_tracking").fetchone()[0] == 65.0


@pytest.mark.parametrize("enabled", [True, False])
def test_sync_restores_the_collector_state(store: Store, make_position, make_snapshot, enabled: bool) -> None:
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        store.sync_positions(make_snapshot([make_position(1)]), server_offset_s=0)
        assert gc.isenabled() is enabled
        with pytest.raises(StorageError):
            store.sync_positions(make_snapshot([make_position(1, profit=3.0)], T0 + 1), server_offset_s=0,
                                 profit_percent={1: object()})  # type: ignore[dict-item]
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_snapshot_sums_split_on_profit_plus_swap(store: Store, account, make_position: Callable[..., Position]
                                                 ) -> None:
    positions = [make_position(1, profit=10.0, swap=-12.5), make_position(2, profit=0.0),
                 make_position(3, profit=float("nan")), make_position(4, profit=3.25, swap=0.5),
                 make_position(5, profit=-0.0)]
    row_id = store.append_snapshot(account, iter(positions), T0)  # any iterable, read once
    r = store.db.execute("SELECT total_positions, total_profit, total_loss, net_profit FROM profit_monitoring "
                         "WHERE id = ?", [row_id]).fetchone()
    assert r == (5, 3.75, 2.5, 1.25)


def test_partial_closed_tickets_reads_only_its_index(store: Store, make_position, make_snapshot) -> None:
    """The rules read this every poll: it must not visit every open row (migration 0003)."""
    store.sync_positions(make_snapshot([make_position(t) for t in range(1, 50)]), server_offset_s=0)
    store.mark_partial_closed(7)
    store.mark_partial_closed(9)
    store.mark_closed(9, realised_profit=1.0, reason="external")
    assert store.partial_closed_tickets() == {7}
    # The store asks position_book (migration 0004); the same question through the position_tracking
    # view is answered by the same index alone (the view's LEFT JOIN of the marks is left out).
    for table in ("position_book", "position_tracking"):
        plan = [r[3] for r in store.db.execute(
            f"EXPLAIN QUERY PLAN SELECT ticket FROM {table} WHERE status = 'open' AND partial_closed_at IS NOT NULL")]
        assert len(plan) == 1 and "COVERING INDEX idx_position_book_partial_closed" in plan[0], (table, plan)
