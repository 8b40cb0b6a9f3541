"""The writer's command audit trail: an operation's life from ``'pending'`` to its final status.

``position_close_operations`` records every command and rule decision before it runs
(``command_id`` is UNIQUE: each id executes at most once, across restarts too). Its
per-ticket outcomes are written by ``_results``; the totals here are computed from them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from fxnb.errors import StorageError
from fxnb.storage import schema
from fxnb.storage._base import StoreBase, _writes
from fxnb.storage._codec import Timestamp, decode_row, dumps, iso_or_none, to_iso


class DuplicateCommand(StorageError):
    """A command id that is already recorded. The command must not run again.

    This is how "each id executes at most once, across restarts too" is
    enforced: ``command_id`` is UNIQUE in ``position_close_operations``.
    ``status`` is the recorded operation's status, for the error file.
    """

    def __init__(self, command_id: str, status: str | None = None) -> None:
        super().__init__(f"command {command_id!r} was already received (status: {status or 'unknown'})")
        self.command_id = command_id
        self.status = status


_CLOSED_STATUSES = "('closed', 'partial')"  # results where something was actually closed
# An operation's totals from its close_results (realised, from deals), for an UPDATE with :id.
_OP_TOTALS = f"""positions_closed = (SELECT COUNT(*) FROM close_results
        WHERE operation_id = :id AND status IN {_CLOSED_STATUSES}),
    positions_failed = (SELECT COUNT(*) FROM close_results WHERE operation_id = :id AND status = 'failed'),
    total_profit_closed = (SELECT COALESCE(SUM(profit), 0.0) FROM close_results
        WHERE operation_id = :id AND status IN {_CLOSED_STATUSES} AND profit > 0),
    total_loss_closed = (SELECT COALESCE(-SUM(profit), 0.0) FROM close_results
        WHERE operation_id = :id AND status IN {_CLOSED_STATUSES} AND profit < 0)"""


def _command_timestamp(value: Timestamp | None) -> str | None:
    """The command's own timestamp: text is kept exactly as its producer wrote it (it is evidence);
    numbers and datetimes are spelled like every other timestamp."""
    return value if value is None or isinstance(value, str) else to_iso(value)


class OperationsMixin(StoreBase):
    """:class:`~fxnb.storage.writer.Store`'s ``position_close_operations`` methods."""

    @_writes
    def create_operation(
        self,
        command_id: str,
        operation_type: str,
        *,
        source: str,
        requested_by: str | None = None,
        params: Mapping[str, Any] | None = None,
        timestamp: Timestamp | None = None,
        created_at: Timestamp | None = None,
        expires_at: Timestamp | None = None,
        file_name: str | None = None,
    ) -> int:
        """Record a received command (or a rule's decision) as ``'pending'``; returns its row id.

        Call this **before** executing anything. :raises DuplicateCommand: if
        ``command_id`` was ever recorded, whatever its status, including by an
        earlier run of the monitor.

        :param timestamp: the command's own timestamp; a number is epoch
          seconds, text is stored as the producer wrote it.
        """
        if source not in schema.SOURCES:
            raise ValueError(f"source must be one of {schema.SOURCES}, not {source!r}")
        ts = _command_timestamp(timestamp)
        try:
            with self.db.atomic() as db:
                cur = db.execute(
                    "INSERT INTO position_close_operations (command_id, operation_type, status, source, "
                    "requested_by, params, timestamp, created_at, expires_at, file_name) "
                    "VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)",
                    [
                        str(command_id),
                        operation_type,
                        source,
                        requested_by,
                        dumps(dict(params or {})),
                        ts,
                        self._iso(created_at),
                        iso_or_none(expires_at),
                        file_name,
                    ],
                )
        except sqlite3.IntegrityError as exc:
            existing = self._operation_where("command_id = ?", [str(command_id)])
            if existing is None:
                raise
            raise DuplicateCommand(str(command_id), existing["status"]) from exc
        return int(cur.lastrowid or 0)

    def _operation_where(self, where: str, params: list[Any]) -> dict[str, Any] | None:
        rows = list(self.db.query(f"SELECT * FROM position_close_operations WHERE {where}", params))
        return decode_row(rows[0]) if rows else None

    @_writes
    def get_operation_by_command(self, command_id: str) -> dict[str, Any] | None:
        """The operation recorded for ``command_id`` (JSON columns decoded), or None."""
        return self._operation_where("command_id = ?", [str(command_id)])

    @_writes
    def get_operation(self, op_id: int) -> dict[str, Any] | None:
        """The operation with row id ``op_id`` (JSON columns decoded), or None."""
        return self._operation_where("id = ?", [op_id])

    @_writes
    def claim_operation(
        self, op_id: int, *, target_tickets: Iterable[int], claimed_at: Timestamp | None = None
    ) -> bool:
        """Move a ``'pending'`` operation to ``'processing'`` and freeze the tickets it may touch.

        The conditional UPDATE is the claim: of two callers, one gets True.
        ``target_tickets`` is the book at claim time, so "close all" never
        reaches a position opened after the click.
        """
        with self.db.atomic() as db:
            cur = db.execute(
                "UPDATE position_close_operations SET status = 'processing', target_tickets = ?, "
                "claimed_at = ? WHERE id = ? AND status = 'pending'",
                [dumps(sorted(int(t) for t in target_tickets)), self._iso(claimed_at), op_id],
            )
        return cur.rowcount == 1

    @_writes
    def finish_operation(
        self,
        op_id: int,
        status: str,
        *,
        finished_at: Timestamp | None = None,
        error_message: str | None = None,
    ) -> bool:
        """Give a pending/processing operation its final status and totals.

        ``status`` is any final status: ``completed``, ``partially_completed``,
        ``failed``, or ``expired``/``rejected`` for a recorded command that will
        not run (see also :meth:`reject_operation`).

        The totals are computed from its ``close_results`` (realised, from
        deals), never from the pre-close floating profit as the seed did:
        ``positions_closed`` counts results that closed something (``closed``
        or ``partial``), ``positions_failed`` counts ``failed``;
        ``total_profit_closed`` / ``total_loss_closed`` sum the positive /
        (absolute) negative profits of those closes.
        :return: False if the operation is missing or already final.
        """
        if status not in schema.FINAL_STATUSES:
            raise ValueError(f"finish status must be one of {schema.FINAL_STATUSES}, not {status!r}")
        with self.db.atomic() as db:
            cur = db.execute(
                f"""
                UPDATE position_close_operations SET
                    status = :status, finished_at = :at, error_message = :err,
                    {_OP_TOTALS}
                WHERE id = :id AND status IN ('pending', 'processing')
                """,
                {"status": status, "at": self._iso(finished_at), "err": error_message, "id": op_id},
            )
        return cur.rowcount == 1

    @_writes
    def reject_operation(
        self,
        command_id: str | None,
        *,
        error_message: str,
        status: str = "rejected",
        operation_type: str | None = None,
        source: str = "operator",
        requested_by: str | None = None,
        params: Mapping[str, Any] | None = None,
        timestamp: Timestamp | None = None,
        expires_at: Timestamp | None = None,
        file_name: str | None = None,
        at: Timestamp | None = None,
    ) -> int:
        """Record a command that will not run: malformed (``'rejected'``) or too old (``'expired'``).

        If ``command_id`` is already recorded and still ``'pending'``, that row
        is finalised; if it is recorded in any other state the original record
        wins and :class:`DuplicateCommand` is raised. Otherwise a new, already
        final row is written (``command_id`` may be None for a file whose id
        could not be read; ``file_name`` then identifies it). Returns the row id.
        """
        if status not in ("rejected", "expired"):
            raise ValueError(f"reject status must be 'rejected' or 'expired', not {status!r}")
        if source not in schema.SOURCES:
            raise ValueError(f"source must be one of {schema.SOURCES}, not {source!r}")
        now = self._iso(at)
        db = self.db
        with db.atomic():
            if command_id is not None:
                row = db.execute(
                    "SELECT id, status FROM position_close_operations WHERE command_id = ?", [str(command_id)]
                ).fetchone()
                if row is not None:
                    if row[1] != "pending":
                        raise DuplicateCommand(str(command_id), row[1])
                    db.execute(
                        "UPDATE position_close_operations SET status = ?, finished_at = ?, error_message = ? "
                        "WHERE id = ?",
                        [status, now, error_message, row[0]],
                    )
                    return int(row[0])
            cur = db.execute(
                "INSERT INTO position_close_operations (command_id, operation_type, status, source, "
                "requested_by, params, timestamp, created_at, finished_at, expires_at, error_message, "
                "file_name) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    None if command_id is None else str(command_id),
                    operation_type or "unknown",
                    status,
                    source,
                    requested_by,
                    dumps(dict(params or {})),
                    _command_timestamp(timestamp),
                    now,
                    now,
                    iso_or_none(expires_at),
                    error_message,
                    file_name,
                ],
            )
        return int(cur.lastrowid or 0)

    @_writes
    def unfinished_operations(self) -> list[dict[str, Any]]:
        """Operations left ``'pending'`` or ``'processing'`` (a crash), oldest first, each with ``results``.

        The monitor reconciles these on start: a processing one may have closed
        some tickets already, which its results (and the deal history) tell.
        """
        rows = self.db.query(
            "SELECT * FROM position_close_operations WHERE status IN ('pending', 'processing') ORDER BY id"
        )
        ops = [dict(decode_row(r) or {}) for r in rows]
        for op in ops:
            op["results"] = self._results(op["id"])
        return ops

    def _results(self, op_id: int) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT * FROM close_results WHERE operation_id = ? ORDER BY id", [op_id])
        return [dict(decode_row(r) or {}) for r in rows]

    @_writes
    def results(self, op_id: int) -> list[dict[str, Any]]:
        """The recorded per-ticket results of ``op_id``, in the order recorded (as ``Reader.results``)."""
        return self._results(op_id)
