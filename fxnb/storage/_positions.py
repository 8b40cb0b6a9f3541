"""The writer's tracked positions: the poll's ``sync_positions`` (the hot path) and the closed marks.

One row per ticket in ``position_book`` and one in ``position_marks`` (its quote), written
together and read together through the ``position_tracking`` view (schema 0004), kept in
step with the terminal's book. ``_open_cache`` (``_open_rows.OpenRows``) mirrors the open rows,
so an unchanged poll reads and writes nothing, and a poll that only moved quotes writes only
``position_marks``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from typing import Any

from fxnb.gcpause import gc_paused
from fxnb.models import Snapshot
from fxnb.storage import schema
from fxnb.storage._base import StoreBase, _writes
from fxnb.storage._codec import Timestamp, dumps, iso_utc
from fxnb.storage._open_rows import IDENT_FIELDS, QUOTE_FIELDS, OpenRows


@dataclass(frozen=True)
class SyncResult:
    """What :meth:`Store.sync_positions` found, ticket numbers sorted ascending.

    ``disappeared`` positions are still ``'open'`` in the database: the caller
    reads their realised P/L from the deal history and then calls
    :meth:`Store.mark_closed`. Until it does, they are reported again on every
    sync, so a crash between the two steps loses nothing.
    """

    appeared: tuple[int, ...]
    changed: tuple[int, ...]
    disappeared: tuple[int, ...]
    reopened: tuple[int, ...] = ()  # subset of ``appeared`` that had been marked closed before
    resized: tuple[int, ...] = ()  # subset of ``changed`` whose volume changed (a partial close, a netting add)
    unchanged: int = 0


# What sync_positions compares to decide that a position "changed", in this order
# (ticket first); the SQL below refers to them as ?1..?13. The "quote" columns
# come last: they are position_marks' (the rest is position_book's), and usually
# only they move, so the usual poll writes only that narrow table (schema 0004).
# symbol and open time never change for a ticket; open_price and type can on
# netting accounts.
_POS_COLUMNS = (
    "ticket",
    "type",
    "volume",
    "open_price",
    "sl",
    "tp",
    "magic",
    "identifier",
    "comment",
    "current_price",  # the quote: _open_rows.QUOTE_FIELDS and the profit percent
    "profit",
    "swap",
    "profit_percent",
)
# The Book columns compared with them (OpenRows), in the same order; Side is a str enum, so Side.BUY == "buy".
assert len(_POS_COLUMNS) == len(IDENT_FIELDS) + len(QUOTE_FIELDS) + 1

# A full change writes both tables from one parameter row, ?1..?13 = _POS_COLUMNS, ?14 = last_update.
# (sqlite3 binds exactly as many values as the highest ?N, so the book's statement gets the first nine.)
_UPDATE_BOOK = """
UPDATE position_book SET type = ?2, volume = ?3, original_volume = MAX(original_volume, ?3),
    open_price = ?4, sl = ?5, tp = ?6, magic = ?7, identifier = ?8, comment = ?9
WHERE ticket = ?1
"""
_UPDATE_MARKS = """
UPDATE position_marks SET current_price = ?10, profit = ?11, swap = ?12, profit_percent = ?13, last_update = ?14
WHERE ticket = ?1
"""
# The poll's usual write: only the quote moved, only position_marks is written.
_UPDATE_QUOTE = """
UPDATE position_marks SET current_price = ?2, profit = ?3, swap = ?4, profit_percent = ?5, last_update = ?6
WHERE ticket = ?1
"""
# ?14 = first_seen, ?15 = symbol, ?16 = open time as UTC epoch, ?17 = open time as server epoch.
# open_time is formatted by SQLite in the same spelling as _codec.iso_utc (it is the slow part in Python).
# A reopened ticket keeps its first_seen, open time and partial close, as it did in one table.
_INSERT_BOOK = """
INSERT INTO position_book (ticket, symbol, type, volume, original_volume, open_price, sl, tp, magic,
    identifier, comment, open_time, open_time_server, first_seen, status)
VALUES (?1, ?15, ?2, ?3, ?3, ?4, ?5, ?6, ?7, ?8, ?9,
    strftime('%Y-%m-%dT%H:%M:%fZ', ?16, 'unixepoch'), ?17, ?14, 'open')
ON CONFLICT (ticket) DO UPDATE SET
    symbol = excluded.symbol, type = excluded.type, volume = excluded.volume,
    original_volume = MAX(original_volume, excluded.volume), open_price = excluded.open_price,
    sl = excluded.sl, tp = excluded.tp, magic = excluded.magic,
    identifier = excluded.identifier, comment = excluded.comment,
    status = 'open', closed_at = NULL, close_reason = NULL, realised_profit = NULL
"""
# (ticket, current_price, profit, swap, profit_percent, last_update), as _UPDATE_QUOTE.
_INSERT_MARKS = """
INSERT INTO position_marks (ticket, current_price, profit, swap, profit_percent, last_update)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
ON CONFLICT (ticket) DO UPDATE SET
    current_price = excluded.current_price, profit = excluded.profit, swap = excluded.swap,
    profit_percent = excluded.profit_percent, last_update = excluded.last_update
"""
# Closing writes the book and moves last_update. The marks go first, while the book still says
# 'open', so both statements touch the same rows; shared with _results. ?1 = closed_at, ?2 = reason,
# ?3 = realised profit, ?4 = ticket.
CLOSE_MARKS = """
UPDATE position_marks SET last_update = ?1
WHERE ticket = ?4 AND EXISTS (SELECT 1 FROM position_book WHERE ticket = ?4 AND status = 'open')
"""
CLOSE_BOOK = """
UPDATE position_book SET status = 'closed', closed_at = ?1, close_reason = ?2, realised_profit = ?3
WHERE ticket = ?4 AND status = 'open'
"""


def close_rows(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> int:
    """Mark open positions closed: ``rows`` of (closed_at, reason, realised profit, ticket); how many were.

    The marks are written first, while the book still says 'open' (see ``CLOSE_MARKS``).
    """
    conn.executemany(CLOSE_MARKS, rows)
    return conn.executemany(CLOSE_BOOK, rows).rowcount


# ?1 = when, ?2 = ticket. The first time is kept; last_update is not moved (it never was).
MARK_PARTIAL = """
UPDATE position_book SET partial_closed_at = COALESCE(partial_closed_at, ?1) WHERE ticket = ?2 AND status = 'open'
"""


class PositionsMixin(StoreBase):
    """:class:`~fxnb.storage.writer.Store`'s ``position_book``/``position_marks`` methods."""

    def _load_open_cache(self) -> OpenRows:
        if self._open_cache is None:
            self._open_cache = OpenRows(self.db.execute(
                f"SELECT {', '.join(_POS_COLUMNS)} FROM position_tracking WHERE status = 'open'"
            ))
        return self._open_cache

    @_writes
    def sync_positions(
        self,
        snapshot: Snapshot,
        *,
        server_offset_s: int,
        profit_percent: Mapping[int, float] | None = None,
    ) -> SyncResult:
        """Record every open position of a successful read of the book.

        New tickets are inserted, tickets whose values differ from the stored
        ones are updated (volume included, so a partial close shows), unchanged
        rows are not written. Only pass a snapshot from a read that succeeded:
        a failed read is not an empty book.

        The book is compared column-wise (see :class:`~fxnb.models.Book`): in the usual poll,
        where only quotes moved, no Python-level loop runs over the positions.

        :param server_offset_s: terminal server time minus UTC, in seconds; used
          once, when a ticket is first seen, to store ``open_time`` in UTC.
        :param profit_percent: ticket -> the rules' basis value (see
          ``position_tracking.profit_percent``); missing tickets store NULL.
        :return: tickets that appeared, changed and disappeared. Disappeared
          ones are left ``'open'``: see :class:`SyncResult`.
        """
        with gc_paused():  # tens of thousands of tuples, none in a cycle: no collection in the middle
            book = snapshot.book.unique()
            at = iso_utc(snapshot.taken_at)
            tickets = book.ticket
            pcts = tuple(map((profit_percent or {}).get, tickets))
            cache = self._load_open_cache()
            d = cache.diff(book, pcts)
            idents, quotes = d.idents, d.quotes
            # quote-only changes, selected and their rows built by C-level loops (not strict: repeat() is endless)
            quote_only = list(compress(zip(tickets, book.price_current, book.profit, book.swap, pcts, repeat(at),
                                           strict=False), d.quoted))  # fmt: skip
            reopened: list[int] = []
            try:
                db = self.db
                with db.atomic():
                    if d.new:
                        reopened = [
                            row[0]
                            for row in db.execute(
                                "SELECT ticket FROM position_book "
                                "WHERE status = 'closed' AND ticket IN (SELECT value FROM json_each(?))",
                                [dumps(list(d.new))],
                            )
                        ]
                        opened = book.time
                        db.conn.executemany(_INSERT_BOOK, [
                            (*idents[i], *quotes[i], at, book.symbol[i],
                             (opened[i] - server_offset_s) if opened[i] else None, opened[i] or None)
                            for i in d.new.values()
                        ])  # fmt: skip
                        db.conn.executemany(_INSERT_MARKS, [(t, *quotes[i], at) for t, i in d.new.items()])
                    if quote_only:
                        db.conn.executemany(_UPDATE_QUOTE, quote_only)
                    if d.full:
                        db.conn.executemany(_UPDATE_BOOK, [idents[i] for i in d.full])
                        db.conn.executemany(_UPDATE_MARKS, [(*idents[i], *quotes[i], at) for i in d.full])
            except BaseException:
                self._open_cache = None  # re-read the truth next time
                raise
            disappeared = cache.wrote(book, pcts, d)
            changed = sorted([*compress(tickets, d.quoted), *(tickets[i] for i in d.full)])
            return SyncResult(
                appeared=tuple(sorted(d.new)),
                changed=tuple(changed),
                disappeared=tuple(disappeared),
                reopened=tuple(sorted(reopened)),
                unchanged=len(snapshot.book) - len(d.new) - len(changed),
                resized=tuple(sorted(d.resized)),
            )

    @_writes
    def mark_closed(
        self, ticket: int, *, realised_profit: float | None, reason: str, closed_at: Timestamp | None = None
    ) -> bool:
        """Mark an open position closed.

        :param realised_profit: realised P/L from the deal history, ``None`` if
          it could not be read. For ``'external'`` pass the position's
          **total** over its life (all exit deals, fxnb's earlier partial
          closes included): reports subtract what ``close_results`` already
          counted. For ``'command'``/``'rule'`` reports count the operation's
          ``close_results`` instead, so either the last close's or the total
          profit is fine here.
        :param reason: ``'command'``, ``'rule'`` or ``'external'`` (closed outside fxnb).
        :return: False if the ticket is unknown or already closed (nothing written).
        """
        if reason not in schema.CLOSE_REASONS:
            raise ValueError(f"reason must be one of {schema.CLOSE_REASONS}, not {reason!r}")
        at = self._iso(closed_at)
        with self.db.atomic() as db:
            closed = close_rows(db.conn, [(at, reason, realised_profit, ticket)])
        if self._open_cache is not None:
            self._open_cache.pop(ticket, None)
        return closed == 1

    @_writes
    def mark_partial_closed(self, ticket: int, at: Timestamp | None = None) -> bool:
        """Remember that the once-per-position partial close has run for ``ticket``.

        Kept in the database so it survives restarts (the seed forgot it and
        partial-closed the same winner every loop). The first time is kept.
        :return: False if the ticket is not an open position.
        """
        with self.db.atomic() as db:
            cur = db.execute(MARK_PARTIAL, [self._iso(at), ticket])
        return cur.rowcount == 1

    @_writes
    def position(self, ticket: int) -> dict[str, Any] | None:
        """The tracked row of ``ticket`` (open or closed), e.g. its ``identifier`` for the deal history."""
        rows = list(self.db.query("SELECT * FROM position_tracking WHERE ticket = ?", [ticket]))
        return rows[0] if rows else None

    @_writes
    def partial_closed_tickets(self) -> set[int]:
        """Open tickets whose partial close has already happened (input to the rules)."""
        rows = self.db.execute(  # the book alone: its partial covering index answers it (schema 0003, 0004)
            "SELECT ticket FROM position_book WHERE status = 'open' AND partial_closed_at IS NOT NULL"
        )
        return {row[0] for row in rows}
