"""pandas views: UTC datetimes, stable columns even when empty."""

from __future__ import annotations

import pandas as pd
from conftest import T0

from fxnb.storage import Reader, Store, frames


def test_empty_frames_have_columns(reader: Reader) -> None:
    df = frames.positions_df(reader)
    assert df.empty and df.index.name == "ticket" and "volume" in df.columns
    hist = frames.history_df(reader)
    assert hist.empty and "equity" in hist.columns
    assert list(frames.realised_by_day_df(reader).columns) == ["profit", "positions"]


def test_history_df_is_utc_indexed_and_ascending(store: Store, reader: Reader, account) -> None:
    for i in range(5):
        store.append_snapshot(account, [], T0 + i)
    df = frames.history_df(reader)
    assert isinstance(df.index, pd.DatetimeIndex)
    assert str(df.index.tz) == "UTC"
    assert df.index.is_monotonic_increasing
    assert df.index[0] == pd.Timestamp("2026-01-01T00:00:00Z")


def test_positions_and_operations_df(store: Store, reader: Reader, make_position, make_snapshot) -> None:
    store.sync_positions(make_snapshot([make_position(1), make_position(2)]), server_offset_s=0)
    store.create_operation("c1", "all", source="operator", params={"reason": "eod"})
    pos = frames.positions_df(reader)
    assert list(pos.index) == [1, 2]
    assert pos["open_time"].dt.tz is not None
    ops = frames.operations_df(reader)
    assert ops.loc[1, "params"] == {"reason": "eod"}
    store.event("warning", "disconnected", "x")
    assert frames.events_df(reader)["kind"].tolist() == ["disconnected"]
