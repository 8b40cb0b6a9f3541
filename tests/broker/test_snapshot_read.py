"""The poll's read path: the bulk struct -> Position conversion and ``Broker.snapshot``.

The conversion looks volumes and sides up per distinct raw value instead of computing them per
position; the values must still be exactly the constructor's (signed zeros and NaN included).
``snapshot`` pauses the cyclic garbage collector while it builds the book and must leave it as
it found it, on success and on failure.
"""

from __future__ import annotations

import gc
import math
from pathlib import Path
from typing import Any

import pytest
from _positions_ref import constructed

from fxnb.broker import Broker
from fxnb.broker.adapter import positions_from_structs
from fxnb.broker.sim import SimSettings, SimTerminal
from fxnb.broker.sim.structs import TradePosition
from fxnb.errors import BrokerError
from fxnb.models import Position


def _struct(ticket: int, **kw: Any) -> TradePosition:
    base = TradePosition(ticket, 2, 2000, 2, 2000, 0, 0, ticket, 0, 0.1, 1.1, 0.0, 0.0, 1.2, 0.0, 5.0,
                         "EURUSD", "", "")
    return base._replace(**kw)




def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))


def dataclass_values(p: Position, *, skip: str) -> dict[str, Any]:
    return {k: v for k, v in p.__dict__.items() if k != skip}


def test_looked_up_volumes_and_sides_are_the_constructors() -> None:
    # repeated volumes (the lookup's case), equal keys of other types (1 == 1.0 == True), the two
    # zeros (equal keys, different signs), NaN, a volume that rounds, and odd type values
    volumes = [0.1, 0.1, 1, 1.0, True, 0.0, -0.0, 0.0, -0.0, float("nan"), float("nan"), 0.1 + 0.2, 0.3,
               "0.25", 0.25, 2.000000001, 2.000000004]
    types = [0, 1, 0.0, 1.0, False, True, 0, 1, "0", "1", 0, 1, 0, 1, 0, 1, 0]
    raw = [_struct(i + 1, volume=v, type=t) for i, (v, t) in enumerate(zip(volumes, types, strict=True))]
    for buy in (0, 1):
        fast = positions_from_structs(raw, buy)
        slow = [constructed(p, buy) for p in raw]
        assert [p.side for p in fast] == [p.side for p in slow]
        for f, s in zip(fast, slow, strict=True):
            assert _same(f.volume, s.volume), (f.volume, s.volume)
            assert dataclass_values(f, skip="volume") == dataclass_values(s, skip="volume")


def test_a_bad_volume_or_type_still_raises() -> None:
    with pytest.raises((TypeError, ValueError)):
        positions_from_structs([_struct(1), _struct(2, volume=None)], 0)
    with pytest.raises((TypeError, ValueError)):
        positions_from_structs([_struct(1), _struct(2, type="buy")], 0)
    with pytest.raises(TypeError):
        positions_from_structs([_struct(1, volume=[0.1])], 0)


@pytest.fixture
def sim(tmp_path: Path) -> Any:
    section = {"volatility": 0.0, "seed": 7, "positions": {"count": 0, "list": [
        {"symbol": "EURUSD", "type": "buy", "volume": 1.0}, {"symbol": "GBPUSD", "type": "sell", "volume": 0.3}]}}
    t = SimTerminal(SimSettings.from_mapping(section, tmp_path))
    assert t.initialize(), t.last_error()
    yield t
    t.close()


@pytest.mark.parametrize("enabled", [True, False])
def test_snapshot_restores_the_collector_state(sim: SimTerminal, enabled: bool) -> None:
    broker = Broker(sim)
    broker.connect()
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        snap = broker.snapshot()
        assert gc.isenabled() is enabled
        assert snap.positions == tuple(constructed(p, 0) for p in sim.positions_get())
        sim.shutdown()  # the next read fails
        with pytest.raises(BrokerError):
            broker.snapshot()
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
