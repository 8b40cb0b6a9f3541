"""1. Command latency: a ``single`` close file's arrival to its final row, against a real ``fxnb monitor``.

Arrival is ``time.time()`` read just before ``os.replace`` puts ``cmd_{id}.json`` in
``commands/``. The end is the operation's ``finished_at`` (the monitor's
``time.time()``, stored truncated to the millisecond, read just before the UPDATE
that finalises the row commits), so both ends are read from the same clock and
no polling skew enters the figure. The benchmark also polls the row every 2 ms
and records when it *saw* it final: an upper bound, kept in the JSON.

Two regimes on one 1,000+ position book (prices moving, 1 s polls, rules off):
``isolated`` (each file 0.55-0.7 s after the previous command finished: single
clicks) and ``back_to_back`` (20-120 ms after: an operator closing several tickets
in a row). Each sample also records whether a poll was running when the file
arrived (the monitor has one broker thread) and the time since the previous
command's claim, so the JSON says what the slow samples line up with.

Floor: the same atomic write seen by a watchdog inotify ``Observer`` in this
process, whose handler commits one row to SQLite (WAL, synchronous=NORMAL, as
the Store does); measured from the same pre-rename timestamp to after the commit.
The ``diag`` rows run that watcher with a handler that then claims the file
(renames it into ``processing/``) as the monitor does, watching non-recursively
(the trap: every later event waits 0.5 s) and recursively (as ``fxnb.monitor.watcher``
does, for that reason).
"""

from __future__ import annotations

import os
import queue
import random
import sqlite3
import time
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from fxnb.bench.common import Figure, drop_command, epoch_of, new_id, percentile, progress, summary
from fxnb.storage import Reader
from fxnb.testing import FINAL, MonitorProcess, make_workspace

GROUP = "1 command latency"
FLOOR_WHAT = "atomic write seen by a watchdog inotify Observer + 1 SQLite commit (WAL, synchronous=NORMAL)"


def _wait_book(cfg_db: Path, n: int, timeout: float = 60.0) -> list[int]:
    deadline = time.monotonic() + timeout
    tickets: list[int] = []
    while time.monotonic() < deadline:
        try:
            with Reader(cfg_db) as r:
                tickets = [p["ticket"] for p in r.open_positions()]
        except Exception:  # noqa: BLE001 - the database may not exist yet
            tickets = []
        if len(tickets) >= n:
            return sorted(tickets)
        time.sleep(0.1)
    raise TimeoutError(f"only {len(tickets)} of {n} positions reached the database")


def _wait_final(conn: sqlite3.Connection, cmd_id: str, timeout: float = 30.0) -> tuple[str, str, float]:
    """(status, finished_at, time.time() when seen final), polling every 2 ms."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT status, finished_at FROM position_close_operations WHERE command_id = ?", [cmd_id]
        ).fetchone()
        if row is not None and row[0] in FINAL:
            return row[0], row[1], time.time()
        time.sleep(0.002)
    raise TimeoutError(f"command {cmd_id} not final after {timeout}s")


def _one(conn: sqlite3.Connection, commands: Path, ticket: int) -> dict[str, float | str | None]:
    """One command: status, latency, when the poller saw it, when the monitor claimed it, and how much
    of a poll was still to run when it arrived (None if no poll was running)."""
    cmd_id = new_id("lat")
    arrived = drop_command(commands, cmd_id, {"type": "single", "ticket": ticket})
    status, finished_at, seen_at = _wait_final(conn, cmd_id)
    claimed_at = conn.execute("SELECT claimed_at FROM position_close_operations WHERE command_id = ?",
                              [cmd_id]).fetchone()[0]
    # The poll running when the file arrived (if any) finished before the command ran, on the same
    # thread, so it is the latest heartbeat unless a new poll started in the last few ms.
    started, duration = conn.execute(
        "SELECT last_poll_at, poll_duration_ms FROM monitor_heartbeat WHERE id = 1").fetchone()
    busy = None
    if started is not None and duration is not None:
        end = epoch_of(started) + duration / 1000
        if epoch_of(started) <= arrived < end:
            busy = (end - arrived) * 1000
    return {"status": status, "lat": (epoch_of(finished_at) - arrived) * 1000, "seen": (seen_at - arrived) * 1000,
            "busy": busy, "arrived": arrived, "claimed": epoch_of(claimed_at) if claimed_at else None}


def _measure_monitor(tmp: Path, plan: dict[str, tuple[int, float, float]], book: int, interval: float,
                     rng: random.Random) -> dict[str, dict]:
    """Per regime (commands, min gap, max gap after the previous one completed): the samples."""
    n = sum(count for count, _, _ in plan.values())
    cfg = make_workspace(
        tmp / "m1", sim_positions=book + n, sim_frozen=False, check_interval=interval,
        overrides={"profit_monitor": {"rules_mode": "off"}, "commands": {"rescan_interval": 5}},
    )  # fmt: skip
    out: dict[str, dict] = {}
    with MonitorProcess(cfg) as mon:
        tickets = rng.sample(_wait_book(cfg.paths.database, book + n), n)
        conn = sqlite3.connect(cfg.paths.database.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None)
        prev_claim = None
        try:
            for regime, (count, lo, hi) in plan.items():
                res: dict = {"statuses": {}, "gap_s": [lo, hi], "samples": []}
                for _ in range(count):
                    one = _one(conn, cfg.paths.commands, tickets.pop())
                    res["statuses"][one["status"]] = res["statuses"].get(one["status"], 0) + 1
                    one["since_prev_claim"] = None if prev_claim is None else (one["arrived"] - prev_claim) * 1000
                    prev_claim = one["claimed"]
                    res["samples"].append(one)
                    time.sleep(rng.uniform(lo, hi))
                res["lat"] = [x["lat"] for x in res["samples"]]
                out[regime] = res
            left = conn.execute("SELECT COUNT(*) FROM position_tracking WHERE status = 'open'").fetchone()[0]
        finally:
            conn.close()
        _, status = mon.get("/status")
    out["_info"] = {"open_after": left, "poll_duration_ms": status.get("poll_duration_ms"), "book": book + n}
    return out


def _attribution(samples: list[dict]) -> dict[str, object]:
    """What the latencies line up with: a poll running at arrival (one broker thread), and the time
    since the previous claim (watchdog holds events for 0.5 s after a rename out of commands/)."""
    during = [x for x in samples if x["busy"] is not None]
    clear = [x["lat"] for x in samples if x["busy"] is None]
    out: dict[str, object] = {"arrived_during_a_poll": f"{len(during)} of {len(samples)}"}
    if during:
        out["during_poll"] = [{"latency_ms": round(x["lat"], 1), "poll_left_ms": round(x["busy"], 1)} for x in during]
    if clear:
        out["not_during_poll_latency_ms"] = summary(clear)
    recent = [x for x in samples if x["since_prev_claim"] is not None and x["since_prev_claim"] < 500]
    if recent:
        out["arrived_<500ms_after_previous_claim"] = {
            "count": f"{len(recent)} of {len(samples)}",
            "latency_plus_time_since_previous_claim_ms": summary([x["lat"] + x["since_prev_claim"] for x in recent]),
        }
    out["samples"] = [{"latency_ms": round(x["lat"], 2), "since_previous_claim_ms":
                       None if x["since_prev_claim"] is None else round(x["since_prev_claim"], 1)} for x in samples]
    return out


class _CommitOnArrival(FileSystemEventHandler):
    """Commits one row when ``cmd_*.json`` appears; with ``claim`` also moves it into ``processing/``
    afterwards, as the monitor's claim does (the diagnostic, not the floor)."""

    def __init__(self, root: Path, db: Path, *, claim: bool) -> None:
        self.root = root
        self.claim = claim
        self.conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS seen (name TEXT PRIMARY KEY, at REAL NOT NULL)")
        self.done: queue.Queue[tuple[str, float]] = queue.Queue()

    def _arrived(self, path: str | bytes) -> None:
        p = Path(path.decode() if isinstance(path, bytes) else path)
        if p.parent != self.root or not p.name.startswith("cmd_"):
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("INSERT INTO seen VALUES (?, ?)", [p.name, time.time()])
        self.conn.execute("COMMIT")
        self.done.put((p.name, time.time()))
        if self.claim:
            os.replace(p, self.root / "processing" / p.name)

    def on_moved(self, event: FileSystemEvent) -> None:
        self._arrived(event.dest_path)

    def on_created(self, event: FileSystemEvent) -> None:
        self._arrived(event.src_path)


def _watch_latency(root: Path, n: int, rng: random.Random, *, claim: bool = False, recursive: bool = False,
                   gap: tuple[float, float] = (0.005, 0.03)) -> list[float]:
    """ms from just before the rename to after the watcher thread's commit, ``n`` times."""
    watched = root / "commands"
    (watched / "processing").mkdir(parents=True)
    handler = _CommitOnArrival(watched, root / "floor.db", claim=claim)
    observer = Observer()
    observer.schedule(handler, str(watched), recursive=recursive)
    observer.start()
    out = []
    try:
        time.sleep(0.2)
        for _ in range(n):
            cmd_id = new_id("floor")
            arrived = drop_command(watched, cmd_id, {"type": "single", "ticket": 1})
            name, done = handler.done.get(timeout=10)
            assert name == f"cmd_{cmd_id}.json", name
            out.append((done - arrived) * 1000)
            time.sleep(rng.uniform(*gap))
    finally:
        observer.stop()
        observer.join(5)
        handler.conn.close()
    return out


def run(tmp: Path, *, quick: bool) -> list[Figure]:
    book, interval = 1000, 1.0
    n = 8 if quick else 100
    plan = {
        "isolated": (n, 0.55, 0.7),  # the next command >= 0.55 s after the previous one completed
        "back_to_back": (n // 2 if not quick else n, 0.02, 0.12),  # 20-120 ms after it
    }
    rng = random.Random(7)
    progress(f"1 command latency: single closes on a {book:,}+ position book against a real monitor "
             f"({', '.join(f'{k} x{v[0]}' for k, v in plan.items())})")
    m = _measure_monitor(tmp, plan, book, interval, rng)
    progress("1 command latency: floor (watchdog Observer + one commit) and the watcher diagnostic")
    floor = _watch_latency(tmp / "m1_floor", n, rng)
    diag_n = 5 if quick else 12
    stalled = _watch_latency(tmp / "m1_diag_flat", diag_n, rng, claim=True, gap=(0.05, 0.05))
    paired = _watch_latency(tmp / "m1_diag_rec", diag_n, rng, claim=True, recursive=True, gap=(0.05, 0.05))
    info = m.pop("_info")
    res = time.get_clock_info("time").resolution
    base_extra = {
        "monitor": "real `fxnb monitor` subprocess (watchdog inotify watcher, one broker thread)",
        "book": f"{info['book']:,} open positions at the start, {info['open_after']:,} at the end; prices moving",
        "check_interval_s": interval, "rules_mode": "off", "rescan_interval_s": 5,
        "monitor_poll_duration_ms": info["poll_duration_ms"], "floor_ms": summary(floor),
        "clock": f"time.time() on both sides (resolution {res:g} s); finished_at is stored truncated to 1 ms, "
                 "so each sample reads 0-1 ms low; 'seen_by_poller_ms' (2 ms polling) is an upper bound",
    }  # fmt: skip
    figures = []
    for regime, r in m.items():
        extra = {**base_extra, "regime": regime, "gap_after_previous_s": r["gap_s"], "statuses": r["statuses"],
                 "latency_ms": summary(r["lat"]), "seen_by_poller_ms": summary([x["seen"] for x in r["samples"]]),
                 **_attribution(r["samples"])}  # fmt: skip
        for q, limit in ((50, 10), (99, 50)):
            figures.append(Figure(
                id=f"command_latency.{regime}.p{q}", group=GROUP, unit="ms", floor_what=FLOOR_WHAT,
                label=f"single close {regime.replace('_', '-')}, p{q}", value=percentile(r["lat"], q),
                floor=percentile(floor, q), samples=len(r["lat"]), floor_samples=len(floor), max_value=limit,
                extra=extra,
            ))  # fmt: skip
    why = ("watchdog holds an IN_MOVED_FROM with no IN_MOVED_TO for 0.5 s (InotifyMoveEventGrouper.delay) and "
           "queues every later event behind it; the claim's rename into processing/ (not watched) is one")
    for label, key, sample in (("recursive=False (the trap)", "flat", stalled),
                               ("recursive=True, as the monitor watches", "recursive", paired)):
        figures.append(Figure(
            id=f"command_latency.diag_claim_{key}.p50", group=GROUP, unit="ms", floor_what=FLOOR_WHAT,
            label=f"diag: watcher + claim, {label}, p50", value=percentile(sample, 50),
            floor=percentile(floor, 50), samples=len(sample), floor_samples=len(floor),
            extra={"what": "the floor's watcher, whose handler then renames the file into processing/ like "
                           "CommandDir.claim; next file 50 ms later", "latency_ms": summary(sample), "why": why},
        ))  # fmt: skip
    return figures
