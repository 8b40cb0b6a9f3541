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
from .book import Book, Changes, Pos, deal_record, filled_order
from .money import Converter
from .settings import SimSettings
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
                round(float(price), specs[symbol].digits)
                if price is not None
                else (ask if kind == 0 else bid),
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
        per_price_unit = (
            spec.contract_size * volume * conv.factor(spec.currency_profit, kind == 0, spec.name, close)
        )
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
        ch.deals.append(deal_record(
            ticket=deposit, order=0, time_msc=now_msc - 3 * 86400 * 1000, type=C.DEAL_TYPE_BALANCE,
            entry=C.DEAL_ENTRY_IN, magic=0, position_id=0, reason=C.DEAL_REASON_CLIENT, volume=0.0, price=0.0,
            symbol="", comment="Initial deposit", profit=settings.balance,
        ))  # fmt: skip
        ch.balance_delta = settings.balance
    rng = random.Random(settings.seed)
    seeds = _listed(settings.positions_list, specs, quote)
    seeds += _generated(max(settings.positions_count, 0), rng, specs, quote, conv)
    if not settings.hedging:  # netting: one position per symbol, the first seed of each symbol wins
        first: dict[str, _Seed] = {}
        for s in seeds:
            first.setdefault(s.symbol, s)
        if len(first) < len(seeds):
            log.info(
                "netting account: %d initial positions dropped (one per symbol)", len(seeds) - len(first)
            )
        seeds = list(first.values())
    for s in sorted(seeds, key=lambda s: -s.age_s):
        _open(book, ch, s, now_msc - int(s.age_s * 1000))
    return ch


def _open(book: Book, ch: Changes, s: _Seed, t: int) -> None:
    """An opened position with its history order and IN deal, as if placed from the terminal at ``t``."""
    order = book.take_order_ticket(ch)
    deal = book.take_deal_ticket(ch)
    reason = C.DEAL_REASON_CLIENT  # = ORDER_REASON_CLIENT = POSITION_REASON_CLIENT
    ch.upsert.append(Pos(
        ticket=order, identifier=order, symbol=s.symbol, type=s.type, volume=s.volume,
        price_open=s.price_open, sl=s.sl, tp=s.tp, swap=0.0, magic=s.magic, reason=reason, comment=s.comment,
        external_id="", time_msc=t, time_update_msc=t,
    ))  # fmt: skip
    ch.tickets.append(order)
    ch.orders.append(filled_order(
        ticket=order, time_msc=t, type=s.type, type_time=C.ORDER_TIME_GTC, type_filling=C.ORDER_FILLING_FOK,
        magic=s.magic, position_id=order, reason=reason, volume=s.volume, price=s.price_open, sl=s.sl,
        tp=s.tp, symbol=s.symbol, comment=s.comment,
    ))  # fmt: skip
    ch.deals.append(deal_record(
        ticket=deal, order=order, time_msc=t, type=s.type, entry=C.DEAL_ENTRY_IN, magic=s.magic,
        position_id=order, reason=reason, volume=s.volume, price=s.price_open, symbol=s.symbol,
        comment=s.comment,
    ))  # fmt: skip
