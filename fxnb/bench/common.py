"""What every measurement shares: the figure record, statistics, workspaces and engines, atomic writes."""

from __future__ import annotations

import json
import math
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fxnb.broker import Broker, settings_from_config
from fxnb.broker.sim import SimSettings, SimTerminal
from fxnb.commands import CommandDir, command_file_name
from fxnb.config import Config
from fxnb.monitor.engine import Engine
from fxnb.storage import Store

RULES_OFF = {"profit_monitor": {"rules_mode": "off"}}


@dataclass
class Figure:
    """One row of the table: a measured figure beside its floor (measured in the same run) and the ratio.

    ``max_value`` / ``max_ratio`` are the targets; a figure with neither is informational.
    """

    id: str
    group: str
    label: str
    unit: str
    value: float
    floor: float
    floor_what: str
    samples: int
    floor_samples: int
    max_value: float | None = None
    max_ratio: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.value / self.floor if self.floor > 0 else math.inf

    @property
    def target(self) -> str:
        parts = []
        if self.max_value is not None:
            parts.append(f"<= {self.max_value:g} {self.unit}")
        if self.max_ratio is not None:
            parts.append(f"<= {self.max_ratio:g}x floor")
        return " and ".join(parts) or "-"

    @property
    def status(self) -> str:
        if self.max_value is None and self.max_ratio is None:
            return "INFO"
        ok = (self.max_value is None or self.value <= self.max_value) and (
            self.max_ratio is None or self.ratio <= self.max_ratio
        )
        return "PASS" if ok else "MISS"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "group": self.group, "label": self.label, "unit": self.unit,
            "value": round(self.value, 4), "floor": round(self.floor, 4), "ratio": round(self.ratio, 3),
            "floor_what": self.floor_what, "target": self.target, "max_value": self.max_value,
            "max_ratio": self.max_ratio, "status": self.status, "samples": self.samples,
            "floor_samples": self.floor_samples, "extra": self.extra,
        }  # fmt: skip


# -- statistics ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("no samples")
    s = sorted(values)
    k = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/min/max (rounded) of a sample, for the JSON."""
    return {
        "n": len(values),
        "p50": round(statistics.median(values), 4),
        "p90": round(percentile(values, 90), 4),
        "p99": round(percentile(values, 99), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def time_ms(fn: Callable[[], object], runs: int, *, warmup: int = 2) -> list[float]:
    """``runs`` wall-clock samples of ``fn()`` in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def epoch_of(iso_text: str) -> float:
    """Stored ``...Z`` text (milliseconds, truncated) back to epoch seconds."""
    return datetime.fromisoformat(iso_text.replace("Z", "+00:00")).timestamp()


# -- engines ------------------------------------------------------------------------------------


class SimClock:
    """Wall time plus an offset the benchmark advances, so the simulator's prices (whole-second
    steps) move on every cycle without the benchmark sleeping a second per cycle."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class OpenEngine:
    engine: Engine
    terminal: SimTerminal
    alerts: Any = None

    def close(self) -> None:
        if self.alerts is not None:
            self.alerts.stop()
        self.engine.store.close()
        self.engine.broker.shutdown()
        self.terminal.close()


def open_engine(cfg: Config, *, sim_clock: Callable[[], float] = time.time) -> OpenEngine:
    """An Engine built like ``Monitor._open`` (Store, CommandDir, broker, connect, reconcile).

    ``make_broker(cfg)`` for ``kind: sim`` is ``Broker(create_terminal(settings))``; the
    terminal is built here directly only to inject ``sim_clock`` (and to close it afterwards).
    """
    store = Store.open(cfg.paths.database)
    commands = CommandDir(cfg.paths.commands)
    commands.ensure()
    terminal = SimTerminal(SimSettings.from_mapping(cfg.broker.sim, cfg.base_dir), clock=sim_clock)
    broker = Broker(terminal, settings=settings_from_config(cfg))
    alerts = None
    if getattr(getattr(cfg, "alerts", None), "enabled", False):  # as Monitor._open: webhooks configured
        from fxnb.alerts import WebhookDispatcher

        alerts = WebhookDispatcher(cfg.alerts)
        alerts.start()
    engine = Engine(cfg, broker, store, commands, **({"alerts": alerts} if alerts is not None else {}))
    if engine.connect():
        engine.reconcile()
    return OpenEngine(engine, terminal, alerts)


# -- command files ------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def drop_command(directory: Path, cmd_id: str, body: dict[str, Any]) -> float:
    """Write ``cmd_{id}.json`` the way ``CommandDir.write`` does (temp file, fsync, rename, fsync dir).

    Returns ``time.time()`` read just before the rename: the moment the command arrives.
    """
    doc = {"id": cmd_id, "timestamp": datetime.now(UTC).isoformat(), "status": "pending", **body}
    final = directory / command_file_name(cmd_id)
    tmp = final.with_name(f".{final.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(json.dumps(doc).encode())
        fh.flush()
        os.fsync(fh.fileno())
    arrived = time.time()
    os.replace(tmp, final)
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return arrived


def progress(message: str) -> None:
    """Progress goes to stderr so stdout holds only the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
