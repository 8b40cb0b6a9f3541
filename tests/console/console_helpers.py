"""Helpers shared by the console tests (plain functions; the fixtures live in conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fxnb.commands import CommandDir
from fxnb.config import Config
from fxnb.models import Account, Position, Side
from fxnb.storage import Store

T0 = 1_795_000_000.0  # a fixed instant (2026-11-18)


class FakeClock:
    """Epoch seconds that move only when the test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def account(currency: str = "EUR", **kw: Any) -> Account:
    values: dict[str, Any] = dict(login=5551234, currency=currency, balance=10_000.0, equity=10_050.0, profit=50.0,
                                  margin=500.0, margin_free=9_550.0, margin_level=2010.0)
    values.update(kw)
    return Account(**values)


def position(ticket: int, profit: float, symbol: str = "EURUSD", side: Side = Side.BUY, volume: float = 1.0,
             **kw: Any) -> Position:
    return Position(ticket=ticket, symbol=symbol, side=side, volume=volume, price_open=1.1, price_current=1.1,
                    profit=profit, time=int(T0) - 3600, **kw)


BookWriter = Callable[..., list[Position]]


def beat(store: Store, at: float, **fields: Any) -> None:
    """Write the monitor's heartbeat at ``at`` (running, connected, 1 s interval unless overridden)."""
    values: dict[str, Any] = dict(state="running", connected=True, check_interval=1.0, last_poll_at=at,
                                  last_poll_ok=True, rules_mode="live", rules_paused=False, pid=4242,
                                  hostname="test", version="0.1.0", started_at=at - 60, queue_depth=0,
                                  account_currency="EUR")
    values.update(fields)
    store.heartbeat(at=at, **values)


def command_files(cfg: Config) -> list[dict[str, Any]]:
    """The pending command files, parsed, oldest first."""
    return [json.loads(p.read_text()) for p in CommandDir(cfg.paths.commands).pending()]


MIXED = [  # winners and losers on two symbols: (ticket, profit, symbol)
    (1, 120.0, "EURUSD"), (2, -40.0, "EURUSD"), (3, 15.5, "GBPUSD"), (4, -75.25, "GBPUSD"), (5, -3.0, "EURUSD"),
]
