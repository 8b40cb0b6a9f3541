"""The poll's read path: the bulk struct -> Book conversion and ``Broker.snapshot``.

The conversion works column by column: it transposes the structs by iteration when they are
tuples in TradePosition's official order (checked with ``_asdict()``) and by attribute otherwise,
and looks volumes and sides up per distinct raw value instead of computing them per position;
either way the values must be exactly the constructor's (signed zeros and NaN included).
``snapshot`` pauses the cyclic garbage collector while it builds the book and must leave it as
it found it, on success and on failure.
"""

from __future__ import annotations

import gc
import math
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest
from _positions_ref import constructed

from fxnb.broker import Broker
from fxnb.broker.adapter import _official_tuples, book_from_structs, position_from_struct, positions_from_structs
from fxnb.broker.sim import SimSettings, SimTerminal
from fxnb.broker.sim.structs import TradePosition
from fxnb.errors import BrokerError
from fxnb.models import Book, Position


def _struct(ticket: int, **kw: Any) -> TradePosition:
    base = TradePosition(ticket, 2, 2000, 2, 2000, 0, 0, ticket, 0, 0.1, 1.1, 0.0, 0.0, 1.2, 0.0, 5.0,
                         "EURUSD", "", "")
    return base._replace(**kw)


class _Attrs:
    """A struct readable by attribute only (what an RPyC proxy or a plain object offers)."""

    def __init__(self, p: TradePosition) -> None:
        self.__dict__.update(p._asdict())


# TradePosition's fields in another order: a tuple whose iteration order is not the official one
_Reordered = namedtuple("_Reordered", tuple(reversed(TradePosition._fields)))  # type: ignore[misc]


def _reordered(p: TradePosition) -> Any:
    return _Reordered(**p._asdict())


def _no_asdict(p: TradePosition) -> tuple[Any, ...]:
    return tuple(p)  # a plain tuple of the right length: no _asdict() to prove the order


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))


def dataclass_values(p: Position, *, skip: str) -> dict[str, Any]:
    return {k: v for k, v in p.__dict__.items() if k != skip}


@pytest.mark.parametrize("shape", [None, _Attrs, _reordered, _no_asdict],
                         ids=["official tuples", "attributes", "reordered tuples", "plain tuples"])
def test_looked_up_volumes_and_sides_are_the_constructors(shape: Any) -> None:
    # repeated volumes (the lookup's case), equal keys of other types (1 == 1.0 == True), the two
    # zeros (equal keys, different signs), NaN, a volume that rounds, and odd type values
    volumes = [0.1, 0.1, 1, 1.0, True, 0.0, -0.0, 0.0, -0.0, float("nan"), float("nan"), 0.1 + 0.2, 0.3,
               "0.25", 0.25, 2.000000001, 2.000000004]
    types = [0, 1, 0.0, 1.0, False, True, 0, 1, "0", "1", 0, 1, 0, 1, 0, 1, 0]
    raw = [_struct(i + 1, volume=v, type=t) for i, (v, t) in enumerate(zip(volumes, types, strict=True))]
    read = raw if shape is None else [shape(p) for p in raw]
    if shape is _no_asdict:  # plain tuples are only readable by attribute, which they lack
        with pytest.raises(AttributeError):
            positions_from_structs(read, 0)
        return
    for buy in (0, 1):
        fast = positions_from_structs(read, buy)
        slow = [constructed(p, buy) for p in raw]
        assert [p.side for p in fast] == [p.side for p in slow]
        one_by_one = [position_from_struct(p, buy) for p in read]  # a close's re-read
        for f, s in [*zip(fast, slow, strict=True), *zip(one_by_one, slow, strict=True)]:
            assert _same(f.volume, s.volume), (f.volume, s.volume)
            assert dataclass_values(f, skip="volume") == dataclass_values(s, skip="volume")


def test_only_official_tuples_are_read_by_iteration() -> None:
    raw = (_struct(1), _struct(2))
    assert _official_tuples(raw)
    assert not _official_tuples(tuple(map(_reordered, raw)))
    assert not _official_tuples(tuple(map(_no_asdict, raw)))
    assert not _official_tuples(tuple(map(_Attrs, raw)))
    assert not _official_tuples((_struct(1), _reordered(_struct(2))))


def test_a_read_of_two_struct_types_is_read_by_attribute() -> None:
    raw = [_struct(1, profit=1.5), _reordered(_struct(2, profit=2.5)), _Attrs(_struct(3, profit=3.5))]
    book = book_from_structs(raw, 0)
    assert book.ticket == (1, 2, 3) and book.profit == (1.5, 2.5, 3.5) and book.identifier == (1, 2, 3)


def test_the_book_is_the_positions_column_by_column() -> None:
    raw = [_struct(7, symbol="XAUUSD", type=1, sl=1.0, comment="c", time=5), _struct(3)]
    book = book_from_structs(raw, 0)
    assert isinstance(book, Book) and len(book) == 2
    assert book.ticket == (7, 3) and book.symbol == ("XAUUSD", "EURUSD") and book.time == (5, 2)
    assert book.positions == tuple(constructed(p, 0) for p in raw)
    assert book_from_structs([], 0) == Book() and book_from_structs(iter(raw), 0) == book


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
