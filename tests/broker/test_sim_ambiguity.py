"""Outcomes a caller cannot read off the reply: lost replies, 10011/10012, partial fills, late views.

These are the cases where a blind resend trades twice (contract §3.1 AMBIG, §4.5);
each test shows what the simulator does so that adapter tests can rely on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _sim_clock import Clock

from fxnb.broker.sim import FaultSettings, SimSettings, SimTerminal, read_control, write_control
from fxnb.broker.sim import constants as C
from fxnb.broker.sim.faults import Faults
from fxnb.broker.sim.symbols import SPECS

DONE, PARTIAL = C.TRADE_RETCODE_DONE, C.TRADE_RETCODE_DONE_PARTIAL
IPC_TIMEOUT = (-10005, "IPC timeout")
LOST = {IPC_TIMEOUT, (-10002, "IPC recv failed"), (-10001, "IPC send failed")}


def _terminal(tmp_path: Path, clock: Clock | None = None, **faults: object) -> SimTerminal:
    section = {"volatility": 0.0, "positions": {"count": 0}, "seed": 7, "faults": faults}
    t = SimTerminal(SimSettings.from_mapping(section, tmp_path), clock=clock or Clock())
    assert t.initialize(), t.last_error()
    return t


@pytest.fixture
def mt5(tmp_path: Path) -> Iterator[SimTerminal]:
    t = _terminal(tmp_path)
    yield t
    t.close()


def buy(mt5: SimTerminal, volume: float = 0.1, filling: int = C.ORDER_FILLING_IOC, symbol: str = "EURUSD"):
    return mt5.order_send(
        {"action": 1, "symbol": symbol, "volume": volume, "type": C.ORDER_TYPE_BUY, "type_filling": filling}
    )


def close(mt5: SimTerminal, ticket: int, volume: float, filling: int = C.ORDER_FILLING_IOC):
    return mt5.order_send(
        {
            "action": 1,
            "symbol": "EURUSD",
            "volume": volume,
            "type": C.ORDER_TYPE_SELL,
            "position": ticket,
            "type_filling": filling,
        }
    )


def out_deals(mt5: SimTerminal, position: int) -> list[float]:
    return [d.volume for d in mt5.history_deals_get(position=position) if d.entry == C.DEAL_ENTRY_OUT]


# ---------------------------------------------------------------- lost replies


def test_lost_reply_executes_the_close_but_returns_none(mt5: SimTerminal) -> None:
    ticket = buy(mt5).order
    write_control(mt5.state_file, lose_next_replies=1)
    assert close(mt5, ticket, 0.1) is None
    assert mt5.last_error() == IPC_TIMEOUT
    assert mt5.positions_get(ticket=ticket) == () and out_deals(mt5, ticket) == [0.1]  # it happened
    assert "lose_next_replies" not in read_control(mt5.state_file)  # used up
    assert close(mt5, ticket, 0.1).retcode == C.TRADE_RETCODE_POSITION_CLOSED  # the resend finds it gone
    assert buy(mt5).retcode == DONE and mt5.last_error() == (1, "Success")  # the session survived


def test_blind_resend_after_a_lost_partial_close_closes_twice(mt5: SimTerminal) -> None:
    ticket = buy(mt5).order
    write_control(mt5.state_file, lose_next_replies=1)
    assert close(mt5, ticket, 0.05) is None
    assert close(mt5, ticket, 0.05).retcode == DONE  # what an adapter must not do
    assert mt5.positions_get(ticket=ticket) == () and out_deals(mt5, ticket) == [0.05, 0.05]


def test_lose_next_replies_counts_refused_requests_too(mt5: SimTerminal) -> None:
    write_control(mt5.state_file, lose_next_replies=2)
    assert buy(mt5, volume=0.001) is None and mt5.last_error() == IPC_TIMEOUT  # 10014, unseen
    assert read_control(mt5.state_file)["lose_next_replies"] == 1
    assert buy(mt5) is None and mt5.positions_total() == 1
    assert buy(mt5).retcode == DONE and mt5.positions_total() == 2


def test_lose_next_replies_is_shared_by_terminals_on_one_state_file(tmp_path: Path) -> None:
    a, b = _terminal(tmp_path), _terminal(tmp_path)
    try:
        write_control(a.state_file, lose_next_replies=1)
        replies = [buy(a), buy(b), buy(a), buy(b)]
        assert [r is None for r in replies] == [True, False, False, False]
        assert a.positions_total() == b.positions_total() == 4
    finally:
        a.close()
        b.close()


def test_lost_reply_rate_is_seeded_and_every_lost_request_executed(tmp_path: Path) -> None:
    def run(sub: str) -> list[tuple[int, str] | None]:
        mt5 = _terminal(tmp_path / sub, lost_reply_rate=0.5)
        try:
            out = [None if buy(mt5, 0.01) is not None else mt5.last_error() for _ in range(40)]
            assert mt5.positions_total() == 40
            return out
        finally:
            mt5.close()

    a, b = run("a"), run("b")
    assert a == b
    lost = [e for e in a if e is not None]
    assert 5 < len(lost) < 35 and set(lost) <= LOST


def test_a_new_fault_leaves_the_requote_sequence_alone(tmp_path: Path) -> None:
    def codes(sub: str, **faults: object) -> list[int]:
        mt5 = _terminal(tmp_path / sub, requote_rate=0.3, **faults)
        try:
            return [getattr(buy(mt5, 0.01), "retcode", 0) for _ in range(30)]
        finally:
            mt5.close()

    plain = codes("plain")
    lossy = codes("lossy", lost_reply_rate=0.5, partial_fill_rate=0.5, visibility_delay_ms=10.0)
    seen = [i for i, c in enumerate(lossy) if c]  # a lost reply hides its retcode
    requoted = [plain[i] == C.TRADE_RETCODE_REQUOTE for i in seen]
    assert requoted == [lossy[i] == C.TRADE_RETCODE_REQUOTE for i in seen]
    assert any(requoted) and 5 < len(seen) < 25


# ---------------------------------------------------------------- 10011 / 10012


@pytest.mark.parametrize(
    ("key", "retcode", "comment"),
    [
        ("error_rate", C.TRADE_RETCODE_ERROR, "Request processing error"),
        ("timeout_rate", C.TRADE_RETCODE_TIMEOUT, "Request canceled by timeout"),
    ],
)
def test_ambiguous_codes_execute_nothing_by_default(tmp_path: Path, key: str, retcode: int, comment: str) -> None:
    mt5 = _terminal(tmp_path, **{key: 1.0})
    try:
        r = buy(mt5)
        assert (r.retcode, r.comment, r.deal, r.order, r.volume) == (retcode, comment, 0, 0, 0.0)
        assert mt5.positions_total() == 0
    finally:
        mt5.close()


def test_ambiguous_executes_trades_then_answers_10012(tmp_path: Path) -> None:
    mt5 = _terminal(tmp_path)
    ticket = buy(mt5).order
    mt5.close()
    mt5 = _terminal(tmp_path, timeout_rate=1.0, ambiguous_executes=True)
    try:
        r = close(mt5, ticket, 0.1)
        assert (r.retcode, r.deal, r.order) == (C.TRADE_RETCODE_TIMEOUT, 0, 0)
        assert mt5.positions_get(ticket=ticket) == () and out_deals(mt5, ticket) == [0.1]
        assert close(mt5, ticket, 0.1).retcode == C.TRADE_RETCODE_POSITION_CLOSED
    finally:
        mt5.close()


def test_error_and_timeout_rates_share_the_send_draw(tmp_path: Path) -> None:
    mt5 = _terminal(tmp_path, error_rate=0.3, timeout_rate=0.3)
    try:
        codes = {buy(mt5, 0.01).retcode for _ in range(60)}
        assert codes == {C.TRADE_RETCODE_ERROR, C.TRADE_RETCODE_TIMEOUT, DONE}
    finally:
        mt5.close()


# ---------------------------------------------------------------- partial fills


def test_partial_close_fills_part_and_the_remainder_can_be_closed(tmp_path: Path) -> None:
    mt5 = _terminal(tmp_path)
    ticket = buy(mt5).order
    mt5.close()
    mt5 = _terminal(tmp_path, partial_fill_rate=1.0)
    try:
        r = close(mt5, ticket, 0.1)
        assert (r.retcode, r.comment) == (PARTIAL, "Request executed partially")
        assert 0.01 <= r.volume <= 0.09 and round(r.volume * 100, 6) == round(r.volume * 100)
        (p,) = mt5.positions_get(ticket=ticket)
        assert p.volume == pytest.approx(0.1 - r.volume)
        assert [d.volume for d in mt5.history_deals_get(ticket=r.order)] == [r.volume]
        (order,) = mt5.history_orders_get(ticket=r.order)
        assert (order.volume_initial, order.state) == (0.1, C.ORDER_STATE_PARTIAL)
        assert order.volume_current == pytest.approx(0.1 - r.volume)
        for _ in range(20):  # what the adapter does: re-read, close what is left
            left = mt5.positions_get(ticket=ticket)
            if not left:
                break
            assert close(mt5, ticket, left[0].volume).retcode in (DONE, PARTIAL)
        assert mt5.positions_get(ticket=ticket) == ()
        assert sum(out_deals(mt5, ticket)) == pytest.approx(0.1)
        assert close(mt5, buy(mt5, 0.01).order, 0.01).retcode == DONE  # one step cannot be split
    finally:
        mt5.close()


def test_partial_open_and_fok_is_never_partial(tmp_path: Path) -> None:
    mt5 = _terminal(tmp_path, partial_fill_rate=1.0)
    try:
        r = buy(mt5, 1.0)
        assert r.retcode == PARTIAL and 0.01 <= r.volume < 1.0
        assert mt5.positions_get(ticket=r.order)[0].volume == r.volume
        full = buy(mt5, 1.0, filling=C.ORDER_FILLING_FOK)
        assert (full.retcode, full.volume) == (DONE, 1.0)
    finally:
        mt5.close()


def test_partial_volume_never_leaves_dust() -> None:
    faults = Faults(FaultSettings(partial_fill_rate=1.0), seed=1)
    chf = SPECS["USDCHF"]  # volume_min 0.10, step 0.01
    fills = {faults.partial_volume(chf, 0.25, held=0.25) for _ in range(200)}
    assert fills == {0.10, 0.11, 0.12, 0.13, 0.14, 0.15}  # leaves at least 0.10 open
    assert faults.partial_volume(chf, 0.15, held=0.15) is None  # any split leaves dust: all of it
    assert faults.partial_volume(chf, 0.30, held=None) in {round(0.10 + i / 100, 2) for i in range(20)}


# ---------------------------------------------------------------- late visibility


def test_positions_and_history_lag_behind_an_execution(tmp_path: Path) -> None:
    clock = Clock()
    mt5 = _terminal(tmp_path, clock, visibility_delay_ms=500.0)
    try:
        r = buy(mt5)
        assert r.retcode == DONE
        assert mt5.positions_get() == () and mt5.positions_total() == 0
        assert mt5.positions_get(ticket=r.order) == () and mt5.positions_get(symbol="EURUSD") == ()
        assert mt5.history_deals_get(ticket=r.order) == () and mt5.history_orders_get(ticket=r.order) == ()
        assert mt5.history_deals_total(0, 2**40) == 1  # the deposit only
        clock.now += 0.499
        assert mt5.positions_total() == 0
        clock.now += 0.001
        assert [p.ticket for p in mt5.positions_get()] == [r.order]
        assert len(mt5.history_deals_get(ticket=r.order)) == 1 and mt5.history_deals_total(0, 2**40) == 2
    finally:
        mt5.close()


def test_a_closed_position_still_shows_until_the_change_arrives(tmp_path: Path) -> None:
    clock = Clock()
    mt5 = _terminal(tmp_path, clock, visibility_delay_ms=600.0)
    try:
        ticket = buy(mt5).order
        clock.now += 1.0
        assert close(mt5, ticket, 0.1).retcode == DONE
        (p,) = mt5.positions_get(ticket=ticket)  # stale, but valued at the current price
        assert p.volume == 0.1 and p.price_current == mt5.symbol_info_tick("EURUSD").bid
        assert out_deals(mt5, ticket) == []
        assert close(mt5, ticket, 0.1).retcode == C.TRADE_RETCODE_POSITION_CLOSED  # the server knows
        clock.now += 0.6
        assert mt5.positions_get(ticket=ticket) == () and out_deals(mt5, ticket) == [0.1]
    finally:
        mt5.close()


def test_each_execution_arrives_after_its_own_delay(tmp_path: Path) -> None:
    clock = Clock()
    mt5 = _terminal(tmp_path, clock, visibility_delay_ms=500.0)
    try:
        first = buy(mt5).order
        clock.now += 0.3
        second = buy(mt5).order
        clock.now += 0.2
        assert [p.ticket for p in mt5.positions_get()] == [first]
        assert mt5.history_deals_get(ticket=second) == ()
        clock.now += 0.3
        assert [p.ticket for p in mt5.positions_get()] == [first, second]
    finally:
        mt5.close()


# ---------------------------------------------------------------- history after login


def test_history_is_empty_right_after_login(tmp_path: Path) -> None:
    clock = Clock()
    mt5 = _terminal(tmp_path, clock, history_delay_ms=1000.0)
    try:
        ticket = buy(mt5).order
        assert mt5.history_deals_get(0, 2**40) == () and mt5.history_orders_get(position=ticket) == ()
        assert mt5.history_deals_total(0, 2**40) == 0 and mt5.last_error() == (1, "Success")
        assert mt5.positions_total() == 1  # positions are there at once
        clock.now += 1.0
        assert [d.type for d in mt5.history_deals_get(0, 2**40)] == [C.DEAL_TYPE_BALANCE, C.DEAL_TYPE_BUY]
        mt5.shutdown()
        assert mt5.initialize()
        assert mt5.history_deals_get(position=ticket) == ()  # downloading again
        clock.now += 1.0
        assert len(mt5.history_deals_get(position=ticket)) == 1
    finally:
        mt5.close()
