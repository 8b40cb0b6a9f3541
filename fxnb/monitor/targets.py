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


def select_targets(cmd: Command, positions: Iterable[Position], *, server_offset_s: int | None) -> list[int]:
    """The tickets a bulk command means, frozen from one snapshot at claim time.

    A position the terminal says opened after the command was written is never a target: the operator
    who clicked "close all" did not see it (a command can wait in the queue while the terminal is away).
    ``server_offset_s`` turns the terminal's open times into UTC; None (unknown) skips that test.
    """
    out = []
    for p in positions:
        if opened_after(cmd, p, server_offset_s):
            continue
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


def opened_after(cmd: Command, p: Position, server_offset_s: int | None) -> bool:
    """The terminal says ``p`` opened after ``cmd`` was written (its open time has whole seconds only,
    so a position opened in the same second as the click still counts as seen)."""
    if server_offset_s is None or not p.time:
        return False
    return p.time - server_offset_s > cmd.timestamp.timestamp()
