"""pandas views over a :class:`~fxnb.storage.reader.Reader`, for notebooks and charts.

Kept apart from the reader so the monitor never imports pandas. Timestamp
columns become timezone-aware UTC ``datetime64`` columns; an empty result still
has the table's columns, so a panel can render an empty table without special cases.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from fxnb.storage.reader import Reader

_TIME_COLUMNS = (
    "timestamp",
    "open_time",
    "first_seen",
    "last_update",
    "closed_at",
    "partial_closed_at",
    "created_at",
    "claimed_at",
    "finished_at",
    "expires_at",
    "at",
)


def _frame(rows: list[dict[str, Any]], columns: Iterable[str], index: str | None = None) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(columns))
    for col in _TIME_COLUMNS:
        if col in df.columns:
            df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
    if index is not None:
        df = df.set_index(index)
    return df


def _table_columns(reader: Reader, table: str) -> list[str]:
    return [c.name for c in reader.db[table].columns]


def positions_df(reader: Reader) -> pd.DataFrame:
    """Open positions indexed by ``ticket``."""
    return _frame(reader.open_positions(), _table_columns(reader, "position_tracking"), index="ticket")


def history_df(
    reader: Reader, since_ts: float | None = None, max_points: int = 2000, until_ts: float | None = None
) -> pd.DataFrame:
    """Account history (see :meth:`Reader.history`) indexed by UTC ``timestamp``, ascending."""
    rows = reader.history(since_ts=since_ts, max_points=max_points, until_ts=until_ts)
    return _frame(rows, _table_columns(reader, "profit_monitoring"), index="timestamp")


def operations_df(reader: Reader, last: int = 50) -> pd.DataFrame:
    """The last operations, newest first, indexed by row ``id``."""
    return _frame(reader.operations(last), _table_columns(reader, "position_close_operations"), index="id")


def events_df(reader: Reader, last: int = 50, *, min_level: str = "info") -> pd.DataFrame:
    """The last events, newest first."""
    return _frame(
        reader.events(last, min_level=min_level), _table_columns(reader, "monitor_events"), index="id"
    )


def realised_by_symbol_df(reader: Reader, since_ts: float | None = None) -> pd.DataFrame:
    """Realised P/L per symbol (``profit``, ``positions``) indexed by ``symbol``."""
    return _frame(reader.realised_by_symbol(since_ts), ("symbol", "profit", "positions"), index="symbol")


def realised_by_day_df(
    reader: Reader, since_ts: float | None = None, *, utc_offset_s: int = 0
) -> pd.DataFrame:
    """Realised P/L per day (``profit``, ``positions``) indexed by ``day`` (a date string)."""
    rows = reader.realised_by_day(since_ts, utc_offset_s=utc_offset_s)
    return _frame(rows, ("day", "profit", "positions"), index="day")
