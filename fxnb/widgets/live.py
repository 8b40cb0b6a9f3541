"""Live refresh: one asyncio task on the kernel's running loop, about once a second.

Why this shape (measured, see the stack notes): an asyncio task on the
kernel's own loop is the pattern that renders reliably in Voila and JupyterLab
with ipykernel 7; widgets are never touched from another thread; a cell that
is re-run must not leave a second loop behind, so every task is registered
under a key and starting a new one cancels the previous one.

Each tick costs one ``PRAGMA data_version`` when the monitor has committed
nothing: panels are refreshed only when the data changed, but the health
verdict (and so the STALE banner) is recomputed from the clock on every tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from fxnb.widgets.base import Panel
from fxnb.widgets.context import Console

log = logging.getLogger("fxnb.widgets")

_TASKS: dict[str, asyncio.Task[None]] = {}
"""Running refresh tasks by key: a re-run cell replaces its predecessor instead of adding a second loop."""


class LiveRefresh:
    """Drives ``panels`` (sharing one ``console``) from the kernel's event loop.

    ``tick()`` is one synchronous refresh cycle (tests call it directly);
    ``start()`` runs it every ``period`` seconds in a task; ``stop()`` cancels it.
    """

    def __init__(self, console: Console, panels: Iterable[Panel], *, period: float = 1.0,
                 key: str = "fxnb") -> None:
        if period <= 0:
            raise ValueError("period must be > 0")
        self.console = console
        self.panels = list(panels)
        self.period = period
        self.key = key
        self.task: asyncio.Task[None] | None = None
        self.ticks = 0
        self.refreshes = 0
        self.last_tick_ms = 0.0
        self.last_refresh_ms = 0.0
        self.errors: list[str] = []
        self._first = True

    def tick(self, now: float | None = None) -> bool:
        """One cycle; returns True if the data had changed (panels refreshed)."""
        t0 = time.perf_counter()
        now = self.console.clock() if now is None else now
        changed = self.console.changed() or self._first
        self._first = False
        self.console.update_health(now)
        if changed:
            for panel in self.panels:
                self._safe(panel, "refresh")
            self.refreshes += 1
        for panel in self.panels:
            self._safe(panel, "tick", now)
        self.ticks += 1
        self.last_tick_ms = (time.perf_counter() - t0) * 1000
        if changed:
            self.last_refresh_ms = self.last_tick_ms
        return changed

    def _safe(self, panel: Panel, method: str, *args: Any) -> None:
        try:
            getattr(panel, method)(*args)
        except Exception as exc:  # one broken panel must not stop the others, nor the loop
            msg = f"{type(panel).__name__}.{method}: {exc!r}"
            log.exception("refresh failed: %s", msg)
            self.errors.append(msg)
            del self.errors[:-20]
            try:
                panel.message.error(f"refresh failed: {exc!r}")
            except Exception:  # pragma: no cover - the message line itself is broken
                pass

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                self.tick()
            except Exception as exc:  # never let the loop die silently: a dead loop looks like a live page
                log.exception("refresh tick failed")
                self.errors.append(f"tick: {exc!r}")
                del self.errors[:-20]
            await asyncio.sleep(max(0.05, self.period - (loop.time() - started)))

    def start(self) -> asyncio.Task[None]:
        """Start (or restart) the refresh task on the running loop; cancels the task under the same key.

        Must be called from code running on the kernel's loop (any notebook cell is).
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("LiveRefresh.start() needs a running event loop: call it from a notebook cell "
                               "(or an async function); use tick() to refresh once") from None
        self.stop()
        old = _TASKS.pop(self.key, None)
        if old is not None and not old.done():
            old.cancel()
        self.task = loop.create_task(self._run(), name=f"fxnb-refresh-{self.key}")
        _TASKS[self.key] = self.task
        return self.task

    def stop(self) -> None:
        """Cancel the task (idempotent)."""
        if self.task is not None:
            self.task.cancel()
            if _TASKS.get(self.key) is self.task:
                del _TASKS[self.key]
            self.task = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()


def live(*panels: Panel, period: float = 1.0, key: str | None = None) -> LiveRefresh:
    """Keep ``panels`` (all built on the same :class:`Console`) refreshed from a notebook cell.

    >>> pos = PositionsPanel(console); live(pos); pos          # doctest: +SKIP
    """
    if not panels:
        raise ValueError("live() needs at least one panel")
    console = panels[0].console
    if any(p.console is not console for p in panels):
        raise ValueError("live() panels must share one Console")
    refresher = LiveRefresh(console, panels, period=period, key=key or "live-" + "-".join(
        type(p).__name__ for p in panels))
    refresher.start()
    return refresher


def running_tasks() -> dict[str, asyncio.Task[None]]:
    """The refresh tasks currently registered (for diagnostics and tests)."""
    return {k: v for k, v in _TASKS.items() if not v.done()}


__all__ = ["LiveRefresh", "live", "running_tasks"]
