"""Trading days in the terminal's server time, from an aware UTC clock.

Why: a daily loss limit "resets at midnight", but whose midnight? MT5 servers
run on their own clock (commonly UTC+2, UTC+3 in summer) and prop firms reset at
an hour of that clock. So the day is a function of ``(now, utc_offset_hours,
reset_hour)``: shift UTC to server time, subtract the reset hour, take the date.
With offset +2 and reset 0 the day rolls over at 22:00 UTC, before UTC midnight.
Summer time is not modelled: the offset is whatever the config says.

No clock is read here; ``now`` is always passed in and must be timezone-aware.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta


def as_utc(now: datetime) -> datetime:
    """``now`` in UTC; a naive datetime is refused (it would silently mean local time)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {now!r}")
    return now.astimezone(UTC)


def server_time(now: datetime, utc_offset_hours: float) -> datetime:
    """Wall-clock server time, as a naive datetime (the server's clock has no zone in MT5)."""
    return (as_utc(now) + timedelta(hours=utc_offset_hours)).replace(tzinfo=None)


def trading_date(now: datetime, utc_offset_hours: float, reset_hour: int = 0) -> date:
    """The server-time date of the trading day ``now`` belongs to."""
    return (server_time(now, utc_offset_hours) - timedelta(hours=reset_hour)).date()


def day_key(now: datetime, utc_offset_hours: float, reset_hour: int = 0) -> str:
    """The trading day as ``YYYY-MM-DD`` (the server date on which it began)."""
    return trading_date(now, utc_offset_hours, reset_hour).isoformat()


def day_start(now: datetime, utc_offset_hours: float, reset_hour: int = 0) -> datetime:
    """The aware UTC instant at which ``now``'s trading day began (e.g. to sum today's realised deals)."""
    midnight = datetime.combine(trading_date(now, utc_offset_hours, reset_hour), datetime.min.time())
    return (midnight + timedelta(hours=reset_hour - utc_offset_hours)).replace(tzinfo=UTC)


def next_reset(now: datetime, utc_offset_hours: float, reset_hour: int = 0) -> datetime:
    """The aware UTC instant at which the trading day after ``now``'s begins."""
    return day_start(now, utc_offset_hours, reset_hour) + timedelta(days=1)
