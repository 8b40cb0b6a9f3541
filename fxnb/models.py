"""Plain values that cross fxnb's boundaries.

The broker adapter turns MetaTrader5 structs into these; storage, rules and the
monitor only ever see these. Frozen, so a snapshot cannot change under a rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Side(StrEnum):
    """Direction of a position (``POSITION_TYPE_BUY`` = 0, ``POSITION_TYPE_SELL`` = 1)."""

    BUY = "buy"
    SELL = "sell"


@dataclass(frozen=True)
class Position:
    """One open position as the terminal reports it. ``profit`` is in account currency, without swap."""

    ticket: int
    symbol: str
    side: Side
    volume: float
    price_open: float
    price_current: float
    profit: float
    swap: float = 0.0
    sl: float = 0.0
    tp: float = 0.0
    magic: int = 0
    identifier: int = 0
    comment: str = ""
    time: int = 0  # open time, terminal server time, epoch seconds
    time_update: int = 0


@dataclass(frozen=True)
class Account:
    """The account summary (``account_info()``)."""

    login: int
    currency: str
    balance: float
    equity: float
    profit: float
    margin: float
    margin_free: float
    margin_level: float
    leverage: int = 0
    credit: float = 0.0
    server: str = ""
    name: str = ""
    company: str = ""
    trade_allowed: bool = True
    hedging: bool = True


@dataclass(frozen=True)
class SymbolSpec:
    """What a close request needs to know about a symbol."""

    name: str
    digits: int
    point: float
    contract_size: float
    volume_min: float
    volume_step: float
    volume_max: float
    filling_mode: int  # SYMBOL_FILLING_* bitmask: 1 FOK, 2 IOC, 4 BOC
    trade_mode: int
    currency_profit: str
    spread: int = 0
    bid: float = 0.0
    ask: float = 0.0
    stops_level: int = 0  # minimum SL/TP distance from price, in points
    freeze_level: int = 0  # no modification within this many points of price
    # SYMBOL_TRADE_EXECUTION_*: 0 request, 1 instant, 2 market, 3 exchange. Only request and instant
    # execution use a request's price; the default (request) is the one that needs it.
    trade_exemode: int = 0


@dataclass(frozen=True)
class TerminalStatus:
    """``terminal_info()`` reduced to what health checks need."""

    connected: bool
    trade_allowed: bool
    build: int = 0
    name: str = ""
    company: str = ""


@dataclass(frozen=True)
class Snapshot:
    """One successful read of the book: account plus every open position, at ``taken_at`` (UTC epoch)."""

    account: Account
    positions: tuple[Position, ...]
    taken_at: float


class CloseStatus(StrEnum):
    """Outcome of closing (part of) one ticket."""

    CLOSED = "closed"  # the requested volume is closed
    PARTIAL = "partial"  # less than requested was closed (e.g. DONE_PARTIAL)
    ALREADY_CLOSED = "already_closed"  # the position was gone before we sent anything
    FAILED = "failed"  # nothing closed; see retcode / message
    DRY_RUN = "dry_run"  # rules_mode dry_run: decided, not sent


@dataclass(frozen=True)
class CloseResult:
    """What happened to one ticket. ``profit`` is realised P/L read from the OUT deals."""

    ticket: int
    status: CloseStatus
    requested_volume: float
    closed_volume: float = 0.0
    price: float = 0.0
    profit: float = 0.0
    retcode: int | None = None
    message: str = ""
    deals: tuple[int, ...] = field(default_factory=tuple)
    attempts: int = 0
    symbol: str = ""
    # True only between ``Broker.close(..., deals_later=True)`` and ``Broker.settle_deals``: closed,
    # but price and profit not yet read from the deals. The store refuses to record such a result.
    deals_pending: bool = False


@dataclass(frozen=True)
class CloseDecision:
    """A rule's decision: close ``volume`` lots of ``ticket`` because of ``reason``."""

    ticket: int
    volume: float
    reason: str
    rule: str
    full: bool = True
