"""3. Close-all of 1,000 positions, in-process: an ``all`` command file to its final row.

A template workspace (N positions, frozen prices, rules off) is polled once so the
Engine has seen the book, then copied for every repeat. Each repeat builds the
Engine as ``Monitor._open`` does, drops the command file (atomic write, arrival
timed just before the rename) and calls ``Engine.process_pending()`` as the
monitor's command loop would; the figure is the row's ``finished_at`` minus
the arrival. No poll runs in between, so this is the execution path alone.

Floor: on another copy of the same state file, a bare ``SimTerminal`` sends N
close requests (built beforehand from ``positions_get()``) with ``order_send``.
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from fxnb.bench.common import Figure, drop_command, epoch_of, new_id, open_engine, progress, summary
from fxnb.bench.poll_cycle import _profile, _timed
from fxnb.broker.sim import SimSettings, SimTerminal
from fxnb.broker.sim import constants as C
from fxnb.config import load_config
from fxnb.testing import make_workspace

GROUP = "3 close-all"
# wall time spent inside these calls during the close-all (nested: order_send is inside broker.close)
_PARTS = {
    "broker.close (CloseJob: its terminal calls per ticket)": ("broker", "close"),
    "  of which SimTerminal.order_send": ("terminal", "order_send"),
    "  of which SimTerminal.positions_get": ("terminal", "positions_get"),
    "  of which SimTerminal.symbol_info_tick": ("terminal", "symbol_info_tick"),
    "  of which SimTerminal.history_deals_get": ("terminal", "history_deals_get"),
    "store.record_closes (results + positions closed, one transaction per batch)": ("store", "record_closes"),
}
FLOOR_WHAT = "N bare SimTerminal.order_send close requests, built beforehand"


def _template(tmp: Path, n: int) -> Path:
    cfg = make_workspace(tmp / "m3_template", sim_positions=n, sim_frozen=True,
                         overrides={"profit_monitor": {"rules_mode": "off"}})
    oe = open_engine(cfg)
    try:
        assert oe.engine.poll()
    finally:
        oe.close()
    return cfg.base_dir


def _copy(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest)
    return dest / "config.json"


def close_all_once(template: Path, dest: Path, *, instrument: bool = False, profile: bool = False) -> dict[str, Any]:
    """One close-all; ``instrument`` times the parts (``_PARTS``), which adds a wrapper per call.

    The figure's runs are not instrumented: 4,000-odd wrapped calls would add their own cost
    (about 5 ms) to what is measured. The breakdown comes from one more, instrumented, run.
    """
    cfg = load_config(_copy(template, dest))
    oe = open_engine(cfg)
    engine = oe.engine
    sinks: dict[str, list[tuple[float, Any]]] = {k: [] for k in _PARTS}
    if instrument:
        for key, (owner, name) in _PARTS.items():
            owners = {"store": engine.store, "broker": engine.broker, "terminal": oe.terminal}
            _timed(owners[owner], name, sinks[key], keep=lambda r: None)
    try:
        cmd_id = new_id("all")
        arrived = drop_command(cfg.paths.commands, cmd_id, {"type": "all"})
        start = time.perf_counter()
        if profile:
            prof = _profile(engine.process_pending, top=15)
        else:
            prof = None
            engine.process_pending()
        wall = (time.perf_counter() - start) * 1000
        op = engine.store.get_operation_by_command(cmd_id)
        assert op is not None
        return {"ms": (epoch_of(op["finished_at"]) - arrived) * 1000, "process_pending_ms": wall,
                "status": op["status"], "closed": op["positions_closed"], "failed": op["positions_failed"],
                "parts_ms": {k: sum(t for t, _ in v) * 1000 for k, v in sinks.items()},
                "calls": {k: len(v) for k, v in sinks.items()}, "profile": prof}  # fmt: skip
    finally:
        oe.close()


def _filling(info: Any) -> int:
    if info.filling_mode & 1:
        return C.ORDER_FILLING_FOK
    if info.filling_mode & 2:
        return C.ORDER_FILLING_IOC
    return C.ORDER_FILLING_RETURN


def floor_sends(template: Path, dest: Path) -> dict[str, Any]:
    cfg = load_config(_copy(template, dest))
    term = SimTerminal(SimSettings.from_mapping(cfg.broker.sim, cfg.base_dir))
    try:
        assert term.initialize()
        positions = term.positions_get()
        infos = {s: term.symbol_info(s) for s in {p.symbol for p in positions}}
        requests = []
        for p in positions:
            buy = p.type == C.POSITION_TYPE_BUY
            info = infos[p.symbol]
            requests.append({
                "action": C.TRADE_ACTION_DEAL, "symbol": p.symbol, "position": p.ticket, "volume": p.volume,
                "type": C.ORDER_TYPE_SELL if buy else C.ORDER_TYPE_BUY, "price": info.bid if buy else info.ask,
                "deviation": 20, "magic": 770077, "comment": "fxnb", "type_time": C.ORDER_TIME_GTC,
                "type_filling": _filling(info),
            })  # fmt: skip
        start = time.perf_counter()
        codes = [term.order_send(r).retcode for r in requests]
        ms = (time.perf_counter() - start) * 1000
        assert all(c == C.TRADE_RETCODE_DONE for c in codes), sorted(set(codes))
        assert not term.positions_get()
        return {"ms": ms, "sends": len(requests)}
    finally:
        term.close()


def run(tmp: Path, *, quick: bool, profile: bool = False) -> list[Figure]:
    n = 300 if quick else 1_000
    repeats = 1 if quick else 5
    progress(f"3 close-all: {n:,} positions, {repeats} repeat(s), in-process Engine")
    template = _template(tmp, n)
    runs, floors = [], []
    for i in range(repeats):
        runs.append(close_all_once(template, tmp / f"m3_run{i}"))
        floors.append(floor_sends(template, tmp / f"m3_floor{i}"))
    parts = close_all_once(template, tmp / "m3_parts", instrument=True)
    prof = close_all_once(template, tmp / "m3_profile", profile=True)["profile"] if profile else None
    value = statistics.median(r["ms"] for r in runs)
    floor = statistics.median(f["ms"] for f in floors)
    extra = {
        "how": "in-process Engine.process_pending() on an `all` command file (no monitor process, no polls)",
        "positions": n, "prices": "frozen (volatility 0)", "rules_mode": "off",
        "close_all_ms": summary([r["ms"] for r in runs]),
        "process_pending_ms": summary([r["process_pending_ms"] for r in runs]),
        "floor_ms": summary([f["ms"] for f in floors]),
        "per_position_ms": round(value / n, 4), "floor_per_send_ms": round(floor / n, 4),
        "statuses": [r["status"] for r in runs], "closed": [r["closed"] for r in runs],
        "failed": [r["failed"] for r in runs],
        "breakdown_ms (one more run, instrumented)": {k: round(v, 1) for k, v in parts["parts_ms"].items()},
        "instrumented_run_ms": round(parts["ms"], 1),
        "calls_per_run": parts["calls"],
    }  # fmt: skip
    if prof:
        extra["profile_top_tottime"] = prof
    return [Figure(
        id="close_all", group=GROUP,
        label=f"close-all of {n:,} positions (command -> final row)", unit="ms", value=value, floor=floor,
        floor_what=FLOOR_WHAT, samples=len(runs), floor_samples=len(floors), max_ratio=2, extra=extra,
    )]  # fmt: skip
