"""``python -m fxnb.bench [--quick] [--out PATH]``: see ``fxnb.bench``."""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from fxnb.bench import close_all, cmd_latency, dashboard, idle, poll_cycle
from fxnb.bench.common import Figure, progress
from fxnb.bench.report import table, write_json

MEASUREMENTS = ("latency", "poll", "close", "dashboard", "idle")


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fxnb.bench", description="fxnb performance figures beside "
                                "their floors (one table on stdout, the same figures in JSON)")
    p.add_argument("--quick", action="store_true", help="small sizes and few samples (the smoke test); <= 60 s")
    p.add_argument("--out", type=Path, default=Path("bench-results.json"), help="JSON output (default: %(default)s)")
    p.add_argument("--only", default=",".join(MEASUREMENTS),
                   help=f"comma-separated subset of {', '.join(MEASUREMENTS)} (default: all)")
    p.add_argument("--profile", action="store_true",
                   help="also cProfile one poll cycle per size and one close-all; top functions go to the JSON")
    p.add_argument("--history-rows", type=int, default=None,
                   help="one-second history rows for the dashboard (default: a year, cut by --history-budget)")
    p.add_argument("--history-budget", type=float, default=75.0,
                   help="seconds allowed for generating the one-second history (default: %(default)s)")
    p.add_argument("--idle-seconds", type=float, default=None, help="idle window (default 60, --quick 30)")
    p.add_argument("--keep", action="store_true", help="keep the temporary workspaces and print where")
    args = p.parse_args(argv)
    args.only = [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = set(args.only) - set(MEASUREMENTS)
    if unknown:
        p.error(f"unknown measurement(s): {', '.join(sorted(unknown))}")
    return args


def _run_all(tmp: Path, args: argparse.Namespace, figures: list[Figure], errors: dict[str, str]) -> None:
    quick = args.quick

    def attempt(name: str, fn: Callable[[], list[Figure]]) -> None:
        if name not in args.only:
            return
        try:
            figures.extend(fn())
        except Exception as exc:  # noqa: BLE001 - report, carry on with the others, exit non-zero
            errors[name] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
            progress(f"{name} FAILED: {exc}")

    seconds = args.idle_seconds or (30.0 if quick else 60.0)
    runs: list[idle.IdleRun] = []

    def start_idle() -> list[Figure]:
        runs.append(idle.start(tmp, seconds=seconds))
        return []

    try:
        if quick:  # overlap the idle window with the rest to stay within a minute
            attempt("idle", start_idle)
            for r in runs:
                r.overlapped = True
        attempt("latency", lambda: cmd_latency.run(tmp, quick=quick))
        attempt("poll", lambda: poll_cycle.run(tmp, quick=quick, profile=args.profile))
        attempt("close", lambda: close_all.run(tmp, quick=quick, profile=args.profile))
        attempt("dashboard", lambda: dashboard.run(tmp, quick=quick, history_rows=args.history_rows,
                                                   budget_s=args.history_budget))
        if not quick:
            attempt("idle", start_idle)
        if runs:
            attempt("idle", lambda: idle.finish(runs[0]))
    finally:
        for r in runs:
            r.abort()


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    started = time.monotonic()
    figures: list[Figure] = []
    errors: dict[str, str] = {}
    tmp_obj = tempfile.TemporaryDirectory(prefix="fxnb-bench-")
    tmp = Path(tmp_obj.name)
    try:
        _run_all(tmp, args, figures, errors)
    finally:
        if args.keep:
            progress(f"workspaces kept in {tmp}")
        else:
            tmp_obj.cleanup()
    order = {m: i for i, m in enumerate(("1", "2", "3", "4", "5"))}
    figures.sort(key=lambda f: order.get(f.group[:1], 9))
    meta = {
        "mode": "quick" if args.quick else "full", "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 1), "cpus": os.cpu_count(),
        "loadavg_at_end": os.getloadavg(), "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(), "measurements": args.only, "out": str(args.out),
        "stats": "medians and percentiles over repeated samples; n = samples (floor samples)",
    }  # fmt: skip
    write_json(args.out, figures, meta, errors)
    print(table(figures, meta))
    for name, err in errors.items():
        print(f"\n{name} failed:\n{err}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
