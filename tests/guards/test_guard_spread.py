"""The spread filter defers profit rules and optional guards, never the emergency flattens."""

from __future__ import annotations

from datetime import UTC, datetime

from guardkit import EURUSD, SPECS, XAUUSD, account, guards, pos, row, run, spec

from fxnb.guards import Blocked, GuardSettings, GuardState, filter_by_spread, spread_ok, spread_points, spread_warning
from fxnb.models import CloseDecision

FILTER = guards(spread={"max_points": 30, "per_symbol": {"XAUUSD": 60}})
WIDE = {"EURUSD": spec(bid=1.1, ask=1.10040, spread=40), "XAUUSD": XAUUSD}  # EURUSD 40 > 30; XAUUSD 25 < 60


def test_spread_points_prefers_the_quote() -> None:
    assert spread_points(EURUSD) == 10
    assert spread_points(spec(bid=0.0, ask=0.0, spread=17)) == 17
    assert spread_points(spec(bid=1.1, ask=1.10035, spread=0)) == 35


def test_profit_rules_are_deferred_emergencies_are_not() -> None:
    wide = WIDE["EURUSD"]
    for rule in ("min_profit", "partial_close", "basket", "session_close"):
        ok, why = spread_ok(wide, FILTER, rule)
        assert not ok and why == f"spread 40 points on EURUSD > max 30: {rule} deferred"
    for rule in ("drawdown", "daily_loss"):
        assert spread_ok(wide, FILTER, rule) == (True, "")
    assert spread_ok(wide, FILTER, "trailing") == (True, "")  # not in applies_to by default
    assert spread_ok(EURUSD, FILTER, "min_profit") == (True, "")  # 10 points
    assert spread_ok(spec("XAUUSD", spread=59, bid=0.0, ask=0.0), FILTER, "min_profit") == (True, "")
    assert spread_ok(wide, GuardSettings(), "min_profit") == (True, "")  # filter disabled
    assert spread_ok(wide, FILTER.spread, "min_profit")[0] is False  # SpreadSettings works as well


def test_filter_for_the_profit_rules_decisions() -> None:
    book = [pos(1), pos(2, symbol="XAUUSD"), pos(3), pos(4, symbol="GBPUSD")]
    decisions = [CloseDecision(1, 0.1, "p", "min_profit"), CloseDecision(2, 0.1, "p", "min_profit"),
                 CloseDecision(3, 0.05, "p", "partial_close", full=False), CloseDecision(4, 0.1, "p", "min_profit"),
                 CloseDecision(5, 0.1, "p", "min_profit")]
    kept, blocked = filter_by_spread(decisions, book, WIDE, FILTER)
    assert [d.ticket for d in kept] == [2, 4, 5]  # XAUUSD within its own limit; unknown spec/ticket kept
    assert blocked == [Blocked(1, "min_profit", "spread 40 points on EURUSD > max 30: min_profit deferred"),
                       Blocked(3, "partial_close", "spread 40 points on EURUSD > max 30: partial_close deferred")]


def test_operator_commands_get_a_warning_not_a_block() -> None:
    assert spread_warning(WIDE["EURUSD"], FILTER) == (
        "spread 40 points on EURUSD is above the guard's limit of 30; executed anyway "
        "(operator commands are never deferred)")
    assert spread_warning(EURUSD, FILTER) is None
    assert spread_warning(WIDE["EURUSD"], GuardSettings()) is None


def test_drawdown_and_daily_loss_flatten_through_a_wide_spread() -> None:
    s = guards(spread={"max_points": 30}, daily_loss={"max_loss": 100, "unit": "money"},
               basket={"stop_loss": 50})
    out = run([pos(1, profit=-120), pos(2, symbol="XAUUSD")], s, specs=WIDE)
    assert [(d.ticket, d.rule) for d in out.closes] == [(1, "daily_loss"), (2, "daily_loss")]
    assert out.blocked == [] and out.lock is not None


def test_basket_waits_whole_while_any_member_spread_is_wide() -> None:
    s = guards(spread={"max_points": 30, "per_symbol": {"XAUUSD": 60}}, basket={"take_profit": 100})
    book = [pos(1, profit=150), pos(2, symbol="XAUUSD")]
    out = run(book, s, specs=WIDE)
    assert out.closes == [] and [b.ticket for b in out.blocked] == [1]
    assert "whole group deferred" in out.blocked[0].reason
    out = run(book, s, specs=SPECS)  # spread back to 10 points
    assert [d.ticket for d in out.closes] == [1, 2]
    assert row(out, "spread").state == "ok" and row(run(book, s, specs=WIDE), "spread").state == "warning"


def test_session_close_closes_what_it_can_and_retries_the_rest() -> None:
    s = guards(spread={"max_points": 30, "per_symbol": {"XAUUSD": 60}}, session_close={"time": "21:45"})
    book = [pos(1), pos(2, symbol="XAUUSD")]
    friday = datetime(2024, 1, 5, 19, 45, tzinfo=UTC)
    out = run(book, s, specs=WIDE, now=friday)
    assert [d.ticket for d in out.closes] == [2] and [b.ticket for b in out.blocked] == [1]
    assert out.state.session_close_fired == ()  # not done yet
    assert [a.kind for a in out.alerts] == ["guard_fired", "guard_warning"]
    again = run(book[:1], s, out.state, specs=WIDE, now=friday.replace(minute=46))
    assert again.closes == [] and [a.kind for a in again.alerts] == []  # warned once
    done = run(book[:1], s, again.state, specs=SPECS, now=friday.replace(minute=47))
    assert [d.ticket for d in done.closes] == [1] and done.state.session_close_fired == ("2024-01-05",)


def test_stop_moves_are_deferred_only_if_named() -> None:
    book = [pos(1, price_open=1.1, price_current=1.104)]
    trail = {"distance": 300, "activation_points": 300}
    assert run(book, guards(spread={"max_points": 30}, trailing=trail), specs=WIDE).stop_moves
    s = guards(spread={"max_points": 30, "applies_to": ["trailing"]}, trailing=trail)
    out = run(book, s, specs=WIDE)
    assert out.stop_moves == [] and out.blocked[0].rule == "trailing"


def test_spread_status_reports_the_tightest_margin() -> None:
    out = run([pos(1), pos(2, symbol="XAUUSD")], FILTER, GuardState(), specs=WIDE, acct=account())
    r = row(out, "spread")
    assert (r.state, r.value, r.limit, r.distance) == ("warning", 40, 30, -10)
    assert r.distance_text.startswith("EURUSD spread 40 points (max 30): deferring min_profit")
