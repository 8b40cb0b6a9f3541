"""Store.record_close / record_closes: a close's result and what it means for the position, in one transaction.

Also the 0002 migration: the index that gives the dashboard's open book in its ORDER BY (on
``position_book`` since 0004, read through the ``position_tracking`` view).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import T0
from sqlite_utils import Database

from fxnb.errors import StorageError
from fxnb.models import CloseResult, CloseStatus
from fxnb.storage import Reader, Store, schema
from fxnb.storage.writer import CloseRecord


def _op(store: Store, tickets: list[int], command_id: str = "cmd-1") -> int:
    op_id = store.create_operation(command_id, "all", source="operator")
    store.claim_operation(op_id, target_tickets=tickets)
    return op_id


def _res(ticket: int, status: CloseStatus = CloseStatus.CLOSED, **kw: Any) -> CloseResult:
    values: dict[str, Any] = {"requested_volume": 1.0, "closed_volume": 1.0, "price": 1.101, "profit": 12.5,
                              "retcode": 10009, "message": "done", "deals": (300_000_000 + ticket,), "attempts": 1}
    values.update(kw)
    return CloseResult(ticket, status, **values)


@pytest.fixture
def book(store: Store, make_position, make_snapshot) -> list[int]:
    tickets = [101, 102, 103, 104]
    store.sync_positions(make_snapshot([make_position(t, symbol=f"SYM{t % 2}") for t in tickets]),
                         server_offset_s=0)
    return tickets


def _tracked(store: Store, ticket: int) -> dict[str, Any]:
    row = store.position(ticket)
    assert row is not None
    return row


def test_record_close_writes_the_result_and_the_closed_mark_together(store: Store, book: list[int]) -> None:
    op_id = _op(store, book)
    rid = store.record_close(op_id, _res(101, symbol=""), finished_at=T0 + 5, mark_closed="command")
    (row,) = store.results(op_id)
    assert row["id"] == rid and row["ticket"] == 101 and row["status"] == "closed"
    assert row["symbol"] == "SYM1"  # falls back to the tracked position's symbol, as add_result does
    assert row["deals"] == [300_000_101] and row["finished_at"] == "2026-01-01T00:00:05.000Z"
    pos = _tracked(store, 101)
    assert (pos["status"], pos["close_reason"], pos["realised_profit"]) == ("closed", "command", 12.5)
    assert pos["closed_at"] == pos["last_update"] == "2026-01-01T00:00:05.000Z"
    assert _tracked(store, 102)["status"] == "open"


def test_record_close_is_add_result_when_nothing_else_is_asked(store: Store, book: list[int]) -> None:
    op_id = _op(store, book)
    first = store.add_result(op_id, _res(101, CloseStatus.FAILED, closed_volume=0.0), finished_at=T0)
    again = store.record_close(op_id, _res(101), finished_at=T0 + 1)
    assert again == first  # the same (operation, ticket) is replaced, as before
    assert [r["status"] for r in store.results(op_id)] == ["closed"]
    assert _tracked(store, 101)["status"] == "open"  # no mark asked for


def test_partial_flag_records_the_once_per_position_partial_close(store: Store, book: list[int]) -> None:
    op_id = _op(store, [102])
    store.record_close(op_id, _res(102, closed_volume=0.5), finished_at=T0 + 2, partial=True)
    assert _tracked(store, 102)["partial_closed_at"] == "2026-01-01T00:00:02.000Z"
    assert store.partial_closed_tickets() == {102}
    store.record_close(op_id, _res(102), finished_at=T0 + 9, partial=True, mark_closed="rule")
    pos = _tracked(store, 102)
    assert pos["partial_closed_at"] == "2026-01-01T00:00:02.000Z"  # the first time is kept
    assert (pos["status"], pos["close_reason"]) == ("closed", "rule")


def test_record_closes_writes_a_batch_in_order(store: Store, book: list[int]) -> None:
    op_id = _op(store, book)
    records = [CloseRecord(_res(t), T0 + i, close_reason="command") for i, t in enumerate(book)]
    assert store.record_closes(op_id, records) == 4
    assert [r["ticket"] for r in store.results(op_id)] == book
    assert all(_tracked(store, t)["status"] == "closed" for t in book)
    assert store.record_closes(op_id, []) == 0
    assert store.finish_operation(op_id, "completed")
    op = store.get_operation(op_id)
    assert op is not None and op["positions_closed"] == 4 and op["total_profit_closed"] == 50.0


def test_a_batch_is_all_or_nothing(store: Store, book: list[int]) -> None:
    op_id = _op(store, book)
    records = [CloseRecord(_res(101), T0, close_reason="command"),
               CloseRecord(_res(102, price=float("nan")), T0, close_reason="command")]  # NOT NULL price: refused
    with pytest.raises(StorageError):
        store.record_closes(op_id, records)
    assert store.results(op_id) == []
    assert _tracked(store, 101)["status"] == "open"
    with pytest.raises(ValueError):
        store.record_closes(op_id, [CloseRecord(_res(101), T0, close_reason="external-ish")])
    assert store.results(op_id) == []
    assert store.record_close(op_id, _res(101), mark_closed="command") > 0  # the store keeps working


def test_results_need_a_processing_operation(store: Store, book: list[int]) -> None:
    op_id = store.create_operation("cmd-p", "all", source="operator")  # still pending
    for write in (lambda: store.record_close(op_id, _res(101), mark_closed="command"),
                  lambda: store.record_closes(op_id, [CloseRecord(_res(101), close_reason="command")]),
                  lambda: store.add_result(op_id, _res(101))):
        with pytest.raises(StorageError, match="status is pending"):
            write()
    assert _tracked(store, 101)["status"] == "open"


def test_positions_closed_by_a_batch_leave_the_sync_cache(store: Store, book: list[int], make_position,
                                                          make_snapshot) -> None:
    op_id = _op(store, book)
    store.record_closes(op_id, [CloseRecord(_res(t), T0, close_reason="command") for t in (101, 102)])
    # the terminal no longer has them: they are not "disappeared" (closed outside fxnb), they are ours
    res = store.sync_positions(make_snapshot([make_position(t, symbol=f"SYM{t % 2}") for t in (103, 104)]),
                               server_offset_s=0)
    assert res.disappeared == () and res.unchanged == 2


def test_a_failed_batch_resets_the_sync_cache(store: Store, book: list[int], make_position,
                                              make_snapshot) -> None:
    op_id = _op(store, book)
    with pytest.raises(StorageError):
        store.record_closes(op_id, [CloseRecord(_res(101), T0, close_reason="command"),
                                    CloseRecord(_res(102, price=float("nan")), T0)])
    res = store.sync_positions(make_snapshot([make_position(t, symbol=f"SYM{t % 2}") for t in (102, 103, 104)]),
                               server_offset_s=0)
    assert res.disappeared == (101,)  # still open in the database, so reported again


def test_deal_lists_are_stored_as_the_json_they_always_were(store: Store, book: list[int]) -> None:
    op_id = _op(store, book)
    store.record_closes(op_id, [CloseRecord(_res(101, deals=())), CloseRecord(_res(102, deals=(5, 6, 7))),
                                CloseRecord(_res(103, deals=(True,)))])  # a bool is spelled by the encoder
    raw = {r[0]: r[1] for r in store.db.execute("SELECT ticket, deals FROM close_results")}
    assert raw == {101: "[]", 102: "[5,6,7]", 103: "[true]"}
    assert [json.loads(v) for v in raw.values()] == [[], [5, 6, 7], [True]]


# -------------------------------------------------------------------------------------- 0002
_OPEN_BOOK = "SELECT * FROM position_tracking WHERE status = 'open' ORDER BY symbol, ticket"


def test_open_book_is_read_in_index_order_without_a_sort(store: Store, book: list[int], db_path: Path,
                                                         make_position, make_snapshot) -> None:
    plan = " | ".join(r[3] for r in store.db.execute("EXPLAIN QUERY PLAN " + _OPEN_BOOK))
    assert "idx_position_book_status_symbol" in plan and "TEMP B-TREE" not in plan, plan
    store.sync_positions(make_snapshot([make_position(t, symbol=s) for t, s in
                                        [(7, "ZZZ"), (5, "AAA"), (6, "AAA"), (104, "SYM0")]]), server_offset_s=0)
    with Reader(db_path) as reader:
        got = [(r["symbol"], r["ticket"]) for r in reader.open_positions()]
    assert got == sorted(got) and len(got) == 7


def test_an_existing_0001_database_gets_the_index_on_open(db_path: Path, clock) -> None:
    db_path.parent.mkdir(parents=True)
    db = Database(db_path)  # a file as a 0001-only fxnb left it: position_tracking a table, no later index
    schema.configure_writer(db)
    schema.migrations.apply(db, stop_before="0002_open_positions_index")
    db.execute("INSERT INTO position_tracking (ticket, symbol, type, volume, original_volume, open_price, "
               "current_price, profit, first_seen, last_update) VALUES (1, 'X', 'buy', 1, 1, 1, 1, 0, 'a', 'a')")
    db.conn.commit()
    db.close()
    with Reader(db_path) as reader:  # a reader never migrates; an older file still reads
        assert reader.schema_version == "0001_initial" and len(reader.open_positions()) == 1
    with Store.open(db_path, clock=clock) as s:
        assert schema.applied_migrations(s.db) == ["0001_initial", "0002_open_positions_index",
                                                   "0003_partial_closed_index", "0004_position_marks"]
        names = {r[0] for r in s.db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"idx_position_book_status_symbol", "idx_position_book_partial_closed"} <= names
        assert s.position(1) is not None  # rows kept


def test_settle_result_corrects_a_lost_answer_and_its_operation(store: Store, book: list[int]) -> None:
    """A close recorded 'failed' with nothing closed, found executed in the deal history later."""
    op_id = store.create_operation("single-1", "single", source="operator")
    store.claim_operation(op_id, target_tickets=[101])
    store.record_close(op_id, _res(101, CloseStatus.FAILED, closed_volume=0.0, profit=0.0, deals=(),
                                   message="reply lost"))
    store.finish_operation(op_id, "failed", error_message="101: reply lost")
    (rid,) = [r["id"] for r in store.results(op_id)]
    assert store.ticket_results(101)[0]["source"] == "operator"
    assert store.settle_result(rid, status="closed", closed_volume=1.0, profit=-3.25, price=1.1, deals=[777],
                               note="settled later", operation_status="completed", close_reason="command")
    (row,) = store.results(op_id)
    assert (row["status"], row["closed_volume"], row["profit"], row["deals"]) == ("closed", 1.0, -3.25, [777])
    assert row["message"] == "reply lost; settled later"
    op = store.get_operation(op_id)
    assert op is not None
    assert (op["status"], op["error_message"], op["positions_closed"], op["positions_failed"],
            op["total_loss_closed"]) == ("completed", None, 1, 0, 3.25)
    assert (_tracked(store, 101)["status"], _tracked(store, 101)["close_reason"]) == ("closed", "command")
    # only a failed/partial result is ever corrected
    assert not store.settle_result(rid, status="closed", closed_volume=2.0, profit=0.0, price=1.1, deals=[],
                                   note="again", operation_status="completed", close_reason="command")
    assert store.results(op_id)[0]["closed_volume"] == 1.0
