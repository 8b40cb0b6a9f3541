"""The book a brand-new state file starts with: the deposit and the initial positions.

``positions.list`` entries are opened as given; ``positions.count`` more are
generated from the seed: a mix of symbols and sides with open prices offset
from the current price so that about half are winners and half losers, sized
so that some cross the monitor's default profit thresholds. Runs only when the
state file is created, never on a restart. On a netting account only the first
seed of each symbol is kept (there is one position per symbol).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import constants as C
from .book import Book, Changes, Pos
from .money import Converter
from .settings import SimSettings
from .structs import TradeDeal, TradeOrder
from .symbols import SymbolSpec

Quote = Callable[[str], tuple[float, float]]

log = logging.getLogger(__name__)

_VOLUMES = (0.01, 0.02, 0.05, 0.1, 0.1, 0.2, 0.2, 0.3, 0.5, 1.0)
_SEED_SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD", "EURJPY")


@dataclass
class _Seed:
    symbol: str
    type: int
    volume: float
    price_open: float
    age_s: float
    magic: int = 0
    comment: str = ""
    sl: float = 0.0
    tp: float = 0.0


def _side(value: Any) -> int:
    if isinstance(value, str):
        return C.POSITION_TYPE_SELL if value.strip().lower() == "sell" else C.POSITION_TYPE_BUY
    return C.POSITION_TYPE_SELL if int(value) == C.POSITION_TYPE_SELL else C.POSITION_TYPE_BUY


def _listed(
    entries: tuple[Mapping[str, Any], ...],
    specs: Mapping[str, SymbolSpec],
    quote: Callable[[str], tuple[float, float]],
) -> list[_Seed]:
    out = []
    for i, e in enumerate(entries):
        symbol = str(e["symbol"])
        kind = _side(e.get("type", "buy"))
        bid, ask = quote(symbol)
        price = e.get("price_open")
        out.append(
            _Seed(
                symbol,
                kind,
                float(e.get("volume", 0.1)),
                round(float(price), specs[symbol].digits) if price is not None else (ask if kind == 0 else bid),
                age_s=3600.0 * (len(entries) - i),
                magic=int(e.get("magic", 0)),
                comment=str(e.get("comment", "")),
                sl=float(e.get("sl", 0.0)),
                tp=float(e.get("tp", 0.0)),
            )
        )
    return out


def _generated(
    n: int, rng: random.Random, specs: Mapping[str, SymbolSpec], quote: Quote, conv: Converter
) -> list[_Seed]:
    """``n`` positions, half winners: each aims at a floating result of $20-$650 (some cross the monitor's
    2 % / 5 % thresholds on a 10k account) within about one day's move of the price."""
    symbols = [s for s in _SEED_SYMBOLS if s in specs] or list(specs)
    winners = [i < (n + 1) // 2 for i in range(n)]
    rng.shuffle(winners)
    out = []
    for win in winners:
        spec = specs[rng.choice(symbols)]
        kind = rng.choice((C.POSITION_TYPE_BUY, C.POSITION_TYPE_SELL))
        volume = rng.choice(_VOLUMES if spec.contract_size >= 1000 else _VOLUMES[:6])
        bid, ask = quote(spec.name)
        close = bid if kind == C.POSITION_TYPE_BUY else ask
        per_price_unit = spec.contract_size * volume * conv.factor(spec.currency_profit, kind == 0, spec.name, close)
        target = rng.uniform(20.0, 650.0)
        daily = spec.annual_vol / math.sqrt(252.0) * close
        offset = min(max(target / per_price_unit, 5 * spec.point), 1.5 * daily)
        up = win == (kind == C.POSITION_TYPE_BUY)  # the close price is above the open price
        price = round(close - offset if up else close + offset, spec.digits)
        out.append(_Seed(spec.name, kind, volume, price, age_s=rng.uniform(600.0, 2 * 86400.0)))
    return out


def initial_changes(
    book: Book,
    settings: SimSettings,
    specs: Mapping[str, SymbolSpec],
    quote: Quote,
    conv: Converter,
    now_msc: int,
) -> Changes:
    """The deposit deal plus every initial position with its order and IN deal."""
    ch = Changes()
    if settings.balance:
        deposit = book.take_deal_ticket(ch)
        t = now_msc - 3 * 86400 * 1000
        ch.deals.append(
            TradeDeal(
                deposit,
                0,
                t // 1000,
                t,
                C.DEAL_TYPE_BALANCE,
                C.DEAL_ENTRY_IN,
                0,
                0,
                C.DEAL_REASON_CLIENT,
                0.0,
                0.0,
                0.0,
                0.0,
                settings.balance,
                0.0,
                "",
                "Initial deposit",
                "",
            )
        )
        ch.balance_delta = settings.balance
    rng = random.Random(settings.seed)
    seeds = _listed(settings.positions_list, specs, quote)
    seeds += _generated(max(settings.positions_count, 0), rng, specs, quote, conv)
    if not settings.hedging:  # netting: one position per symbol, the first seed of each symbol wins
        first: dict[str, _Seed] = {}
        for s in seeds:
            first.setdefault(s.symbol, s)
        if len(first) < len(seeds):
            log.info("netting account: %d initial positions dropped (one per symbol)", len(seeds) - len(first))
        seeds = list(first.values())
    for s in sorted(seeds, key=lambda s: -s.age_s):
        _open(book, ch, s, now_msc - int(s.age_s * 1000))
    return ch


def _open(book: Book, ch: Changes, s: _Seed, t: int) -> None:
    order = book.take_order_ticket(ch)
    deal = book.take_deal_ticket(ch)
    reason = C.DEAL_REASON_CLIENT
    ch.upsert.append(
        Pos(
            order,
            order,
            s.symbol,
            s.type,
            s.volume,
            s.price_open,
            s.sl,
            s.tp,
            0.0,
            s.magic,
            reason,
            s.comment,
            "",
            t,
            t,
        )
    )
    ch.tickets.append(order)
    ch.orders.append(
        TradeOrder(
            order,
            t // 1000,
            t,
            t // 1000,
            t,
            0,
            s.type,
            C.ORDER_TIME_GTC,
            C.ORDER_FILLING_FOK,
            C.ORDER_STATE_FILLED,
            s.magic,
            order,
            0,
            reason,
            s.volume,
            0.0,
            s.price_open,
            s.sl,
            s.tp,
            s.price_open,
            0.0,
            s.symbol,
            s.comment,
            "",
        )
    )
    ch.deals.append(
        TradeDeal(
            deal,
            order,
            t // 1000,
            t,
            s.type,
            C.DEAL_ENTRY_IN,
            s.magic,
            order,
            reason,
            s.volume,
            s.price_open,
            0.0,
            0.0,
            0.0,
            0.0,
            s.symbol,
            s.comment,
            "",
        )
    )
