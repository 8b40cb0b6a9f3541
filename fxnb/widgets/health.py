"""Monitor health: connected or not, age of the last poll, and a STALE banner when the monitor stops.

The verdict comes from :func:`fxnb.status.monitor_health` (stale once the
heartbeat is older than 2 × check_interval, or the monitor said it stopped)
and is recomputed on every tick from the clock, so a monitor that dies without
a word turns the banner on in time. A dead monitor never shows as LIVE.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import traitlets as t

from fxnb.widgets._fmt import age, clock, esc
from fxnb.widgets.base import Panel, set_if_changed, show
from fxnb.widgets.context import Console


def verdict(health: dict[str, Any]) -> str:
    """``live``, ``disconnected`` (monitor alive, terminal not) or ``stale`` (monitor not alive)."""
    if health.get("stale", True):
        return "stale"
    if not health.get("connected"):
        return "disconnected"
    return "live"


class HealthPanel(Panel):
    """A status badge, the facts behind it, and a red banner while the monitor is stale.

    CSS classes: ``fxnb-health`` (the panel, with ``data-state`` on the badge
    line), ``health-status``, ``fxnb-stale-banner`` (shown only when stale).
    """

    css_class = "fxnb-health"
    title_text = "Monitor"

    state = t.Unicode("stale", help="live | disconnected | stale")

    def __init__(self, console: Console, **kwargs: Any) -> None:
        super().__init__(console, **kwargs)
        self.banner = w.HTML()
        self.banner.add_class("fxnb-stale-banner")
        self.status = w.HTML()
        self.status.add_class("health-status")
        self._compose(self.banner, self.status)
        self.refresh()

    @property
    def banner_visible(self) -> bool:
        return self.banner.layout.display != "none"

    def refresh(self) -> None:
        self.tick(self.console.clock())

    def tick(self, now: float) -> None:
        health = self.console.update_health(now)
        self.state = verdict(health)
        self._render(health)

    def _render(self, h: dict[str, Any]) -> None:
        state = self.state
        label = {"live": "LIVE", "disconnected": "TERMINAL DISCONNECTED", "stale": "STALE"}[state]
        facts = [f'<span class="fxnb-badge {state}" data-state="{state}">{label}</span>']
        if self.console.simulated:
            facts.append('<span class="fxnb-badge sim" title="broker.kind = sim">SIMULATED TERMINAL</span>')
        facts.append(f"state: {esc(h.get('state'))}")
        facts.append(f"last poll: {esc(age(h.get('last_poll_age_s')))} ago"
                     + ("" if h.get("last_poll_ok", True) is not False else " (failed)"))
        facts.append(f"heartbeat: {esc(age(h.get('heartbeat_age_s')))} ago")
        if h.get("check_interval"):
            facts.append(f"every {float(h['check_interval']):g} s")
        if h.get("poll_duration_ms") is not None:
            facts.append(f"poll {float(h['poll_duration_ms']):.0f} ms")
        if h.get("queue_depth") is not None:
            facts.append(f"queue {h['queue_depth']}")
        if h.get("pid"):
            facts.append(f"pid {h['pid']}@{esc(h.get('hostname'))} v{esc(h.get('version'))}")
        if h.get("started_at"):
            facts.append(f"up since {esc(clock(h['started_at'], with_date=True))} UTC")
        line = " · ".join(facts)
        if state != "live" and h.get("reason"):
            line += f'<div class="fxnb-neg">{esc(h["reason"])}</div>'
        if h.get("last_error") and state == "live":
            line += f'<div class="fxnb-muted">last error: {esc(h["last_error"])}</div>'
        set_if_changed(self.status, "value", f'<div data-state="{state}">{line}</div>')
        if state == "stale":
            since = h.get("updated_at")
            seen = f" Last heartbeat {clock(since, with_date=True)} UTC." if since else ""
            text = (f"STALE — {h.get('reason') or 'the monitor is not running'}.{seen} "
                    "Everything below may be out of date; commands will wait in the queue.")
            set_if_changed(self.banner, "value", f'<div data-state="stale">{esc(text)}</div>')
        show(self.banner, state == "stale")


__all__ = ["HealthPanel", "verdict"]
