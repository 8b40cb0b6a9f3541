"""Properties of the guards over random books, settings and memory (hypothesis)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from guardkit import EURUSD, XAUUSD, account
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fxnb.guards import GuardInput, GuardOutcome, GuardSettings, GuardState, evaluate_guards
from fxnb.guards.state import UNTIL_NEXT_DAY, UNTIL_RESUME
from fxnb.models import Account, Position, Side, SymbolSpec

BASE = {"EURUSD": (1.1, 1e-5), "XAUUSD": (2000.0, 0.01), "GBPUSD": (1.27, 1e-5)}  # GBPUSD has no spec
T0 = datetime(2024, 1, 1, tzinfo=UTC)


@st.composite
def positions(draw: st.DrawFn) -> list[Position]:
    out = []
    for _ in range(draw(st.integers(0, 8))):
        symbol = draw(st.sampled_from(sorted(BASE)))
        base, point = BASE[symbol]
        side = draw(st.sampled_from([Side.BUY, Side.SELL]))
        price_open = round(base + draw(st.integers(-2000, 2000)) * point, 5)
        price_current = round(price_open + draw(st.integers(-3000, 3000)) * point, 5)
        sign = -1 if side == Side.BUY else 1
        sl = draw(st.sampled_from([0.0, 0.0, round(price_current + sign * draw(st.integers(1, 3000)) * point, 5),
                                   round(price_open + draw(st.integers(-3000, 3000)) * point, 5)]))
        tp = draw(st.sampled_from([0.0, 0.0, round(price_current - sign * draw(st.integers(1, 3000)) * point, 5)]))
        out.append(Position(
            ticket=draw(st.integers(1, 12)), symbol=symbol, side=side,
            volume=draw(st.sampled_from([0.01, 0.1, 0.37, 1.0, 5.0, 0.0, float("nan")])),
            price_open=price_open, price_current=price_current,
            profit=draw(st.floats(-3000, 3000, allow_nan=False)), swap=draw(st.floats(-50, 50, allow_nan=False)),
            sl=max(sl, 0.0), tp=max(tp, 0.0), magic=draw(st.integers(0, 2))))
    return out


@st.composite
def specs(draw: st.DrawFn) -> dict[str, SymbolSpec]:
    out = {}
    for base in (EURUSD, XAUUSD):
        spread = draw(st.integers(0, 80))
        out[base.name] = replace(base, spread=spread, bid=0.0, ask=0.0, stops_level=draw(st.integers(0, 500)),
                                 freeze_level=draw(st.integers(0, 100)))
    return out


@st.composite
def guard_settings(draw: st.DrawFn) -> GuardSettings:
    """Any valid combination, each guard on or off."""
    on, pick = st.booleans(), st.sampled_from
    trailing_mode = draw(pick(["points", "percent"]))
    section: dict[str, Any] = {
        "basket": {"enabled": draw(on), "take_profit": draw(pick([50, 500])), "stop_loss": draw(pick([None, 1, 20])),
                   "unit": draw(pick(["money", "percent"])), "group_by": draw(pick(["none", "symbol", "magic"]))},
        "drawdown": {"enabled": draw(on), "max_percent": draw(pick([1, 5, 20])),
                     "period": draw(pick(["session", "day"]))},
        "daily_loss": {"enabled": draw(on), "max_loss": draw(pick([2, 5, 50])),
                       "unit": draw(pick(["money", "percent"])), "reset_hour": draw(st.integers(0, 23))},
        "breakeven": {"enabled": draw(on), "trigger_points": draw(pick([50, 200, 1000])),
                      "buffer_points": draw(pick([0, 10, 40]))},
        "trailing": {"enabled": draw(on), "mode": trailing_mode,
                     "distance": draw(pick([0.05, 1, 150, 300, 2000] if trailing_mode == "points" else [0.01, 1, 50])),
                     "activation_points": draw(pick([0, 100, 500]))},
        "session_close": {"enabled": draw(on), "daily": draw(on), "weekday": draw(st.integers(0, 6)),
                          "time": draw(pick(["00:00", "12:30", "21:45"])), "symbols": draw(pick([[], ["XAUUSD"]]))},
        "spread": {"enabled": draw(on), "max_points": draw(pick([None, 5, 30])), "per_symbol": {"XAUUSD": 40},
                   "applies_to": draw(pick([["min_profit", "basket", "session_close"],
                                            ["basket", "session_close", "trailing", "breakeven"]]))},
    }
    return GuardSettings.from_mapping(section)


@st.composite
def states(draw: st.DrawFn) -> GuardState:
    s = GuardState(equity_hwm=draw(st.one_of(st.none(), st.floats(1000, 30_000))),
                   hwm_period=draw(st.sampled_from(["", f"session:{T0.isoformat()}"])),
                   day_key=draw(st.sampled_from(["", "2024-01-01"])),
                   day_start_balance=draw(st.one_of(st.none(), st.floats(1000, 30_000))))
    kind = draw(st.sampled_from(["", "", "", UNTIL_RESUME, UNTIL_NEXT_DAY]))
    if kind:
        s = replace(s, locked=True, lock_kind=kind, lock_guards=("drawdown",),
                    lock_until=T0 + timedelta(hours=draw(st.integers(-30, 30))) if kind == UNTIL_NEXT_DAY else None)
    return s


@st.composite
def accounts(draw: st.DrawFn) -> Account:
    balance = draw(st.floats(1000, 20_000))
    return account(balance, balance + draw(st.floats(-5000, 5000)))


def evaluate(book: list[Position], sp: dict[str, SymbolSpec], gs: GuardSettings, state: GuardState, acct: Account,
             minutes: int, realised: float) -> GuardOutcome:
    now = T0 + timedelta(minutes=minutes)
    inp = GuardInput(positions=book, account=acct, specs=sp, realised_today=realised, now=now,
                     session_started_at=T0)
    return evaluate_guards(inp, gs, state)


COMMON = dict(book=positions(), sp=specs(), gs=guard_settings(), state=states(), acct=accounts(),
              minutes=st.integers(0, 14 * 24 * 60), realised=st.floats(-2000, 2000))
PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _open(book: list[Position]) -> dict[int, Position]:
    counts = Counter(p.ticket for p in book)
    return {p.ticket: p for p in book if counts[p.ticket] == 1 and p.volume == p.volume and p.volume > 0}


@PROFILE
@given(**COMMON)
def test_closes_only_open_tickets_whole_once_each(book: list[Position], sp: dict[str, SymbolSpec],
                                                  gs: GuardSettings, state: GuardState, acct: Account,
                                                  minutes: int, realised: float) -> None:
    out = evaluate(book, sp, gs, state, acct, minutes, realised)
    open_ = _open(book)
    tickets = [d.ticket for d in out.closes]
    assert tickets == sorted(set(tickets))
    for d in out.closes:
        assert d.ticket in open_ and d.full and d.volume == open_[d.ticket].volume
    assert sum(d.volume for d in out.closes) <= sum(p.volume for p in open_.values()) + 1e-9
    assert not ({m.ticket for m in out.stop_moves} & set(tickets))  # never move a stop being closed
    now = T0 + timedelta(minutes=minutes)
    still_locked = state.locked and (state.lock_kind == UNTIL_RESUME or now < (state.lock_until or now))
    if still_locked:
        assert out.closes == [] and out.stop_moves == [] and out.lock is None and out.state.locked
    if out.lock is not None:
        assert out.state.locked and set(tickets) == set(open_)


@PROFILE
@given(**COMMON)
def test_same_inputs_same_outputs_and_the_state_survives_json(book: list[Position], sp: dict[str, SymbolSpec],
                                                              gs: GuardSettings, state: GuardState, acct: Account,
                                                              minutes: int, realised: float) -> None:
    a = evaluate(book, sp, gs, state, acct, minutes, realised)
    b = evaluate(random.Random(minutes).sample(book, len(book)), sp, gs, state, acct, minutes, realised)
    assert a == b
    assert GuardState.from_json(a.state.to_json()) == a.state
    # a restart in the same minute, from the stored state: a lock holds, nothing is closed twice
    again = evaluate(book, sp, gs, GuardState.from_json(a.state.to_json()), acct, minutes, realised)
    if a.state.locked:
        assert again.closes == [] and again.lock is None and again.state.locked


def _check_move(p: Position, sl: float, spec: SymbolSpec) -> None:
    close, new, stops = Decimal(repr(p.price_current)), Decimal(repr(sl)), spec.stops_level * Decimal(repr(spec.point))
    assert new == round(new, spec.digits)  # on the symbol's grid
    if p.side == Side.BUY:
        assert new > 0 and close - new >= stops and close - new > 0
        assert p.sl <= 0 or sl > p.sl
    else:
        assert new - close >= stops and new - close > 0
        assert p.sl <= 0 or sl < p.sl


@st.composite
def stop_settings(draw: st.DrawFn) -> GuardSettings:
    """Only the stop guards (and sometimes the spread filter), so that moves are frequent."""
    gs = draw(guard_settings())
    return replace(GuardSettings(), breakeven=replace(gs.breakeven, enabled=True), trailing=gs.trailing,
                   spread=gs.spread)


@PROFILE
@given(**{**COMMON, "gs": stop_settings(), "state": st.just(GuardState())})
def test_stop_moves_are_forward_only_and_clear_of_the_stops_level(book: list[Position], sp: dict[str, SymbolSpec],
                                                                  gs: GuardSettings, state: GuardState,
                                                                  acct: Account, minutes: int, realised: float) -> None:
    out = evaluate(book, sp, gs, state, acct, minutes, realised)
    open_ = _open(book)
    assert [m.ticket for m in out.stop_moves] == sorted({m.ticket for m in out.stop_moves})
    for m in out.stop_moves:
        p = open_[m.ticket]
        assert m.tp == p.tp and m.previous_sl == p.sl and m.symbol == p.symbol
        _check_move(p, m.sl, sp[p.symbol])


@settings(max_examples=150, deadline=None)
@given(side=st.sampled_from([Side.BUY, Side.SELL]), path=st.lists(st.integers(-400, 400), min_size=1, max_size=40),
       stops=st.integers(0, 300), distance=st.sampled_from([50, 200, 500]), activation=st.sampled_from([0, 100]),
       be=st.booleans())
def test_along_a_price_path_the_stop_only_ever_tightens(side: Side, path: list[int], stops: int, distance: int,
                                                        activation: int, be: bool) -> None:
    gs = GuardSettings.from_mapping({
        "trailing": {"enabled": True, "distance": distance, "activation_points": activation},
        "breakeven": {"enabled": be, "trigger_points": 100, "buffer_points": 10},
    })
    sp = {"EURUSD": replace(EURUSD, stops_level=stops)}
    p = Position(ticket=1, symbol="EURUSD", side=side, volume=0.1, price_open=1.1, price_current=1.1, profit=0.0)
    state, price, history = GuardState(), 1.1, []
    for i, step in enumerate(path):
        price = round(price + step * 1e-5, 5)
        if (side == Side.BUY and 0 < p.sl >= price) or (side == Side.SELL and p.sl > 0 and p.sl <= price):
            break  # stopped out
        p = replace(p, price_current=price)
        out = evaluate([p], sp, gs, state, account(), i, 0.0)
        state = out.state
        for m in out.stop_moves:
            _check_move(p, m.sl, sp["EURUSD"])
            p = replace(p, sl=m.sl)
        history.append(p.sl)
    live = [s for s in history if s > 0]
    assert live == (sorted(live) if side == Side.BUY else sorted(live, reverse=True))
