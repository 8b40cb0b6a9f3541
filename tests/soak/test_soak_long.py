"""The hour-long soak (``make soak``): the short soak's fault mix, repeated every two minutes for an hour.

Skipped unless asked for with ``--soak-minutes=N`` or ``-m slow``. The table is
printed and written to ``soak-report.txt`` in the test's temp directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fxnb.soak import SoakSettings, run_soak


@pytest.mark.slow
def test_long_soak(tmp_path: Path, long_soak_minutes: float) -> None:
    report = run_soak(tmp_path / "ws", SoakSettings(minutes=long_soak_minutes), echo=print)
    table = report.table()
    print(table)
    (tmp_path / "soak-report.txt").write_text(table)
    assert report.ok, f"invariants broken after {long_soak_minutes:g} min:\n{table}\n\n{report.log_tail}"
    assert report.figures["operator commands"] >= long_soak_minutes * 30, table
