"""``python -m fxnb.bench --quick`` runs end to end and reports every figure with a floor and a ratio.

Times are never asserted (they depend on the machine); only the shape of the report.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

EXPECTED_IDS = {
    *(f"command_latency.{regime}.p{q}" for regime in ("isolated", "back_to_back") for q in (50, 99)),
    "command_latency.diag_claim_flat.p50",
    "command_latency.diag_claim_recursive.p50",
    *(f"poll_cycle.rules_{mode}.n{n}" for mode in ("off", "on") for n in (100, 1000, 10000)),
    "close_all",
    *(f"dashboard.{shape}.{q}" for shape in ("raw", "downsampled")
      for q in ("open_positions", "account", "history_1h_400", "history_1d_400", "history_all_400",
                "operations_50", "heartbeat", "data_version")),
    "monitor_idle.cpu",
    "monitor_idle.rss",
}


def test_quick_bench_reports_every_figure_with_floor_and_ratio(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "fxnb.bench", "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=280, cwd=tmp_path,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    doc = json.loads(out.read_text())
    assert doc["errors"] == {}
    assert doc["meta"]["mode"] == "quick"
    figures = {f["id"]: f for f in doc["figures"]}
    assert set(figures) == EXPECTED_IDS
    for fid, f in figures.items():
        for key in ("value", "floor", "ratio"):
            assert isinstance(f[key], int | float) and math.isfinite(f[key]), (fid, key, f[key])
        assert f["floor"] > 0, fid
        assert f["status"] in ("PASS", "MISS", "INFO"), fid
        assert f["samples"] >= 1 and f["floor_samples"] >= 1, fid
        assert f["floor_what"] and f["unit"], fid
        assert f["label"] in proc.stdout, f"{fid} missing from the printed table"
    targeted = [f for f in figures.values() if f["status"] != "INFO"]
    assert all(f["target"] != "-" for f in targeted)
