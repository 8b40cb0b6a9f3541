"""The one table on stdout and the JSON file beside it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from fxnb.bench.common import Figure


def _num(v: float) -> str:
    if math.isinf(v):
        return "inf"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def table(figures: list[Figure], meta: dict[str, Any]) -> str:
    head = ("figure", "target", "value", "floor", "ratio", "n (floor n)", "status")
    rows = [
        (f.label, f.target, f"{_num(f.value)} {f.unit}", f"{_num(f.floor)} {f.unit}", f"{_num(f.ratio)}x",
         f"{f.samples} ({f.floor_samples})", f.status)
        for f in figures
    ]  # fmt: skip
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    right = {2, 3, 4, 5}

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths,
                                                                                                 strict=True)))

    out = [f"fxnb bench ({meta['mode']}): {meta['finished_at']}, {meta['cpus']} CPUs, "
           f"python {meta['python']}, SQLite {meta['sqlite']}, {meta['duration_s']:.0f} s", line(head),
           "  ".join("-" * w for w in widths)]  # fmt: skip
    group = None
    for f, r in zip(figures, rows, strict=True):
        if f.group != group:
            group = f.group
            out.append(f"[{group}]  floor: {f.floor_what}")
        out.append(line(r))
    misses = [f.label for f in figures if f.status == "MISS"]
    out.append(f"{sum(f.status == 'PASS' for f in figures)} PASS, {len(misses)} MISS, "
               f"{sum(f.status == 'INFO' for f in figures)} INFO (no target); details in {meta['out']}")
    return "\n".join(out)


def write_json(path: Path, figures: list[Figure], meta: dict[str, Any], errors: dict[str, str]) -> None:
    doc = {"meta": meta, "figures": [f.as_dict() for f in figures], "errors": errors}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, allow_nan=False, default=str) + "\n")
    tmp.replace(path)
