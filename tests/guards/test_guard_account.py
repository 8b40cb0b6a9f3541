"""Drawdown and daily loss, computed by hand: warn once, flatten, lock, unlock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from guardkit import NOW, STARTED, account, guards, pos, row, run

from fxnb.guards import UNTIL_NEXT_DAY, UNTIL_RESUME, GuardOutcome, GuardState, LockRequest, unlock
from fxnb.models import CloseDecision

DD = guards(drawdown={"max_percent": 5, "warning_ratio": 0.8, "period": "session"})
BOOK = [pos(3, profit=-100), pos(1, profit=-200, volume=0.25), pos(2, profit=50, volume=1.0)]


def step(equity: float, state: GuardState, *, now: datetime = NOW, started: datetime = STARTED) -> GuardOutcome:
    return run(BOOK, DD, state, acct=account(10_000, equity), now=now, started=started)


# -- drawdown -------------------------------------------------------------------------------------


def test_drawdown_tracks_the_high_water_mark_warns_once_then_flattens_and_locks() -> None:
    out = step(10_000, GuardState())
    assert out.closes == [] and out.alerts == [] and out.state.equity_hwm == 10_000
    assert row(out, "drawdown").state == "ok" and row(out, "drawdown").value == 0.0

    out = step(10_500, out.state)  # new high
    assert out.state.equity_hwm == 10_500

    out = step(10_070, out.state)  # (10500 - 10070) / 10500 = 4.095 % >= 0.8 x 5 % = 4 %
    [alert] = out.alerts
    assert alert.kind == "guard_warning" and alert.guard == "drawdown" and out.closes == []
    assert "4.10% >= 80% of the 5% limit" in alert.message
    r = row(out, "drawdown")
    assert r.state == "warning" and r.value == pytest.approx(4.0952, abs=1e-4) and r.limit == 5
    assert r.distance == pytest.approx(0.9048, abs=1e-4) and "0.90 percentage points to go" in r.distance_text

    out = step(10_050, out.state)  # deeper, still below the limit: no second warning
    assert out.alerts == [] and row(out, "drawdown").state == "warning"

    out = step(9_975, out.state)  # (10500 - 9975) / 10500 = 5.0 %: fire
    assert out.closes == [
        CloseDecision(ticket=t, volume=v, rule="drawdown", full=True, reason=out.closes[0].reason)
        for t, v in ((1, 0.25), (2, 1.0), (3, 0.10))
    ]
    assert "drawdown 5.00% >= max 5%" in out.closes[0].reason
    assert out.lock == LockRequest(kind=UNTIL_RESUME, guards=("drawdown",), reason=out.closes[0].reason,
                                   until=None, flatten=True)
    assert [a.kind for a in out.alerts] == ["guard_fired"]
    assert out.state.locked and out.state.lock_kind == UNTIL_RESUME and row(out, "drawdown").state == "fired"
    assert "closed 3 position(s), locked until resume_rules" in (row(out, "drawdown").last_action or "")
    locked = out.state

    # The closes failed (positions still open), equity even lower: locked means no new closes.
    out = step(9_000, locked, now=NOW + timedelta(days=3))
    assert out.closes == [] and out.lock is None and out.alerts == [] and out.state.locked
    assert row(out, "drawdown").state == "locked" and row(out, "drawdown").value == pytest.approx(14.2857, 1e-4)

    # The operator resumes: the high-water mark re-anchors at the current equity.
    resumed = unlock(out.state, NOW + timedelta(days=3), by_operator=True)
    assert not resumed.locked and resumed.equity_hwm is None
    assert "unlocked by operator" in (resumed.last_action("drawdown") or "")
    out = step(9_000, resumed)
    assert out.closes == [] and out.state.equity_hwm == 9_000 and row(out, "drawdown").state == "ok"


def test_drawdown_lock_does_not_end_with_the_day() -> None:
    out = step(9_000, replace(GuardState(), equity_hwm=10_000, hwm_period=f"session:{STARTED.isoformat()}"))
    assert out.state.lock_kind == UNTIL_RESUME
    assert unlock(out.state, NOW + timedelta(days=7), by_operator=False) == out.state
    assert step(12_000, out.state, now=NOW + timedelta(days=7)).state.locked


def test_drawdown_period_day_resets_the_high_at_the_server_day() -> None:
    s = guards(drawdown={"max_percent": 5, "period": "day", "utc_offset_hours": 2, "reset_hour": 0})
    out = run([], s, acct=account(10_000, 10_500), now=datetime(2024, 1, 5, 21, 0, tzinfo=UTC))
    assert out.state.hwm_period == "day:2024-01-05" and out.state.equity_hwm == 10_500
    # 22:30 UTC is already 2024-01-06 on the server: the high restarts at the current equity
    out = run([], s, out.state, acct=account(10_000, 10_000), now=datetime(2024, 1, 5, 22, 30, tzinfo=UTC))
    assert out.state.hwm_period == "day:2024-01-06" and out.state.equity_hwm == 10_000 and out.closes == []


def test_session_period_restarts_with_a_new_monitor_session() -> None:
    out = step(10_500, GuardState())
    out = step(10_000, out.state, started=STARTED + timedelta(hours=1))
    assert out.state.equity_hwm == 10_000 and out.state.hwm_period.startswith("session:2024-01-05T07:00")


def test_unusable_equity_is_not_evaluated() -> None:
    out = step(float("nan"), GuardState())
    assert out.closes == [] and "equity unknown" in row(out, "drawdown").distance_text


# -- daily loss -----------------------------------------------------------------------------------

DL = guards(daily_loss={"max_loss": 500, "unit": "money", "warning_ratio": 0.8, "utc_offset_hours": 2,
                        "reset_hour": 0})


def test_daily_loss_counts_realised_plus_floating_warns_once_and_locks_until_the_next_day() -> None:
    book = [pos(1, profit=-150, swap=-10), pos(2, profit=20)]  # floating -140
    out = run(book, DL, realised=-200)  # loss 340 < 400: ok
    assert out.alerts == [] and row(out, "daily_loss").value == pytest.approx(340)
    assert out.state.day_key == "2024-01-05" and out.state.day_start_balance == 10_200  # 10000 - (-200)

    out = run(book, DL, out.state, realised=-260)  # loss 400 = 0.8 x 500: warning
    [alert] = out.alerts
    assert alert.kind == "guard_warning" and alert.data["loss"] == 400 and out.closes == []
    out = run(book, DL, out.state, realised=-300)  # 440: no second warning
    assert out.alerts == []

    out = run(book, DL, out.state, realised=-360)  # 500: fire
    assert [(d.ticket, d.rule, d.full) for d in out.closes] == [(1, "daily_loss", True), (2, "daily_loss", True)]
    assert out.lock is not None and out.lock.kind == UNTIL_NEXT_DAY
    assert out.lock.until == datetime(2024, 1, 5, 22, 0, tzinfo=UTC)  # server midnight at UTC+2
    assert out.state.lock_day == "2024-01-05"
    assert "daily loss 500.00 >= max 500.00 on 2024-01-05" in out.lock.reason
    locked = out.state

    still = run(book, DL, locked, realised=-360, now=datetime(2024, 1, 5, 21, 59, tzinfo=UTC))
    assert still.closes == [] and still.state.locked and row(still, "daily_loss").state == "locked"

    # 22:00 UTC = 00:00 server time on 2024-01-06: the lock ends, a new day begins
    nxt = run([], DL, still.state, realised=0.0, acct=account(9_640),
              now=datetime(2024, 1, 5, 22, 0, tzinfo=UTC))
    assert not nxt.state.locked and [a.kind for a in nxt.alerts] == ["guard_unlocked"]
    assert nxt.state.day_key == "2024-01-06" and nxt.state.day_start_balance == 9_640
    assert row(nxt, "daily_loss").state == "ok"
    assert "lock ended: new trading day" in (row(nxt, "daily_loss").last_action or "")


def test_percent_limit_uses_the_days_starting_balance() -> None:
    s = guards(daily_loss={"max_loss": 5, "unit": "percent"})
    # monitor started mid-day after a realised loss of 200: the day began at 10,200; 5 % = 510
    out = run([pos(1, profit=-309)], s, realised=-200)
    assert row(out, "daily_loss").limit == pytest.approx(510) and out.closes == []
    out = run([pos(1, profit=-310)], s, out.state, realised=-200)
    assert out.closes and out.lock is not None


def test_operator_reset_forgives_the_loss_so_far_for_the_rest_of_the_day() -> None:
    book = [pos(1, profit=-100)]
    out = run(book, DL, realised=-400)
    assert out.state.locked
    reset = unlock(out.state, NOW, by_operator=True)
    assert not reset.locked and reset.daily_rebase
    out = run(book, DL, reset, realised=-400)  # same loss: forgiven, no refire
    assert out.closes == [] and out.lock is None and out.state.daily_forgiven == -500
    assert row(out, "daily_loss").value == 0
    out = run(book, DL, out.state, realised=-800)  # 400 more: the warning can fire again
    assert [a.kind for a in out.alerts] == ["guard_warning"]
    out = run(book, DL, out.state, realised=-900)  # 500 more than at the reset: fire again
    assert out.lock is not None
    # the forgiveness ends with the day
    tomorrow = run([], DL, unlock(out.state, NOW, by_operator=True), now=NOW + timedelta(days=1))
    assert tomorrow.state.daily_forgiven == 0 and not tomorrow.state.daily_rebase


def test_automatic_unlock_only_lifts_a_daily_lock_whose_time_has_come() -> None:
    out = run([pos(1, profit=-600)], DL)
    assert unlock(out.state, NOW, by_operator=False) == out.state
    assert not unlock(out.state, datetime(2024, 1, 5, 22, 0, tzinfo=UTC), by_operator=False).locked
    assert unlock(GuardState(), NOW, by_operator=True) == GuardState()


def test_both_fire_the_most_protective_names_the_closes_and_the_lock_waits_for_the_operator() -> None:
    s = guards(drawdown={"max_percent": 5, "period": "session"}, daily_loss={"max_loss": 500, "unit": "money"})
    state = replace(GuardState(), equity_hwm=10_000, hwm_period=f"session:{STARTED.isoformat()}")
    out = run([pos(1, profit=-600), pos(2, profit=0)], s, state, acct=account(10_000, 9_400))
    assert {d.rule for d in out.closes} == {"drawdown"} and [d.ticket for d in out.closes] == [1, 2]
    assert out.lock is not None and out.lock.kind == UNTIL_RESUME and out.lock.guards == ("drawdown", "daily_loss")
    assert [a.guard for a in out.alerts] == ["drawdown", "daily_loss"]
    assert unlock(out.state, NOW + timedelta(days=1), by_operator=False) == out.state
    resumed = unlock(out.state, NOW, by_operator=True)
    assert resumed.equity_hwm is None and resumed.daily_rebase
