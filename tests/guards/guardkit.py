"""Builders shared by the guard tests: a book, an account, settings with some guards on, one evaluation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from fxnb.guards import GuardInput, GuardOutcome, GuardSettings, GuardState, evaluate_guards
from fxnb.models import Account, Position, Side, SymbolSpec

# Friday 2024-01-05 12:00 UTC = 14:00 server time at UTC+2.
NOW = datetime(2024, 1, 5, 12, 0, tzinfo=UTC)
STARTED = datetime(2024, 1, 5, 6, 0, tzinfo=UTC)

EURUSD = SymbolSpec(name="EURUSD", digits=5, point=1e-5, contract_size=100_000, volume_min=0.01,
                    volume_step=0.01, volume_max=100, filling_mode=1, trade_mode=4, currency_profit="USD",
                    spread=10, bid=1.1, ask=1.1001)
XAUUSD = SymbolSpec(name="XAUUSD", digits=2, point=0.01, contract_size=100, volume_min=0.01, volume_step=0.01,
                    volume_max=100, filling_mode=2, trade_mode=4, currency_profit="USD",
                    spread=25, bid=2000.0, ask=2000.25)
SPECS: dict[str, SymbolSpec] = {"EURUSD": EURUSD, "XAUUSD": XAUUSD}


def account(balance: float = 10_000.0, equity: float | None = None) -> Account:
    eq = balance if equity is None else equity
    return Account(login=1, currency="USD", balance=balance, equity=eq, profit=eq - balance, margin=0.0,
                   margin_free=eq, margin_level=0.0)


def pos(ticket: int, *, symbol: str = "EURUSD", side: Side = Side.BUY, volume: float = 0.10,
        price_open: float = 1.1, price_current: float = 1.1, profit: float = 0.0, swap: float = 0.0,
        sl: float = 0.0, tp: float = 0.0, magic: int = 0) -> Position:
    return Position(ticket=ticket, symbol=symbol, side=side, volume=volume, price_open=price_open,
                    price_current=price_current, profit=profit, swap=swap, sl=sl, tp=tp, magic=magic)


def guards(**sections: Mapping[str, Any]) -> GuardSettings:
    """Settings with each named guard enabled and the given keys set (through from_mapping)."""
    return GuardSettings.from_mapping({name: {"enabled": True, **kw} for name, kw in sections.items()})


def spec(name: str = "EURUSD", **changes: Any) -> SymbolSpec:
    return replace(SPECS[name], **changes)


def run(positions: Sequence[Position], settings: GuardSettings, state: GuardState | None = None, *,
        acct: Account | None = None, now: datetime = NOW, realised: float = 0.0,
        specs: Mapping[str, SymbolSpec] = SPECS, started: datetime = STARTED) -> GuardOutcome:
    inp = GuardInput(positions=list(positions), account=acct or account(), specs=specs, realised_today=realised,
                     now=now, session_started_at=started)
    return evaluate_guards(inp, settings, state or GuardState())


def row(outcome: GuardOutcome, guard: str) -> Any:
    [r] = [s for s in outcome.status if s.guard == guard]
    return r
