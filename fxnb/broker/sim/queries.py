"""History queries (``history_deals_get`` / ``history_orders_get``) over the in-memory book.

Three forms, as in MT5: by ``ticket`` (the ORDER ticket, for deals too), by
``position`` (the position identifier), or by a date range in server time
(inclusive bounds; both dates required). ``group`` filters on the symbol.
"""

from __future__ import annotations

from typing import Any

from .book import Book
from .groups import matcher
from .requests import INVALID_ARGS, to_epoch


def history(
    book: Book,
    date_from: Any,
    date_to: Any,
    group: str | None,
    ticket: int | None,
    position: int | None,
    deals: bool,
) -> tuple[Any, ...]:
    """Deals (``deals=True``) or history orders matching one of the three query forms."""
    rows: list[Any]
    if ticket is not None:
        if deals:
            rows = list(book.deals_by_order.get(ticket, ()))
        else:
            order = book.orders_by_ticket.get(ticket)
            rows = [order] if order is not None else []
    elif position is not None:
        rows = list((book.deals_by_position if deals else book.orders_by_position).get(position, ()))
    else:
        if date_from is None or date_to is None:
            raise INVALID_ARGS
        lo, hi = to_epoch(date_from, 1), to_epoch(date_to, 2)
        if deals:
            rows = [d for d in book.deals if lo <= d.time <= hi]
        else:
            rows = [o for o in book.orders if lo <= o.time_setup <= hi]
    if group is not None:
        match = matcher(group)
        rows = [r for r in rows if match(r.symbol)]
    return tuple(rows)
