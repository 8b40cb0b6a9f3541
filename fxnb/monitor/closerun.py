"""``CloseRun``: one call of ``Engine._close_tickets``, the one execution path for rules and operators.

Each ticket's result and what it means for the tracked position (closed, partial close done) are
written in ONE transaction (``Store.record_closes``), so "recorded but not marked closed" cannot
happen. In a bulk close, results that are clean whole closes are written in batches
(``CLOSE_BATCH_TICKETS`` tickets or ``CLOSE_BATCH_SECONDS``, whichever comes first, one
transaction each) instead of one transaction per ticket, and their deals (price, realised
profit) are read for the batch at once, just before it is written (``Broker.settle_deals``).

Why batching is crash-safe: a batch only ever holds whole closes the terminal reported done
(status ``closed``, no volume/percent). If the monitor is killed before the batch is written,
the operation stays ``'processing'`` with those tickets missing from its results; on restart
``Reconciler.reconcile`` re-reads each unrecorded target, finds the position gone and records it
as closed (with its realised profit from the deal history) without sending anything, so a close
the terminal executed is never lost and never sent twice (tests/monitor/test_crash_recovery.py,
tests/hardening/test_crash_loop.py). Everything reconciliation could not tell from the terminal
alone is written at once, before the next ticket is touched: a partial close (volume/percent:
the position is still open, a re-run would close another part), a result that is not ``closed``
(failed, partial fill, already closed), and the partial rule's mark. The batch is always written
before the run returns or raises.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

from fxnb.gcpause import gc_paused
from fxnb.models import CloseResult, CloseStatus
from fxnb.storage import writer
from fxnb.storage.writer import CloseRecord

if TYPE_CHECKING:
    from fxnb.monitor.engine import Engine


def _warned(res: CloseResult, warning: str | None) -> CloseResult:
    return dataclasses.replace(res, message=f"{res.message} (warning: {warning})") if warning else res


class CloseRun:
    """Close ``tickets`` for operation ``op_id`` (see the module): :meth:`run` returns their results in order."""

    def __init__(self, engine: Engine, op_id: int, *, volume: float | None, percent: float | None, reason: str,
                 partial_rule: bool) -> None:
        self.engine = engine
        self.op_id = op_id
        self.volume, self.percent = volume, percent
        self.reason = reason
        self.partial_rule = partial_rule
        self.whole = volume is None and percent is None
        self.results: list[CloseResult] = []
        # whole closes not written yet: (index in results, finished at, spread warning)
        self.batch: list[tuple[int, float, str | None]] = []
        self.batch_started = 0.0  # monotonic, at the batch's first ticket
        self.batch_since = engine.clock()  # UTC, before the batch's first send: where its deals start

    def run(self, tickets: list[int]) -> list[CloseResult]:
        # The cyclic collector is paused over each run of CLOSE_BATCH_TICKETS tickets: a close job
        # makes a few dozen short-lived containers, and over a close-all its young collections and
        # the full ones they lead to cost about 6 % (on the simulator). Per run, not for the whole
        # close, so the few cycles failures leave (exceptions and their frames) are collected at
        # least that often however long a close-all takes.
        size = writer.CLOSE_BATCH_TICKETS
        try:
            for start in range(0, len(tickets), size):
                with gc_paused():
                    for t in tickets[start:start + size]:
                        self._one(t)
        finally:
            self._flush()
        return self.results

    def _settled(self, pending: list[CloseResult]) -> list[CloseResult]:
        e = self.engine
        return e.broker.settle_deals(pending, server_offset_s=e.known_server_offset(), since=self.batch_since,
                                     now=e.clock())

    def _flush(self) -> None:
        if self.batch:
            done = self._settled([self.results[i] for i, _, _ in self.batch])
            records = []
            for (i, at, warning), res in zip(self.batch, done, strict=True):
                self.results[i] = res = _warned(res, warning)
                records.append(CloseRecord(res, at, close_reason=self.reason))
            self.engine.store.record_closes(self.op_id, records)
            self.batch.clear()

    def _one(self, t: int) -> None:
        e = self.engine
        if not self.batch:
            self.batch_since = e.clock()
        # a whole close leaves its deal read to the batch's flush (Broker.settle_deals): one read of
        # the deal history for the batch instead of one per ticket
        res = e._close_one(t, volume=self.volume, percent=self.percent,
                           deals_later=self.whole and not self.partial_rule)
        warning = e._spread_warning(res) if self.reason == "command" and e.cfg.guards.spread.enabled else None
        now = e.clock()
        closed = res.status == CloseStatus.CLOSED and e._closes_whole(t, res, self.volume, self.percent)
        partial = self.partial_rule and res.status in (CloseStatus.CLOSED, CloseStatus.PARTIAL)
        if not (self.whole and closed and not partial):
            self._flush()  # keep the results in ticket order
            res = _warned(self._settled([res])[0] if res.deals_pending else res, warning)
            self.results.append(res)
            e.store.record_closes(self.op_id, [CloseRecord(res, now, close_reason=self.reason if closed else None,
                                                           partial=partial)])
            return
        self.results.append(res)
        if not self.batch:
            self.batch_started = time.monotonic()
        self.batch.append((len(self.results) - 1, now, warning))
        if len(self.batch) >= writer.CLOSE_BATCH_TICKETS or \
                time.monotonic() - self.batch_started >= writer.CLOSE_BATCH_SECONDS:
            self._flush()
