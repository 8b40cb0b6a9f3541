"""Trading days in server time, and the guards' memory as JSON."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from fxnb.guards import UNTIL_NEXT_DAY, UNTIL_RESUME, GuardState, day_key, day_start, next_reset


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(("now", "expected"), [
    (utc(2024, 1, 5, 21, 59), "2024-01-05"),  # server 23:59 Friday
    (utc(2024, 1, 5, 22, 0), "2024-01-06"),  # server 00:00 Saturday: rolled over before UTC midnight
    (utc(2024, 1, 5, 23, 30), "2024-01-06"),
    (utc(2024, 1, 6, 0, 30), "2024-01-06"),  # across UTC midnight: still the same server day
    (utc(2024, 1, 6, 21, 59, 59), "2024-01-06"),
])
def test_day_rolls_over_at_server_midnight_with_a_plus_two_offset(now: datetime, expected: str) -> None:
    assert day_key(now, 2, 0) == expected


def test_reset_hour_is_in_server_time() -> None:
    # reset at 05:00 server (03:00 UTC with +2): 02:59 UTC still belongs to the previous day
    assert day_key(utc(2024, 1, 6, 2, 59), 2, 5) == "2024-01-05"
    assert day_key(utc(2024, 1, 6, 3, 0), 2, 5) == "2024-01-06"
    # a negative offset: UTC-5, reset 17:00 server (New York close) = 22:00 UTC
    assert day_key(utc(2024, 1, 5, 21, 59), -5, 17) == "2024-01-04"
    assert day_key(utc(2024, 1, 5, 22, 0), -5, 17) == "2024-01-05"


def test_next_reset_is_the_utc_instant_of_the_next_server_day() -> None:
    assert next_reset(utc(2024, 1, 5, 12, 0), 2, 0) == utc(2024, 1, 5, 22, 0)
    assert next_reset(utc(2024, 1, 5, 22, 0), 2, 0) == utc(2024, 1, 6, 22, 0)
    assert next_reset(utc(2024, 1, 6, 2, 59), 2, 5) == utc(2024, 1, 6, 3, 0)
    assert next_reset(utc(2024, 1, 5, 12, 0), 5.5, 0) == utc(2024, 1, 5, 18, 30)
    # the window for realised_today: [day_start, next_reset)
    assert day_start(utc(2024, 1, 6, 0, 30), 2, 0) == utc(2024, 1, 5, 22, 0)
    assert day_start(utc(2024, 1, 6, 2, 59), 2, 5) == utc(2024, 1, 5, 3, 0)
    assert day_start(utc(2024, 1, 5, 22, 0), 2, 0) == utc(2024, 1, 5, 22, 0)


def test_other_zones_are_converted_and_naive_times_refused() -> None:
    cet = timezone(timedelta(hours=1))
    assert day_key(datetime(2024, 1, 5, 23, 0, tzinfo=cet), 2, 0) == "2024-01-06"  # 22:00 UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        day_key(datetime(2024, 1, 5, 12, 0), 2, 0)


FULL = GuardState(
    equity_hwm=10_512.25, hwm_period="session:2024-01-05T06:00:00+00:00", day_key="2024-01-05",
    day_start_balance=10_200.0, daily_forgiven=-512.5, daily_rebase=True, locked=True, lock_kind=UNTIL_NEXT_DAY,
    lock_reason="daily loss 510.00 >= max 510.00", lock_guards=("daily_loss",), lock_day="2024-01-05",
    lock_until=utc(2024, 1, 5, 22, 0), locked_at=utc(2024, 1, 5, 12, 0),
    warnings_sent=("daily_loss:2024-01-05", "drawdown:session:2024-01-05T06:00:00+00:00"),
    session_close_fired=("2023-12-29",), last_actions=(("daily_loss", "2024-01-05T12:00:00+00:00", "closed 3"),),
)


def test_json_round_trip() -> None:
    assert GuardState.from_json(FULL.to_json()) == FULL
    assert GuardState.from_json(GuardState().to_json()) == GuardState()
    assert GuardState.from_json("{}") == GuardState()  # missing keys take defaults
    assert FULL.to_dict()["lock_until"] == "2024-01-05T22:00:00+00:00"


@pytest.mark.parametrize("text", [
    "not json", "[]", '{"version": 99}', '{"locked": "yes"}', '{"locked": true}',
    '{"lock_kind": "forever", "locked": true}', '{"equity_hwm": "high"}', '{"lock_until": "tomorrow"}',
    '{"warnings_sent": "x"}', '{"last_actions": [["a", "b"]]}',
])
def test_unreadable_state_is_an_error_not_a_fresh_unlocked_state(text: str) -> None:
    with pytest.raises(ValueError, match="guard state"):
        GuardState.from_json(text)


def test_non_finite_numbers_are_refused() -> None:
    with pytest.raises(ValueError):
        GuardState(equity_hwm=float("nan"))


def test_memory_helpers() -> None:
    s = GuardState().with_warning("drawdown:day:2024-01-05").with_warning("daily_loss:2024-01-05")
    assert s.warned("drawdown:day:2024-01-05")
    assert s.without_warnings("drawdown").warnings_sent == ("daily_loss:2024-01-05",)
    s = s.with_action("basket", utc(2024, 1, 5, 12), "closed 2").with_action("basket", utc(2024, 1, 5, 13), "x")
    assert s.last_action("basket") == "2024-01-05T13:00:00+00:00 x" and s.last_action("trailing") is None
    for d in range(1, 12):
        s = s.with_session_fired(f"2024-01-{d:02d}")
    assert s.session_close_fired[0] == "2024-01-05" and len(s.session_close_fired) == 7
    assert replace(FULL, locked=False, lock_kind="") != FULL and UNTIL_RESUME != UNTIL_NEXT_DAY
