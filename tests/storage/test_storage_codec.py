"""The stored spelling of timestamps: one fixed-width UTC form whatever the caller passes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from conftest import T0
from hypothesis import given
from hypothesis import strategies as st

from fxnb.storage._codec import dumps, to_epoch, to_iso


@pytest.mark.parametrize(
    "value",
    [
        T0,
        int(T0),
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00.000Z",
        "2026-01-01T02:00:00+02:00",
        "2026-01-01T00:00:00",  # naive text is UTC
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2025, 12, 31, 21, tzinfo=timezone(timedelta(hours=-3))),
    ],
)
def test_every_spelling_of_one_instant_is_stored_the_same(value) -> None:
    assert to_iso(value) == "2026-01-01T00:00:00.000Z"
    assert to_epoch(value) == T0


def test_bad_timestamps_are_refused() -> None:
    with pytest.raises(ValueError):
        to_iso("yesterday")
    with pytest.raises(TypeError):
        to_iso(True)  # type: ignore[arg-type]


@given(st.floats(min_value=0, max_value=4_102_444_800), st.floats(min_value=0, max_value=4_102_444_800))
def test_text_order_is_time_order(a: float, b: float) -> None:
    """Fixed width: comparing the stored text compares the instants (to the millisecond)."""
    ia, ib = to_iso(a), to_iso(b)
    assert len(ia) == len(ib) == 24
    if int(a * 1000) < int(b * 1000) - 1:
        assert ia < ib
    assert abs(to_epoch(ia) - a) < 0.001


def test_json_accepts_enums_and_sets_but_not_nan() -> None:
    from fxnb.models import Side

    assert dumps({"side": Side.SELL, "tickets": {3, 1}}) == '{"side":"sell","tickets":[1,3]}'
    with pytest.raises(ValueError):
        dumps({"x": float("inf")})
