"""After a crash (or a database outage): finish or report every unfinished operation, never re-run blindly.

A mixin of ``Engine``. What was closed before the crash is found in the
terminal (position gone, or OUT deals since the claim) and recorded with what
the deals say; what was not is finished only while the command is still
within its expiry.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fxnb.errors import BrokerError, CommandError
from fxnb.models import CloseResult, CloseStatus, Position
from fxnb.monitor.deals import by_magic, exits, from_deals, result_of
from fxnb.monitor.logs import kv
from fxnb.monitor.targets import iso

if TYPE_CHECKING:
    from fxnb.monitor.engine import Engine as _Base
else:
    _Base = object

log = logging.getLogger("fxnb.monitor")
_iso = iso
_FOUND = "closed while the monitor was restarting or recovering"


class Reconciler(_Base):
    def reconcile(self) -> None:
        """After a crash: finish or report every unfinished operation against the terminal, never re-run blindly."""
        now = self.clock()
        leftovers = {p.name: p for p in self.commands.in_processing()}
        for op in self.store.unfinished_operations():
            path = leftovers.pop(op["file_name"], None) if op.get("file_name") else None
            self._reconcile_op(op, now, path)
            if path is not None:
                self.commands.complete(path)
        for path in leftovers.values():
            op = self.store.get_operation_by_command(path.name.removeprefix("cmd_").removesuffix(".json"))
            if op is not None and op["status"] not in ("pending", "processing"):
                self.commands.complete(path)  # finished before the crash; only the file was left behind
                continue
            self._run_claimed(path, now, self.cfg.commands.max_file_bytes)  # claimed, never recorded: never ran

    def _reconcile_op(self, op: dict[str, Any], now: float, path: Path | None) -> None:
        op_id = int(op["id"])
        expired = bool(op.get("expires_at")) and datetime.fromisoformat(op["expires_at"]).timestamp() <= now
        done = {int(r["ticket"]) for r in op.get("results") or []}
        targets = op.get("target_tickets")
        params = op.get("params") or {}
        if targets is None:  # recorded but never claimed: nothing was sent
            self._run_unclaimed(op, now, expired, path)
            return
        results = []
        for t in targets:
            if t in done:
                continue
            try:
                pos = self.broker.position(t)
            except BrokerError as exc:
                res = CloseResult(ticket=t, status=CloseStatus.FAILED, requested_volume=0.0,
                                  message=f"unknown after a restart or outage: terminal unreachable ({exc})")
            else:
                res = self._reconcile_ticket(t, pos, op, params, expired)
            results.append(res)
            self.store.add_result(op_id, res, finished_at=_iso(self.clock()))
            if res.status == CloseStatus.CLOSED and (pos is None or self._gone(t)):
                self.store.mark_closed(t, realised_profit=res.profit, reason=op.get("source") == "rule" and "rule"
                                       or "command", closed_at=now)
        all_results = [result_of(r) for r in self.store.results(op_id)]
        status = self._final_status(all_results, single=op["operation_type"] in ("single", "partial"))
        error = None if status == "completed" else "reconciled after a restart or outage"
        self.store.finish_operation(op_id, status, finished_at=_iso(self.clock()), error_message=error)
        log.info(kv("reconciled", operation=op["command_id"], status=status, recorded=len(results)))

    def _run_unclaimed(self, op: dict[str, Any], now: float, expired: bool, path: Path | None) -> None:
        """Run it now if it has not expired and its file is still there (exactly what a claimed file gets);
        otherwise it ends as expired or failed with nothing sent."""
        op_id = int(op["id"])
        reason = "interrupted before it ran (a monitor restart or a database outage); nothing was sent"
        if not expired and path is not None and op.get("source") == "operator":
            try:
                cmd = self._parse(self.commands.read_claimed(path, self.cfg.commands.max_file_bytes), path.name, now)
            except (OSError, CommandError) as exc:
                reason = f"{reason}; its file can no longer be read ({exc})"
            else:
                if cmd.id == op["command_id"]:
                    log.info(kv("reconciled", operation=op["command_id"], status="running now"))
                    self._execute_command(op_id, cmd)
                    return
        self.store.finish_operation(
            op_id, "expired" if expired else "failed", finished_at=_iso(now),
            error_message=f"{reason} - send it again if it is still wanted",
        )

    def _gone(self, ticket: int) -> bool:
        try:
            return self.broker.position(ticket) is None
        except BrokerError:
            return False

    def _reconcile_ticket(self, t: int, pos: Position | None, op: dict[str, Any], params: dict[str, Any],
                          expired: bool) -> CloseResult:
        partial = op["operation_type"] == "partial" or params.get("volume") is not None
        claimed_at = op.get("claimed_at")
        if pos is None:
            row = self.store.position(t) or {}
            ours = self._our_exits_since(int(row.get("identifier") or t), claimed_at)
            if ours:
                return from_deals(t, ours, f"{_FOUND}; recorded on reconciliation")
            realised = 0.0
            try:
                realised = self.broker.realised_profit(t)
            except BrokerError:
                pass
            return CloseResult(ticket=t, status=CloseStatus.CLOSED, requested_volume=0.0, profit=realised,
                               message=f"{_FOUND}; recorded on reconciliation (its deals were not in the history yet)")
        if partial and claimed_at:
            ours = self._our_exits_since(pos.identifier or pos.ticket, claimed_at)
            if ours:
                return from_deals(t, ours, "partial close found in deal history after a restart or outage",
                                        requested=float(params.get("volume") or 0))
        if expired:
            return CloseResult(ticket=t, status=CloseStatus.FAILED, requested_volume=pos.volume,
                               message="not closed: the command expired before the monitor could finish it "
                               "(restart or outage)")
        vol = params.get("volume")
        pct = params.get("percent")
        if pct is not None:
            vol = pos.volume * float(pct) / 100.0
        return self._close_one(t, volume=vol, percent=None)

    def _our_exits_since(self, identifier: int, claimed_at: str | None) -> list[dict[str, Any]]:
        """The position's exit deals made by fxnb (its magic) since the operation was claimed."""
        if not claimed_at:
            return []
        since = datetime.fromisoformat(claimed_at.replace("Z", "+00:00")).timestamp() + self._server_offset_s
        try:
            deals = self.broker.deals_for_position(identifier)
        except BrokerError:
            return []
        return [d for d in by_magic(exits(deals), self.broker.settings.magic) if float(d["time"]) >= since - 1]
