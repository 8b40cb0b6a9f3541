"""Injected faults and the external control file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from _sim_clock import Clock

from fxnb.broker.sim import SimSettings, SimTerminal, create_terminal, read_control, write_control
from fxnb.broker.sim import constants as C

NO_IPC = (-10004, "No IPC connection")


def _settings(tmp_path: Path, **section: object) -> SimSettings:
    base: dict[str, object] = {"volatility": 0.0, "positions": {"count": 0}}
    base.update(section)
    return SimSettings.from_mapping(base, tmp_path)


def _terminal(tmp_path: Path, clock: Clock | None = None, **section: object) -> SimTerminal:
    s = _settings(tmp_path, **section)
    t = SimTerminal(s, clock=clock) if clock is not None else create_terminal(s)
    assert t.initialize(), t.last_error()
    return t


@pytest.fixture
def mt5(tmp_path: Path) -> Iterator[SimTerminal]:
    t = _terminal(tmp_path)
    yield t
    t.close()


def buy(mt5: SimTerminal, symbol: str = "EURUSD", volume: float = 0.1, **extra: object):
    req: dict[str, object] = {
        "action": C.TRADE_ACTION_DEAL,
        "symbol": symbol,
        "volume": volume,
        "type": C.ORDER_TYPE_BUY,
        "type_filling": C.ORDER_FILLING_IOC,
    }
    req.update(extra)
    return mt5.order_send(req)


def close(mt5: SimTerminal, ticket: int):
    (p,) = mt5.positions_get(ticket=ticket)
    return mt5.order_send(
        {
            "action": C.TRADE_ACTION_DEAL,
            "symbol": p.symbol,
            "volume": p.volume,
            "type": 1 - p.type,
            "position": ticket,
            "type_filling": C.ORDER_FILLING_IOC,
        }
    )


# ---------------------------------------------------------------- market hours


def test_market_closed_from_settings_list(tmp_path: Path) -> None:
    mt5 = _terminal(tmp_path, faults={"market_closed": ["GBPUSD"]})
    try:
        r = buy(mt5, "GBPUSD")
        assert (r.retcode, r.comment) == (C.TRADE_RETCODE_MARKET_CLOSED, "Market closed")
        assert buy(mt5, "EURUSD").retcode == C.TRADE_RETCODE_DONE
        assert mt5.symbol_info_tick("GBPUSD") is not None  # quotes still readable
    finally:
        mt5.close()


@pytest.mark.parametrize(
    ("window", "closed"),
    [
        ({"symbol": "EURUSD", "from": "23:00", "to": "01:00"}, True),  # wraps midnight; server time is 00:13
        ({"symbol": "EURUSD", "from": "00:10", "to": "00:14"}, True),
        ({"symbol": "EURUSD", "from": "08:00", "to": "17:00"}, False),
        ({"symbol": "*", "from": "00:00", "to": "00:30"}, True),
        ({"symbol": "GBPUSD", "from": "00:00", "to": "23:59"}, False),
        ("*", True),
    ],
)
def test_market_closed_windows_use_server_time(tmp_path: Path, window: object, closed: bool) -> None:
    mt5 = _terminal(tmp_path, Clock(), faults={"market_closed": [window]})
    try:
        expected = C.TRADE_RETCODE_MARKET_CLOSED if closed else C.TRADE_RETCODE_DONE
        assert buy(mt5).retcode == expected
    finally:
        mt5.close()


def test_market_closed_from_control_file_blocks_closes_too(mt5: SimTerminal) -> None:
    r = buy(mt5)
    write_control(mt5.state_file, market_closed=["EURUSD"])
    assert close(mt5, r.order).retcode == C.TRADE_RETCODE_MARKET_CLOSED
    assert mt5.order_check({"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0}).retcode == 10018
    write_control(mt5.state_file, market_closed=None)
    assert close(mt5, r.order).retcode == C.TRADE_RETCODE_DONE


def test_trade_disabled_from_control_file(mt5: SimTerminal) -> None:
    r = buy(mt5, "XAUUSD")
    write_control(mt5.state_file, trade_disabled=["XAUUSD"])
    assert mt5.symbol_info("XAUUSD").trade_mode == C.SYMBOL_TRADE_MODE_DISABLED
    assert mt5.symbol_info("EURUSD").trade_mode == C.SYMBOL_TRADE_MODE_FULL
    out = close(mt5, r.order)
    assert (out.retcode, out.comment) == (C.TRADE_RETCODE_TRADE_DISABLED, "Trade disabled")
    assert buy(mt5, "EURUSD").retcode == C.TRADE_RETCODE_DONE
    write_control(mt5.state_file, trade_disabled=None)
    assert close(mt5, r.order).retcode == C.TRADE_RETCODE_DONE


# ---------------------------------------------------------------- algo trading


def test_autotrading_disabled_in_settings(tmp_path: Path) -> None:
    mt5 = _terminal(tmp_path, faults={"autotrading_disabled": True})
    try:
        assert mt5.terminal_info().trade_allowed is False
        r = buy(mt5)
        assert (r.retcode, r.comment, r.deal, r.order) == (10027, "AutoTrading disabled by client", 0, 0)
        assert mt5.order_check({"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0}).retcode == 10027
        assert mt5.positions_get() == () and mt5.account_info() is not None  # reads still work
        write_control(mt5.state_file, autotrading=True)  # the operator presses "Algo Trading"
        assert mt5.terminal_info().trade_allowed is True
        assert buy(mt5).retcode == C.TRADE_RETCODE_DONE
    finally:
        mt5.close()


def test_autotrading_switched_off_from_control_file(mt5: SimTerminal) -> None:
    write_control(mt5.state_file, autotrading=False)
    assert mt5.terminal_info().trade_allowed is False
    assert buy(mt5).retcode == C.TRADE_RETCODE_CLIENT_DISABLES_AT


# ---------------------------------------------------------------- requotes and rejects


def _retcodes(tmp_path: Path, seed: int, n: int = 40, **faults: float) -> list[int]:
    mt5 = _terminal(tmp_path, seed=seed, faults=faults)
    try:
        return [buy(mt5, volume=0.01).retcode for _ in range(n)]
    finally:
        mt5.close()


def test_requote_injection_is_seeded(tmp_path: Path) -> None:
    a = _retcodes(tmp_path / "a", seed=5, requote_rate=0.5)
    b = _retcodes(tmp_path / "b", seed=5, requote_rate=0.5)
    c = _retcodes(tmp_path / "c", seed=6, requote_rate=0.5)
    assert a == b and a != c
    assert set(a) == {C.TRADE_RETCODE_REQUOTE, C.TRADE_RETCODE_DONE}
    assert 5 < a.count(C.TRADE_RETCODE_REQUOTE) < 35


def test_requote_carries_new_prices_and_executes_nothing(tmp_path: Path) -> None:
    mt5 = _terminal(tmp_path, faults={"requote_rate": 1.0})
    try:
        r = buy(mt5)
        tick = mt5.symbol_info_tick("EURUSD")
        assert (r.retcode, r.comment, r.deal, r.order) == (C.TRADE_RETCODE_REQUOTE, "Requote", 0, 0)
        assert (r.bid, r.ask) == (tick.bid, tick.ask)
        assert mt5.positions_total() == 0 and mt5.history_deals_get(0, 2**40)[-1].type == C.DEAL_TYPE_BALANCE
        assert mt5.order_check({"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0}).retcode == 0
    finally:
        mt5.close()


def test_reject_injection(tmp_path: Path) -> None:
    codes = _retcodes(tmp_path, seed=1, n=10, reject_rate=1.0)
    assert codes == [C.TRADE_RETCODE_REJECT] * 10


# ---------------------------------------------------------------- disconnects


def test_disconnect_via_control_file_and_recovery(mt5: SimTerminal) -> None:
    r = buy(mt5)
    write_control(mt5.state_file, disconnected=True)
    assert mt5.positions_get() is None and mt5.last_error() == NO_IPC
    assert mt5.account_info() is None and mt5.last_error() == NO_IPC
    assert mt5.order_send({"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0}) is None
    assert mt5.last_error() == NO_IPC
    assert mt5.initialize() is False and mt5.last_error()[0] == -10003  # the terminal is not there
    write_control(mt5.state_file, disconnected=False)
    assert mt5.positions_get() is None and mt5.last_error() == NO_IPC  # the IPC session was lost
    assert mt5.initialize() is True
    assert [p.ticket for p in mt5.positions_get()] == [r.order]  # the book survived
    assert mt5.terminal_info().connected is True


def test_injected_disconnect_window(tmp_path: Path) -> None:
    clock = Clock()
    mt5 = _terminal(tmp_path, clock, faults={"disconnect_rate": 1.0, "disconnect_seconds": 5.0})
    try:
        assert mt5.positions_total() is None and mt5.last_error() == NO_IPC
        assert mt5.symbol_info_tick("EURUSD") is None and mt5.last_error() == NO_IPC
        clock.now += 4.9
        assert mt5.initialize() is False and mt5.last_error()[0] == -10003
        clock.now += 0.2
        assert mt5.initialize() is True and mt5.last_error() == (1, "Success")
    finally:
        mt5.close()


def test_injected_disconnects_are_seeded(tmp_path: Path) -> None:
    def pattern(sub: str, seed: int) -> list[bool]:
        clock = Clock()
        mt5 = _terminal(
            tmp_path / sub, clock, seed=seed, faults={"disconnect_rate": 0.3, "disconnect_seconds": 1.0}
        )
        out = []
        try:
            for _ in range(40):
                ok = mt5.positions_total() is not None
                out.append(ok)
                if not ok:
                    clock.now += 1.5
                    assert mt5.initialize()
        finally:
            mt5.close()
        return out

    a, b = pattern("a", 3), pattern("b", 3)
    assert a == b and True in a and False in a


def test_server_disconnected_answers_10031_but_reads_work(mt5: SimTerminal) -> None:
    r = buy(mt5)
    write_control(mt5.state_file, server_disconnected=True)
    assert mt5.terminal_info().connected is False
    assert mt5.positions_total() == 1
    out = close(mt5, r.order)
    assert out.retcode == C.TRADE_RETCODE_CONNECTION and mt5.positions_total() == 1
    assert mt5.order_check({"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0}).retcode == 10031
    write_control(mt5.state_file, server_disconnected=False)
    assert close(mt5, r.order).retcode == C.TRADE_RETCODE_DONE


def test_latency_setting_keeps_calls_working(tmp_path: Path) -> None:
    mt5 = _terminal(tmp_path, faults={"latency_ms": 1.0})
    try:
        assert mt5.positions_total() == 0 and buy(mt5).retcode == C.TRADE_RETCODE_DONE
        assert mt5._latency == pytest.approx(0.001)
    finally:
        mt5.close()


# ---------------------------------------------------------------- control file


def test_control_file_helpers(tmp_path: Path) -> None:
    state = tmp_path / "sim_terminal.db"
    assert read_control(state) == {}
    assert write_control(state, autotrading=False, prices={"EURUSD": 1.1}) == {
        "autotrading": False,
        "prices": {"EURUSD": 1.1},
    }
    merged = write_control(state, market_closed=["XAUUSD"], autotrading=None)
    assert merged == {"prices": {"EURUSD": 1.1}, "market_closed": ["XAUUSD"]}
    path = tmp_path / "sim_terminal.control.json"
    assert json.loads(path.read_text()) == merged == read_control(str(state))
    assert [p.name for p in tmp_path.iterdir()] == ["sim_terminal.control.json"]  # no temp files left
    path.write_text("{not json")
    with pytest.raises(ValueError):
        read_control(state)


def test_prices_pin_and_shift(mt5: SimTerminal) -> None:
    base = mt5.symbol_info_tick("EURUSD")
    assert (base.bid, base.ask) == (1.08500, 1.08510)
    write_control(mt5.state_file, prices={"EURUSD": 1.2})
    tick = mt5.symbol_info_tick("EURUSD")
    assert (tick.bid, tick.ask) == (1.2, 1.2001)
    write_control(mt5.state_file, prices=None, price_shift={"EURUSD": 0.0010, "USDJPY": -0.5})
    assert mt5.symbol_info_tick("EURUSD").bid == 1.08600
    assert mt5.symbol_info_tick("EURUSD").ask == 1.08610
    assert mt5.symbol_info_tick("USDJPY").bid == 149.500
    write_control(mt5.state_file, price_shift=None)
    assert mt5.symbol_info_tick("EURUSD").bid == 1.08500


def test_invalid_control_file_keeps_the_last_good_state(mt5: SimTerminal) -> None:
    write_control(mt5.state_file, prices={"EURUSD": 1.3})
    assert mt5.symbol_info_tick("EURUSD").bid == 1.3
    (mt5.state_file.parent / "sim_terminal.control.json").write_text("{broken")
    assert mt5.symbol_info_tick("EURUSD").bid == 1.3
    assert mt5.last_error() == (1, "Success")


def test_control_written_before_start_applies_to_seeded_positions(tmp_path: Path) -> None:
    write_control(tmp_path / "sim_terminal.db", prices={"EURUSD": 1.25})
    mt5 = _terminal(
        tmp_path, positions={"count": 0, "list": [{"symbol": "EURUSD", "type": "buy", "volume": 0.1}]}
    )
    try:
        (p,) = mt5.positions_get()
        assert p.price_open == 1.2501 and p.price_current == 1.25
    finally:
        mt5.close()
