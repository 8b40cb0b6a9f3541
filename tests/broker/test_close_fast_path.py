"""The close job's terminal calls and the adapter's bulk position conversion (the monitor's hot paths).

A clean full close of a position that never changed reads the position, sends (on a market
execution symbol at the position's ``price_current``; instant execution and every resend read a
fresh tick first), and reads the deal history once (for the realised profit of the deal the
answer named), or leaves that read to ``settle_deals``, one read for a batch of closes. The
deal history is read before the send too when older exit deals may exist: a position that was
changed (partly closed, SL/TP moved), a netting account, or an account whose margin mode the
adapter has not read yet. When that pre-send read was skipped and an answer is ambiguous, the
job checks the history before counting exit deals as its own, and never resends blindly.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _positions_ref import constructed
from _sim_clock import Clock
from hypothesis import given
from hypothesis import strategies as st

from fxnb.broker import Broker
from fxnb.broker import retcodes as rc
from fxnb.broker.adapter import AdapterSettings, positions_from_structs
from fxnb.broker.closing import _f
from fxnb.broker.requests import _f as reference_f
from fxnb.broker.sim import SimSettings, SimTerminal
from fxnb.broker.sim import constants as C
from fxnb.broker.sim.structs import OrderSendResult, TradePosition
from fxnb.models import CloseStatus, Position, Side


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


class Recorder:
    """Delegates to the terminal; records the name of every call and every order_send request."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[str] = []
        self.requests: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name.startswith("_") or not callable(attr) or name == "last_error":
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if name == "order_send":
                self.requests.append(dict(args[0]))
            return attr(*args, **kwargs)

        return call


class LostReply(Recorder):
    """The next ``order_send`` answers None with an IPC timeout; it executed if ``execute``."""

    def __init__(self, inner: Any, *, execute: bool) -> None:
        super().__init__(inner)
        self.lose, self.execute = 1, execute
        self._pending: tuple[int, str] | None = None

    def __getattr__(self, name: str) -> Any:
        if name == "order_send":
            return self._order_send
        if name == "last_error":
            return self._last_error
        return super().__getattr__(name)

    def _order_send(self, request: dict[str, Any]) -> Any:
        self.calls.append("order_send")
        self.requests.append(dict(request))
        if self.lose:
            self.lose = 0
            if self.execute:
                result = self._inner.order_send(request)
                assert result is not None and result.retcode == rc.DONE, result
            self._pending = (-10005, "IPC timeout")
            return None
        return self._inner.order_send(request)

    def _last_error(self) -> tuple[int, str]:
        if self._pending is not None:
            err, self._pending = self._pending, None
            return err
        return self._inner.last_error()


def _terminal(tmp_path: Path, *, clock: Clock | None = None, margin_mode: str = "hedging",
              positions: list[dict[str, Any]] | None = None) -> SimTerminal:
    section = {"volatility": 0.0, "seed": 7, "margin_mode": margin_mode,
               "positions": {"count": 0, "list": positions or []}}
    t = SimTerminal(SimSettings.from_mapping(section, tmp_path), **({"clock": clock} if clock else {}))
    assert t.initialize(), t.last_error()
    return t


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimTerminal]:
    t = _terminal(tmp_path, positions=[{"symbol": "EURUSD", "type": "buy", "volume": 1.0, "price_open": 1.08}])
    yield t
    t.close()


def _broker(module: Any, **settings: Any) -> tuple[Broker, FakeTime]:
    ft = FakeTime()
    broker = Broker(module, settings=AdapterSettings(**settings), sleep=ft.sleep, clock=ft.clock)
    broker.connect()
    return broker, ft


def _outs(t: SimTerminal, position: int) -> list[float]:
    return [d.volume for d in t.history_deals_get(position=position) if d.entry == C.DEAL_ENTRY_OUT]


# ------------------------------------------------------------------------ terminal calls per close
def test_clean_close_of_an_unchanged_position_reads_the_history_once(sim: SimTerminal) -> None:
    rec = Recorder(sim)
    broker, _ = _broker(rec)
    snap = broker.snapshot()  # what the monitor does every poll: it also tells the margin mode
    (p,) = snap.positions
    broker.symbol("EURUSD")  # the symbol's volume rules are read once per connection
    rec.calls.clear()
    result = broker.close(p.ticket)
    # EURUSD is market execution: the request's price (ignored there) is the re-read position's
    assert rec.calls == ["positions_get", "order_send", "history_deals_get"]
    assert result.status is CloseStatus.CLOSED and result.closed_volume == 1.0 and result.attempts == 1
    (deal,) = [d for d in sim.history_deals_get(position=p.ticket) if d.entry == C.DEAL_ENTRY_OUT]
    assert result.deals == (deal.ticket,)
    assert result.profit == pytest.approx(deal.profit + deal.swap + deal.commission + deal.fee)
    assert rec.requests[0]["price"] == p.price_current == sim.symbol_info_tick("EURUSD").bid


def test_instant_execution_reads_a_fresh_tick_before_the_first_send(tmp_path: Path) -> None:
    # USDJPY is instant execution in the simulator: the server fills only near the request's price
    t = _terminal(tmp_path, positions=[{"symbol": "USDJPY", "type": "sell", "volume": 0.5, "price_open": 150.0}])
    try:
        rec = Recorder(t)
        broker, _ = _broker(rec)
        broker.account()
        (p,) = broker.positions()
        broker.symbol("USDJPY")
        rec.calls.clear()
        result = broker.close(p.ticket)
        assert rec.calls == ["positions_get", "symbol_info_tick", "order_send", "history_deals_get"]
        assert result.status is CloseStatus.CLOSED
        assert rec.requests[0]["price"] == t.symbol_info_tick("USDJPY").ask
    finally:
        t.close()


def test_each_send_rereads_the_position_and_each_resend_a_fresh_tick(sim: SimTerminal) -> None:
    class Requote(Recorder):
        """The first send is requoted (10004, nothing executed); later ones reach the terminal."""

        def __getattr__(self, name: str) -> Any:
            attr = super().__getattr__(name)
            if name != "order_send":
                return attr

            def send(request: dict[str, Any]) -> Any:
                if "order_send" not in self.calls:
                    self.calls.append("order_send")
                    return OrderSendResult(10004, 0, 0, 0.0, 0.0, 0.0, 0.0, "Requote", 0, 0, None)
                return attr(request)

            return send

    rec = Requote(sim)
    broker, ft = _broker(rec)
    broker.account()
    (p,) = broker.positions()
    broker.symbol("EURUSD")
    rec.calls.clear()
    result = broker.close(p.ticket, volume=0.3)
    assert result.status is CloseStatus.CLOSED and result.attempts == 2, result
    assert ft.sleeps == [0.1]
    first, second = [i for i, c in enumerate(rec.calls) if c == "order_send"]
    assert rec.calls[:first] == ["positions_get"], rec.calls  # market execution: the position's price
    # after the requote: the position again, then a fresh tick (mt5_api.md §4.5)
    assert rec.calls[second - 2:second] == ["positions_get", "symbol_info_tick"], rec.calls
    assert rec.requests[-1]["price"] == sim.symbol_info_tick("EURUSD").bid  # the resend (the requote is not recorded)


@pytest.mark.parametrize("how", ["partly_closed", "sltp_moved", "margin_mode_unknown", "netting"])
def test_the_history_is_read_before_the_send_when_older_exits_may_exist(tmp_path: Path, how: str) -> None:
    t = _terminal(tmp_path, margin_mode="netting" if how == "netting" else "hedging",
                  positions=[{"symbol": "EURUSD", "type": "buy", "volume": 1.0, "price_open": 1.08}])
    try:
        rec = Recorder(t)
        broker, _ = _broker(rec)
        if how != "margin_mode_unknown":
            broker.account()
        (p,) = broker.positions()
        if how == "partly_closed":
            assert broker.close(p.ticket, volume=0.2).status is CloseStatus.CLOSED
        elif how == "sltp_moved":
            assert broker.modify_sltp(p.ticket, sl=1.0, tp=0.0).ok
        broker.symbol("EURUSD")
        rec.calls.clear()
        result = broker.close(p.ticket)
        assert rec.calls == ["positions_get", "history_deals_get", "order_send", "history_deals_get"], rec.calls
        assert result.status is CloseStatus.CLOSED and result.closed_volume == (0.8 if how == "partly_closed" else 1.0)
    finally:
        t.close()


# ------------------------------------------------------------------------ ambiguous answers without the pre-send read
def test_lost_reply_of_an_executed_partial_close_is_settled_from_the_history(sim: SimTerminal) -> None:
    lost = LostReply(sim, execute=True)
    broker, _ = _broker(lost)
    broker.account()
    (p,) = broker.positions()
    lost.calls.clear()
    result = broker.close(p.ticket, volume=0.4)
    assert "history_deals_get" not in lost.calls[: lost.calls.index("order_send")]  # the read was skipped
    assert lost.calls.count("order_send") == 1  # not resent
    assert result.status is CloseStatus.CLOSED and result.closed_volume == 0.4, result
    assert _outs(sim, p.ticket) == [0.4]
    (deal,) = [d for d in sim.history_deals_get(position=p.ticket) if d.entry == C.DEAL_ENTRY_OUT]
    assert result.deals == (deal.ticket,) and result.profit == pytest.approx(deal.profit + deal.commission)


def test_lost_reply_of_an_unexecuted_close_is_reported_not_resent(sim: SimTerminal) -> None:
    lost = LostReply(sim, execute=False)
    broker, _ = _broker(lost)
    broker.account()
    (p,) = broker.positions()
    result = broker.close(p.ticket, volume=0.4)
    assert [r["volume"] for r in lost.requests] == [0.4]
    assert result.status is CloseStatus.FAILED and "not sending again" in result.message, result
    assert _outs(sim, p.ticket) == []


def _changed_in_the_opening_millisecond(tmp_path: Path) -> tuple[SimTerminal, int]:
    """A position opened and partly closed in the same millisecond (a frozen clock): its two times are
    equal although it has an exit deal, the one case the pre-send skip cannot see."""
    t = _terminal(tmp_path, clock=Clock())
    res = t.order_send({"action": C.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 1.0,
                        "type": C.ORDER_TYPE_BUY, "type_filling": C.ORDER_FILLING_IOC})
    ticket = res.order
    part = t.order_send({"action": C.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 0.4, "position": ticket,
                         "type": C.ORDER_TYPE_SELL, "type_filling": C.ORDER_FILLING_IOC})
    assert part.retcode == rc.DONE
    (pos,) = t.positions_get(ticket=ticket)
    assert pos.time_update_msc == pos.time_msc and pos.volume == 0.6
    return t, ticket


def test_an_older_exit_deal_is_never_taken_for_ours(tmp_path: Path) -> None:
    t, ticket = _changed_in_the_opening_millisecond(tmp_path)
    try:
        lost = LostReply(t, execute=True)
        broker, _ = _broker(lost)
        broker.account()
        result = broker.close(ticket, volume=0.2)
        assert lost.calls.count("order_send") == 1
        assert _outs(t, ticket) == [0.4, 0.2]  # closed once, as asked
        assert result.status is CloseStatus.CLOSED and result.closed_volume == 0.2, result
        assert result.deals == () and result.profit == 0.0  # the old 0.4 deal is not reported as this close's
        assert "older than this close" in result.message
    finally:
        t.close()


def test_no_blind_resend_when_the_history_cannot_tell(tmp_path: Path) -> None:
    t, ticket = _changed_in_the_opening_millisecond(tmp_path)
    try:
        lost = LostReply(t, execute=False)
        broker, ft = _broker(lost)
        broker.account()
        result = broker.close(ticket, volume=0.2)
        assert lost.calls.count("order_send") == 1  # not resent: it cannot know which exit deals are its own
        assert _outs(t, ticket) == [0.4]
        assert result.status is CloseStatus.FAILED and result.closed_volume == 0.0, result
        assert "not sending again" in result.message
        assert sum(ft.sleeps) <= 2.0  # a bounded wait for a lagging terminal, nothing more
    finally:
        t.close()


# ------------------------------------------------------------------------ deals read for a batch (settle_deals)
_BOOK = [{"symbol": "EURUSD", "type": "buy", "volume": 1.0, "price_open": 1.08},
         {"symbol": "GBPUSD", "type": "sell", "volume": 0.5, "price_open": 1.30},
         {"symbol": "EURUSD", "type": "sell", "volume": 0.2, "price_open": 1.09}]


def _exit_deal(t: SimTerminal, position: int) -> Any:
    (deal,) = [d for d in t.history_deals_get(position=position) if d.entry == C.DEAL_ENTRY_OUT]
    return deal


def _assert_settled_from_deals(t: SimTerminal, results: list[Any]) -> None:
    for r in results:
        deal = _exit_deal(t, r.ticket)
        assert not r.deals_pending and r.status is CloseStatus.CLOSED, r
        assert r.deals == (deal.ticket,) and r.price == deal.price
        assert r.profit == pytest.approx(deal.profit + deal.swap + deal.commission + deal.fee)


class DropFromWindow(Recorder):
    """The date-range deal read leaves out the deals of ``hidden`` positions (a terminal still catching up)."""

    def __init__(self, inner: Any, hidden: set[int]) -> None:
        super().__init__(inner)
        self.hidden = hidden

    def __getattr__(self, name: str) -> Any:
        attr = super().__getattr__(name)
        if name != "history_deals_get":
            return attr

        def read(*args: Any, **kwargs: Any) -> Any:
            deals = attr(*args, **kwargs)
            return deals if kwargs else tuple(d for d in deals if d.position_id not in self.hidden)

        return read


@pytest.mark.parametrize("known_offset", [True, False])
def test_a_batch_of_clean_closes_reads_its_deals_once(tmp_path: Path, known_offset: bool) -> None:
    t = _terminal(tmp_path, positions=_BOOK)
    try:
        rec = Recorder(t)
        broker, _ = _broker(rec)
        broker.account()
        tickets = [p.ticket for p in broker.positions()]
        offset = broker.server_offset_s("EURUSD", time.time()) if known_offset else None
        assert offset in (7_200, None)  # the simulator's server runs at UTC+2
        for symbol in ("EURUSD", "GBPUSD"):
            broker.symbol(symbol)  # volume rules: read once per connection
        since = time.time()
        rec.calls.clear()
        pending = [broker.close(ticket, deals_later=True) for ticket in tickets]
        assert rec.calls == ["positions_get", "order_send"] * 3  # no deal read yet
        assert all(r.deals_pending and r.status is CloseStatus.CLOSED and r.profit == 0.0 for r in pending)
        rec.calls.clear()
        settled = broker.settle_deals(pending, server_offset_s=offset, since=since, now=time.time())
        # one read of the window for the batch; without the offset the window cannot be placed: one per position
        assert rec.calls == (["history_deals_get"] if known_offset else ["history_deals_get"] * 3)
        assert [r.ticket for r in settled] == tickets
        _assert_settled_from_deals(t, settled)
    finally:
        t.close()


def test_a_deal_missing_from_the_window_is_read_for_its_position(tmp_path: Path) -> None:
    t = _terminal(tmp_path, positions=_BOOK)
    try:
        probe = Recorder(t)
        broker, _ = _broker(probe)
        broker.account()
        tickets = [p.ticket for p in broker.positions()]
        rec = DropFromWindow(t, hidden={tickets[1]})
        broker, ft = _broker(rec)
        broker.account()
        since = time.time()
        pending = [broker.close(ticket, deals_later=True) for ticket in tickets]
        rec.calls.clear()
        settled = broker.settle_deals(pending, server_offset_s=7_200, since=since, now=time.time())
        assert rec.calls == ["history_deals_get", "history_deals_get"]  # the window, then the missing one alone
        assert ft.sleeps == []
        _assert_settled_from_deals(t, settled)
    finally:
        t.close()


def test_an_ambiguous_close_settles_its_own_deals(sim: SimTerminal) -> None:
    lost = LostReply(sim, execute=True)
    broker, _ = _broker(lost)
    broker.account()
    (p,) = broker.positions()
    result = broker.close(p.ticket, deals_later=True)
    assert not result.deals_pending and result.status is CloseStatus.CLOSED  # read in the job, as before
    _assert_settled_from_deals(sim, [result])
    assert broker.settle_deals([result], server_offset_s=7_200, since=0.0, now=time.time()) == [result]


# ------------------------------------------------------------------------ bulk struct -> Position


def test_bulk_positions_equal_constructed_ones(tmp_path: Path) -> None:
    t = _terminal(tmp_path, positions=[{"symbol": "EURUSD", "type": "buy", "volume": 0.3},
                                       {"symbol": "GBPUSD", "type": "sell", "volume": 1.25}])
    try:
        raw = t.positions_get()
        raw = (*raw, raw[0]._replace(volume=0.1 + 0.2, magic=True, comment=7))  # 0.30000000000000004, odd types
        fast = positions_from_structs(raw, C.POSITION_TYPE_BUY)
        slow = tuple(constructed(p, C.POSITION_TYPE_BUY) for p in raw)
        assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
        assert [type(p) for p in fast] == [Position] * 3
        assert fast[2].volume == 0.3 and fast[2].magic == 1 and fast[2].comment == "7"
        assert [p.side for p in fast] == [Side.BUY, Side.SELL, Side.BUY]
        with pytest.raises(dataclasses.FrozenInstanceError):
            fast[0].volume = 2.0  # type: ignore[misc]
        assert dataclasses.replace(fast[0], volume=0.1).volume == 0.1
        assert dataclasses.asdict(fast[1]) == dataclasses.asdict(slow[1])
        broker, _ = _broker(t)
        assert broker.positions() == tuple(constructed(p, C.POSITION_TYPE_BUY) for p in t.positions_get())
        assert broker.position(raw[1].ticket) == slow[1]
    finally:
        t.close()


def test_bulk_positions_reject_what_the_constructor_rejected() -> None:
    good = TradePosition(1, 2, 2000, 2, 2000, 0, 0, 1, 0, 0.1, 1.1, 0.0, 0.0, 1.2, 0.0, 5.0, "EURUSD", "", "")
    with pytest.raises((TypeError, ValueError)):
        positions_from_structs([good._replace(price_current=None)], 0)
    with pytest.raises(AttributeError):
        positions_from_structs([object()], 0)
    assert positions_from_structs([], 0) == ()


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6),
                 st.decimals(allow_nan=False, allow_infinity=False, places=12).map(float)))
def test_memoised_rounding_is_the_reference_rounding(x: float) -> None:
    for _ in range(2):  # the second call may come from the memo
        got, want = _f(x), reference_f(x)
        if math.isnan(want):
            assert math.isnan(got)
        else:
            assert got == want and math.copysign(1.0, got) == math.copysign(1.0, want)


def test_memoised_rounding_keeps_the_sign_of_zero() -> None:
    assert math.copysign(1.0, _f(0.0)) == 1.0 and math.copysign(1.0, _f(-0.0)) == -1.0
    assert math.copysign(1.0, _f(0.0)) == 1.0
