"""Marking the book to market: TradePosition structs, floating profit and margin.

Hot path (``positions_get`` of 10,000 positions): the conversion factor is
computed once per symbol and side, structs are built with ``tuple.__new__``,
and the full result is cached until the book or the prices change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from fxnb.gcpause import gc_paused

from .book import Book, Pos
from .money import Converter, margin
from .structs import TradePosition
from .symbols import SymbolSpec

_new = tuple.__new__


class Valuer:
    """Values positions at the current quotes. ``price_key()`` changes whenever any quote may have."""

    def __init__(
        self,
        book: Book,
        specs: Mapping[str, SymbolSpec],
        conv: Converter,
        quote: Callable[[str], tuple[float, float]],
        price_key: Callable[[], object],
        leverage: int,
    ) -> None:
        self.book = book
        self.specs = specs
        self.conv = conv
        self.quote = quote
        self.price_key = price_key
        self.leverage = leverage
        self._cache_key: object = None
        self._all: tuple[TradePosition, ...] = ()
        self._totals: tuple[float, float] = (0.0, 0.0)

    def _params(self, symbol: str) -> tuple[float, float, float, float, float]:
        """(bid, ask, buy factor, sell factor, contract) for one symbol."""
        spec = self.specs[symbol]
        bid, ask = self.quote(symbol)
        ccy = spec.currency_profit
        return (
            bid,
            ask,
            self.conv.factor(ccy, True, symbol, bid),
            self.conv.factor(ccy, False, symbol, ask),
            spec.contract_size,
        )

    def structs(self, positions: Iterable[Pos]) -> list[TradePosition]:
        return self._build(positions)[0]

    def _build(self, positions: Iterable[Pos]) -> tuple[list[TradePosition], float, dict[str, float]]:
        """The structs, Σ(profit + swap) and lots per symbol, in one pass (locals: this is the hot loop)."""
        params: dict[str, tuple[float, float, float, float, float]] = {}
        lots: dict[str, float] = {}
        out: list[TradePosition] = []
        append, new, struct = out.append, _new, TradePosition
        total = 0.0
        for p in positions:
            symbol = p.symbol
            prm = params.get(symbol)
            if prm is None:
                prm = params[symbol] = self._params(symbol)
                lots[symbol] = 0.0
            bid, ask, fbuy, fsell, contract = prm
            volume, po, swap = p.volume, p.price_open, p.swap
            # same float operations as money.profit, so a close realises exactly the shown profit
            if p.type == 0:
                pc = bid
                profit = round((pc - po) * contract * volume * fbuy, 2)
            else:
                pc = ask
                profit = round((po - pc) * contract * volume * fsell, 2)
            total += profit + swap
            lots[symbol] += volume
            t, u = p.time_msc, p.time_update_msc
            # fmt: off
            append(new(struct, (
                p.ticket, t // 1000, t, u // 1000, u, p.type, p.magic, p.identifier, p.reason, volume, po,
                p.sl, p.tp, pc, swap, profit, symbol, p.comment, p.external_id,
            )))
            # fmt: on
        return out, total, lots

    def _refresh(self) -> None:
        key = (self.book.version, self.price_key())
        if key == self._cache_key:
            return
        # A 10,000-struct burst would otherwise trigger collections that walk the whole
        # (notebook-sized) heap; these tuples hold no reference cycles.
        with gc_paused():
            out, total, lots = self._build(self.book.positions.values())
        used = sum(margin(self.conv, self.specs[s], v, self.leverage) for s, v in lots.items())
        self._all, self._totals, self._cache_key = tuple(out), (round(total, 2), round(used, 2)), key

    def all(self) -> tuple[TradePosition, ...]:
        self._refresh()
        return self._all

    def totals(self) -> tuple[float, float]:
        """(floating profit incl. swap, margin) in account currency."""
        self._refresh()
        return self._totals
