"""After a crash: finish or report every unfinished operation against the terminal, never re-run blindly.

A mixin of ``Engine``. What was closed before the crash is found in the
terminal (position gone, or OUT deals since the claim) and recorded; what was
not is finished only while the command is still within its expiry.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fxnb.errors import BrokerError
from fxnb.models import CloseResult, CloseStatus, Position
from fxnb.monitor.logs import kv
from fxnb.monitor.targets import iso

if TYPE_CHECKING:
    from fxnb.monitor.engine import Engine as _Base
else:
    _Base = object

log = logging.getLogger("fxnb.monitor")
_iso = iso


class Reconciler(_Base):
    def reconcile(self) -> None:
        """After a crash: finish or report every unfinished operation against the terminal, never re-run blindly."""
        now = self.clock()
        leftovers = {p.name: p for p in self.commands.in_processing()}
        for op in self.store.unfinished_operations():
            self._reconcile_op(op, now)
            if op.get("file_name") and op["file_name"] in leftovers:
                self.commands.complete(leftovers.pop(op["file_name"]))
        for path in leftovers.values():
            op = self.store.get_operation_by_command(path.name.removeprefix("cmd_").removesuffix(".json"))
            if op is not None and op["status"] not in ("pending", "processing"):
                self.commands.complete(path)  # finished before the crash; only the file was left behind
                continue
            self._run_claimed(path, now, self.cfg.commands.max_file_bytes)  # claimed, never recorded: never ran

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
            if res.status == CloseStatus.CLOSED and (pos is None or self._gone(t)):
                self.store.mark_closed(t, realised_profit=res.profit, reason=op.get("source") == "rule" and "rule"
                                       or "command", closed_at=now)
        all_results = [self._as_result(r) for r in self.store.results(op_id)]
        status = self._final_status(all_results, single=op["operation_type"] in ("single", "partial"))
        self.store.finish_operation(op_id, status, finished_at=_iso(self.clock()),
                                    error_message=None if status == "completed" else "reconciled after a restart")
        log.info(kv("reconciled", operation=op["command_id"], status=status, recorded=len(results)))

    def _gone(self, ticket: int) -> bool:
        try:
            return self.broker.position(ticket) is None
        except BrokerError:
            return False

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
