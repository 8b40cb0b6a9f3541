"""``python -m fxnb.soak [--minutes M] [--dir D] [--seed S]``: run a soak, print the invariant table.

Exit status 0 when every invariant held, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from fxnb.soak.driver import SoakSettings, run_soak


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fxnb.soak", description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=2.0, help="how long to drive the monitor (default 2)")
    p.add_argument("--dir", type=Path, default=None, help="workspace directory (default: a new temp dir)")
    p.add_argument("--seed", type=int, default=SoakSettings.seed)
    p.add_argument("--rss-growth-mb", type=float, default=SoakSettings.rss_growth_limit_mb)
    args = p.parse_args(argv)
    directory = args.dir or Path(tempfile.mkdtemp(prefix="fxnb-soak-")) / "ws"
    settings = SoakSettings(minutes=args.minutes, seed=args.seed, rss_growth_limit_mb=args.rss_growth_mb)
    print(f"soak: {args.minutes:g} min in {directory}", flush=True)
    report = run_soak(directory, settings, echo=lambda m: print(m, flush=True))
    print(report.table())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
