"""Migrations, connection settings and file permissions of the writer's database."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest
from sqlite_utils import Database

from fxnb.errors import StorageError
from fxnb.models import CloseStatus
from fxnb.storage import SCHEMA_VERSION, Store, schema

EXPECTED_COLUMNS = {
    "position_tracking": {
        "ticket", "symbol", "type", "volume", "original_volume", "open_price", "current_price", "profit",
        "swap", "profit_percent", "sl", "tp", "magic", "identifier", "comment", "open_time",
        "open_time_server", "first_seen", "last_update", "status", "closed_at", "close_reason",
        "realised_profit", "partial_closed_at",
    },
    "position_book": {
        "ticket", "symbol", "type", "volume", "original_volume", "open_price", "sl", "tp", "magic", "identifier",
        "comment", "open_time", "open_time_server", "first_seen", "status", "closed_at", "close_reason",
        "realised_profit", "partial_closed_at",
    },
    "position_marks": {"ticket", "current_price", "profit", "swap", "profit_percent", "last_update"},
    "profit_monitoring": {
        "id", "timestamp", "ts", "total_positions", "total_profit", "total_loss", "net_profit", "balance",
        "equity", "margin", "margin_free", "margin_level", "currency", "login", "resolution",
    },
    "position_close_operations": {
        "id", "command_id", "operation_type", "status", "source", "requested_by", "params", "target_tickets",
        "timestamp", "created_at", "claimed_at", "finished_at", "expires_at", "positions_closed",
        "positions_failed", "total_profit_closed", "total_loss_closed", "error_message", "file_name",
    },
    "close_results": {
        "id", "operation_id", "ticket", "symbol", "requested_volume", "closed_volume", "price", "profit",
        "retcode", "message", "status", "deals", "attempts", "finished_at",
    },
    "monitor_heartbeat": {
        "id", "pid", "hostname", "version", "started_at", "updated_at", "updated_ts", "last_poll_at",
        "last_poll_ok", "poll_duration_ms", "connected", "terminal_trade_allowed", "last_error", "rules_mode",
        "rules_paused", "check_interval", "open_positions", "queue_depth", "account_login",
        "account_currency", "state",
    },
    "monitor_events": {"id", "at", "level", "kind", "message", "data"},
    "rule_state": {"key", "value", "updated_at"},
}  # fmt: skip


def test_fresh_file_gets_every_table_and_the_migration_record(store: Store) -> None:
    db = store.db
    for table, columns in EXPECTED_COLUMNS.items():
        assert set(db[table].columns_dict) == columns, table
    assert schema.applied_migrations(db) == ["0001_initial", "0002_open_positions_index",
                                             "0003_partial_closed_index", "0004_position_marks"]
    assert SCHEMA_VERSION == "0004_position_marks"
    assert set(db.table_names()) >= set(schema.TABLES) and db.view_names() == list(schema.VIEWS)
    assert schema.schema_version(db) == SCHEMA_VERSION


def test_reopen_is_idempotent_and_keeps_rows(db_path: Path, clock) -> None:
    with Store.open(db_path, clock=clock) as s:
        s.event("info", "started", "first run")
        applied_first = schema.migrations.applied(s.db)
    with Store.open(db_path, clock=clock) as s:
        assert schema.apply_migrations(s.db) == []
        applied_again = schema.migrations.applied(s.db)
        assert s.db["monitor_events"].count == 1
    assert [(m.name, m.applied_at) for m in applied_again] == [(m.name, m.applied_at) for m in applied_first]


def test_connection_settings(store: Store) -> None:
    db = store.db
    assert db.journal_mode == "wal"
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == schema.BUSY_TIMEOUT_MS
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_wal_is_restored_on_open(db_path: Path, clock) -> None:
    Store.open(db_path, clock=clock).close()
    raw = sqlite3.connect(db_path)
    raw.execute("PRAGMA journal_mode=delete")
    raw.close()
    with Store.open(db_path, clock=clock) as s:
        assert s.db.journal_mode == "wal"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_file_is_owner_only_and_parent_created_0700(store: Store, db_path: Path) -> None:
    store.event("info", "x", "force a WAL write")
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700
    wal = db_path.with_name(db_path.name + "-wal")
    assert wal.exists()
    assert stat.S_IMODE(wal.stat().st_mode) == 0o600


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_existing_world_readable_file_is_tightened(tmp_path: Path, clock) -> None:
    path = tmp_path / "loose.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    Store.open(path, clock=clock).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("ddl", [
    "CREATE TABLE position_tracking (ticket INTEGER PRIMARY KEY, symbol TEXT NOT NULL)",  # the seed's
    "CREATE VIEW position_tracking AS SELECT 1 AS ticket",  # fxnb's name, as a view, without fxnb's record
    "CREATE TABLE position_book (ticket INTEGER PRIMARY KEY)",
])
def test_seed_database_is_refused(tmp_path: Path, clock, ddl: str) -> None:
    path = tmp_path / "seed.db"
    seed = Database(path)
    seed.execute(ddl)
    seed.close()
    with pytest.raises(StorageError, match="not created by fxnb"):
        Store.open(path, clock=clock)


def test_every_close_status_fits_the_check_constraint(store: Store) -> None:
    """CHECK lists are frozen in 0001_initial; a new CloseStatus needs a new migration. This catches it."""
    db = store.db
    db.execute(
        "INSERT INTO position_close_operations (id, operation_type, source, created_at) "
        "VALUES (1, 'all', 'rule', 'x')"
    )
    for i, status in enumerate(CloseStatus):
        db.execute(
            "INSERT INTO close_results (operation_id, ticket, requested_volume, status, finished_at) "
            "VALUES (1, ?, 1.0, ?, 'x')",
            [i, status.value],
        )
    assert db["close_results"].count == len(CloseStatus)


def test_strict_tables_refuse_wrong_types(store: Store) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        store.db.execute(
            "INSERT INTO monitor_events (at, level, kind, message) VALUES (?, 'info', 'k', 'm')", [b"\x00"]
        )


def test_closed_store_refuses_calls(db_path: Path, clock) -> None:
    s = Store.open(db_path, clock=clock)
    s.close()
    with pytest.raises(StorageError, match="closed"):
        s.event("info", "x", "y")


# position_tracking is a view since 0004: its constraints live on the two tables under it.
POS = "INSERT INTO position_book (ticket, symbol, type, volume, original_volume, open_price, first_seen, "
MARKS = "INSERT INTO position_marks (ticket, current_price, profit, last_update) "


@pytest.mark.parametrize(
    "sql",
    [
        # A closed position without a close time, and an open one with a close time.
        POS + "status) VALUES (1, 'X', 'buy', 1, 1, 1, 'a', 'closed')",
        POS + "status, closed_at) VALUES (1, 'X', 'buy', 1, 1, 1, 'a', 'open', 'b')",
        # The seed's upper-case side.
        POS + "status) VALUES (1, 'X', 'BUY', 1, 1, 1, 'a', 'open')",
        # A quote without a price, and a price that is not a number.
        MARKS + "VALUES (1, NULL, 0, 'a')",
        MARKS + "VALUES (1, 'x', 0, 'a')",
        # A final operation without finished_at, and a processing one never claimed.
        "INSERT INTO position_close_operations (operation_type, source, created_at, status) "
        "VALUES ('all', 'operator', 'a', 'completed')",
        "INSERT INTO position_close_operations (operation_type, source, created_at, status) "
        "VALUES ('all', 'operator', 'a', 'processing')",
        # Broken JSON in an audit column.
        "INSERT INTO position_close_operations (operation_type, source, created_at, params) "
        "VALUES ('all', 'operator', 'a', '{not json')",
        # A second heartbeat row.
        "INSERT INTO monitor_heartbeat (id, updated_at, updated_ts) VALUES (2, 'a', 0)",
    ],
)
def test_schema_refuses_inconsistent_rows(store: Store, sql: str) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        store.db.execute(sql)


def test_schema_accepts_the_consistent_version(store: Store) -> None:
    """Control for the test above: the same statement with consistent values is accepted."""
    store.db.execute(POS + "status) VALUES (1, 'X', 'buy', 1, 1, 1, 'a', 'open')")
    store.db.execute(MARKS + "VALUES (1, 1, 0, 'a')")
    store.db.execute(
        "INSERT INTO position_close_operations (operation_type, source, created_at, status, finished_at) "
        "VALUES ('all', 'operator', 'a', 'completed', 'b')"
    )
    assert store.db["position_tracking"].count == 1
    assert store.db["position_close_operations"].count == 1
