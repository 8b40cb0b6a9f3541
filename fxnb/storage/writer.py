"""The monitor's side of the database: the one and only writer.

Only the monitor opens a :class:`Store`. Dashboards, notebooks and the CLI use
:class:`fxnb.storage.reader.Reader`, which cannot write. Every public method
is one ``db.atomic()`` transaction, so a reader never sees half a poll.

Times are epoch seconds (UTC) in and ISO-8601 ``...Z`` text in the database.
A method that needs "now" and is not given one asks the ``clock`` injected at
construction, so tests are deterministic.

A ``Store`` may be created on one thread and used from another (APScheduler
runs plain jobs in a pool): the connection is opened with
``check_same_thread=False`` and every public method holds one lock, so calls
are serialised even if the monitor slips.

This module opens the database; the methods live in one mixin per job, each
small enough to read in one sitting: ``_positions`` (the poll's ``position_book``
and ``position_marks``, read as ``position_tracking``), ``_history`` (``profit_monitoring``), ``_operations``
(the command audit trail), ``_results`` (per-ticket close results),
``_monitor_state`` (heartbeat, events, rule state); ``_base`` holds what they
share. Import everything from here: ``fxnb.storage.writer`` is the public name.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
import time
from pathlib import Path

from sqlite_utils import Database

from fxnb.errors import StorageError
from fxnb.storage import schema
from fxnb.storage._base import Clock
from fxnb.storage._history import HistoryMixin, PruneResult
from fxnb.storage._monitor_state import MonitorStateMixin
from fxnb.storage._open_rows import OpenRows
from fxnb.storage._operations import DuplicateCommand, OperationsMixin
from fxnb.storage._positions import PositionsMixin, SyncResult
from fxnb.storage._results import CloseRecord, ResultsMixin

__all__ = [
    "CLOSE_BATCH_SECONDS",
    "CLOSE_BATCH_TICKETS",
    "Clock",
    "CloseRecord",
    "DuplicateCommand",
    "PruneResult",
    "Store",
    "SyncResult",
]

logger = logging.getLogger(__name__)

# The monitor's bulk closes write clean whole-close results at most this many tickets, or this many
# seconds, late (one transaction per batch); fxnb.monitor.closerun explains why that is crash-safe.
# 200: a close-all of 1,000 spends 18 ms recording instead of 25 ms at 50 (bench 3); the time bound
# keeps the dashboard at most 0.1 s behind either way.
CLOSE_BATCH_TICKETS = 200
CLOSE_BATCH_SECONDS = 0.1


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


class Store(PositionsMixin, HistoryMixin, OperationsMixin, ResultsMixin, MonitorStateMixin):
    """Write access to the fxnb database. Open with :meth:`Store.open`; one per monitor process."""

    what = "store"

    def __init__(self, db: Database, path: Path, *, clock: Clock = time.time) -> None:
        """Wrap an already configured and migrated ``db``. Use :meth:`open` instead."""
        self._db: Database | None = db
        self.path = path
        self._clock = clock
        self._lock = threading.RLock()
        # Every row that is 'open' in the database, as sync_positions compares it: lets it skip
        # unchanged rows without reading the table.
        self._open_cache: OpenRows | None = None

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
