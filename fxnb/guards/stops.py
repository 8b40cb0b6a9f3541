"""Break-even and trailing stops: where a position's server-side SL should move, if anywhere.

Why server-side SLs (``TRADE_ACTION_SLTP``) rather than closes: the protection
then survives the monitor dying. The arithmetic is in ``Decimal`` on the
symbol's point grid, so that 1.105 - 300 points is 1.10200 and not 1.10199.

The invariants, for every move produced here:

* **Never backwards.** A buy's SL only goes up, a sell's only down, by at least
  one point; a position already protected as well or better is left alone.
* **On the protective side, clear of the stops level.** The close price is
  ``price_current`` (bid for a buy, ask for a sell). A buy's SL is at least
  ``stops_level`` points below it, a sell's at least ``stops_level`` above it,
  and strictly beyond it when ``stops_level`` is 0 (else: retcode 10016).
* **Rounded away from the price.** To ``digits``, down for a buy, up for a
  sell, so rounding can never break the stops level.
* **Not inside the freeze level.** No move while the current SL or TP is within
  ``freeze_level`` points of the price (the server refuses: 10029), nor while the
  TP (sent along unchanged) is closer than ``stops_level`` (10016).

Break-even: once ``trigger_points`` in profit, SL to open +/- ``buffer_points``,
only if that is legal now (else it waits; it never settles for less). Trailing:
once ``activation_points`` in profit, SL ``distance`` behind the close price
(points, or percent of the price), pulled back to the stops level if the
distance is shorter. Both on: the more protective level wins.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from fxnb.guards.model import StopMove
from fxnb.guards.settings import BREAKEVEN, TRAILING, BreakevenSettings, TrailingSettings
from fxnb.models import Position, Side, SymbolSpec


def _d(x: float) -> Decimal:
    return Decimal(repr(float(x)))


def _usable(pos: Position, spec: SymbolSpec) -> bool:
    numbers = (pos.price_open, pos.price_current, pos.sl, pos.tp, spec.point)
    return (all(math.isfinite(x) for x in numbers) and pos.price_open > 0 and pos.price_current > 0
            and spec.point > 0 and 0 <= spec.digits <= 12 and pos.sl >= 0 and pos.tp >= 0)


class _Geometry:
    """One position's prices on its symbol's grid, and the levels the server would accept."""

    def __init__(self, pos: Position, spec: SymbolSpec) -> None:
        self.buy = pos.side == Side.BUY
        self.pt = _d(spec.point)
        self.close = _d(pos.price_current)
        self.open = _d(pos.price_open)
        self.digits = spec.digits
        self.stops = max(spec.stops_level, 0) * self.pt
        self.freeze = max(spec.freeze_level, 0) * self.pt
        move = self.close - self.open if self.buy else self.open - self.close
        self.profit_points = move / self.pt

    def toward_safety(self, level: Decimal) -> Decimal:
        """Round to ``digits`` away from the price (down for a buy, up for a sell)."""
        q = Decimal(1).scaleb(-self.digits)
        return level.quantize(q, rounding=ROUND_FLOOR if self.buy else ROUND_CEILING)

    def behind(self, distance: Decimal) -> Decimal:
        """The price ``distance`` behind the close price, on the protective side."""
        return self.close - distance if self.buy else self.close + distance

    def legal(self, sl: Decimal) -> bool:
        """Beyond the close price by at least the stops level (strictly, when that is 0), and positive."""
        gap = self.close - sl if self.buy else sl - self.close
        return sl > 0 and gap > 0 and gap >= self.stops

    def clamp(self, sl: Decimal) -> Decimal:
        """``sl`` pulled back to the closest level the stops level allows."""
        edge = self.behind(self.stops)
        return min(sl, edge) if self.buy else max(sl, edge)

    def better(self, new: Decimal, old: Decimal) -> bool:
        """At least one point more protective than ``old`` (0 = no SL: anything is better)."""
        if old <= 0:
            return True
        return (new - old if self.buy else old - new) >= self.pt


def _frozen(pos: Position, g: _Geometry) -> bool:
    """The server would refuse any SLTP change now."""
    for level in (pos.sl, pos.tp):
        if level > 0 and g.freeze > 0 and abs(g.close - _d(level)) <= g.freeze:
            return True
    return pos.tp > 0 and abs(_d(pos.tp) - g.close) < g.stops


def _breakeven(g: _Geometry, s: BreakevenSettings) -> tuple[Decimal, str] | None:
    if not s.enabled or g.profit_points < _d(s.trigger_points):
        return None
    buffer = _d(s.buffer_points) * g.pt
    sl = g.toward_safety(g.open + buffer if g.buy else g.open - buffer)
    if not g.legal(sl):
        return None  # too close to the price for the stops level: wait, never settle for less
    sign = "+" if g.buy else "-"
    return sl, (f"breakeven: {g.profit_points:.0f} points in profit >= {s.trigger_points:g}; "
                f"SL to open {g.open} {sign} {s.buffer_points:g} points")


def _trailing(g: _Geometry, s: TrailingSettings) -> tuple[Decimal, str] | None:
    if not s.enabled or g.profit_points < _d(s.activation_points):
        return None
    if s.mode == "percent":
        distance, what = g.close * _d(s.distance) / 100, f"{s.distance:g}%"
    else:
        distance, what = _d(s.distance) * g.pt, f"{s.distance:g} points"
    sl = g.toward_safety(g.clamp(g.behind(distance)))
    if not g.legal(sl):
        return None
    price = "bid" if g.buy else "ask"
    return sl, f"trailing: SL {what} behind {price} {g.close}"


def stop_moves(
    positions: Iterable[Position],
    specs: Mapping[str, SymbolSpec],
    breakeven: BreakevenSettings,
    trailing: TrailingSettings,
) -> list[StopMove]:
    """The SL moves break-even and trailing ask for now, sorted by ticket, at most one per ticket.

    ``positions`` must already be the valid book (unique tickets); positions without a
    spec or with unusable prices are skipped.
    """
    if not (breakeven.enabled or trailing.enabled):
        return []
    moves: list[StopMove] = []
    for pos in sorted(positions, key=lambda p: p.ticket):
        spec = specs.get(pos.symbol)
        if spec is None or not _usable(pos, spec):
            continue
        g = _Geometry(pos, spec)
        if _frozen(pos, g):
            continue
        candidates = [(c, rule) for c, rule in ((_breakeven(g, breakeven), BREAKEVEN),
                                                 (_trailing(g, trailing), TRAILING)) if c is not None]
        if not candidates:
            continue
        (sl, why), rule = (max if g.buy else min)(candidates, key=lambda c: c[0][0])
        old = _d(pos.sl)
        if not g.better(sl, old):
            continue
        was = f"{old}" if pos.sl > 0 else "none"
        moves.append(StopMove(ticket=pos.ticket, symbol=pos.symbol, sl=float(sl), tp=pos.tp, rule=rule,
                              reason=f"{why}: {was} -> {sl}", previous_sl=pos.sl))
    return moves
