"""What an alert is, and which monitor events become one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Every kind a webhook may subscribe to. ``disconnected`` and ``reconnected`` come from
# :class:`fxnb.alerts.disconnect.DisconnectWatch`, not from the store's events of the same name.
ALERT_KINDS: tuple[str, ...] = (
    "command_failed",
    "command_rejected",
    "rule_close",
    "rules_paused",
    "rules_resumed",
    "guard_warning",
    "guard_fired",
    "guard_unlocked",
    "stop_moved",
    "stop_move_failed",
    "flattened",
    "disconnected",
    "reconnected",
    "close_settled",
    "database_failing",
    "database_recovered",
    "commands_failing",
    "commands_recovered",
)
DEFAULT_EVENTS: tuple[str, ...] = ("command_failed", "guard_warning", "guard_fired", "disconnected", "reconnected",
                                   "database_failing", "commands_failing")

# Store events that never become alerts directly: the store records every connect and
# disconnect at once, while an alert waits for ``disconnected_after_seconds`` (DisconnectWatch).
_WATCHED_KINDS = frozenset({"connected", "disconnected", "reconnected"})

LEVELS: tuple[str, ...] = ("info", "warning", "error")


@dataclass(frozen=True)
class Alert:
    """One notification. ``at`` is epoch seconds (UTC); ``None`` means "when it is sent"."""

    kind: str
    level: str
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)
    at: float | None = None


def to_epoch(value: float | int | str | datetime | None) -> float | None:
    """Epoch seconds from what ``Store.event`` accepts as ``at`` (number, datetime, ISO text)."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    raise TypeError(f"not a timestamp: {value!r}")


def iso_utc(epoch: float) -> str:
    """``2026-01-02T03:04:05.678Z``: the spelling the database uses."""
    return datetime.fromtimestamp(float(epoch), UTC).isoformat(timespec="milliseconds")[:23] + "Z"


def alert_from_event(
    level: str,
    kind: str,
    message: str,
    data: Mapping[str, Any] | None = None,
    at: float | int | str | datetime | None = None,
) -> Alert | None:
    """The alert for a ``Store.event(...)`` call, or ``None`` for ``connected``/``disconnected``.

    Those two are left to :class:`~fxnb.alerts.disconnect.DisconnectWatch`, which alerts only
    when an outage lasts. Every other kind maps one to one; each webhook's ``events`` list
    decides whether it is sent. A level outside info/warning/error is sent as ``error``.
    """
    if kind in _WATCHED_KINDS:
        return None
    return Alert(
        kind=kind,
        level=level if level in LEVELS else "error",
        message=message,
        data=dict(data or {}),
        at=to_epoch(at),
    )
