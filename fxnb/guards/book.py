"""Shared pieces of the guards: the usable book, full closes, and one guard's verdict.

Why: every guard must agree on which positions exist. A snapshot can be
inconsistent (a ticket listed twice, a volume of NaN); like ``fxnb.rules``, the
guards then leave such a ticket alone rather than guess, so they can never ask
to close more than is open.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from fxnb.guards.model import Blocked, GuardAlert, GuardStatus
from fxnb.models import CloseDecision, Position


def open_book(positions: Iterable[Position]) -> list[Position]:
    """Positions with a unique ticket and a finite volume > 0, sorted by ticket."""
    positions = list(positions)
    counts = Counter(p.ticket for p in positions)
    return sorted((p for p in positions if counts[p.ticket] == 1 and math.isfinite(p.volume) and p.volume > 0),
                  key=lambda p: p.ticket)


def floating(p: Position) -> float:
    """Floating P/L as the guards count it: profit + swap (commission is booked on deals)."""
    return p.profit + p.swap


def close_all(positions: Iterable[Position], rule: str, reason: str) -> list[CloseDecision]:
    """One full close per position: the whole open volume, never more."""
    return [CloseDecision(ticket=p.ticket, volume=p.volume, reason=reason, rule=rule, full=True)
            for p in sorted(positions, key=lambda p: p.ticket)]


def money(x: float) -> str:
    return f"{x:,.2f}"


@dataclass(frozen=True)
class Check:
    """One guard's verdict for one evaluation (the engine combines them).

    ``fire``: the reason, when an account guard (drawdown, daily loss) says
    "flatten and lock". ``closes``/``blocked``: a closing guard's decisions and
    what the spread filter deferred. ``summary``: what to remember as its last action.
    """

    status: GuardStatus
    alerts: tuple[GuardAlert, ...] = ()
    fire: str | None = None
    closes: list[CloseDecision] = field(default_factory=list)
    blocked: list[Blocked] = field(default_factory=list)
    summary: str | None = None
