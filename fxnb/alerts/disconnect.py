"""When a lost terminal connection deserves an alert: pure state, no threads, no clock of its own."""

from __future__ import annotations

from fxnb.alerts.model import Alert, iso_utc


class DisconnectWatch:
    """Turn connected/unreachable observations into at most one alert per outage.

    Call :meth:`update` after every connect attempt or poll, ``now`` in epoch seconds (the
    engine's clock; it dates the alert and ``down_since``). It returns ``disconnected`` once, when the outage has
    lasted ``threshold_s``; then ``reconnected`` when the connection is back. An outage
    shorter than the threshold (a blip) yields nothing, neither while it lasts nor when it
    ends. An outage that starts before the first successful connection counts too.
    :meth:`check` re-evaluates with the last known state, for a timer between attempts.
    """

    def __init__(self, threshold_s: float) -> None:
        if threshold_s < 0:
            raise ValueError("threshold_s must be >= 0")
        self.threshold_s = float(threshold_s)
        self.connected: bool | None = None
        self.down_since: float | None = None
        self.alerted = False

    def update(self, connected: bool, now: float) -> Alert | None:
        self.connected = connected
        if connected:
            if self.down_since is None:
                return None
            outage = max(0.0, now - self.down_since)
            was_alerted, self.down_since, self.alerted = self.alerted, None, False
            if not was_alerted:
                return None
            return Alert(
                kind="reconnected",
                level="info",
                message=f"monitor back: the terminal is reachable again after {_duration(outage)}",
                data={"outage_seconds": round(outage, 3)},
                at=now,
            )
        if self.down_since is None:
            self.down_since = now
        outage = now - self.down_since
        if self.alerted or outage < self.threshold_s:
            return None
        self.alerted = True
        return Alert(
            kind="disconnected",
            level="error",
            message=f"monitor disconnected: the terminal has been unreachable for {_duration(outage)}",
            data={"down_since": iso_utc(self.down_since), "outage_seconds": round(outage, 3),
                  "threshold_seconds": self.threshold_s},
            at=now,
        )

    def check(self, now: float) -> Alert | None:
        """:meth:`update` with the last observed state (nothing before the first observation)."""
        if self.connected is None:
            return None
        return self.update(self.connected, now)


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"
