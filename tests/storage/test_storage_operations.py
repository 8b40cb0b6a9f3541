"""position_close_operations and close_results: the command/audit lifecycle."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from conftest import T0

from fxnb.errors import StorageError
from fxnb.models import CloseResult, CloseStatus
from fxnb.storage import DuplicateCommand, Store


def new_op(store: Store, command_id: str = "cmd-1", operation_type: str = "all", **kw) -> int:
    kw.setdefault("source", "operator")
    return store.create_operation(command_id, operation_type, **kw)


def test_create_records_a_pending_operation(store: Store) -> None:
    op_id = new_op(
        store,
        "a1b2",
        "profit",
        requested_by="alice@desk",
        params={"symbol": "EURUSD", "reason": "end of day"},
        timestamp="2026-01-01T00:00:00+01:00",
        created_at=T0 + 1,
        expires_at=T0 + 61,
        file_name="20260101T000000_a1b2.json",
    )
    op = store.get_operation_by_command("a1b2")
    assert op is not None and op["id"] == op_id
    assert op["status"] == "pending" and op["source"] == "operator" and op["requested_by"] == "alice@desk"
    assert op["params"] == {"symbol": "EURUSD", "reason": "end of day"}
    assert op["timestamp"] == "2026-01-01T00:00:00+01:00"  # the producer's text, verbatim
    assert (op["created_at"], op["expires_at"]) == ("2026-01-01T00:00:01.000Z", "2026-01-01T00:01:01.000Z")
    assert op["target_tickets"] is None and op["claimed_at"] is None
    assert store.get_operation_by_command("nope") is None


def test_numeric_timestamp_is_stored_as_iso(store: Store) -> None:
    new_op(store, timestamp=T0)
    assert store.get_operation_by_command("cmd-1")["timestamp"] == "2026-01-01T00:00:00.000Z"


def test_duplicate_command_is_refused_even_after_a_restart(db_path: Path, clock) -> None:
    with Store.open(db_path, clock=clock) as s:
        op_id = new_op(s, "dup")
        s.claim_operation(op_id, target_tickets=[1])
        s.finish_operation(op_id, "completed")
    with Store.open(db_path, clock=clock) as s:
        with pytest.raises(DuplicateCommand) as info:
            new_op(s, "dup")
        assert info.value.command_id == "dup" and info.value.status == "completed"
        assert isinstance(info.value, StorageError)
        assert s.db["position_close_operations"].count == 1
        # The failed insert left no transaction open: the store keeps working.
        assert new_op(s, "next") > op_id


def test_integer_like_ids_are_text(store: Store) -> None:
    """The seed used integer ids; here "7" and 7 are the same command."""
    new_op(store, "7")
    with pytest.raises(DuplicateCommand):
        store.create_operation(7, "all", source="operator")  # type: ignore[arg-type]


def test_claim_only_once(store: Store) -> None:
    op_id = new_op(store)
    assert store.claim_operation(op_id, target_tickets=[3, 1, 2], claimed_at=T0 + 2)
    assert not store.claim_operation(op_id, target_tickets=[9])
    op = store.get_operation(op_id)
    assert op["status"] == "processing"
    assert op["target_tickets"] == [1, 2, 3]
    assert op["claimed_at"] == "2026-01-01T00:00:02.000Z"
    assert not store.claim_operation(12345, target_tickets=[])


def test_finish_computes_totals_from_results(store: Store) -> None:
    op_id = new_op(store)
    store.claim_operation(op_id, target_tickets=[1, 2, 3, 4, 5, 6])
    results = [
        CloseResult(1, CloseStatus.CLOSED, 1.0, 1.0, price=1.1, profit=120.0, retcode=10009, deals=(901,)),
        CloseResult(2, CloseStatus.CLOSED, 0.5, 0.5, profit=-30.25, retcode=10009, deals=(902, 903)),
        CloseResult(3, CloseStatus.PARTIAL, 1.0, 0.4, profit=10.0, retcode=10010),
        CloseResult(4, CloseStatus.FAILED, 1.0, retcode=10018, message="Market closed", attempts=1),
        CloseResult(5, CloseStatus.ALREADY_CLOSED, 1.0),
        CloseResult(6, CloseStatus.DRY_RUN, 1.0, profit=999.0),
    ]
    for r in results:
        store.add_result(op_id, r, finished_at=T0 + 3)
    assert store.finish_operation(op_id, "partially_completed", finished_at=T0 + 4, error_message="1 failed")
    op = store.get_operation(op_id)
    assert op["status"] == "partially_completed"
    assert (op["positions_closed"], op["positions_failed"]) == (3, 1)
    assert op["total_profit_closed"] == pytest.approx(130.0)
    assert op["total_loss_closed"] == pytest.approx(30.25)  # absolute, as in the seed
    assert (op["finished_at"], op["error_message"]) == ("2026-01-01T00:00:04.000Z", "1 failed")
    stored = store.results(op_id)
    assert [r["ticket"] for r in stored] == [1, 2, 3, 4, 5, 6]
    assert stored[1]["deals"] == [902, 903] and stored[3]["message"] == "Market closed"
    assert stored[0]["status"] == "closed" and stored[0]["retcode"] == 10009


def test_finish_only_once(store: Store) -> None:
    op_id = new_op(store)
    store.claim_operation(op_id, target_tickets=[])
    assert store.finish_operation(op_id, "completed")
    assert not store.finish_operation(op_id, "failed", error_message="late")
    assert store.get_operation(op_id)["status"] == "completed"


def test_finish_rejects_non_final_status(store: Store) -> None:
    with pytest.raises(ValueError):
        store.finish_operation(new_op(store), "processing")


def test_a_pending_operation_can_fail_without_results(store: Store) -> None:
    op_id = new_op(store)
    assert store.finish_operation(op_id, "failed", error_message="terminal disconnected")
    op = store.get_operation(op_id)
    assert (op["status"], op["positions_closed"], op["total_profit_closed"]) == ("failed", 0, 0.0)


def test_result_symbol_falls_back_to_the_tracked_position(store: Store, make_position, make_snapshot) -> None:
    store.sync_positions(make_snapshot([make_position(7, symbol="GBPJPY")]), server_offset_s=0)
    op_id = new_op(store)
    store.claim_operation(op_id, target_tickets=[7])
    store.add_result(op_id, CloseResult(7, CloseStatus.CLOSED, 1.0, 1.0))
    assert store.results(op_id)[0]["symbol"] == "GBPJPY"


def test_recording_a_ticket_again_replaces_its_result(store: Store) -> None:
    op_id = new_op(store)
    store.claim_operation(op_id, target_tickets=[1])
    first = store.add_result(op_id, CloseResult(1, CloseStatus.FAILED, 1.0, retcode=10004))
    second = store.add_result(op_id, CloseResult(1, CloseStatus.CLOSED, 1.0, 1.0, profit=5.0, attempts=2))
    assert first == second
    (only,) = store.results(op_id)
    assert (only["status"], only["profit"], only["attempts"]) == ("closed", 5.0, 2)


def test_results_only_while_processing(store: Store) -> None:
    op_id = new_op(store)
    with pytest.raises(StorageError, match="status is pending"):
        store.add_result(op_id, CloseResult(1, CloseStatus.CLOSED, 1.0, 1.0))
    with pytest.raises(StorageError, match="no such operation"):
        store.add_result(999, CloseResult(1, CloseStatus.CLOSED, 1.0, 1.0))
    store.claim_operation(op_id, target_tickets=[1])
    store.finish_operation(op_id, "completed")
    with pytest.raises(StorageError, match="status is completed"):
        store.add_result(op_id, CloseResult(1, CloseStatus.CLOSED, 1.0, 1.0))
    assert store.results(op_id) == []


def test_results_must_belong_to_an_operation(store: Store) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        store.db.execute(
            "INSERT INTO close_results (operation_id, ticket, requested_volume, status, finished_at) "
            "VALUES (404, 1, 1.0, 'closed', 'x')"
        )


def test_reject_malformed_without_an_id(store: Store) -> None:
    op_id = store.reject_operation(None, error_message="invalid JSON", file_name="garbage.json", at=T0 + 9)
    op = store.get_operation(op_id)
    assert (op["status"], op["command_id"], op["operation_type"]) == ("rejected", None, "unknown")
    assert op["finished_at"] == op["created_at"] == "2026-01-01T00:00:09.000Z"
    assert op["file_name"] == "garbage.json"
    # Several id-less rejections can coexist (UNIQUE ignores NULL).
    store.reject_operation(None, error_message="empty file")
    assert store.db["position_close_operations"].count == 2


def test_reject_expired_pending_operation(store: Store) -> None:
    op_id = new_op(store, expires_at=T0 + 60)
    assert (
        store.reject_operation("cmd-1", status="expired", error_message="older than 60 s", at=T0 + 120)
        == op_id
    )
    op = store.get_operation(op_id)
    assert (op["status"], op["error_message"]) == ("expired", "older than 60 s")
    assert not store.claim_operation(op_id, target_tickets=[1])


def test_reject_never_overwrites_a_started_command(store: Store) -> None:
    op_id = new_op(store)
    store.claim_operation(op_id, target_tickets=[1])
    with pytest.raises(DuplicateCommand):
        store.reject_operation("cmd-1", error_message="replayed file")
    assert store.get_operation(op_id)["status"] == "processing"


def test_reject_new_id_and_then_the_id_is_taken(store: Store) -> None:
    store.reject_operation("x9", operation_type="close_everything", error_message="unknown type")
    with pytest.raises(DuplicateCommand):
        new_op(store, "x9")


def test_unfinished_operations_for_crash_reconciliation(db_path: Path, clock) -> None:
    with Store.open(db_path, clock=clock) as s:
        pending = new_op(s, "p")
        processing = new_op(s, "q")
        done = new_op(s, "r")
        s.claim_operation(processing, target_tickets=[1, 2])
        s.add_result(processing, CloseResult(1, CloseStatus.CLOSED, 1.0, 1.0, profit=3.0))
        s.claim_operation(done, target_tickets=[])
        s.finish_operation(done, "completed")
    with Store.open(db_path, clock=clock) as s:
        ops = s.unfinished_operations()
    assert [op["id"] for op in ops] == [pending, processing]
    assert ops[0]["results"] == []
    assert ops[1]["target_tickets"] == [1, 2]
    assert [r["ticket"] for r in ops[1]["results"]] == [1]


def test_rule_operations_are_recorded_like_commands(store: Store) -> None:
    op_id = store.create_operation(
        "rule:profit_target:1234:2026-01-01T00:00:00Z",
        "single",
        source="rule",
        params={"rule": "profit_target"},
    )
    store.claim_operation(op_id, target_tickets=[1234])
    store.add_result(op_id, CloseResult(1234, CloseStatus.CLOSED, 0.1, 0.1, profit=12.5))
    store.finish_operation(op_id, "completed")
    op = store.get_operation(op_id)
    assert (op["source"], op["positions_closed"], op["total_profit_closed"]) == ("rule", 1, 12.5)


def test_source_is_validated(store: Store) -> None:
    with pytest.raises(ValueError, match="source"):
        store.create_operation("z", "all", source="web")


def test_timestamps_may_be_iso_text_or_datetimes(store: Store) -> None:
    """The engine passes ISO strings; the stored spelling is the same as for epoch seconds."""
    from datetime import UTC, datetime

    op_id = store.create_operation(
        "iso",
        "all",
        source="operator",
        created_at="2026-01-01T00:00:00Z",
        expires_at="2026-01-01T01:01:00+01:00",
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
    )
    store.claim_operation(op_id, target_tickets=[1], claimed_at="2026-01-01T00:00:01.5Z")
    store.add_result(
        op_id, CloseResult(1, CloseStatus.CLOSED, 1.0, 1.0), finished_at=datetime(2026, 1, 1, 0, 0, 2)
    )
    store.finish_operation(op_id, "completed", finished_at=T0 + 3)
    op = store.get_operation(op_id)
    assert (op["created_at"], op["expires_at"], op["timestamp"]) == (
        "2026-01-01T00:00:00.000Z",
        "2026-01-01T00:01:00.000Z",
        "2026-01-01T00:00:00.000Z",
    )
    assert (op["claimed_at"], op["finished_at"]) == ("2026-01-01T00:00:01.500Z", "2026-01-01T00:00:03.000Z")
    assert store.results(op_id)[0]["finished_at"] == "2026-01-01T00:00:02.000Z"


@pytest.mark.parametrize("status", ["expired", "rejected"])
def test_a_recorded_command_can_be_finished_as_expired_or_rejected(store: Store, status: str) -> None:
    op_id = new_op(store)
    assert store.finish_operation(op_id, status, finished_at=T0 + 1, error_message="too old")
    op = store.get_operation(op_id)
    assert (op["status"], op["error_message"], op["positions_closed"]) == (status, "too old", 0)
    assert not store.claim_operation(op_id, target_tickets=[1])


def test_store_reads_a_tracked_position(store: Store, make_position, make_snapshot) -> None:
    store.sync_positions(make_snapshot([make_position(5, identifier=77)]), server_offset_s=0)
    assert store.position(5)["identifier"] == 77
    assert store.position(6) is None
