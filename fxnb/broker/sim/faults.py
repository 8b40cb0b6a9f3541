"""Injected faults: market hours, requotes/rejects, ambiguous outcomes, dropped IPC sessions.

Each kind draws from its own RNG seeded from ``SimSettings.seed``, so e.g. the
requote sequence of a run depends only on the seed and the number of
order_send calls, not on how often prices were read; a rate of 0 draws
nothing, so turning one fault on leaves the others' sequences as they were.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from . import constants as C
from .requests import ApiError
from .settings import FaultSettings
from .symbols import SymbolSpec

# What a lost reply looks like to the caller: the request went out, no answer came back.
IPC_TIMEOUT = ApiError(C.RES_E_INTERNAL_FAIL_TIMEOUT, "IPC timeout")
_LOST_REPLIES = (
    IPC_TIMEOUT,
    ApiError(C.RES_E_INTERNAL_FAIL_RECEIVE, "IPC recv failed"),
    ApiError(C.RES_E_INTERNAL_FAIL_SEND, "IPC send failed"),
)


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
        self._reply_rng = random.Random(seed * 1_000_003 + 37)
        self._fill_rng = random.Random(seed * 1_000_003 + 41)

    def closed(self, symbol: str, server_epoch: float, extra: Iterable[str] = ()) -> bool:
        if symbol in extra or "*" in extra:
            return True
        minute = int(server_epoch // 60) % 1440
        return any(w.covers(symbol, minute) for w in self.windows)

    def send_fault(self) -> int | None:
        """A retcode that answers this order_send instead of DONE, or None. One draw per call.

        Only 10011/10012 may still execute (``executes``); the others never do."""
        s = self.settings
        bands = (
            (s.reject_rate, C.TRADE_RETCODE_REJECT),
            (s.requote_rate, C.TRADE_RETCODE_REQUOTE),
            (s.error_rate, C.TRADE_RETCODE_ERROR),
            (s.timeout_rate, C.TRADE_RETCODE_TIMEOUT),
        )
        if all(rate <= 0 for rate, _ in bands):
            return None
        u = self._send_rng.random()
        edge = 0.0
        for rate, retcode in bands:
            edge += max(rate, 0.0)
            if u < edge:
                return retcode
        return None

    def executes(self, retcode: int) -> bool:
        """Does a request answered with this injected ``retcode`` execute anyway?"""
        ambiguous = retcode in (C.TRADE_RETCODE_ERROR, C.TRADE_RETCODE_TIMEOUT)
        return ambiguous and self.settings.ambiguous_executes

    def lost_reply(self) -> ApiError | None:
        """The IPC error that replaces this order_send's reply (``lost_reply_rate``), or None."""
        rate = self.settings.lost_reply_rate
        if rate <= 0 or self._reply_rng.random() >= rate:
            return None
        return self._reply_rng.choice(_LOST_REPLIES)

    def partial_volume(self, spec: SymbolSpec, volume: float, held: float | None) -> float | None:
        """The part of an IOC ``volume`` that fills (``partial_fill_rate``), or None for all of it.

        Whole steps, at least ``volume_min``, at least one step short of ``volume``; closing
        part of a position of volume ``held`` leaves no less than ``volume_min`` open.
        """
        rate = self.settings.partial_fill_rate
        if rate <= 0 or self._fill_rng.random() >= rate:
            return None
        step = spec.volume_step
        lo = math.ceil(spec.volume_min / step - 1e-9)
        hi = round(volume / step) - 1
        if held is not None:
            hi = min(hi, math.floor((held - spec.volume_min) / step + 1e-9))
        if lo > hi:
            return None  # too small to split: it fills completely
        return round(self._fill_rng.randint(lo, hi) * step, 8)

    def drop_link(self) -> bool:
        """Does the terminal go away on this call (``disconnect_rate``)?"""
        rate = self.settings.disconnect_rate
        return rate > 0 and self._link_rng.random() < rate
