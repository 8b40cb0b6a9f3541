"""The reference conversion a bulk ``positions_from_structs`` must equal: one ``Position(...)`` per struct."""

from __future__ import annotations

from typing import Any

from fxnb.broker.requests import _f as reference_f
from fxnb.models import Position, Side


def constructed(p: Any, buy: int) -> Position:
    """``p`` (a TradePosition) built field by field, ``buy`` being the module's POSITION_TYPE_BUY."""
    return Position(
        ticket=int(p.ticket), symbol=str(p.symbol), side=Side.BUY if int(p.type) == buy else Side.SELL,
        volume=reference_f(p.volume), price_open=float(p.price_open), price_current=float(p.price_current),
        profit=float(p.profit), swap=float(p.swap), sl=float(p.sl), tp=float(p.tp), magic=int(p.magic),
        identifier=int(p.identifier), comment=str(p.comment), time=int(p.time), time_update=int(p.time_update),
    )  # fmt: skip
