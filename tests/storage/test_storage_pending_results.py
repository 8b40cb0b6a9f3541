"""A close result whose deals are still pending (``Broker.close(..., deals_later=True)``) is never recorded.

Its price is the fill's and its profit is not read yet; recording it would put a realised P/L of
0.0 in the audit trail. The monitor settles it first (``Broker.settle_deals``); the store refuses
it, whole batch included, if that step is ever skipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fxnb.models import CloseResult, CloseStatus
from fxnb.storage import Store
from fxnb.storage.writer import CloseRecord


def test_a_result_with_pending_deals_is_refused_and_nothing_of_its_batch_is_kept(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "fxnb.db")
    try:
        op = store.create_operation("cmd-1", "all", source="operator", requested_by="test")
        store.claim_operation(op, target_tickets=[1, 2], claimed_at="2026-11-24T12:00:00.000Z")
        done = CloseResult(1, CloseStatus.CLOSED, 0.1, closed_volume=0.1, price=1.1, profit=2.5, deals=(11,))
        pending = CloseResult(2, CloseStatus.CLOSED, 0.1, closed_volume=0.1, price=1.1, deals=(12,),
                              deals_pending=True)
        with pytest.raises(ValueError, match="ticket 2 still has its deals pending"):
            store.record_closes(op, [CloseRecord(done), CloseRecord(pending)])
        assert store.db.execute("SELECT COUNT(*) FROM close_results").fetchone()[0] == 0
        store.record_closes(op, [CloseRecord(done)])
        assert store.db.execute("SELECT ticket, profit FROM close_results").fetchall() == [(1, 2.5)]
    finally:
        store.close()
