"""The automatic profit rules: pure functions, no I/O, the clock passed in.

What "profit percent" means (the seed's number, profit / (lots x price), had no
meaning; see seed_system.md 2.1). ``profit_basis`` chooses one of:

* ``balance`` (default): ``(profit + swap) / account.balance x 100``. "2 %" is 2 % of
  the balance, the same money on every symbol.
* ``equity``: ``(profit + swap) / account.equity x 100``.
* ``price_move``: how far the price moved in the position's favour, in percent of
  the open price: ``(current - open) / open x 100`` for a buy, ``(open - current)
  / open x 100`` for a sell. Independent of size and account.

``profit`` is the terminal's floating profit in account currency; swap is added
so that a "profit" close cannot lock in a loss hidden in swap. Commission is not
known for an open position (MT5 books it on the deals) and is not included. A
zero, negative or non-finite denominator gives 0.0, and :func:`evaluate` closes
nothing on such an account (thresholds are always > 0).

The rules, in this order, once per position:

1. ``pct >= min_profit_percent``: close the whole position (rule ``min_profit``).
2. else, if ``partial_close_enabled`` and ``partial_close_threshold <
   min_profit_percent`` and ``pct >= partial_close_threshold`` and the ticket has not
   been partially closed before (``partial_done``, kept by the monitor): close
   ``partial_close_percent`` % of the *current* volume, rounded down to the
   symbol's step, leaving at least ``volume_min`` (rule ``partial_close``). If no
   valid partial volume exists (the position is at the minimum), nothing happens:
   a partial close is never turned into a full close.

With ``partial_close_threshold >= min_profit_percent`` the partial rule can never
fire (the full close comes first); :func:`unreachable_rules` says so.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from itertools import compress, repeat
from operator import add, le
from typing import Any

from fxnb.errors import ConfigError
from fxnb.models import Account, Book, CloseDecision, Position, Side, SymbolSpec
from fxnb.volume import percent_of

PROFIT_BASES = ("balance", "equity", "price_move")
RULES_MODES = ("live", "dry_run", "off")
RULE_MIN_PROFIT = "min_profit"
RULE_PARTIAL = "partial_close"
_IGNORED_KEYS = frozenset({"check_interval"})


@dataclass(frozen=True)
class RuleSettings:
    """The ``profit_monitor`` section of config.json (defaults are the shipped config's)."""

    min_profit_percent: float = 2.0
    partial_close_enabled: bool = True
    partial_close_threshold: float = 5.0
    partial_close_percent: float = 50.0
    profit_basis: str = "balance"
    rules_mode: str = "live"

    def __post_init__(self) -> None:
        for name in ("min_profit_percent", "partial_close_threshold"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"profit_monitor.{name} must be a number > 0, got {v!r}")
        p = self.partial_close_percent
        if isinstance(p, bool) or not isinstance(p, int | float) or not math.isfinite(p) or not 0 < p < 100:
            raise ConfigError(f"profit_monitor.partial_close_percent must be a number > 0 and < 100 "
                              f"(100 would be a full close), got {p!r}")
        if not isinstance(self.partial_close_enabled, bool):
            raise ConfigError(f"profit_monitor.partial_close_enabled must be true or false, "
                              f"got {self.partial_close_enabled!r}")
        if self.profit_basis not in PROFIT_BASES:
            raise ConfigError(f"profit_monitor.profit_basis must be one of {', '.join(PROFIT_BASES)}, "
                              f"got {self.profit_basis!r}")
        if self.rules_mode not in RULES_MODES:
            raise ConfigError(f"profit_monitor.rules_mode must be one of {', '.join(RULES_MODES)}, "
                              f"got {self.rules_mode!r}")

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any]) -> RuleSettings:
        """Build from config.json's ``profit_monitor`` section. ``check_interval`` is ignored
        (it is the monitor's); any other unknown key is a ``ConfigError`` (a typo must not
        silently fall back to a default). Missing keys take the defaults."""
        if not isinstance(section, Mapping):
            raise ConfigError("profit_monitor must be an object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known - _IGNORED_KEYS)
        if unknown:
            raise ConfigError(f"profit_monitor: unknown key {unknown[0]!r} "
                              f"(known: {', '.join(sorted(known))}, check_interval)")
        return cls(**{k: v for k, v in section.items() if k in known})


def _denominator(account: Account, basis: str) -> float:
    """The account figure a ``balance``/``equity`` profit percent is taken of."""
    if basis == "balance":
        return account.balance
    if basis == "equity":
        return account.equity
    raise ValueError(f"unknown profit basis {basis!r}")


def _price_move(side: Side, po: float, pc: float) -> float:
    """The move in the position's favour, in percent of its open price. 0.0 if undefined."""
    if not (math.isfinite(po) and math.isfinite(pc)) or po <= 0 or pc <= 0:
        return 0.0
    move = pc - po if side == Side.BUY else po - pc
    return move / po * 100.0


def profit_percent(position: Position, account: Account, basis: str = "balance") -> float:
    """The position's profit in percent, per ``basis`` (see the module docstring). 0.0 if undefined."""
    if basis == "price_move":
        return _price_move(position.side, position.price_open, position.price_current)
    denominator = _denominator(account, basis)
    money = position.profit + position.swap
    if not (math.isfinite(denominator) and math.isfinite(money)) or denominator <= 0:
        return 0.0
    return money / denominator * 100.0


def profit_percents(positions: Book | Iterable[Position], account: Account, basis: str = "balance") -> dict[int, float]:
    """``{ticket: profit_percent(position, account, basis)}`` for a whole book, the same values.

    The monitor needs this every poll for every position (stored with the position, and the
    rules' input), so it is computed over the book's columns instead of a call per position.
    A ticket that appears twice keeps its last position's value.
    """
    book = Book.of(positions)
    if basis == "price_move":
        return dict(zip(book.ticket, map(_price_move, book.side, book.price_open, book.price_current), strict=True))
    denominator = _denominator(account, basis)
    if not math.isfinite(denominator) or denominator <= 0:
        return dict.fromkeys(book.ticket, 0.0)
    isfinite = math.isfinite
    pcts = [money / denominator * 100.0 if isfinite(money) else 0.0 for money in map(add, book.profit, book.swap)]
    return dict(zip(book.ticket, pcts, strict=True))


def unreachable_rules(settings: RuleSettings) -> list[str]:
    """Human warnings about rules that can never fire with these settings."""
    out: list[str] = []
    if settings.partial_close_enabled and settings.partial_close_threshold >= settings.min_profit_percent:
        out.append(
            f"partial_close_threshold {settings.partial_close_threshold:g} >= min_profit_percent "
            f"{settings.min_profit_percent:g}: the partial close can never fire because the full close "
            f"fires first (set partial_close_threshold below min_profit_percent, or disable it)"
        )
    return out


def _describe(pct: float, basis: str) -> str:
    if basis == "price_move":
        return f"price move {pct:.2f}% in favour"
    return f"profit {pct:.2f}% of {basis}"


def _account_usable(account: Account, basis: str) -> bool:
    if basis == "balance":
        return math.isfinite(account.balance) and account.balance > 0
    if basis == "equity":
        return math.isfinite(account.equity) and account.equity > 0
    return True


def _lots(v: float) -> str:
    return f"{v:.8f}".rstrip("0").rstrip(".")


def evaluate(
    positions: Book | Iterable[Position],
    account: Account,
    settings: RuleSettings,
    *,
    specs: Mapping[str, SymbolSpec],
    partial_done: set[int] | frozenset[int],
    now: datetime,
    paused: bool = False,
    profit_percent: Mapping[int, float] | None = None,
) -> list[CloseDecision]:
    """What the rules would close now, sorted by ticket, at most one decision per ticket.

    Nothing when ``rules_mode`` is ``off`` or ``paused``. ``dry_run`` returns the
    same decisions as ``live`` (the monitor records them instead of sending).
    Positions are skipped when their symbol has no spec (they cannot be sized),
    their volume is not a positive number, or their ticket appears more than once
    in ``positions`` (an inconsistent snapshot). ``now`` is accepted for
    time-based rules and not read by the current ones.

    :param profit_percent: ticket -> :func:`profit_percent` of that position on this
      account and basis, when the caller has computed it already (the monitor does, to
      store it; see :func:`profit_percents`). Tickets missing from it are computed here.
    """
    del now  # no time-based rule yet
    if settings.rules_mode == "off" or paused:
        return []
    basis = settings.profit_basis
    if not _account_usable(account, basis):
        return []
    book = Book.of(positions)
    pcts = profit_percents(book, account, basis) if profit_percent is None else profit_percent
    partial_live = (settings.partial_close_enabled
                    and settings.partial_close_threshold < settings.min_profit_percent)
    lowest = settings.partial_close_threshold if partial_live else settings.min_profit_percent
    # Only positions at or above the lowest threshold can fire (NaN never does): they are found over
    # the book's columns, and Position objects, the reason text, the duplicate check and the sort
    # are spent on those alone, not on the whole book.
    pct_col = list(map(pcts.get, book.ticket))
    if None in pct_col:  # tickets the caller's map lacks are computed here
        pct_col = [_percent(book.position(i), account, basis) if pct is None else pct
                   for i, pct in enumerate(pct_col)]
    candidates = [(book.ticket[i], book.position(i), pct_col[i])
                  for i in compress(range(len(book)), map(le, repeat(lowest), pct_col))]
    if not candidates:
        return []
    counts = Counter(book.ticket)
    decisions: list[CloseDecision] = []
    for ticket, pos, pct in sorted(candidates, key=lambda c: c[0]):
        spec = specs.get(pos.symbol)
        if counts[ticket] > 1 or spec is None or not math.isfinite(pos.volume) or pos.volume <= 0:
            continue
        if pct >= settings.min_profit_percent:
            decisions.append(CloseDecision(
                ticket=ticket, volume=pos.volume, rule=RULE_MIN_PROFIT, full=True,
                reason=f"{_describe(pct, basis)} >= {settings.min_profit_percent:.2f}%",
            ))
        elif partial_live and pct >= settings.partial_close_threshold and ticket not in partial_done:
            vol = percent_of(pos.volume, settings.partial_close_percent,
                             volume_min=spec.volume_min, volume_step=spec.volume_step)
            if vol is None or vol <= 0 or vol >= pos.volume - 1e-12:
                continue  # no valid partial volume: never turn it into a full close
            decisions.append(CloseDecision(
                ticket=ticket, volume=vol, rule=RULE_PARTIAL, full=False,
                reason=(f"{_describe(pct, basis)} >= partial threshold {settings.partial_close_threshold:.2f}%: "
                        f"closing {settings.partial_close_percent:g}% "
                        f"({_lots(vol)} of {_lots(pos.volume)} lots)"),
            ))
    return decisions


_percent = profit_percent  # evaluate's parameter of the same name shadows the function inside it
