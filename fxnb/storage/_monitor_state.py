"""The writer's record of the monitor itself: its heartbeat, its event log, durable rule state.

What an operator (or the next run of the monitor) needs to know about the monitor
rather than about positions: ``monitor_heartbeat`` (one row), ``monitor_events``,
``rule_state``, and the realised P/L the daily loss guard reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fxnb.storage import schema
from fxnb.storage._base import StoreBase, _writes
from fxnb.storage._codec import Timestamp, dumps, iso_or_none, iso_utc, to_epoch

_HEARTBEAT_FIELDS = frozenset(
    {
        "pid",
        "hostname",
        "version",
        "started_at",
        "last_poll_at",
        "last_poll_ok",
        "poll_duration_ms",
        "connected",
        "terminal_trade_allowed",
        "last_error",
        "rules_mode",
        "rules_paused",
        "check_interval",
        "open_positions",
        "queue_depth",
        "account_login",
        "account_currency",
        "state",
    }
)


class MonitorStateMixin(StoreBase):
    """:class:`~fxnb.storage.writer.Store`'s ``monitor_heartbeat``, ``monitor_events`` and ``rule_state`` methods."""

    @_writes
    def realised_since(self, since: Timestamp) -> float:
        """Net realised P/L of everything closed since ``since`` (the daily loss guard's input)."""
        row = self.db.execute(
            schema.REALISED_CTE + "SELECT COALESCE(SUM(profit), 0.0) FROM realised WHERE at >= ?",
            [self._iso(since)],
        ).fetchone()
        return float(row[0])

    @_writes
    def heartbeat(self, *, at: Timestamp | None = None, **fields: Any) -> None:
        """Update the single heartbeat row; fields not given keep their value.

        ``updated_at``/``updated_ts`` are always set, from ``at`` (or an
        ``updated_at`` field, the same thing) or the clock. Fields ending in
        ``_at`` take any :data:`Timestamp`. Unknown field names raise
        ``ValueError`` (a typo must not silently drop health data).
        """
        if "updated_at" in fields:
            given = fields.pop("updated_at")
            at = given if at is None else at
        unknown = set(fields) - _HEARTBEAT_FIELDS
        if unknown:
            raise ValueError(f"unknown heartbeat fields: {', '.join(sorted(unknown))}")
        if fields.get("state") is not None and fields["state"] not in schema.MONITOR_STATES:
            raise ValueError(f"state must be one of {schema.MONITOR_STATES}, not {fields['state']!r}")
        now = to_epoch(self._clock() if at is None else at)
        values: dict[str, Any] = {"id": 1, "updated_at": iso_utc(now), "updated_ts": now}
        for key, value in fields.items():
            values[key] = iso_or_none(value) if key.endswith("_at") else value
        cols = list(values)
        sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c != "id")
        with self.db.atomic() as db:
            db.execute(
                f"INSERT INTO monitor_heartbeat ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) "
                f"ON CONFLICT (id) DO UPDATE SET {sets}",
                list(values.values()),
            )

    @_writes
    def event(
        self,
        level: str,
        kind: str,
        message: str,
        data: Mapping[str, Any] | None = None,
        at: Timestamp | None = None,
    ) -> int:
        """Append to the event log (what an operator reads later); returns the row id."""
        if level not in schema.EVENT_LEVELS:
            raise ValueError(f"level must be one of {schema.EVENT_LEVELS}, not {level!r}")
        with self.db.atomic() as db:
            cur = db.execute(
                "INSERT INTO monitor_events (at, level, kind, message, data) VALUES (?, ?, ?, ?, ?)",
                [self._iso(at), level, kind, message, None if data is None else dumps(dict(data))],
            )
        return int(cur.lastrowid or 0)

    @_writes
    def set_rule_state(self, key: str, value: Any, at: Timestamp | None = None) -> None:
        """Store a JSON value under ``key`` (e.g. ``"rules_paused"``), surviving restarts."""
        with self.db.atomic() as db:
            db.execute(
                "INSERT INTO rule_state (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                [key, dumps(value), self._iso(at)],
            )

    @_writes
    def get_rule_state(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        row = self.db.execute("SELECT value FROM rule_state WHERE key = ?", [key]).fetchone()
        if row is None:
            return default
        return json.loads(row[0])
