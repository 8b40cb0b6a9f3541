"""Basket targets and the scheduled session close, computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from guardkit import account, guards, pos, row, run

from fxnb.models import CloseDecision

BASKET = guards(basket={"take_profit": 300, "stop_loss": 200, "unit": "money", "group_by": "none"})


def test_basket_take_profit_on_the_total_including_swap() -> None:
    book = [pos(1, profit=250), pos(2, profit=40, swap=-5), pos(3, profit=-10)]  # 250 + 35 - 10 = 275
    out = run(book, BASKET)
    assert out.closes == []
    r = row(out, "basket")
    assert (r.state, r.value, r.limit, r.distance) == ("ok", 275, 300, 25)
    assert r.distance_text == "all positions: P/L 275.00, 25.00 to take profit 300.00"

    book[0] = pos(1, profit=280)  # 305
    out = run(book, BASKET)
    reason = "basket take profit: all positions P/L 305.00 >= 300.00"
    assert out.closes == [CloseDecision(ticket=t, volume=0.10, reason=reason, rule="basket", full=True)
                          for t in (1, 2, 3)]
    [alert] = out.alerts
    assert alert.kind == "guard_fired" and alert.data["tickets"] == [1, 2, 3]
    assert row(out, "basket").state == "fired" and "closed 3 position(s)" in (row(out, "basket").last_action or "")
    assert out.lock is None and not out.state.locked


def test_basket_stop_loss_is_a_positive_amount_of_loss() -> None:
    out = run([pos(1, profit=-150), pos(2, profit=-49.99)], BASKET)  # -199.99
    assert out.closes == [] and row(out, "basket").distance == pytest.approx(0.01)
    assert row(out, "basket").limit == -200
    out = run([pos(1, profit=-150), pos(2, profit=-50)], BASKET)  # -200
    assert [d.ticket for d in out.closes] == [1, 2] and "basket stop loss" in out.closes[0].reason


def test_groups_by_symbol_and_by_magic() -> None:
    s = guards(basket={"take_profit": 300, "group_by": "symbol"})
    book = [pos(1, profit=200), pos(2, profit=120), pos(3, symbol="XAUUSD", profit=-50, price_open=2000.0)]
    out = run(book, s)  # EURUSD 320 fires, XAUUSD -50 does not, everything together would be 270
    assert [d.ticket for d in out.closes] == [1, 2] and "EURUSD P/L 320.00" in out.closes[0].reason

    s = guards(basket={"stop_loss": 100, "group_by": "magic"})
    book = [pos(1, profit=-60, magic=7), pos(2, profit=-60, magic=7), pos(3, profit=-90, magic=8)]
    out = run(book, s)
    assert [d.ticket for d in out.closes] == [1, 2] and "magic 7 P/L -120.00" in out.closes[0].reason
    r = row(out, "basket")
    # the row shows the group nearest its trigger, here the one that fired
    assert (r.value, r.limit, r.distance) == (-120, -100, -20)
    assert r.distance_text == "magic 7: P/L -120.00, stop loss -100.00 reached"
    r = row(run(book[2:], s), "basket")
    assert r.value == -90 and r.distance == pytest.approx(10) and r.state == "ok"


def test_percent_of_balance() -> None:
    s = guards(basket={"take_profit": 2, "unit": "percent"})  # 2 % of 10,000 = 200
    assert run([pos(1, profit=199)], s).closes == []
    assert run([pos(1, profit=200)], s).closes
    assert run([pos(1, profit=200)], s, acct=account(balance=20_000)).closes == []
    out = run([pos(1, profit=1e6)], s, acct=account(balance=float("nan")))
    assert out.closes == [] and "balance unknown" in row(out, "basket").distance_text


# -- session close --------------------------------------------------------------------------------

WEEKEND = guards(session_close={"weekend": True, "weekday": 4, "time": "21:45", "utc_offset_hours": 2})
BOOK = [pos(2, symbol="XAUUSD", price_open=2000.0, volume=0.5), pos(1)]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_weekend_close_on_friday_at_21_45_server_time() -> None:
    # 2024-01-05 is a Friday; 21:45 server time at UTC+2 is 19:45 UTC
    before = run(BOOK, WEEKEND, now=utc(2024, 1, 5, 19, 44))
    assert before.closes == []
    r = row(before, "session_close")
    assert r.distance == 60 and r.distance_text == "next close Fri 2024-01-05 21:45 server time (in 0h 01m)"

    out = run(BOOK, WEEKEND, before.state, now=utc(2024, 1, 5, 19, 45))
    reason = "session close at 21:45 server time (Fri)"
    assert out.closes == [CloseDecision(ticket=1, volume=0.10, reason=reason, rule="session_close", full=True),
                          CloseDecision(ticket=2, volume=0.5, reason=reason, rule="session_close", full=True)]
    assert out.state.session_close_fired == ("2024-01-05",) and row(out, "session_close").state == "fired"
    assert [a.kind for a in out.alerts] == ["guard_fired"]

    # once per day: positions still (or again) open later that evening are left alone
    later = run(BOOK, WEEKEND, out.state, now=utc(2024, 1, 5, 21, 30))
    assert later.closes == [] and "next close Fri 2024-01-12 21:45" in row(later, "session_close").distance_text


def test_not_on_other_days_and_again_next_friday() -> None:
    assert run(BOOK, WEEKEND, now=utc(2024, 1, 4, 20, 0)).closes == []  # Thursday
    assert run(BOOK, WEEKEND, now=utc(2024, 1, 5, 22, 30)).closes == []  # already Saturday 00:30 server
    assert len(run(BOOK, WEEKEND, now=utc(2024, 1, 12, 19, 50)).closes) == 2


def test_server_friday_can_be_utc_thursday() -> None:
    s = guards(session_close={"weekday": 4, "time": "01:00", "utc_offset_hours": 3})
    assert run(BOOK, s, now=utc(2024, 1, 4, 21, 59)).closes == []
    assert len(run(BOOK, s, now=utc(2024, 1, 4, 22, 0)).closes) == 2  # Thursday UTC = Friday 01:00 server


def test_symbols_filter_and_daily() -> None:
    s = guards(session_close={"daily": True, "time": "23:00", "symbols": ["XAUUSD"]})
    out = run(BOOK, s, now=utc(2024, 1, 3, 21, 0))  # Wednesday 23:00 server
    assert [d.ticket for d in out.closes] == [2]
    assert "every day" in out.closes[0].reason


def test_firing_with_nothing_open_still_counts_for_the_day() -> None:
    out = run([], WEEKEND, now=utc(2024, 1, 5, 19, 45))
    assert out.closes == [] and out.alerts == [] and out.state.session_close_fired == ("2024-01-05",)
    assert run(BOOK, WEEKEND, out.state, now=utc(2024, 1, 5, 19, 46)).closes == []


def test_basket_wins_over_session_close_for_the_same_ticket() -> None:
    s = guards(basket={"take_profit": 100}, session_close={"time": "21:45"})
    book = [pos(1, profit=150), pos(2, symbol="XAUUSD", price_open=2000.0)]
    out = run(book, s, now=utc(2024, 1, 5, 19, 45))
    assert [(d.ticket, d.rule) for d in out.closes] == [(1, "basket"), (2, "basket")]
    assert out.state.session_close_fired == ("2024-01-05",)
