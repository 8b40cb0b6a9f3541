"""The external control file: flip the simulated terminal from outside the process.

Like using the terminal's GUI: ``<state stem>.control.json`` beside the state
file (``sim_terminal.db`` → ``sim_terminal.control.json``). The terminal stats
it on every call and re-reads it when it changes. Keys (all optional):

- ``disconnected`` (bool): the terminal is unreachable (every call → None/False,
  ``(-10004, 'No IPC connection')``); the IPC session is lost, so after it is
  set back to false the client must call ``initialize()`` again, as after a
  real terminal restart.
- ``server_disconnected`` (bool): the terminal runs but has lost the trade
  server: ``terminal_info().connected`` is False, order_send/order_check
  answer retcode 10031, reads still work.
- ``autotrading`` (bool): the "Algo Trading" button; false → 10027.
- ``market_closed`` (list of symbols, "*" = all): added to the settings' list → 10018.
- ``trade_disabled`` (list of symbols, "*" = all): the broker disabled trading
  (``symbol_info().trade_mode`` 0) → 10017.
- ``price_shift`` ({symbol: float}): added to bid and ask.
- ``prices`` ({symbol: float}): pins the bid (ask = bid + spread) while present.
- ``lose_next_replies`` (int): the next N ``order_send`` calls are processed
  (executed or refused) but return None with ``(-10005, 'IPC timeout')``. The
  terminal counts it down in this file as it uses it up (the key goes at 0), so
  several processes on one state file lose exactly N replies between them.

``write_control`` merges top-level keys into the existing file (a value of
``None`` removes the key) and replaces the file atomically.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def control_path(state_file: str | os.PathLike[str]) -> Path:
    p = Path(state_file)
    return p.with_name(p.stem + ".control.json")


def read_control(state_file: str | os.PathLike[str]) -> dict[str, Any]:
    """The control file's content ({} when there is none). Invalid JSON raises ValueError."""
    return _load(control_path(state_file))


def _load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return {}
    data = json.loads(text) if text.strip() else {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the control file must hold a JSON object")
    return data


def write_control(state_file: str | os.PathLike[str], **changes: Any) -> dict[str, Any]:
    """Merge ``changes`` into the control file atomically (temp file + replace); returns the new content."""
    path = control_path(state_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = read_control(state_file)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return data


def _floats(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        return {}
    return {str(k): float(v) for k, v in value.items() if isinstance(v, int | float)}


def _count(value: Any) -> int:
    return max(value, 0) if isinstance(value, int) and not isinstance(value, bool) else 0


def _names(value: Any) -> frozenset[str]:
    return frozenset(str(v) for v in value) if isinstance(value, list) else frozenset()


@dataclass(frozen=True)
class Control:
    """The parsed control file (defaults = no file)."""

    disconnected: bool = False
    server_disconnected: bool = False
    autotrading: bool | None = None
    market_closed: frozenset[str] = frozenset()
    trade_disabled: frozenset[str] = frozenset()
    price_shift: dict[str, float] = field(default_factory=dict)
    prices: dict[str, float] = field(default_factory=dict)
    lose_next_replies: int = 0

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Control:
        auto = data.get("autotrading")
        return cls(
            disconnected=bool(data.get("disconnected", False)),
            server_disconnected=bool(data.get("server_disconnected", False)),
            autotrading=None if auto is None else bool(auto),
            market_closed=_names(data.get("market_closed")),
            trade_disabled=_names(data.get("trade_disabled")),
            price_shift=_floats(data.get("price_shift")),
            prices=_floats(data.get("prices")),
            lose_next_replies=_count(data.get("lose_next_replies")),
        )


def take_lost_reply(state_file: str | os.PathLike[str]) -> bool:
    """Use up one of ``lose_next_replies``: True if there was one.

    Re-reads the file rather than trusting a cached parse; the caller holds the state
    file's write lock, so processes sharing it cannot both take the last one."""
    try:
        left = _count(read_control(state_file).get("lose_next_replies"))
    except ValueError:
        return False
    if left <= 0:
        return False
    write_control(state_file, lose_next_replies=left - 1 if left > 1 else None)
    return True


class ControlWatcher:
    """Re-reads the control file when its stat signature changes (one ``stat`` per call)."""

    def __init__(self, state_file: Path) -> None:
        self.path = control_path(state_file)
        self._sig: tuple[int, int, int, int] | None = None
        self.control = Control()
        self.version = 0

    def poll(self) -> bool:
        """True when the control changed since the last poll."""
        try:
            st = self.path.stat()
            sig = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)
        except OSError:  # no control file (or unreadable): nothing is overridden
            sig = None
        if sig == self._sig:
            return False
        self._sig = sig
        try:
            data = {} if sig is None else _load(self.path)
            control = Control.parse(data)
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring invalid control file %s: %s", self.path, exc)
            return False
        if control == self.control:
            return False
        self.control = control
        self.version += 1
        return True
