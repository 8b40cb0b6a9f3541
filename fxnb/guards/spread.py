"""The spread filter: defer optional closes while the spread is too wide; never an emergency.

Why: a profit close taken at a spread of 80 points gives back much of the
profit it was meant to lock in, and the spread is wide for minutes at a time
(the daily rollover, news). Deferring is cheap: the rule is decided again at
the next poll. So the filter applies to the rules named in ``applies_to`` (by
default the profit rules ``min_profit`` and ``partial_close`` and the optional
guards ``basket`` and ``session_close``).

It never applies to ``drawdown`` and ``daily_loss`` (settings refuse them):
those flatten an account that is losing money, spreads are widest exactly when
prices move fast, and every poll spent waiting for a tight spread can cost more
than the spread. Operator commands are never blocked either: the operator has
decided, and gets ``spread_warning`` in the command's result instead.

The spread is ``(ask - bid) / point`` when the spec carries a quote, else the
spec's ``spread`` (both in points).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from fxnb.guards.model import Blocked
from fxnb.guards.settings import PROTECTIVE_RULES, GuardSettings, SpreadSettings
from fxnb.models import CloseDecision, Position, SymbolSpec


def spread_points(spec: SymbolSpec) -> float:
    """The current spread in points (0.0 if unknown)."""
    if spec.bid > 0 and spec.ask > 0 and spec.point > 0 and math.isfinite(spec.ask - spec.bid):
        return round((spec.ask - spec.bid) / spec.point, 1)
    return float(spec.spread)


def _too_wide(spec: SymbolSpec, settings: SpreadSettings) -> tuple[float, float] | None:
    limit = settings.limit_for(spec.name)
    points = spread_points(spec)
    if limit is None or points <= limit:
        return None
    return points, limit


def _spread(settings: SpreadSettings | GuardSettings) -> SpreadSettings:
    return settings.spread if isinstance(settings, GuardSettings) else settings


def spread_ok(spec: SymbolSpec, settings: SpreadSettings | GuardSettings, rule: str) -> tuple[bool, str]:
    """May ``rule`` act on ``spec``'s symbol now? ``(False, why)`` when the spread is above its limit."""
    settings = _spread(settings)
    if not settings.enabled or rule in PROTECTIVE_RULES or rule not in settings.applies_to:
        return True, ""
    wide = _too_wide(spec, settings)
    if wide is None:
        return True, ""
    points, limit = wide
    return False, f"spread {points:g} points on {spec.name} > max {limit:g}: {rule} deferred"


def spread_warning(spec: SymbolSpec, settings: SpreadSettings | GuardSettings) -> str | None:
    """For operator commands (never blocked): a warning when the spread is above the limit."""
    settings = _spread(settings)
    if not settings.enabled:
        return None
    wide = _too_wide(spec, settings)
    if wide is None:
        return None
    points, limit = wide
    return (f"spread {points:g} points on {spec.name} is above the guard's limit of {limit:g}; "
            "executed anyway (operator commands are never deferred)")


def filter_by_spread(
    decisions: Iterable[CloseDecision],
    positions: Iterable[Position],
    specs: Mapping[str, SymbolSpec],
    settings: SpreadSettings | GuardSettings,
) -> tuple[list[CloseDecision], list[Blocked]]:
    """Split ``decisions`` into (kept, deferred). For the profit rules' decisions: the guards'
    own closes come out of ``evaluate_guards`` already filtered. A decision whose ticket or
    spec is unknown is kept (the filter does not judge what it cannot see)."""
    symbol_of = {p.ticket: p.symbol for p in positions}
    kept: list[CloseDecision] = []
    blocked: list[Blocked] = []
    for d in decisions:
        spec = specs.get(symbol_of.get(d.ticket, ""))
        ok, why = spread_ok(spec, settings, d.rule) if spec is not None else (True, "")
        if ok:
            kept.append(d)
        else:
            blocked.append(Blocked(ticket=d.ticket, rule=d.rule, reason=why))
    return kept, blocked
