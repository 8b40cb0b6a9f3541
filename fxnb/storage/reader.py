"""Read-only access to the fxnb database, for dashboards, notebooks and the CLI.

A :class:`Reader` opens the file with a ``file:...?mode=ro`` URI and
``PRAGMA query_only``: it cannot write even by mistake, and in WAL mode it
reads committed data while the monitor keeps writing. The connection is in
autocommit mode (``isolation_level=None``), so no read transaction is left
open between calls: a long-lived panel never pins an old snapshot or stops the
writer from checkpointing the WAL.

Everything returned is plain ``dict``/``list`` (JSON columns decoded, flags as
``bool``); pandas versions live in :mod:`fxnb.storage.frames`.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from fxnb.errors import StorageError
from fxnb.storage import schema
from fxnb.storage._codec import decode_row, iso_utc
from fxnb.storage._conn import Connection

_HEARTBEAT_BOOLS = ("last_poll_ok", "connected", "terminal_trade_allowed", "rules_paused")

# Realised P/L, one row per realising event, without double counting:
# * every fxnb close that closed something (close_results 'closed'/'partial'),
#   on the day it happened, with the realised profit read from its deals;
# * for a position closed outside fxnb ('external'), the rest of its total
#   realised_profit (minus what fxnb's partial closes already counted), on the
#   day it closed;
# * for a position closed by fxnb but with no recorded result (a crash between
#   the close and its record), its realised_profit.
# So a position closed by a command or rule counts through its close results,
# whatever the caller stored in realised_profit.



class Reader(Connection):
    """Read-only view of the database at ``path``. Cheap to open; one per kernel or per panel."""

    what = "reader for"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open ``path`` read-only. :raises StorageError: if there is no fxnb database there yet."""
        self.path = Path(path)
        if not self.path.is_file():
            raise StorageError(f"no database at {self.path} — has the monitor been started?")
        uri = self.path.resolve().as_uri() + "?mode=ro"
        try:
            conn = sqlite3.connect(
                uri,
                uri=True,
                timeout=schema.BUSY_TIMEOUT_MS / 1000,
                check_same_thread=False,
                isolation_level=None,
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open database at {self.path} read-only: {exc}") from exc
        self._db: Database | None = Database(conn, execute_plugins=False)
        self._lock = threading.RLock()
        try:
            schema.configure_reader(self._db)
            version = schema.schema_version(self._db)
        except sqlite3.Error as exc:
            self.close()
            raise StorageError(f"cannot read database at {self.path}: {exc}") from exc
        if version is None:
            self.close()
            raise StorageError(f"no fxnb schema in {self.path} yet — has the monitor been started?")
        self.schema_version = version

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Reader:
        """Same as ``Reader(path)``; mirrors :meth:`Store.open`."""
        return cls(path)

    # -- plumbing ----------------------------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[Database]:
        with self._lock:
            db = self.db
            try:
                yield db
            except sqlite3.Error as exc:
                raise StorageError(f"reading {self.path} failed: {exc}") from exc

    def _all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        with self._guard() as db:
            return [dict(decode_row(r) or {}) for r in db.query(sql, params)]

    def _one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> dict[str, Any] | None:
        rows = self._all(sql, params)
        return rows[0] if rows else None

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """Several SELECTs that must agree (an operation and its results): one read transaction."""
        with self._guard() as db, db.atomic():
            yield

    # -- positions ---------------------------------------------------------------------------

    def open_positions(self) -> list[dict[str, Any]]:
        """Rows of ``position_tracking`` with status ``'open'``, by symbol then ticket."""
        return self._all("SELECT * FROM position_tracking WHERE status = 'open' ORDER BY symbol, ticket")

    def position(self, ticket: int) -> dict[str, Any] | None:
        """One tracked position (open or closed), or None."""
        return self._one("SELECT * FROM position_tracking WHERE ticket = ?", [ticket])

    def closed_positions(self, last: int = 100) -> list[dict[str, Any]]:
        """The ``last`` positions that closed, newest first."""
        return self._all(
            # closed_at is set exactly when status is 'closed'; this form walks the closed_at index.
            "SELECT * FROM position_tracking WHERE closed_at IS NOT NULL "
            "ORDER BY closed_at DESC, ticket DESC LIMIT ?",
            [last],
        )

    # -- account history ---------------------------------------------------------------------

    def account(self) -> dict[str, Any] | None:
        """The latest ``profit_monitoring`` row (balance, equity, margins, totals), or None."""
        return self._one("SELECT * FROM profit_monitoring ORDER BY ts DESC LIMIT 1")

    def history(
        self, since_ts: float | None = None, max_points: int = 2000, until_ts: float | None = None
    ) -> list[dict[str, Any]]:
        """``profit_monitoring`` rows in ``[since_ts, until_ts]``, ascending, at most ``max_points``.

        When the range holds more rows, it is cut into ``max_points`` equal
        time buckets and the last row of each is returned (the same "last of
        bucket" rule as downsampling). Each bucket is one seek on the ``ts``
        index, so the cost depends on ``max_points``, not on the table size:
        a year of 1-second rows is as quick as a day.
        """
        if max_points < 1:
            raise ValueError("max_points must be >= 1")
        with self._guard() as db:
            lo, hi = db.execute(
                "SELECT (SELECT ts FROM profit_monitoring WHERE ts >= :lo ORDER BY ts LIMIT 1), "
                "(SELECT ts FROM profit_monitoring WHERE ts <= :hi ORDER BY ts DESC LIMIT 1)",
                {
                    "lo": -1e300 if since_ts is None else since_ts,
                    "hi": 1e300 if until_ts is None else until_ts,
                },
            ).fetchone()
            if lo is None or hi is None or hi < lo:
                return []
            (count,) = db.execute(
                "SELECT COUNT(*) FROM (SELECT 1 FROM profit_monitoring WHERE ts >= ? AND ts <= ? LIMIT ?)",
                [lo, hi, max_points + 1],
            ).fetchone()
            if count <= max_points:
                rows = db.query(
                    "SELECT * FROM profit_monitoring WHERE ts >= ? AND ts <= ? ORDER BY ts, id", [lo, hi]
                )
                return [dict(r) for r in rows]
            rows = db.query(
                """
                WITH RECURSIVE bucket(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM bucket WHERE i + 1 < :n)
                SELECT pm.* FROM bucket JOIN profit_monitoring pm ON pm.id = (
                    SELECT id FROM profit_monitoring
                    WHERE ts >= :lo + bucket.i * :w
                      AND ts < CASE WHEN bucket.i = :n - 1 THEN :top ELSE :lo + (bucket.i + 1) * :w END
                    ORDER BY ts DESC, id DESC LIMIT 1)
                ORDER BY pm.ts, pm.id
                """,
                # Both bounds are plain comparisons so each bucket is a seek on the ts index;
                # the last bucket ends just above ``hi`` so the newest row is always included.
                {"n": max_points, "lo": lo, "top": math.nextafter(hi, math.inf), "w": (hi - lo) / max_points},
            )
            return [dict(r) for r in rows]

    # -- operations --------------------------------------------------------------------------

    def operations(self, last: int = 50) -> list[dict[str, Any]]:
        """The ``last`` operations (commands, rule closes, rejections), newest first."""
        return self._all("SELECT * FROM position_close_operations ORDER BY id DESC LIMIT ?", [last])

    def operation(self, command_id: str) -> dict[str, Any] | None:
        """The operation recorded for ``command_id`` with its per-ticket ``results``, or None.

        This is what a panel polls after writing a command file.
        """
        with self._snapshot():
            op = self._one("SELECT * FROM position_close_operations WHERE command_id = ?", [str(command_id)])
            if op is not None:
                op["results"] = self.results(op["id"])
        return op

    def results(self, op_id: int) -> list[dict[str, Any]]:
        """Per-ticket results of operation ``op_id``, in the order recorded."""
        return self._all("SELECT * FROM close_results WHERE operation_id = ? ORDER BY id", [op_id])

    # -- health, events, state ----------------------------------------------------------------

    def heartbeat(self) -> dict[str, Any] | None:
        """The monitor's heartbeat row (flags as bool/None), or None if it never beat."""
        row = self._one("SELECT * FROM monitor_heartbeat WHERE id = 1")
        if row is not None:
            for key in _HEARTBEAT_BOOLS:
                if row[key] is not None:
                    row[key] = bool(row[key])
        return row

    def events(self, last: int = 50, *, min_level: str = "info") -> list[dict[str, Any]]:
        """The ``last`` events at ``min_level`` or above, newest first."""
        levels = schema.EVENT_LEVELS[schema.EVENT_LEVELS.index(min_level) :]
        marks = ", ".join("?" for _ in levels)
        return self._all(
            f"SELECT * FROM monitor_events WHERE level IN ({marks}) ORDER BY at DESC, id DESC LIMIT ?",
            [*levels, last],
        )

    def rule_state(self, key: str, default: Any = None) -> Any:
        """The durable rule-state value under ``key``, or ``default``."""
        row = self._one("SELECT value FROM rule_state WHERE key = ?", [key])
        return default if row is None else row["value"]

    def data_version(self) -> int:
        """``PRAGMA data_version``: changes whenever another connection commits.

        Panels compare it with the last value and skip a redraw when it is equal.
        """
        with self._guard() as db:
            return int(db.execute("PRAGMA data_version").fetchone()[0])

    # -- realised P/L --------------------------------------------------------------------------

    def realised_by_symbol(self, since_ts: float | None = None) -> list[dict[str, Any]]:
        """Realised P/L per symbol: ``symbol, profit, positions`` (distinct tickets), best first.

        Counts fxnb's closes (``close_results``) and, for positions closed
        outside fxnb, their ``realised_profit``, without counting anything twice.
        """
        return self._all(
            schema.REALISED_CTE
            + """
            SELECT symbol, SUM(profit) AS profit, COUNT(DISTINCT ticket) AS positions
            FROM realised WHERE at >= :since GROUP BY symbol ORDER BY profit DESC, symbol
            """,
            {"since": _since(since_ts)},
        )

    def realised_by_day(
        self, since_ts: float | None = None, *, utc_offset_s: int = 0
    ) -> list[dict[str, Any]]:
        """Realised P/L per calendar day: ``day`` (YYYY-MM-DD), ``profit``, ``positions``, ascending.

        Days are UTC unless ``utc_offset_s`` shifts them (e.g. the broker's
        server day, or the operator's local day).
        """
        return self._all(
            schema.REALISED_CTE
            + """
            SELECT date(at, :shift) AS day, SUM(profit) AS profit, COUNT(DISTINCT ticket) AS positions
            FROM realised WHERE at >= :since GROUP BY day ORDER BY day
            """,
            {"since": _since(since_ts), "shift": f"{int(utc_offset_s):+d} seconds"},
        )


def _since(since_ts: float | None) -> str:
    """ISO text for ``at >= ?`` comparisons; the empty string sorts before every timestamp."""
    return "" if since_ts is None else iso_utc(since_ts)
