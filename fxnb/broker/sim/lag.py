"""What the terminal shows while the trade server's news is still on its way.

A real terminal answers ``order_send`` before its own position list and history
have caught up (300–800 ms), and right after login its history is still being
downloaded. An adapter that re-reads once and trusts what it sees would resend
a close that already happened; these delays make that mistake show in tests.

``visibility_delay_ms``: each execution stays invisible to ``positions_*`` and
``history_*`` reads for that long. Until then the reads show the positions as
they were before the oldest invisible execution and hide deals and history
orders from its first ticket on (tickets only grow). ``history_delay_ms``:
history reads are empty for that long after ``initialize()``/``login()``.
The trade server itself (``order_send``, ``order_check``) always sees the truth.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .book import Book, Pos


@dataclass(frozen=True)
class _Pending:
    visible_at: float
    positions: Mapping[int, Pos]  # the book's positions before the execution
    first_deal: int
    first_order: int


class Lag:
    """The client's delayed view of one book. Times are the terminal's clock (epoch seconds)."""

    def __init__(self, visibility_ms: float, history_ms: float) -> None:
        self._visibility = max(visibility_ms, 0.0) / 1000.0
        self._history = max(history_ms, 0.0) / 1000.0
        self._pending: deque[_Pending] = deque()
        self._history_from = 0.0

    def logged_in(self, now: float) -> None:
        """History is being downloaded again from ``now`` on."""
        self._history_from = now + self._history

    def executing(self, now: float, book: Book) -> None:
        """Call just before an execution is applied to ``book``."""
        if self._visibility > 0:
            acct = book.account
            self._pending.append(
                _Pending(now + self._visibility, dict(book.positions), acct.next_deal, acct.next_order)
            )

    def _oldest(self, now: float) -> _Pending | None:
        while self._pending and self._pending[0].visible_at <= now:
            self._pending.popleft()
        return self._pending[0] if self._pending else None

    def positions(self, now: float) -> Mapping[int, Pos] | None:
        """The positions to show instead of the book's, or None when the book is up to date."""
        oldest = self._oldest(now)
        return None if oldest is None else oldest.positions

    def history(self, now: float, rows: tuple[Any, ...], deals: bool) -> tuple[Any, ...]:
        """``rows`` (deals or history orders) less what has not arrived yet."""
        if now < self._history_from:
            return ()
        oldest = self._oldest(now)
        if oldest is None:
            return rows
        first = oldest.first_deal if deals else oldest.first_order
        return tuple(r for r in rows if r.ticket < first)
