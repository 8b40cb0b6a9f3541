"""Closes whose answer was lost, settled from the deal history when the terminal shows them.

A mixin of ``Engine``. A close answered with nothing (an IPC drop after the request executed), on
a terminal that then went away before showing the change, is recorded 'failed' with nothing closed:
the adapter never resends what may have executed. Its deal turns up later; the poll that sees the
position vanish or shrink corrects that result, its operation and the close reason from the deals.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fxnb.errors import BrokerError
from fxnb.models import CloseResult, CloseStatus
from fxnb.monitor.deals import by_magic, deal_net, exits, from_deals, result_of
from fxnb.monitor.logs import kv

if TYPE_CHECKING:
    from fxnb.monitor.engine import Engine as _Base
else:
    _Base = object

log = logging.getLogger("fxnb.monitor")


class Settlement(_Base):
    def settle_vanished(self, ticket: int, outs: list[dict[str, Any]], now: float) -> bool:
        """A tracked position is gone: if fxnb's own deals closed it, record it as fxnb's close, not 'external'.

        ``outs``: the position's exit deals, oldest first (``deals.exits``). Returns False when the last
        one is not fxnb's (someone else closed it: the caller records an external close). A close of
        ours whose answer was lost is settled on the way.
        """
        magic = self.broker.settings.magic
        if not outs or int(outs[-1]["magic"]) != magic:
            self._settle_lost_answer(ticket, outs, now, close_reason=None)
            return False
        history = self.store.ticket_results(ticket)
        reason = self._settle_lost_answer(ticket, outs, now, close_reason="auto", history=history)
        if reason is None:  # nothing to settle: ours, recorded or found by reconciliation
            reason = "rule" if history and history[-1]["source"] == "rule" else "command"
            self.store.mark_closed(ticket, realised_profit=round(sum(deal_net(d) for d in outs), 2),
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
        self._settle_lost_answer(ticket, exits(deals), now, close_reason=None)

    def _settle_lost_answer(self, ticket: int, outs: list[dict[str, Any]], now: float, *, close_reason: str | None,
                            history: list[dict[str, Any]] | None = None) -> str | None:
        """Exit deals of ours that no result names belong to the last close of ``ticket`` recorded as failed or
        partial (its answer was lost, and the terminal showed the change only later): correct that result and
        its operation's status to what the deals say. ``close_reason="auto"`` also marks the position closed
        (as 'rule' or 'command', after that close's source). Returns the reason used, or None if nothing
        was settled."""
        ours = by_magic(outs, self.broker.settings.magic)
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
        found = from_deals(ticket, unrecorded, "")
        old_vol = float(doubtful["closed_volume"])
        closed = round(old_vol + found.closed_volume, 8)
        status = CloseStatus.CLOSED if closed >= float(doubtful["requested_volume"]) - 1e-8 else CloseStatus.PARTIAL
        price = (old_vol * float(doubtful["price"]) + found.closed_volume * found.price) / closed
        op_results = [result_of(r) for r in self.store.results(int(doubtful["operation_id"]))
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

