"""The simulated broker's instruments: static contract specifications.

Realistic retail values. The filling masks differ on purpose (EURUSD FOK|IOC,
GBPUSD IOC, USDJPY FOK, XAUUSD IOC ...) so an adapter's filling fallback is
exercised, and USDJPY uses instant execution (price + deviation matter) while
the rest use market execution. AUDUSD and USDCHF start outside Market Watch
(``symbol_select`` them first); USDCHF's minimum lot is 0.10 with a 0.01 step.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import constants as C

FILL_FOK = 1  # SYMBOL_FILLING_FOK bit (not exported by the package)
FILL_IOC = 2  # SYMBOL_FILLING_IOC bit


@dataclass(frozen=True)
class SymbolSpec:
    """One instrument. ``base_bid`` is where the price process starts and mean-reverts to."""

    name: str
    digits: int
    base_bid: float
    spread: int  # points
    contract_size: float
    currency_base: str
    currency_profit: str
    currency_margin: str
    annual_vol: float  # fraction per year, at volatility 1.0
    filling_mode: int
    trade_exemode: int = C.SYMBOL_TRADE_EXECUTION_MARKET
    volume_min: float = 0.01
    volume_max: float = 100.0
    volume_step: float = 0.01
    stops_level: int = 0
    trade_mode: int = C.SYMBOL_TRADE_MODE_FULL
    visible: bool = True
    path: str = "Forex\\Majors"

    @property
    def description(self) -> str:
        return _DESCRIPTIONS.get(self.name, self.name)

    @property
    def point(self) -> float:
        return round(10.0**-self.digits, self.digits)

    @property
    def instant(self) -> bool:
        """Instant/request execution: the request price and deviation are checked."""
        return self.trade_exemode in (C.SYMBOL_TRADE_EXECUTION_INSTANT, C.SYMBOL_TRADE_EXECUTION_REQUEST)


_MARKET = C.SYMBOL_TRADE_EXECUTION_MARKET
_INSTANT = C.SYMBOL_TRADE_EXECUTION_INSTANT

_FOK_IOC = FILL_FOK | FILL_IOC

# fmt: off
SYMBOLS: tuple[SymbolSpec, ...] = (
    #          name  digits base_bid spread contract  base   profit margin vol  filling
    SymbolSpec("EURUSD", 5, 1.08500, 10, 100000.0, "EUR", "USD", "EUR", 0.07, _FOK_IOC),
    SymbolSpec("GBPUSD", 5, 1.27000, 14, 100000.0, "GBP", "USD", "GBP", 0.08, FILL_IOC),
    SymbolSpec("USDJPY", 3, 150.000, 12, 100000.0, "USD", "JPY", "USD", 0.09, FILL_FOK,
               trade_exemode=_INSTANT, stops_level=10),
    SymbolSpec("XAUUSD", 2, 2350.00, 30, 100.0,    "XAU", "USD", "XAU", 0.15, FILL_IOC,
               volume_max=50.0, stops_level=20, path="Metals\\XAUUSD"),
    SymbolSpec("EURJPY", 3, 162.750, 18, 100000.0, "EUR", "JPY", "EUR", 0.09, _FOK_IOC,
               path="Forex\\Crosses"),
    SymbolSpec("AUDUSD", 5, 0.66000, 12, 100000.0, "AUD", "USD", "AUD", 0.09, _FOK_IOC, visible=False),
    # volume_min above volume_step: the one symbol where a partial close can leave unsellable dust (10014)
    SymbolSpec("USDCHF", 5, 0.88000, 15, 100000.0, "USD", "CHF", "USD", 0.07, FILL_FOK,
               volume_min=0.10, visible=False),
)
# fmt: on

_DESCRIPTIONS = {
    "EURUSD": "Euro vs US Dollar",
    "GBPUSD": "Great Britain Pound vs US Dollar",
    "USDJPY": "US Dollar vs Japanese Yen",
    "XAUUSD": "Gold vs US Dollar",
    "EURJPY": "Euro vs Japanese Yen",
    "AUDUSD": "Australian Dollar vs US Dollar",
    "USDCHF": "US Dollar vs Swiss Franc",
}

SPECS: dict[str, SymbolSpec] = {s.name: s for s in SYMBOLS}
