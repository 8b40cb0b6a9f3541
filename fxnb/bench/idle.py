"""5. Monitor idle CPU and resident memory: a real ``fxnb monitor``, 100 positions, 1 s interval.

No commands arrive; prices move, so every poll writes; the rules are live and
evaluated every cycle with thresholds no position reaches (the book stays at 100). After a warm-up, CPU is
``utime + stime`` from ``/proc/<pid>/stat`` over the window divided by the wall
time; memory is ``VmHWM`` (peak resident set) from ``/proc/<pid>/status``,
``VmRSS`` at the end is reported beside it.

Floor: an idle ``python -c`` that imports tornado, apscheduler, sqlite_utils and
watchdog and sleeps, started at the same time and sampled the same way.

``start()`` and ``finish()`` are separate so that ``--quick`` can overlap the
window with the in-process measurements (the figure is the monitor's own CPU
time, which other processes do not add to); the full run does nothing else
meanwhile.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fxnb.bench.common import Figure, progress
from fxnb.bench.poll_cycle import RULES
from fxnb.testing import MonitorProcess, make_workspace

GROUP = "5 monitor idle"
FLOOR_IMPORTS = "import tornado.web, tornado.ioloop, apscheduler.schedulers.asyncio, sqlite_utils, watchdog.observers"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (its threads included) in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 of stat(5)


def memory_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


@dataclass
class IdleRun:
    monitor: MonitorProcess
    floor: subprocess.Popen[bytes]
    seconds: float
    t0: float = 0.0
    cpu0: tuple[float, float] = (0.0, 0.0)
    overlapped: bool = False
    done: bool = False

    def abort(self) -> None:
        """Stop both processes (after an error or an interrupt)."""
        if not self.done:
            self.done = True
            self.monitor.stop()
            self.floor.kill()
            self.floor.wait(10)


def start(tmp: Path, *, seconds: float, warmup: float = 3.0) -> IdleRun:
    cfg = make_workspace(tmp / "m5", sim_positions=100, sim_frozen=False, check_interval=1.0,
                         overrides={"profit_monitor": RULES["on"], "commands": {"rescan_interval": 5}})
    progress(f"5 monitor idle: real monitor, 100 positions, 1 s interval, {seconds:.0f} s window")
    floor = subprocess.Popen([sys.executable, "-c", f"{FLOOR_IMPORTS}; import time; time.sleep({seconds + 60})"])
    monitor = MonitorProcess(cfg)
    run = IdleRun(monitor, floor, seconds)
    try:
        monitor.start()
        time.sleep(warmup)
    except BaseException:
        run.abort()
        raise
    assert monitor.proc is not None
    run.t0 = time.monotonic()
    run.cpu0 = (cpu_seconds(monitor.proc.pid), cpu_seconds(floor.pid))
    return run


def finish(run: IdleRun) -> list[Figure]:
    left = run.seconds - (time.monotonic() - run.t0)
    if left > 0:
        time.sleep(left)
    assert run.monitor.proc is not None
    pid, fpid = run.monitor.proc.pid, run.floor.pid
    try:
        wall = time.monotonic() - run.t0
        cpu = (cpu_seconds(pid) - run.cpu0[0]) / wall * 100
        fcpu = (cpu_seconds(fpid) - run.cpu0[1]) / wall * 100
        mem, fmem = memory_kb(pid), memory_kb(fpid)
        _, status = run.monitor.get("/status")
    finally:
        run.abort()
    resolution = 100 / TICK / wall  # one clock tick over the window, in percent
    extra: dict[str, Any] = {
        "window_s": round(wall, 1), "check_interval_s": 1.0, "rules": RULES["on"],
        "open_positions": status.get("open_positions"), "poll_duration_ms": status.get("poll_duration_ms"),
        "cpu_resolution_pct": round(resolution, 4),
        "monitor_kb": mem, "floor_kb": fmem, "floor_process": f"python -c '{FLOOR_IMPORTS}; time.sleep(..)'",
        "overlapped_with_other_measurements": run.overlapped,
    }  # fmt: skip
    floor_cpu = max(fcpu, resolution)
    return [
        Figure(id="monitor_idle.cpu", group=GROUP, label="monitor CPU, idle (100 open, 1 s polls)", unit="%",
               value=cpu, floor=floor_cpu, floor_what="idle python with the same imports (CPU floored at one "
               "clock tick over the window)", samples=1, floor_samples=1, max_value=2,
               extra={**extra, "floor_cpu_measured_pct": round(fcpu, 4)}),
        Figure(id="monitor_idle.rss", group=GROUP, label="monitor peak RSS (VmHWM)", unit="MB",
               value=mem["VmHWM"] / 1024, floor=fmem["VmHWM"] / 1024,
               floor_what="idle python with the same imports", samples=1, floor_samples=1, max_value=150,
               extra={**extra, "rss_at_end_mb": round(mem["VmRSS"] / 1024, 1)}),
    ]  # fmt: skip
