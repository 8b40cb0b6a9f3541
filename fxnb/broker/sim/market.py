"""Seeded prices: a mean-reverting random walk that is a pure function of time.

The log-price deviation of each symbol is defined on whole seconds since the
state file's creation: hourly anchors follow an Ornstein-Uhlenbeck walk and a
Brownian bridge (seeded per hour) fills the seconds in between. So prices
"advance with elapsed wall time" on every read, are reproducible from the seed,
identical in every process sharing the state file, and continue across
restarts. ``volatility`` scales the walk; 0 freezes every price at its base.
A ``PriceScript`` (``script``) replaces the walk for the symbols it lists.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Mapping

from .script import PriceScript
from .symbols import SymbolSpec

_HOUR = 3600
_REVERSION_HOURS = 120.0  # anchors mean-revert to the base price over ~5 days


class PricePath:
    """The log deviation y(step) of one symbol; step = whole seconds since the origin."""

    def __init__(self, key: int, daily_sd: float) -> None:
        self._key = key
        self._per_second = daily_sd / math.sqrt(86400.0)
        self._a = math.exp(-1.0 / _REVERSION_HOURS)
        self._anchor_sd = self._per_second * math.sqrt(_HOUR)
        self._anchors: list[float] = [0.0]
        self._anchor_rng = random.Random(key)
        self._bridges: dict[int, list[float]] = {}

    def at(self, step: int) -> float:
        if self._per_second == 0.0 or step <= 0:
            return 0.0
        hour, j = divmod(step, _HOUR)
        while len(self._anchors) < hour + 2:
            self._anchors.append(
                self._a * self._anchors[-1] + self._anchor_sd * self._anchor_rng.gauss(0.0, 1.0)
            )
        h0, h1 = self._anchors[hour], self._anchors[hour + 1]
        return h0 + (h1 - h0) * j / _HOUR + self._bridge(hour)[j]

    def _bridge(self, hour: int) -> list[float]:
        bridge = self._bridges.get(hour)
        if bridge is None:
            rng = random.Random(self._key * 1_000_003 + hour + 1)
            walk = [0.0]
            s = self._per_second
            for _ in range(_HOUR):
                walk.append(walk[-1] + s * rng.gauss(0.0, 1.0))
            end = walk[-1]
            bridge = [w - end * i / _HOUR for i, w in enumerate(walk)]
            if len(self._bridges) > 4:
                self._bridges.clear()
            self._bridges[hour] = bridge
        return bridge


class PriceFeed:
    """Current bid/ask per symbol: the walk or the script, then control-file pins (``prices``) and shifts."""

    def __init__(
        self,
        specs: Mapping[str, SymbolSpec],
        seed: int,
        volatility: float,
        origin: float,
        script: PriceScript | None = None,
    ) -> None:
        self.specs = specs
        self.origin = origin
        self.script = script
        self._script_origin = origin if script is None or script.start is None else script.start
        self._paths = {
            name: PricePath(
                (seed & 0xFFFFFFFF) * 4_294_967_311 + zlib.crc32(name.encode()),
                max(volatility, 0.0) * spec.annual_vol / math.sqrt(252.0),
            )
            for name, spec in specs.items()
        }
        self.pins: dict[str, float] = {}
        self.shifts: dict[str, float] = {}
        self.version = 0  # bumped when pins/shifts change (part of the valuation cache key)
        self._cache: dict[str, tuple[tuple[int, int], float, float]] = {}

    def set_overrides(self, pins: Mapping[str, float], shifts: Mapping[str, float]) -> None:
        self.pins = dict(pins)
        self.shifts = dict(shifts)
        self.version += 1
        self._cache.clear()

    def step(self, wall: float) -> tuple[int, int]:
        """Changes whenever a quote may have: the walk's whole second and the script's row count."""
        scripted = self.script.position(wall - self._script_origin) if self.script is not None else 0
        return int(wall - self.origin), scripted

    def quote(self, symbol: str, wall: float) -> tuple[float, float]:
        """(bid, ask) at wall-clock time ``wall`` (epoch seconds)."""
        key = self.step(wall)
        hit = self._cache.get(symbol)
        if hit is not None and hit[0] == key:
            return hit[1], hit[2]
        spec = self.specs[symbol]
        raw = self.pins.get(symbol)
        if raw is None and self.script is not None:
            raw = self.script.bid(symbol, wall - self._script_origin)
        if raw is None:
            raw = spec.base_bid * math.exp(self._paths[symbol].at(key[0]))
        bid = round(raw + self.shifts.get(symbol, 0.0), spec.digits)
        ask = round(bid + spec.spread * spec.point, spec.digits)
        self._cache[symbol] = (key, bid, ask)
        return bid, ask
