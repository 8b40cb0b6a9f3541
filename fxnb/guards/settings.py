"""Validated guard settings: frozen dataclasses built from the ``guards`` config section.

Why: the guards close real positions, so a setting that can never work (a
warning at 100 % of the limit, a take profit of 0, a break-even buffer beyond its
trigger) must stop the process at start-up with the key named, not be discovered
when money is at stake. ``GuardSettings.from_mapping`` re-checks every leaf with
the same ``fxnb.configspec`` specs the loader uses (so it also works on a partial
or hand-written section, e.g. in a notebook), then checks what one spec cannot:
nullable numbers, lists, mappings and cross-field rules. Every message starts
with ``guards.<guard>.<key>``.

Checks of the form "this setting does nothing" (a basket with neither target, a
session close on no day, a spread filter with no limit) only apply to an enabled
guard, so the shipped defaults (all disabled) always load.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fxnb.configspec import check_value
from fxnb.errors import ConfigError
from fxnb.guards.schema import GUARDS_DEFAULTS, GUARDS_SCHEMA

# Rule names, as they appear in CloseDecision.rule / StopMove.rule.
BASKET, DRAWDOWN, DAILY_LOSS = "basket", "drawdown", "daily_loss"
BREAKEVEN, TRAILING, SESSION_CLOSE, SPREAD = "breakeven", "trailing", "session_close", "spread"
GUARD_NAMES = (BASKET, DRAWDOWN, DAILY_LOSS, BREAKEVEN, TRAILING, SESSION_CLOSE, SPREAD)
# The emergency flattens. The spread filter never applies to them: when the account is
# bleeding, waiting for a tight spread can cost more than the spread (and spreads are
# widest exactly when markets move fast, i.e. when these fire).
PROTECTIVE_RULES = frozenset({DRAWDOWN, DAILY_LOSS})
# What the spread filter may defer: the profit rules (fxnb.rules) and the optional guards.
SPREAD_FILTERABLE = ("min_profit", "partial_close", BASKET, SESSION_CLOSE, BREAKEVEN, TRAILING)
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _err(guard: str, key: str, why: str) -> ConfigError:
    return ConfigError(f"guards.{guard}.{key}: {why}")


def _positive_or_none(guard: str, key: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise _err(guard, key, f"must be null or a number > 0, got {value!r}")
    return float(value)


def _ratio(guard: str, value: float) -> float:
    if not 0 < value < 1:
        raise _err(guard, "warning_ratio", f"must be > 0 and < 1 (a warning at the limit is no warning), "
                                           f"got {value!r}")
    return float(value)


@dataclass(frozen=True)
class BasketSettings:
    """Close a group of positions when its floating P/L (profit + swap) crosses a target."""

    enabled: bool = False
    take_profit: float | None = None
    stop_loss: float | None = None  # a positive amount of loss
    unit: str = "money"  # "money" (account currency) or "percent" (of balance)
    group_by: str = "none"  # "none" | "symbol" | "magic"

    def __post_init__(self) -> None:
        _positive_or_none(BASKET, "take_profit", self.take_profit)
        _positive_or_none(BASKET, "stop_loss", self.stop_loss)
        if self.unit == "percent" and self.stop_loss is not None and self.stop_loss > 100:
            raise _err(BASKET, "stop_loss", f"{self.stop_loss:g}% of the balance can never be lost while "
                                            "the account is open (must be <= 100)")
        if self.enabled and self.take_profit is None and self.stop_loss is None:
            raise _err(BASKET, "take_profit", "the basket guard is enabled but neither take_profit nor "
                                              "stop_loss is set, so it can never fire")


@dataclass(frozen=True)
class DrawdownSettings:
    """Flatten and lock when equity falls ``max_percent`` below its high-water mark."""

    enabled: bool = False
    max_percent: float = 10.0
    warning_ratio: float = 0.8
    period: str = "day"  # "session" (since the monitor started) or "day"
    utc_offset_hours: float = 2.0
    reset_hour: int = 0

    def __post_init__(self) -> None:
        _ratio(DRAWDOWN, self.warning_ratio)
        if not 0 < self.max_percent <= 100:
            raise _err(DRAWDOWN, "max_percent", f"must be > 0 and <= 100, got {self.max_percent!r}")


@dataclass(frozen=True)
class DailyLossSettings:
    """Flatten and lock until the next day when today's realised + floating loss reaches ``max_loss``."""

    enabled: bool = False
    max_loss: float = 5.0
    unit: str = "percent"  # "money", or "percent" of the day's starting balance
    warning_ratio: float = 0.8
    utc_offset_hours: float = 2.0
    reset_hour: int = 0

    def __post_init__(self) -> None:
        _ratio(DAILY_LOSS, self.warning_ratio)
        if not self.max_loss > 0:
            raise _err(DAILY_LOSS, "max_loss", f"must be > 0, got {self.max_loss!r}")
        if self.unit == "percent" and self.max_loss > 100:
            raise _err(DAILY_LOSS, "max_loss", f"{self.max_loss:g}% of the day's starting balance can never "
                                               "be lost (must be <= 100)")


@dataclass(frozen=True)
class BreakevenSettings:
    """Move SL to open +/- ``buffer_points`` once the position is ``trigger_points`` in profit."""

    enabled: bool = False
    trigger_points: float = 200.0
    buffer_points: float = 20.0

    def __post_init__(self) -> None:
        if not self.trigger_points > 0:
            raise _err(BREAKEVEN, "trigger_points", f"must be > 0, got {self.trigger_points!r}")
        if not 0 <= self.buffer_points < self.trigger_points:
            raise _err(BREAKEVEN, "buffer_points",
                       f"must be >= 0 and below trigger_points ({self.trigger_points:g}); with "
                       f"{self.buffer_points!r} the stop would sit at or beyond the price that triggers it")


@dataclass(frozen=True)
class TrailingSettings:
    """Keep SL ``distance`` behind the close price once ``activation_points`` in profit; only ever tighter."""

    enabled: bool = False
    mode: str = "points"  # "points", or "percent" of the close price
    distance: float = 300.0
    activation_points: float = 300.0

    def __post_init__(self) -> None:
        if not self.distance > 0:
            raise _err(TRAILING, "distance", f"must be > 0, got {self.distance!r}")
        if self.mode == "percent" and self.distance >= 100:
            raise _err(TRAILING, "distance", f"{self.distance:g}% of the price would put a buy's stop at or "
                                             "below zero (must be < 100)")
        if self.activation_points < 0:
            raise _err(TRAILING, "activation_points", f"must be >= 0, got {self.activation_points!r}")


@dataclass(frozen=True)
class SessionCloseSettings:
    """Close matching positions at ``time`` (server time) on ``weekday``, or every day if ``daily``."""

    enabled: bool = False
    weekend: bool = True
    daily: bool = False
    weekday: int = 4
    time: str = "21:45"
    utc_offset_hours: float = 2.0
    symbols: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.time, str) or not _TIME.match(self.time):
            raise _err(SESSION_CLOSE, "time", f"expected \"HH:MM\" (00:00 to 23:59), got {self.time!r}")
        if not 0 <= self.weekday <= 6:
            raise _err(SESSION_CLOSE, "weekday", f"must be 0 (Monday) to 6 (Sunday), got {self.weekday!r}")
        if self.enabled and not (self.weekend or self.daily):
            raise _err(SESSION_CLOSE, "weekend", "the session close is enabled but neither weekend nor daily "
                                                 "is true, so it can never fire")

    @property
    def minutes(self) -> int:
        """``time`` as minutes after midnight."""
        hh, mm = self.time.split(":")
        return int(hh) * 60 + int(mm)


@dataclass(frozen=True)
class SpreadSettings:
    """Defer the rules named in ``applies_to`` while the spread is above its limit."""

    enabled: bool = False
    max_points: float | None = 30.0
    per_symbol: tuple[tuple[str, float], ...] = ()  # sorted (symbol, max points) pairs
    applies_to: tuple[str, ...] = ("min_profit", "partial_close", BASKET, SESSION_CLOSE)

    def __post_init__(self) -> None:
        _positive_or_none(SPREAD, "max_points", self.max_points)
        for symbol, limit in self.per_symbol:
            _positive_or_none(SPREAD, f"per_symbol.{symbol}", limit)
        for rule in self.applies_to:
            if rule in PROTECTIVE_RULES:
                raise _err(SPREAD, "applies_to", f"{rule!r} is an emergency flatten and is never deferred by "
                                                 "the spread (closing late costs more than a wide spread)")
            if rule not in SPREAD_FILTERABLE:
                raise _err(SPREAD, "applies_to", f"unknown rule {rule!r} (allowed: {', '.join(SPREAD_FILTERABLE)})")
        if self.enabled and self.max_points is None and not self.per_symbol:
            raise _err(SPREAD, "max_points", "the spread filter is enabled but has no limit (set max_points "
                                             "or per_symbol)")

    def limit_for(self, symbol: str) -> float | None:
        """The symbol's own limit, else ``max_points``; ``None`` = no limit."""
        for name, limit in self.per_symbol:
            if name == symbol:
                return limit
        return self.max_points


@dataclass(frozen=True)
class GuardSettings:
    """All guards. ``GuardSettings()`` is every guard disabled (the shipped defaults)."""

    basket: BasketSettings = BasketSettings()
    drawdown: DrawdownSettings = DrawdownSettings()
    daily_loss: DailyLossSettings = DailyLossSettings()
    breakeven: BreakevenSettings = BreakevenSettings()
    trailing: TrailingSettings = TrailingSettings()
    session_close: SessionCloseSettings = SessionCloseSettings()
    spread: SpreadSettings = SpreadSettings()

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any] | None) -> GuardSettings:
        """Build from config.json's ``guards`` section (missing keys take ``GUARDS_DEFAULTS``).

        Unknown guards or keys, wrong types and impossible combinations raise
        ``ConfigError`` naming ``guards.<guard>.<key>``.
        """
        data = _checked(section if section is not None else {})
        ss, sp = data[SESSION_CLOSE], data[SPREAD]
        return cls(
            basket=BasketSettings(**data[BASKET]),
            drawdown=DrawdownSettings(**data[DRAWDOWN]),
            daily_loss=DailyLossSettings(**data[DAILY_LOSS]),
            breakeven=BreakevenSettings(**data[BREAKEVEN]),
            trailing=TrailingSettings(**data[TRAILING]),
            session_close=SessionCloseSettings(**{**ss, "symbols": _symbols(ss["symbols"])}),
            spread=SpreadSettings(**{**sp, "per_symbol": _per_symbol(sp["per_symbol"]),
                                     "applies_to": _rule_list(sp["applies_to"])}),
        )


def _checked(section: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every leaf through ``check_value``; unknown keys refused; defaults filled in."""
    if not isinstance(section, Mapping):
        raise ConfigError("guards: expected an object")
    unknown = sorted(set(section) - set(GUARDS_SCHEMA))
    if unknown:
        raise ConfigError(f"guards.{unknown[0]}: unknown guard (allowed: {', '.join(sorted(GUARDS_SCHEMA))})")
    out: dict[str, dict[str, Any]] = {}
    for guard, specs in GUARDS_SCHEMA.items():
        given = section.get(guard, {})
        if not isinstance(given, Mapping):
            raise ConfigError(f"guards.{guard}: expected an object")
        extra = sorted(set(given) - set(specs))
        if extra:
            raise _err(guard, extra[0], f"unknown key (allowed: {', '.join(sorted(specs))})")
        out[guard] = {key: check_value(f"guards.{guard}.{key}", spec, given[key]) if key in given
                      else GUARDS_DEFAULTS[guard][key] for key, spec in specs.items()}
    return out


def _symbols(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(s, str) and s.strip() for s in value):
        raise _err(SESSION_CLOSE, "symbols", f"expected a list of symbol names ([] = every symbol), got {value!r}")
    return tuple(sorted(set(value)))


def _per_symbol(value: Any) -> tuple[tuple[str, float], ...]:
    if not isinstance(value, Mapping):
        raise _err(SPREAD, "per_symbol", f"expected an object mapping symbol to max points, got {value!r}")
    out = []
    for symbol, limit in sorted(value.items()):
        if not isinstance(symbol, str) or not symbol.strip():
            raise _err(SPREAD, "per_symbol", f"symbol names must be non-empty strings, got {symbol!r}")
        if limit is None:
            raise _err(SPREAD, f"per_symbol.{symbol}", "must be a number > 0, got None")
        out.append((symbol, _positive_or_none(SPREAD, f"per_symbol.{symbol}", limit) or 0.0))
    return tuple(out)


def _rule_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(r, str) for r in value):
        raise _err(SPREAD, "applies_to", f"expected a list of rule names, got {value!r}")
    return tuple(dict.fromkeys(value))
