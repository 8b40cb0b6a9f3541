"""Migration 0004: position_tracking split into position_book and position_marks, read as a view.

Users keep reading ``position_tracking`` exactly as before (same columns, order and values), an
existing file migrates without losing a value, and the poll's quote-only write touches only the
narrow ``position_marks`` table.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import T0, FakeClock
from sqlite_utils import Database

from fxnb.models import CloseResult, CloseStatus
from fxnb.storage import Reader, Store, schema
from fxnb.storage.writer import CloseRecord

_COLUMNS = ("ticket, symbol, type, volume, original_volume, open_price, current_price, profit, swap, "
            "profit_percent, sl, tp, magic, identifier, comment, open_time, open_time_server, first_seen, "
            "last_update, status, closed_at, close_reason, realised_profit, partial_closed_at")
# Every kind of row a 0003 file can hold: open with and without a profit percent, swap, SL/TP, comment
# and open time; partly closed; closed by each reason, with and without a realised profit.
_ROWS_0003: list[tuple[Any, ...]] = [
    (1, "EURUSD", "buy", 1.0, 1.0, 1.1, 1.1012, 120.0, -0.37, 0.25, 1.05, 1.2, 770077, 1, "fxnb",
     "2025-12-31T23:00:00.000Z", 1767229200, "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:07.000Z",
     "open", None, None, None, None),
    (2, "XAUUSD", "sell", 0.05, 0.1, 2650.5, 2649.0, -3.5, 0.0, None, 0.0, 0.0, 0, 0, "", None, None,
     "2026-01-01T00:00:01.000Z", "2026-01-01T00:00:02.000Z", "open", None, None, None,
     "2026-01-01T00:00:02.000Z"),
    (3, "EURUSD", "buy", 1.0, 1.0, 1.1, 1.105, 50.0, 0.0, 0.1, 0.0, 0.0, 0, 3, "", "2025-12-31T22:00:00.000Z",
     1767225600, "2026-01-01T00:00:00.000Z", "2026-01-01T00:01:00.000Z", "closed", "2026-01-01T00:01:00.000Z",
     "command", 49.5, None),
    (4, "GBPUSD", "sell", 0.5, 1.0, 1.25, 1.26, -20.0, -1.0, None, 0.0, 0.0, 0, 4, "x", None, None,
     "2026-01-01T00:00:00.000Z", "2026-01-01T00:02:00.000Z", "closed", "2026-01-01T00:02:00.000Z",
     "external", None, "2026-01-01T00:00:30.000Z"),
    (5, "USDJPY", "buy", 2.0, 2.0, 150.0, 150.5, 7.0, 0.0, 0.0, 0.0, 0.0, 0, 5, "", None, None,
     "2026-01-01T00:00:00.000Z", "2026-01-01T00:03:00.000Z", "closed", "2026-01-01T00:03:00.000Z",
     "rule", 7.0, None),
]  # fmt: skip


def _file_0003(path: Path, rows: list[tuple[Any, ...]] = _ROWS_0003) -> None:
    """A database as fxnb left it before 0004: position_tracking a table, holding ``rows``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = Database(path)
    schema.configure_writer(db)
    schema.migrations.apply(db, stop_before="0004_position_marks")
    db.conn.executemany(f"INSERT INTO position_tracking ({_COLUMNS}) VALUES ({', '.join('?' * 24)})", rows)
    db.conn.commit()
    db.close()


def _read(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _table_info(path: Path) -> list[tuple[Any, ...]]:
    """(cid, name, declared type) of position_tracking. A view cannot declare NOT NULL, a default or a
    primary key, so those three fields of PRAGMA table_info are left out (the base tables keep them)."""
    return [r[:3] for r in _read(path, "PRAGMA table_info(position_tracking)")]


def test_the_view_has_the_old_tables_columns_in_the_old_order(tmp_path: Path, clock: FakeClock) -> None:
    old, fresh = tmp_path / "old.db", tmp_path / "fresh.db"
    _file_0003(old, rows=[])
    before = _table_info(old)
    assert [name for _, name, _ in before] == _COLUMNS.split(", ")
    Store.open(old, clock=clock).close()
    Store.open(fresh, clock=clock).close()
    assert _table_info(old) == before
    assert _table_info(fresh) == before
    assert _read(fresh, "SELECT type FROM sqlite_master WHERE name = 'position_tracking'") == [("view",)]


def test_a_0003_database_migrates_with_every_value_kept(db_path: Path, clock: FakeClock, make_position,
                                                        make_snapshot) -> None:
    _file_0003(db_path)
    everything = f"SELECT {_COLUMNS} FROM position_tracking ORDER BY ticket"
    before = _read(db_path, everything)
    assert before == _ROWS_0003
    with Store.open(db_path, clock=clock) as store:
        assert schema.schema_version(store.db) == "0004_position_marks"
        assert store.db.execute(everything).fetchall() == before
        assert store.db.execute("SELECT * FROM position_tracking ORDER BY ticket").fetchall() == before
        assert store.partial_closed_tickets() == {2}
        names = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"idx_position_book_closed_at", "idx_position_book_status_symbol",
                "idx_position_book_partial_closed"} <= names
        # the single-column status index is not made again: (status, symbol, ticket) serves lookups by status
        assert "idx_position_book_status" not in names
        plan = " ".join(r[-1] for r in store.db.execute(
            "EXPLAIN QUERY PLAN SELECT ticket FROM position_tracking WHERE status = 'open'"))
        assert "USING COVERING INDEX idx_position_book_status_symbol (status=?)" in plan, plan
        assert not any("position_tracking" in n for n in names)
        # the migrated rows are the writer's: an open one moves, a closed one reopens
        result = store.sync_positions(make_snapshot([make_position(1, price_open=1.1, price_current=1.1013,
                                                                   profit=121.0, swap=-0.37, sl=1.05, tp=1.2,
                                                                   magic=770077, identifier=1, comment="fxnb"),
                                                     make_position(5)], T0 + 60), server_offset_s=0)
        assert result.reopened == (5,) and result.disappeared == (2,)
        assert store.position(1)["profit"] == 121.0  # type: ignore[index]
    with Reader(db_path) as reader:
        assert [r["ticket"] for r in reader.open_positions()] == [1, 5, 2]  # by symbol, then ticket


def test_a_quote_only_sync_writes_only_position_marks(store: Store, make_position, make_snapshot) -> None:
    tickets = range(1, 51)
    store.sync_positions(make_snapshot([make_position(t) for t in tickets]), server_offset_s=0)
    db = store.db
    book = db.execute("SELECT * FROM position_book ORDER BY ticket").fetchall()
    marks = db.execute("SELECT * FROM position_marks ORDER BY ticket").fetchall()
    changes = db.conn.total_changes
    moved = [make_position(t, price_current=1.1011, profit=101.0) for t in tickets]
    result = store.sync_positions(make_snapshot(moved, T0 + 1), server_offset_s=0,
                                  profit_percent=dict.fromkeys(tickets, 0.5))
    assert result.changed == tuple(tickets)
    assert db.conn.total_changes - changes == len(tickets)  # one row each, in one table
    assert db.execute("SELECT * FROM position_book ORDER BY ticket").fetchall() == book
    new_marks = db.execute("SELECT * FROM position_marks ORDER BY ticket").fetchall()
    assert new_marks != marks and set(new_marks) == {(t, 1.1011, 101.0, 0.0, 0.5, "2026-01-01T00:00:01.000Z")
                                                     for t in tickets}
    # anything beyond the quote writes both tables, and moves last_update
    changes = db.conn.total_changes
    store.sync_positions(make_snapshot([*moved[:-1], make_position(50, price_current=1.1011, profit=101.0,
                                                                   sl=1.09)], T0 + 2),
                         server_offset_s=0, profit_percent=dict.fromkeys(tickets, 0.5))
    assert db.conn.total_changes - changes == 2
    row = store.position(50)
    assert row is not None and (row["sl"], row["last_update"]) == (1.09, "2026-01-01T00:00:02.000Z")


def _orphans(store: Store) -> int:
    return store.db.execute(
        "SELECT (SELECT COUNT(*) FROM position_book WHERE ticket NOT IN (SELECT ticket FROM position_marks))"
        " + (SELECT COUNT(*) FROM position_marks WHERE ticket NOT IN (SELECT ticket FROM position_book))"
    ).fetchone()[0]


def test_closing_writes_the_book_and_moves_last_update(store: Store, make_position, make_snapshot) -> None:
    store.sync_positions(make_snapshot([make_position(t, profit=float(t)) for t in (1, 2, 3, 4)]),
                         server_offset_s=0)
    store.mark_closed(1, realised_profit=5.0, reason="external", closed_at=T0 + 10)
    op_id = store.create_operation("cmd-1", "all", source="operator")
    store.claim_operation(op_id, target_tickets=[2, 3])
    res = CloseResult(ticket=2, symbol="", requested_volume=1.0, closed_volume=1.0, price=1.1, profit=2.5,
                      retcode=10009, message="done", status=CloseStatus.CLOSED, deals=(9,), attempts=1)
    store.record_closes(op_id, [CloseRecord(res, finished_at=T0 + 11, close_reason="command")])
    store.record_close(op_id, dataclasses.replace(res, ticket=3, closed_volume=0.5),
                       finished_at=T0 + 12, partial=True)
    got = {r["ticket"]: r for r in store.db.query("SELECT * FROM position_tracking")}
    assert (got[1]["status"], got[1]["closed_at"], got[1]["last_update"]) == (
        "closed", "2026-01-01T00:00:10.000Z", "2026-01-01T00:00:10.000Z")
    assert (got[2]["status"], got[2]["last_update"], got[2]["realised_profit"]) == (
        "closed", "2026-01-01T00:00:11.000Z", 2.5)
    assert got[1]["profit"] == 1.0 and got[2]["profit"] == 2.0  # the last quote is kept
    assert got[3]["partial_closed_at"] == "2026-01-01T00:00:12.000Z"
    assert got[3]["last_update"] == "2026-01-01T00:00:00.000Z"  # as before 0004: a partial mark is not a change
    changes = store.db.conn.total_changes
    assert not store.mark_closed(1, realised_profit=0.0, reason="external")  # already closed: nothing written
    assert store.db.conn.total_changes == changes
    store.sync_positions(make_snapshot([make_position(1)], T0 + 20), server_offset_s=0)  # 1 reopens
    assert _orphans(store) == 0 and store.db["position_book"].count == 4


@pytest.mark.parametrize("sql", ["UPDATE position_tracking SET profit = 0",
                                 "INSERT INTO position_tracking (ticket) VALUES (9)",
                                 "DELETE FROM position_tracking"])
def test_position_tracking_is_read_only(store: Store, reader: Reader, make_position, make_snapshot,
                                        sql: str) -> None:
    store.sync_positions(make_snapshot([make_position(1)]), server_offset_s=0)
    with pytest.raises(sqlite3.OperationalError):  # readers: query_only, as before
        reader.db.execute(sql)
    with pytest.raises(sqlite3.OperationalError, match="view"):  # nobody writes the view by mistake
        store.db.execute(sql)
    assert reader.open_positions()[0]["profit"] == 100.0
