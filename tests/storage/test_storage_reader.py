"""The read-only Reader: isolation from the writer, clear errors, and what panels read."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from conftest import T0

from fxnb.errors import StorageError
from fxnb.models import CloseResult, CloseStatus
from fxnb.storage import Reader, Store

DAY = 86400.0


def test_missing_database_gives_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "fxnb.db"
    with pytest.raises(StorageError, match=r"no database at .*fxnb\.db — has the monitor been started\?"):
        Reader(path)
    assert not path.exists()  # opening read-only never creates the file


def test_file_without_schema_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    with pytest.raises(StorageError, match="no fxnb schema"):
        Reader(path)


def test_reader_cannot_write(reader: Reader) -> None:
    with pytest.raises(sqlite3.OperationalError, match="readonly|read-only|query_only"):
        reader.db.execute("INSERT INTO rule_state (key, value, updated_at) VALUES ('x', '1', 'now')")
    reader.db.execute("PRAGMA query_only = OFF")  # even then, the mode=ro URI holds
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.db.execute("DELETE FROM rule_state")
    assert reader.db.execute("SELECT COUNT(*) FROM rule_state").fetchone()[0] == 0


def test_reader_sees_commits_while_the_writer_stays_open(store: Store, reader: Reader) -> None:
    assert reader.events() == []
    store.event("warning", "disconnected", "terminal went away", {"code": -10004})
    (ev,) = reader.events()
    assert (ev["level"], ev["kind"], ev["data"]) == ("warning", "disconnected", {"code": -10004})
    store.event("info", "reconnected", "back")
    assert [e["kind"] for e in reader.events()] == ["reconnected", "disconnected"]


def test_reader_is_not_blocked_by_an_open_write_transaction(store: Store, reader: Reader) -> None:
    store.set_rule_state("rules_paused", False)
    with store.db.atomic() as db:
        db.execute("UPDATE rule_state SET value = 'true' WHERE key = 'rules_paused'")
        # Uncommitted: the reader still sees the committed value, immediately.
        assert reader.rule_state("rules_paused") is False
    assert reader.rule_state("rules_paused") is True


def test_reader_holds_no_transaction_between_calls(
    store: Store, reader: Reader, make_position, make_snapshot
) -> None:
    store.sync_positions(make_snapshot([make_position(1)]), server_offset_s=0)
    reader.open_positions()
    reader.history()
    reader.operation("nope")
    assert not reader.db.conn.in_transaction


def test_reader_works_after_the_writer_closed(db_path: Path, clock) -> None:
    with Store.open(db_path, clock=clock) as s:
        s.set_rule_state("k", {"a": 1})
    with Reader(db_path) as r:
        assert r.rule_state("k") == {"a": 1}
        assert r.rule_state("missing", default=7) == 7


def test_data_version_changes_only_when_the_writer_commits(store: Store, reader: Reader) -> None:
    v0 = reader.data_version()
    assert reader.data_version() == v0
    store.heartbeat(state="running")
    v1 = reader.data_version()
    assert v1 != v0
    reader.heartbeat()
    assert reader.data_version() == v1


def test_reader_can_be_used_from_another_thread(reader: Reader, store: Store) -> None:
    store.event("info", "k", "m")
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(reader.events()))
    t.start()
    t.join()
    assert len(out[0]) == 1  # type: ignore[arg-type]


def test_positions_and_account(store: Store, reader: Reader, make_position, make_snapshot, account) -> None:
    store.sync_positions(
        make_snapshot([make_position(2, symbol="USDJPY"), make_position(1, symbol="EURUSD")]),
        server_offset_s=0,
    )
    store.mark_closed(2, realised_profit=1.0, reason="external", closed_at=T0 + 5)
    assert [p["ticket"] for p in reader.open_positions()] == [1]
    assert reader.position(2)["status"] == "closed"
    assert reader.position(3) is None
    assert [p["ticket"] for p in reader.closed_positions()] == [2]
    store.append_snapshot(account, [], T0)
    store.append_snapshot(account, [make_position(1)], T0 + 10)
    acct = reader.account()
    assert acct["ts"] == T0 + 10 and acct["total_positions"] == 1 and acct["currency"] == "EUR"


def test_operation_with_results(store: Store, reader: Reader) -> None:
    op_id = store.create_operation("c-42", "loss", source="operator", params={"symbol": "EURUSD"})
    assert reader.operation("c-42")["results"] == []
    store.claim_operation(op_id, target_tickets=[1, 2])
    store.add_result(
        op_id, CloseResult(1, CloseStatus.CLOSED, 1.0, 1.0, profit=-12.0, deals=(5,), symbol="EURUSD")
    )
    store.finish_operation(op_id, "completed")
    op = reader.operation("c-42")
    assert (
        op["status"] == "completed"
        and op["params"] == {"symbol": "EURUSD"}
        and op["target_tickets"] == [1, 2]
    )
    assert [(r["ticket"], r["deals"], r["profit"]) for r in op["results"]] == [(1, [5], -12.0)]
    assert reader.results(op_id) == op["results"]
    assert reader.operation("missing") is None
    store.create_operation("c-43", "all", source="operator")
    assert [o["command_id"] for o in reader.operations(last=1)] == ["c-43"]
    assert [o["command_id"] for o in reader.operations()] == ["c-43", "c-42"]


def test_heartbeat_flags_are_bools(store: Store, reader: Reader) -> None:
    assert reader.heartbeat() is None
    store.heartbeat(pid=4242, connected=True, rules_paused=False, state="running", last_poll_at=T0 - 1)
    hb = reader.heartbeat()
    assert hb["connected"] is True and hb["rules_paused"] is False and hb["last_poll_ok"] is None
    assert hb["pid"] == 4242 and hb["last_poll_at"] == "2025-12-31T23:59:59.000Z"
    assert hb["updated_ts"] == T0


def test_events_min_level(store: Store, reader: Reader) -> None:
    store.event("info", "a", "x")
    store.event("error", "b", "y")
    store.event("warning", "c", "z")
    assert [e["kind"] for e in reader.events(min_level="warning")] == ["c", "b"]
    assert [e["kind"] for e in reader.events(min_level="error")] == ["b"]


@pytest.fixture
def realised_book(store: Store, make_position, make_snapshot) -> Store:
    """Eight positions closed in different ways across two days (see the tests for the expected sums)."""
    day1, day2 = T0 + 10 * 3600, T0 + DAY + 23.5 * 3600  # 10:00 on Jan 1, 23:30 on Jan 2 (UTC)
    book = [
        make_position(1, symbol="EURUSD"),
        make_position(2, symbol="EURUSD"),
        make_position(3, symbol="XAUUSD"),
        make_position(4, symbol="XAUUSD"),
        make_position(5, symbol="GBPUSD"),
        make_position(6, symbol="GBPUSD"),
        make_position(7, symbol="EURUSD"),
        make_position(8, symbol="GBPUSD"),
    ]
    store.sync_positions(make_snapshot(book), server_offset_s=0)
    # 1: closed by an operator command on day 1 for +100.
    op = store.create_operation("close-1", "single", source="operator")
    store.claim_operation(op, target_tickets=[1])
    store.add_result(op, CloseResult(1, CloseStatus.CLOSED, 1.0, 1.0, profit=100.0), finished_at=day1)
    store.finish_operation(op, "completed", finished_at=day1)
    store.mark_closed(1, realised_profit=100.0, reason="command", closed_at=day1)
    # 2: partial close by a rule on day 1 (+20), then closed outside fxnb on day 2; total +50.
    op = store.create_operation("rule-2", "partial", source="rule")
    store.claim_operation(op, target_tickets=[2])
    store.add_result(op, CloseResult(2, CloseStatus.CLOSED, 0.5, 0.5, profit=20.0), finished_at=day1)
    store.finish_operation(op, "completed", finished_at=day1)
    store.mark_closed(2, realised_profit=50.0, reason="external", closed_at=day2)
    # 3: closed outside fxnb on day 2 for -40.
    store.mark_closed(3, realised_profit=-40.0, reason="external", closed_at=day2)
    # 4: a failed close and a dry run realise nothing.
    op = store.create_operation("close-4", "all", source="operator")
    store.claim_operation(op, target_tickets=[4, 6])
    store.add_result(op, CloseResult(4, CloseStatus.FAILED, 1.0, retcode=10018), finished_at=day1)
    store.add_result(op, CloseResult(6, CloseStatus.DRY_RUN, 1.0, profit=999.0), finished_at=day1)
    store.finish_operation(op, "failed", finished_at=day1)
    # 5: closed with unknown realised P/L (history unreadable): not counted.
    store.mark_closed(5, realised_profit=None, reason="external", closed_at=day2)
    # 7: partial by a rule on day 1 (+20), then closed by a command on day 2 (+30), recorded the way the
    # engine does it: mark_closed gets only the last close's profit. Total +50, split 20/30.
    op = store.create_operation("rule-7", "partial", source="rule")
    store.claim_operation(op, target_tickets=[7])
    store.add_result(op, CloseResult(7, CloseStatus.CLOSED, 0.5, 0.5, profit=20.0), finished_at=day1)
    store.finish_operation(op, "completed", finished_at=day1)
    op = store.create_operation("close-7", "single", source="operator")
    store.claim_operation(op, target_tickets=[7])
    store.add_result(op, CloseResult(7, CloseStatus.CLOSED, 0.5, 0.5, profit=30.0), finished_at=day2)
    store.finish_operation(op, "completed", finished_at=day2)
    store.mark_closed(7, realised_profit=30.0, reason="command", closed_at=day2)
    # 8: closed by a command whose result was never recorded (crash): its realised_profit counts.
    store.mark_closed(8, realised_profit=7.0, reason="command", closed_at=day2)
    return store


def test_realised_by_symbol(realised_book: Store, db_path: Path) -> None:
    with Reader(db_path) as r:
        by_symbol = {row["symbol"]: (row["profit"], row["positions"]) for row in r.realised_by_symbol()}
        assert by_symbol == {
            "EURUSD": (pytest.approx(200.0), 3),
            "XAUUSD": (pytest.approx(-40.0), 1),
            "GBPUSD": (pytest.approx(7.0), 1),
        }
        assert [row["symbol"] for row in r.realised_by_symbol()] == [
            "EURUSD",
            "GBPUSD",
            "XAUUSD",
        ]  # best first
        later = {row["symbol"]: row["profit"] for row in r.realised_by_symbol(since_ts=T0 + DAY)}
        assert later == {
            "EURUSD": pytest.approx(60.0),
            "XAUUSD": pytest.approx(-40.0),
            "GBPUSD": pytest.approx(7.0),
        }


def test_realised_by_day(realised_book: Store, db_path: Path) -> None:
    with Reader(db_path) as r:
        by_day = [(d["day"], d["profit"], d["positions"]) for d in r.realised_by_day()]
        assert by_day == [("2026-01-01", pytest.approx(140.0), 3), ("2026-01-02", pytest.approx(27.0), 4)]
        shifted = [(d["day"], d["profit"]) for d in r.realised_by_day(utc_offset_s=3600)]
        assert shifted == [("2026-01-01", pytest.approx(140.0)), ("2026-01-03", pytest.approx(27.0))]
