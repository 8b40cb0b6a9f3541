"""After a crash: finish or report every unfinished operation against the terminal, never re-run blindly.

A mixin of ``Engine``. What was closed before the crash is found in the
terminal (position gone, or OUT deals since the claim) and recorded; what was
not is finished only while the command is still within its expiry.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fxnb.errors import BrokerError, CommandError
from fxnb.models import CloseResult, CloseStatus, Position
from fxnb.monitor.logs import kv
from fxnb.monitor.targets import iso

if TYPE_CHECKING:
    from fxnb.monitor.engine import Engine as _Base
else:
    _Base = object

log = logging.getLogger("fxnb.monitor")
EXIT_ENTRIES = frozenset({1, 2, 3})  # DEAL_ENTRY_OUT, _INOUT, _OUT_BY


def _exits(deals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The exit deals among a position's deals, oldest first."""
    return sorted((d for d in deals if int(d["entry"]) in EXIT_ENTRIES), key=lambda d: (d["time_msc"], d["ticket"]))


def deal_net(d: dict[str, Any]) -> float:
    """A deal's (as ``Broker.deals_for_position`` gives it) part of realised P/L: profit, swap, commission, fee."""
    return float(d["profit"]) + float(d["swap"]) + float(d["commission"]) + float(d["fee"])
_iso = iso


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

    def _run_unclaimed(self, op: dict[str, Any], now: float, expired: bool, path: Path | None) -> None:
        """Run it now if it has not expired and its file is still there (exactly what a claimed file gets);
        otherwise it ends as expired or failed with nothing sent."""
        op_id = int(op["id"])
        reason = "interrupted by a monitor restart before it ran; nothing was sent"
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
                return self._from_deals(t, ours, "closed before the monitor restarted; recorded on reconciliation")
            realised = 0.0
            try:
                realised = self.broker.realised_profit(t)
            except BrokerError:
                pass
            return CloseResult(ticket=t, status=CloseStatus.CLOSED, requested_volume=0.0, profit=realised,
                               message="closed before the monitor restarted; recorded on reconciliation "
                               "(its deals were not in the history yet)")
        if partial and claimed_at:
            ours = self._our_exits_since(pos.identifier or pos.ticket, claimed_at)
            if ours:
                return self._from_deals(t, ours, "partial close found in deal history after restart",
                                        requested=float(params.get("volume") or 0))
        if expired:
            return CloseResult(ticket=t, status=CloseStatus.FAILED, requested_volume=pos.volume,
                               message="not closed: the monitor restarted after the command expired")
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
        magic = self.broker.settings.magic
        return [d for d in deals if int(d["entry"]) in EXIT_ENTRIES and int(d["magic"]) == magic
                and float(d["time"]) >= since - 1]

    def settle_vanished(self, ticket: int, identifier: int, deals: list[dict[str, Any]], now: float) -> bool:
        """A tracked position is gone: if fxnb's own deals closed it, record it as fxnb's close, not 'external'.

        Returns False when the last exit deal is not fxnb's (someone else closed it: the caller
        records an external close). A close of ours whose answer was lost is settled on the way.
        """
        magic = self.broker.settings.magic
        exits = _exits(deals)
        if not exits or int(exits[-1]["magic"]) != magic:
            self._settle_lost_answer(ticket, exits, now, close_reason=None)
            return False
        history = self.store.ticket_results(ticket)
        reason = self._settle_lost_answer(ticket, exits, now, close_reason="auto", history=history)
        if reason is None:  # nothing to settle: ours, recorded or found by reconciliation
            reason = "rule" if history and history[-1]["source"] == "rule" else "command"
            self.store.mark_closed(ticket, realised_profit=round(sum(deal_net(d) for d in exits), 2),
                                   reason=reason, closed_at=now)
            log.info(kv("closed_by_fxnb_deals", ticket=ticket, reason=reason))
        return True

    def settle_resized(self, ticket: int, now: float) -> None:
        """A tracked position's volume changed: a partial close of ours whose answer was lost shows up here."""
        row = self.store.position(ticket) or {}
        try:
            deals = self.broker.deals_for_position(int(row.get("identifier") or ticket))
        except BrokerError:
            return  # the next change or the position's end settles it
        self._settle_lost_answer(ticket, _exits(deals), now, close_reason=None)

    def _settle_lost_answer(self, ticket: int, exits: list[dict[str, Any]], now: float, *, close_reason: str | None,
                            history: list[dict[str, Any]] | None = None) -> str | None:
        """Exit deals of ours that no result names belong to the last close of ``ticket`` recorded as failed or
        partial (its answer was lost, and the terminal showed the change only later): correct that result and
        its operation's status to what the deals say. ``close_reason="auto"`` also marks the position closed
        (as 'rule' or 'command', after that close's source). Returns the reason used, or None if nothing
        was settled."""
        magic = self.broker.settings.magic
        ours = [d for d in exits if int(d["magic"]) == magic]
        if not ours:
            return None
        history = self.store.ticket_results(ticket) if history is None else history
        recorded = {int(x) for r in history for x in (r.get("deals") or [])}
        doubtful = next((r for r in reversed(history) if r["status"] in ("failed", "partial")
                         and r["operation_status"] not in ("pending", "processing")), None)
        if doubtful is None:
            return None
        before = datetime.fromisoformat(doubtful["finished_at"].replace("Z", "+00:00")).timestamp() + 1
        unrecorded = [d for d in ours if int(d["ticket"]) not in recorded
                      and float(d["time"]) - self._server_offset_s <= before]  # made before that result was written
        if not unrecorded:
            return None
        found = self._from_deals(ticket, unrecorded, "")
        old_vol = float(doubtful["closed_volume"])
        closed = round(old_vol + found.closed_volume, 8)
        status = CloseStatus.CLOSED if closed >= float(doubtful["requested_volume"]) - 1e-8 else CloseStatus.PARTIAL
        price = (old_vol * float(doubtful["price"]) + found.closed_volume * found.price) / closed
        op_results = [self._as_result(r) for r in self.store.results(int(doubtful["operation_id"]))
                      if int(r["id"]) != int(doubtful["id"])]
        op_results.append(CloseResult(ticket=ticket, status=status, requested_volume=0.0))
        op_status = self._final_status(op_results, single=doubtful["operation_type"] in ("single", "partial"))
        reason = "rule" if doubtful["source"] == "rule" else "command"
        note = (f"settled later: the deal history shows {found.closed_volume:g} lots closed by this request "
                f"(deals {list(found.deals)}), its answer had been lost")
        self.store.settle_result(
            int(doubtful["id"]), status=status.value, closed_volume=closed,
            profit=round(float(doubtful["profit"]) + found.profit, 2), price=round(price, 8),
            deals=[*(doubtful.get("deals") or []), *found.deals], note=note, operation_status=op_status,
            close_reason=reason if close_reason == "auto" else None, at=now)
        self.emit("warning", "close_settled", f"position {ticket}: {note}", {"ticket": ticket})
        log.warning(kv("close_settled", ticket=ticket, operation=doubtful["operation_id"], status=status.value,
                       closed=closed, operation_status=op_status))
        return reason

    @staticmethod
    def _from_deals(ticket: int, deals: list[dict[str, Any]], message: str, requested: float = 0.0) -> CloseResult:
        """A close found in the deal history, recorded with what the deals say."""
        volume = round(sum(float(d["volume"]) for d in deals), 8)
        price = sum(float(d["volume"]) * float(d["price"]) for d in deals) / volume if volume > 0 else 0.0
        profit = round(sum(deal_net(d) for d in deals), 2)
        return CloseResult(ticket=ticket, status=CloseStatus.CLOSED, requested_volume=requested or volume,
                           closed_volume=volume, price=round(price, 8), profit=profit, message=message,
                           deals=tuple(int(d["ticket"]) for d in deals), symbol=str(deals[0]["symbol"]))

    @staticmethod
    def _as_result(row: dict[str, Any]) -> CloseResult:
        return CloseResult(ticket=int(row["ticket"]), status=CloseStatus(row["status"]),
                           requested_volume=float(row.get("requested_volume") or 0))
