"""The stored spelling of timestamps: one fixed-width UTC form whatever the caller passes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from conftest import T0
from hypothesis import given
from hypothesis import strategies as st

from fxnb.storage._codec import dumps, iso_utc, to_epoch, to_iso


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


# iso_utc formats the date and time of day once per second and the fraction itself: it must spell
# every instant exactly as the datetime route does (microsecond rounding half to even, then
# milliseconds truncated), including fractions that round up into the next second.
def _iso_reference(epoch: float) -> str:
    return datetime.fromtimestamp(float(epoch), UTC).isoformat(timespec="milliseconds")[:23] + "Z"


@given(st.floats(min_value=0, max_value=4.2e9, allow_nan=False))
def test_iso_utc_spells_any_instant_as_datetime_does(epoch: float) -> None:
    assert iso_utc(epoch) == _iso_reference(epoch)


@pytest.mark.parametrize("epoch", [0, 1.0, 1_764_000_000.0009995, 1_764_000_000.9999995, 1_764_000_000.0000005,
                                   1_764_000_000.9995, 1_764_000_059.99999999, 4_102_444_799.999])
def test_iso_utc_at_rounding_edges(epoch: float) -> None:
    assert iso_utc(epoch) == _iso_reference(epoch)
