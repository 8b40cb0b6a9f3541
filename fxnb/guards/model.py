"""The values that go into and come out of ``evaluate_guards``.

Why separate: the monitor, the dashboard and the tests all build or read these,
and none of them needs the guard logic to do so. Everything is frozen and plain,
so an outcome can be logged, compared in a test or turned into JSON as is.

The monitor's side of the contract (the guards never act themselves):

* ``closes``: full closes (``CloseDecision.full`` is true, ``volume`` the open
  volume), at most one per ticket, through the monitor's one close path.
* ``stop_moves``: one ``TRADE_ACTION_SLTP`` each, sending ``sl`` *and* ``tp``
  (``tp`` is the position's current TP, carried over: an SLTP request with
  ``tp=0`` would delete it).
* ``lock``: pause the rules; ``flatten`` says the guard's closes are an
  emergency flatten (use the monitor's flatten path: close all, cancel pending
  orders, check the book is flat).
* ``alerts``: to the event log / notifications.
* ``state``: persist it, pass it back next time.
* ``status``: for the dashboard, one row per guard.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from fxnb.guards.state import GuardState
from fxnb.models import Account, CloseDecision, Position, SymbolSpec

AlertKind = Literal["guard_warning", "guard_fired", "guard_unlocked"]
StatusState = Literal["off", "ok", "warning", "fired", "locked"]


@dataclass(frozen=True)
class GuardInput:
    """One snapshot of the book, plus what the guards cannot know themselves.

    ``realised_today``: net realised P/L (profit + swap + commission + fee) of the
    deals closed since the daily-loss guard's trading day began, i.e. from
    ``day_start(now, daily_loss.utc_offset_hours, daily_loss.reset_hour)``. ``now``
    and ``session_started_at`` must be timezone-aware.
    """

    positions: Sequence[Position]
    account: Account
    specs: Mapping[str, SymbolSpec]
    realised_today: float
    now: datetime
    session_started_at: datetime


@dataclass(frozen=True)
class StopMove:
    """Set ``ticket``'s SL to ``sl`` (rounded to the symbol's digits), keeping ``tp``."""

    ticket: int
    symbol: str
    sl: float
    tp: float
    rule: str  # "breakeven" | "trailing"
    reason: str
    previous_sl: float = 0.0


@dataclass(frozen=True)
class GuardAlert:
    """``guard_warning``: approaching a limit (once per period). ``guard_fired``: a guard acted.
    ``guard_unlocked``: a daily lock ended with the new trading day."""

    kind: AlertKind
    guard: str
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LockRequest:
    """A guard locked the account: pause the rules until ``kind`` says otherwise."""

    kind: str  # state.UNTIL_RESUME | state.UNTIL_NEXT_DAY
    guards: tuple[str, ...]
    reason: str
    until: datetime | None = None  # until_next_day: when it ends (aware UTC)
    flatten: bool = True


@dataclass(frozen=True)
class Blocked:
    """An action the spread filter deferred (it is decided again on the next evaluation)."""

    ticket: int
    rule: str
    reason: str


@dataclass(frozen=True)
class GuardStatus:
    """One dashboard row. ``distance`` is in the guard's own unit (see ``distance_text``)."""

    guard: str
    enabled: bool
    state: StatusState
    value: float | None = None
    limit: float | None = None
    distance: float | None = None
    distance_text: str = ""
    last_action: str | None = None


@dataclass(frozen=True)
class GuardOutcome:
    closes: list[CloseDecision]
    stop_moves: list[StopMove]
    alerts: list[GuardAlert]
    lock: LockRequest | None
    state: GuardState
    status: list[GuardStatus]
    blocked: list[Blocked] = field(default_factory=list)
