"""A background "human" trading on the simulated terminal: opens a position now and then.

Runs on a daemon thread and goes through the terminal's internal open path
under the terminal's lock (so it never races the Python client), like trades
placed from the terminal's GUI: it ignores the IPC session, the Algo Trading
button and injected faults, and never closes anything.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

_VOLUMES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


class Trader:
    """``open_one(symbol, is_buy, volume, rng)`` is the terminal's hook; ``count()`` the open positions."""

    def __init__(
        self,
        open_one: Callable[[str, bool, float], bool],
        count: Callable[[], int],
        symbols: tuple[str, ...],
        *,
        interval: float,
        max_positions: int,
        seed: int,
    ) -> None:
        self._open_one = open_one
        self._count = count
        self._symbols = symbols
        self._interval = max(interval, 0.001)
        self._max = max_positions
        self._rng = random.Random(seed * 1_000_003 + 37)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.opened = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="fxnb-sim-trader", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._interval * self._rng.uniform(0.5, 1.5)):
            try:
                self.step()
            except Exception:  # the trader must never die silently mid-demo
                log.exception("simulated trader step failed")

    def step(self) -> bool:
        """Open one random position if below ``max_positions``. True when one was opened."""
        if self._count() >= self._max:
            return False
        rng = self._rng
        ok = self._open_one(rng.choice(self._symbols), rng.random() < 0.5, rng.choice(_VOLUMES))
        self.opened += int(ok)
        return ok
