"""Account guards in the running monitor: evaluate, act, remember.

A mixin of ``Engine``. The decisions come from the pure ``fxnb.guards``; this
module feeds them a snapshot, executes their closes through the engine's one
close path (source ``rule``), sends their stop moves to the terminal
(``TRADE_ACTION_SLTP``, so protection survives the monitor being down),
pauses and locks the rules when a guard says so, and keeps the guards' state
and status in ``rule_state`` for the next poll and the dashboard.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fxnb.errors import BrokerError
from fxnb.guards import (
    GUARD_NAMES,
    GuardInput,
    GuardOutcome,
    GuardSettings,
    GuardState,
    StopMove,
    day_start,
    evaluate_guards,
    unlock,
)
from fxnb.models import CloseDecision, Snapshot, SymbolSpec
from fxnb.monitor.logs import kv
from fxnb.monitor.targets import PAUSED_KEY, iso

if TYPE_CHECKING:
    from fxnb.monitor.engine import Engine as _Base
else:
    _Base = object

log = logging.getLogger("fxnb.monitor")

GUARD_STATE_KEY = "guards"
GUARD_STATUS_KEY = "guard_status"
PAUSED_BY_KEY = "rules_paused_by"
ALERT_LEVEL = {"guard_warning": "warning", "guard_fired": "error", "guard_unlocked": "info"}


def any_enabled(settings: GuardSettings) -> bool:
    return any(getattr(settings, name).enabled for name in GUARD_NAMES)


class Protection(_Base):
    """The guards' side of the engine."""

    def guard_state(self) -> GuardState:
        raw = self.store.get_rule_state(GUARD_STATE_KEY, None)
        if raw is None:
            return GuardState()
        try:
            return GuardState.from_dict(raw) if isinstance(raw, Mapping) else GuardState.from_json(raw)
        except (ValueError, TypeError) as exc:  # fail safe: an unreadable lock must not become "unlocked"
            log.error(kv("guard_state_unreadable", error=str(exc)))
            self.store.set_rule_state(PAUSED_KEY, True)
            self.store.set_rule_state(PAUSED_BY_KEY, "guard:unreadable-state")
            self.emit("error", "guard_fired", f"guard state unreadable ({exc}); rules paused until resumed")
            return GuardState()

    def _save_guards(self, outcome: GuardOutcome, now: float) -> None:
        self.store.set_rule_state(GUARD_STATE_KEY, outcome.state.to_dict(), at=now)
        self.store.set_rule_state(GUARD_STATUS_KEY, [dataclasses.asdict(s) for s in outcome.status], at=now)

    def apply_guards(self, snap: Snapshot, specs: Mapping[str, SymbolSpec], now: float) -> None:
        """One evaluation per poll, also while an operator has paused the profit rules (the guards
        protect the account until one of them locks it). Acts only in live mode; dry run records (and
        keeps a would-be lock, so it shows what live would have done); off only reports status."""
        gs = self.cfg.guards
        if not any_enabled(gs):
            if self.store.get_rule_state(GUARD_STATUS_KEY, None):
                self.store.set_rule_state(GUARD_STATUS_KEY, [], at=now)  # no stale rows from an older config
            return
        now_dt = datetime.fromtimestamp(now, UTC)
        state = self.guard_state()
        dl = gs.daily_loss
        realised = self.store.realised_since(day_start(now_dt, dl.utc_offset_hours, dl.reset_hour).timestamp())
        inp = GuardInput(positions=snap.positions, account=snap.account, specs=specs, realised_today=realised,
                         now=now_dt, session_started_at=datetime.fromtimestamp(self.health.started_at, UTC))
        outcome = evaluate_guards(inp, gs, state)
        self._save_guards(outcome, now)
        mode = self.rule_settings.rules_mode
        dry = mode == "dry_run"
        for a in outcome.alerts:
            message = f"dry run: {a.message}" if dry else a.message
            self.emit(ALERT_LEVEL.get(a.kind, "warning"), a.kind, message,
                      {"guard": a.guard, "dry_run": dry, **dict(a.data)})
        if mode == "off":
            return
        if state.locked and not outcome.state.locked and not dry:
            self._release_guard_pause()
        if outcome.lock is not None and not dry:
            self._lock_and_flatten(outcome, now)
        else:
            self._guard_closes(outcome.closes, now, dry=dry)
        for move in outcome.stop_moves:
            self._move_stop(move, dry=dry)

    def _lock_and_flatten(self, outcome: GuardOutcome, now: float) -> None:
        """A guard locked the account: pause the rules and flatten through the operators' flatten path."""
        lock = outcome.lock
        assert lock is not None
        guard = lock.guards[0]
        paused_by = "guard:" + ",".join(lock.guards)
        self.store.set_rule_state(PAUSED_KEY, True)
        self.store.set_rule_state(PAUSED_BY_KEY, paused_by)
        log.warning(kv("guard_lock", guards=list(lock.guards), kind=lock.kind, reason=lock.reason))
        if not lock.flatten:
            return
        op_id = self.store.create_operation(
            f"rule-{guard}-flatten-{int(now * 1000)}", "flatten", source="rule", requested_by=f"rule:{guard}",
            params={"reason": lock.reason, "rule": guard, "lock": lock.kind}, timestamp=iso(now),
            created_at=iso(now),
        )
        self.flatten(op_id, requested_by=f"rule:{guard}", paused_by=paused_by, reason="rule")

    def _release_guard_pause(self) -> None:
        """A daily lock ended with the new day: lift the pause if a guard (not an operator) set it."""
        by = str(self.store.get_rule_state(PAUSED_BY_KEY, "") or "")
        if by.startswith("guard:"):
            self.store.set_rule_state(PAUSED_KEY, False)
            self.store.set_rule_state(PAUSED_BY_KEY, None)
            log.info(kv("guard_unlocked", paused_by=by))

    def _guard_closes(self, closes: list[CloseDecision], now: float, *, dry: bool) -> None:
        """One operation per guard, all its tickets together, through the engine's close path."""
        by_rule: dict[str, list[CloseDecision]] = {}
        for d in self.without_cooldown(closes, now):
            by_rule.setdefault(d.rule, []).append(d)
        for rule, decisions in sorted(by_rule.items()):
            tickets = sorted(d.ticket for d in decisions)
            self.run_rule_operation(rule, "all" if len(tickets) > 1 else "single", tickets,
                                    reason=decisions[0].reason, now=now, dry=dry)

    def _move_stop(self, move: StopMove, *, dry: bool) -> None:
        data = {"ticket": move.ticket, "symbol": move.symbol, "sl": move.sl, "tp": move.tp,
                "previous_sl": move.previous_sl, "rule": move.rule, "dry_run": dry}
        if dry:
            self.emit("info", "stop_moved", f"dry run: {move.rule} would move SL of {move.ticket} "
                                            f"{move.previous_sl} -> {move.sl} ({move.reason})", data)
            return
        try:
            res = self.broker.modify_sltp(move.ticket, sl=move.sl, tp=move.tp)
        except BrokerError as exc:
            self.emit("error", "stop_move_failed", f"{move.rule}: SL of {move.ticket} not moved: {exc}", data)
            return
        if res.ok:
            self.emit("info", "stop_moved", f"{move.rule}: SL of {move.ticket} {move.previous_sl} -> {res.sl} "
                                            f"({move.reason})", {**data, "retcode": res.retcode})
            log.info(kv("stop_moved", rule=move.rule, ticket=move.ticket, sl=res.sl, previous=move.previous_sl))
        else:
            self.emit("error", "stop_move_failed", f"{move.rule}: SL of {move.ticket} not moved: {res.message}",
                      {**data, "retcode": res.retcode})

    def unlock_guards(self, now: float) -> None:
        """``resume_rules`` from an operator: clear any guard lock (and re-base the guard that fired)."""
        state = self.guard_state()
        if state.locked:
            new = unlock(state, datetime.fromtimestamp(now, UTC), by_operator=True)
            self.store.set_rule_state(GUARD_STATE_KEY, new.to_dict())
            self.emit("info", "guard_unlocked", f"guard lock ({state.lock_kind}) cleared by an operator")
        self.store.set_rule_state(PAUSED_BY_KEY, None)

    def guard_status(self) -> list[dict[str, Any]]:
        return list(self.store.get_rule_state(GUARD_STATUS_KEY, []) or [])


__all__ = ["Protection", "any_enabled", "GUARD_STATE_KEY", "GUARD_STATUS_KEY", "iso"]
