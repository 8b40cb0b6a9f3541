"""One dashboard-like reader process: loops over ``Reader`` calls and checks what it sees is whole.

    python _reader_proc.py DB_PATH SECONDS OUT_JSON

Writes ``{"ops": n, "errors": {...}, "locked": n, "inconsistent": [...], "samples": {...}}`` to OUT_JSON.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import Counter
from datetime import datetime
from typing import Any

from fxnb.errors import StorageError
from fxnb.storage import Reader

FINAL = {"completed", "partially_completed", "failed", "expired", "rejected"}
CLOSED = ("closed", "partial")


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def check_operation(op: dict[str, Any]) -> list[str]:
    """What must hold for one operation read in one transaction with its results."""
    bad = []
    status, results = op["status"], op["results"]
    targets = op.get("target_tickets")
    if (status in FINAL) != (op.get("finished_at") is not None):
        bad.append(f"{status} with finished_at={op.get('finished_at')}")
    if status == "processing" and not op.get("claimed_at"):
        bad.append("processing without claimed_at")
    if status in FINAL:
        closed = sum(r["status"] in CLOSED for r in results)
        failed = sum(r["status"] == "failed" for r in results)
        if op["positions_closed"] != closed or op["positions_failed"] != failed:
            bad.append(f"totals {op['positions_closed']}/{op['positions_failed']} vs results {closed}/{failed}")
        gain = sum(r["profit"] for r in results if r["status"] in CLOSED and r["profit"] > 0)
        if not math.isclose(op["total_profit_closed"], gain, abs_tol=1e-6):
            bad.append(f"total_profit_closed {op['total_profit_closed']} vs results {gain}")
    if status in ("completed", "partially_completed") and targets is not None and len(results) != len(targets):
        bad.append(f"{status} with {len(results)} results for {len(targets)} targets")
    if targets is not None and any(r["ticket"] not in targets for r in results):
        bad.append("a result for a ticket outside the targets")
    return [f"operation {op.get('command_id')}: {b}" for b in bad]


def check_heartbeat(hb: dict[str, Any] | None) -> list[str]:
    if hb is None:
        return []
    bad = []
    if abs(_epoch(hb["updated_at"]) - hb["updated_ts"]) > 0.002:
        bad.append(f"updated_at {hb['updated_at']} vs updated_ts {hb['updated_ts']}")
    if hb["state"] == "running" and hb["connected"] is not True:
        bad.append("running but not connected")
    if hb["state"] == "reconnecting" and hb["connected"] is not False:
        bad.append("reconnecting but connected")
    return [f"heartbeat: {b}" for b in bad]


def check_positions(rows: list[dict[str, Any]]) -> list[str]:
    bad = []
    tickets = [r["ticket"] for r in rows]
    if len(tickets) != len(set(tickets)):
        bad.append("a ticket listed twice")
    for r in rows:
        if r["status"] != "open" or r["closed_at"] is not None or not r["volume"] > 0:
            bad.append(f"position {r['ticket']}: status {r['status']} closed_at {r['closed_at']} vol {r['volume']}")
    return bad


def check_account(acct: dict[str, Any] | None, history: list[dict[str, Any]]) -> list[str]:
    bad = []
    if acct is not None and not math.isclose(acct["net_profit"], acct["total_profit"] - acct["total_loss"],
                                             abs_tol=1e-6):
        bad.append(f"account row {acct['id']}: net != profit - loss")
    ts = [h["ts"] for h in history]
    if ts != sorted(ts):
        bad.append("history not in time order")
    return bad


def one_round(reader: Reader, counts: Counter[str], inconsistent: list[str]) -> None:
    found: list[str] = []
    found += check_positions(reader.open_positions())
    found += check_account(reader.account(), reader.history(since_ts=time.time() - 30, max_points=100))
    ops = reader.operations(last=15)
    for op in ops:
        if (op["status"] in FINAL) != (op["finished_at"] is not None):
            found.append(f"list: operation {op['command_id']} {op['status']} finished_at {op['finished_at']}")
    for op in ops[:4]:
        if op["command_id"] is not None:
            full = reader.operation(op["command_id"])
            if full is not None:
                found += check_operation(full)
                counts["operations checked"] += 1
    found += check_heartbeat(reader.heartbeat())
    reader.data_version()
    counts["reader calls"] += 6 + min(4, len(ops))
    inconsistent.extend(found)


def main(db: str, seconds: float, out: str) -> None:
    counts: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    inconsistent: list[str] = []
    deadline = time.monotonic() + seconds
    reader = Reader(db)
    rounds = 0
    while time.monotonic() < deadline:
        rounds += 1
        if rounds % 50 == 0:  # now and then a fresh connection, as a CLI call or a new kernel would
            reader.close()
            reader = Reader(db)
        try:
            one_round(reader, counts, inconsistent)
        except StorageError as exc:
            errors["database is locked" if "locked" in str(exc) else f"{type(exc).__name__}: {exc}"[:120]] += 1
    reader.close()
    with open(out, "w", encoding="utf-8") as fh:
        json.dump({"counts": counts, "errors": errors, "inconsistent": inconsistent[:50],
                   "n_inconsistent": len(inconsistent), "rounds": rounds}, fh)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), sys.argv[3])
