"""Five dashboard-like reader processes against a monitor that writes ten times a second.

The monitor polls every 0.1 s with the simulator's trader opening positions and live rules closing
them, while this test drops a command file every ~0.2 s. Each reader (``_reader_proc.py``) loops over
``Reader.open_positions / account / history / operations / operation / heartbeat / data_version`` and
checks that what one read returns is whole: an operation's totals equal its results, a final
operation has ``finished_at`` and a result per target, heartbeat fields agree, positions are open.
No reader may ever get "database is locked".
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _reader_proc as rp
import pytest
from _hardening_util import HERE, query, seed_doc, wait_until, write_command

from fxnb.testing import MonitorProcess, make_workspace, update_config

READERS = 5
SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD", "EURJPY")


def _run(tmp_path: Path, seconds: float) -> dict[str, Any]:
    cfg = make_workspace(tmp_path / "ws", sim_positions=30, sim_frozen=False, check_interval=0.1, overrides={
        "profit_monitor": {"rules_mode": "live", "min_profit_percent": 0.25, "partial_close_threshold": 0.08},
        "broker": {"sim": {"volatility": 40.0}},
    })
    cfg = update_config(cfg, {"broker": {"sim": {"trader": {"enabled": True, "interval": 0.15,
                                                            "max_positions": 50}}}})
    rng = random.Random(99)
    with MonitorProcess(cfg) as mon:
        wait_until(lambda: query(cfg, "SELECT 1 FROM profit_monitoring LIMIT 1"), 20, "the first poll")
        polls0 = query(cfg, "SELECT COUNT(*) AS n FROM profit_monitoring")[0]["n"]
        ops0 = query(cfg, "SELECT COUNT(*) AS n FROM position_close_operations")[0]["n"]
        outs = [tmp_path / f"reader{i}.json" for i in range(READERS)]
        procs = [subprocess.Popen([sys.executable, str(HERE / "_reader_proc.py"), str(cfg.paths.database),
                                   str(seconds), str(out)]) for out in outs]
        t0 = time.monotonic()
        sent = 0
        while any(p.poll() is None for p in procs) and time.monotonic() - t0 < seconds + 60:
            if time.monotonic() - t0 < seconds:  # a command stream on top of the polls
                sent += 1
                tickets = [r["ticket"] for r in query(cfg, "SELECT ticket FROM position_tracking "
                                                           "WHERE status = 'open' LIMIT 40")] or [1]
                kind = rng.choice(["single", "partial", "profit", "loss", "all"])
                if kind == "single":
                    doc = seed_doc(f"r{sent}", kind, ticket=rng.choice(tickets))
                elif kind == "partial":
                    doc = seed_doc(f"r{sent}", kind, ticket=rng.choice(tickets), percent=rng.choice([25, 50]))
                else:
                    doc = seed_doc(f"r{sent}", kind, symbol=rng.choice(SYMBOLS))
                write_command(cfg, f"cmd_r{sent}.json", doc)
            time.sleep(0.2)
        codes = [p.wait(30) for p in procs]
        elapsed = time.monotonic() - t0
        polls = query(cfg, "SELECT COUNT(*) AS n FROM profit_monitoring")[0]["n"] - polls0
        ops = query(cfg, "SELECT COUNT(*) AS n FROM position_close_operations")[0]["n"] - ops0
        alive = mon.get("/healthz")[0]
    results = [json.loads(o.read_text()) for o in outs]
    return {"codes": codes, "results": results, "polls": polls, "ops": ops, "sent": sent, "elapsed": elapsed,
            "health": alive}


def _check(run: dict[str, Any], seconds: float) -> None:
    res = run["results"]
    calls = sum(r["counts"].get("reader calls", 0) for r in res)
    checked = sum(r["counts"].get("operations checked", 0) for r in res)
    locked = sum(r["errors"].get("database is locked", 0) for r in res)
    print(f"{READERS} readers, {seconds:g}s: {calls} reader calls ({checked} operations checked whole), "
          f"{locked} 'database is locked', errors {[r['errors'] for r in res]}; monitor wrote {run['polls']} polls "
          f"({run['polls'] / run['elapsed']:.1f}/s) and {run['ops']} operations ({run['sent']} commands sent)")
    assert run["codes"] == [0] * READERS
    assert locked == 0
    assert all(not r["errors"] for r in res), [r["errors"] for r in res]
    assert all(r["n_inconsistent"] == 0 for r in res), [r["inconsistent"][:5] for r in res]
    assert run["health"] == 200
    # the test means something only if both sides were busy
    assert run["polls"] >= seconds * 4, "the monitor did not write several times a second"
    assert run["ops"] >= seconds * 2 and checked >= 100 and calls >= READERS * 200


def test_five_readers_while_the_monitor_writes(tmp_path: Path) -> None:
    seconds = 15.0
    _check(_run(tmp_path, seconds), seconds)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_five_readers_for_a_minute(tmp_path: Path) -> None:
    seconds = 60.0
    _check(_run(tmp_path, seconds), seconds)


def test_the_reader_checks_do_catch_a_half_written_state() -> None:
    """The checks above must be able to fail: feed them states a torn write would produce."""
    op = {"command_id": "x", "status": "completed", "finished_at": None, "claimed_at": "t", "target_tickets": [1, 2],
          "positions_closed": 2, "positions_failed": 0, "total_profit_closed": 5.0,
          "results": [{"ticket": 1, "status": "closed", "profit": 5.0}]}
    problems = rp.check_operation(op)
    assert any("finished_at" in p for p in problems) and any("1 results for 2 targets" in p for p in problems)
    assert any("totals 2/0 vs results 1/0" in p for p in problems)
    hb = {"updated_at": "2024-01-01T00:00:00.000Z", "updated_ts": 1704067201.0, "state": "running",
          "connected": False}
    assert len(rp.check_heartbeat(hb)) == 2
    assert rp.check_positions([{"ticket": 1, "status": "closed", "closed_at": "t", "volume": 0.1}] * 2)
    assert rp.check_account({"id": 1, "net_profit": 1.0, "total_profit": 3.0, "total_loss": 1.0}, [])
