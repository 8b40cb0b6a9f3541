"""The :class:`Console`: what every panel shares — config, read access, the command folder, health.

The console reads the database only through :class:`~fxnb.storage.Reader` and
acts only through :meth:`CommandDir.write <fxnb.commands.CommandDir.write>`.
It never imports the broker or the monitor, and never asks the config for
credentials.

Reads are memoised on ``PRAGMA data_version``: several panels asking for the
open positions in one refresh cost one query, and nothing is re-read until the
monitor commits something.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import traitlets as t

from fxnb.commands import Command, CommandDir, CommandType
from fxnb.config import CONFIG_ENV, Config, load_config
from fxnb.errors import CommandError, StorageError
from fxnb.status import monitor_health
from fxnb.storage import Reader

ReaderFactory = Callable[[], Reader]

FINAL_STATUSES = frozenset({"completed", "partially_completed", "failed", "expired", "rejected"})
BULK_TYPES = frozenset({"profit", "loss", "all"})


def config_path_from_env(path: str | os.PathLike[str] | None = None) -> Path:
    """``path``, else ``$FXNB_CONFIG``, else ``./config.json``."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get(CONFIG_ENV) or "config.json")


@dataclass
class SentCommand:
    """A command this console wrote, remembered so the tracker can show it before the monitor records it."""

    command: Command
    written_at: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.command.id


def matches_bulk(position: dict[str, Any], cmd_type: str, *, symbol: str | None = None,
                 side: str | None = None, magic: int | None = None) -> bool:
    """Would a bulk command of ``cmd_type`` with these filters target ``position``?

    The same rule the monitor applies when it freezes targets at claim time
    (``profit + swap`` > 0 for ``profit``, < 0 for ``loss``); used for previews only.
    """
    if symbol and position.get("symbol") != symbol:
        return False
    if side and position.get("type") != side:
        return False
    if magic is not None and position.get("magic") != magic:
        return False
    net = float(position.get("profit") or 0.0) + float(position.get("swap") or 0.0)
    if cmd_type == "profit":
        return net > 0
    if cmd_type == "loss":
        return net < 0
    return cmd_type == "all"


def find_operation(reader: Reader, command_id: str, file_name: str | None = None,
                   scan: int = 500) -> dict[str, Any] | None:
    """``reader.operation(command_id)``, else the newest id-less operation recorded for ``file_name``
    among the last ``scan`` (how the monitor records a command file it rejected)."""
    op = reader.operation(command_id)
    if op is not None or not file_name:
        return op
    for row in reader.operations(scan):
        if row.get("command_id") is None and row.get("file_name") == file_name:
            row["results"] = reader.results(row["id"])
            return row
    return None


def rule_state_updated_at(reader: Reader, key: str) -> str | None:
    """``rule_state.updated_at`` of ``key`` (when the monitor last wrote it), or None."""
    try:
        row = reader.db.execute("SELECT updated_at FROM rule_state WHERE key = ?", [key]).fetchone()
    except sqlite3.Error as exc:
        raise StorageError(f"reading {reader.path} failed: {exc}") from exc
    return None if row is None else row[0]


class Console(t.HasTraits):
    """Shared state of a set of panels (one per kernel, usually).

    Parameters
    ----------
    config:
        The workspace configuration. Only ``paths``, ``commands``,
        ``profit_monitor``, ``guards`` and ``broker.kind`` are read.
    reader_factory:
        Opens a :class:`Reader`; defaults to the configured database. Tests can inject one.
    commands:
        Where commands are written; defaults to the configured folder with its limits.
    requested_by:
        Recorded in every command (``requested_by``), e.g. ``"voila"`` or ``"lab"``.
    clock:
        Epoch seconds; injectable for tests.

    Examples
    --------
    >>> console = Console.from_env()                       # doctest: +SKIP
    >>> console.send("single", ticket=500000003)           # doctest: +SKIP
    """

    health = t.Dict(help="monitor_health() of the latest heartbeat, recomputed on every tick")
    stale = t.Bool(True, help="True while the monitor is not known to be alive (no heartbeat, old, stopped)")
    storage_error = t.Unicode("", help="why the database cannot be read right now ('' when it can)")
    sent_count = t.Int(0, help="number of commands written by this console (observe it to react to sends)")

    def __init__(self, config: Config, *, reader_factory: ReaderFactory | None = None,
                 commands: CommandDir | None = None, requested_by: str = "console",
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.config = config
        self._reader_factory = reader_factory or (lambda: Reader(config.paths.database))
        self.requested_by = requested_by
        self.clock = clock
        self.commands = commands or CommandDir(
            config.paths.commands,
            max_age_seconds=config.commands.max_age_seconds,
            max_bytes=config.commands.max_file_bytes,
            clock=self.now_utc,
        )
        self.sent: list[SentCommand] = []
        self._reader: Reader | None = None
        self._cache: dict[str, tuple[int, Any]] = {}
        self._version: int | None = None

    @classmethod
    def from_env(cls, path: str | os.PathLike[str] | None = None, **kwargs: Any) -> Console:
        """A console for the workspace at ``path`` / ``$FXNB_CONFIG`` / ``./config.json``."""
        return cls(load_config(config_path_from_env(path)), **kwargs)

    # -- configuration shortcuts ----------------------------------------------------------------

    @property
    def check_interval(self) -> float:
        return float(self.config.profit_monitor.check_interval)

    @property
    def simulated(self) -> bool:
        return self.config.broker.kind == "sim"

    # -- reading ----------------------------------------------------------------------------------

    @property
    def reader(self) -> Reader | None:
        """The shared reader, opened on first use; ``None`` (and ``storage_error`` set) if unavailable."""
        if self._reader is None:
            try:
                self._reader = self._reader_factory()
            except StorageError as exc:
                self.storage_error = str(exc)
                return None
            self._cache.clear()
            self._version = None
            self.storage_error = ""
        return self._reader

    def _drop_reader(self, exc: BaseException) -> None:
        self.storage_error = str(exc)
        if self._reader is not None:
            try:
                self._reader.close()
            except StorageError:
                pass
        self._reader = None
        self._cache.clear()
        self._version = None

    def data_version(self) -> int | None:
        """``PRAGMA data_version`` of the shared reader; ``None`` when the database cannot be read."""
        reader = self.reader
        if reader is None:
            return None
        try:
            version = reader.data_version()
        except StorageError as exc:
            self._drop_reader(exc)
            return None
        self.storage_error = ""
        return version

    def changed(self) -> bool:
        """True if the monitor committed anything since the last call (or the reader was reopened)."""
        version = self.data_version()
        if version is None:
            was, self._version = self._version, None
            return was is not None
        if version != self._version:
            self._version = version
            return True
        return False

    def read(self, key: str, fn: Callable[[Reader], Any], default: Any = None) -> Any:
        """``fn(reader)``, memoised until the data version changes; ``default`` if the database is unreadable."""
        version = self.data_version()
        if version is None:
            return default
        hit = self._cache.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        reader = self._reader
        assert reader is not None
        try:
            value = fn(reader)
        except StorageError as exc:
            self._drop_reader(exc)
            return default
        self._cache[key] = (version, value)
        return value

    def positions(self) -> list[dict[str, Any]]:
        return self.read("positions", lambda r: r.open_positions(), [])

    def account(self) -> dict[str, Any] | None:
        return self.read("account", lambda r: r.account(), None)

    def heartbeat(self) -> dict[str, Any] | None:
        return self.read("heartbeat", lambda r: r.heartbeat(), None)

    def operations(self, last: int = 50) -> list[dict[str, Any]]:
        return self.read(f"operations:{last}", lambda r: r.operations(last), [])

    def operation(self, command_id: str, file_name: str | None = None) -> dict[str, Any] | None:
        """The operation of ``command_id``; failing that, one recorded under ``file_name`` only.

        The monitor records a file it rejects without its id (``command_id`` NULL,
        ``file_name`` set), so a console that wrote ``cmd_X.json`` finds the verdict by name.
        """
        return self.read(f"operation:{command_id}:{file_name}",
                         lambda r: find_operation(r, command_id, file_name), None)

    def results(self, op_id: int) -> list[dict[str, Any]]:
        return self.read(f"results:{op_id}", lambda r: r.results(op_id), [])

    def rules_paused(self) -> bool | None:
        """The durable paused flag (``rule_state['rules_paused']``), ``None`` if unknown."""
        return self.read("rules_paused", lambda r: r.rule_state("rules_paused", None), None)

    def rules_paused_by(self) -> str | None:
        """Who paused the rules (``operator:<who>``, ``guard:<guards>``, ``flatten:<who>``), ``None`` if unknown."""
        value = self.read("rules_paused_by", lambda r: r.rule_state("rules_paused_by", None), None)
        return None if value in (None, "") else str(value)

    def guard_status(self) -> list[dict[str, Any]] | None:
        """The monitor's last guard evaluation, one dict per guard; ``None`` until it has evaluated any."""
        value = self.read("guard_status", lambda r: r.rule_state("guard_status", None), None)
        if not isinstance(value, list):
            return None
        return [row for row in value if isinstance(row, dict) and row.get("guard")]

    def guard_status_at(self) -> str | None:
        """When the monitor last wrote the guard status (stored UTC text), ``None`` if never."""
        return self.read("guard_status_at", lambda r: rule_state_updated_at(r, "guard_status"), None)

    def guard_state(self) -> dict[str, Any]:
        """The guards' memory (``locked``, ``lock_kind``, ``lock_reason``, ...); ``{}`` if never written."""
        value = self.read("guard_state", lambda r: r.rule_state("guards", None), None)
        return value if isinstance(value, dict) else {}

    def events(self, last: int = 50, min_level: str = "info") -> list[dict[str, Any]]:
        """The monitor's last ``last`` events at ``min_level`` or above, newest first."""
        return self.read(f"events:{last}:{min_level}", lambda r: r.events(last, min_level=min_level), [])

    @property
    def currency(self) -> str:
        """The account's currency (latest snapshot, else heartbeat, else the simulator's setting)."""
        acct = self.account()
        if acct and acct.get("currency"):
            return str(acct["currency"])
        hb = self.heartbeat()
        if hb and hb.get("account_currency"):
            return str(hb["account_currency"])
        return str(self.config.broker.sim.get("currency", "")) if self.simulated else ""

    # -- health ------------------------------------------------------------------------------------

    def update_health(self, now: float | None = None) -> dict[str, Any]:
        """Recompute the monitor's health from the (memoised) heartbeat at ``now``; updates ``health``/``stale``.

        Costs one ``PRAGMA data_version`` when nothing changed, so it runs on every
        tick: the STALE verdict depends on the clock, not on new data.
        """
        now = self.clock() if now is None else now
        health = monitor_health(self.heartbeat(), self.check_interval, now=now)
        if self.storage_error and self._reader is None:
            health["stale"] = True
            health["reason"] = f"cannot read the database: {self.storage_error}"
        self.health = health
        self.stale = bool(health["stale"])
        return health

    def is_stale(self) -> bool:
        """Fresh verdict now (for a preview about to be shown), also updating ``health``/``stale``."""
        return bool(self.update_health()["stale"])

    # -- acting --------------------------------------------------------------------------------------

    def send(self, cmd_type: CommandType | str, **fields: Any) -> Command:
        """Write one command file (the only way the console acts) and remember it as queued.

        ``fields`` are :meth:`CommandDir.write` keywords (``ticket``, ``volume``,
        ``percent``, ``symbol``, ``side``, ``magic``, ``expires_in``).
        :raises CommandError: invalid command, or the folder cannot be written.
        """
        fields.setdefault("requested_by", self.requested_by)
        try:
            cmd = self.commands.write(cmd_type, **fields)
        except FileNotFoundError as exc:
            raise CommandError(f"commands folder {self.commands.root} does not exist "
                               f"(has the workspace been initialised?): {exc}") from None
        except OSError as exc:
            raise CommandError(f"cannot write to {self.commands.root}: {exc}") from None
        self.sent.append(SentCommand(cmd, self.clock()))
        del self.sent[:-200]
        self.sent_count += 1
        return cmd

    def sent_command(self, command_id: str) -> SentCommand | None:
        for item in reversed(self.sent):
            if item.id == command_id:
                return item
        return None

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def now_utc(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)
