"""One monitor per workspace: an exclusive ``flock`` held for the process's lifetime.

The kernel drops the lock when the process dies (even by kill -9), so a stale
lock file never blocks a restart. The lock file sits beside the database, so a
folder that cannot be created or opened is reported as a ``paths.database``
mistake (one line naming the key), not as a traceback.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from fxnb.errors import ConfigError, FxnbError


class AlreadyRunning(FxnbError):
    """Another monitor holds the workspace lock. The new one exits at once."""


class InstanceLock:
    """``key`` is the config key whose folder holds the lock file: the one named when it is unusable."""

    def __init__(self, path: Path, *, key: str = "paths.database") -> None:
        self.path = path
        self.key = key
        self._fd: int | None = None

    def acquire(self) -> None:
        try:  # a missing folder is created owner-only, like the database's own (storage.writer)
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(f"{self.key}: cannot use the folder {self.path.parent} "
                              f"({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunning(
                f"another fxnb monitor (pid {holder}) is already running on this workspace (lock {self.path})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
