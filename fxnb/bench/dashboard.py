"""4. Dashboard refresh queries: what the console reads every second, on a large history.

Two databases, each with 1,000 open positions, a few hundred operations and a
heartbeat, differing in ``profit_monitoring``:

* ``raw``: one-second rows from the start of the year, as many as the time budget
  allows (a year is 31,536,000 rows; the count generated is reported), written by
  one ``INSERT ... SELECT`` over a recursive CTE per million rows;
* ``downsampled``: the shape ``prune_history`` leaves of a year of one-second
  history with ``retention_days: 365``: the last 24 h at 1 s, the 364 days before
  at ``downsample_seconds`` (60 s), i.e. 610,560 rows (``--quick``: the shipped
  30-day retention, 128,160 rows).

Each query runs through ``Reader`` (as the widgets' ``Console`` does) on a warm
connection. Floor: one indexed lookup ``SELECT * FROM profit_monitoring WHERE ts = ?``
(random existing ``ts``) on the same connection.
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fxnb.bench.common import Figure, percentile, progress, summary, time_ms
from fxnb.models import CloseResult, CloseStatus, Snapshot
from fxnb.storage import Reader, Store
from fxnb.storage.bench import ACCOUNT, T0, _book

GROUP = "4 dashboard queries"
FLOOR_WHAT = "one indexed lookup: SELECT * FROM profit_monitoring WHERE ts = ?"
YEAR_S = 365 * 86_400
_CHUNK = 1_000_000

_FILL = """
WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i + 1 < :n)
INSERT INTO profit_monitoring (timestamp, ts, total_positions, total_profit, total_loss, net_profit,
    balance, equity, margin, margin_free, margin_level, currency, login, resolution)
SELECT strftime('%Y-%m-%dT%H:%M:%fZ', :t0 + i * :step, 'unixepoch'), :t0 + i * :step, 1000,
    150.0 + (i % 97), 80.0 + (i % 53), 70.0 + (i % 97) - (i % 53), 10000.0, 10070.0 + (i % 97) - (i % 53),
    2500.0, 7570.0, 402.8, 'USD', 5010042, :res
FROM g
"""


def _populate(path: Path, operations: int) -> None:
    """Positions, operations with results, events and a heartbeat through the Store (the writer's own SQL)."""
    with Store.open(path) as store:
        store.sync_positions(Snapshot.of(ACCOUNT, _book(1_000, 0), T0), server_offset_s=7200)
        for i in range(operations):
            cid = f"bench-op-{i:05d}"
            op = store.create_operation(cid, "single", source="operator", requested_by="bench",
                                        params={"ticket": 1_000_000 + i}, timestamp=T0 + i, created_at=T0 + i)
            store.claim_operation(op, target_tickets=[1_000_000 + i], claimed_at=T0 + i)
            res = CloseResult(1_000_000 + i, CloseStatus.CLOSED, requested_volume=0.1, closed_volume=0.1,
                              price=1.1, profit=3.5, retcode=10009, message="done", deals=(300_000_000 + i,),
                              attempts=1, symbol="SYM1")
            store.add_result(op, res, finished_at=T0 + i)
            store.finish_operation(op, "completed", finished_at=T0 + i)
            if i % 10 == 0:
                store.event("info", "bench", f"event {i}", at=T0 + i)
        store.heartbeat(pid=1, hostname="bench", version="bench", state="running", connected=True,
                        last_poll_ok=True, open_positions=1_000, check_interval=1.0, at=T0)


def _fill(path: Path, segments: list[tuple[float, int, int]], budget_s: float | None) -> tuple[int, float]:
    """Append (start ts, step s, rows) segments to profit_monitoring in chunks; stop at ``budget_s``.

    Bulk-load pragmas (no journal, no sync) are used for this generation only; the file
    is switched back to WAL before it is read. Returns (rows written, seconds).
    """
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    start = time.perf_counter()
    rows = 0
    try:
        for t0, step, count in segments:
            for off in range(0, count, _CHUNK):
                if budget_s is not None and time.perf_counter() - start > budget_s:
                    return rows, time.perf_counter() - start
                n = min(_CHUNK, count - off)
                res = 0 if step == 1 else step
                conn.execute("BEGIN")
                conn.execute(_FILL, {"n": n, "t0": t0 + off * step, "step": step, "res": res})
                conn.execute("COMMIT")
                rows += n
        return rows, time.perf_counter() - start
    finally:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.close()


def _queries(reader: Reader, end_ts: float) -> dict[str, Callable[[], Any]]:
    return {
        "open_positions": reader.open_positions,
        "account": reader.account,
        "history_1h_400": lambda: reader.history(since_ts=end_ts - 3600, max_points=400),
        "history_1d_400": lambda: reader.history(since_ts=end_ts - 86400, max_points=400),
        "history_all_400": lambda: reader.history(max_points=400),
        "operations_50": lambda: reader.operations(last=50),
        "heartbeat": reader.heartbeat,
        "data_version": reader.data_version,
    }


_LABELS = {
    "open_positions": "Reader.open_positions() (1,000 open)",
    "account": "Reader.account()",
    "history_1h_400": "Reader.history(last 1 h, max_points=400)",
    "history_1d_400": "Reader.history(last 24 h, max_points=400)",
    "history_all_400": "Reader.history(everything, max_points=400)",
    "operations_50": "Reader.operations(last=50)",
    "heartbeat": "Reader.heartbeat()",
    "data_version": "Reader.data_version()",
}


def _time_queries(path: Path, first_ts: float, end_ts: float,
                  runs: int) -> tuple[dict[str, list[float]], list[float]]:
    rng = random.Random(3)
    with Reader(path) as reader:
        conn = reader.db.conn
        times = {name: time_ms(fn, runs) for name, fn in _queries(reader, end_ts).items()}
        span = int(end_ts - first_ts)

        def lookup() -> None:
            ts = first_ts + rng.randrange(span // 60) * 60  # on the grid of both shapes
            assert conn.execute("SELECT * FROM profit_monitoring WHERE ts = ?", [ts]).fetchone() is not None

        floor = time_ms(lookup, max(runs, 200))
        checks = {"history_all_400_points": len(reader.history(max_points=400)),
                  "open_positions": len(reader.open_positions())}  # fmt: skip
    assert checks["open_positions"] == 1_000, checks
    return times, floor


def run(tmp: Path, *, quick: bool, history_rows: int | None = None, budget_s: float = 75.0) -> list[Figure]:
    runs = 15 if quick else 60
    ops = 60 if quick else 300
    raw_rows = history_rows or (100_000 if quick else YEAR_S)
    retention_days = 30 if quick else 365
    shapes: dict[str, tuple[list[tuple[float, int, int]], float | None]] = {
        "raw": ([(T0, 1, raw_rows)], None if quick or history_rows else budget_s),
        "downsampled": ([(T0, 60, (retention_days - 1) * 1440),
                         (T0 + (retention_days - 1) * 86_400, 1, 86_400)], None),
    }  # fmt: skip
    figures = []
    for shape, (segments, budget) in shapes.items():
        path = tmp / f"m4_{shape}.db"
        _populate(path, ops)
        wanted = sum(c for _, _, c in segments)
        progress(f"4 dashboard: generating {shape} history ({wanted:,} rows wanted"
                 + (f", {budget:.0f} s budget)" if budget else ")"))
        rows, fill_s = _fill(path, segments, budget)
        last_t0, last_step, _ = segments[-1]
        end_ts = (T0 + rows - 1) if shape == "raw" else last_t0 + (86_400 - 1) * last_step
        progress(f"4 dashboard: {rows:,} rows in {fill_s:.1f} s; timing queries ({runs} runs each)")
        times, floor = _time_queries(path, T0, end_ts, runs)
        size_mb = path.stat().st_size / 1e6
        desc = (f"{rows:,} one-second rows ({rows / 86_400:.1f} days of the year's 365)" if shape == "raw" else
                f"{rows:,} rows: 24 h at 1 s + {retention_days - 1} days at 60 s")
        for name, sample in times.items():
            figures.append(Figure(
                id=f"dashboard.{shape}.{name}", group=GROUP, label=f"{_LABELS[name]} [{shape}]", unit="ms",
                value=statistics.median(sample), floor=statistics.median(floor), floor_what=FLOOR_WHAT,
                samples=len(sample), floor_samples=len(floor), max_value=20,
                extra={"history": desc, "db_mb": round(size_mb, 1), "fill_s": round(fill_s, 1),
                       "query_ms": summary(sample), "floor_ms": summary(floor),
                       "p99_within_target": percentile(sample, 99) <= 20},
            ))  # fmt: skip
    return figures
