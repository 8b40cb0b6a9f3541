"""2. Poll-cycle cost: ``Engine.poll()`` in-process at 100, 1,000 and 10,000 open positions.

The Engine is built as ``Monitor._open`` builds it (see ``common.open_engine``) on a
workspace from ``make_workspace(sim_positions=N)`` with prices moving. The
simulator's clock is advanced by one second before each cycle, so every cycle
sees new quotes and every row changes (the count is checked and reported),
without waiting a wall-clock second per cycle. Two warm-up cycles are not timed
(first sight of the book, the hourly prune). Rules ``off``, and ``on``: live, evaluated
on every position every cycle, with thresholds no position reaches (so the book
stays at N and no close is mixed into a cycle).

Floor: a bare ``INSERT ... ON CONFLICT DO UPDATE`` executemany of the same N
positions into a ``position_tracking`` table as users see it (the one table of
schema 0001-0003, in a file of its own; WAL, synchronous=NORMAL) in one
transaction, every row's price and profit changed. That is the book written in
the shape it is read, one full row per position. Since schema 0004 the monitor
stores the quote apart (``position_marks``; ``position_tracking`` is a view) and
a poll writes only what changed, so each figure's ``extra`` also holds
``narrow_upsert_ms``: a bare executemany UPDATE of the same N rows' quote
columns in ``position_marks`` (the real schema), the cost of the write alone.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sqlite3
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from fxnb.bench.common import Figure, SimClock, open_engine, progress, summary
from fxnb.models import Position
from fxnb.storage import Store, schema
from fxnb.testing import make_workspace

GROUP = "2 poll cycle"
FLOOR_WHAT = "bare INSERT .. ON CONFLICT DO UPDATE executemany of the same N rows, one transaction"

_FLOOR_UPSERT = """
INSERT INTO position_tracking (ticket, symbol, type, volume, original_volume, open_price, current_price,
    profit, swap, first_seen, last_update)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (ticket) DO UPDATE SET current_price = excluded.current_price, profit = excluded.profit,
    swap = excluded.swap, last_update = excluded.last_update
"""
_INSERT_MARKS = """
INSERT INTO position_marks (ticket, current_price, profit, swap, profit_percent, last_update)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
"""
_UPDATE_MARKS = """
UPDATE position_marks SET current_price = ?2, profit = ?3, swap = ?4, profit_percent = ?5, last_update = ?6
WHERE ticket = ?1
"""


def _timed(obj: Any, name: str, sink: list[tuple[float, Any]], keep: Callable[[Any], Any] | None = None) -> None:
    """Shadow ``obj.name`` with a wrapper that records (seconds, result) of each call.

    ``keep`` reduces the result to what the measurement needs (a count, say): a sink that held
    every 10,000-position snapshot would grow the heap each cycle, and so make the garbage
    collector's full passes (which walk the whole heap) slower than they are in the monitor.
    """
    fn = getattr(obj, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        sink.append((time.perf_counter() - start, result if keep is None else keep(result)))
        return result

    setattr(obj, name, wrapper)


def _rows(positions: tuple[Position, ...], k: int) -> list[tuple[Any, ...]]:
    at = f"2026-01-01T00:00:{k % 60:02d}.000Z"
    return [
        (p.ticket, p.symbol, p.side.value, p.volume, p.volume, p.price_open, p.price_current + k * 1e-5,
         p.profit + k * 0.01, p.swap, at, at)
        for p in positions
    ]  # fmt: skip


def _quotes(positions: tuple[Position, ...], k: int) -> list[tuple[Any, ...]]:
    at = f"2026-01-01T00:00:{k % 60:02d}.000Z"
    return [(p.ticket, p.price_current + k * 1e-5, p.profit + k * 0.01, p.swap, p.profit / 100 + k * 1e-4, at)
            for p in positions]  # fmt: skip


def _timed_batches(path: Path, first: str, then: str, batches: list[list[tuple[Any, ...]]]) -> list[float]:
    """ms per ``executemany(then, batch)`` of ``batches[1:]``, one transaction each, after an untimed
    ``executemany(first, batches[0])`` (the insert) on the same connection, set up as the writer's."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        out = []
        for k, rows in enumerate(batches):
            start = time.perf_counter()
            conn.execute("BEGIN")
            conn.executemany(then if k else first, rows)
            conn.execute("COMMIT")
            if k:
                out.append((time.perf_counter() - start) * 1000)
        return out
    finally:
        conn.close()


def floor_upsert(path: Path, positions: tuple[Position, ...], runs: int) -> list[float]:
    """ms per bulk upsert of ``positions`` (every row changed), ``runs`` times after one insert.

    Into ``position_tracking`` as users read it, one table: the schema up to 0003, indexes included
    (since 0004 the name is a view, which cannot be written).
    """
    db = Database(path)
    try:
        schema.migrations.apply(db, stop_before="0004_position_marks")
    finally:
        db.close()
    batches = [_rows(positions, k) for k in range(runs + 1)]  # built outside the timing
    return _timed_batches(path, _FLOOR_UPSERT, _FLOOR_UPSERT, batches)


def narrow_update(path: Path, positions: tuple[Position, ...], runs: int) -> list[float]:
    """ms per bulk UPDATE of the quote columns of ``positions`` in ``position_marks`` (the real
    schema; every row changed), ``runs`` times after one insert: the poll's usual write, bare."""
    Store.open(path).close()
    return _timed_batches(path, _INSERT_MARKS, _UPDATE_MARKS, [_quotes(positions, k) for k in range(runs + 1)])


def _profile(fn: Callable[[], object], top: int = 12) -> list[str]:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return [line.rstrip() for line in buf.getvalue().splitlines() if "/" in line or "{" in line][:top]


# "on": the rules are evaluated on every position every cycle, but the thresholds (the config's
# maxima) are never reached, so the book stays at N and no close is mixed into the cycle.
RULES = {
    "off": {"rules_mode": "off"},
    "on": {"rules_mode": "live", "min_profit_percent": 1000, "partial_close_threshold": 999},
}


def measure(tmp: Path, n: int, mode: str, cycles: int, *, profile: bool = False) -> dict[str, Any]:
    cfg = make_workspace(tmp / f"m2_{n}_{mode}", sim_positions=n, sim_frozen=False, check_interval=1.0,
                         overrides={"profit_monitor": RULES[mode]})
    clock = SimClock()
    oe = open_engine(cfg, sim_clock=clock)
    engine = oe.engine
    snaps: list[tuple[float, Any]] = []
    syncs: list[tuple[float, Any]] = []
    sim: list[tuple[float, Any]] = []
    try:
        for _ in range(2):  # warm-up: first sight of the book, the hourly prune
            clock.offset += 1.0
            assert engine.poll(), engine.health.last_error
        _timed(engine.broker, "snapshot", snaps, keep=lambda r: len(r.book))
        _timed(engine.store, "sync_positions", syncs, keep=lambda r: len(r.changed))
        _timed(oe.terminal, "positions_get", sim, keep=lambda r: None)
        _timed(oe.terminal, "account_info", sim, keep=lambda r: None)
        rule_ops = engine.store.db.execute(
            "SELECT COUNT(*) FROM position_close_operations WHERE source = 'rule'").fetchone()[0]
        cycle, snap_ms, sync_ms, sim_ms, changed, book = [], [], [], [], [], []
        for _ in range(cycles):
            clock.offset += 1.0
            sim.clear()
            start = time.perf_counter()
            assert engine.poll(), engine.health.last_error
            cycle.append((time.perf_counter() - start) * 1000)
            snap_ms.append(snaps[-1][0] * 1000)
            sync_ms.append(syncs[-1][0] * 1000)
            sim_ms.append(sum(t for t, _ in sim) * 1000)
            changed.append(syncs[-1][1])
            book.append(snaps[-1][1])
        rule_ops = engine.store.db.execute(
            "SELECT COUNT(*) FROM position_close_operations WHERE source = 'rule'").fetchone()[0] - rule_ops
        prof = None
        if profile:
            clock.offset += 1.0
            prof = _profile(engine.poll)
        positions = engine.broker.snapshot().positions  # the book the floor writes
    finally:
        oe.close()
    return {"cycle": cycle, "snapshot": snap_ms, "sync": sync_ms, "sim": sim_ms, "changed": changed, "book": book,
            "rule_ops": rule_ops, "positions": positions, "profile": prof}  # fmt: skip


def run(tmp: Path, *, quick: bool, profile: bool = False) -> list[Figure]:
    sizes = (100, 1_000, 10_000)
    cycles = 3 if quick else 12
    figures = []
    for n in sizes:
        for mode in RULES:
            progress(f"2 poll cycle: {n:,} positions, rules {mode}, {cycles} cycles")
            m = measure(tmp, n, mode, cycles, profile=profile)
            floor = floor_upsert(tmp / f"m2_floor_{n}_{mode}.db", m["positions"], cycles)
            narrow = narrow_update(tmp / f"m2_narrow_{n}_{mode}.db", m["positions"], cycles)
            rest = [c - a - b for c, a, b in zip(m["cycle"], m["snapshot"], m["sync"], strict=True)]
            extra = {
                "cycle_ms": summary(m["cycle"]), "floor_ms": summary(floor), "narrow_upsert_ms": summary(narrow),
                "narrow_upsert_what": "bare executemany UPDATE of the same N rows' quote columns in "
                                      "position_marks, one transaction",
                "breakdown_median_ms": {
                    "broker.snapshot (simulator + adapter)": round(statistics.median(m["snapshot"]), 3),
                    "  of which SimTerminal.positions_get + account_info": round(statistics.median(m["sim"]), 3),
                    "store.sync_positions": round(statistics.median(m["sync"]), 3),
                    "rest (append_snapshot, heartbeat, rules)": round(statistics.median(rest), 3),
                },
                "rows_changed_per_cycle": [min(m["changed"]), max(m["changed"])],
                "open_positions": [min(m["book"]), max(m["book"])],
                "rule_operations_during_timed_cycles": m["rule_ops"],
                "how": "in-process Engine.poll(); simulator clock +1 s per cycle so prices move",
                "rules": RULES[mode],
            }  # fmt: skip
            if m["profile"]:
                extra["profile_top_tottime"] = m["profile"]
            figures.append(Figure(
                id=f"poll_cycle.rules_{mode}.n{n}", group=GROUP, label=f"Engine.poll() {n:,} open, rules {mode}",
                unit="ms", value=statistics.median(m["cycle"]), floor=statistics.median(floor),
                floor_what=FLOOR_WHAT, samples=len(m["cycle"]), floor_samples=len(floor),
                max_value=50 if n == 10_000 else None, max_ratio=3, extra=extra,
            ))  # fmt: skip
    return figures
