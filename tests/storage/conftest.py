"""Fixtures for the storage tests: real SQLite files in ``tmp_path`` and a clock the test controls."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fxnb.models import Account, Position, Side, Snapshot
from fxnb.storage import Reader, Store

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class FakeClock:
    """A clock that only moves when the test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "fxnb.db"


@pytest.fixture
def store(db_path: Path, clock: FakeClock) -> Iterator[Store]:
    s = Store.open(db_path, clock=clock)
    yield s
    s.close()


@pytest.fixture
def reader(store: Store, db_path: Path) -> Iterator[Reader]:
    r = Reader(db_path)
    yield r
    r.close()


@pytest.fixture
def account() -> Account:
    return Account(
        login=5551234,
        currency="EUR",
        balance=10_000.0,
        equity=10_050.0,
        profit=50.0,
        margin=500.0,
        margin_free=9_550.0,
        margin_level=2010.0,
    )


@pytest.fixture
def make_position() -> Callable[..., Position]:
    def make(ticket: int, **kw: Any) -> Position:
        values: dict[str, Any] = {
            "symbol": "EURUSD",
            "side": Side.BUY,
            "volume": 1.0,
            "price_open": 1.1000,
            "price_current": 1.1010,
            "profit": 100.0,
            "time": int(T0) - 3600,
        }
        values.update(kw)
        return Position(ticket=ticket, **values)

    return make


@pytest.fixture
def make_snapshot(account: Account) -> Callable[..., Snapshot]:
    def make(positions: list[Position] | tuple[Position, ...], at: float = T0) -> Snapshot:
        return Snapshot.of(account, positions, at)

    return make
