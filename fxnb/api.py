"""The notebook API for quants: DataFrames in, command files out.

Reads go through the read-only :class:`~fxnb.storage.Reader`; actions go
through :meth:`CommandDir.write <fxnb.commands.CommandDir.write>` and nothing
else. Nothing here imports the broker or the monitor or reads credentials.

The workspace is ``$FXNB_CONFIG`` (path to its ``config.json``), else
``./config.json``; every function also takes ``config=`` (a path or a
:class:`~fxnb.config.Config`) to point elsewhere.

>>> import fxnb.api as fx                                   # doctest: +SKIP
>>> fx.positions().groupby("symbol")["profit"].sum()        # doctest: +SKIP
>>> cmd = fx.close_ticket(500000003)                        # doctest: +SKIP
>>> fx.wait(cmd.id)["status"]                               # doctest: +SKIP
'completed'
>>> op = await fx.result(fx.close_losing(symbol="EURUSD").id, timeout=30)   # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from fxnb.commands import Command, CommandDir, CommandType, command_file_name
from fxnb.config import Config, load_config
from fxnb.errors import StorageError
from fxnb.status import monitor_health
from fxnb.storage import Reader, frames
from fxnb.widgets.context import FINAL_STATUSES, config_path_from_env, find_operation, matches_bulk

ConfigLike = Config | str | os.PathLike[str] | None

REQUESTED_BY = "notebook"


class CommandTimeout(TimeoutError):
    """The command did not reach a final state in time. ``operation`` is the last state seen (or None)."""

    def __init__(self, command_id: str, timeout: float, operation: dict[str, Any] | None,
                 health: dict[str, Any] | None = None) -> None:
        self.command_id = command_id
        self.operation = operation
        self.health = health
        state = "not recorded by the monitor yet" if operation is None else f"still {operation['status']}"
        hint = ""
        if health and health.get("stale"):
            hint = f"; monitor: {health.get('reason')}"
        super().__init__(f"command {command_id} not final after {timeout:g} s ({state}{hint})")


# -- workspace ---------------------------------------------------------------------------------

_readers: dict[Path, Reader] = {}


def _resolve(config_: ConfigLike) -> Config:
    if isinstance(config_, Config):
        return config_
    return load_config(config_path_from_env(config_))


def config(path: ConfigLike = None) -> Config:
    """The workspace config: ``path`` (or a Config), else ``$FXNB_CONFIG``, else ``./config.json``."""
    return _resolve(path)


def reader(config: ConfigLike = None) -> Reader:
    """A read-only :class:`Reader` on the workspace database (one per database file, reused)."""
    path = _resolve(config).paths.database.resolve()
    cached = _readers.get(path)
    if cached is not None:
        return cached
    r = Reader(path)
    _readers[path] = r
    return r


def _with_reader(config_: ConfigLike, fn: Any) -> Any:
    """Run ``fn(reader)``; on a storage error reopen once (the file may have been replaced)."""
    r = reader(config_)
    try:
        return fn(r)
    except StorageError:
        _readers.pop(r.path.resolve(), None)
        r.close()
        return fn(reader(config_))


def command_dir(config: ConfigLike = None) -> CommandDir:
    """The workspace's command folder with its configured limits."""
    cfg = _resolve(config)
    return CommandDir(cfg.paths.commands, max_age_seconds=cfg.commands.max_age_seconds,
                      max_bytes=cfg.commands.max_file_bytes)


# -- reading -----------------------------------------------------------------------------------

def positions(*, config: ConfigLike = None) -> pd.DataFrame:
    """Open positions indexed by ticket, with a ``net`` column (profit + swap)."""
    df = _with_reader(config, frames.positions_df)
    df["net"] = df["profit"] + df["swap"]
    return df


def account(*, config: ConfigLike = None) -> dict[str, Any] | None:
    """The latest account snapshot (balance, equity, margins, currency), or None."""
    return _with_reader(config, lambda r: r.account())


def account_history(since: float | pd.Timestamp | str | None = None, *, max_points: int = 2000,
                    until: float | pd.Timestamp | str | None = None, config: ConfigLike = None) -> pd.DataFrame:
    """Account snapshots indexed by UTC time, thinned to at most ``max_points`` rows.

    ``since``/``until``: epoch seconds, a pandas Timestamp or ISO text (UTC if naive);
    a negative number means "that many seconds ago".
    """
    return _with_reader(config, lambda r: frames.history_df(r, since_ts=_epoch(since), max_points=max_points,
                                                            until_ts=_epoch(until)))


def operations(last: int = 50, *, source: str | None = None, config: ConfigLike = None) -> pd.DataFrame:
    """The last close operations (operator commands and rule closes), newest first.

    ``source``: ``"operator"`` or ``"rule"`` to keep only one kind.
    """
    df = _with_reader(config, lambda r: frames.operations_df(r, last))
    if source is not None:
        df = df[df["source"] == source]
    return df


def operation(command_id: str, *, config: ConfigLike = None) -> dict[str, Any] | None:
    """One operation by command id, with its per-ticket ``results`` list, or None if not recorded (yet).

    A file the monitor rejected is recorded without its id; it is found by its file name.
    """
    return _with_reader(config, lambda r: find_operation(r, command_id, command_file_name(command_id)))


def results(command_id: str | None = None, *, last: int = 50, config: ConfigLike = None) -> pd.DataFrame:
    """Per-ticket results: of one command (``command_id``), or of the ``last`` operations.

    Columns: operation_id, command_id, operation_type, ticket, symbol, status,
    requested_volume, closed_volume, price, profit (realised, from deals),
    retcode, message, attempts, finished_at (UTC).
    """
    def load(r: Reader) -> list[dict[str, Any]]:
        if command_id is not None:
            ops = [find_operation(r, command_id, command_file_name(command_id))]
        else:
            ops = r.operations(last)
        rows = []
        for op in ops:
            if op is None:
                continue
            for res in op.get("results") if "results" in op else r.results(op["id"]):
                rows.append({**res, "command_id": op.get("command_id"), "operation_type": op["operation_type"]})
        return rows

    cols = ["operation_id", "command_id", "operation_type", "ticket", "symbol", "status", "requested_volume",
            "closed_volume", "price", "profit", "retcode", "message", "attempts", "finished_at"]
    df = pd.DataFrame(_with_reader(config, load), columns=cols)
    df["finished_at"] = pd.to_datetime(df["finished_at"], utc=True, format="ISO8601")
    df["retcode"] = df["retcode"].astype("Int64")  # None (nothing sent) stays <NA>, codes stay integers
    return df


def realised_by_symbol(since: float | pd.Timestamp | str | None = None, *, config: ConfigLike = None) -> pd.DataFrame:
    """Realised P/L per symbol (``profit``, ``positions``), best first."""
    return _with_reader(config, lambda r: frames.realised_by_symbol_df(r, _epoch(since)))


def realised_by_day(since: float | pd.Timestamp | str | None = None, *, utc_offset_s: int = 0,
                    config: ConfigLike = None) -> pd.DataFrame:
    """Realised P/L per calendar day (UTC unless ``utc_offset_s``), ascending."""
    return _with_reader(config, lambda r: frames.realised_by_day_df(r, _epoch(since), utc_offset_s=utc_offset_s))


def floating_by_symbol(*, config: ConfigLike = None) -> pd.DataFrame:
    """Floating P/L of the open book per symbol: ``positions``, ``volume``, ``profit``, ``swap``, ``net``."""
    df = positions(config=config)
    if df.empty:
        return pd.DataFrame(columns=["positions", "volume", "profit", "swap", "net"],
                            index=pd.Index([], name="symbol"))
    out = df.groupby("symbol").agg(positions=("symbol", "size"), volume=("volume", "sum"),
                                   profit=("profit", "sum"), swap=("swap", "sum"), net=("net", "sum"))
    return out.sort_values("net", ascending=False)


def events(last: int = 50, *, min_level: str = "info", kind: str | None = None,
           config: ConfigLike = None) -> pd.DataFrame:
    """The monitor's event log (rule closes, guard warnings and firings, flattens, disconnects, failures),
    newest first, indexed by id: ``at`` (UTC), ``level``, ``kind``, ``message``, ``data``.

    ``min_level``: ``info``, ``warning`` or ``error``. ``kind``: keep only that kind (among the ``last``).
    """
    df = _with_reader(config, lambda r: frames.events_df(r, last, min_level=min_level))
    if kind is not None:
        df = df[df["kind"] == kind]
    return df


GUARD_STATUS_COLUMNS = ["guard", "enabled", "state", "value", "limit", "distance", "distance_text", "last_action"]


def guard_status(*, config: ConfigLike = None) -> pd.DataFrame:
    """The account guards as the monitor last evaluated them, one row per guard (indexed by ``guard``).

    ``state``: ``off``/``ok``/``warning``/``fired``/``locked``; ``value`` vs ``limit`` and ``distance``
    (to firing) in the guard's own unit, ``distance_text`` in words; ``last_action`` is
    ``"<UTC time> <summary>"`` or None. Empty (same columns) until the monitor has evaluated a guard.
    """
    rows = _with_reader(config, lambda r: r.rule_state("guard_status", None))
    rows = [dict(r) for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
    df = pd.DataFrame(rows, columns=GUARD_STATUS_COLUMNS)
    df["enabled"] = df["enabled"].astype(bool)
    for col in ("value", "limit", "distance"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df.set_index("guard")


def guard_state(*, config: ConfigLike = None) -> dict[str, Any]:
    """The guards' memory as the monitor stored it: ``locked``, ``lock_kind`` ('' | ``until_resume`` |
    ``until_next_day``), ``lock_reason``, ``lock_guards``, ``lock_until``, ``equity_hwm``, ... (``{}`` if none)."""
    value = _with_reader(config, lambda r: r.rule_state("guards", None))
    return value if isinstance(value, dict) else {}


def health(*, config: ConfigLike = None) -> dict[str, Any]:
    """The monitor's heartbeat with a verdict: ``stale``, ``reason``, ``last_poll_age_s``, ..."""
    cfg = _resolve(config)
    try:
        hb = _with_reader(cfg, lambda r: r.heartbeat())
    except StorageError as exc:
        return {"stale": True, "state": "no database", "connected": False, "reason": str(exc)}
    return monitor_health(hb, cfg.profit_monitor.check_interval)


def preview(cmd_type: str, *, symbol: str | None = None, side: str | None = None, magic: int | None = None,
            config: ConfigLike = None) -> pd.DataFrame:
    """The open positions a bulk command (``profit``/``loss``/``all``) would close right now (informational:
    the monitor selects again when it runs the command)."""
    df = positions(config=config)
    if df.empty:
        return df
    mask = [matches_bulk(row, cmd_type, symbol=symbol, side=side, magic=magic)
            for row in df.reset_index().to_dict("records")]
    return df[mask]


# -- acting ------------------------------------------------------------------------------------

def send_command(cmd_type: CommandType | str, *, ticket: int | None = None, volume: float | None = None,
                 percent: float | None = None, symbol: str | None = None, magic: int | None = None,
                 side: str | None = None, expires_in: float | None = None, requested_by: str = REQUESTED_BY,
                 config: ConfigLike = None) -> Command:
    """Write one command file (``profit|loss|all|single|partial|pause_rules|resume_rules|flatten``); returns it.

    The monitor picks it up within moments; follow it with :func:`result` or :func:`wait`.
    :raises fxnb.errors.CommandError: if the command is invalid.
    """
    return command_dir(config).write(cmd_type, ticket=ticket, volume=volume, percent=percent, symbol=symbol,
                                     magic=magic, side=side, expires_in=expires_in, requested_by=requested_by)


def _command_id(command: Command | str) -> str:
    return command.id if isinstance(command, Command) else str(command)


def _poll(command_id: str, cfg: Config) -> dict[str, Any] | None:
    try:
        return _with_reader(cfg, lambda r: find_operation(r, command_id, command_file_name(command_id)))
    except StorageError:
        return None


async def result(command: Command | str, timeout: float = 30.0, *, poll: float = 0.1,
                 config: ConfigLike = None) -> dict[str, Any]:
    """Wait (without blocking the kernel) until the command is final; returns the operation with its results.

    :raises CommandTimeout: if it is not final after ``timeout`` seconds.
    """
    cfg = _resolve(config)
    command_id = _command_id(command)
    deadline = time.monotonic() + timeout
    op = None
    while True:
        op = _poll(command_id, cfg)
        if op is not None and op["status"] in FINAL_STATUSES:
            return op
        if time.monotonic() >= deadline:
            raise CommandTimeout(command_id, timeout, op, health(config=cfg))
        await asyncio.sleep(poll)


def wait(command: Command | str, timeout: float = 30.0, *, poll: float = 0.1,
         config: ConfigLike = None) -> dict[str, Any]:
    """Blocking :func:`result` (the kernel, and any live widget in it, is busy until it returns).

    :raises CommandTimeout: if it is not final after ``timeout`` seconds.
    """
    cfg = _resolve(config)
    command_id = _command_id(command)
    deadline = time.monotonic() + timeout
    while True:
        op = _poll(command_id, cfg)
        if op is not None and op["status"] in FINAL_STATUSES:
            return op
        if time.monotonic() >= deadline:
            raise CommandTimeout(command_id, timeout, op, health(config=cfg))
        time.sleep(poll)


def close_ticket(ticket: int, *, volume: float | None = None, percent: float | None = None,
                 config: ConfigLike = None, **kwargs: Any) -> Command:
    """Close one position entirely, or part of it with ``volume`` (lots) or ``percent``."""
    if volume is None and percent is None:
        return send_command("single", ticket=ticket, config=config, **kwargs)
    return send_command("partial", ticket=ticket, volume=volume, percent=percent, config=config, **kwargs)


def close_profitable(*, symbol: str | None = None, side: str | None = None, magic: int | None = None,
                     config: ConfigLike = None, **kwargs: Any) -> Command:
    """Close every position in profit (profit + swap > 0), optionally filtered."""
    return send_command("profit", symbol=symbol, side=side, magic=magic, config=config, **kwargs)


def close_losing(*, symbol: str | None = None, side: str | None = None, magic: int | None = None,
                 config: ConfigLike = None, **kwargs: Any) -> Command:
    """Close every position in loss (profit + swap < 0), optionally filtered."""
    return send_command("loss", symbol=symbol, side=side, magic=magic, config=config, **kwargs)


def close_all(*, symbol: str | None = None, side: str | None = None, magic: int | None = None,
              config: ConfigLike = None, **kwargs: Any) -> Command:
    """Close every open position, optionally filtered."""
    return send_command("all", symbol=symbol, side=side, magic=magic, config=config, **kwargs)


def flatten(*, config: ConfigLike = None, **kwargs: Any) -> Command:
    """The monitor's emergency command: pause the rules, close everything, cancel pending orders, verify flat.

    The operation (type ``flatten``) ends ``completed`` only if the book ended flat; otherwise its
    ``error_message`` says what is left. The rules stay paused until :func:`resume_rules`. The
    ``flattened`` event (:func:`events`) carries the summary.
    """
    return send_command("flatten", config=config, **kwargs)


def pause_rules(*, config: ConfigLike = None, **kwargs: Any) -> Command:
    """Stop the automatic profit rules (operator commands still run)."""
    return send_command("pause_rules", config=config, **kwargs)


def resume_rules(*, config: ConfigLike = None, **kwargs: Any) -> Command:
    """Let the automatic profit rules run again."""
    return send_command("resume_rules", config=config, **kwargs)


def rules_paused(*, config: ConfigLike = None) -> bool | None:
    """The durable paused flag as the monitor recorded it (None if it never ran)."""
    return _with_reader(config, lambda r: r.rule_state("rules_paused", None))


def rules_paused_by(*, config: ConfigLike = None) -> str | None:
    """Who paused the rules: ``operator:<who>``, ``flatten:<who>`` or ``guard:<guards>`` (None if unknown)."""
    return _with_reader(config, lambda r: r.rule_state("rules_paused_by", None)) or None


# -- panels ------------------------------------------------------------------------------------

def console(*, requested_by: str = "lab", config: ConfigLike = None) -> Any:
    """A :class:`fxnb.widgets.Console` for building panels in a notebook."""
    from fxnb.widgets import Console

    return Console(_resolve(config), requested_by=requested_by)


def dashboard(*, start: bool = True, requested_by: str = "lab", config: ConfigLike = None, **kwargs: Any) -> Any:
    """The whole dashboard inline (started live unless ``start=False``)."""
    from fxnb.widgets import Dashboard

    dash = Dashboard(console(requested_by=requested_by, config=config), **kwargs)
    if start:
        dash.start()
    return dash


def _epoch(value: float | pd.Timestamp | str | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return time.time() + value if value < 0 else float(value)
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.timestamp()


__all__ = [
    "CommandTimeout",
    "account",
    "account_history",
    "close_all",
    "close_losing",
    "close_profitable",
    "close_ticket",
    "command_dir",
    "config",
    "console",
    "dashboard",
    "events",
    "flatten",
    "floating_by_symbol",
    "guard_state",
    "guard_status",
    "health",
    "operation",
    "operations",
    "pause_rules",
    "positions",
    "preview",
    "realised_by_day",
    "realised_by_symbol",
    "reader",
    "result",
    "results",
    "resume_rules",
    "rules_paused",
    "rules_paused_by",
    "send_command",
    "wait",
]
