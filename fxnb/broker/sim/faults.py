"""Injected faults: market hours, requotes/rejects, dropped IPC sessions.

Each kind draws from its own RNG seeded from ``SimSettings.seed``, so e.g. the
requote sequence of a run depends only on the seed and the number of
order_send calls, not on how often prices were read.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from . import constants as C
from .settings import FaultSettings


def _minutes(hhmm: str) -> int:
    h, _, m = hhmm.partition(":")
    return int(h) * 60 + int(m or 0)


@dataclass(frozen=True)
class ClosedWindow:
    """``symbol`` ("*" = all) is closed daily from ``start`` to ``end`` (server-time minutes), or always."""

    symbol: str
    start: int | None = None
    end: int | None = None

    def covers(self, symbol: str, minute_of_day: int) -> bool:
        if self.symbol not in ("*", symbol):
            return False
        if self.start is None or self.end is None:
            return True
        if self.start <= self.end:
            return self.start <= minute_of_day < self.end
        return minute_of_day >= self.start or minute_of_day < self.end


def parse_windows(entries: Iterable[str | Mapping[str, str]]) -> tuple[ClosedWindow, ...]:
    out = []
    for e in entries:
        if isinstance(e, str):
            out.append(ClosedWindow(e))
        else:
            start, end = e.get("from"), e.get("to")
            out.append(
                ClosedWindow(
                    str(e.get("symbol", "*")),
                    None if start is None else _minutes(start),
                    None if end is None else _minutes(end),
                )
            )
    return tuple(out)


class Faults:
    """Seeded fault decisions for one terminal."""

    def __init__(self, settings: FaultSettings, seed: int) -> None:
        self.settings = settings
        self.windows = parse_windows(settings.market_closed)
        self._send_rng = random.Random(seed * 1_000_003 + 11)
        self._link_rng = random.Random(seed * 1_000_003 + 23)

    def closed(self, symbol: str, server_epoch: float, extra: Iterable[str] = ()) -> bool:
        if symbol in extra or "*" in extra:
            return True
        minute = int(server_epoch // 60) % 1440
        return any(w.covers(symbol, minute) for w in self.windows)

    def send_fault(self) -> int | None:
        """A retcode that replaces the execution of this order_send, or None. One draw per call."""
        s = self.settings
        if s.reject_rate <= 0 and s.requote_rate <= 0:
            return None
        u = self._send_rng.random()
        if u < s.reject_rate:
            return C.TRADE_RETCODE_REJECT
        if u < s.reject_rate + s.requote_rate:
            return C.TRADE_RETCODE_REQUOTE
        return None

    def drop_link(self) -> bool:
        """Does the terminal go away on this call (``disconnect_rate``)?"""
        rate = self.settings.disconnect_rate
        return rate > 0 and self._link_rng.random() < rate
