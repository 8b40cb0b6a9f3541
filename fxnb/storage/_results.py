"""The writer's per-ticket close results, and what each means for the tracked position.

A ``close_results`` row per ticket of a ``'processing'`` operation; ``record_close(s)``
also mark the position closed (or partial-closed) in the same transaction, so the
dashboard never shows a close without its result or the other way round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fxnb.errors import StorageError
from fxnb.models import CloseResult
from fxnb.storage import schema
from fxnb.storage._base import StoreBase, _writes
from fxnb.storage._codec import Timestamp, decode_row, dumps
from fxnb.storage._operations import _OP_TOTALS
from fxnb.storage._positions import MARK_PARTIAL, close_rows

_UPSERT_RESULT = """
INSERT INTO close_results (operation_id, ticket, symbol, requested_volume, closed_volume,
    price, profit, retcode, message, status, deals, attempts, finished_at)
VALUES (?, ?,
    COALESCE(NULLIF(?, ''), (SELECT symbol FROM position_book WHERE ticket = ?), ''),
    ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (operation_id, ticket) DO UPDATE SET
    symbol = excluded.symbol, requested_volume = excluded.requested_volume,
    closed_volume = excluded.closed_volume, price = excluded.price, profit = excluded.profit,
    retcode = excluded.retcode, message = excluded.message, status = excluded.status,
    deals = excluded.deals, attempts = excluded.attempts, finished_at = excluded.finished_at"""


def _result_row(op_id: int, res: CloseResult, finished_at: str) -> tuple[Any, ...]:
    """The parameters of ``_UPSERT_RESULT``. Deal tickets are ints: their JSON is spelled directly."""
    deals = res.deals
    if all(type(d) is int for d in deals):
        deals_json = "[" + ",".join(map(str, deals)) + "]"  # == dumps(list(deals)), without the encoder
    else:
        deals_json = dumps(list(deals))
    return (op_id, res.ticket, res.symbol, res.ticket, res.requested_volume, res.closed_volume, res.price,
            res.profit, res.retcode, res.message, res.status.value, deals_json, res.attempts, finished_at)


@dataclass(frozen=True)
class CloseRecord:
    """One ticket's outcome for :meth:`Store.record_closes`.

    ``close_reason`` (``'command'``/``'rule'``) also marks the tracked position closed at
    ``finished_at`` with ``result.profit``; ``partial`` also records the once-per-position
    partial close. ``finished_at`` None means the store's clock, now.
    """

    result: CloseResult
    finished_at: Timestamp | None = None
    close_reason: str | None = None
    partial: bool = False


class ResultsMixin(StoreBase):
    """:class:`~fxnb.storage.writer.Store`'s ``close_results`` methods."""

    @_writes
    def add_result(self, op_id: int, result: CloseResult, finished_at: Timestamp | None = None) -> int:
        """Record what happened to one ticket of a ``'processing'`` operation; returns the row id.

        Recording the same ticket again replaces its result (the monitor
        reconciling after a crash). ``symbol`` falls back to the tracked
        position's symbol when the result has none.
        :raises StorageError: if the operation is not ``'processing'``.
        """
        return self._record_closes(op_id, [CloseRecord(result, finished_at)])[0]

    @_writes
    def record_close(
        self,
        op_id: int,
        result: CloseResult,
        *,
        finished_at: Timestamp | None = None,
        mark_closed: str | None = None,
        partial: bool = False,
    ) -> int:
        """:meth:`add_result`, and what the result means for the tracked position, in ONE transaction.

        :param mark_closed: a close reason (``'command'``/``'rule'``): the position is also marked
          closed, at ``finished_at``, with the result's profit (as :meth:`mark_closed` would).
        :param partial: also remember the once-per-position partial close (:meth:`mark_partial_closed`).
        :return: the result's row id.
        """
        record = CloseRecord(result, finished_at, close_reason=mark_closed, partial=partial)
        return self._record_closes(op_id, [record])[0]

    @_writes
    def record_closes(self, op_id: int, records: Sequence[CloseRecord]) -> int:
        """Several :meth:`record_close` calls in one transaction (the monitor's bulk closes).

        All or nothing: if one write fails, none is kept. Returns how many results were written.
        """
        records = list(records)
        self._record_closes(op_id, records, ids=False)
        return len(records)

    def _record_closes(self, op_id: int, records: list[CloseRecord], *, ids: bool = True) -> list[int]:
        for r in records:
            if r.result.deals_pending:  # its profit is not known yet: Broker.settle_deals first
                raise ValueError(f"close result of ticket {r.result.ticket} still has its deals pending")
            if r.close_reason is not None and r.close_reason not in schema.CLOSE_REASONS:
                raise ValueError(f"reason must be one of {schema.CLOSE_REASONS}, not {r.close_reason!r}")
        if not records:
            return []
        at = [self._iso(r.finished_at) for r in records]
        db = self.db
        with db.atomic():
            self._check_processing(op_id)
            rows = [_result_row(op_id, r.result, when) for r, when in zip(records, at, strict=True)]
            if ids:
                out = [int(db.conn.execute(_UPSERT_RESULT + " RETURNING id", row).fetchone()[0]) for row in rows]
            else:  # executemany cannot return rows, and is twice as fast
                db.conn.executemany(_UPSERT_RESULT, rows)
                out = []
            closes = [(when, r.close_reason, r.result.profit, r.result.ticket)
                      for r, when in zip(records, at, strict=True) if r.close_reason is not None]
            if closes:
                close_rows(db.conn, closes)
            partials = [(when, r.result.ticket) for r, when in zip(records, at, strict=True) if r.partial]
            if partials:
                db.conn.executemany(MARK_PARTIAL, partials)
        if self._open_cache is not None:  # after the commit: a rolled back batch resets the cache instead
            for close in closes:
                self._open_cache.pop(close[3], None)
        return out

    def _check_processing(self, op_id: int) -> None:
        row = self.db.execute("SELECT status FROM position_close_operations WHERE id = ?", [op_id]).fetchone()
        if row is None or row[0] != "processing":
            raise StorageError(
                f"cannot add a result to operation {op_id}: "
                f"{'no such operation' if row is None else 'status is ' + row[0]}"
            )

    @_writes
    def ticket_results(self, ticket: int) -> list[dict[str, Any]]:
        """Every recorded close of ``ticket``, oldest first, with its operation's ``source`` and type."""
        rows = self.db.query(
            "SELECT r.*, o.source, o.operation_type, o.status AS operation_status FROM close_results r "
            "JOIN position_close_operations o ON o.id = r.operation_id WHERE r.ticket = ? "
            "ORDER BY r.finished_at, r.id", [ticket])
        return [dict(decode_row(r) or {}) for r in rows]

    @_writes
    def settle_result(self, result_id: int, *, status: str, closed_volume: float, profit: float, price: float,
                      deals: Sequence[int], note: str, operation_status: str, close_reason: str | None,
                      at: Timestamp | None = None) -> bool:
        """A close that executed without its answer, found later in the deal history: correct its result,
        its finished operation's status and totals, and mark the position closed, in ONE transaction.

        Only a ``'failed'`` or ``'partial'`` result is ever corrected, and only upwards (what the terminal
        shows it did); returns False (nothing written) for any other.
        """
        if operation_status not in schema.FINAL_STATUSES:
            raise ValueError(f"operation status must be one of {schema.FINAL_STATUSES}, not {operation_status!r}")
        if close_reason is not None and close_reason not in schema.CLOSE_REASONS:
            raise ValueError(f"reason must be one of {schema.CLOSE_REASONS}, not {close_reason!r}")
        when = self._iso(at)
        with self.db.atomic() as db:
            row = db.execute("SELECT operation_id, ticket, message FROM close_results WHERE id = ? "
                             "AND status IN ('failed', 'partial')", [result_id]).fetchone()
            if row is None:
                return False
            op_id, ticket, message = row
            db.execute("UPDATE close_results SET status = ?, closed_volume = ?, profit = ?, price = ?, deals = ?, "
                       "message = ? WHERE id = ?",
                       [status, closed_volume, profit, price, dumps(list(deals)),
                        f"{message}; {note}" if message else note, result_id])
            db.execute(
                f"""
                UPDATE position_close_operations SET
                    status = :status,
                    error_message = CASE WHEN :status = 'completed' THEN NULL ELSE error_message END,
                    {_OP_TOTALS}
                WHERE id = :id AND status NOT IN ('pending', 'processing')
                """,
                {"status": operation_status, "id": op_id},
            )
            if close_reason is not None:
                close_rows(db.conn, [(when, close_reason, profit, ticket)])
        if close_reason is not None and self._open_cache is not None:
            self._open_cache.pop(int(ticket), None)
        return True
