"""The trade server: decides what a request does (or which retcode refuses it) and builds the changes.

``plan()`` runs every server-side check and raises ``Rejected(retcode)``;
``changes()`` turns an accepted plan into deals, a history order and position
updates. Nothing is mutated here: the terminal writes the changes to the state
file and then applies them to the book.

Semantics: hedging (default) opens a new position for every deal without
``position``; a close names the ticket, must be the opposite type and may not
exceed the position's volume (10038). Netting keeps one position per symbol:
an opposite deal reduces, closes, or (when larger and no ``position`` is given)
reverses it with one DEAL_ENTRY_INOUT deal that keeps the identifier and gives
the position a new ticket. A partial close that would leave less than
``volume_min`` is refused with 10014, the policy of ``fxnb.volume``.

Not simulated: pending orders (TRADE_ACTION_PENDING/MODIFY/REMOVE and
CLOSE_BY answer 10013), SL/TP triggering (stops are validated and stored but
never hit), swap accrual, stop-out, hedged-margin reduction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from . import constants as C
from .book import Book, Changes, Pos, deal_record, filled_order
from .money import Converter, margin, profit
from .structs import TradeRequest
from .symbols import SymbolSpec

COMMENTS: dict[int, str] = {
    0: "Done",
    C.TRADE_RETCODE_REQUOTE: "Requote",
    C.TRADE_RETCODE_REJECT: "Request rejected",
    C.TRADE_RETCODE_DONE: "Request executed",
    C.TRADE_RETCODE_DONE_PARTIAL: "Request executed partially",
    C.TRADE_RETCODE_ERROR: "Request processing error",
    C.TRADE_RETCODE_TIMEOUT: "Request canceled by timeout",
    C.TRADE_RETCODE_INVALID: "Invalid request",
    C.TRADE_RETCODE_INVALID_VOLUME: "Invalid volume",
    C.TRADE_RETCODE_INVALID_PRICE: "Invalid price",
    C.TRADE_RETCODE_INVALID_STOPS: "Invalid stops",
    C.TRADE_RETCODE_TRADE_DISABLED: "Trade disabled",
    C.TRADE_RETCODE_MARKET_CLOSED: "Market closed",
    C.TRADE_RETCODE_NO_MONEY: "No money",
    C.TRADE_RETCODE_NO_CHANGES: "No changes",
    C.TRADE_RETCODE_CLIENT_DISABLES_AT: "AutoTrading disabled by client",
    C.TRADE_RETCODE_INVALID_FILL: "Unsupported filling mode",
    C.TRADE_RETCODE_CONNECTION: "No connection with the trade server",
    C.TRADE_RETCODE_POSITION_CLOSED: "Position already closed",
    C.TRADE_RETCODE_INVALID_CLOSE_VOLUME: "Close volume exceeds the position volume",
    C.TRADE_RETCODE_LONG_ONLY: "Only long positions are allowed",
    C.TRADE_RETCODE_SHORT_ONLY: "Only short positions are allowed",
    C.TRADE_RETCODE_CLOSE_ONLY: "Only position closing is allowed",
}

_EPS = 1e-9
_BUY, _SELL = C.ORDER_TYPE_BUY, C.ORDER_TYPE_SELL


def _new_pos(plan: Plan, ticket: int, identifier: int, volume: float, reason: int, now: int) -> Pos:
    req = plan.req
    return Pos(
        ticket=ticket, identifier=identifier, symbol=plan.spec.name, type=req.type, volume=volume,
        price_open=plan.price, sl=req.sl, tp=req.tp, swap=0.0, magic=req.magic, reason=reason,
        comment=req.comment, external_id="", time_msc=now, time_update_msc=now,
    )  # fmt: skip


class Rejected(Exception):
    """The server refuses the request with ``retcode``."""

    def __init__(self, retcode: int) -> None:
        super().__init__(retcode, COMMENTS.get(retcode, ""))
        self.retcode = retcode


@dataclass
class Plan:
    """An accepted request. ``kind``: open, increase, close, reverse or sltp."""

    req: TradeRequest
    spec: SymbolSpec
    kind: str
    bid: float
    ask: float
    volume: float = 0.0
    price: float = 0.0
    pos: Pos | None = None
    profit: float = 0.0  # realised on the part of ``pos`` that is closed
    closed: float = 0.0  # volume of ``pos`` that is closed
    extra_margin: float = 0.0
    requested: float = 0.0  # the request's volume when only ``volume`` of it fills (0: all of it)

    @property
    def is_buy(self) -> bool:
        return self.req.type == _BUY


class Engine:
    """Server-side rules over one book. ``now_msc()`` is server time in milliseconds."""

    def __init__(
        self,
        book: Book,
        specs: Mapping[str, SymbolSpec],
        conv: Converter,
        quote: Callable[[str], tuple[float, float]],
        totals: Callable[[], tuple[float, float]],
        market_closed: Callable[[str], bool],
        trade_disabled: Callable[[str], bool],
        now_msc: Callable[[], int],
        *,
        leverage: int,
        commission_per_lot: float,
    ) -> None:
        self.book = book
        self.specs = specs
        self.conv = conv
        self.quote = quote
        self.totals = totals
        self.market_closed = market_closed
        self.trade_disabled = trade_disabled
        self.now_msc = now_msc
        self.leverage = leverage
        self.commission_per_lot = commission_per_lot

    @property
    def hedging(self) -> bool:
        return self.book.account.margin_mode != "netting"

    # ------------------------------------------------------------------ planning
    def plan(self, req: TradeRequest) -> Plan:
        if req.action == C.TRADE_ACTION_DEAL:
            return self._plan_deal(req)
        if req.action == C.TRADE_ACTION_SLTP:
            return self._plan_sltp(req)
        raise Rejected(C.TRADE_RETCODE_INVALID)  # pending orders, modify, remove, close-by: not simulated

    def _plan_deal(self, req: TradeRequest) -> Plan:
        pos = self._named_position(req.position) if req.position else None
        spec = self._spec_for(req, pos)
        if req.type not in (_BUY, _SELL):
            raise Rejected(C.TRADE_RETCODE_INVALID)
        self._check_session(spec)
        self._check_filling(spec, req.type_filling)
        self._check_volume(
            spec, req.volume, full_close=pos is not None and abs(req.volume - pos.volume) < _EPS
        )
        bid, ask = self.quote(spec.name)
        plan = Plan(req, spec, "open", bid, ask, volume=req.volume, price=ask if req.type == _BUY else bid)
        self._check_price(plan)
        explicit = pos is not None
        if pos is None and not self.hedging:
            pos = self.book.by_symbol(spec.name)
        if pos is None:
            return self._open(plan)
        plan.pos = pos
        if (pos.type == C.POSITION_TYPE_BUY) == plan.is_buy:
            if explicit:
                raise Rejected(C.TRADE_RETCODE_INVALID)  # "closing" with the same direction
            return self._increase(plan)
        if req.volume > pos.volume + _EPS:
            if explicit:
                raise Rejected(C.TRADE_RETCODE_INVALID_CLOSE_VOLUME)
            return self._reverse(plan)
        return self._close(plan)

    def partial(self, plan: Plan, volume: float) -> Plan:
        """``plan`` filling only ``volume`` of its request (an IOC partial fill), checked again."""
        smaller = self.plan(plan.req._replace(volume=volume))
        smaller.requested = plan.volume
        return smaller

    def _named_position(self, ticket: int) -> Pos:
        pos = self.book.positions.get(ticket)
        if pos is None:
            known = ticket in self.book.known_tickets
            raise Rejected(C.TRADE_RETCODE_POSITION_CLOSED if known else C.TRADE_RETCODE_INVALID)
        return pos

    def _spec_for(self, req: TradeRequest, pos: Pos | None) -> SymbolSpec:
        symbol = req.symbol or (pos.symbol if pos is not None else "")
        spec = self.specs.get(symbol)
        if spec is None or (pos is not None and pos.symbol != symbol):
            raise Rejected(C.TRADE_RETCODE_INVALID)
        return spec

    def _check_session(self, spec: SymbolSpec) -> None:
        if spec.trade_mode == C.SYMBOL_TRADE_MODE_DISABLED or self.trade_disabled(spec.name):
            raise Rejected(C.TRADE_RETCODE_TRADE_DISABLED)
        if self.market_closed(spec.name):
            raise Rejected(C.TRADE_RETCODE_MARKET_CLOSED)

    @staticmethod
    def _check_filling(spec: SymbolSpec, filling: int) -> None:
        """type_filling is an ORDER_FILLING_* enum; filling_mode a SYMBOL_FILLING_* bitmask (FOK=1, IOC=2)."""
        if spec.instant:
            ok = filling == C.ORDER_FILLING_FOK and bool(spec.filling_mode & 1)
        elif filling == C.ORDER_FILLING_FOK:
            ok = bool(spec.filling_mode & 1)
        elif filling == C.ORDER_FILLING_IOC:
            ok = bool(spec.filling_mode & 2)
        else:  # RETURN needs exchange execution; BOC is for limit orders only
            ok = filling == C.ORDER_FILLING_RETURN and spec.trade_exemode == C.SYMBOL_TRADE_EXECUTION_EXCHANGE
        if not ok:
            raise Rejected(C.TRADE_RETCODE_INVALID_FILL)

    @staticmethod
    def _check_volume(spec: SymbolSpec, volume: float, *, full_close: bool = False) -> None:
        """min ≤ v ≤ max and a whole number of steps (to 1e-8 lots, the server's precision).
        Closing a position's whole volume is always allowed."""
        if full_close:
            return
        if not math.isfinite(volume) or volume < spec.volume_min - _EPS or volume > spec.volume_max + _EPS:
            raise Rejected(C.TRADE_RETCODE_INVALID_VOLUME)
        steps = volume / spec.volume_step
        if abs(steps - round(steps)) > 1e-6:
            raise Rejected(C.TRADE_RETCODE_INVALID_VOLUME)

    @staticmethod
    def _check_price(plan: Plan) -> None:
        """Instant execution fills only within ``deviation`` points of the request price."""
        spec, req = plan.spec, plan.req
        if not spec.instant:
            return
        if req.price <= 0 or abs(req.price - plan.price) > (req.deviation + 1e-6) * spec.point:
            raise Rejected(C.TRADE_RETCODE_INVALID_PRICE)

    def _check_stops(self, spec: SymbolSpec, is_buy: bool, sl: float, tp: float) -> None:
        """SL/TP on the right side of the closing price and at least ``trade_stops_level`` points away."""
        bid, ask = self.quote(spec.name)
        close = bid if is_buy else ask
        gap = spec.stops_level * spec.point - spec.point / 10
        sign = 1.0 if is_buy else -1.0
        if sl and ((close - sl) * sign <= 0 or (close - sl) * sign < gap):
            raise Rejected(C.TRADE_RETCODE_INVALID_STOPS)
        if tp and ((tp - close) * sign <= 0 or (tp - close) * sign < gap):
            raise Rejected(C.TRADE_RETCODE_INVALID_STOPS)

    def _margin(self, spec: SymbolSpec, volume: float) -> float:
        return margin(self.conv, spec, volume, self.leverage)

    def _check_money(self, plan: Plan) -> None:
        plan.extra_margin = self._margin(plan.spec, plan.volume - 2 * plan.closed)
        if plan.extra_margin <= 0:
            return
        floating, used = self.totals()
        acct = self.book.account
        equity = acct.balance + acct.credit + floating
        if equity - used - plan.extra_margin < 0:
            raise Rejected(C.TRADE_RETCODE_NO_MONEY)

    def _open(self, plan: Plan) -> Plan:
        self._check_stops(plan.spec, plan.is_buy, plan.req.sl, plan.req.tp)
        self._check_money(plan)
        return plan

    def _increase(self, plan: Plan) -> Plan:
        plan.kind = "increase"
        return self._open(plan)

    def _close(self, plan: Plan) -> Plan:
        pos = plan.pos
        assert pos is not None
        remainder = pos.volume - plan.volume
        if _EPS < remainder < plan.spec.volume_min - _EPS:
            raise Rejected(C.TRADE_RETCODE_INVALID_VOLUME)  # would leave unsellable dust
        plan.kind, plan.closed = "close", plan.volume
        plan.profit = profit(
            self.conv, plan.spec, pos.type == C.POSITION_TYPE_BUY, plan.volume, pos.price_open, plan.price
        )
        return plan

    def _reverse(self, plan: Plan) -> Plan:
        pos = plan.pos
        assert pos is not None
        if plan.volume - pos.volume < plan.spec.volume_min - _EPS:
            raise Rejected(C.TRADE_RETCODE_INVALID_VOLUME)
        plan.kind, plan.closed = "reverse", pos.volume
        plan.profit = profit(
            self.conv, plan.spec, pos.type == C.POSITION_TYPE_BUY, pos.volume, pos.price_open, plan.price
        )
        self._check_stops(plan.spec, plan.is_buy, plan.req.sl, plan.req.tp)
        self._check_money(plan)
        return plan

    def _plan_sltp(self, req: TradeRequest) -> Plan:
        if req.position:
            pos = self._named_position(req.position)
        else:
            found = None if self.hedging else self.book.by_symbol(req.symbol)
            if found is None:
                raise Rejected(C.TRADE_RETCODE_INVALID)
            pos = found
        spec = self._spec_for(req, pos)
        self._check_session(spec)
        if abs(req.sl - pos.sl) < spec.point / 2 and abs(req.tp - pos.tp) < spec.point / 2:
            raise Rejected(C.TRADE_RETCODE_NO_CHANGES)
        self._check_stops(spec, pos.type == C.POSITION_TYPE_BUY, req.sl, req.tp)
        bid, ask = self.quote(spec.name)
        return Plan(req, spec, "sltp", bid, ask, pos=pos)

    # ------------------------------------------------------------------ executing
    def commission(self, volume: float) -> float:
        c = round(self.commission_per_lot * volume, 2)
        return -c if c else 0.0

    def changes(self, plan: Plan, reason: int = C.DEAL_REASON_EXPERT) -> tuple[Changes, int, int]:
        """The changes executing ``plan`` makes, with the (deal, order) tickets (0, 0 for SLTP)."""
        now = self.now_msc()
        ch = Changes()
        if plan.kind == "sltp":
            assert plan.pos is not None
            ch.upsert.append(replace(plan.pos, sl=plan.req.sl, tp=plan.req.tp, time_update_msc=now))
            return ch, 0, 0
        order = self.book.take_order_ticket(ch)
        deal = self.book.take_deal_ticket(ch)
        identifier = self._apply_positions(plan, ch, order, now, reason)
        fee = self.commission(plan.volume)
        entry = {
            "open": C.DEAL_ENTRY_IN,
            "increase": C.DEAL_ENTRY_IN,
            "close": C.DEAL_ENTRY_OUT,
            "reverse": C.DEAL_ENTRY_INOUT,
        }[plan.kind]
        req, symbol = plan.req, plan.spec.name
        deal_type = C.DEAL_TYPE_BUY if plan.is_buy else C.DEAL_TYPE_SELL
        ch.deals.append(deal_record(
            ticket=deal, order=order, time_msc=now, type=deal_type, entry=entry, magic=req.magic,
            position_id=identifier, reason=reason, volume=plan.volume, price=plan.price, symbol=symbol,
            comment=req.comment, commission=fee, profit=plan.profit,
        ))  # fmt: skip
        ch.orders.append(filled_order(
            ticket=order, time_msc=now, type=req.type, type_time=req.type_time, type_filling=req.type_filling,
            magic=req.magic, position_id=identifier, reason=reason, volume=plan.volume, price=plan.price,
            sl=req.sl, tp=req.tp, symbol=symbol, comment=req.comment, requested=plan.requested,
        ))  # fmt: skip
        ch.balance_delta = round(plan.profit + fee, 2)
        return ch, deal, order

    def _apply_positions(self, plan: Plan, ch: Changes, order: int, now: int, reason: int) -> int:
        """Add the position changes to ``ch``; returns the position identifier the deal belongs to."""
        pos, req = plan.pos, plan.req
        if pos is None:  # a new position: its ticket and identifier are the order ticket
            ch.upsert.append(_new_pos(plan, order, order, plan.volume, reason, now))
            ch.tickets.append(order)
            return order
        if plan.kind == "increase":
            volume = round(pos.volume + plan.volume, 8)
            avg = round((pos.price_open * pos.volume + plan.price * plan.volume) / volume, 8)
            ch.upsert.append(
                replace(
                    pos,
                    volume=volume,
                    price_open=avg,
                    sl=req.sl or pos.sl,
                    tp=req.tp or pos.tp,
                    time_update_msc=now,
                )
            )
        elif plan.kind == "close":
            remainder = round(pos.volume - plan.volume, 8)
            if remainder > _EPS:
                ch.upsert.append(replace(pos, volume=remainder, time_update_msc=now))
            else:
                ch.delete.append(pos.ticket)
        else:  # reverse: same identifier, new ticket, opposite type, the excess volume
            ch.delete.append(pos.ticket)
            ch.upsert.append(
                _new_pos(plan, order, pos.identifier, round(plan.volume - pos.volume, 8), reason, now)
            )
            ch.tickets.append(order)
        return pos.identifier

    def projection(self, plan: Plan) -> tuple[float, float, float, float]:
        """(balance, equity, profit, margin) after executing ``plan`` (for order_check)."""
        acct = self.book.account
        floating, used = self.totals()
        balance = acct.balance
        if plan.kind != "sltp":
            fee = self.commission(plan.volume)
            balance = round(balance + plan.profit + fee, 2)
            floating -= plan.profit
            opened = plan.volume - plan.closed
            if opened > _EPS:  # a new exposure is marked at the closing side at once (the spread)
                close = plan.bid if plan.is_buy else plan.ask
                floating += profit(self.conv, plan.spec, plan.is_buy, opened, plan.price, close)
            used = max(used + self._margin(plan.spec, opened) - self._margin(plan.spec, plan.closed), 0.0)
        floating = round(floating, 2)
        return balance, round(balance + acct.credit + floating, 2), floating, round(used, 2)
