"""The closing guards that do not lock: the basket target and the scheduled session close.

Why: an MT5 operator thinks in baskets (a grid, a hedge, one EA's magic) and in
sessions (be flat before the weekend gap). Both close whole positions and go
through the spread filter when ``spread.applies_to`` names them.

* **basket**: the floating P/L (profit + swap) of each group (everything, per
  symbol, or per magic) against ``take_profit`` / ``-stop_loss``, in money or in
  percent of the balance. A group that crosses is closed whole; if the spread
  filter defers any of its positions the whole group waits, because closing half
  a hedge is worse than closing it one poll later.
* **session_close**: at or after ``time`` (server time) on ``weekday``, or every
  day with ``daily``, close the positions on the listed symbols (all if none are
  listed), once per server day. The day counts as done only when nothing was
  deferred by the spread; a deferred position is retried at the next poll.
  A position opened after the close has fired that day is left alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, time, timedelta

from fxnb.guards.book import Check, close_all, floating, money
from fxnb.guards.model import Blocked, GuardAlert, GuardStatus
from fxnb.guards.periods import server_time
from fxnb.guards.settings import BASKET, SESSION_CLOSE, BasketSettings, SessionCloseSettings, SpreadSettings
from fxnb.guards.spread import spread_ok
from fxnb.guards.state import GuardState
from fxnb.models import Account, CloseDecision, Position, SymbolSpec

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _groups(positions: Sequence[Position], group_by: str) -> dict[str, list[Position]]:
    out: dict[str, list[Position]] = {}
    for p in positions:
        key = {"symbol": p.symbol, "magic": f"magic {p.magic}"}.get(group_by, "all positions")
        out.setdefault(key, []).append(p)
    return out


def _deferred(group: Sequence[Position], specs: Mapping[str, SymbolSpec], spread: SpreadSettings,
              rule: str) -> list[Blocked]:
    out = []
    for p in group:
        spec = specs.get(p.symbol)
        ok, why = spread_ok(spec, spread, rule) if spec is not None else (True, "")
        if not ok:
            out.append(Blocked(ticket=p.ticket, rule=rule, reason=why))
    return out


def check_basket(positions: Sequence[Position], account: Account, specs: Mapping[str, SymbolSpec],
                 s: BasketSettings, spread: SpreadSettings, *, active: bool) -> Check:
    """Groups whose P/L crossed a target, closed whole (or deferred whole). Reports only if not ``active``."""
    if not s.enabled:
        return Check(GuardStatus(BASKET, False, "off"))
    scale = 1.0
    if s.unit == "percent":
        if not (math.isfinite(account.balance) and account.balance > 0):
            return Check(GuardStatus(BASKET, True, "ok", distance_text="balance unknown: not evaluated"))
        scale = account.balance / 100.0
    tp = None if s.take_profit is None else s.take_profit * scale
    sl = None if s.stop_loss is None else s.stop_loss * scale
    closes, blocked, alerts, fired = [], [], [], []
    nearest: tuple[float, str, float, float] | None = None  # (distance, group, total, trigger)
    for key, group in sorted(_groups(positions, s.group_by).items()):
        total = sum(floating(p) for p in group)
        if not math.isfinite(total):
            continue
        for trigger, distance in ((tp, None if tp is None else tp - total),
                                  (None if sl is None else -sl, None if sl is None else total + sl)):
            if trigger is not None and distance is not None and (nearest is None or distance < nearest[0]):
                nearest = (distance, key, total, trigger)
        if tp is not None and total >= tp:
            why = f"basket take profit: {key} P/L {money(total)} >= {money(tp)}"
        elif sl is not None and total <= -sl:
            why = f"basket stop loss: {key} P/L {money(total)} <= -{money(sl)}"
        else:
            continue
        if not active:
            continue
        held = _deferred(group, specs, spread, BASKET)
        if held:
            blocked += [Blocked(b.ticket, BASKET, f"{why}; whole group deferred: {b.reason}") for b in held]
            continue
        closes += close_all(group, BASKET, why)
        fired.append(key)
        alerts.append(GuardAlert("guard_fired", BASKET, f"{why}: closing {len(group)} position(s)",
                                 {"group": key, "total": round(total, 2), "tickets": [p.ticket for p in group]}))
    if nearest is None:
        status = GuardStatus(BASKET, True, "ok", distance_text="no open positions")
    else:
        distance, key, total, trigger = nearest
        what = "take profit" if trigger > 0 else "stop loss"
        text = (f"{key}: P/L {money(total)}, " + (f"{money(distance)} to {what} {money(trigger)}" if distance > 0
                                                  else f"{what} {money(trigger)} reached"))
        status = GuardStatus(BASKET, True, "fired" if fired else "ok", value=total, limit=trigger,
                             distance=distance, distance_text=text)
    summary = f"closed {len(closes)} position(s) in {', '.join(fired)}" if fired else None
    return Check(status, tuple(alerts), closes=sorted(closes, key=lambda d: d.ticket), blocked=blocked,
                 summary=summary)


def _fires_on(s: SessionCloseSettings, weekday: int) -> bool:
    return s.daily or (s.weekend and weekday == s.weekday)


def next_session_close(now: datetime, s: SessionCloseSettings, fired: Sequence[str]) -> datetime | None:
    """The server time of the next close still to happen (``now``'s server time if it is due now)."""
    server = server_time(now, s.utc_offset_hours)
    at_time = time(*divmod(s.minutes, 60))
    for i in range(8):
        d = server.date() + timedelta(days=i)
        if not _fires_on(s, d.weekday()) or d.isoformat() in fired:
            continue
        return max(datetime.combine(d, at_time), server)
    return None


def check_session_close(positions: Sequence[Position], specs: Mapping[str, SymbolSpec], s: SessionCloseSettings,
                        spread: SpreadSettings, state: GuardState, *,
                        now: datetime, active: bool) -> tuple[GuardState, Check]:
    """At/after the configured time on a closing day, close the matching positions once."""
    if not s.enabled:
        return state, Check(GuardStatus(SESSION_CLOSE, False, "off"))
    server = server_time(now, s.utc_offset_hours)
    today = server.date().isoformat()
    due = (_fires_on(s, server.weekday()) and server.hour * 60 + server.minute >= s.minutes
           and today not in state.session_close_fired)
    closes: list[CloseDecision] = []
    blocked: list[Blocked] = []
    alerts: tuple[GuardAlert, ...] = ()
    summary = None
    if due and active:
        targets = [p for p in positions if not s.symbols or p.symbol in s.symbols]
        blocked = _deferred(targets, specs, spread, SESSION_CLOSE)
        held = {b.ticket for b in blocked}
        where = "every day" if s.daily else f"{_DAYS[s.weekday]}"
        why = f"session close at {s.time} server time ({where})"
        closes = close_all([p for p in targets if p.ticket not in held], SESSION_CLOSE, why)
        if not blocked:
            state = state.with_session_fired(today)
        if closes or blocked:
            summary = f"closed {len(closes)} position(s)" + (f", {len(blocked)} deferred by spread" if blocked else "")
        data = {"day": today, "tickets": [d.ticket for d in closes], "deferred": sorted(held)}
        if closes:
            alerts += (GuardAlert("guard_fired", SESSION_CLOSE, f"{why}: {summary}", data),)
        if blocked and not state.warned(f"{SESSION_CLOSE}:{today}"):
            state = state.without_warnings(SESSION_CLOSE).with_warning(f"{SESSION_CLOSE}:{today}")
            alerts += (GuardAlert("guard_warning", SESSION_CLOSE,
                                  f"{why}: {len(blocked)} position(s) deferred by the spread filter, "
                                  "retried at every poll", data),)
    nxt = next_session_close(now, s, state.session_close_fired)
    if nxt is None:
        status = GuardStatus(SESSION_CLOSE, True, "ok", distance_text="no close scheduled")
    else:
        seconds = (nxt - server).total_seconds()
        hours, minutes = divmod(int(seconds) // 60, 60)
        when = f"{_DAYS[nxt.weekday()]} {nxt:%Y-%m-%d %H:%M} server time"
        text = f"next close {when}" + (f" (in {hours}h {minutes:02d}m)" if seconds > 0 else " (due now)")
        status = GuardStatus(SESSION_CLOSE, True, "fired" if closes else "ok", distance=seconds,
                             distance_text=text)
    return state, Check(status, alerts, closes=closes, blocked=blocked, summary=summary)
