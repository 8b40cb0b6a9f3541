"""What every part of the writer shares: its state, the clock, and the ``_writes`` guard.

:class:`fxnb.storage.writer.Store` is assembled from one mixin per job (``_positions``,
``_history``, ``_operations``, ``_results``, ``_monitor_state``); each derives from
:class:`StoreBase`, which declares the attributes ``Store.__init__`` sets (``_db``,
``path`` and ``_lock`` come from :class:`~fxnb.storage._conn.Connection`), so every
part type-checks on its own and none calls another's methods.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from fxnb.errors import StorageError
from fxnb.storage._codec import Timestamp, to_iso
from fxnb.storage._conn import Connection

if TYPE_CHECKING:
    from fxnb.storage._open_rows import OpenRows

Clock = Callable[[], float]

P = ParamSpec("P")
R = TypeVar("R")


class StoreBase(Connection):
    """The writer's state, set by ``Store.__init__``; the mixins holding its methods derive from this."""

    _clock: Clock
    # What sync_positions compares: every row that is 'open' in the database (None: read it again).
    _open_cache: OpenRows | None

    def _iso(self, at: Timestamp | None) -> str:
        """``at`` in the stored spelling, or the clock's "now" when it is None."""
        return to_iso(self._clock() if at is None else at)


S = TypeVar("S", bound=StoreBase)


def _writes(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Serialise the call and turn sqlite errors into :class:`StorageError` (the project's boundary rule)."""

    @functools.wraps(method)
    def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
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
