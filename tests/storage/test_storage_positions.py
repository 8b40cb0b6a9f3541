"""position_tracking: sync, partial volume, disappearance, closing, partial-close memory."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import T0

from fxnb.models import Side
from fxnb.storage import Store, SyncResult


def row(store: Store, ticket: int) -> dict:
    """The ticket's row as users read it (the position_tracking view, schema 0004)."""
    (got,) = store.db.query("SELECT * FROM position_tracking WHERE ticket = ?", [ticket])
    return got


def test_first_sync_inserts_every_position(store: Store, make_position, make_snapshot) -> None:
    positions = [make_position(1), make_position(2, symbol="XAUUSD", side=Side.SELL, volume=0.05)]
    result = store.sync_positions(make_snapshot(positions), server_offset_s=7200, profit_percent={1: 0.25})
    assert result == SyncResult(appeared=(1, 2), changed=(), disappeared=(), reopened=(), unchanged=0)
    r1, r2 = row(store, 1), row(store, 2)
    assert r1["status"] == "open" and r1["type"] == "buy" and r1["profit_percent"] == 0.25
    assert r2["type"] == "sell" and r2["symbol"] == "XAUUSD" and r2["profit_percent"] is None
    assert r2["volume"] == r2["original_volume"] == 0.05
    assert r1["first_seen"] == r1["last_update"] == "2026-01-01T00:00:00.000Z"


def test_open_time_is_converted_from_server_time(store: Store, make_position, make_snapshot) -> None:
    server_time = int(T0)  # 00:00 server time, server at UTC+2
    store.sync_positions(make_snapshot([make_position(1, time=server_time)]), server_offset_s=7200)
    r = row(store, 1)
    assert r["open_time_server"] == server_time
    assert r["open_time"] == "2025-12-31T22:00:00.000Z"


def test_open_time_is_fixed_at_first_sight(store: Store, make_position, make_snapshot) -> None:
    """A DST change of the server offset must not rewrite when existing positions opened."""
    store.sync_positions(make_snapshot([make_position(1, time=int(T0))]), server_offset_s=7200)
    store.sync_positions(
        make_snapshot([make_position(1, time=int(T0), profit=5.0)], T0 + 1), server_offset_s=10800
    )
    assert row(store, 1)["open_time"] == "2025-12-31T22:00:00.000Z"


def test_unchanged_positions_are_not_rewritten(store: Store, make_position, make_snapshot) -> None:
    positions = [make_position(1), make_position(2)]
    store.sync_positions(make_snapshot(positions), server_offset_s=0)
    result = store.sync_positions(make_snapshot(positions, T0 + 5), server_offset_s=0)
    assert result.appeared == result.changed == result.disappeared == ()
    assert result.unchanged == 2
    assert row(store, 1)["last_update"] == "2026-01-01T00:00:00.000Z"


def test_changed_values_are_updated(store: Store, make_position, make_snapshot) -> None:
    store.sync_positions(make_snapshot([make_position(1), make_position(2)]), server_offset_s=0)
    moved = [make_position(1, price_current=1.2, profit=-40.0, swap=-1.5, sl=1.05), make_position(2)]
    result = store.sync_positions(make_snapshot(moved, T0 + 5), server_offset_s=0, profit_percent={1: -0.4})
    assert result.changed == (1,) and result.unchanged == 1
    r = row(store, 1)
    assert (r["current_price"], r["profit"], r["swap"], r["sl"], r["profit_percent"]) == (
        1.2,
        -40.0,
        -1.5,
        1.05,
        -0.4,
    )
    assert r["last_update"] == "2026-01-01T00:00:05.000Z"
    assert r["first_seen"] == "2026-01-01T00:00:00.000Z"


def test_partial_close_updates_volume_and_keeps_original(store: Store, make_position, make_snapshot) -> None:
    """The seed never updated volume after a partial close."""
    store.sync_positions(make_snapshot([make_position(1, volume=1.0)]), server_offset_s=0)
    result = store.sync_positions(make_snapshot([make_position(1, volume=0.4)], T0 + 1), server_offset_s=0)
    assert result.changed == (1,)
    r = row(store, 1)
    assert r["volume"] == 0.4
    assert r["original_volume"] == 1.0


def test_netting_position_that_grows_raises_original_volume(
    store: Store, make_position, make_snapshot
) -> None:
    store.sync_positions(make_snapshot([make_position(1, volume=1.0)]), server_offset_s=0)
    store.sync_positions(make_snapshot([make_position(1, volume=1.5)], T0 + 1), server_offset_s=0)
    assert row(store, 1)["original_volume"] == 1.5


def test_disappeared_positions_are_reported_but_stay_open(store: Store, make_position, make_snapshot) -> None:
    store.sync_positions(
        make_snapshot([make_position(1), make_position(2), make_position(3)]), server_offset_s=0
    )
    result = store.sync_positions(make_snapshot([make_position(2)], T0 + 1), server_offset_s=0)
    assert result.disappeared == (1, 3)
    assert row(store, 1)["status"] == "open"
    # Until the caller marks them closed, they are reported again (nothing lost across a crash).
    assert store.sync_positions(make_snapshot([make_position(2)], T0 + 2), server_offset_s=0).disappeared == (
        1,
        3,
    )


def test_disappeared_survives_a_restart(db_path: Path, clock, make_position, make_snapshot) -> None:
    with Store.open(db_path, clock=clock) as s:
        s.sync_positions(make_snapshot([make_position(1), make_position(2)]), server_offset_s=0)
    with Store.open(db_path, clock=clock) as s:
        result = s.sync_positions(make_snapshot([make_position(2)], T0 + 1), server_offset_s=0)
    assert result.disappeared == (1,)
    assert result.appeared == ()


def test_mark_closed_records_how_and_for_how_much(store: Store, make_position, make_snapshot) -> None:
    store.sync_positions(make_snapshot([make_position(1), make_position(2)]), server_offset_s=0)
    assert store.mark_closed(1, realised_profit=97.5, reason="external", closed_at=T0 + 60)
    r = row(store, 1)
    assert (r["status"], r["close_reason"], r["realised_profit"]) == ("closed", "external", 97.5)
    assert r["closed_at"] == "2026-01-01T00:01:00.000Z"
    # Closing twice, or closing an unknown ticket, writes nothing.
    assert not store.mark_closed(1, realised_profit=0.0, reason="rule", closed_at=T0 + 61)
    assert row(store, 1)["realised_profit"] == 97.5
    assert not store.mark_closed(999, realised_profit=1.0, reason="command")
    # A closed ticket is no longer "disappeared".
    assert (
        store.sync_positions(make_snapshot([make_position(2)], T0 + 61), server_offset_s=0).disappeared == ()
    )


def test_mark_closed_rejects_unknown_reason(store: Store) -> None:
    with pytest.raises(ValueError, match="reason"):
        store.mark_closed(1, realised_profit=0.0, reason="manual")


def test_a_closed_ticket_that_reappears_is_reopened(store: Store, make_position, make_snapshot) -> None:
    store.sync_positions(make_snapshot([make_position(1)]), server_offset_s=0)
    store.mark_closed(1, realised_profit=None, reason="external")
    result = store.sync_positions(make_snapshot([make_position(1)], T0 + 5), server_offset_s=0)
    assert result.appeared == (1,) and result.reopened == (1,)
    r = row(store, 1)
    assert (r["status"], r["closed_at"], r["close_reason"]) == ("open", None, None)
    assert r["first_seen"] == "2026-01-01T00:00:00.000Z"


def test_partial_close_memory_survives_reopening(db_path: Path, clock, make_position, make_snapshot) -> None:
    with Store.open(db_path, clock=clock) as s:
        s.sync_positions(make_snapshot([make_position(1), make_position(2)]), server_offset_s=0)
        assert s.mark_partial_closed(1, at=T0 + 10)
        assert s.mark_partial_closed(1, at=T0 + 20)  # idempotent; the first time is kept
        assert not s.mark_partial_closed(42)
    with Store.open(db_path, clock=clock) as s:
        assert s.partial_closed_tickets() == {1}
        assert row(s, 1)["partial_closed_at"] == "2026-01-01T00:00:10.000Z"
        s.mark_closed(1, realised_profit=10.0, reason="rule")
        assert s.partial_closed_tickets() == set()


def test_large_book_round_trips(store: Store, make_position, make_snapshot) -> None:
    positions = [make_position(t, profit=float(t % 97) - 48.0) for t in range(1, 5001)]
    assert len(store.sync_positions(make_snapshot(positions), server_offset_s=0).appeared) == 5000
    moved = [make_position(t, profit=float(t % 89)) if t % 2 else positions[t - 1] for t in range(1, 5001)]
    result = store.sync_positions(make_snapshot(moved[:-10], T0 + 1), server_offset_s=0)
    assert len(result.changed) == len([t for t in range(1, 4991) if t % 2 and t % 89 != (t % 97) - 48])
    assert result.disappeared == tuple(range(4991, 5001))
    assert store.db.execute("SELECT SUM(profit) FROM position_tracking").fetchone()[0] == pytest.approx(
        sum(p.profit for p in moved[:-10])
        + sum(p.profit for p in positions[-10:])  # disappeared keep last values
    )
