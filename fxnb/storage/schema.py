"""The fxnb database schema: the only module in fxnb that issues DDL.

Schema changes are named, recorded steps in ``Migrations("fxnb")``
(sqlite-utils 4), applied by the writer every time it opens the file. A step,
once released, is never edited: a change is a new step (``0002_...``), so an
operator's existing database and a fresh one always end up identical.

Connection settings that are not schema (WAL, busy timeout, synchronous,
foreign keys) are applied by :func:`configure_writer` on every open, because
most of them are per-connection and WAL must be re-asserted on a restored copy.

Conventions every table follows:

* timestamps are ISO-8601 UTC text with a ``Z`` and milliseconds (see
  ``_codec.iso_utc``); ``profit_monitoring`` also keeps the epoch in ``ts`` for
  indexed range scans;
* JSON columns are checked with ``json_valid``;
* loss totals (``total_loss``, ``total_loss_closed``) are **absolute values**
  (>= 0), as in the seed, so ``net = profit_total - loss_total``;
* tables are ``STRICT`` (SQLite >= 3.37, bundled with every Python fxnb
  supports), so a wrongly typed value fails loudly instead of being stored.
"""

from __future__ import annotations

import sqlite3

from sqlite_utils import Database, Migrations

from fxnb.errors import StorageError

BUSY_TIMEOUT_MS = 5000
"""How long a connection waits for a lock before ``database is locked``.

The writer commits small transactions many times a second; readers in Voila
kernels must never fail because they arrived during one."""

migrations = Migrations("fxnb")

# The tables and views fxnb creates. position_tracking was a table up to 0003 and is a view over
# position_book and position_marks since 0004. apply_migrations refuses a file that has any of these
# names, as a table or a view, without fxnb's record (the seed's has a position_tracking table).
TABLES: tuple[str, ...] = (
    "position_book",
    "position_marks",
    "profit_monitoring",
    "position_close_operations",
    "close_results",
    "monitor_heartbeat",
    "monitor_events",
    "rule_state",
)
VIEWS: tuple[str, ...] = ("position_tracking",)

OPERATION_STATUSES: tuple[str, ...] = (
    "pending",
    "processing",
    "completed",
    "partially_completed",
    "failed",
    "expired",
    "rejected",
)
UNFINISHED_STATUSES: tuple[str, ...] = ("pending", "processing")
FINAL_STATUSES: tuple[str, ...] = ("completed", "partially_completed", "failed", "expired", "rejected")
CLOSE_REASONS: tuple[str, ...] = ("command", "rule", "external")
SOURCES: tuple[str, ...] = ("operator", "rule")
EVENT_LEVELS: tuple[str, ...] = ("info", "warning", "error")
MONITOR_STATES: tuple[str, ...] = ("starting", "running", "reconnecting", "stopped")


_INITIAL = """
-- One row per ticket ever seen. Rows are never deleted: a position that is no
-- longer on the terminal becomes status='closed' with how and for how much.
CREATE TABLE position_tracking (
    ticket INTEGER PRIMARY KEY,
    symbol TEXT NOT NULL,
    type TEXT NOT NULL CHECK (type IN ('buy', 'sell')),
    volume REAL NOT NULL,                 -- current volume, updated after partial closes
    original_volume REAL NOT NULL,        -- largest volume seen (netting positions can grow)
    open_price REAL NOT NULL,
    current_price REAL NOT NULL,
    profit REAL NOT NULL,                 -- floating, account currency, without swap (terminal's value)
    swap REAL NOT NULL DEFAULT 0,
    profit_percent REAL,                  -- the rules' basis value, computed by the caller; NULL if none
    sl REAL NOT NULL DEFAULT 0,
    tp REAL NOT NULL DEFAULT 0,
    magic INTEGER NOT NULL DEFAULT 0,
    identifier INTEGER NOT NULL DEFAULT 0,
    comment TEXT NOT NULL DEFAULT '',
    open_time TEXT,                       -- UTC (server time minus the server offset)
    open_time_server INTEGER,             -- the terminal's value, server-time epoch seconds
    first_seen TEXT NOT NULL,
    last_update TEXT NOT NULL,            -- when any stored value last changed
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    closed_at TEXT,
    close_reason TEXT CHECK (close_reason IN ('command', 'rule', 'external')),
    realised_profit REAL,                 -- total over the position's life, from deals
    partial_closed_at TEXT,               -- the once-per-position partial rule has fired
    CHECK ((status = 'closed') = (closed_at IS NOT NULL))
) STRICT;
CREATE INDEX idx_position_tracking_status ON position_tracking (status);
CREATE INDEX idx_position_tracking_closed_at ON position_tracking (closed_at);

-- Account snapshots. Raw rows (resolution = 0) are downsampled by the writer's
-- prune_history into one row per bucket (resolution = bucket seconds).
CREATE TABLE profit_monitoring (
    id INTEGER PRIMARY KEY,
    timestamp TEXT NOT NULL,
    ts REAL NOT NULL,                     -- the same instant, epoch seconds, for indexed ranges
    total_positions INTEGER NOT NULL,
    total_profit REAL NOT NULL,           -- sum of winners' profit + swap
    total_loss REAL NOT NULL,             -- absolute sum of losers' profit + swap
    net_profit REAL NOT NULL,             -- total_profit - total_loss
    balance REAL NOT NULL,
    equity REAL NOT NULL,
    margin REAL NOT NULL,
    margin_free REAL NOT NULL,
    margin_level REAL NOT NULL,
    currency TEXT NOT NULL,
    login INTEGER,
    resolution INTEGER NOT NULL DEFAULT 0 CHECK (resolution >= 0)
) STRICT;
CREATE INDEX idx_profit_monitoring_ts ON profit_monitoring (ts);
CREATE INDEX idx_profit_monitoring_resolution_ts ON profit_monitoring (resolution, ts);

-- The command and audit table: one row per command id (operator files) or per
-- rule decision. command_id is UNIQUE: a command executes at most once, ever.
CREATE TABLE position_close_operations (
    id INTEGER PRIMARY KEY,
    command_id TEXT UNIQUE,               -- NULL only for a rejected file that had no readable id
    operation_type TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN (
        'pending', 'processing', 'completed', 'partially_completed', 'failed', 'expired', 'rejected')),
    source TEXT NOT NULL CHECK (source IN ('operator', 'rule')),
    requested_by TEXT,
    params TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(params)),
    target_tickets TEXT CHECK (target_tickets IS NULL OR json_valid(target_tickets)),
    timestamp TEXT,                       -- the command's own timestamp, as written by its producer
    created_at TEXT NOT NULL,             -- when the monitor recorded it
    claimed_at TEXT,
    finished_at TEXT,
    expires_at TEXT,
    positions_closed INTEGER NOT NULL DEFAULT 0,
    positions_failed INTEGER NOT NULL DEFAULT 0,
    total_profit_closed REAL NOT NULL DEFAULT 0,
    total_loss_closed REAL NOT NULL DEFAULT 0,   -- absolute value
    error_message TEXT,
    file_name TEXT,
    CHECK ((status IN ('pending', 'processing')) = (finished_at IS NULL)),
    CHECK (status != 'processing' OR claimed_at IS NOT NULL)
) STRICT;
CREATE INDEX idx_pco_unfinished ON position_close_operations (status)
    WHERE status IN ('pending', 'processing');
CREATE INDEX idx_pco_created_at ON position_close_operations (created_at);

-- What happened to each ticket of an operation. Realised profit from deals.
CREATE TABLE close_results (
    id INTEGER PRIMARY KEY,
    operation_id INTEGER NOT NULL REFERENCES position_close_operations (id),
    ticket INTEGER NOT NULL,
    symbol TEXT NOT NULL DEFAULT '',
    requested_volume REAL NOT NULL,
    closed_volume REAL NOT NULL DEFAULT 0,
    price REAL NOT NULL DEFAULT 0,
    profit REAL NOT NULL DEFAULT 0,
    retcode INTEGER,
    message TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL CHECK (status IN ('closed', 'partial', 'already_closed', 'failed', 'dry_run')),
    deals TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(deals)),
    attempts INTEGER NOT NULL DEFAULT 0,
    finished_at TEXT NOT NULL,
    UNIQUE (operation_id, ticket)
) STRICT;
CREATE INDEX idx_close_results_ticket ON close_results (ticket);
CREATE INDEX idx_close_results_finished_at ON close_results (finished_at);

-- Exactly one row (id = 1): is the monitor alive, connected, keeping up?
CREATE TABLE monitor_heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pid INTEGER,
    hostname TEXT,
    version TEXT,
    started_at TEXT,
    updated_at TEXT NOT NULL,
    updated_ts REAL NOT NULL,             -- updated_at as epoch, so staleness is one subtraction
    last_poll_at TEXT,
    last_poll_ok INTEGER CHECK (last_poll_ok IN (0, 1)),
    poll_duration_ms REAL,
    connected INTEGER CHECK (connected IN (0, 1)),
    terminal_trade_allowed INTEGER CHECK (terminal_trade_allowed IN (0, 1)),
    last_error TEXT,
    rules_mode TEXT,
    rules_paused INTEGER CHECK (rules_paused IN (0, 1)),
    check_interval REAL,
    open_positions INTEGER,
    queue_depth INTEGER,
    account_login INTEGER,
    account_currency TEXT,
    state TEXT CHECK (state IN ('starting', 'running', 'reconnecting', 'stopped'))
) STRICT;

-- Things an operator should be able to read later: rule closes, failures, disconnects.
CREATE TABLE monitor_events (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    level TEXT NOT NULL CHECK (level IN ('info', 'warning', 'error')),
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT CHECK (data IS NULL OR json_valid(data))
) STRICT;
CREATE INDEX idx_monitor_events_at ON monitor_events (at);

-- Small durable state that must survive restarts (rules paused, high-water marks).
CREATE TABLE rule_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL CHECK (json_valid(value)),
    updated_at TEXT NOT NULL
) STRICT;
"""


@migrations(name="0001_initial")
def _0001_initial(db: Database) -> None:
    """Create every table. Plain ``CREATE TABLE`` (no ``IF NOT EXISTS``): a clash fails loudly."""
    db.executescript(_INITIAL)


# Reader.open_positions (the dashboard, every second) asks for the open book "ORDER BY symbol,
# ticket": with only the status index SQLite sorted it in a temporary B-tree on every call. This
# index returns it already in that order (EXPLAIN QUERY PLAN: "SEARCH position_tracking USING INDEX
# idx_position_tracking_status_symbol (status=?)", no "USE TEMP B-TREE"). ticket is the rowid, which
# every index ends with anyway; it is listed so the order does not depend on knowing that. Polls do
# not touch it: a price update changes neither status nor symbol.
@migrations(name="0002_open_positions_index")
def _0002_open_positions_index(db: Database) -> None:
    db.execute("CREATE INDEX idx_position_tracking_status_symbol ON position_tracking (status, symbol, ticket)")


# Store.partial_closed_tickets (the profit rules' input, every poll with the rules on) asks for the
# open positions whose partial close has run. Through the status index that read every open row
# (1.2 ms at 10,000 positions). This partial index holds only positions that were ever partly closed
# by the rule (a few), and answers the query alone: EXPLAIN QUERY PLAN "SEARCH position_tracking USING
# COVERING INDEX idx_position_tracking_partial_closed (status=? AND partial_closed_at>?)". (Keyed on
# ticket with the status in its WHERE instead, SQLite without statistics kept the status index.)
# Polls do not touch it: a price update changes neither status nor partial_closed_at.
@migrations(name="0003_partial_closed_index")
def _0003_partial_closed_index(db: Database) -> None:
    db.execute("CREATE INDEX idx_position_tracking_partial_closed ON position_tracking (status, partial_closed_at) "
               "WHERE partial_closed_at IS NOT NULL")


# The poll rewrote every open row of position_tracking (24 columns, ~200 bytes) although only the
# quote moves between polls: 10,000 such UPDATEs took ~20 ms per poll, the same UPDATEs of a table
# holding only the quote columns ~9.5 ms (bench 2 at 10,000 positions: store.sync_positions went from
# 30.5 to 18.7 ms median). So the position is split in two tables, one row each per ticket, written
# in the same transaction:
# * position_book: what describes the position (volume, SL/TP, status, close...); changes rarely;
# * position_marks: the quote columns and last_update, which the poll rewrites.
# position_tracking stays, as a view returning the old columns in the old order, so every query
# written against the table (the readers', the quants' SELECT * FROM position_tracking) reads the
# same values; PRAGMA table_info(position_tracking) differs only in what a view cannot declare
# (NOT NULL, defaults, primary key), which the base tables still enforce.
# The view is book LEFT JOIN marks. Every book row has its marks row, so this returns what an inner
# join would; but the book is always the outer loop, so the indexes below keep serving the readers:
# EXPLAIN QUERY PLAN of Reader.open_positions "SEARCH b USING INDEX idx_position_book_status_symbol
# (status=?)" then "SEARCH m USING INTEGER PRIMARY KEY (rowid=?) LEFT-JOIN", no "USE TEMP B-TREE";
# and a query that reads only book columns skips the marks entirely (SQLite omits a LEFT JOIN on the
# right table's primary key whose columns are unused): Store.partial_closed_tickets is still the one
# step "SEARCH b USING COVERING INDEX idx_position_book_partial_closed (status=? AND partial_closed_at>?)".
# The indexes of 0001-0003 go with the old table and are made again on the book, same columns, same
# WHERE, except 0001's single-column status index: (status, symbol, ticket) answers every lookup by
# status as well, and each close or new position paid for updating both (close-all of 1,000: ~3 ms).
# No statement here may be an executescript: that would commit the migration's transaction.
_POSITION_MARKS: tuple[str, ...] = (
    """
    -- One row per ticket ever seen (position_tracking without the quote): see 0001 for the rules.
    CREATE TABLE position_book (
        ticket INTEGER PRIMARY KEY,
        symbol TEXT NOT NULL,
        type TEXT NOT NULL CHECK (type IN ('buy', 'sell')),
        volume REAL NOT NULL,                 -- current volume, updated after partial closes
        original_volume REAL NOT NULL,        -- largest volume seen (netting positions can grow)
        open_price REAL NOT NULL,
        sl REAL NOT NULL DEFAULT 0,
        tp REAL NOT NULL DEFAULT 0,
        magic INTEGER NOT NULL DEFAULT 0,
        identifier INTEGER NOT NULL DEFAULT 0,
        comment TEXT NOT NULL DEFAULT '',
        open_time TEXT,                       -- UTC (server time minus the server offset)
        open_time_server INTEGER,             -- the terminal's value, server-time epoch seconds
        first_seen TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
        closed_at TEXT,
        close_reason TEXT CHECK (close_reason IN ('command', 'rule', 'external')),
        realised_profit REAL,                 -- total over the position's life, from deals
        partial_closed_at TEXT,               -- the once-per-position partial rule has fired
        CHECK ((status = 'closed') = (closed_at IS NOT NULL))
    ) STRICT
    """,
    """
    -- The quote of each position_book row (same ticket), the only columns a poll rewrites.
    CREATE TABLE position_marks (
        ticket INTEGER PRIMARY KEY,
        current_price REAL NOT NULL,
        profit REAL NOT NULL,                 -- floating, account currency, without swap (terminal's value)
        swap REAL NOT NULL DEFAULT 0,
        profit_percent REAL,                  -- the rules' basis value, computed by the caller; NULL if none
        last_update TEXT NOT NULL             -- when any stored value of the position (book or marks) last changed
    ) STRICT
    """,
    """
    INSERT INTO position_book (ticket, symbol, type, volume, original_volume, open_price, sl, tp, magic,
        identifier, comment, open_time, open_time_server, first_seen, status, closed_at, close_reason,
        realised_profit, partial_closed_at)
    SELECT ticket, symbol, type, volume, original_volume, open_price, sl, tp, magic, identifier, comment,
        open_time, open_time_server, first_seen, status, closed_at, close_reason, realised_profit, partial_closed_at
    FROM position_tracking
    """,
    """
    INSERT INTO position_marks (ticket, current_price, profit, swap, profit_percent, last_update)
    SELECT ticket, current_price, profit, swap, profit_percent, last_update FROM position_tracking
    """,
    "DROP TABLE position_tracking",
    "CREATE INDEX idx_position_book_closed_at ON position_book (closed_at)",
    "CREATE INDEX idx_position_book_status_symbol ON position_book (status, symbol, ticket)",
    "CREATE INDEX idx_position_book_partial_closed ON position_book (status, partial_closed_at) "
    "WHERE partial_closed_at IS NOT NULL",
    """
    -- What position_tracking was up to 0003: the same columns in the same order, read-only.
    CREATE VIEW position_tracking AS
    SELECT b.ticket, b.symbol, b.type, b.volume, b.original_volume, b.open_price, m.current_price, m.profit,
        m.swap, m.profit_percent, b.sl, b.tp, b.magic, b.identifier, b.comment, b.open_time, b.open_time_server,
        b.first_seen, m.last_update, b.status, b.closed_at, b.close_reason, b.realised_profit, b.partial_closed_at
    FROM position_book b LEFT JOIN position_marks m ON m.ticket = b.ticket
    """,
)


@migrations(name="0004_position_marks")
def _0004_position_marks(db: Database) -> None:
    for statement in _POSITION_MARKS:
        db.execute(statement)


SCHEMA_VERSION: str = "0004_position_marks"
"""Name of the newest migration; :func:`schema_version` reports what a file has."""


def configure_writer(db: Database) -> None:
    """Per-connection settings for the one writer. Must run outside a transaction.

    * WAL: readers never block the writer and the writer never blocks readers,
      which is what lets dashboards poll while the monitor commits.
    * ``synchronous=NORMAL``: with WAL a commit is durable against a process
      crash, and an OS crash can lose only the last commits, never corrupt the
      file; it avoids an fsync on every poll.
    * ``foreign_keys=ON``: a close result can only belong to a real operation.
    """
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    db.enable_wal()
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA foreign_keys = ON")


def configure_reader(db: Database) -> None:
    """Per-connection settings for read-only connections: wait for locks, refuse writes."""
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA query_only = ON")


def applied_migrations(db: Database) -> list[str]:
    """Names of the fxnb migrations recorded in ``db``, in the order applied."""
    return [m.name for m in migrations.applied(db)]


def schema_version(db: Database) -> str | None:
    """The newest applied fxnb migration, or ``None`` for a file fxnb never migrated."""
    names = applied_migrations(db)
    return names[-1] if names else None


def apply_migrations(db: Database) -> list[str]:
    """Apply pending migrations; returns the names applied now (empty when up to date).

    Refuses a database that already has fxnb's table or view names but no fxnb
    migration record: that is the seed's database (or a hand-made one), whose
    CHECK constraints and column meanings differ. Adopting it silently would
    mix two meanings of ``profit_percent`` and ``id`` in one audit trail.
    """
    if not applied_migrations(db):
        foreign = sorted(set(db.table_names() + db.view_names()).intersection(TABLES + VIEWS))
        if foreign:
            raise StorageError(
                f"database has tables {', '.join(foreign)} but no fxnb schema record; "
                "it was not created by fxnb (the seed's database?). Point fxnb at a new file."
            )
    pending = [m.name for m in migrations.pending(db)]
    try:
        migrations.apply(db)
    except sqlite3.Error as exc:
        raise StorageError(f"could not apply schema migrations: {exc}") from exc
    return pending


# Realised P/L rows (ticket, symbol, profit, at): fxnb's own closes from close_results, plus for
# positions closed outside fxnb their realised_profit less what fxnb already counted.
REALISED_CTE = """
WITH fx AS (
    SELECT ticket, symbol, profit, finished_at AS at
    FROM close_results WHERE status IN ('closed', 'partial')
),
fx_by_ticket AS (SELECT ticket, SUM(profit) AS profit FROM fx GROUP BY ticket),
rest AS (
    SELECT p.ticket, p.symbol, p.realised_profit - COALESCE(f.profit, 0.0) AS profit, p.closed_at AS at
    FROM position_tracking p LEFT JOIN fx_by_ticket f ON f.ticket = p.ticket
    WHERE p.status = 'closed' AND p.realised_profit IS NOT NULL
      AND (p.close_reason = 'external' OR f.ticket IS NULL)
),
realised AS (SELECT ticket, symbol, profit, at FROM fx UNION ALL SELECT ticket, symbol, profit, at FROM rest)
"""
