"""How values are spelled in the database: timestamps and JSON.

Shared by the writer and the reader so both sides agree on one spelling.
Timestamps are ISO-8601 UTC with a ``Z`` and exactly three decimals
(``2026-01-02T03:04:05.678Z``): fixed width, so text order is time order and
``WHERE at >= ?`` on the text is correct, and browsers parse them as UTC (the
seed stored UTC without ``Z``, which browsers read as local time).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Any

JSON_COLUMNS: frozenset[str] = frozenset({"params", "target_tickets", "deals", "data", "value"})


Timestamp = float | int | str | datetime
"""A point in time as the storage API accepts it: epoch seconds (UTC), a
``datetime``, or ISO-8601 text (``Z`` or an offset). Naive datetimes and naive
text are taken as UTC. Whatever comes in, one canonical spelling is stored."""


def _format(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds")[:23] + "Z"


_SECONDS: dict[int, str] = {}  # whole epoch second -> "YYYY-MM-DDTHH:MM:SS"


def iso_utc(epoch: float) -> str:
    """``epoch`` seconds (UTC) as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (milliseconds truncated).

    The same string as ``datetime.fromtimestamp(epoch, UTC)`` formatted to milliseconds, which costs
    about 2 µs; a close-all writes one per ticket, mostly within the same few seconds. So the date
    and time of day are formatted once per second, and the fraction is rounded to microseconds
    exactly as ``fromtimestamp`` does (the same double operations, half to even), then truncated.
    """
    e = float(epoch)
    sec = math.floor(e)
    us = round((e - sec) * 1e6)
    if us >= 1_000_000:
        sec, us = sec + 1, us - 1_000_000
    prefix = _SECONDS.get(sec)
    if prefix is None:
        prefix = _format(datetime.fromtimestamp(sec, UTC))[:19]
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        _SECONDS[sec] = prefix
    return f"{prefix}.{us // 1000:03d}Z"


def to_datetime(value: Timestamp) -> datetime:
    """Any :data:`Timestamp` as an aware UTC ``datetime``; ValueError for text that is not ISO-8601."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    else:
        raise TypeError(f"not a timestamp: {value!r}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def to_iso(value: Timestamp) -> str:
    """Any :data:`Timestamp` in the stored spelling."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return iso_utc(value)
    return _format(to_datetime(value))


def to_epoch(value: Timestamp) -> float:
    """Any :data:`Timestamp` as epoch seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return to_datetime(value).timestamp()


def iso_or_none(value: Timestamp | None) -> str | None:
    """:func:`to_iso`, passing ``None`` through (for optional timestamps)."""
    return None if value is None else to_iso(value)


def dumps(value: Any) -> str:
    """Compact, key-sorted JSON; NaN/Infinity are refused because ``json_valid`` refuses them too."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False, default=_default)


def _default(value: Any) -> Any:
    # Enums (Side, CloseStatus) and sets of tickets are common in params.
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def decode_row(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A row as a plain dict with its JSON columns decoded."""
    if row is None:
        return None
    out = dict(row)
    for key in JSON_COLUMNS.intersection(out):
        if isinstance(out[key], str):
            out[key] = json.loads(out[key])
    return out
