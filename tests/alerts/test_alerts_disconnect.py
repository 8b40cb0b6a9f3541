"""DisconnectWatch: an alert only for an outage that lasts, and "back" only after one."""

from __future__ import annotations

import pytest

from fxnb.alerts import DisconnectWatch


class Clock:
    def __init__(self, t: float = 1_767_225_600.0) -> None:
        self.t = t

    def __call__(self, advance: float = 0.0) -> float:
        self.t += advance
        return self.t


def test_short_blip_alerts_nothing():
    w, now = DisconnectWatch(30), Clock()
    assert w.update(True, now()) is None
    assert w.update(False, now(1)) is None
    assert w.update(False, now(29)) is None  # 29 s down: below the threshold
    assert w.update(True, now(0.5)) is None  # back: no "reconnected" without a "disconnected"
    assert w.update(False, now(10)) is None  # a new outage starts its own clock
    assert w.update(False, now(29.9)) is None


def test_long_outage_alerts_once_then_back():
    w, now = DisconnectWatch(30), Clock()
    w.update(True, now())
    start = now(5)
    assert w.update(False, start) is None
    assert w.update(False, now(10)) is None
    a = w.update(False, now(20))  # exactly 30 s
    assert a is not None and a.kind == "disconnected" and a.level == "error" and a.at == now()
    assert a.data == {"down_since": "2026-01-01T00:00:05.000Z", "outage_seconds": 30.0, "threshold_seconds": 30.0}
    assert "30 s" in a.message
    assert w.update(False, now(60)) is None  # no repeats while it lasts
    assert w.update(False, now(3600)) is None
    b = w.update(True, now(0.5))
    assert b is not None and b.kind == "reconnected" and b.level == "info" and b.at == now()
    assert b.data == {"outage_seconds": 3690.5}
    assert "monitor back" in b.message and "1 h 1 min" in b.message
    assert w.update(True, now(1)) is None  # only once
    # the next outage can alert again
    w.update(False, now(1))
    assert w.update(False, now(31)).kind == "disconnected"


def test_check_fires_between_attempts_on_the_last_state():
    w, now = DisconnectWatch(10), Clock()
    assert w.check(now()) is None  # nothing observed yet
    assert w.update(False, now()) is None  # never connected since start: counts as an outage
    assert w.check(now(5)) is None
    assert w.check(now(5)).kind == "disconnected"
    assert w.check(now(5)) is None
    assert w.update(True, now(1)).kind == "reconnected"
    assert w.check(now(100)) is None


def test_zero_threshold_alerts_on_the_first_failure():
    w, now = DisconnectWatch(0), Clock()
    assert w.update(False, now()).kind == "disconnected"
    assert w.update(True, now(0.1)).kind == "reconnected"


def test_negative_threshold_is_refused():
    with pytest.raises(ValueError):
        DisconnectWatch(-1)
