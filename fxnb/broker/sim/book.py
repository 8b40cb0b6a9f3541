"""The in-memory book: open positions, history, balance and ticket counters.

All reads are served from here; every change is described as a ``Changes``
value, written to the state file first and then applied here, so memory and
disk never disagree (a failed write leaves both untouched).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import constants as C
from .structs import TradeDeal, TradeOrder


@dataclass(slots=True)
class Pos:
    """One open position (mutable fields are replaced, never edited in place)."""

    ticket: int
    identifier: int
    symbol: str
    type: int
    volume: float
    price_open: float
    sl: float
    tp: float
    swap: float
    magic: int
    reason: int
    comment: str
    external_id: str
    time_msc: int
    time_update_msc: int


POS_FIELDS: tuple[str, ...] = tuple(Pos.__slots__)  # type: ignore[attr-defined]


@dataclass(slots=True)
class Account:
    """Persistent account row: money and the ticket counters (orders/positions and deals differ)."""

    login: int
    currency: str
    margin_mode: str
    balance: float
    credit: float
    next_order: int
    next_deal: int
    created: float  # wall-clock epoch of the state's creation (origin of the price walk)


def deal_record(
    *,
    ticket: int,
    order: int,
    time_msc: int,
    type: int,
    entry: int,
    magic: int,
    position_id: int,
    reason: int,
    volume: float,
    price: float,
    symbol: str,
    comment: str,
    commission: float = 0.0,
    profit: float = 0.0,
) -> TradeDeal:
    """A trade deal (swap and fee are not simulated)."""
    return TradeDeal(
        ticket=ticket, order=order, time=time_msc // 1000, time_msc=time_msc, type=type, entry=entry,
        magic=magic, position_id=position_id, reason=reason, volume=volume, price=price,
        commission=commission, swap=0.0, profit=profit, fee=0.0, symbol=symbol, comment=comment,
        external_id="",
    )  # fmt: skip


def filled_order(
    *,
    ticket: int,
    time_msc: int,
    type: int,
    type_time: int,
    type_filling: int,
    magic: int,
    position_id: int,
    reason: int,
    volume: float,
    price: float,
    sl: float,
    tp: float,
    symbol: str,
    comment: str,
    requested: float = 0.0,
) -> TradeOrder:
    """The history record of a market order filled at ``price`` at once: all of it, or (IOC) only
    ``volume`` of ``requested``, the rest cancelled: the rest in volume_current, state PARTIAL (an
    assumption: whether a real server files such an order as PARTIAL or CANCELED is undocumented)."""
    t = time_msc // 1000
    initial = requested if requested > volume else volume
    return TradeOrder(
        ticket=ticket, time_setup=t, time_setup_msc=time_msc, time_done=t, time_done_msc=time_msc,
        time_expiration=0, type=type, type_time=type_time, type_filling=type_filling,
        state=C.ORDER_STATE_FILLED if initial == volume else C.ORDER_STATE_PARTIAL,
        magic=magic, position_id=position_id, position_by_id=0, reason=reason, volume_initial=initial,
        volume_current=round(initial - volume, 8), price_open=price, sl=sl, tp=tp, price_current=price,
        price_stoplimit=0.0, symbol=symbol, comment=comment, external_id="",
    )  # fmt: skip


@dataclass
class Changes:
    """One atomic change of the book: what the state file and memory must both apply."""

    upsert: list[Pos] = field(default_factory=list)
    delete: list[int] = field(default_factory=list)
    deals: list[TradeDeal] = field(default_factory=list)
    orders: list[TradeOrder] = field(default_factory=list)
    tickets: list[int] = field(default_factory=list)  # position tickets that came into existence
    balance_delta: float = 0.0
    next_order: int = 0
    next_deal: int = 0


class Book:
    """Positions by ticket (open order), history with indexes, and the account."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self.positions: dict[int, Pos] = {}
        self.deals: list[TradeDeal] = []
        self.orders: list[TradeOrder] = []
        self.deals_by_position: dict[int, list[TradeDeal]] = {}
        self.deals_by_order: dict[int, list[TradeDeal]] = {}
        self.orders_by_position: dict[int, list[TradeOrder]] = {}
        self.orders_by_ticket: dict[int, TradeOrder] = {}
        self.known_tickets: set[int] = set()
        self.version = 0

    # -- allocation (the caller records the new counters in Changes) --
    def take_order_ticket(self, changes: Changes) -> int:
        n = max(changes.next_order, self.account.next_order)
        changes.next_order = n + 1
        return n

    def take_deal_ticket(self, changes: Changes) -> int:
        n = max(changes.next_deal, self.account.next_deal)
        changes.next_deal = n + 1
        return n

    def by_symbol(self, symbol: str) -> Pos | None:
        """The netting position of ``symbol`` (there is at most one)."""
        for p in self.positions.values():
            if p.symbol == symbol:
                return p
        return None

    # -- applying --
    def apply(self, ch: Changes) -> None:
        for t in ch.delete:
            self.positions.pop(t, None)
        for p in ch.upsert:
            self.positions[p.ticket] = p
        self.add_history(ch.deals, ch.orders)
        self.known_tickets.update(ch.tickets)
        self.account.balance = round(self.account.balance + ch.balance_delta, 2)
        self.account.next_order = max(self.account.next_order, ch.next_order)
        self.account.next_deal = max(self.account.next_deal, ch.next_deal)
        self.version += 1

    def add_history(self, deals: list[TradeDeal], orders: list[TradeOrder]) -> None:
        for d in deals:
            self.deals.append(d)
            if d.position_id:
                self.deals_by_position.setdefault(d.position_id, []).append(d)
            if d.order:
                self.deals_by_order.setdefault(d.order, []).append(d)
        for o in orders:
            self.orders.append(o)
            self.orders_by_ticket[o.ticket] = o
            if o.position_id:
                self.orders_by_position.setdefault(o.position_id, []).append(o)
