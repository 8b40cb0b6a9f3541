"""The monitor's side of the database: the one and only writer.

Only the monitor opens a :class:`Store`. Dashboards, notebooks and the CLI use
:class:`fxnb.storage.reader.Reader`, which cannot write. Every method here is
one ``db.atomic()`` transaction, so a reader never sees half a poll.

Times are epoch seconds (UTC) in and ISO-8601 ``...Z`` text in the database.
A method that needs "now" and is not given one asks the ``clock`` injected at
construction, so tests are deterministic.

A ``Store`` may be created on one thread and used from another (APScheduler
runs plain jobs in a pool): the connection is opened with
``check_same_thread=False`` and every public method holds one lock, so calls
are serialised even if the monitor slips.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from operator import gt, lt
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlite_utils import Database

from fxnb.errors import StorageError
from fxnb.gcpause import gc_paused
from fxnb.models import Account, CloseResult, Position, Snapshot
from fxnb.storage import schema
from fxnb.storage._codec import Timestamp, decode_row, dumps, iso_or_none, iso_utc, to_epoch, to_iso
from fxnb.storage._conn import Connection

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

P = ParamSpec("P")
R = TypeVar("R")


class DuplicateCommand(StorageError):
    """A command id that is already recorded. The command must not run again.

    This is how "each id executes at most once, across restarts too" is
    enforced: ``command_id`` is UNIQUE in ``position_close_operations``.
    ``status`` is the recorded operation's status, for the error file.
    """

    def __init__(self, command_id: str, status: str | None = None) -> None:
        super().__init__(f"command {command_id!r} was already received (status: {status or 'unknown'})")
        self.command_id = command_id
        self.status = status


@dataclass(frozen=True)
class SyncResult:
    """What :meth:`Store.sync_positions` found, ticket numbers sorted ascending.

    ``disappeared`` positions are still ``'open'`` in the database: the caller
    reads their realised P/L from the deal history and then calls
    :meth:`Store.mark_closed`. Until it does, they are reported again on every
    sync, so a crash between the two steps loses nothing.
    """

    appeared: tuple[int, ...]
    changed: tuple[int, ...]
    disappeared: tuple[int, ...]
    reopened: tuple[int, ...] = ()  # subset of ``appeared`` that had been marked closed before
    resized: tuple[int, ...] = ()  # subset of ``changed`` whose volume changed (a partial close, a netting add)
    unchanged: int = 0


@dataclass(frozen=True)
class PruneResult:
    """What one :meth:`Store.prune_history` call removed. ``done`` is False when the work budget ran out."""

    expired: int
    downsampled: int
    events: int
    done: bool


# What sync_positions compares to decide that a position "changed", in this order
# (ticket first); the SQL below refers to them as ?1..?13. The "quote" columns
# come last: usually only they move, and a narrower UPDATE is ~30 % cheaper.
# symbol and open time never change for a ticket; open_price and type can on
# netting accounts.
_POS_COLUMNS = (
    "ticket",
    "type",
    "volume",
    "open_price",
    "sl",
    "tp",
    "magic",
    "identifier",
    "comment",
    "current_price",  # _QUOTE_START
    "profit",
    "swap",
    "profit_percent",
)
_QUOTE_START = 9
# sync_positions builds these values as a tuple display in its loop: on Position instances the
# interpreter's specialised attribute loads are over twice as fast as operator.attrgetter.
# Side is a str enum, so Side.BUY == "buy".
_POSITIVE = partial(lt, 0.0)  # x > 0
_NEGATIVE = partial(gt, 0.0)  # x < 0

# ?14 = last_update.
_UPDATE_POSITION = """
UPDATE position_tracking SET type = ?2, volume = ?3, original_volume = MAX(original_volume, ?3),
    open_price = ?4, sl = ?5, tp = ?6, magic = ?7, identifier = ?8, comment = ?9,
    current_price = ?10, profit = ?11, swap = ?12, profit_percent = ?13, last_update = ?14
WHERE ticket = ?1
"""
_UPDATE_QUOTE = """
UPDATE position_tracking SET current_price = ?2, profit = ?3, swap = ?4, profit_percent = ?5, last_update = ?6
WHERE ticket = ?1
"""
# ?14 = first_seen/last_update, ?15 = symbol, ?16 = open time as UTC epoch, ?17 = open time as server epoch.
# open_time is formatted by SQLite in the same spelling as _codec.iso_utc (it is the slow part in Python).
_INSERT_POSITION = """
INSERT INTO position_tracking (ticket, symbol, type, volume, original_volume, open_price, current_price,
    profit, swap, sl, tp, magic, identifier, comment, profit_percent, open_time, open_time_server,
    first_seen, last_update, status)
VALUES (?1, ?15, ?2, ?3, ?3, ?4, ?10, ?11, ?12, ?5, ?6, ?7, ?8, ?9, ?13,
    strftime('%Y-%m-%dT%H:%M:%fZ', ?16, 'unixepoch'), ?17, ?14, ?14, 'open')
ON CONFLICT (ticket) DO UPDATE SET
    symbol = excluded.symbol, type = excluded.type, volume = excluded.volume,
    original_volume = MAX(original_volume, excluded.volume), open_price = excluded.open_price,
    current_price = excluded.current_price, profit = excluded.profit, swap = excluded.swap,
    profit_percent = excluded.profit_percent, sl = excluded.sl, tp = excluded.tp, magic = excluded.magic,
    identifier = excluded.identifier, comment = excluded.comment, last_update = excluded.last_update,
    status = 'open', closed_at = NULL, close_reason = NULL, realised_profit = NULL
"""

_HEARTBEAT_FIELDS = frozenset(
    {
        "pid",
        "hostname",
        "version",
        "started_at",
        "last_poll_at",
        "last_poll_ok",
        "poll_duration_ms",
        "connected",
        "terminal_trade_allowed",
        "last_error",
        "rules_mode",
        "rules_paused",
        "check_interval",
        "open_positions",
        "queue_depth",
        "account_login",
        "account_currency",
        "state",
    }
)

_CLOSED_STATUSES = "('closed', 'partial')"  # results where something was actually closed
# An operation's totals from its close_results (realised, from deals), for an UPDATE with :id.
_OP_TOTALS = f"""positions_closed = (SELECT COUNT(*) FROM close_results
        WHERE operation_id = :id AND status IN {_CLOSED_STATUSES}),
    positions_failed = (SELECT COUNT(*) FROM close_results WHERE operation_id = :id AND status = 'failed'),
    total_profit_closed = (SELECT COALESCE(SUM(profit), 0.0) FROM close_results
        WHERE operation_id = :id AND status IN {_CLOSED_STATUSES} AND profit > 0),
    total_loss_closed = (SELECT COALESCE(-SUM(profit), 0.0) FROM close_results
        WHERE operation_id = :id AND status IN {_CLOSED_STATUSES} AND profit < 0)"""

_UPSERT_RESULT = """
INSERT INTO close_results (operation_id, ticket, symbol, requested_volume, closed_volume,
    price, profit, retcode, message, status, deals, attempts, finished_at)
VALUES (?, ?,
    COALESCE(NULLIF(?, ''), (SELECT symbol FROM position_tracking WHERE ticket = ?), ''),
    ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (operation_id, ticket) DO UPDATE SET
    symbol = excluded.symbol, requested_volume = excluded.requested_volume,
    closed_volume = excluded.closed_volume, price = excluded.price, profit = excluded.profit,
    retcode = excluded.retcode, message = excluded.message, status = excluded.status,
    deals = excluded.deals, attempts = excluded.attempts, finished_at = excluded.finished_at"""


def _result_row(op_id: int, res: CloseResult, finished_at: str) -> tuple[Any, ...]:
    """The parameters of ``_UPSERT_RESULT``. Deal tickets are ints: their JSON is spelled directly."""
    deals = res.deals
    if all(type(d) is int for d in deals):
        deals_json = "[" + ",".join(map(str, deals)) + "]"  # == dumps(list(deals)), without the encoder
    else:
        deals_json = dumps(list(deals))
    return (op_id, res.ticket, res.symbol, res.ticket, res.requested_volume, res.closed_volume, res.price,
            res.profit, res.retcode, res.message, res.status.value, deals_json, res.attempts, finished_at)


# The monitor's bulk closes write clean whole-close results at most this many tickets, or this many
# seconds, late (one transaction per batch); Engine._close_tickets explains why that is crash-safe.
# 200: a close-all of 1,000 spends 18 ms recording instead of 25 ms at 50 (bench 3); the time bound
# keeps the dashboard at most 0.1 s behind either way.
CLOSE_BATCH_TICKETS = 200
CLOSE_BATCH_SECONDS = 0.1


@dataclass(frozen=True)
class CloseRecord:
    """One ticket's outcome for :meth:`Store.record_closes`.

    ``close_reason`` (``'command'``/``'rule'``) also marks the tracked position closed at
    ``finished_at`` with ``result.profit``; ``partial`` also records the once-per-position
    partial close. ``finished_at`` None means the store's clock, now.
    """

    result: CloseResult
    finished_at: Timestamp | None = None
    close_reason: str | None = None
    partial: bool = False


def _writes(method: Callable[Concatenate[Store, P], R]) -> Callable[Concatenate[Store, P], R]:
    """Serialise the call and turn sqlite errors into :class:`StorageError` (the project's boundary rule)."""

    @functools.wraps(method)
    def wrapper(self: Store, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._lock:
            if self._db is None:
                raise StorageError(f"store {self.path} is closed")
            try:
                return method(self, *args, **kwargs)
            except StorageError:
                raise
            except sqlite3.Error as exc:
                self._open_cache = None  # the transaction rolled back; re-read the truth next time
                raise StorageError(f"{method.__name__} failed on {self.path}: {exc}") from exc

    return wrapper


def _create_private_file(path: Path) -> None:
    """Create the database file 0600 (parent 0700) before SQLite opens it.

    The file holds the account's positions and the operator audit trail.
    SQLite creates ``-wal``/``-shm`` with the main file's permissions, so they
    inherit 0600. An existing file with group/other bits is tightened.
    """
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if os.name == "posix" and mode & 0o077:
            logger.warning("database %s had mode %o; tightening to 0600", path, mode)
            path.chmod(0o600)
    else:
        os.close(fd)


class Store(Connection):
    """Write access to the fxnb database. Open with :meth:`Store.open`; one per monitor process."""

    what = "store"

    def __init__(self, db: Database, path: Path, *, clock: Clock = time.time) -> None:
        """Wrap an already configured and migrated ``db``. Use :meth:`open` instead."""
        self._db: Database | None = db
        self.path = path
        self._clock = clock
        self._lock = threading.RLock()
        # ticket -> _POS_COLUMNS values of every row that is 'open' in the database.
        # Lets sync_positions skip unchanged rows without reading the table.
        self._open_cache: dict[int, tuple[Any, ...]] | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, clock: Clock = time.time) -> Store:
        """Open (creating if needed) the database at ``path`` and apply pending migrations."""
        p = Path(path)
        try:
            _create_private_file(p)
            conn = sqlite3.connect(str(p), timeout=schema.BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open database at {p}: {exc}") from exc
        db = Database(conn, execute_plugins=False)
        try:
            schema.configure_writer(db)
            schema.apply_migrations(db)
        except sqlite3.Error as exc:
            conn.close()
            raise StorageError(f"cannot open database at {p}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return cls(db, p, clock=clock)

    def _iso(self, at: Timestamp | None) -> str:
        """``at`` in the stored spelling, or the clock's "now" when it is None."""
        return to_iso(self._clock() if at is None else at)

    # -- positions ---------------------------------------------------------------------------

    def _load_open_cache(self) -> dict[int, tuple[Any, ...]]:
        if self._open_cache is None:
            rows = self.db.execute(
                f"SELECT {', '.join(_POS_COLUMNS)} FROM position_tracking WHERE status = 'open'"
            )
            self._open_cache = {row[0]: tuple(row) for row in rows}
        return self._open_cache

    @_writes
    def sync_positions(
        self,
        snapshot: Snapshot,
        *,
        server_offset_s: int,
        profit_percent: Mapping[int, float] | None = None,
    ) -> SyncResult:
        """Record every open position of a successful read of the book.

        New tickets are inserted, tickets whose values differ from the stored
        ones are updated (volume included, so a partial close shows), unchanged
        rows are not written. Only pass a snapshot from a read that succeeded:
        a failed read is not an empty book.

        :param server_offset_s: terminal server time minus UTC, in seconds; used
          once, when a ticket is first seen, to store ``open_time`` in UTC.
        :param profit_percent: ticket -> the rules' basis value (see
          ``position_tracking.profit_percent``); missing tickets store NULL.
        :return: tickets that appeared, changed and disappeared. Disappeared
          ones are left ``'open'``: see :class:`SyncResult`.
        """
        pct_get = (profit_percent or {}).get
        at = iso_utc(snapshot.taken_at)
        positions = snapshot.positions
        cache = self._load_open_cache()
        cache_get = cache.get
        new: dict[int, tuple[Any, ...]] = {}
        changed: list[int] = []
        quotes: list[tuple[Any, ...]] = []  # changed rows whose only changes are quote columns
        full: list[tuple[Any, ...]] = []  # changed rows with more than that
        q = _QUOTE_START
        reopened: list[int] = []
        resized: list[int] = []
        with gc_paused():
            try:
                # The cache is updated in place as rows are compared (a ticket twice in one book then
                # ends as its last copy, in the cache and in the table alike) and reset below if
                # anything fails before the commit: it must never claim what the table does not hold.
                for pos in positions:
                    ticket = pos.ticket
                    pct = pct_get(ticket)
                    values = (ticket, pos.side, pos.volume, pos.price_open, pos.sl, pos.tp, pos.magic,
                              pos.identifier, pos.comment, pos.price_current, pos.profit, pos.swap, pct)  # fmt: skip
                    old = cache_get(ticket)
                    if old is None:
                        new[ticket] = values
                    elif old != values:
                        cache[ticket] = values
                        changed.append(ticket)
                        if old[:q] == values[:q]:
                            quotes.append((ticket, pos.price_current, pos.profit, pos.swap, pct, at))
                        else:
                            full.append((*values, at))
                            if old[2] != values[2]:
                                resized.append(ticket)
                db = self.db
                with db.atomic():
                    if new:
                        reopened = [
                            row[0]
                            for row in db.execute(
                                "SELECT ticket FROM position_tracking "
                                "WHERE status = 'closed' AND ticket IN (SELECT value FROM json_each(?))",
                                [dumps(list(new))],
                            )
                        ]
                        by_ticket = {p.ticket: p for p in positions if p.ticket in new}
                        db.conn.executemany(
                            _INSERT_POSITION,
                            [
                                (*values, at, p.symbol, (p.time - server_offset_s) if p.time else None,
                                 p.time or None)
                                for ticket, values in new.items()
                                for p in (by_ticket[ticket],)
                            ],
                        )
                    if quotes:
                        db.conn.executemany(_UPDATE_QUOTE, quotes)
                    if full:
                        db.conn.executemany(_UPDATE_POSITION, full)
            except BaseException:
                self._open_cache = None  # re-read the truth next time
                raise
            cache.update(new)
            current = {p.ticket for p in positions}
            if len(current) < len(positions):  # a ticket twice (never from a real terminal)
                changed = list(set(changed))
            changed.sort()
            return SyncResult(
                appeared=tuple(sorted(new)),
                changed=tuple(changed),
                disappeared=tuple(sorted(cache.keys() - current)),
                reopened=tuple(sorted(reopened)),
                unchanged=len(positions) - len(new) - len(changed),
                resized=tuple(sorted(set(resized))),
            )

    @_writes
    def mark_closed(
        self, ticket: int, *, realised_profit: float | None, reason: str, closed_at: Timestamp | None = None
    ) -> bool:
        """Mark an open position closed.

        :param realised_profit: realised P/L from the deal history, ``None`` if
          it could not be read. For ``'external'`` pass the position's
          **total** over its life (all exit deals, fxnb's earlier partial
          closes included): reports subtract what ``close_results`` already
          counted. For ``'command'``/``'rule'`` reports count the operation's
          ``close_results`` instead, so either the last close's or the total
          profit is fine here.
        :param reason: ``'command'``, ``'rule'`` or ``'external'`` (closed outside fxnb).
        :return: False if the ticket is unknown or already closed (nothing written).
        """
        if reason not in schema.CLOSE_REASONS:
            raise ValueError(f"reason must be one of {schema.CLOSE_REASONS}, not {reason!r}")
        at = self._iso(closed_at)
        with self.db.atomic() as db:
            cur = db.execute(
                "UPDATE position_tracking SET status = 'closed', closed_at = ?, close_reason = ?, "
                "realised_profit = ?, last_update = ? WHERE ticket = ? AND status = 'open'",
                [at, reason, realised_profit, at, ticket],
            )
        if self._open_cache is not None:
            self._open_cache.pop(ticket, None)
        return cur.rowcount == 1

    @_writes
    def mark_partial_closed(self, ticket: int, at: Timestamp | None = None) -> bool:
        """Remember that the once-per-position partial close has run for ``ticket``.

        Kept in the database so it survives restarts (the seed forgot it and
        partial-closed the same winner every loop). The first time is kept.
        :return: False if the ticket is not an open position.
        """
        with self.db.atomic() as db:
            cur = db.execute(
                "UPDATE position_tracking SET partial_closed_at = COALESCE(partial_closed_at, ?) "
                "WHERE ticket = ? AND status = 'open'",
                [self._iso(at), ticket],
            )
        return cur.rowcount == 1

    @_writes
    def position(self, ticket: int) -> dict[str, Any] | None:
        """The tracked row of ``ticket`` (open or closed), e.g. its ``identifier`` for the deal history."""
        rows = list(self.db.query("SELECT * FROM position_tracking WHERE ticket = ?", [ticket]))
        return rows[0] if rows else None

    @_writes
    def partial_closed_tickets(self) -> set[int]:
        """Open tickets whose partial close has already happened (input to the rules)."""
        rows = self.db.execute(
            "SELECT ticket FROM position_tracking WHERE status = 'open' AND partial_closed_at IS NOT NULL"
        )
        return {row[0] for row in rows}

    # -- account history ---------------------------------------------------------------------

    @_writes
    def append_snapshot(self, account: Account, positions: Iterable[Position], at: Timestamp) -> int:
        """Append one ``profit_monitoring`` row; returns its id.

        Winners and losers are split on ``profit + swap`` (the seed ignored swap,
        so a "profit" could be a net loss). ``total_loss`` is the absolute sum.
        """
        pnl = [p.profit + p.swap for p in positions]
        epoch = to_epoch(at)
        winners = sum(filter(_POSITIVE, pnl))
        losers = -sum(filter(_NEGATIVE, pnl))
        with self.db.atomic() as db:
            cur = db.execute(
                "INSERT INTO profit_monitoring (timestamp, ts, total_positions, total_profit, "
                "total_loss, net_profit, balance, equity, margin, margin_free, margin_level, currency, "
                "login, resolution) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                [
                    iso_utc(epoch),
                    epoch,
                    len(pnl),
                    winners,
                    losers,
                    winners - losers,
                    account.balance,
                    account.equity,
                    account.margin,
                    account.margin_free,
                    account.margin_level,
                    account.currency,
                    account.login,
                ],
            )
        return int(cur.lastrowid or 0)

    @_writes
    def prune_history(
        self,
        *,
        now: Timestamp,
        retention_days: float,
        full_resolution_hours: float,
        downsample_seconds: int,
        max_rows: int = 100_000,
    ) -> PruneResult:
        """Keep ``profit_monitoring`` (and ``monitor_events``) bounded.

        * rows older than ``retention_days`` are deleted (events too);
        * raw rows older than ``full_resolution_hours`` are reduced to the
          **last** row of each ``downsample_seconds`` bucket (bucket =
          ``floor(ts / downsample_seconds)``), which gets ``resolution`` set.

        The downsampling edge is rounded down to a bucket boundary, so a bucket
        is always reduced whole, once. Rows already downsampled are not
        revisited (a later, coarser ``downsample_seconds`` applies to rows
        reduced from then on). Work is bounded: each step touches at most about
        ``max_rows`` rows, all through the ``ts`` indexes; ``done=False`` means
        call again (the monitor's next prune tick), e.g. after a year without pruning.
        """
        if downsample_seconds < 1:
            raise ValueError("downsample_seconds must be >= 1")
        if max_rows < 1:
            raise ValueError("max_rows must be >= 1")
        now = to_epoch(now)
        retention_cut = now - retention_days * 86400.0
        ds = int(downsample_seconds)
        full_cut = (int((now - full_resolution_hours * 3600.0) // ds)) * ds
        db = self.db
        with db.atomic():
            expired = db.execute(
                "DELETE FROM profit_monitoring WHERE id IN "
                "(SELECT id FROM profit_monitoring WHERE ts < ? ORDER BY ts LIMIT ?)",
                [retention_cut, max_rows],
            ).rowcount
            events = db.execute(
                "DELETE FROM monitor_events WHERE id IN "
                "(SELECT id FROM monitor_events WHERE at < ? ORDER BY at LIMIT ?)",
                [iso_utc(retention_cut), max_rows],
            ).rowcount
            budget_left = expired < max_rows and events < max_rows
            downsampled, ds_done = (0, False)
            if budget_left:
                downsampled, ds_done = self._downsample(ds, full_cut, max_rows)
        return PruneResult(
            expired=expired, downsampled=downsampled, events=events, done=budget_left and ds_done
        )

    def _downsample(self, ds: int, full_cut: float, max_rows: int) -> tuple[int, bool]:
        """One bounded step of downsampling raw rows before ``full_cut``, inside prune's transaction."""
        db = self.db
        row = db.execute(
            "SELECT MIN(ts) FROM profit_monitoring WHERE resolution = 0 AND ts < ?", [full_cut]
        ).fetchone()
        if row[0] is None:
            return 0, True
        lo = (int(row[0] // ds)) * ds
        # End of this step: the bucket boundary at or before the max_rows-th row after lo,
        # but always at least one whole bucket, and never past the full-resolution edge.
        nth = db.execute(
            "SELECT ts FROM profit_monitoring WHERE ts >= ? ORDER BY ts LIMIT 1 OFFSET ?", [lo, max_rows]
        ).fetchone()
        hi = full_cut if nth is None else min(full_cut, (int(nth[0] // ds)) * ds)
        if hi <= lo:
            hi = min(full_cut, lo + ds)
        deleted = db.execute(
            """
            DELETE FROM profit_monitoring WHERE id IN (
                SELECT id FROM (
                    SELECT id, ROW_NUMBER() OVER (
                        PARTITION BY CAST(ts / :ds AS INTEGER) ORDER BY ts DESC, id DESC) AS rn
                    FROM profit_monitoring WHERE ts >= :lo AND ts < :hi
                ) WHERE rn > 1
            )
            """,
            {"ds": ds, "lo": lo, "hi": hi},
        ).rowcount
        db.execute(
            "UPDATE profit_monitoring SET resolution = :ds WHERE ts >= :lo AND ts < :hi AND resolution < :ds",
            {"ds": ds, "lo": lo, "hi": hi},
        )
        return deleted, hi >= full_cut

    # -- operations (commands and rule closes) -------------------------------------------------

    @_writes
    def create_operation(
        self,
        command_id: str,
        operation_type: str,
        *,
        source: str,
        requested_by: str | None = None,
        params: Mapping[str, Any] | None = None,
        timestamp: Timestamp | None = None,
        created_at: Timestamp | None = None,
        expires_at: Timestamp | None = None,
        file_name: str | None = None,
    ) -> int:
        """Record a received command (or a rule's decision) as ``'pending'``; returns its row id.

        Call this **before** executing anything. :raises DuplicateCommand: if
        ``command_id`` was ever recorded, whatever its status, including by an
        earlier run of the monitor.

        :param timestamp: the command's own timestamp; a number is epoch
          seconds, text is stored as the producer wrote it.
        """
        if source not in schema.SOURCES:
            raise ValueError(f"source must be one of {schema.SOURCES}, not {source!r}")
        ts = _command_timestamp(timestamp)
        try:
            with self.db.atomic() as db:
                cur = db.execute(
                    "INSERT INTO position_close_operations (command_id, operation_type, status, source, "
                    "requested_by, params, timestamp, created_at, expires_at, file_name) "
                    "VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)",
                    [
                        str(command_id),
                        operation_type,
                        source,
                        requested_by,
                        dumps(dict(params or {})),
                        ts,
                        self._iso(created_at),
                        iso_or_none(expires_at),
                        file_name,
                    ],
                )
        except sqlite3.IntegrityError as exc:
            existing = self._operation_where("command_id = ?", [str(command_id)])
            if existing is None:
                raise
            raise DuplicateCommand(str(command_id), existing["status"]) from exc
        return int(cur.lastrowid or 0)

    def _operation_where(self, where: str, params: list[Any]) -> dict[str, Any] | None:
        rows = list(self.db.query(f"SELECT * FROM position_close_operations WHERE {where}", params))
        return decode_row(rows[0]) if rows else None

    @_writes
    def get_operation_by_command(self, command_id: str) -> dict[str, Any] | None:
        """The operation recorded for ``command_id`` (JSON columns decoded), or None."""
        return self._operation_where("command_id = ?", [str(command_id)])

    @_writes
    def get_operation(self, op_id: int) -> dict[str, Any] | None:
        """The operation with row id ``op_id`` (JSON columns decoded), or None."""
        return self._operation_where("id = ?", [op_id])

    @_writes
    def claim_operation(
        self, op_id: int, *, target_tickets: Iterable[int], claimed_at: Timestamp | None = None
    ) -> bool:
        """Move a ``'pending'`` operation to ``'processing'`` and freeze the tickets it may touch.

        The conditional UPDATE is the claim: of two callers, one gets True.
        ``target_tickets`` is the book at claim time, so "close all" never
        reaches a position opened after the click.
        """
        with self.db.atomic() as db:
            cur = db.execute(
                "UPDATE position_close_operations SET status = 'processing', target_tickets = ?, "
                "claimed_at = ? WHERE id = ? AND status = 'pending'",
                [dumps(sorted(int(t) for t in target_tickets)), self._iso(claimed_at), op_id],
            )
        return cur.rowcount == 1

    @_writes
    def add_result(self, op_id: int, result: CloseResult, finished_at: Timestamp | None = None) -> int:
        """Record what happened to one ticket of a ``'processing'`` operation; returns the row id.

        Recording the same ticket again replaces its result (the monitor
        reconciling after a crash). ``symbol`` falls back to the tracked
        position's symbol when the result has none.
        :raises StorageError: if the operation is not ``'processing'``.
        """
        return self._record_closes(op_id, [CloseRecord(result, finished_at)])[0]

    @_writes
    def record_close(
        self,
        op_id: int,
        result: CloseResult,
        *,
        finished_at: Timestamp | None = None,
        mark_closed: str | None = None,
        partial: bool = False,
    ) -> int:
        """:meth:`add_result`, and what the result means for the tracked position, in ONE transaction.

        :param mark_closed: a close reason (``'command'``/``'rule'``): the position is also marked
          closed, at ``finished_at``, with the result's profit (as :meth:`mark_closed` would).
        :param partial: also remember the once-per-position partial close (:meth:`mark_partial_closed`).
        :return: the result's row id.
        """
        record = CloseRecord(result, finished_at, close_reason=mark_closed, partial=partial)
        return self._record_closes(op_id, [record])[0]

    @_writes
    def record_closes(self, op_id: int, records: Sequence[CloseRecord]) -> int:
        """Several :meth:`record_close` calls in one transaction (the monitor's bulk closes).

        All or nothing: if one write fails, none is kept. Returns how many results were written.
        """
        records = list(records)
        self._record_closes(op_id, records, ids=False)
        return len(records)

    def _record_closes(self, op_id: int, records: list[CloseRecord], *, ids: bool = True) -> list[int]:
        for r in records:
            if r.close_reason is not None and r.close_reason not in schema.CLOSE_REASONS:
                raise ValueError(f"reason must be one of {schema.CLOSE_REASONS}, not {r.close_reason!r}")
        if not records:
            return []
        at = [self._iso(r.finished_at) for r in records]
        db = self.db
        with db.atomic():
            self._check_processing(op_id)
            rows = [_result_row(op_id, r.result, when) for r, when in zip(records, at, strict=True)]
            if ids:
                out = [int(db.conn.execute(_UPSERT_RESULT + " RETURNING id", row).fetchone()[0]) for row in rows]
            else:  # executemany cannot return rows, and is twice as fast
                db.conn.executemany(_UPSERT_RESULT, rows)
                out = []
            closes = [(when, r.close_reason, r.result.profit, r.result.ticket)
                      for r, when in zip(records, at, strict=True) if r.close_reason is not None]
            if closes:
                db.conn.executemany(
                    "UPDATE position_tracking SET status = 'closed', closed_at = ?1, close_reason = ?2, "
                    "realised_profit = ?3, last_update = ?1 WHERE ticket = ?4 AND status = 'open'",
                    closes,
                )
            partials = [(when, r.result.ticket) for r, when in zip(records, at, strict=True) if r.partial]
            if partials:
                db.conn.executemany(
                    "UPDATE position_tracking SET partial_closed_at = COALESCE(partial_closed_at, ?) "
                    "WHERE ticket = ? AND status = 'open'",
                    partials,
                )
        if self._open_cache is not None:  # after the commit: a rolled back batch resets the cache instead
            for close in closes:
                self._open_cache.pop(close[3], None)
        return out

    def _check_processing(self, op_id: int) -> None:
        row = self.db.execute("SELECT status FROM position_close_operations WHERE id = ?", [op_id]).fetchone()
        if row is None or row[0] != "processing":
            raise StorageError(
                f"cannot add a result to operation {op_id}: "
                f"{'no such operation' if row is None else 'status is ' + row[0]}"
            )

    @_writes
    def finish_operation(
        self,
        op_id: int,
        status: str,
        *,
        finished_at: Timestamp | None = None,
        error_message: str | None = None,
    ) -> bool:
        """Give a pending/processing operation its final status and totals.

        ``status`` is any final status: ``completed``, ``partially_completed``,
        ``failed``, or ``expired``/``rejected`` for a recorded command that will
        not run (see also :meth:`reject_operation`).

        The totals are computed from its ``close_results`` (realised, from
        deals), never from the pre-close floating profit as the seed did:
        ``positions_closed`` counts results that closed something (``closed``
        or ``partial``), ``positions_failed`` counts ``failed``;
        ``total_profit_closed`` / ``total_loss_closed`` sum the positive /
        (absolute) negative profits of those closes.
        :return: False if the operation is missing or already final.
        """
        if status not in schema.FINAL_STATUSES:
            raise ValueError(f"finish status must be one of {schema.FINAL_STATUSES}, not {status!r}")
        with self.db.atomic() as db:
            cur = db.execute(
                f"""
                UPDATE position_close_operations SET
                    status = :status, finished_at = :at, error_message = :err,
                    {_OP_TOTALS}
                WHERE id = :id AND status IN ('pending', 'processing')
                """,
                {"status": status, "at": self._iso(finished_at), "err": error_message, "id": op_id},
            )
        return cur.rowcount == 1

    @_writes
    def ticket_results(self, ticket: int) -> list[dict[str, Any]]:
        """Every recorded close of ``ticket``, oldest first, with its operation's ``source`` and type."""
        rows = self.db.query(
            "SELECT r.*, o.source, o.operation_type, o.status AS operation_status FROM close_results r "
            "JOIN position_close_operations o ON o.id = r.operation_id WHERE r.ticket = ? "
            "ORDER BY r.finished_at, r.id", [ticket])
        return [dict(decode_row(r) or {}) for r in rows]

    @_writes
    def settle_result(self, result_id: int, *, status: str, closed_volume: float, profit: float, price: float,
                      deals: Sequence[int], note: str, operation_status: str, close_reason: str | None,
                      at: Timestamp | None = None) -> bool:
        """A close that executed without its answer, found later in the deal history: correct its result,
        its finished operation's status and totals, and mark the position closed, in ONE transaction.

        Only a ``'failed'`` or ``'partial'`` result is ever corrected, and only upwards (what the terminal
        shows it did); returns False (nothing written) for any other.
        """
        if operation_status not in schema.FINAL_STATUSES:
            raise ValueError(f"operation status must be one of {schema.FINAL_STATUSES}, not {operation_status!r}")
        if close_reason is not None and close_reason not in schema.CLOSE_REASONS:
            raise ValueError(f"reason must be one of {schema.CLOSE_REASONS}, not {close_reason!r}")
        when = self._iso(at)
        with self.db.atomic() as db:
            row = db.execute("SELECT operation_id, ticket, message FROM close_results WHERE id = ? "
                             "AND status IN ('failed', 'partial')", [result_id]).fetchone()
            if row is None:
                return False
            op_id, ticket, message = row
            db.execute("UPDATE close_results SET status = ?, closed_volume = ?, profit = ?, price = ?, deals = ?, "
                       "message = ? WHERE id = ?",
                       [status, closed_volume, profit, price, dumps(list(deals)),
                        f"{message}; {note}" if message else note, result_id])
            db.execute(
                f"""
                UPDATE position_close_operations SET
                    status = :status,
                    error_message = CASE WHEN :status = 'completed' THEN NULL ELSE error_message END,
                    {_OP_TOTALS}
                WHERE id = :id AND status NOT IN ('pending', 'processing')
                """,
                {"status": operation_status, "id": op_id},
            )
            if close_reason is not None:
                db.execute("UPDATE position_tracking SET status = 'closed', closed_at = ?1, close_reason = ?2, "
                           "realised_profit = ?3, last_update = ?1 WHERE ticket = ?4 AND status = 'open'",
                           [when, close_reason, profit, ticket])
        if close_reason is not None and self._open_cache is not None:
            self._open_cache.pop(int(ticket), None)
        return True

    @_writes
    def reject_operation(
        self,
        command_id: str | None,
        *,
        error_message: str,
        status: str = "rejected",
        operation_type: str | None = None,
        source: str = "operator",
        requested_by: str | None = None,
        params: Mapping[str, Any] | None = None,
        timestamp: Timestamp | None = None,
        expires_at: Timestamp | None = None,
        file_name: str | None = None,
        at: Timestamp | None = None,
    ) -> int:
        """Record a command that will not run: malformed (``'rejected'``) or too old (``'expired'``).

        If ``command_id`` is already recorded and still ``'pending'``, that row
        is finalised; if it is recorded in any other state the original record
        wins and :class:`DuplicateCommand` is raised. Otherwise a new, already
        final row is written (``command_id`` may be None for a file whose id
        could not be read; ``file_name`` then identifies it). Returns the row id.
        """
        if status not in ("rejected", "expired"):
            raise ValueError(f"reject status must be 'rejected' or 'expired', not {status!r}")
        if source not in schema.SOURCES:
            raise ValueError(f"source must be one of {schema.SOURCES}, not {source!r}")
        now = self._iso(at)
        db = self.db
        with db.atomic():
            if command_id is not None:
                row = db.execute(
                    "SELECT id, status FROM position_close_operations WHERE command_id = ?", [str(command_id)]
                ).fetchone()
                if row is not None:
                    if row[1] != "pending":
                        raise DuplicateCommand(str(command_id), row[1])
                    db.execute(
                        "UPDATE position_close_operations SET status = ?, finished_at = ?, error_message = ? "
                        "WHERE id = ?",
                        [status, now, error_message, row[0]],
                    )
                    return int(row[0])
            cur = db.execute(
                "INSERT INTO position_close_operations (command_id, operation_type, status, source, "
                "requested_by, params, timestamp, created_at, finished_at, expires_at, error_message, "
                "file_name) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    None if command_id is None else str(command_id),
                    operation_type or "unknown",
                    status,
                    source,
                    requested_by,
                    dumps(dict(params or {})),
                    _command_timestamp(timestamp),
                    now,
                    now,
                    iso_or_none(expires_at),
                    error_message,
                    file_name,
                ],
            )
        return int(cur.lastrowid or 0)

    @_writes
    def unfinished_operations(self) -> list[dict[str, Any]]:
        """Operations left ``'pending'`` or ``'processing'`` (a crash), oldest first, each with ``results``.

        The monitor reconciles these on start: a processing one may have closed
        some tickets already, which its results (and the deal history) tell.
        """
        rows = self.db.query(
            "SELECT * FROM position_close_operations WHERE status IN ('pending', 'processing') ORDER BY id"
        )
        ops = [dict(decode_row(r) or {}) for r in rows]
        for op in ops:
            op["results"] = self._results(op["id"])
        return ops

    def _results(self, op_id: int) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT * FROM close_results WHERE operation_id = ? ORDER BY id", [op_id])
        return [dict(decode_row(r) or {}) for r in rows]

    @_writes
    def results(self, op_id: int) -> list[dict[str, Any]]:
        """The recorded per-ticket results of ``op_id``, in the order recorded (as ``Reader.results``)."""
        return self._results(op_id)

    # -- monitor health, events, durable rule state ------------------------------------------

    @_writes
    def realised_since(self, since: Timestamp) -> float:
        """Net realised P/L of everything closed since ``since`` (the daily loss guard's input)."""
        row = self.db.execute(
            schema.REALISED_CTE + "SELECT COALESCE(SUM(profit), 0.0) FROM realised WHERE at >= ?",
            [self._iso(since)],
        ).fetchone()
        return float(row[0])

    @_writes
    def heartbeat(self, *, at: Timestamp | None = None, **fields: Any) -> None:
        """Update the single heartbeat row; fields not given keep their value.

        ``updated_at``/``updated_ts`` are always set, from ``at`` (or an
        ``updated_at`` field, the same thing) or the clock. Fields ending in
        ``_at`` take any :data:`Timestamp`. Unknown field names raise
        ``ValueError`` (a typo must not silently drop health data).
        """
        if "updated_at" in fields:
            given = fields.pop("updated_at")
            at = given if at is None else at
        unknown = set(fields) - _HEARTBEAT_FIELDS
        if unknown:
            raise ValueError(f"unknown heartbeat fields: {', '.join(sorted(unknown))}")
        if fields.get("state") is not None and fields["state"] not in schema.MONITOR_STATES:
            raise ValueError(f"state must be one of {schema.MONITOR_STATES}, not {fields['state']!r}")
        now = to_epoch(self._clock() if at is None else at)
        values: dict[str, Any] = {"id": 1, "updated_at": iso_utc(now), "updated_ts": now}
        for key, value in fields.items():
            values[key] = iso_or_none(value) if key.endswith("_at") else value
        cols = list(values)
        sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c != "id")
        with self.db.atomic() as db:
            db.execute(
                f"INSERT INTO monitor_heartbeat ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) "
                f"ON CONFLICT (id) DO UPDATE SET {sets}",
                list(values.values()),
            )

    @_writes
    def event(
        self,
        level: str,
        kind: str,
        message: str,
        data: Mapping[str, Any] | None = None,
        at: Timestamp | None = None,
    ) -> int:
        """Append to the event log (what an operator reads later); returns the row id."""
        if level not in schema.EVENT_LEVELS:
            raise ValueError(f"level must be one of {schema.EVENT_LEVELS}, not {level!r}")
        with self.db.atomic() as db:
            cur = db.execute(
                "INSERT INTO monitor_events (at, level, kind, message, data) VALUES (?, ?, ?, ?, ?)",
                [self._iso(at), level, kind, message, None if data is None else dumps(dict(data))],
            )
        return int(cur.lastrowid or 0)

    @_writes
    def set_rule_state(self, key: str, value: Any, at: Timestamp | None = None) -> None:
        """Store a JSON value under ``key`` (e.g. ``"rules_paused"``), surviving restarts."""
        with self.db.atomic() as db:
            db.execute(
                "INSERT INTO rule_state (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                [key, dumps(value), self._iso(at)],
            )

    @_writes
    def get_rule_state(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        row = self.db.execute("SELECT value FROM rule_state WHERE key = ?", [key]).fetchone()
        if row is None:
            return default
        return json.loads(row[0])


def _command_timestamp(value: Timestamp | None) -> str | None:
    """The command's own timestamp: text is kept exactly as its producer wrote it (it is evidence);
    numbers and datetimes are spelled like every other timestamp."""
    return value if value is None or isinstance(value, str) else to_iso(value)
