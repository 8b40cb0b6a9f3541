"""fxnb.rules for a whole book: profit_percents, evaluate with a precomputed mapping, reasons only for what fires.

``reference_evaluate`` is the straightforward per-position algorithm (every position sorted,
its percent and reason text computed): the batch version must decide exactly the same.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxnb import rules
from fxnb.models import POSITION_FIELDS, Account, Book, CloseDecision, Position, Side, SymbolSpec
from fxnb.rules import RuleSettings, evaluate, profit_percent, profit_percents
from fxnb.volume import percent_of

NOW = datetime(2024, 1, 1, 12, tzinfo=UTC)
ACCOUNT = Account(login=1, currency="USD", balance=5000.0, equity=6500.0, profit=1500.0, margin=100.0,
                  margin_free=6400.0, margin_level=6500.0)
EURUSD = SymbolSpec(name="EURUSD", digits=5, point=1e-5, contract_size=100000, volume_min=0.01, volume_step=0.01,
                    volume_max=100, filling_mode=1, trade_mode=4, currency_profit="USD")
SPECS = {"EURUSD": EURUSD, "US30": replace(EURUSD, name="US30", volume_min=0.1, volume_step=0.1)}


def reference_evaluate(positions: Iterable[Position], account: Account, s: RuleSettings, *,
                       specs: Mapping[str, SymbolSpec], partial_done: set[int]) -> list[CloseDecision]:
    if s.rules_mode == "off" or not rules._account_usable(account, s.profit_basis):
        return []
    positions = list(positions)
    counts = Counter(p.ticket for p in positions)
    partial_live = s.partial_close_enabled and s.partial_close_threshold < s.min_profit_percent
    out = []
    for pos in sorted(positions, key=lambda p: p.ticket):
        spec = specs.get(pos.symbol)
        if counts[pos.ticket] > 1 or spec is None or not math.isfinite(pos.volume) or pos.volume <= 0:
            continue
        pct = profit_percent(pos, account, s.profit_basis)
        what = rules._describe(pct, s.profit_basis)
        if pct >= s.min_profit_percent:
            out.append(CloseDecision(ticket=pos.ticket, volume=pos.volume, rule=rules.RULE_MIN_PROFIT, full=True,
                                     reason=f"{what} >= {s.min_profit_percent:.2f}%"))
        elif partial_live and pct >= s.partial_close_threshold and pos.ticket not in partial_done:
            vol = percent_of(pos.volume, s.partial_close_percent, volume_min=spec.volume_min,
                             volume_step=spec.volume_step)
            if vol is None or vol <= 0 or vol >= pos.volume - 1e-12:
                continue
            out.append(CloseDecision(
                ticket=pos.ticket, volume=vol, rule=rules.RULE_PARTIAL, full=False,
                reason=(f"{what} >= partial threshold {s.partial_close_threshold:.2f}%: closing "
                        f"{s.partial_close_percent:g}% ({rules._lots(vol)} of {rules._lots(pos.volume)} lots)")))
    return out


money = st.one_of(st.floats(-500, 500, allow_nan=False), st.sampled_from([float("nan"), float("inf"), -float("inf")]))
positions_st = st.lists(
    st.builds(
        Position,
        ticket=st.integers(1, 40),  # small: duplicates happen
        symbol=st.sampled_from(["EURUSD", "US30", "NOSPEC"]),
        side=st.sampled_from([Side.BUY, Side.SELL]),
        volume=st.sampled_from([0.01, 0.1, 0.15, 1.0, 2.5, 0.0, -1.0, float("nan")]),
        price_open=st.sampled_from([1.1, 1.0, 0.0, float("nan")]),
        price_current=st.floats(0.9, 1.3),
        profit=money,
        swap=st.sampled_from([0.0, -1.5, 2.0]),
    ),
    max_size=40,
)
settings_st = st.builds(
    RuleSettings,
    min_profit_percent=st.sampled_from([0.5, 2.0, 5.0]),
    partial_close_enabled=st.booleans(),
    partial_close_threshold=st.sampled_from([0.1, 1.0, 3.0, 6.0]),
    partial_close_percent=st.sampled_from([25.0, 50.0, 99.0]),
    profit_basis=st.sampled_from(["balance", "equity", "price_move"]),
    rules_mode=st.sampled_from(["live", "dry_run", "off"]),
)
accounts_st = st.builds(lambda b, e: replace(ACCOUNT, balance=b, equity=e),
                        st.sampled_from([5000.0, 100.0, 0.0, -10.0, float("nan")]),
                        st.sampled_from([6500.0, 50.0, 0.0, float("inf")]))


def columns(positions: list[Position]) -> Book:
    """The book built from columns, as the adapter builds it (no Position objects cached)."""
    return Book(*(tuple(getattr(p, name) for p in positions) for name in POSITION_FIELDS))


@settings(max_examples=400, deadline=None)
@given(positions_st, accounts_st, settings_st, st.sets(st.integers(1, 40)))
def test_batch_evaluate_decides_exactly_as_the_per_position_algorithm(
    positions: list[Position], account: Account, s: RuleSettings, partial_done: set[int]
) -> None:
    want = reference_evaluate(positions, account, s, specs=SPECS, partial_done=partial_done)
    kw = {"specs": SPECS, "partial_done": partial_done, "now": NOW}
    assert evaluate(positions, account, s, **kw) == want
    assert evaluate(iter(positions), account, s, **kw) == want  # any iterable
    assert evaluate(columns(positions), account, s, **kw) == want  # the monitor's Book
    pct = profit_percents(positions, account, s.profit_basis)
    assert evaluate(tuple(positions), account, s, profit_percent=pct, **kw) == want
    some = dict(list(pct.items())[::2])  # a partial mapping: the missing tickets are computed
    assert evaluate(positions, account, s, profit_percent=some, **kw) == want


@settings(max_examples=300, deadline=None)
@given(positions_st, accounts_st, st.sampled_from(["balance", "equity", "price_move"]))
def test_profit_percents_are_profit_percent_per_position(positions: list[Position], account: Account,
                                                         basis: str) -> None:
    want = {p.ticket: profit_percent(p, account, basis) for p in positions}
    for got in (profit_percents(positions, account, basis), profit_percents(columns(positions), account, basis)):
        assert got.keys() == want.keys()
        for t in want:
            assert got[t] == want[t] or (math.isnan(got[t]) and math.isnan(want[t]))


def test_profit_percents_refuses_an_unknown_basis() -> None:
    with pytest.raises(ValueError, match="unknown profit basis"):
        profit_percents([], ACCOUNT, "pips")


def test_reason_text_is_built_only_for_positions_that_fire(monkeypatch: pytest.MonkeyPatch) -> None:
    described: list[float] = []
    real = rules._describe

    def counting(pct: float, basis: str) -> str:
        described.append(pct)
        return real(pct, basis)

    monkeypatch.setattr(rules, "_describe", counting)
    book = [Position(ticket=i, symbol="EURUSD", side=Side.BUY, volume=1.0, price_open=1.1, price_current=1.1,
                     profit=float(i)) for i in range(1, 1001)]
    s = RuleSettings(min_profit_percent=19.0, partial_close_threshold=18.0)  # 950+ of 5000 and 900+ of 5000
    decisions = evaluate(book, ACCOUNT, s, specs=SPECS, partial_done=set(), now=NOW)
    assert len(decisions) == len(described) == 1000 - 899
    assert decisions[0].reason == "profit 18.00% of balance >= partial threshold 18.00%: closing 50% (0.5 of 1 lots)"
    assert decisions[-1].reason == "profit 20.00% of balance >= 19.00%"


def test_the_callers_mapping_is_used_as_given() -> None:
    p = Position(ticket=7, symbol="EURUSD", side=Side.BUY, volume=1.0, price_open=1.1, price_current=1.1,
                 profit=0.0)
    s = RuleSettings(min_profit_percent=2.0, partial_close_enabled=False)
    kw = {"specs": SPECS, "partial_done": set(), "now": NOW}
    assert evaluate([p], ACCOUNT, s, **kw) == []
    (d,) = evaluate([p], ACCOUNT, s, profit_percent={7: 2.5}, **kw)  # the monitor's value for this poll
    assert d.ticket == 7 and d.reason == "profit 2.50% of balance >= 2.00%"
    assert evaluate([p], ACCOUNT, s, profit_percent={7: float("nan")}, **kw) == []
