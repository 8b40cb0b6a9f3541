"""``models.Book``: the open positions column by column, and the Positions built from it on demand.

The poll never builds Position objects; whatever does (a rule that fires, a command, a test)
must get exactly the Positions the columns describe, equal and hashing equal to constructed ones.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxnb.models import POSITION_FIELDS, Account, Book, Position, Side, Snapshot

positions_st = st.lists(st.builds(
    Position,
    ticket=st.integers(1, 30),  # small: duplicates happen
    symbol=st.sampled_from(["EURUSD", "XAUUSD"]),
    side=st.sampled_from(list(Side)),
    volume=st.sampled_from([0.01, 0.1, 1.0]),
    price_open=st.floats(allow_nan=False),
    price_current=st.floats(allow_nan=False),
    profit=st.floats(allow_nan=False),
    swap=st.floats(allow_nan=False),
    comment=st.text(max_size=5),
    time=st.integers(0, 2**40),
), max_size=30)  # fmt: skip


def columns(positions: list[Position]) -> Book:
    return Book(*(tuple(getattr(p, name) for p in positions) for name in POSITION_FIELDS))


@settings(max_examples=200, deadline=None)
@given(positions_st)
def test_positions_built_from_columns_are_the_constructed_ones(positions: list[Position]) -> None:
    book = columns(positions)
    assert len(book) == len(positions)
    assert book.positions == tuple(positions)
    assert [hash(p) for p in book.positions] == [hash(p) for p in positions]
    assert all(book.position(i) == p for i, p in enumerate(positions))
    assert Book.of(positions) == book  # the same columns either way
    assert Book.of(positions).positions == tuple(positions)
    assert Book.of(book) is book  # a book is its own


@settings(max_examples=200, deadline=None)
@given(positions_st)
def test_unique_keeps_each_tickets_last_copy_in_book_order(positions: list[Position]) -> None:
    last = {p.ticket: i for i, p in enumerate(positions)}
    want = [p for i, p in enumerate(positions) if last[p.ticket] == i]
    assert Book.of(positions).unique().positions == tuple(want)


def test_a_book_without_duplicates_is_its_own_unique() -> None:
    book = Book.of([Position(ticket=t, symbol="EURUSD", side=Side.BUY, volume=0.1, price_open=1.0,
                             price_current=1.0, profit=0.0) for t in (3, 1, 2)])
    assert book.unique() is book


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="same length"):
        Book(ticket=(1, 2), symbol=("EURUSD",))


def test_a_snapshot_reads_its_positions_from_its_book() -> None:
    account = Account(login=1, currency="USD", balance=1.0, equity=1.0, profit=0.0, margin=0.0, margin_free=1.0,
                      margin_level=0.0)
    p = Position(ticket=1, symbol="EURUSD", side=Side.SELL, volume=0.1, price_open=1.0, price_current=1.0,
                 profit=0.0)
    snap = Snapshot.of(account, [p], 5.0)
    assert snap.book.ticket == (1,) and snap.positions == (p,) and snap.taken_at == 5.0
    assert Snapshot(account, Book(), 5.0).positions == ()
