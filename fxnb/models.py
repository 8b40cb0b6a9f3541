"""Plain values that cross fxnb's boundaries.

The broker adapter turns MetaTrader5 structs into these; storage, rules and the
monitor only ever see these. Frozen, so a snapshot cannot change under a rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from enum import StrEnum
from functools import cached_property
from operator import attrgetter
from typing import Any


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


# Position's fields, in order: a Book has one column per field, a row of a Book is a Position.
POSITION_FIELDS = tuple(f.name for f in fields(Position))
_position_values = attrgetter(*POSITION_FIELDS)
# Building a Position from a row gives the new instance its __dict__ in one go, skipping the frozen
# dataclass's __init__ (one object.__setattr__ per field); the result compares and hashes equal to a
# constructed one. That relies on Position being a plain dataclass with these fields in this order:
# if it ever changes shape, the constructor is used.
_PLAIN_POSITION = (
    POSITION_FIELDS == ("ticket", "symbol", "side", "volume", "price_open", "price_current", "profit", "swap",
                        "sl", "tp", "magic", "identifier", "comment", "time", "time_update")
    and not hasattr(Position, "__slots__")
    and not hasattr(Position, "__post_init__")
)  # fmt: skip
_new = object.__new__
_set_attr = object.__setattr__


def _positions(rows: Iterable[tuple[Any, ...]]) -> tuple[Position, ...]:
    if not _PLAIN_POSITION:  # pragma: no cover - only if Position stops being a plain dataclass
        return tuple(Position(*row) for row in rows)
    out: list[Position] = []
    append = out.append
    for (ticket, symbol, side, volume, price_open, price_current, profit, swap, sl, tp, magic, identifier,
         comment, time, time_update) in rows:
        p = _new(Position)
        _set_attr(p, "__dict__", {
            "ticket": ticket, "symbol": symbol, "side": side, "volume": volume, "price_open": price_open,
            "price_current": price_current, "profit": profit, "swap": swap, "sl": sl, "tp": tp, "magic": magic,
            "identifier": identifier, "comment": comment, "time": time, "time_update": time_update,
        })  # fmt: skip
        append(p)
    return tuple(out)


@dataclass(frozen=True)
class Book:
    """Open positions column by column: ``ticket[i]``, ``symbol[i]`` ... ``time_update[i]`` are position i.

    Why columns: a poll reads the whole book every few seconds, and at 10,000 positions building
    one Python object per position cost more than writing the database. Columns are built and read
    with C-level loops (``zip``, ``map``); :class:`Position` objects are built on demand
    (:attr:`positions`, :meth:`position`), for what a rule or a command acts on.
    """

    ticket: tuple[int, ...] = ()
    symbol: tuple[str, ...] = ()
    side: tuple[Side, ...] = ()
    volume: tuple[float, ...] = ()
    price_open: tuple[float, ...] = ()
    price_current: tuple[float, ...] = ()
    profit: tuple[float, ...] = ()
    swap: tuple[float, ...] = ()
    sl: tuple[float, ...] = ()
    tp: tuple[float, ...] = ()
    magic: tuple[int, ...] = ()
    identifier: tuple[int, ...] = ()
    comment: tuple[str, ...] = ()
    time: tuple[int, ...] = ()
    time_update: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if len({len(getattr(self, name)) for name in POSITION_FIELDS}) > 1:
            raise ValueError("Book columns must all have the same length")

    @classmethod
    def of(cls, positions: Book | Iterable[Position]) -> Book:
        """The book of these positions, in this order (and they are its :attr:`positions`); a book is its own."""
        if isinstance(positions, Book):
            return positions
        ps = tuple(positions)
        book = cls(*zip(*map(_position_values, ps), strict=True)) if ps else cls()
        book.__dict__["positions"] = ps  # cached_property's slot: no need to build them again
        return book

    def __len__(self) -> int:
        return len(self.ticket)

    @cached_property
    def positions(self) -> tuple[Position, ...]:
        """Every row as a :class:`Position`, in order (built once, on first use)."""
        return _positions(self.rows())

    def position(self, i: int) -> Position:
        """Row ``i`` as a :class:`Position`."""
        return _positions([tuple(getattr(self, name)[i] for name in POSITION_FIELDS)])[0]

    def unique(self) -> Book:
        """This book with each ticket once, at its last copy (a real terminal never sends one twice)."""
        if len(set(self.ticket)) == len(self.ticket):
            return self
        keep = sorted({t: i for i, t in enumerate(self.ticket)}.values())
        return Book(*(tuple(map(getattr(self, name).__getitem__, keep)) for name in POSITION_FIELDS))

    def rows(self) -> Iterable[tuple[Any, ...]]:
        """Each position's values in ``POSITION_FIELDS`` order."""
        return zip(*(getattr(self, name) for name in POSITION_FIELDS), strict=True)


@dataclass(frozen=True)
class Snapshot:
    """One successful read of the book: account plus every open position, at ``taken_at`` (UTC epoch)."""

    account: Account
    book: Book
    taken_at: float

    @classmethod
    def of(cls, account: Account, positions: Iterable[Position], taken_at: float) -> Snapshot:
        """A snapshot of these positions (tests, benchmarks; the adapter builds the book from columns)."""
        return cls(account, Book.of(positions), taken_at)

    @property
    def positions(self) -> tuple[Position, ...]:
        """The book as :class:`Position` objects (built on first use; see :class:`Book`)."""
        return self.book.positions


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
