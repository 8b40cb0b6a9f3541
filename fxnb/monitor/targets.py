"""Small shared pieces of the monitor: which tickets a command means, state keys, time format."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from fxnb.commands import Command
from fxnb.models import Position

BULK_TYPES = {"profit", "loss", "all"}
PAUSED_KEY = "rules_paused"
DRY_RUN_KEY = "dry_run_fired"


def iso(ts: float) -> str:
    """Epoch seconds as ISO-8601 UTC with a Z."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def select_targets(cmd: Command, positions: Iterable[Position]) -> list[int]:
    """The tickets a bulk command means, frozen from one snapshot at claim time."""
    out = []
    for p in positions:
        if cmd.symbol and p.symbol != cmd.symbol:
            continue
        if cmd.magic is not None and p.magic != cmd.magic:
            continue
        if cmd.side and p.side.value != cmd.side:
            continue
        net = p.profit + p.swap
        if cmd.type == "profit" and not net > 0:
            continue
        if cmd.type == "loss" and not net < 0:
            continue
        out.append(p.ticket)
    return sorted(out)
