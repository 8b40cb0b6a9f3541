"""What the guards remember between evaluations, as one frozen, JSON-round-trippable value.

Why: the guards are pure, but an account guard is not memoryless. The equity
high-water mark, the day's starting balance, a lock, which warnings were already
sent and whether today's session close already fired must all survive a monitor
restart: an MT5 prop guard that forgets its lock on restart is no guard. The
monitor stores ``to_json()`` (e.g. in its rule-state table) after every
evaluation and passes ``from_json()`` back in.

``from_json`` is strict: unreadable state raises ``ValueError`` instead of
quietly becoming an unlocked fresh state. What to do then (refuse to start,
or start locked) is the caller's decision.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from fxnb.guards.periods import as_utc

UNTIL_RESUME = "until_resume"  # cleared only by an operator (resume_rules)
UNTIL_NEXT_DAY = "until_next_day"  # cleared at the next trading day, or by an operator
LOCK_KINDS = (UNTIL_RESUME, UNTIL_NEXT_DAY)
STATE_VERSION = 1
_KEEP_FIRED_DAYS = 7


@dataclass(frozen=True)
class GuardState:
    """The guards' memory. ``GuardState()`` is a fresh start (nothing tracked, unlocked)."""

    # drawdown: the highest equity seen in the period ``hwm_period`` ("session:<iso>" or "day:<date>");
    # None = re-anchor at the next evaluation (fresh start, new period, or after an operator resume)
    equity_hwm: float | None = None
    hwm_period: str = ""
    # daily loss: the trading day, the balance it began with, and a loss an operator forgave by
    # resetting the daily lock (the guard then protects a fresh max_loss from that point on)
    day_key: str = ""
    day_start_balance: float | None = None
    daily_forgiven: float = 0.0
    daily_rebase: bool = False  # set by unlock(); the next evaluation records daily_forgiven
    # the lock
    locked: bool = False
    lock_kind: str = ""  # "" | until_resume | until_next_day
    lock_reason: str = ""
    lock_guards: tuple[str, ...] = ()  # the guards that fired it
    lock_day: str = ""  # trading day on which it was set
    lock_until: datetime | None = None  # until_next_day: when it ends (aware UTC)
    locked_at: datetime | None = None
    # once-per-period memory
    warnings_sent: tuple[str, ...] = ()  # "<guard>:<period key>"
    session_close_fired: tuple[str, ...] = ()  # server dates on which the session close fired
    last_actions: tuple[tuple[str, str, str], ...] = ()  # (guard, UTC ISO time, summary), sorted by guard

    def __post_init__(self) -> None:
        if self.lock_kind not in ("", *LOCK_KINDS):
            raise ValueError(f"unknown lock kind {self.lock_kind!r}")
        if self.locked != bool(self.lock_kind):
            raise ValueError("a locked state needs a lock kind, and an unlocked one none")
        for name in ("equity_hwm", "day_start_balance"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                raise ValueError(f"{name} must be finite, got {v!r}")

    # -------------------------------------------------------------------------------- queries
    def last_action(self, guard: str) -> str | None:
        """``"<UTC ISO time> <summary>"`` of the guard's last action, for the dashboard."""
        for name, when, summary in self.last_actions:
            if name == guard:
                return f"{when} {summary}"
        return None

    def warned(self, key: str) -> bool:
        return key in self.warnings_sent

    # -------------------------------------------------------------------------------- updates
    def with_action(self, guard: str, now: datetime, summary: str) -> GuardState:
        rest = [a for a in self.last_actions if a[0] != guard]
        entry = (guard, as_utc(now).isoformat(), summary)
        return replace(self, last_actions=tuple(sorted([*rest, entry])))

    def with_warning(self, key: str) -> GuardState:
        return replace(self, warnings_sent=tuple(sorted({*self.warnings_sent, key})))

    def without_warnings(self, guard: str) -> GuardState:
        return replace(self, warnings_sent=tuple(k for k in self.warnings_sent if not k.startswith(f"{guard}:")))

    def with_session_fired(self, day: str) -> GuardState:
        days = sorted({*self.session_close_fired, day})[-_KEEP_FIRED_DAYS:]
        return replace(self, session_close_fired=tuple(days))

    # -------------------------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": STATE_VERSION}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, datetime):
                v = as_utc(v).isoformat()
            elif isinstance(v, tuple):
                v = [list(x) if isinstance(x, tuple) else x for x in v]
            out[f.name] = v
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Any) -> GuardState:
        """Inverse of ``to_dict``. Missing keys take the defaults; anything malformed is a ``ValueError``."""
        if not isinstance(data, dict):
            raise ValueError(f"guard state: expected an object, got {type(data).__name__}")
        if data.get("version", STATE_VERSION) != STATE_VERSION:
            raise ValueError(f"guard state: unsupported version {data.get('version')!r}")
        kwargs: dict[str, Any] = {}
        try:
            for f in fields(cls):
                if f.name in data:
                    kwargs[f.name] = _load_field(f.name, data[f.name])
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"guard state: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> GuardState:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"guard state: invalid JSON ({exc.msg})") from None
        return cls.from_dict(data)


def _load_field(name: str, v: Any) -> Any:
    if name in ("lock_until", "locked_at"):
        return None if v is None else as_utc(datetime.fromisoformat(_str(name, v)))
    if name in ("equity_hwm", "day_start_balance"):
        return None if v is None else _num(name, v)
    if name == "daily_forgiven":
        return _num(name, v)
    if name in ("daily_rebase", "locked"):
        if not isinstance(v, bool):
            raise ValueError(f"{name} must be true or false")
        return v
    if name in ("lock_guards", "warnings_sent", "session_close_fired"):
        if not isinstance(v, list):
            raise ValueError(f"{name} must be a list")
        return tuple(_str(name, x) for x in v)
    if name == "last_actions":
        if not isinstance(v, list) or not all(isinstance(x, list) and len(x) == 3 for x in v):
            raise ValueError("last_actions must be a list of [guard, time, summary]")
        return tuple(sorted(tuple(_str(name, y) for y in x) for x in v))
    return _str(name, v)


def _num(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"{name} must be a number")
    return float(v)


def _str(name: str, v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"{name} must be a string")
    return v
