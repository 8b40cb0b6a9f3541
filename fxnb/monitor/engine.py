"""The monitor's decisions and their execution, with no event loop in sight.

Everything here runs on the one broker thread (see ``service.py``): the
poll, rule closes and operator commands all go through ``_execute`` under
``exec_lock``, so an automatic exit and an operator exit can never race, and
the ``Store`` (the only writer) is used from a single thread.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fxnb import __version__, rules
from fxnb.broker import Broker
from fxnb.commands import Command, CommandDir, is_expired, parse_command
from fxnb.config import Config
from fxnb.errors import BrokerError, BrokerUnavailable, CommandError
from fxnb.models import CloseResult, CloseStatus, Position, Side, Snapshot
from fxnb.monitor.logs import kv
from fxnb.storage import DuplicateCommand, Store

log = logging.getLogger("fxnb.monitor")

BULK_TYPES = {"profit", "loss", "all"}
FINAL = {"completed", "partially_completed", "failed", "expired", "rejected"}
PAUSED_KEY = "rules_paused"
DRY_RUN_KEY = "dry_run_fired"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Health:
    """What /healthz and /status report; written on the broker thread, read on the loop (copied)."""

    connected: bool = False
    state: str = "starting"
    last_poll_at: float | None = None
    last_poll_ok: bool = False
    poll_duration_ms: float = 0.0
    last_error: str | None = None
    open_positions: int = 0
    account: dict[str, Any] = field(default_factory=dict)
    queue_depth: int = 0
    started_at: float = field(default_factory=time.time)


def select_targets(cmd: Command, positions: Iterable[Position]) -> list[int]:
    """The tickets a bulk command means, frozen from one snapshot at claim time."""
    out = []
    for p in positions:
        if cmd.symbol and p.symbol != cmd.symbol:
            continue
        if cmd.magic is not None and p.magic != cmd.magic:
            continue
        if cmd.side and p.side.value != cmd.side:
            continue
        net = p.profit + p.swap
        if cmd.type == "profit" and not net > 0:
            continue
        if cmd.type == "loss" and not net < 0:
            continue
        out.append(p.ticket)
    return sorted(out)


class Engine:
    """Poll, decide, execute, record. One instance per monitor process."""

    def __init__(self, cfg: Config, broker: Broker, store: Store, commands: CommandDir,
                 *, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.broker = broker
        self.store = store
        self.commands = commands
        self.clock = clock
        self.exec_lock = threading.Lock()
        self.health = Health(started_at=clock())
        self.rule_settings = rules.RuleSettings.from_mapping(cfg.raw["profit_monitor"])
        self._server_offset_s = int(float(cfg.broker.sim.get("server_offset_hours", 2)) * 3600) \
            if cfg.broker.kind == "sim" else 0
        self._last_prune = 0.0
        self._skipped_young: set[str] = set()

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
            self.store.event("info", "connected", f"terminal connected (build {status.build})")
            log.info(kv("connected", build=status.build, trade_allowed=status.trade_allowed))
        self._heartbeat()
        return True

    def _set_disconnected(self, exc: BaseException) -> None:
        if self.health.connected or self.health.state == "starting":
            self.store.event("error", "disconnected", f"terminal unreachable: {exc}")
            log.warning(kv("disconnected", error=str(exc)))
        self.health.connected = False
        self.health.state = "reconnecting"
        self.health.last_error = str(exc)
        self._heartbeat()

    @property
    def paused(self) -> bool:
        return bool(self.store.get_rule_state(PAUSED_KEY, False))

    # ---------------------------------------------------------------- polling
    def poll(self) -> bool:
        """One cycle: read the book, record it, reconcile vanished tickets, apply rules."""
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
        self._record_snapshot(snap, now)
        if self.health.connected:
            self._apply_rules(snap, now)
        self.health.poll_duration_ms = (time.perf_counter() - started) * 1000
        self.health.last_poll_at = now
        self.health.last_poll_ok = True
        self.health.last_error = None
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
        pct = {p.ticket: rules.profit_percent(p, acct, self.rule_settings.profit_basis) for p in snap.positions}
        result = self.store.sync_positions(snap, server_offset_s=self._server_offset_s, profit_percent=pct)
        for ticket in sorted(result.disappeared):
            self._record_external_close(ticket, now)
        self.store.append_snapshot(acct, snap.positions, at=now)
        self.health.open_positions = len(snap.positions)
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
            realised = self.broker.realised_profit(identifier)
        except BrokerError as exc:
            log.warning(kv("realised_unknown", ticket=ticket, error=str(exc)))
            realised = None
        self.store.mark_closed(ticket, realised_profit=realised, reason="external", closed_at=now)
        log.info(kv("closed_outside_fxnb", ticket=ticket, realised=realised))

    # ---------------------------------------------------------------- rules
    def _apply_rules(self, snap: Snapshot, now: float) -> None:
        s = self.rule_settings
        if s.rules_mode == "off" or self.paused or not snap.positions:
            return
        specs = {}
        for sym in sorted({p.symbol for p in snap.positions}):
            try:
                specs[sym] = self.broker.symbol(sym)
            except BrokerError as exc:
                log.warning(kv("symbol_unavailable", symbol=sym, error=str(exc)))
        decisions = rules.evaluate(
            snap.positions, snap.account, s, specs=specs, partial_done=self.store.partial_closed_tickets(),
            now=datetime.fromtimestamp(now, UTC), paused=False,
        )
        if not decisions:
            return
        fired = set(map(tuple, self.store.get_rule_state(DRY_RUN_KEY, [])))
        for d in decisions:
            if s.rules_mode == "dry_run":
                if (d.ticket, d.rule) in fired:
                    continue
                fired.add((d.ticket, d.rule))
            self._execute_rule(d, now, dry_run=s.rules_mode == "dry_run")
        if s.rules_mode == "dry_run":
            self.store.set_rule_state(DRY_RUN_KEY, sorted(fired))

    def _execute_rule(self, d: rules.CloseDecision, now: float, *, dry_run: bool) -> None:
        cmd_id = f"rule-{d.rule}-{d.ticket}-{int(now * 1000)}"
        op_type = "single" if d.full else "partial"
        params = {"reason": d.reason, "rule": d.rule, "volume": d.volume, "dry_run": dry_run}
        op_id = self.store.create_operation(
            cmd_id, op_type, source="rule", requested_by=f"rule:{d.rule}", params=params,
            timestamp=_iso(now), created_at=_iso(now), expires_at=None, file_name=None,
        )
        self.store.claim_operation(op_id, target_tickets=[d.ticket], claimed_at=_iso(now))
        if dry_run:
            res = CloseResult(ticket=d.ticket, status=CloseStatus.DRY_RUN, requested_volume=d.volume,
                              message=f"dry run: would close {d.volume} lots ({d.reason})")
            results = [res]
            self.store.add_result(op_id, res, finished_at=_iso(self.clock()))
        else:
            results = self._close_tickets(op_id, [d.ticket], volume=None if d.full else d.volume,
                                          reason="rule", partial_rule=not d.full)
        status = self._final_status(results)
        self.store.finish_operation(op_id, status, finished_at=_iso(self.clock()))
        log.info(kv("rule_action", rule=d.rule, ticket=d.ticket, volume=d.volume, reason=d.reason,
                    dry_run=dry_run, status=status))
        self.store.event("info", "rule_close", f"{d.rule}: ticket {d.ticket} {d.volume} lots: {d.reason}",
                         {"operation": cmd_id, "status": status, "dry_run": dry_run})

    # ---------------------------------------------------------------- execution
    def _close_tickets(self, op_id: int, tickets: list[int], *, volume: float | None = None,
                       percent: float | None = None, reason: str, partial_rule: bool = False) -> list[CloseResult]:
        """The one execution path for rules and operators, under one lock."""
        results: list[CloseResult] = []
        with self.exec_lock:
            for t in tickets:
                res = self._close_one(t, volume=volume, percent=percent)
                results.append(res)
                self.store.add_result(op_id, res, finished_at=_iso(self.clock()))
                now = self.clock()
                if res.status in (CloseStatus.CLOSED, CloseStatus.PARTIAL) and (volume is None and percent is None):
                    if res.status == CloseStatus.CLOSED:
                        self.store.mark_closed(t, realised_profit=res.profit, reason=reason, closed_at=now)
                if partial_rule and res.status in (CloseStatus.CLOSED, CloseStatus.PARTIAL):
                    self.store.mark_partial_closed(t, at=now)
        return results

    def _close_one(self, ticket: int, *, volume: float | None, percent: float | None) -> CloseResult:
        try:
            if percent is not None:
                pos = self.broker.position(ticket)
                if pos is None:
                    return CloseResult(ticket=ticket, status=CloseStatus.ALREADY_CLOSED, requested_volume=0.0,
                                       message=f"position {ticket} is not open")
                volume = pos.volume * percent / 100.0
            return self.broker.close(ticket, volume=volume)
        except BrokerUnavailable as exc:
            self._set_disconnected(exc)
            return CloseResult(ticket=ticket, status=CloseStatus.FAILED, requested_volume=volume or 0.0,
                               message=f"not sent: terminal unreachable ({exc})")
        except BrokerError as exc:
            return CloseResult(ticket=ticket, status=CloseStatus.FAILED, requested_volume=volume or 0.0,
                               retcode=exc.code, message=str(exc))

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

    # ---------------------------------------------------------------- commands
    def process_pending(self) -> int:
        """Handle every command file present now. Returns how many were handled."""
        handled = 0
        pending = self.commands.pending()
        self.health.queue_depth = len(pending)
        for path in pending:
            if self.process_file(path):
                handled += 1
        self.health.queue_depth = len(self.commands.pending()) if handled else self.health.queue_depth
        return handled

    def process_file(self, path: Path) -> bool:
        """Claim, validate and run one file. Never raises for a bad file."""
        now = self.clock()
        max_bytes = self.cfg.commands.max_file_bytes
        if self.commands.is_possibly_incomplete(path, datetime.fromtimestamp(now, UTC)):
            return False  # a hand-written file still being saved; look again later
        if not self.health.connected:
            return self._expire_if_due(path, now)
        claimed = self._claim(path, now)
        if claimed is None:
            return False
        return self._run_claimed(claimed, now, max_bytes)

    def _claim(self, path: Path, now: float) -> Path | None:
        """Atomic rename into processing/; None if another claimer won (or the name is taken there)."""
        try:
            return self.commands.claim(path)
        except CommandError as exc:
            self._reject(path, str(exc), now)
            return None

    def _expire_if_due(self, path: Path, now: float) -> bool:
        """While the terminal is away commands wait; the ones past expiry end as expired."""
        try:
            cmd = self._parse(self.commands.read_claimed(path, self.cfg.commands.max_file_bytes), path.name, now)
        except (OSError, CommandError):
            return False
        if not is_expired(cmd, datetime.fromtimestamp(now, UTC)):
            return False
        claimed = self._claim(path, now)
        if claimed is None:
            return False
        return self._run_claimed(claimed, now, self.cfg.commands.max_file_bytes)

    def _parse(self, data: bytes, name: str, now: float) -> Command:
        return parse_command(data, file_name=name, now=datetime.fromtimestamp(now, UTC),
                             max_age_seconds=self.cfg.commands.max_age_seconds,
                             max_bytes=self.cfg.commands.max_file_bytes)

    def _run_claimed(self, claimed: Path, now: float, max_bytes: int) -> bool:
        name = claimed.name
        try:
            cmd = self._parse(self.commands.read_claimed(claimed, max_bytes), name, now)
        except CommandError as exc:
            self._reject(claimed, str(exc), now)
            return True
        except OSError as exc:
            self._reject(claimed, f"{name}: cannot read the file ({exc.strerror or exc})", now)
            return True
        if self.store.get_operation_by_command(cmd.id) is not None:
            self._reject(claimed, f"{name}: duplicate command id {cmd.id!r}: it was already received; "
                                  "not executed again", now, duplicate_of=cmd.id)
            return True
        try:
            op_id = self._create(cmd, now)
        except DuplicateCommand:
            self._reject(claimed, f"{name}: duplicate command id {cmd.id!r}", now, duplicate_of=cmd.id)
            return True
        if is_expired(cmd, datetime.fromtimestamp(now, UTC)):
            msg = f"expired at {cmd.expires_at.isoformat()} before it could run; nothing was closed"
            self.store.finish_operation(op_id, "expired", finished_at=_iso(now), error_message=msg)
            self.commands.fail(claimed, msg)
            log.info(kv("command", id=cmd.id, type=cmd.type, status="expired"))
            return True
        self._execute_command(op_id, cmd)
        self.commands.complete(claimed)
        return True

    def _create(self, cmd: Command, now: float) -> int:
        params = {k: v for k, v in {"ticket": cmd.ticket, "volume": cmd.volume, "percent": cmd.percent,
                                    "symbol": cmd.symbol, "magic": cmd.magic, "side": cmd.side}.items()
                  if v is not None}
        return self.store.create_operation(
            cmd.id, cmd.type, source="operator", requested_by=cmd.requested_by or "operator", params=params,
            timestamp=cmd.timestamp.isoformat(), created_at=_iso(now),
            expires_at=cmd.expires_at.isoformat() if cmd.expires_at else None, file_name=cmd.file_name,
        )

    def _reject(self, claimed: Path, reason: str, now: float, *, duplicate_of: str | None = None) -> None:
        """Malformed or duplicate: to commands/errors/ with the reason, and a final 'rejected' row."""
        self.commands.fail(claimed, reason)
        self.store.reject_operation(
            None, error_message=reason, operation_type="invalid", requested_by="unknown",
            params={"duplicate_of": duplicate_of} if duplicate_of else None, file_name=claimed.name, at=now,
        )
        self.store.event("warning", "command_rejected", reason, {"file": claimed.name})
        log.warning(kv("command", file=claimed.name, status="rejected", reason=reason))

    def _execute_command(self, op_id: int, cmd: Command) -> None:
        now = self.clock()
        if cmd.type in ("pause_rules", "resume_rules"):
            paused = cmd.type == "pause_rules"
            self.store.set_rule_state(PAUSED_KEY, paused)
            self.store.claim_operation(op_id, target_tickets=[], claimed_at=_iso(now))
            self.store.finish_operation(op_id, "completed", finished_at=_iso(self.clock()))
            self.store.event("info", "rules_paused" if paused else "rules_resumed",
                             f"rules {'paused' if paused else 'resumed'} by {cmd.requested_by or 'operator'}")
            log.info(kv("command", id=cmd.id, type=cmd.type, status="completed"))
            return
        if cmd.type in BULK_TYPES:
            try:
                snap = self.broker.snapshot()
            except BrokerError as exc:
                msg = f"could not read open positions, nothing was closed: {exc}"
                self.store.claim_operation(op_id, target_tickets=[], claimed_at=_iso(now))
                self.store.finish_operation(op_id, "failed", finished_at=_iso(self.clock()), error_message=msg)
                log.error(kv("command", id=cmd.id, type=cmd.type, status="failed", error=msg))
                return
            targets = select_targets(cmd, snap.positions)
        else:
            assert cmd.ticket is not None
            targets = [cmd.ticket]
        self.store.claim_operation(op_id, target_tickets=targets, claimed_at=_iso(now))
        results = self._close_tickets(op_id, targets, volume=cmd.volume, percent=cmd.percent, reason="command")
        status = self._final_status(results, single=cmd.type in ("single", "partial"))
        error = None
        if status != "completed":
            bad = [r for r in results if r.status not in (CloseStatus.CLOSED,)]
            error = "; ".join(f"{r.ticket}: {r.message or r.status.value}" for r in bad[:5])
        self.store.finish_operation(op_id, status, finished_at=_iso(self.clock()), error_message=error)
        log.info(kv("command", id=cmd.id, type=cmd.type, targets=len(targets), status=status,
                    closed=sum(r.status == CloseStatus.CLOSED for r in results), error=error))
        if status in ("failed", "partially_completed"):
            self.store.event("error", "command_failed", f"command {cmd.id} ({cmd.type}) {status}: {error}",
                             {"command_id": cmd.id})

    # ---------------------------------------------------------------- restart
    def reconcile(self) -> None:
        """After a crash: finish or report every unfinished operation against the terminal, never re-run blindly."""
        now = self.clock()
        leftovers = {p.name: p for p in self.commands.in_processing()}
        for op in self.store.unfinished_operations():
            self._reconcile_op(op, now)
            if op.get("file_name") and op["file_name"] in leftovers:
                self.commands.complete(leftovers.pop(op["file_name"]))
        for path in leftovers.values():  # claimed but never recorded: it never ran
            self._run_claimed(path, now, self.cfg.commands.max_file_bytes)

    def _reconcile_op(self, op: dict[str, Any], now: float) -> None:
        op_id = int(op["id"])
        expired = bool(op.get("expires_at")) and datetime.fromisoformat(op["expires_at"]).timestamp() <= now
        done = {int(r["ticket"]) for r in op.get("results") or []}
        targets = op.get("target_tickets")
        params = op.get("params") or {}
        if targets is None:  # created but never claimed: nothing was sent, and re-running late is unsafe
            self.store.finish_operation(
                op_id, "expired" if expired else "failed", finished_at=_iso(now),
                error_message="interrupted by a monitor restart before it ran; nothing was sent - send it again "
                "if it is still wanted",
            )
            return
        results = []
        for t in targets:
            if t in done:
                continue
            try:
                pos = self.broker.position(t)
            except BrokerError as exc:
                res = CloseResult(ticket=t, status=CloseStatus.FAILED, requested_volume=0.0,
                                  message=f"unknown after restart: terminal unreachable ({exc})")
            else:
                res = self._reconcile_ticket(t, pos, op, params, expired)
            results.append(res)
            self.store.add_result(op_id, res, finished_at=_iso(self.clock()))
            if res.status == CloseStatus.CLOSED and pos is None:
                self.store.mark_closed(t, realised_profit=res.profit, reason=op.get("source") == "rule" and "rule"
                                       or "command", closed_at=now)
        all_results = [self._as_result(r) for r in self.store.results(op_id)]
        status = self._final_status(all_results, single=op["operation_type"] in ("single", "partial"))
        self.store.finish_operation(op_id, status, finished_at=_iso(self.clock()),
                                    error_message=None if status == "completed" else "reconciled after a restart")
        log.info(kv("reconciled", operation=op["command_id"], status=status, recorded=len(results)))

    def _reconcile_ticket(self, t: int, pos: Position | None, op: dict[str, Any], params: dict[str, Any],
                          expired: bool) -> CloseResult:
        partial = op["operation_type"] == "partial" or params.get("volume") is not None
        if pos is None:
            realised = 0.0
            try:
                realised = self.broker.realised_profit(t)
            except BrokerError:
                pass
            return CloseResult(ticket=t, status=CloseStatus.CLOSED, requested_volume=0.0, profit=realised,
                               message="closed before the monitor restarted; recorded on reconciliation")
        claimed_at = op.get("claimed_at")
        if partial and claimed_at and self._closed_since(pos, claimed_at):
            return CloseResult(ticket=t, status=CloseStatus.CLOSED, requested_volume=float(params.get("volume") or 0),
                               message="partial close found in deal history after restart")
        if expired:
            return CloseResult(ticket=t, status=CloseStatus.FAILED, requested_volume=pos.volume,
                               message="not closed: the monitor restarted after the command expired")
        vol = params.get("volume")
        pct = params.get("percent")
        if pct is not None:
            vol = pos.volume * float(pct) / 100.0
        return self._close_one(t, volume=vol, percent=None)

    def _closed_since(self, pos: Position, claimed_at: str) -> bool:
        since = datetime.fromisoformat(claimed_at.replace("Z", "+00:00")).timestamp() + self._server_offset_s
        try:
            deals = self.broker.deals_for_position(pos.identifier or pos.ticket)
        except BrokerError:
            return False
        return any(int(d.get("entry", 0)) != 0 and float(d.get("time", 0)) >= since - 1 for d in deals)

    @staticmethod
    def _as_result(row: dict[str, Any]) -> CloseResult:
        return CloseResult(ticket=int(row["ticket"]), status=CloseStatus(row["status"]),
                           requested_volume=float(row.get("requested_volume") or 0))

    # ---------------------------------------------------------------- heartbeat
    def _heartbeat(self) -> None:
        h = self.health
        self.store.heartbeat(
            pid=os.getpid(), hostname=socket.gethostname(), version=__version__,
            started_at=_iso(h.started_at), updated_at=_iso(self.clock()),
            last_poll_at=_iso(h.last_poll_at) if h.last_poll_at else None, last_poll_ok=h.last_poll_ok,
            poll_duration_ms=round(h.poll_duration_ms, 3), connected=h.connected, last_error=h.last_error,
            rules_mode=self.rule_settings.rules_mode, rules_paused=self.paused,
            check_interval=self.cfg.profit_monitor.check_interval, open_positions=h.open_positions,
            queue_depth=h.queue_depth, account_login=h.account.get("login"),
            account_currency=h.account.get("currency"), state=h.state,
        )

    def stopped(self) -> None:
        self.health.state = "stopped"
        self._heartbeat()


__all__ = ["Engine", "Health", "select_targets", "Side"]
