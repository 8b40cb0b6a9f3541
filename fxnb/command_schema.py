"""The command-file format: what a ``commands/cmd_{id}.json`` may contain, and parsing it.

Pure: no file system, no clock (``now`` is always passed in). ``fxnb.commands``
re-exports everything public here; import from there.

The format is the seed's (README_AUTONOMOUS)::

    {"id": 123, "type": "profit|loss|all|single", "ticket": 12345,
     "timestamp": "2024-01-01T12:00:00", "status": "pending"}

extended with ``partial``, ``pause_rules``/``resume_rules``, bulk filters,
``expires_at`` and ``requested_by``. Validation is strict on purpose: a file
that is not exactly understood is rejected, never guessed at (a typo such as
``"tiket"`` must not turn a single close into a bulk close).

Time rules:

* A naive ISO timestamp is the local time of *this* machine (the seed's writers
  used ``datetime.now()``; pass ``local_tz`` to override). An aware one is taken
  as given. Everything inside fxnb is an aware UTC ``datetime``.
* A timestamp more than ``max_skew_seconds`` (300 s) in the future is rejected.
* The command expires at ``expires_at`` if given, else at ``timestamp +
  max_age_seconds`` (config ``commands.max_age_seconds``). ``expires_at`` must be
  after ``timestamp`` and at most ``max_lifetime_seconds`` (1 h) after it.
  Expiry is *not* a parse error: see :func:`is_expired`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Any

from fxnb.errors import CommandError
from fxnb.models import Side

MAX_TICKET = 2**63 - 1
MAX_VOLUME_LOTS = 1000.0
MAX_CLOCK_SKEW_S = 300.0
MAX_LIFETIME_S = 3600.0
MAX_TEXT_LEN = 64
ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
FILE_PREFIX = "cmd_"
FILE_SUFFIX = ".json"


class CommandType(StrEnum):
    PROFIT = "profit"  # close every open position in profit (profit + swap > 0)
    LOSS = "loss"  # close every open position in loss
    ALL = "all"  # close every open position
    SINGLE = "single"  # close one ticket completely
    PARTIAL = "partial"  # close part of one ticket (volume lots or percent %)
    PAUSE_RULES = "pause_rules"  # stop the automatic profit rules (commands still run)
    RESUME_RULES = "resume_rules"
    FLATTEN = "flatten"  # pause the rules, close everything, cancel pending orders, verify the book is flat

    @property
    def is_bulk(self) -> bool:
        return self in _BULK

    @property
    def needs_ticket(self) -> bool:
        return self in (CommandType.SINGLE, CommandType.PARTIAL)


_BULK = frozenset({CommandType.PROFIT, CommandType.LOSS, CommandType.ALL})
_COMMON_KEYS = frozenset({"id", "type", "timestamp", "status", "expires_at", "requested_by", "priority"})
_FILTER_KEYS = frozenset({"symbol", "magic", "side"})
_ALLOWED: dict[CommandType, frozenset[str]] = {
    t: _COMMON_KEYS
    | {"ticket"}
    | (_FILTER_KEYS if t in _BULK else frozenset())
    | ({"volume", "percent"} if t is CommandType.PARTIAL else frozenset())
    for t in CommandType
}


@dataclass(frozen=True)
class Command:
    """One validated command. Times are aware UTC. ``file_name`` is the original ``cmd_{id}.json``."""

    id: str
    type: CommandType
    timestamp: datetime
    expires_at: datetime
    file_name: str
    ticket: int | None = None
    volume: float | None = None
    percent: float | None = None
    symbol: str | None = None
    magic: int | None = None
    side: Side | None = None
    requested_by: str | None = None

    @property
    def is_bulk(self) -> bool:
        return self.type.is_bulk

    def to_dict(self) -> dict[str, Any]:
        """The JSON object fxnb writes for this command (only keys that are set)."""
        d: dict[str, Any] = {"id": self.id, "type": self.type.value, "timestamp": self.timestamp.isoformat()}
        for key in ("ticket", "volume", "percent", "symbol", "magic"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        if self.side is not None:
            d["side"] = self.side.value
        d["expires_at"] = self.expires_at.isoformat()
        if self.requested_by is not None:
            d["requested_by"] = self.requested_by
        d["status"] = "pending"
        return d


def command_file_name(cmd_id: str | int) -> str:
    return f"{FILE_PREFIX}{cmd_id}{FILE_SUFFIX}"


def is_command_file_name(name: str) -> bool:
    """True for a top-level ``cmd_*.json`` (dot files and temp files never are)."""
    return name.startswith(FILE_PREFIX) and name.endswith(FILE_SUFFIX) and not name.startswith(".")


def is_expired(cmd: Command, now: datetime) -> bool:
    """True once ``now`` has reached ``cmd.expires_at``. The monitor records these as ``expired``."""
    return _require_aware(now, "now") >= cmd.expires_at


def validate_id(value: object) -> str:
    """The canonical string form of a command id, or ``ValueError``."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 1 <= value <= MAX_TICKET:
            return str(value)
        raise ValueError(f"'id' must be a positive integer or a string of [A-Za-z0-9_.-]{{1,64}}, "
                         f"got {value}")
    if isinstance(value, str) and ID_RE.fullmatch(value):
        return value
    raise ValueError(
        f"'id' must be a positive integer or a string of [A-Za-z0-9_.-]{{1,64}}, got {_show(value)}"
    )


def is_incomplete_document(data: bytes) -> bool:
    """True if ``data`` is not (yet) a whole JSON document: empty, truncated, not UTF-8.

    What a file looks like while someone is still writing it; see ``CommandSyntaxError``.
    """
    try:
        _decode(data, max(len(data), 1))
    except _Syntax:
        return True
    except _Invalid:
        return False
    return False


class CommandSyntaxError(CommandError):
    """The bytes are not a JSON document (yet): empty, truncated, not UTF-8.

    A file that is still being written looks like this, so the caller may give
    it a grace period (``fxnb.commands.is_possibly_incomplete``) before rejecting it.
    """


def parse_command(
    data: bytes,
    *,
    file_name: str,
    now: datetime,
    max_age_seconds: float,
    max_bytes: int,
    max_skew_seconds: float = MAX_CLOCK_SKEW_S,
    max_lifetime_seconds: float = MAX_LIFETIME_S,
    local_tz: tzinfo | None = None,
) -> Command:
    """Validate one command file's bytes. Raises ``CommandError`` with one message naming the problem.

    ``file_name`` is the file's original name (``cmd_{id}.json``; a path is
    reduced to its last component). ``local_tz`` is the zone of naive
    timestamps (``None``: this machine's local zone).
    """
    _require_aware(now, "now")
    if not max_age_seconds > 0 or not max_bytes > 0:
        raise ValueError("max_age_seconds and max_bytes must be > 0")
    name = file_name.replace("\\", "/").rsplit("/", 1)[-1]
    try:
        return _parse(data, name, now, max_age_seconds, max_bytes, max_skew_seconds,
                      max_lifetime_seconds, local_tz)
    except _Invalid as e:
        raise CommandError(f"{name}: {e}") from None
    except _Syntax as e:
        raise CommandSyntaxError(f"{name}: {e}") from None


# -- internals ---------------------------------------------------------------------------------


class _Invalid(Exception):
    pass


class _Syntax(Exception):
    pass


def _show(value: object) -> str:
    s = repr(value)
    return s if len(s) <= 40 else s[:37] + "..."


def _require_aware(dt: datetime, what: str) -> datetime:
    if not isinstance(dt, datetime) or dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime")
    return dt


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for k, v in pairs:
        if k in d:
            raise _Invalid(f"key {k!r} appears more than once")
        d[k] = v
    return d


class _NonFinite:
    """Stands in for NaN/Infinity so that the key's own check rejects it, naming the key."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def _no_constant(name: str) -> Any:
    return _NonFinite(name)


def _decode(data: bytes, max_bytes: int) -> dict[str, Any]:
    if not isinstance(data, bytes | bytearray):
        raise TypeError("data must be bytes")
    if len(data) > max_bytes:
        raise _Invalid(f"file is {len(data)} bytes, more than the limit of {max_bytes}")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise _Invalid("file is UTF-16; save it as UTF-8")
    try:
        text = bytes(data).decode("utf-8-sig")  # a Notepad BOM is tolerated
    except UnicodeDecodeError as e:
        raise _Syntax(f"file is not valid UTF-8 (byte {e.start})") from None
    if not text.strip():
        raise _Syntax("file is empty")
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise _Syntax(f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise _Invalid("JSON is nested too deeply") from None
    if not isinstance(obj, dict):
        raise _Invalid(f"must be a JSON object, got {type(obj).__name__}")
    return obj


def _int(obj: dict[str, Any], key: str, lo: int, what: str) -> int | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise _Invalid(f"{key!r} must be {what}, got {_show(v)}")
    if v > MAX_TICKET:
        raise _Invalid(f"{key!r} must be {what} <= {MAX_TICKET}, got {_show(v)}")
    return v


def _number(obj: dict[str, Any], key: str, hi: float, what: str) -> float | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not 0 < v <= hi:
        raise _Invalid(f"{key!r} must be {what}, got {_show(v)}")
    return float(v)


def _text(obj: dict[str, Any], key: str) -> str | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, str) or not 1 <= len(v) <= MAX_TEXT_LEN or not v.isprintable() or v != v.strip():
        raise _Invalid(f"{key!r} must be a printable string of 1-{MAX_TEXT_LEN} characters "
                       f"without surrounding spaces, got {_show(v)}")
    return v


def _time(obj: dict[str, Any], key: str, local_tz: tzinfo | None) -> datetime | None:
    v = obj.get(key)
    if v is None:
        return None
    what = f"{key!r} must be an ISO-8601 date and time such as '2024-01-01T12:00:00'"
    if not isinstance(v, str) or len(v) > 64:
        raise _Invalid(f"{what}, got {_show(v)}")
    try:
        dt = datetime.fromisoformat(v)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=local_tz) if local_tz is not None else dt.astimezone()
        return dt.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        raise _Invalid(f"{what}, got {_show(v)}") from None


def _header(obj: dict[str, Any], name: str) -> tuple[str, CommandType]:
    for key in ("id", "type", "timestamp"):
        if key not in obj:
            raise _Invalid(f"missing required key {key!r}")
    try:
        cmd_id = validate_id(obj["id"])
    except ValueError as e:
        raise _Invalid(str(e)) from None
    if command_file_name(cmd_id) != name:
        raise _Invalid(f"'id' {_show(obj['id'])} does not match the file name "
                       f"(expected {command_file_name(cmd_id)})")
    raw_type = obj["type"]
    try:
        ctype = CommandType(raw_type) if isinstance(raw_type, str) else None
    except ValueError:
        ctype = None
    if ctype is None:
        allowed = ", ".join(t.value for t in CommandType)
        raise _Invalid(f"'type' must be one of {allowed}, got {_show(raw_type)}")
    unknown = sorted(set(obj) - _ALLOWED[ctype])
    if unknown:
        raise _Invalid(f"unknown key {unknown[0]!r} for type {ctype.value!r} "
                       f"(allowed: {', '.join(sorted(_ALLOWED[ctype]))})")
    if "status" in obj and obj["status"] != "pending":
        raise _Invalid(f"'status' must be 'pending', got {_show(obj['status'])}")
    if obj.get("priority") is not None and not isinstance(obj["priority"], str):
        raise _Invalid(f"'priority' must be a string (it is ignored), got {_show(obj['priority'])}")
    return cmd_id, ctype


def _target(obj: dict[str, Any], ctype: CommandType) -> dict[str, Any]:
    ticket = _int(obj, "ticket", 1, "a positive integer")
    if ctype.needs_ticket and ticket is None:
        raise _Invalid(f"'ticket' is required for type {ctype.value!r}")
    if not ctype.needs_ticket and ticket is not None:
        raise _Invalid(f"'ticket' must be null or absent for type {ctype.value!r} "
                       f"(use type 'single' to close one ticket)")
    volume = _number(obj, "volume", MAX_VOLUME_LOTS, f"a number of lots > 0 and <= {MAX_VOLUME_LOTS:g}")
    percent = _number(obj, "percent", 100.0, "a number > 0 and <= 100")
    if ctype is CommandType.PARTIAL and (volume is None) == (percent is None):
        raise _Invalid("type 'partial' needs exactly one of 'volume' (lots) or 'percent'")
    side = obj.get("side")
    if side is not None and side not in ("buy", "sell"):
        raise _Invalid(f"'side' must be 'buy' or 'sell', got {_show(side)}")
    return {
        "ticket": ticket,
        "volume": volume,
        "percent": percent,
        "symbol": _text(obj, "symbol"),
        "magic": _int(obj, "magic", 0, "an integer >= 0"),
        "side": Side(side) if side is not None else None,
        "requested_by": _text(obj, "requested_by"),
    }


def _times(obj: dict[str, Any], now: datetime, max_age_seconds: float, max_skew_seconds: float,
           max_lifetime_seconds: float, local_tz: tzinfo | None) -> tuple[datetime, datetime]:
    timestamp = _time(obj, "timestamp", local_tz)
    if timestamp is None:
        raise _Invalid("'timestamp' must not be null")
    if timestamp > now + timedelta(seconds=max_skew_seconds):
        raise _Invalid(f"'timestamp' {obj['timestamp']!r} is more than {max_skew_seconds:g} s in the future "
                       f"(now is {now.astimezone(UTC).isoformat(timespec='seconds')})")
    expires_at = _time(obj, "expires_at", local_tz)
    if expires_at is None:
        return timestamp, timestamp + timedelta(seconds=max_age_seconds)
    if not timestamp < expires_at <= timestamp + timedelta(seconds=max_lifetime_seconds):
        raise _Invalid(f"'expires_at' must be after 'timestamp' and at most {max_lifetime_seconds:g} s "
                       f"after it, got {obj['expires_at']!r}")
    return timestamp, expires_at


def _parse(data: bytes, name: str, now: datetime, max_age_seconds: float, max_bytes: int,
           max_skew_seconds: float, max_lifetime_seconds: float, local_tz: tzinfo | None) -> Command:
    if not is_command_file_name(name):
        raise _Invalid("file name must look like cmd_{id}.json")
    obj = _decode(data, max_bytes)
    cmd_id, ctype = _header(obj, name)
    target = _target(obj, ctype)
    timestamp, expires_at = _times(obj, now, max_age_seconds, max_skew_seconds, max_lifetime_seconds,
                                   local_tz)
    return Command(id=cmd_id, type=ctype, timestamp=timestamp, expires_at=expires_at, file_name=name,
                   **target)
