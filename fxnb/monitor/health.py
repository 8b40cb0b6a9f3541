"""How the monitor reports on itself: its health, events and alerts, the heartbeat row, and a failing environment.

A mixin of ``Engine`` (kept apart so each module reads in one sitting); it runs on the broker thread.
A refused write (full disk, read-only folder) is reported once per change, in the log, as an event,
in /status and /healthz, and the work it interrupted is retried; it never stops a close.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fxnb import __version__
from fxnb.alerts import alert_from_event
from fxnb.errors import StorageError
from fxnb.monitor.logs import kv
from fxnb.monitor.targets import iso

if TYPE_CHECKING:
    from fxnb.monitor.engine import Engine as _Base
else:
    _Base = object

log = logging.getLogger("fxnb.monitor")
T = TypeVar("T")
DATABASE = "database"  # Health.problems areas: the store refuses writes ...
COMMANDS = "commands"  # ... or the commands folder does (read-only, full, gone)


@dataclass
class Health:
    """What /healthz and /status report; written on the broker thread, read on the loop (copied)."""

    connected: bool = False
    state: str = "starting"
    last_poll_at: float | None = None
    last_poll_ok: bool = False
    poll_duration_ms: float = 0.0
    last_error: str | None = None
    open_positions: int = 0
    account: dict[str, Any] = field(default_factory=dict)
    queue_depth: int = 0
    started_at: float = field(default_factory=time.time)
    # what the environment refuses right now, by area (DATABASE, COMMANDS): set once when it starts
    # failing, removed when it works again (Engine.report_problem / clear_problem)
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def error(self) -> str | None:
        """Everything wrong now, for ``last_error``: a poll's success must not hide a full disk."""
        parts = [*self.problems.values(), *([self.last_error] if self.last_error else [])]
        return "; ".join(parts) or None


class Reporting(_Base):
    # ---------------------------------------------------------------- events and alerts
    def emit(self, level: str, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        """Record an event (the dashboard shows it) and hand it to the webhooks that want it."""
        now = self.clock()
        self.store.event(level, kind, message, data, at=now)
        if self.alerts is not None:
            alert = alert_from_event(level, kind, message, data, at=now)
            if alert is not None:
                self.alerts.submit(alert)

    def _try_emit(self, level: str, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        """``emit`` for reports about the environment: an event the database refuses still goes to the webhooks."""
        try:
            self.emit(level, kind, message, data)
        except StorageError:
            alert = alert_from_event(level, kind, message, data, at=self.clock())
            if alert is not None and self.alerts is not None:
                self.alerts.submit(alert)

    # ---------------------------------------------------------------- a failing environment
    def environment_failed(self, exc: StorageError | OSError) -> None:
        """A write was refused (full disk, read-only folder): report it once and retry the work later.

        Nothing is lost or run twice: a command whose row could not be written was not executed and
        waits in ``processing/``; anything half-done is finished by ``recover`` like after a crash.
        """
        self.needs_recovery = True
        if isinstance(exc, StorageError):
            cause = exc.__cause__
            what = str(cause) if isinstance(cause, sqlite3.Error) else str(exc)
            self.report_problem(DATABASE, f"database write failed: {what} ({self.store.path}); "
                                          "rules and commands wait until it can be written")
        else:  # one message per folder, not per file: it is said again only when it changes
            where = Path(os.fsdecode(exc.filename)) if exc.filename else self.commands.root
            root = self.commands.root
            place = f"commands folder {root}" if root in (where, *where.parents) else f"{where.parent}"
            self.report_problem(COMMANDS, f"{place}: {exc.strerror or exc}; commands wait until it can be written")

    def guarded(self, fn: Callable[[], T], default: T) -> T:
        """Run one job on the broker thread; a refused database write is reported and retried, not raised."""
        try:
            return fn()
        except StorageError as exc:
            self.environment_failed(exc)
            return default

    def report_problem(self, area: str, message: str) -> None:
        """One log line, one event, /status and /healthz: once, and again only if the message changes."""
        if self.health.problems.get(area) == message:
            return
        self.health.problems[area] = message
        self._problem_since.setdefault(area, self.clock())
        log.error(kv("problem", area=area, error=message))
        self._try_emit("error", f"{area}_failing", message, {"area": area})
        if area != DATABASE:  # the heartbeat would fail too (and report it again)
            self._heartbeat()

    def clear_problem(self, area: str) -> None:
        """It works again: say so once, with how long it failed (the event is the record of a database outage)."""
        message = self.health.problems.pop(area, None)
        if message is None:
            return
        lasted = self.clock() - self._problem_since.pop(area, self.clock())
        log.info(kv("problem_cleared", area=area, after_s=round(lasted, 1), was=message))
        what = "the database takes writes" if area == DATABASE else "the commands folder works"
        self._try_emit("warning" if area == DATABASE else "info", f"{area}_recovered",
                       f"{what} again after {lasted:.0f} s; it failed with: {message}",
                       {"area": area, "seconds": round(lasted, 1)})

    def watch_connection(self) -> None:
        """Alert when the terminal stays away longer than the threshold, and again when it is back."""
        alert = self.watch.update(self.health.connected, self.clock())
        if alert is not None and self.alerts is not None:
            self.alerts.submit(alert)

    # ---------------------------------------------------------------- heartbeat
    def _heartbeat(self) -> None:
        """Best effort: a heartbeat that cannot be written is reported, never a reason to stop a close."""
        h = self.health
        try:
            self._write_heartbeat(h)
        except StorageError as exc:
            self.environment_failed(exc)

    def _write_heartbeat(self, h: Health) -> None:
        self.store.heartbeat(
            pid=os.getpid(), hostname=socket.gethostname(), version=__version__,
            started_at=iso(h.started_at), updated_at=iso(self.clock()),
            last_poll_at=iso(h.last_poll_at) if h.last_poll_at else None, last_poll_ok=h.last_poll_ok,
            poll_duration_ms=round(h.poll_duration_ms, 3), connected=h.connected, last_error=h.error,
            rules_mode=self.rule_settings.rules_mode, rules_paused=self.paused,
            check_interval=self.cfg.profit_monitor.check_interval, open_positions=h.open_positions,
            queue_depth=h.queue_depth, account_login=h.account.get("login"),
            account_currency=h.account.get("currency"), state=h.state,
        )

    def stopped(self) -> None:
        self.health.state = "stopped"
        self._heartbeat()
