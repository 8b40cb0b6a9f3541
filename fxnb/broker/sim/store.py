"""The state file: SQLite (stdlib), WAL, write-through.

Memory is authoritative for reads; every change is one short transaction
(``synchronous=NORMAL`` in WAL: durable across a process restart, no fsync per
order, so a close costs tens of microseconds). ``PRAGMA data_version`` tells
when *another* connection committed, so several processes (a notebook, the
monitor, a dashboard) see one terminal, as they would see one real terminal.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .book import POS_FIELDS, Account, Book, Changes, Pos
from .structs import TradeDeal, TradeOrder

_SCHEMA_VERSION = 1


def _cols(fields: tuple[str, ...]) -> str:
    return ", ".join(f'"{f}"' for f in fields)


def _table(name: str, fields: tuple[str, ...]) -> str:
    body = ", ".join(f'"{f}"' + (" INTEGER PRIMARY KEY" if i == 0 else "") for i, f in enumerate(fields))
    return f"CREATE TABLE IF NOT EXISTS {name} ({body})"


_ACCOUNT_FIELDS = (
    "id",
    "login",
    "currency",
    "margin_mode",
    "balance",
    "credit",
    "next_order",
    "next_deal",
    "created",
    "schema",
)
_DDL = (
    _table("account", _ACCOUNT_FIELDS),
    _table("positions", POS_FIELDS),
    _table("deals", TradeDeal._fields),
    _table("orders", TradeOrder._fields),
    _table("tickets", ("ticket",)),
)


def _insert(table: str, n: int) -> str:
    return f"INSERT OR REPLACE INTO {table} VALUES ({', '.join('?' * n)})"


_UPSERT_POS = _insert("positions", len(POS_FIELDS))
_INSERT_DEAL = _insert("deals", len(TradeDeal._fields))
_INSERT_ORDER = _insert("orders", len(TradeOrder._fields))


class Store:
    """One connection to the state file. Not thread-safe: the terminal's lock serialises use."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        for ddl in _DDL:
            self._db.execute(ddl)
        self._data_version = self._version()
        self._in_tx = False

    def close(self) -> None:
        self._db.close()

    def _version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def changed_elsewhere(self) -> bool:
        """True once after another connection (process) committed a change."""
        v = self._version()
        if v != self._data_version:
            self._data_version = v
            return True
        return False

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (rollback on error). Re-entrant: inner uses join the outer."""
        if self._in_tx:
            yield
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._in_tx = True
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._in_tx = False

    # -- reading --
    def load_account(self) -> Account | None:
        row = self._db.execute(f"SELECT {_cols(_ACCOUNT_FIELDS[1:-1])} FROM account WHERE id = 1").fetchone()
        return None if row is None else Account(*row)

    def load_positions(self) -> dict[int, Pos]:
        rows = self._db.execute(f"SELECT {_cols(POS_FIELDS)} FROM positions ORDER BY ticket")
        return {r[0]: Pos(*r) for r in rows}

    def load_book(self) -> Book | None:
        account = self.load_account()
        if account is None:
            return None
        book = Book(account)
        book.positions = self.load_positions()
        self.load_history_into(book)
        return book

    def load_history_into(self, book: Book) -> None:
        """Append history rows ``book`` has not seen (tickets grow in commit order)."""
        last_deal = book.deals[-1].ticket if book.deals else 0
        last_order = book.orders[-1].ticket if book.orders else 0
        deals = [
            TradeDeal._make(r)
            for r in self._db.execute(
                f"SELECT {_cols(TradeDeal._fields)} FROM deals WHERE ticket > ? ORDER BY ticket", (last_deal,)
            )
        ]
        orders = [
            TradeOrder._make(r)
            for r in self._db.execute(
                f"SELECT {_cols(TradeOrder._fields)} FROM orders WHERE ticket > ? ORDER BY ticket",
                (last_order,),
            )
        ]
        book.add_history(deals, orders)
        last_ticket = max(book.known_tickets, default=0)
        book.known_tickets.update(
            r[0] for r in self._db.execute("SELECT ticket FROM tickets WHERE ticket > ?", (last_ticket,))
        )

    # -- writing --
    def create_account(self, account: Account) -> None:
        self._db.execute(
            _insert("account", len(_ACCOUNT_FIELDS)),
            (
                1,
                account.login,
                account.currency,
                account.margin_mode,
                account.balance,
                account.credit,
                account.next_order,
                account.next_deal,
                account.created,
                _SCHEMA_VERSION,
            ),
        )

    def write(self, ch: Changes, account: Account) -> None:
        """Persist ``ch`` (applied on top of ``account``); call inside ``transaction()``."""
        db = self._db
        if ch.delete:
            db.executemany("DELETE FROM positions WHERE ticket = ?", [(t,) for t in ch.delete])
        if ch.upsert:
            db.executemany(_UPSERT_POS, [tuple(getattr(p, f) for f in POS_FIELDS) for p in ch.upsert])
        if ch.deals:
            db.executemany(_INSERT_DEAL, ch.deals)
        if ch.orders:
            db.executemany(_INSERT_ORDER, ch.orders)
        if ch.tickets:
            db.executemany("INSERT OR IGNORE INTO tickets VALUES (?)", [(t,) for t in ch.tickets])
        db.execute(
            "UPDATE account SET balance = ?, next_order = ?, next_deal = ? WHERE id = 1",
            (
                round(account.balance + ch.balance_delta, 2),
                max(account.next_order, ch.next_order),
                max(account.next_deal, ch.next_deal),
            ),
        )
