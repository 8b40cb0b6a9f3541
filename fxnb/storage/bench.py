"""Timings of the storage hot paths: ``python -m fxnb.storage.bench [--history-rows N]``.

Not a test (timings depend on the machine, so nothing asserts them). It
prints the median of several runs for: syncing 1k/10k positions (first sight,
every row changed, nothing changed), reading a thinned chart history from N
one-second rows, and one bounded prune step over them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fxnb.models import Account, Position, Side, Snapshot
from fxnb.storage import Reader, Store

T0 = 1_767_225_600.0
ACCOUNT = Account(1, "USD", 10_000.0, 10_000.0, 0.0, 0.0, 10_000.0, 0.0)


def _book(n: int, tick: int) -> tuple[Position, ...]:
    return tuple(
        Position(
            ticket=1_000_000 + i,
            symbol=f"SYM{i % 40}",
            side=Side.BUY if i % 2 else Side.SELL,
            volume=0.1 + (i % 10) / 10,
            price_open=1.1,
            price_current=1.1 + tick * 1e-5,
            profit=float((i * 7 + tick) % 200 - 100),
            swap=-0.5,
            magic=770077,
            time=int(T0) - i,
        )
        for i in range(n)
    )


def _median_ms(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def bench_sync(tmp: Path, n: int, polls: int = 20) -> dict[str, float]:
    """ms for the first sync of ``n`` positions (all inserted), then ``polls`` consecutive syncs where
    every position moved (median and max, WAL checkpoints included), then syncs where nothing moved."""
    with Store.open(tmp / f"sync_{n}.db") as store:
        start = time.perf_counter()
        store.sync_positions(Snapshot.of(ACCOUNT, _book(n, 0), T0), server_offset_s=7200)
        insert = (time.perf_counter() - start) * 1000
        moved = []
        for tick in range(1, polls + 1):
            book = _book(n, tick)  # built outside the timing
            start = time.perf_counter()
            res = store.sync_positions(Snapshot.of(ACCOUNT, book, T0 + tick), server_offset_s=7200)
            moved.append((time.perf_counter() - start) * 1000)
            assert len(res.changed) == n
        snap = Snapshot.of(ACCOUNT, book, T0 + polls + 1)
        unchanged = _median_ms(lambda: store.sync_positions(snap, server_offset_s=7200), 5)
    return {
        "insert": insert,
        "moved_median": statistics.median(moved),
        "moved_max": max(moved),
        "unchanged": unchanged,
    }


def bench_history(tmp: Path, rows: int) -> dict[str, float]:
    """Fill ``rows`` one-second snapshots, then time reads and one prune step.

    The fill bypasses ``append_snapshot`` (one transaction per row would take
    minutes for a million rows); it writes the same columns.
    """
    path = tmp / "history.db"
    with Store.open(path) as store:
        start = time.perf_counter()
        batch = 100_000
        for offset in range(0, rows, batch):
            with store.db.atomic() as db:
                db.conn.executemany(
                    "INSERT INTO profit_monitoring (timestamp, ts, total_positions, total_profit, "
                    "total_loss, net_profit, balance, equity, margin, margin_free, margin_level, currency, "
                    "resolution) "
                    "VALUES ('', ?, 0, 0, 0, 0, 10000, ?, 0, 0, 0, 'USD', 0)",
                    ((T0 + i, 10_000.0 + i % 500) for i in range(offset, min(rows, offset + batch))),
                )
        fill_s = time.perf_counter() - start
        with Reader(path) as reader:
            out = {
                "fill_s": fill_s,
                "history_2000_ms": _median_ms(lambda: reader.history(max_points=2000), 5),
                "history_500_last_day_ms": _median_ms(
                    lambda: reader.history(since_ts=T0 + rows - 86400, max_points=500), 5
                ),
                "account_ms": _median_ms(reader.account, 20),
            }
        now = T0 + rows + 86400  # everything older than the full-resolution window
        start = time.perf_counter()
        res = store.prune_history(
            now=now, retention_days=3650, full_resolution_hours=24, downsample_seconds=60, max_rows=100_000
        )
        out["prune_step_ms"] = (time.perf_counter() - start) * 1000
        out["prune_step_deleted"] = res.downsampled
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for n in (1_000, 10_000):
            t = bench_sync(tmp, n)
            print(
                f"sync_positions {n:>6}: first sight {t['insert']:.1f} ms; all moved median "
                f"{t['moved_median']:.1f} ms (max {t['moved_max']:.1f}); "
                f"unchanged {t['unchanged']:.1f} ms"
            )
        h = bench_history(tmp, args.history_rows)
        print(
            f"history on {args.history_rows:,} rows (filled in {h['fill_s']:.1f} s): "
            f"history(max_points=2000) {h['history_2000_ms']:.1f} ms, "
            f"last day at 500 points {h['history_500_last_day_ms']:.1f} ms, "
            f"account() {h['account_ms']:.2f} ms"
        )
        print(
            f"prune_history one step (max_rows=100k): {h['prune_step_ms']:.0f} ms, "
            f"{h['prune_step_deleted']:,} rows"
        )


if __name__ == "__main__":
    main()
