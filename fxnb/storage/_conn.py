"""What the writer and the readers share: one guarded sqlite-utils connection with a lifecycle."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Self

from sqlite_utils import Database

from fxnb.errors import StorageError


class Connection:
    """Holds ``_db`` (None once closed) under ``_lock``; ``what`` names it in the closed-error message."""

    what = "database"
    path: Path
    _db: Database | None
    _lock: threading.RLock

    @property
    def db(self) -> Database:
        """The sqlite-utils ``Database`` (readers: read-only; the store: do not write through it)."""
        if self._db is None:
            raise StorageError(f"{self.what} {self.path} is closed")
        return self._db

    def close(self) -> None:
        """Close the connection (the writer's last close checkpoints the WAL into the main file)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
