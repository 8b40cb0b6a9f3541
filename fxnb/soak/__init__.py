"""Soak under faults and the invariants every run must keep (``python -m fxnb.soak --minutes 60``).

``fxnb.soak.invariants`` reads the terminal's deal history and the database and
says, check by check, whether anything was closed twice, closed beyond what was
open, left unrecorded or left unfinished. ``fxnb.soak.driver`` runs a real
monitor with every fault at once and returns a report of those checks.
"""

from __future__ import annotations

from fxnb.soak.driver import Soak, SoakReport, SoakSettings, run_soak
from fxnb.soak.invariants import Check, render_table

__all__ = ["Check", "Soak", "SoakReport", "SoakSettings", "render_table", "run_soak"]
