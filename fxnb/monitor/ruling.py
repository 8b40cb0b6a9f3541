"""Automatic actions each poll: the profit rules, then the account guards.

A mixin of ``Engine``. Rule decisions and guard closes become operations with
source ``rule`` and run through the engine's one close path, under the same
lock as operator commands. ``dry_run`` records what would have been done and
sends nothing; ``off`` and a pause (by an operator, flatten or a guard lock)
stop the profit rules; the account guards keep protecting until one of them
locks the account.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from fxnb import rules
from fxnb.errors import BrokerError
from fxnb.guards import PROTECTIVE_RULES, filter_by_spread
from fxnb.models import CloseDecision, CloseResult, CloseStatus, Snapshot, SymbolSpec
from fxnb.monitor.logs import kv
from fxnb.monitor.targets import DRY_RUN_KEY, iso

if TYPE_CHECKING:
    from fxnb.monitor.engine import Engine as _Base
else:
    _Base = object

log = logging.getLogger("fxnb.monitor")

COOLDOWN_KEY = "rule_cooldown"
RULE_RETRY_FIRST_S = 5.0  # a failed automatic close is tried again after this, doubling each time
RULE_RETRY_MAX_S = 300.0


class RuleRunner(_Base):
    def market_specs(self, snap: Snapshot) -> dict[str, SymbolSpec]:
        """Symbol specs with the current spread, for every symbol in the book."""
        specs: dict[str, SymbolSpec] = {}
        for sym in sorted(set(snap.book.symbol)):
            try:
                specs[sym] = self.broker.market(sym)
            except BrokerError as exc:
                log.warning(kv("symbol_unavailable", symbol=sym, error=str(exc)))
        return specs

    def apply_automation(self, snap: Snapshot, now: float) -> None:
        s = self.rule_settings
        if not snap.book and s.rules_mode == "off":
            return
        specs = self.market_specs(snap)
        if s.rules_mode != "off" and not self.paused and snap.book:
            self._profit_rules(snap, specs, now)
        self.apply_guards(snap, specs, now)

    def _profit_rules(self, snap: Snapshot, specs: dict[str, SymbolSpec], now: float) -> None:
        s = self.rule_settings
        decisions = rules.evaluate(
            snap.book, snap.account, s, specs=specs, partial_done=self.store.partial_closed_tickets(),
            now=datetime.fromtimestamp(now, UTC), paused=False, profit_percent=self._last_profit_percent,
        )
        if self.cfg.guards.spread.enabled and decisions:
            decisions, blocked = filter_by_spread(decisions, snap.positions, specs, self.cfg.guards.spread)
            for b in blocked:
                log.info(kv("rule_deferred", ticket=b.ticket, rule=b.rule, reason=b.reason))
        decisions = self.without_cooldown(decisions, now)
        if not decisions:
            return
        dry = s.rules_mode == "dry_run"
        fired = {tuple(x) for x in self.store.get_rule_state(DRY_RUN_KEY, [])} if dry else set()
        for d in decisions:
            if dry:
                if (d.ticket, d.rule) in fired:
                    continue  # recorded once, not every poll
                fired.add((d.ticket, d.rule))
            self.run_rule_operation(d.rule, "single" if d.full else "partial", [d.ticket], reason=d.reason,
                                    now=now, dry=dry, volume=None if d.full else d.volume)
        if dry:
            self.store.set_rule_state(DRY_RUN_KEY, sorted(fired))

    def without_cooldown(self, decisions: list[CloseDecision], now: float) -> list[CloseDecision]:
        """Skip tickets whose last automatic close failed recently (market closed, Algo Trading off...):
        retrying on every poll would write one failed operation per poll for a whole weekend."""
        cooling = self.store.get_rule_state(COOLDOWN_KEY, {}) or {}
        return [d for d in decisions if cooling.get(str(d.ticket), [0.0])[0] <= now]

    def _cool_down(self, tickets: list[int], now: float) -> None:
        """Back off per ticket: 5 s, 10 s, 20 s ... up to 5 minutes between automatic attempts."""
        old = self.store.get_rule_state(COOLDOWN_KEY, {}) or {}
        cooling = {k: v for k, v in old.items() if v[0] + RULE_RETRY_MAX_S > now}  # forget long-quiet ones
        for t in tickets:
            step = min(RULE_RETRY_MAX_S, cooling.get(str(t), [0.0, RULE_RETRY_FIRST_S / 2])[1] * 2)
            cooling[str(t)] = [now + step, step]
        self.store.set_rule_state(COOLDOWN_KEY, cooling)
        log.info(kv("rule_cooldown", tickets=tickets))

    def run_rule_operation(self, rule: str, op_type: str, tickets: list[int], *, reason: str, now: float,
                           dry: bool, volume: float | None = None) -> str:
        """Record and execute one automatic action (or, in dry run, record what it would do)."""
        cmd_id = f"rule-{rule}-{tickets[0]}-{int(now * 1000)}"
        params = {"reason": reason, "rule": rule, "volume": volume, "dry_run": dry}
        op_id = self.store.create_operation(
            cmd_id, op_type, source="rule", requested_by=f"rule:{rule}", params=params,
            timestamp=iso(now), created_at=iso(now), expires_at=None, file_name=None,
        )
        self.store.claim_operation(op_id, target_tickets=tickets, claimed_at=iso(now))
        if dry:
            results = []
            for t in tickets:
                res = CloseResult(ticket=t, status=CloseStatus.DRY_RUN, requested_volume=volume or 0.0,
                                  message=f"dry run: would close {'all' if volume is None else volume} ({reason})")
                results.append(res)
                self.store.add_result(op_id, res, finished_at=iso(self.clock()))
        else:
            results = self._close_tickets(op_id, tickets, volume=volume, reason="rule",
                                          partial_rule=rule == "partial_close")
        status = self._final_status(results)
        self.store.finish_operation(op_id, status, finished_at=iso(self.clock()))
        failed = [r.ticket for r in results if r.status is CloseStatus.FAILED]
        if failed and not dry:
            self._cool_down(failed, now)
        log.info(kv("rule_action", rule=rule, tickets=tickets, volume=volume, reason=reason, dry_run=dry,
                    status=status))
        what = f"ticket {tickets[0]}" if len(tickets) == 1 else f"{len(tickets)} tickets"
        level = "warning" if rule in PROTECTIVE_RULES else "info"
        self.emit(level, "rule_close", f"{rule}: {what}: {reason}",
                  {"operation": cmd_id, "status": status, "dry_run": dry})
        return status
