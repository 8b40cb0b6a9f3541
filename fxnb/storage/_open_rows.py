"""``OpenRows``: what the writer knows the open rows of ``position_book``/``position_marks`` hold.

``sync_positions`` compares each poll's book with it, so that it writes only what changed without
reading the tables. It holds the same truth in one of two forms, or both:

* ``last``: the book the last sync left in the tables whole (every open row is one of its
  positions, with its values). The usual poll reads the same tickets in the same order with only
  quotes moved; it is compared with ``last`` column against column, in C, and becomes the new one.
* per-ticket dictionaries, ``idents`` (the identity columns) and ``quotes``: for every other poll,
  and for forgetting a closed ticket. They are built from ``last`` when first needed after a run
  of usual polls.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import compress
from operator import and_, eq, ne, not_
from typing import Any

from fxnb.models import Book

# Book columns in the order of the stored columns sync_positions compares (its _POS_COLUMNS):
# identity first (position_book's), then the quote (position_marks'; the profit percent is not a
# Book column, it comes with the poll).
IDENT_FIELDS = ("ticket", "side", "volume", "price_open", "sl", "tp", "magic", "identifier", "comment")
QUOTE_FIELDS = ("price_current", "profit", "swap")


def ident_rows(book: Book) -> list[tuple[Any, ...]]:
    """Each position's identity values (``IDENT_FIELDS``), in book order."""
    return list(zip(*(getattr(book, name) for name in IDENT_FIELDS), strict=True))


def quote_rows(book: Book, pcts: Sequence[float | None]) -> list[tuple[Any, ...]]:
    """Each position's quote values (``QUOTE_FIELDS`` and its profit percent), in book order."""
    return list(zip(book.price_current, book.profit, book.swap, pcts, strict=True))


@dataclass
class Diff:
    """How a book differs from the open rows (positions are indexes into the book)."""

    quoted: list[bool]  # per position: known, the same identity, and the quote moved
    usual: bool = False  # compared with ``last`` column against column (nothing new, no identity change)
    new: dict[int, int] = field(default_factory=dict)  # ticket -> index: not open in the tables
    full: list[int] = field(default_factory=list)  # indexes of known tickets whose identity columns changed
    resized: list[int] = field(default_factory=list)  # tickets of ``full`` whose volume changed
    idents: list[tuple[Any, ...]] = field(default_factory=list)  # per position (not built when usual)
    quotes: list[tuple[Any, ...]] = field(default_factory=list)  # per position (not built when usual)


class OpenRows:
    """The rows that are 'open' in the database, as ``sync_positions`` compares them (see the module)."""

    __slots__ = ("_idents", "_quotes", "last", "last_pcts")

    def __init__(self, rows: Iterable[Sequence[Any]] = ()) -> None:
        """``rows``: the stored values of every open row, identity columns then quote columns."""
        n = len(IDENT_FIELDS)
        self._idents: dict[int, tuple[Any, ...]] | None = {}
        self._quotes: dict[int, tuple[Any, ...]] | None = {}
        for row in rows:
            self._idents[row[0]] = tuple(row[:n])
            self._quotes[row[0]] = tuple(row[n:])
        self.last: Book | None = None
        self.last_pcts: tuple[float | None, ...] = ()

    def _dicts(self) -> tuple[dict[int, tuple[Any, ...]], dict[int, tuple[Any, ...]]]:
        if self._idents is None or self._quotes is None:
            assert self.last is not None, "OpenRows lost both of its forms"
            tickets = self.last.ticket
            self._idents = dict(zip(tickets, ident_rows(self.last), strict=True))
            self._quotes = dict(zip(tickets, quote_rows(self.last, self.last_pcts), strict=True))
        return self._idents, self._quotes

    @property
    def idents(self) -> dict[int, tuple[Any, ...]]:
        """ticket -> its stored identity values (``IDENT_FIELDS``), for every open row."""
        return self._dicts()[0]

    @property
    def quotes(self) -> dict[int, tuple[Any, ...]]:
        """ticket -> its stored quote values (``QUOTE_FIELDS`` + profit percent), for every open row."""
        return self._dicts()[1]

    def diff(self, book: Book, pcts: Sequence[float | None]) -> Diff:
        """How ``book`` (each ticket once), with ``pcts``, differs from the open rows."""
        if self._is_last(book):
            return Diff(quoted=self._moved(book, pcts), usual=True)
        idents, quotes = ident_rows(book), quote_rows(book, pcts)
        tickets = book.ticket
        olds = list(map(self.idents.get, tickets))
        same = list(map(eq, olds, idents))  # known, and the identity columns unchanged
        d = Diff(quoted=list(map(and_, same, map(ne, map(self.quotes.get, tickets), quotes))),
                 idents=idents, quotes=quotes)  # fmt: skip
        for i in compress(range(len(tickets)), map(not_, same)):
            old = olds[i]
            if old is None:
                d.new[tickets[i]] = i
            else:
                d.full.append(i)
                if old[2] != idents[i][2]:
                    d.resized.append(tickets[i])
        return d

    def wrote(self, book: Book, pcts: Sequence[float | None], d: Diff) -> list[int]:
        """The writes of ``d`` are committed: remember them. Returns the tickets still open in the
        tables that ``book`` lacks (ascending), which keep the last-book form off until popped."""
        if d.usual:  # the tables hold exactly this book now
            self.last, self.last_pcts = book, tuple(pcts)
            self._idents = self._quotes = None
            return []
        tickets, idents, quotes = book.ticket, self.idents, self.quotes
        quotes.update(compress(zip(tickets, d.quotes, strict=True), d.quoted))
        for i in (*d.new.values(), *d.full):
            idents[tickets[i]], quotes[tickets[i]] = d.idents[i], d.quotes[i]
        disappeared = sorted(idents.keys() - set(tickets))
        self.last, self.last_pcts = (None, ()) if disappeared else (book, tuple(pcts))
        return disappeared

    def _is_last(self, book: Book) -> bool:
        """Whether ``book`` has the tickets of ``last``, in its order, each with the same identity values."""
        last = self.last
        return (last is not None and book.ticket == last.ticket
                and all(getattr(book, name) == getattr(last, name) for name in IDENT_FIELDS))  # fmt: skip

    def _moved(self, book: Book, pcts: Sequence[float | None]) -> list[bool]:
        """Per position of ``book`` (which is ``last``'s tickets): whether its quote differs from the stored one."""
        assert self.last is not None
        last = self.last
        return list(map(ne, zip(book.price_current, book.profit, book.swap, pcts, strict=True),
                        zip(last.price_current, last.profit, last.swap, self.last_pcts, strict=True)))  # fmt: skip

    def pop(self, ticket: int, default: Any = None) -> Any:
        """Forget ``ticket``: it is no longer open in the database."""
        idents, quotes = self._dicts()
        quotes.pop(ticket, None)
        found = idents.pop(ticket, None)
        if found is None:
            return default
        self.last, self.last_pcts = None, ()
        return found
