"""``evaluate_guards``: every guard, once per poll, combined into one deterministic outcome.

Why one function: the guards interact. A breached drawdown or daily loss
flattens the whole book, so the basket and session closes of that evaluation
are moot; two guards may want the same ticket; a lock silences everything after
it. Deciding all of that in one pure place (snapshot + settings + memory in,
decisions + new memory out) keeps the monitor's part to executing and storing,
and makes every combination testable without a terminal or a clock.

The order, each poll:

1. A daily lock whose trading day has ended is lifted (``guard_unlocked``).
2. The account guards (drawdown, daily loss) update their books. If either is
   breached and the account is not locked: close every open ticket (rule named
   after the most protective guard: drawdown, then daily loss), request a lock
   (``until_resume`` if drawdown is among them, else ``until_next_day``), and
   nothing else happens this evaluation.
3. Otherwise, unless locked: basket and session closes (spread-filtered), one
   decision per ticket (basket before session close), then break-even and
   trailing SL moves for the tickets not being closed (spread-filtered if
   ``applies_to`` names them).
4. While locked: no closes and no stop moves, but every status is reported.

``unlock`` is the operator's ``resume_rules`` (and the day rollover's) way out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from fxnb.guards.account import check_daily_loss, check_drawdown
from fxnb.guards.book import Check, close_all, open_book
from fxnb.guards.closes import check_basket, check_session_close
from fxnb.guards.model import Blocked, GuardAlert, GuardInput, GuardOutcome, GuardStatus, LockRequest, StopMove
from fxnb.guards.periods import as_utc, day_key, next_reset
from fxnb.guards.settings import (
    BREAKEVEN,
    DAILY_LOSS,
    DRAWDOWN,
    GUARD_NAMES,
    SPREAD,
    TRAILING,
    GuardSettings,
    SpreadSettings,
)
from fxnb.guards.spread import spread_ok, spread_points
from fxnb.guards.state import UNTIL_NEXT_DAY, UNTIL_RESUME, GuardState
from fxnb.guards.stops import stop_moves
from fxnb.models import CloseDecision, Position, SymbolSpec


def evaluate_guards(inp: GuardInput, settings: GuardSettings, state: GuardState) -> GuardOutcome:
    """Decide what the guards do now. Pure: same input, settings and state give the same outcome."""
    now = as_utc(inp.now)
    as_utc(inp.session_started_at)  # refuse a naive start time as well
    book = open_book(inp.positions)
    alerts: list[GuardAlert] = []
    was_locked = state.locked
    state = unlock(state, now, by_operator=False)
    if was_locked and not state.locked:
        alerts.append(GuardAlert("guard_unlocked", DAILY_LOSS, "daily lock ended: a new trading day began",
                                 {"day": day_key(now, settings.daily_loss.utc_offset_hours,
                                                 settings.daily_loss.reset_hour)}))
    active = not state.locked
    state, dd = check_drawdown(inp.account, settings.drawdown, state, now=now,
                               session_started_at=inp.session_started_at, active=active)
    state, dl = check_daily_loss(book, inp.account, inp.realised_today, settings.daily_loss, state,
                                 now=now, active=active)
    firing = [(name, c) for name, c in ((DRAWDOWN, dd), (DAILY_LOSS, dl)) if c.fire]
    acting = active and not firing
    basket = check_basket(book, inp.account, inp.specs, settings.basket, settings.spread, active=acting)
    state, session = check_session_close(book, inp.specs, settings.session_close, settings.spread, state,
                                         now=now, active=acting)
    for c in (dd, dl, basket, session):
        alerts.extend(c.alerts)
    lock: LockRequest | None = None
    moves: list[StopMove] = []
    blocked: list[Blocked] = []
    if firing:
        closes = close_all(book, firing[0][0], firing[0][1].fire or "")
        state, lock = _lock(state, firing, len(closes), now, settings)
    else:
        closes = _one_per_ticket(basket.closes, session.closes)
        blocked = basket.blocked + session.blocked
        if acting:
            closing = {d.ticket for d in closes}
            candidates = stop_moves([p for p in book if p.ticket not in closing], inp.specs,
                                    settings.breakeven, settings.trailing)
            moves, held = _spread_filter_moves(candidates, inp.specs, settings.spread)
            blocked += held
        state = _remember(state, now, basket, session, moves)
    checks = {DRAWDOWN: dd, DAILY_LOSS: dl, "basket": basket, "session_close": session}
    status = _statuses(checks, settings, state, book, inp.specs, moves, fired={name for name, _ in firing})
    return GuardOutcome(closes=closes, stop_moves=moves, alerts=alerts, lock=lock, state=state, status=status,
                        blocked=sorted(blocked, key=lambda b: (b.ticket, b.rule)))


def unlock(state: GuardState, now: datetime, *, by_operator: bool) -> GuardState:
    """Lift the lock. ``by_operator`` (``resume_rules``): any lock, and the guards that set it are
    re-anchored (drawdown: a new high-water mark at the next evaluation; daily loss: the loss so far
    is forgiven for the rest of the day), else they would fire again at once. Otherwise (the day
    rollover): only an ``until_next_day`` lock whose time has come. Anything else: unchanged."""
    now = as_utc(now)
    if not state.locked:
        return state
    if not by_operator and (state.lock_kind != UNTIL_NEXT_DAY or state.lock_until is None
                            or now < state.lock_until):
        return state
    cleared = replace(state, locked=False, lock_kind="", lock_reason="", lock_guards=(), lock_day="",
                      lock_until=None, locked_at=None)
    note = "unlocked by operator (resume_rules)" if by_operator else "lock ended: new trading day"
    for guard in state.lock_guards:
        if by_operator and guard == DRAWDOWN:
            cleared = replace(cleared, equity_hwm=None).without_warnings(DRAWDOWN)
        if by_operator and guard == DAILY_LOSS:
            cleared = replace(cleared, daily_rebase=True).without_warnings(DAILY_LOSS)
        cleared = cleared.with_action(guard, now, note)
    return cleared


# ------------------------------------------------------------------------------------ helpers
def _lock(state: GuardState, firing: Sequence[tuple[str, Check]], n_closes: int, now: datetime,
          settings: GuardSettings) -> tuple[GuardState, LockRequest]:
    guards = tuple(name for name, _ in firing)
    reason = "; ".join(c.fire or "" for _, c in firing)
    dl = settings.daily_loss
    kind = UNTIL_RESUME if DRAWDOWN in guards else UNTIL_NEXT_DAY
    until = next_reset(now, dl.utc_offset_hours, dl.reset_hour) if kind == UNTIL_NEXT_DAY else None
    state = replace(state, locked=True, lock_kind=kind, lock_reason=reason, lock_guards=guards,
                    lock_day=day_key(now, dl.utc_offset_hours, dl.reset_hour), lock_until=until, locked_at=now)
    ends = "until resume_rules" if until is None else f"until {until.isoformat()}"
    for guard in guards:
        state = state.with_action(guard, now, f"closed {n_closes} position(s), locked {ends}")
    return state, LockRequest(kind=kind, guards=guards, reason=reason, until=until, flatten=True)


def _one_per_ticket(*by_priority: Iterable[CloseDecision]) -> list[CloseDecision]:
    """Merge decision lists, most protective first: the first decision for a ticket wins."""
    chosen: dict[int, CloseDecision] = {}
    for decisions in by_priority:
        for d in decisions:
            chosen.setdefault(d.ticket, d)
    return [chosen[t] for t in sorted(chosen)]


def _spread_filter_moves(moves: Sequence[StopMove], specs: Mapping[str, SymbolSpec],
                         spread: SpreadSettings) -> tuple[list[StopMove], list[Blocked]]:
    kept, held = [], []
    for m in moves:
        ok, why = spread_ok(specs[m.symbol], spread, m.rule)
        if ok:
            kept.append(m)
        else:
            held.append(Blocked(ticket=m.ticket, rule=m.rule, reason=why))
    return kept, held


def _remember(state: GuardState, now: datetime, basket: Check, session: Check,
              moves: Sequence[StopMove]) -> GuardState:
    for guard, check in (("basket", basket), ("session_close", session)):
        if check.summary:
            state = state.with_action(guard, now, check.summary)
    for rule in (BREAKEVEN, TRAILING):
        tickets = [str(m.ticket) for m in moves if m.rule == rule]
        if tickets:
            state = state.with_action(rule, now, f"moved SL on ticket(s) {', '.join(tickets)}")
    return state


def _stops_status(rule: str, enabled: bool, moves: Sequence[StopMove], book: Sequence[Position]) -> GuardStatus:
    if not enabled:
        return GuardStatus(rule, False, "off")
    n = sum(1 for m in moves if m.rule == rule)
    text = f"moved {n} stop(s)" if n else f"watching {len(book)} position(s)"
    return GuardStatus(rule, True, "fired" if n else "ok", value=float(n), distance_text=text)


def _spread_status(spread: SpreadSettings, book: Sequence[Position], specs: Mapping[str, SymbolSpec]) -> GuardStatus:
    if not spread.enabled:
        return GuardStatus(SPREAD, False, "off")
    worst: tuple[float, float, str] | None = None  # (limit - points, points, symbol)
    for symbol in sorted({p.symbol for p in book}):
        spec, limit = specs.get(symbol), spread.limit_for(symbol)
        if spec is None or limit is None:
            continue
        points = spread_points(spec)
        if worst is None or limit - points < worst[0]:
            worst = (limit - points, points, symbol)
    if worst is None:
        return GuardStatus(SPREAD, True, "ok", distance_text="no open symbol with a spread limit")
    distance, points, symbol = worst
    limit = points + distance
    wide = distance < 0
    text = (f"{symbol} spread {points:g} points (max {limit:g})"
            + (f": deferring {', '.join(spread.applies_to)}" if wide else ""))
    return GuardStatus(SPREAD, True, "warning" if wide else "ok", value=points, limit=limit, distance=distance,
                       distance_text=text)


def _statuses(checks: Mapping[str, Check], settings: GuardSettings, state: GuardState,
              book: Sequence[Position], specs: Mapping[str, SymbolSpec], moves: Sequence[StopMove],
              *, fired: set[str]) -> list[GuardStatus]:
    rows = {name: c.status for name, c in checks.items()}
    rows[BREAKEVEN] = _stops_status(BREAKEVEN, settings.breakeven.enabled, moves, book)
    rows[TRAILING] = _stops_status(TRAILING, settings.trailing.enabled, moves, book)
    rows[SPREAD] = _spread_status(settings.spread, book, specs)
    out = []
    for name in GUARD_NAMES:
        row = rows[name]
        if state.locked and row.enabled and name != SPREAD:
            row = replace(row, state="fired" if name in fired else "locked",
                          distance_text=f"locked ({state.lock_kind}): {row.distance_text}")
        out.append(replace(row, last_action=state.last_action(name)))
    return out
