"""The profit rules (fxnb.rules): hand-computed examples and properties."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxnb.errors import ConfigError
from fxnb.models import Account, CloseDecision, Position, Side, SymbolSpec
from fxnb.rules import RuleSettings, evaluate, profit_percent, unreachable_rules

NOW = datetime(2024, 1, 1, 12, tzinfo=UTC)
ACCOUNT = Account(
    login=1,
    currency="USD",
    balance=5000.0,
    equity=6500.0,
    profit=1500.0,
    margin=100.0,
    margin_free=6400.0,
    margin_level=6500.0,
)
EURUSD = SymbolSpec(
    name="EURUSD",
    digits=5,
    point=1e-5,
    contract_size=100000,
    volume_min=0.01,
    volume_step=0.01,
    volume_max=100,
    filling_mode=1,
    trade_mode=4,
    currency_profit="USD",
)
SPECS = {"EURUSD": EURUSD, "US30": replace(EURUSD, name="US30", volume_min=0.1, volume_step=0.1)}
# threshold 1 % < min 2 %: both rules reachable
BOTH = RuleSettings(
    min_profit_percent=2.0,
    partial_close_enabled=True,
    partial_close_threshold=1.0,
    partial_close_percent=50,
    profit_basis="balance",
    rules_mode="live",
)


def pos(
    ticket: int = 1,
    *,
    profit: float = 0.0,
    swap: float = 0.0,
    volume: float = 0.10,
    side: Side = Side.BUY,
    symbol: str = "EURUSD",
    price_open: float = 1.1,
    price_current: float = 1.1,
) -> Position:
    return Position(
        ticket=ticket,
        symbol=symbol,
        side=side,
        volume=volume,
        price_open=price_open,
        price_current=price_current,
        profit=profit,
        swap=swap,
    )


def run(
    positions: list[Position],
    s: RuleSettings = BOTH,
    *,
    account: Account = ACCOUNT,
    partial_done: set[int] | None = None,
    paused: bool = False,
) -> list[CloseDecision]:
    return evaluate(
        positions, account, s, specs=SPECS, partial_done=partial_done or set(), now=NOW, paused=paused
    )


# -- profit_percent: each basis by hand -----------------------------------------------------------


def test_balance_basis_includes_swap() -> None:
    # (150 - 20) / 5000 * 100 = 2.6
    assert profit_percent(pos(profit=150, swap=-20), ACCOUNT, "balance") == pytest.approx(2.6)
    assert profit_percent(pos(profit=150, swap=-20), ACCOUNT) == pytest.approx(2.6)  # default basis


def test_equity_basis() -> None:
    # (150 - 20) / 6500 * 100 = 2.0
    assert profit_percent(pos(profit=150, swap=-20), ACCOUNT, "equity") == pytest.approx(2.0)


def test_price_move_basis_is_signed_in_the_positions_favour() -> None:
    assert profit_percent(pos(price_open=1.1, price_current=1.122), ACCOUNT, "price_move") == pytest.approx(
        2.0
    )
    assert profit_percent(pos(price_open=1.1, price_current=1.078), ACCOUNT, "price_move") == pytest.approx(
        -2.0
    )
    sell = pos(side=Side.SELL, price_open=150.0, price_current=147.0)
    assert profit_percent(sell, ACCOUNT, "price_move") == pytest.approx(2.0)
    sell_against = pos(side=Side.SELL, price_open=150.0, price_current=153.0)
    assert profit_percent(sell_against, ACCOUNT, "price_move") == pytest.approx(-2.0)


def test_same_money_same_percent_on_every_symbol() -> None:
    # The seed's number depended on lots x price; ours is money over balance.
    a = pos(profit=100, volume=0.10, price_open=1.1)
    b = pos(profit=100, volume=0.01, price_open=60000.0, symbol="BTCUSD")
    assert profit_percent(a, ACCOUNT) == profit_percent(b, ACCOUNT) == pytest.approx(2.0)


@pytest.mark.parametrize("denominator", [0.0, -100.0, float("nan"), float("inf")])
def test_zero_or_negative_denominators_give_zero_and_never_close(denominator: float) -> None:
    broke = replace(ACCOUNT, balance=denominator, equity=denominator)
    big = pos(profit=1e9)
    assert profit_percent(big, broke, "balance") == 0.0
    assert profit_percent(big, broke, "equity") == 0.0
    assert run([big], account=broke) == []
    assert run([big], replace(BOTH, profit_basis="equity"), account=broke) == []
    assert profit_percent(pos(price_open=0.0, price_current=1.0), ACCOUNT, "price_move") == 0.0
    assert profit_percent(pos(profit=float("nan")), ACCOUNT, "balance") == 0.0


def test_unknown_basis_is_an_error() -> None:
    with pytest.raises(ValueError):
        profit_percent(pos(), ACCOUNT, "margin")


# -- rule order -----------------------------------------------------------------------------------


def test_rule_order_full_above_min_partial_between_nothing_below() -> None:
    below, between, above = pos(1, profit=25), pos(2, profit=75), pos(3, profit=125)  # 0.5 %, 1.5 %, 2.5 %
    decisions = run([above, below, between])
    assert decisions == [
        CloseDecision(
            ticket=2,
            volume=0.05,
            rule="partial_close",
            full=False,
            reason="profit 1.50% of balance >= partial threshold 1.00%: closing 50% (0.05 of 0.1 lots)",
        ),
        CloseDecision(
            ticket=3, volume=0.10, rule="min_profit", full=True, reason="profit 2.50% of balance >= 2.00%"
        ),
    ]


def test_exactly_at_the_thresholds() -> None:
    assert [d.rule for d in run([pos(profit=100)])] == ["min_profit"]  # 2.00 % >= 2.00 %
    assert [d.rule for d in run([pos(profit=50)])] == ["partial_close"]  # 1.00 % >= 1.00 %


def test_big_winner_is_fully_closed_not_partially() -> None:
    # The seed's inverted order closed big winners only partially.
    [d] = run([pos(profit=1000)])  # 20 %
    assert d.full and d.volume == 0.10 and d.rule == "min_profit"


def test_with_seed_defaults_partial_is_unreachable_and_full_close_wins() -> None:
    defaults = RuleSettings()  # min 2.0, threshold 5.0
    [d] = run([pos(profit=300)], defaults)  # 6 %: above both
    assert d.rule == "min_profit" and d.full
    assert run([pos(profit=75)], defaults) == []  # 1.5 %: below both
    [warning] = unreachable_rules(defaults)
    assert "partial_close_threshold 5 >= min_profit_percent 2" in warning
    assert "can never fire because the full close fires first" in warning
    assert unreachable_rules(BOTH) == []
    assert unreachable_rules(replace(defaults, partial_close_enabled=False)) == []
    assert unreachable_rules(replace(BOTH, partial_close_threshold=2.0)) != []  # equal: unreachable too


def test_equity_and_price_move_reasons() -> None:
    [d] = run([pos(profit=150, swap=-20)], replace(BOTH, profit_basis="equity"))  # 2.0 % of equity
    assert d.reason == "profit 2.00% of equity >= 2.00%"
    [d] = run(
        [pos(side=Side.SELL, price_open=150.0, price_current=147.0)], replace(BOTH, profit_basis="price_move")
    )
    assert d.reason == "price move 2.00% in favour >= 2.00%" and d.full


def test_losing_positions_are_never_closed() -> None:
    assert run([pos(profit=-500), pos(2, profit=120, swap=-130)]) == []  # swap turns the second into a loss


# -- partial close --------------------------------------------------------------------------------


def test_partial_only_once_per_ticket() -> None:
    p = pos(7, profit=75)  # 1.5 %
    assert [d.rule for d in run([p])] == ["partial_close"]
    assert run([p], partial_done={7}) == []
    # ...but the full close still applies once the position reaches the min
    [d] = run([replace(p, profit=125)], partial_done={7})
    assert d.rule == "min_profit" and d.volume == 0.10


def test_partial_is_of_the_current_volume_rounded_down_to_step() -> None:
    [d] = run([pos(profit=75, volume=1.0)])
    assert d.volume == 0.5
    [d] = run([pos(profit=75, volume=0.03)])  # 0.015 -> 0.01
    assert d.volume == 0.01
    [d] = run(
        [pos(profit=75, volume=0.5, symbol="US30")], replace(BOTH, partial_close_percent=30)
    )  # 0.15 -> 0.1
    assert d.volume == 0.1


def test_partial_at_volume_min_is_not_turned_into_a_full_close() -> None:
    assert run([pos(profit=75, volume=0.01)]) == []
    # 0.15 lots, min 0.1: 50 % = 0.075 rounds below the minimum; 0.1 would leave 0.05 (< min)
    assert run([pos(profit=75, volume=0.15, symbol="US30")]) == []


def test_missing_spec_duplicate_ticket_and_bad_volume_are_skipped() -> None:
    assert run([pos(profit=500, symbol="XAUUSD")]) == []
    assert run([pos(1, profit=500), pos(1, profit=500, volume=0.2)]) == []
    assert run([pos(1, profit=500, volume=0.0), pos(2, profit=500, volume=float("nan"))]) == []
    assert [d.ticket for d in run([pos(3, profit=500), pos(2, profit=500, symbol="XAUUSD")])] == [3]


# -- modes ----------------------------------------------------------------------------------------


def test_off_and_paused_return_nothing_dry_run_decides_the_same() -> None:
    book = [pos(1, profit=125), pos(2, profit=75)]
    live = run(book)
    assert len(live) == 2
    assert run(book, replace(BOTH, rules_mode="off")) == []
    assert run(book, paused=True) == []
    assert run(book, replace(BOTH, rules_mode="dry_run")) == live


# -- settings -------------------------------------------------------------------------------------


def test_settings_from_config_json() -> None:
    section = json.loads((Path(__file__).parent.parent / "config.json").read_text())["profit_monitor"]
    s = RuleSettings.from_mapping(section)
    assert s == RuleSettings(
        min_profit_percent=2.0,
        partial_close_enabled=True,
        partial_close_threshold=5.0,
        partial_close_percent=50,
        profit_basis="balance",
        rules_mode="live",
    )
    assert RuleSettings.from_mapping({}) == RuleSettings()
    assert RuleSettings.from_mapping({"check_interval": 30, "rules_mode": "dry_run"}).rules_mode == "dry_run"


@pytest.mark.parametrize(
    ("section", "needle"),
    [
        ({"min_profit_pct": 1.0}, "'min_profit_pct'"),
        ({"min_profit_percent": 0}, "min_profit_percent"),
        ({"min_profit_percent": -1.0}, "min_profit_percent"),
        ({"min_profit_percent": "2"}, "min_profit_percent"),
        ({"min_profit_percent": True}, "min_profit_percent"),
        ({"min_profit_percent": float("nan")}, "min_profit_percent"),
        ({"partial_close_threshold": 0.0}, "partial_close_threshold"),
        ({"partial_close_percent": 100}, "partial_close_percent"),
        ({"partial_close_percent": 0}, "partial_close_percent"),
        ({"partial_close_enabled": "yes"}, "partial_close_enabled"),
        ({"profit_basis": "margin"}, "profit_basis"),
        ({"rules_mode": "on"}, "rules_mode"),
    ],
)
def test_bad_settings_are_config_errors(section: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        RuleSettings.from_mapping(section)


def test_settings_section_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError):
        RuleSettings.from_mapping([("min_profit_percent", 1.0)])  # type: ignore[arg-type]


# -- properties -----------------------------------------------------------------------------------

STEPS = [(0.01, 0.01), (0.1, 0.1), (1.0, 1.0), (0.1, 0.01), (0.05, 0.01)]


@st.composite
def books(draw: st.DrawFn) -> tuple[list[Position], dict[str, SymbolSpec], set[int]]:
    specs: dict[str, SymbolSpec] = {}
    for i, (vmin, vstep) in enumerate(draw(st.lists(st.sampled_from(STEPS), min_size=1, max_size=4))):
        specs[f"S{i}"] = replace(EURUSD, name=f"S{i}", volume_min=vmin, volume_step=vstep, volume_max=500)
    names = [*specs, "MISSING"]
    tickets = draw(st.lists(st.integers(1, 10**6), min_size=0, max_size=25, unique=True))
    positions = []
    for t in tickets:
        name = draw(st.sampled_from(names))
        spec = specs.get(name, EURUSD)
        steps = draw(st.integers(0, 5000))
        volume = float(Decimal(repr(spec.volume_min)) + steps * Decimal(repr(spec.volume_step)))
        price_open = draw(st.floats(0.5, 70000))
        positions.append(
            Position(
                ticket=t,
                symbol=name,
                side=draw(st.sampled_from(list(Side))),
                volume=volume,
                price_open=price_open,
                price_current=price_open * draw(st.floats(0.8, 1.2)),
                profit=draw(st.floats(-5000, 5000)),
                swap=draw(st.floats(-50, 50)),
            )
        )
    partial_done = set(draw(st.lists(st.sampled_from(tickets), max_size=len(tickets)))) if tickets else set()
    return positions, specs, partial_done


rule_settings = st.builds(
    RuleSettings,
    min_profit_percent=st.floats(0.01, 20),
    partial_close_enabled=st.booleans(),
    partial_close_threshold=st.floats(0.01, 20),
    partial_close_percent=st.floats(1, 99),
    profit_basis=st.sampled_from(["balance", "equity", "price_move"]),
    rules_mode=st.sampled_from(["live", "dry_run"]),
)
accounts = st.builds(
    lambda b, e: replace(ACCOUNT, balance=b, equity=e), st.floats(-1000, 100000), st.floats(-1000, 100000)
)


def _is_multiple(volume: float, step: float) -> bool:
    return (Decimal(repr(volume)) / Decimal(repr(step))) % 1 == 0


@settings(max_examples=300, deadline=None)
@given(book=books(), s=rule_settings, account=accounts)
def test_property_volumes_are_valid_and_never_exceed_the_position(book, s, account) -> None:
    positions, specs, partial_done = book
    by_ticket = {p.ticket: p for p in positions}
    decisions = evaluate(positions, account, s, specs=specs, partial_done=partial_done, now=NOW)
    tickets = [d.ticket for d in decisions]
    assert tickets == sorted(set(tickets))  # sorted, one per ticket
    for d in decisions:
        p = by_ticket[d.ticket]
        spec = specs[p.symbol]  # never a position without a spec
        assert 0 < d.volume <= p.volume
        assert d.volume >= spec.volume_min - 1e-9
        assert _is_multiple(d.volume, spec.volume_step)
        if d.full:
            assert d.volume == p.volume and d.rule == "min_profit"
        else:
            assert d.rule == "partial_close" and d.ticket not in partial_done
            assert s.partial_close_enabled and s.partial_close_threshold < s.min_profit_percent
            assert p.volume - d.volume >= spec.volume_min - 1e-9  # what remains is still tradeable


@settings(max_examples=200, deadline=None)
@given(book=books(), s=rule_settings, account=accounts)
def test_property_deterministic_and_order_independent(book, s, account) -> None:
    positions, specs, partial_done = book
    first = evaluate(positions, account, s, specs=specs, partial_done=partial_done, now=NOW)
    again = evaluate(
        list(reversed(positions)),
        account,
        s,
        specs=dict(reversed(specs.items())),
        partial_done=set(partial_done),
        now=NOW,
    )
    assert first == again


@settings(max_examples=200, deadline=None)
@given(book=books(), s=rule_settings, account=accounts)
def test_property_off_and_paused_decide_nothing(book, s, account) -> None:
    positions, specs, partial_done = book
    assert (
        evaluate(
            positions, account, replace(s, rules_mode="off"), specs=specs, partial_done=partial_done, now=NOW
        )
        == []
    )
    assert evaluate(positions, account, s, specs=specs, partial_done=partial_done, now=NOW, paused=True) == []


@settings(max_examples=200, deadline=None)
@given(book=books(), s=rule_settings, account=accounts)
def test_property_partial_never_repeats(book, s, account) -> None:
    positions, specs, _ = book
    done: set[int] = set()
    decisions = evaluate(positions, account, s, specs=specs, partial_done=done, now=NOW)
    done |= {d.ticket for d in decisions if not d.full}
    # Apply the partial closes and look again: no ticket gets a second partial close.
    after = [
        replace(p, volume=p.volume - next((d.volume for d in decisions if d.ticket == p.ticket), 0.0))
        for p in positions
    ]
    again = evaluate(after, account, s, specs=specs, partial_done=done, now=NOW)
    assert not [d for d in again if not d.full and d.ticket in done]
