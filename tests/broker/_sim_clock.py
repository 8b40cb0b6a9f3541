"""A clock for the simulated terminal that only moves when the test moves it (``SimTerminal(clock=...)``)."""

from __future__ import annotations

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC: 00:13 on the next day in server time (UTC+2)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
