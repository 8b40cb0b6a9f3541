"""Profit and margin in the account currency (the forex formula of the reference, §4.6).

profit (profit currency) = (close - open) x contract x lots, negated for a sell;
then converted to the account currency at the *closing* side of the conversion
pair. When the conversion pair is the symbol itself (USDJPY on a USD account),
the position's own close price is used, as in the official order_calc_profit
example (JPY 30 000 / closing USDJPY price).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .symbols import SymbolSpec

Quote = Callable[[str], tuple[float, float]]


class Converter:
    """Currency conversion through the simulated symbols (direct, inverse, or via USD)."""

    def __init__(self, specs: Mapping[str, SymbolSpec], account_currency: str, quote: Quote) -> None:
        self._quote = quote
        self.account = account_currency
        self._pairs: dict[tuple[str, str], str] = {
            (s.currency_base, s.currency_profit): s.name for s in specs.values()
        }

    def _price(self, symbol: str, use_bid: bool, own: str, own_price: float) -> float:
        if symbol == own:
            return own_price
        bid, ask = self._quote(symbol)
        return bid if use_bid else ask

    def factor(self, ccy: str, use_bid: bool = True, own: str = "", own_price: float = 0.0) -> float:
        """Multiply an amount in ``ccy`` by this to get account currency."""
        return self._factor(ccy, self.account, use_bid, own, own_price)

    def _factor(self, ccy: str, to: str, use_bid: bool, own: str, own_price: float) -> float:
        if ccy == to:
            return 1.0
        direct = self._pairs.get((to, ccy))  # e.g. USDJPY for JPY -> USD: divide by the price
        if direct is not None:
            return 1.0 / self._price(direct, use_bid, own, own_price)
        inverse = self._pairs.get((ccy, to))  # e.g. XAUUSD for XAU -> USD: multiply
        if inverse is not None:
            return self._price(inverse, use_bid, own, own_price)
        if "USD" not in (ccy, to):
            return self._factor(ccy, "USD", use_bid, own, own_price) * self._factor(
                "USD", to, use_bid, own, own_price
            )
        raise LookupError(f"no conversion path {ccy} -> {to}")


def profit(
    conv: Converter, spec: SymbolSpec, is_buy: bool, volume: float, price_open: float, price_close: float
) -> float:
    """Realised/floating profit in account currency, rounded to cents like the terminal shows it."""
    diff = price_close - price_open if is_buy else price_open - price_close
    raw = diff * spec.contract_size * volume
    # a buy closes by selling (bid side), a sell by buying (ask side)
    return round(raw * conv.factor(spec.currency_profit, is_buy, spec.name, price_close), 2)


def margin(conv: Converter, spec: SymbolSpec, volume: float, leverage: int, price: float = 0.0) -> float:
    """Forex margin: lots x contract / leverage in the margin currency, converted at bid
    (or at ``price`` when the conversion pair is the symbol itself, as order_calc_margin allows)."""
    own = spec.name if price > 0 else ""
    return (
        volume * spec.contract_size / max(leverage, 1) * conv.factor(spec.currency_margin, True, own, price)
    )
