"""The monitor's decisions and their execution, with no event loop in sight.

Everything here runs on the one broker thread (see ``service.py``): the
poll, rule and guard closes and operator commands all go through
``_close_tickets`` under ``exec_lock``, so an automatic exit and an operator
exit can never race, and the ``Store`` (the only writer) is used from a single
thread. Health reporting, command intake, restart reconciliation, the late
settlement of lost answers, the profit rules and the account guards are mixins
in their own modules.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from fxnb import rules
from fxnb.alerts import DisconnectWatch, WebhookDispatcher
from fxnb.broker import Broker
from fxnb.commands import CommandDir
from fxnb.config import Config
from fxnb.errors import BrokerError, BrokerUnavailable
from fxnb.gcpause import gc_paused
from fxnb.guards import spread_warning
from fxnb.models import CloseResult, CloseStatus, Snapshot
from fxnb.monitor.closerun import CloseRun
from fxnb.monitor.deals import deal_net, exits
from fxnb.monitor.health import DATABASE, Health, Reporting
from fxnb.monitor.intake import CommandIntake
from fxnb.monitor.logs import kv
from fxnb.monitor.protect import PAUSED_BY_KEY, Protection
from fxnb.monitor.reconcile import Reconciler
from fxnb.monitor.ruling import RuleRunner
from fxnb.monitor.settle import Settlement
from fxnb.monitor.targets import PAUSED_KEY, iso, select_targets
from fxnb.storage import Store

log = logging.getLogger("fxnb.monitor")


class Engine(Reporting, CommandIntake, Reconciler, Settlement, RuleRunner, Protection):
    """Poll, decide, execute, record. One instance per monitor process."""

    def __init__(self, cfg: Config, broker: Broker, store: Store, commands: CommandDir,
                 *, clock: Callable[[], float] = time.time, alerts: WebhookDispatcher | None = None) -> None:
        self.cfg = cfg
        self.alerts = alerts
        self.watch = DisconnectWatch(cfg.alerts.disconnected_after_seconds)
        self.broker = broker
        self.store = store
        self.commands = commands
        self.clock = clock
        self.exec_lock = threading.Lock()
        self.health = Health(started_at=clock())
        self.rule_settings = rules.RuleSettings.from_mapping(cfg.raw["profit_monitor"])
        # terminal server time minus UTC: the simulator's is configured; a real terminal's is read off a tick
        self._server_offset_s = int(float(cfg.broker.sim.get("server_offset_hours", 2)) * 3600) \
            if cfg.broker.kind == "sim" else 0
        self._offset_known = cfg.broker.kind == "sim"
        self._last_prune = 0.0
        self._last_profit_percent: dict[int, float] = {}
        # a refused write interrupted work that ``recover`` (intake) must finish, as a restart would
        self.needs_recovery = False
        self._problem_since: dict[str, float] = {}
        self._unrecorded_rejections: list[Callable[[], object]] = []  # rows of files already in errors/

    # ---------------------------------------------------------------- connection
    def connect(self) -> bool:
        """Try once; on failure record why. The service retries with backoff."""
        try:
            status = self.broker.connect()
        except BrokerError as exc:
            self._set_disconnected(exc)
            return False
        was = self.health.connected
        self.health.connected = True
        self.health.state = "running"
        self.health.last_error = None
        if not was:
            self.emit("info", "connected", f"terminal connected (build {status.build})")
            log.info(kv("connected", build=status.build, trade_allowed=status.trade_allowed))
        self._heartbeat()
        self.watch_connection()
        return True

    def _set_disconnected(self, exc: BaseException) -> None:
        if self.health.connected or self.health.state == "starting":
            self.emit("error", "disconnected", f"terminal unreachable: {exc}")
            log.warning(kv("disconnected", error=str(exc)))
        self.health.connected = False
        self.health.state = "reconnecting"
        self.health.last_error = str(exc)
        self._heartbeat()
        self.watch_connection()

    @property
    def paused(self) -> bool:
        return bool(self.store.get_rule_state(PAUSED_KEY, False))

    def server_offset(self, symbols: Iterable[str]) -> int | None:
        """Terminal server time minus UTC (seconds), or None while it cannot be told (no live quote).

        ``symbols``: those of the open positions; the first one's quote is asked.
        """
        if not self._offset_known:
            for symbol in symbols:
                try:
                    offset = self.broker.server_offset_s(symbol, self.clock())
                except BrokerError:
                    return None
                if offset is not None:
                    self._server_offset_s, self._offset_known = offset, True
                break
        return self.known_server_offset()

    def known_server_offset(self) -> int | None:
        """The server offset once a live quote told it (see :meth:`server_offset`), else None."""
        return self._server_offset_s if self._offset_known else None

    # ---------------------------------------------------------------- polling
    def poll(self) -> bool:
        """One cycle: read the book, record it, reconcile vanished tickets, apply rules.

        The cyclic collector is paused for the cycle (``gc_paused``): everything a cycle builds is
        freed by reference counting when it ends, and at 10,000 positions collections in the middle
        of it cost more than the database writes.
        """
        with gc_paused():
            return self._poll()

    def _poll(self) -> bool:
        if not self.health.connected and not self.connect():
            return False
        started = time.perf_counter()
        now = self.clock()
        try:
            snap = self.broker.snapshot()
        except BrokerUnavailable as exc:
            self._set_disconnected(exc)
            return False
        except BrokerError as exc:  # a failed read is never an empty book
            self.health.last_error = str(exc)
            self.health.last_poll_ok = False
            self._heartbeat()
            log.error(kv("poll_failed", error=str(exc)))
            return False
        if not self._offset_known:
            self.server_offset(snap.book.symbol)  # open times in UTC from the first live quote on
        self._record_snapshot(snap, now)
        if self.health.connected:
            self.apply_automation(snap, now)
        self.health.poll_duration_ms = (time.perf_counter() - started) * 1000
        self.health.last_poll_at = now
        self.health.last_poll_ok = True
        self.health.last_error = None
        self.clear_problem(DATABASE)  # the snapshot was written: the database takes writes again
        self._heartbeat()
        if now - self._last_prune > 3600:
            self._last_prune = now
            st = self.cfg.storage
            self.store.prune_history(now=now, retention_days=st.retention_days,
                                     full_resolution_hours=st.full_resolution_hours,
                                     downsample_seconds=st.downsample_seconds)
        return True

    def _record_snapshot(self, snap: Snapshot, now: float) -> None:
        acct = snap.account
        pct = rules.profit_percents(snap.book, acct, self.rule_settings.profit_basis)
        self._last_profit_percent = pct  # the rules reuse it in the same cycle
        result = self.store.sync_positions(snap, server_offset_s=self._server_offset_s, profit_percent=pct)
        for ticket in sorted(result.disappeared):
            self._record_external_close(ticket, now)
        for ticket in result.resized:
            self.settle_resized(ticket, now)
        self.store.append_snapshot(acct, snap.book, at=now)
        self.health.open_positions = len(snap.book)
        self.health.account = {
            "login": acct.login, "currency": acct.currency, "balance": acct.balance, "equity": acct.equity,
            "profit": acct.profit, "margin": acct.margin, "margin_free": acct.margin_free,
            "margin_level": acct.margin_level, "server": acct.server,
        }

    def _record_external_close(self, ticket: int, now: float) -> None:
        """A ticket vanished from the terminal without us closing it: read its result from deal history."""
        row = self.store.position(ticket)
        identifier = int((row or {}).get("identifier") or ticket)
        try:
            deals = self.broker.deals_for_position(identifier)
        except BrokerError as exc:
            log.warning(kv("realised_unknown", ticket=ticket, error=str(exc)))
            realised = None
        else:
            outs = exits(deals)
            if self.settle_vanished(ticket, outs, now):
                return  # fxnb's own deals closed it
            realised = round(sum(deal_net(d) for d in outs), 2)
        self.store.mark_closed(ticket, realised_profit=realised, reason="external", closed_at=now)
        log.info(kv("closed_outside_fxnb", ticket=ticket, realised=realised))

    # ---------------------------------------------------------------- execution
    def _close_tickets(self, op_id: int, tickets: list[int], *, volume: float | None = None,
                       percent: float | None = None, reason: str, partial_rule: bool = False) -> list[CloseResult]:
        """The one execution path for rules and operators, under one lock: a :class:`CloseRun`
        (which says how results are written, in batches for bulk closes, and why that is crash-safe)."""
        run = CloseRun(self, op_id, volume=volume, percent=percent, reason=reason, partial_rule=partial_rule)
        with self.exec_lock:
            return run.run(tickets)

    def _closes_whole(self, ticket: int, res: CloseResult, volume: float | None, percent: float | None) -> bool:
        """A full close, or a partial one that took everything (so the position is ours, not "external")."""
        if volume is None and percent is None:
            return True
        row = self.store.position(ticket)
        return row is not None and res.closed_volume >= float(row["volume"]) - 1e-9

    def _spread_warning(self, res: CloseResult) -> str | None:
        """Operator closes go through a wide spread, but the result says so: the warning, read right after the close."""
        if not res.symbol or res.status not in (CloseStatus.CLOSED, CloseStatus.PARTIAL):
            return None
        try:
            return spread_warning(self.broker.market(res.symbol), self.cfg.guards.spread)
        except BrokerError:
            return None

    def _close_one(self, ticket: int, *, volume: float | None, percent: float | None,
                   deals_later: bool = False) -> CloseResult:
        try:
            if percent is not None:
                pos = self.broker.position(ticket)
                if pos is None:
                    return CloseResult(ticket=ticket, status=CloseStatus.ALREADY_CLOSED, requested_volume=0.0,
                                       message=f"position {ticket} is not open")
                volume = pos.volume * percent / 100.0
            return self.broker.close(ticket, volume=volume, deals_later=deals_later)
        except BrokerUnavailable as exc:
            self._set_disconnected(exc)
            return CloseResult(ticket=ticket, status=CloseStatus.FAILED, requested_volume=volume or 0.0,
                               message=f"not sent: terminal unreachable ({exc})")
        except BrokerError as exc:
            return CloseResult(ticket=ticket, status=CloseStatus.FAILED, requested_volume=volume or 0.0,
                               retcode=exc.code, message=str(exc))

    def flatten(self, op_id: int, *, requested_by: str, paused_by: str | None = None,
                reason: str = "command") -> str:
        """Pause the rules, close everything, cancel pending orders, then check the book really is flat.

        Operators reach this through the ``flatten`` command; a guard that locks the account
        (drawdown, daily loss) uses the same path with ``reason="rule"``.
        """
        now = self.clock()
        self.store.set_rule_state(PAUSED_KEY, True)
        self.store.set_rule_state(PAUSED_BY_KEY, paused_by or f"flatten:{requested_by}")
        self.emit("warning", "rules_paused", f"rules paused by flatten ({requested_by})")
        try:
            snap = self.broker.snapshot()
        except BrokerError as exc:
            msg = f"could not read open positions, nothing was closed (rules are paused): {exc}"
            self.store.claim_operation(op_id, target_tickets=[], claimed_at=iso(now))
            self.store.finish_operation(op_id, "failed", finished_at=iso(self.clock()), error_message=msg)
            return "failed"
        targets = sorted(snap.book.ticket)
        self.store.claim_operation(op_id, target_tickets=targets, claimed_at=iso(now))
        results = self._close_tickets(op_id, targets, reason=reason)
        problems = [f"{r.ticket}: {r.message or r.status.value}" for r in results
                    if r.status not in (CloseStatus.CLOSED, CloseStatus.ALREADY_CLOSED)]
        try:
            for order in self.broker.pending_orders():
                res = self.broker.cancel_order(order)
                if not res.ok:
                    problems.append(f"order {order}: {res.message}")
            left = self.broker.positions()
            orders_left = self.broker.pending_orders()
        except BrokerError as exc:
            problems.append(f"could not verify the book: {exc}")
            left, orders_left = (), ()
        if left:
            problems.append(f"{len(left)} position(s) still open: {', '.join(str(p.ticket) for p in left[:10])}")
        if orders_left:
            problems.append(f"{len(orders_left)} pending order(s) left")
        closed_any = any(r.status in (CloseStatus.CLOSED, CloseStatus.PARTIAL) for r in results)
        status = "completed" if not problems else ("partially_completed" if closed_any else "failed")
        summary = "book flat: 0 open positions, 0 pending orders" if not problems else "; ".join(problems[:8])
        op = self.store.get_operation(op_id) or {}
        realised = sum(r.profit for r in results if r.status in (CloseStatus.CLOSED, CloseStatus.PARTIAL))
        self.emit("warning" if problems else "info", "flattened", f"flatten by {requested_by}: {summary}",
                  {"command_id": op.get("command_id"), "closed": sum(r.status == CloseStatus.CLOSED for r in results),
                   "realised": round(realised, 2), "status": status})
        self.store.finish_operation(op_id, status, finished_at=iso(self.clock()),
                                    error_message=None if status == "completed" else summary)
        log.info(kv("flatten", requested_by=requested_by, targets=len(targets), status=status, summary=summary))
        return status

    @staticmethod
    def _final_status(results: list[CloseResult], *, single: bool = False) -> str:
        if not results:
            return "completed"
        good = [r for r in results if r.status in (CloseStatus.CLOSED, CloseStatus.DRY_RUN)]
        gone = [r for r in results if r.status == CloseStatus.ALREADY_CLOSED]
        if len(good) == len(results):
            return "completed"
        if single and len(gone) == len(results):
            return "failed"
        if len(good) + len(gone) == len(results):
            return "completed"
        if good or any(r.status == CloseStatus.PARTIAL for r in results):
            return "partially_completed"
        return "failed"



__all__ = ["Engine", "Health", "select_targets"]
