"""profit_monitoring: snapshots, retention, downsampling and thinned history for charts."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import T0
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fxnb.models import Account
from fxnb.storage import Reader, Store

DAY = 86400.0


def fill(store: Store, times: list[float], equity: float | None = None) -> None:
    """Insert raw rows directly, in one transaction (append_snapshot is tested separately)."""
    with store.db.atomic() as db:
        db.conn.executemany(
            "INSERT INTO profit_monitoring (timestamp, ts, total_positions, total_profit, total_loss, "
            "net_profit, balance, equity, margin, margin_free, margin_level, currency, resolution) "
            "VALUES ('', ?, 0, 0, 0, 0, 0, ?, 0, 0, 0, 'USD', 0)",
            [(t, t if equity is None else equity) for t in times],
        )


def rows(store: Store) -> list[dict]:
    return [
        dict(r)
        for r in store.db.query("SELECT id, ts, equity, resolution FROM profit_monitoring ORDER BY ts")
    ]


def test_append_snapshot_splits_winners_and_losers(store: Store, account: Account, make_position) -> None:
    positions = [
        make_position(1, profit=100.0, swap=-5.0),
        make_position(2, profit=-40.0, swap=-2.0),
        make_position(3, profit=3.0, swap=-4.0),  # a "winner" that is a net loss after swap
    ]
    row_id = store.append_snapshot(account, positions, T0 + 0.25)
    r = dict(store.db["profit_monitoring"].get(row_id))
    assert r["timestamp"] == "2026-01-01T00:00:00.250Z" and r["ts"] == T0 + 0.25
    assert r["total_positions"] == 3
    assert r["total_profit"] == pytest.approx(95.0)
    assert r["total_loss"] == pytest.approx(43.0)
    assert r["net_profit"] == pytest.approx(52.0)
    assert (r["balance"], r["equity"], r["margin"], r["margin_free"], r["margin_level"]) == (
        10_000.0, 10_050.0, 500.0, 9_550.0, 2010.0
    )  # fmt: skip
    assert (r["currency"], r["login"], r["resolution"]) == ("EUR", 5551234, 0)


def test_append_snapshot_with_an_empty_book(store: Store, account: Account) -> None:
    r = dict(store.db["profit_monitoring"].get(store.append_snapshot(account, [], T0)))
    assert (r["total_positions"], r["total_profit"], r["total_loss"], r["net_profit"]) == (0, 0.0, 0.0, 0.0)


def test_prune_keeps_the_last_row_of_each_bucket_and_recent_rows_raw(store: Store) -> None:
    now = T0 + 2 * DAY
    old = [T0 + i for i in range(0, 600, 7)]  # 2 days old, 7-second spacing, ten minutes
    recent = [now - 3600 + i for i in range(0, 100, 5)]  # within full resolution
    fill(store, old + recent)
    result = store.prune_history(now=now, retention_days=30, full_resolution_hours=24, downsample_seconds=60)
    assert result.done and result.expired == 0
    kept = rows(store)
    kept_old = [r for r in kept if r["ts"] < now - DAY]
    expected = {}
    for t in old:
        expected[int(t // 60)] = t  # last one per minute wins
    assert [r["ts"] for r in kept_old] == sorted(expected.values())
    assert all(r["resolution"] == 60 for r in kept_old)
    assert [r["ts"] for r in kept if r["ts"] >= now - DAY] == recent
    assert all(r["resolution"] == 0 for r in kept if r["ts"] >= now - DAY)
    assert result.downsampled == len(old) - len(expected)


def test_prune_deletes_beyond_retention(store: Store, clock) -> None:
    now = T0 + 40 * DAY
    fill(store, [T0 + i * 3600 for i in range(40 * 24)])
    store.event("info", "old", "forty days ago", at=T0)
    store.event("info", "new", "now", at=now)
    result = store.prune_history(now=now, retention_days=30, full_resolution_hours=24, downsample_seconds=60)
    assert result.done
    assert result.expired == 10 * 24
    assert result.events == 1
    assert min(r["ts"] for r in rows(store)) >= now - 30 * DAY
    assert [e["kind"] for e in store.db.query("SELECT kind FROM monitor_events")] == ["new"]


def test_prune_is_bounded_and_resumable(store: Store) -> None:
    now = T0 + 3 * DAY
    fill(store, [T0 + i for i in range(5000)])
    results = []
    for _ in range(20):
        results.append(
            store.prune_history(
                now=now, retention_days=30, full_resolution_hours=24, downsample_seconds=60, max_rows=1000
            )
        )
        if results[-1].done:
            break
    assert not results[0].done
    assert results[-1].done
    assert all(r.downsampled <= 1000 for r in results)
    assert [r["ts"] for r in rows(store)] == [T0 + m * 60 + 59 for m in range(5000 // 60)] + [T0 + 4999]


def test_prune_twice_is_a_no_op(store: Store) -> None:
    now = T0 + 2 * DAY
    fill(store, [T0 + i for i in range(0, 3000, 3)])
    store.prune_history(now=now, retention_days=30, full_resolution_hours=24, downsample_seconds=60)
    before = rows(store)
    again = store.prune_history(
        now=now + 10, retention_days=30, full_resolution_hours=24, downsample_seconds=60
    )
    assert (again.expired, again.downsampled, again.done) == (0, 0, True)
    assert rows(store) == before


def full_scans(db, statements: list[tuple[str, object]]) -> list[str]:
    """Plan lines of ``statements`` that walk profit_monitoring instead of seeking in an index."""
    bad = []
    for sql, params in statements:
        keyword = sql.split(None, 1)[0].upper()
        if "profit_monitoring" not in sql or keyword not in {"SELECT", "WITH", "DELETE", "UPDATE"}:
            continue
        for line in db.execute("EXPLAIN QUERY PLAN " + sql, params or []).fetchall():
            if line[3].startswith("SCAN profit_monitoring") or line[3].startswith("SCAN pm"):
                bad.append(f"{line[3]}  <-  {' '.join(sql.split())[:120]}")
    return bad


def test_prune_queries_seek_on_the_ts_indexes(store: Store) -> None:
    """A year of 1-second rows is ~31M: every prune statement must be an index search, never a scan."""
    fill(store, [T0 + i for i in range(0, 5000, 2)])
    traced: list[tuple[str, object]] = []
    with store.db.tracer(lambda sql, params: traced.append((sql, params))):
        store.prune_history(
            now=T0 + 2 * DAY, retention_days=30, full_resolution_hours=24, downsample_seconds=60
        )
        store.prune_history(
            now=T0 + 40 * DAY, retention_days=30, full_resolution_hours=24, downsample_seconds=60
        )
    assert any("ROW_NUMBER" in sql for sql, _ in traced)
    assert full_scans(store.db, traced) == []


def test_history_queries_seek_on_the_ts_index(store: Store, db_path: Path) -> None:
    fill(store, [T0 + i for i in range(5000)])
    traced: list[tuple[str, object]] = []
    with Reader(db_path) as reader, reader.db.tracer(lambda sql, params: traced.append((sql, params))):
        assert len(reader.history(max_points=100)) == 100
        assert len(reader.history(since_ts=T0 + 4000, max_points=10)) == 10
        full_scans_found = full_scans(reader.db, traced)
    assert any("RECURSIVE" in sql for sql, _ in traced)
    assert full_scans_found == []


@pytest.mark.parametrize("max_points", [1, 7, 100])
def test_history_is_thinned_ascending_and_bounded(store: Store, db_path: Path, max_points: int) -> None:
    fill(store, [T0 + i for i in range(1000)])
    with Reader(db_path) as reader:
        hist = reader.history(max_points=max_points)
    ts = [r["ts"] for r in hist]
    assert 1 <= len(ts) <= max_points
    assert ts == sorted(ts) and len(set(ts)) == len(ts)
    assert ts[-1] == T0 + 999  # the latest value is always shown


def test_history_returns_everything_when_small(store: Store, db_path: Path) -> None:
    fill(store, [T0 + i * 10 for i in range(50)])
    with Reader(db_path) as reader:
        assert [r["ts"] for r in reader.history(max_points=50)] == [T0 + i * 10 for i in range(50)]
        assert [r["ts"] for r in reader.history(since_ts=T0 + 400)] == [T0 + i * 10 for i in range(40, 50)]
        assert [r["ts"] for r in reader.history(since_ts=T0 + 100, until_ts=T0 + 120)] == [
            T0 + 100,
            T0 + 110,
            T0 + 120,
        ]
        assert reader.history(since_ts=T0 + 10_000) == []
        with pytest.raises(ValueError):
            reader.history(max_points=0)


def test_history_thinning_is_even_in_time(store: Store, db_path: Path) -> None:
    # A dense hour followed by a sparse day: buckets follow time, not row count.
    fill(store, [T0 + i for i in range(3600)] + [T0 + 3600 + i * 600 for i in range(1, 145)])
    with Reader(db_path) as reader:
        hist = reader.history(max_points=25)
    gaps = [b["ts"] - a["ts"] for a, b in zip(hist, hist[1:], strict=False)]
    span = hist[-1]["ts"] - T0
    assert len(hist) <= 25
    assert max(gaps) <= 2 * span / 25 + 600


def test_history_on_empty_table(reader: Reader) -> None:
    assert reader.history() == []
    assert reader.account() is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    offsets=st.lists(st.floats(min_value=0, max_value=6 * 3600, allow_nan=False), min_size=1, max_size=300),
    ds=st.sampled_from([1, 7, 60, 300]),
    steps=st.lists(st.floats(min_value=0, max_value=3 * 3600), min_size=1, max_size=4),
    max_rows=st.integers(min_value=1, max_value=500),
)
def test_prune_never_leaves_two_rows_in_a_downsampled_bucket(
    tmp_path_factory, offsets: list[float], ds: int, steps: list[float], max_rows: int
) -> None:
    """Property: after any sequence of prunes (moving ``now``, small budgets), the downsampled
    range has at most one row per bucket, each the last of its bucket, and recent rows are untouched."""
    path = tmp_path_factory.mktemp("prop") / "p.db"
    with Store.open(path, clock=lambda: T0) as store:
        times = sorted(T0 + o for o in offsets)
        fill(store, times)
        now = T0 + 2 * 3600
        for step in steps:
            now += step
            for _ in range(1000):
                if store.prune_history(
                    now=now,
                    retention_days=1,
                    full_resolution_hours=1,
                    downsample_seconds=ds,
                    max_rows=max_rows,
                ).done:
                    break
            full_cut = ((now - 3600) // ds) * ds
            kept = rows(store)
            buckets = [int(r["ts"] // ds) for r in kept if r["ts"] < full_cut]
            assert len(buckets) == len(set(buckets))
            expected_last = {}
            for t in times:
                if t < full_cut:
                    expected_last[int(t // ds)] = t
            assert sorted(r["ts"] for r in kept if r["ts"] < full_cut) == sorted(expected_last.values())
            assert [r["ts"] for r in kept if r["ts"] >= full_cut] == [t for t in times if t >= full_cut]
