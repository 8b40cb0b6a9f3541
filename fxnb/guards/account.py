"""The account guards: equity drawdown from its high-water mark, and the daily loss limit.

Why these two, and why they close: freqtrade's protections only block new
entries, after trades have closed; the whole MT5 "equity guard / prop-firm
guard" category exists because operators need a limit that counts open trades
and flattens. Both guards here, when breached, ask the engine to close
everything and lock:

* **drawdown**: equity ``max_percent`` below the highest equity seen in the
  period (since the monitor session started, or since the trading day began).
  Locks until an operator sends ``resume_rules``; the resume re-anchors the
  high-water mark at the then-current equity (otherwise the guard would fire
  again at once).
* **daily_loss**: realised P/L since the day began (passed in) plus current
  floating P/L, against ``max_loss`` in money or in percent of the day's
  starting balance (``balance - realised_today`` at the day's first evaluation,
  so a monitor started mid-day still gets it right). Locks until the next
  trading day; an operator reset forgives the loss so far, and the guard then
  protects a fresh ``max_loss`` for the rest of the day.

Each warns once per period at ``warning_ratio`` x the limit (80 % by default).
Known limits, as the MT5 vendors also state: a gap or slippage can take the
final loss beyond the limit; a withdrawal looks like a loss to the drawdown
guard. While the account is locked both keep their books but neither fires.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from fxnb.guards.book import Check, floating, money
from fxnb.guards.model import GuardAlert, GuardStatus, StatusState
from fxnb.guards.periods import as_utc, day_key
from fxnb.guards.settings import DAILY_LOSS, DRAWDOWN, DailyLossSettings, DrawdownSettings
from fxnb.guards.state import GuardState
from fxnb.models import Account, Position


def _level(value: float, limit: float, ratio: float) -> StatusState:
    if value >= limit:
        return "fired"
    return "warning" if value >= ratio * limit else "ok"


def drawdown_period(s: DrawdownSettings, now: datetime, session_started_at: datetime) -> str:
    """The key of the high-water mark's period: ``session:<UTC ISO start>`` or ``day:<date>``."""
    if s.period == "session":
        return f"session:{as_utc(session_started_at).isoformat()}"
    return f"day:{day_key(now, s.utc_offset_hours, s.reset_hour)}"


def check_drawdown(account: Account, s: DrawdownSettings, state: GuardState, *, now: datetime,
                   session_started_at: datetime, active: bool) -> tuple[GuardState, Check]:
    """Update the high-water mark; fire (``Check.fire``) when equity is ``max_percent`` below it."""
    if not s.enabled:
        return state, Check(GuardStatus(DRAWDOWN, False, "off"))
    period = drawdown_period(s, now, session_started_at)
    if state.hwm_period != period:
        state = replace(state, equity_hwm=None, hwm_period=period).without_warnings(DRAWDOWN)
    equity = account.equity
    if not math.isfinite(equity):
        return state, Check(GuardStatus(DRAWDOWN, True, "ok", distance_text="equity unknown: not evaluated"))
    hwm = equity if state.equity_hwm is None else max(state.equity_hwm, equity)
    state = replace(state, equity_hwm=hwm)
    if hwm <= 0:
        return state, Check(GuardStatus(DRAWDOWN, True, "ok", distance_text="no positive equity high yet"))
    dd = max(0.0, (hwm - equity) / hwm * 100.0)
    level = _level(dd, s.max_percent, s.warning_ratio)
    distance = s.max_percent - dd
    text = (f"drawdown {dd:.2f}% of max {s.max_percent:g}% (equity {money(equity)}, high {money(hwm)}); "
            + ("limit reached" if level == "fired" else f"{distance:.2f} percentage points to go"))
    status = GuardStatus(DRAWDOWN, True, level, value=dd, limit=s.max_percent, distance=distance, distance_text=text)
    data = {"drawdown_percent": round(dd, 4), "max_percent": s.max_percent, "equity": equity, "high": hwm,
            "period": period}
    if not active or level == "ok":
        return state, Check(status)
    if level == "fired":
        reason = (f"drawdown {dd:.2f}% >= max {s.max_percent:g}% (equity {money(equity)} from high "
                  f"{money(hwm)}): closing everything, locked until resume_rules")
        return state, Check(status, (GuardAlert("guard_fired", DRAWDOWN, reason, data),), fire=reason)
    key = f"{DRAWDOWN}:{period}"
    if state.warned(key):
        return state, Check(status)
    msg = (f"drawdown warning: {dd:.2f}% >= {s.warning_ratio:.0%} of the {s.max_percent:g}% limit "
           f"(equity {money(equity)}, high {money(hwm)})")
    return state.with_warning(key), Check(status, (GuardAlert("guard_warning", DRAWDOWN, msg, data),))


def check_daily_loss(positions: Sequence[Position], account: Account, realised_today: float,
                     s: DailyLossSettings, state: GuardState, *, now: datetime,
                     active: bool) -> tuple[GuardState, Check]:
    """Track the trading day; fire when today's realised + floating loss reaches the limit."""
    if not s.enabled:
        return state, Check(GuardStatus(DAILY_LOSS, False, "off"))
    day = day_key(now, s.utc_offset_hours, s.reset_hour)
    if state.day_key != day:
        state = replace(state, day_key=day, day_start_balance=None, daily_forgiven=0.0,
                        daily_rebase=False).without_warnings(DAILY_LOSS)
    start = account.balance - realised_today
    if state.day_start_balance is None and math.isfinite(start):
        state = replace(state, day_start_balance=start)
    raw = realised_today + sum(floating(p) for p in positions)
    if not math.isfinite(raw):
        return state, Check(GuardStatus(DAILY_LOSS, True, "ok", distance_text="P/L unknown: not evaluated"))
    if state.daily_rebase:
        state = replace(state, daily_forgiven=min(raw, 0.0), daily_rebase=False)
    loss = max(0.0, -(raw - state.daily_forgiven))
    if s.unit == "money":
        limit = s.max_loss
    elif state.day_start_balance is not None and state.day_start_balance > 0:
        limit = state.day_start_balance * s.max_loss / 100.0
    else:
        return state, Check(GuardStatus(DAILY_LOSS, True, "ok", distance_text="no day-start balance: not evaluated"))
    level = _level(loss, limit, s.warning_ratio)
    unit = f" ({s.max_loss:g}% of {money(state.day_start_balance or 0.0)})" if s.unit == "percent" else ""
    text = (f"day {day}: loss {money(loss)} of max {money(limit)}{unit}; "
            + ("limit reached" if level == "fired" else f"{money(limit - loss)} to go"))
    status = GuardStatus(DAILY_LOSS, True, level, value=loss, limit=limit, distance=limit - loss, distance_text=text)
    data = {"day": day, "loss": round(loss, 2), "limit": round(limit, 2), "realised": realised_today,
            "floating": round(raw - realised_today, 2), "forgiven": state.daily_forgiven}
    if not active or level == "ok":
        return state, Check(status)
    if level == "fired":
        reason = (f"daily loss {money(loss)} >= max {money(limit)}{unit} on {day}: closing everything, "
                  "locked until the next trading day")
        return state, Check(status, (GuardAlert("guard_fired", DAILY_LOSS, reason, data),), fire=reason)
    key = f"{DAILY_LOSS}:{day}"
    if state.warned(key):
        return state, Check(status)
    msg = f"daily loss warning: {money(loss)} >= {s.warning_ratio:.0%} of the {money(limit)} limit on {day}"
    return state.with_warning(key), Check(status, (GuardAlert("guard_warning", DAILY_LOSS, msg, data),))
