"""Contract tests for ``fxnb.broker.Broker``.

The generic contract runs on the simulator always and on a real terminal with
``--mt5`` (Windows + a demo account; on Linux those cases skip). The rest run on
the simulator only, because they need its fault injection and frozen prices.

Nothing of fxnb is mocked. The only fakes are *module-boundary* wrappers
around the simulated terminal (``Probe``, ``LostReply``, ``PartialFill``,
``LyingMask``, ``BeforeSend``): they stand for behaviours of a real terminal
the simulator does not produce (a reply lost after execution, an IOC partial
fill, a broker whose filling mask is wrong, another client closing first).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from fxnb.broker import Broker, make_broker
from fxnb.broker import retcodes as rc
from fxnb.broker.adapter import DEAL_FIELDS, AdapterSettings
from fxnb.broker.sim import SimSettings, SimTerminal, create_terminal, write_control
from fxnb.errors import BrokerError, BrokerUnavailable, ConfigError
from fxnb.models import CloseStatus, Side

MAGIC = 770077


# ---------------------------------------------------------------------------- helpers
class FakeTime:
    """Injected sleep/clock: sleeping only advances the clock (and is recorded)."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds

    def clock(self) -> float:
        return self.now


def sim_section(*, positions: list[dict[str, Any]] | None = None, count: int = 0, seed: int = 7,
                faults: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A ``broker.sim`` section with frozen prices and exactly the given positions."""
    return {
        "state_file": "sim.db",
        "seed": seed,
        "volatility": 0.0,
        "positions": {"count": count, "list": positions or []},
        "faults": faults or {},
        **extra,
    }


@pytest.fixture
def sims(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``sims(**section)`` -> a fresh simulated terminal in ``tmp_path`` (closed after the test)."""
    made: list[Any] = []

    def make(**kw: Any) -> Any:
        section = sim_section(**kw)
        terminal = create_terminal(SimSettings.from_mapping(section, tmp_path))
        made.append(terminal)
        return terminal

    yield make
    for t in made:
        t.close()


def connect(terminal: Any, **settings: Any) -> tuple[Broker, FakeTime]:
    ft = FakeTime()
    settings.setdefault("magic", MAGIC)
    broker = Broker(terminal, settings=AdapterSettings(**settings), sleep=ft.sleep, clock=ft.clock)
    broker.connect()
    return broker, ft


def open_position(mt5: Any, symbol: str, side: Side, volume: float) -> int:
    """Open a market position through the raw module (both backends); returns its ticket."""
    info = mt5.symbol_info(symbol)
    if info is not None and not info.visible:
        mt5.symbol_select(symbol, True)
        info = mt5.symbol_info(symbol)
    tick = mt5.symbol_info_tick(symbol)
    buy = side is Side.BUY
    filling = mt5.ORDER_FILLING_FOK if info.filling_mode & 1 else mt5.ORDER_FILLING_IOC
    result = mt5.order_send({
        "action": mt5.TRADE_ACTION_DEAL, "symbol": symbol, "volume": float(volume),
        "type": mt5.ORDER_TYPE_BUY if buy else mt5.ORDER_TYPE_SELL,
        "price": float(tick.ask if buy else tick.bid), "deviation": 50, "magic": MAGIC,
        "comment": "fxnb contract test", "type_time": mt5.ORDER_TIME_GTC, "type_filling": filling,
    })
    assert result is not None, mt5.last_error()
    assert result.retcode == mt5.TRADE_RETCODE_DONE, result
    return int(result.order)


def pos_volume(broker: Broker, ticket: int) -> float:
    p = broker.position(ticket)
    return 0.0 if p is None else p.volume


# ---------------------------------------------------------------------------- module-boundary fakes
class Passthrough:
    """Delegates everything to the wrapped terminal."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Probe(Passthrough):
    """Records every call; counts calls that overlap in time (the adapter must serialise them)."""

    def __init__(self, inner: Any, dwell: float = 0.0) -> None:
        super().__init__(inner)
        self.calls: list[tuple[int, str]] = []
        self.requests: list[dict[str, Any]] = []
        self.overlaps = 0
        self._inflight = 0
        self._guard = threading.Lock()
        self._dwell = dwell

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._guard:
                self._inflight += 1
                self.overlaps += self._inflight > 1
                self.calls.append((threading.get_ident(), name))
                if name == "order_send":
                    self.requests.append(dict(args[0]))
            try:
                if self._dwell:
                    time.sleep(self._dwell)  # widen the window in which an unserialised call would overlap
                return attr(*args, **kwargs)
            finally:
                with self._guard:
                    self._inflight -= 1

        return call

    def sends(self) -> int:
        return sum(1 for _, n in self.calls if n == "order_send")


class LostReply(Passthrough):
    """``order_send`` returns None with an IPC error ``lose`` times; the request ran if ``execute``."""

    def __init__(self, inner: Any, *, lose: int = 1, execute: bool = True,
                 error: tuple[int, str] = (-10002, "IPC recv failed")) -> None:
        super().__init__(inner)
        self.lose, self.execute, self.error = lose, execute, error
        self.sent: list[dict[str, Any]] = []
        self._pending: tuple[int, str] | None = None

    def order_send(self, request: dict[str, Any]) -> Any:
        self.sent.append(dict(request))
        if self.lose > 0:
            self.lose -= 1
            if self.execute:
                result = self._inner.order_send(request)
                assert result is not None and result.retcode == rc.DONE, result
            self._pending = self.error
            return None
        return self._inner.order_send(request)

    def last_error(self) -> tuple[int, str]:
        if self._pending is not None:
            err, self._pending = self._pending, None
            return err
        return self._inner.last_error()


class PartialFill(Passthrough):
    """The first ``times`` closes fill only ``fill`` lots and answer DONE_PARTIAL (an IOC partial fill)."""

    def __init__(self, inner: Any, *, fill: float, times: int = 1) -> None:
        super().__init__(inner)
        self.fill, self.times = fill, times

    def order_send(self, request: dict[str, Any]) -> Any:
        if self.times > 0 and request.get("position") and request["volume"] > self.fill:
            self.times -= 1
            result = self._inner.order_send(dict(request, volume=self.fill))
            return result._replace(retcode=rc.DONE_PARTIAL, comment="Request executed partially")
        return self._inner.order_send(request)


class LyingMask(Passthrough):
    """A broker whose ``symbol_info().filling_mode`` advertises modes the server then refuses."""

    def __init__(self, inner: Any, masks: dict[str, int]) -> None:
        super().__init__(inner)
        self.masks = masks

    def symbol_info(self, symbol: str) -> Any:
        info = self._inner.symbol_info(symbol)
        if info is not None and symbol in self.masks:
            info = info._replace(filling_mode=self.masks[symbol])
        return info


class BeforeSend(Passthrough):
    """Runs ``hook`` once, just before the first ``order_send`` reaches the terminal."""

    def __init__(self, inner: Any, hook: Callable[[], None]) -> None:
        super().__init__(inner)
        self.hook: Callable[[], None] | None = hook

    def order_send(self, request: dict[str, Any]) -> Any:
        if self.hook is not None:
            hook, self.hook = self.hook, None
            hook()
        return self._inner.order_send(request)


# ---------------------------------------------------------------------------- the generic contract
class Backend:
    """A connected broker plus a way to open positions on it."""

    symbol = "EURUSD"

    def __init__(self, broker: Broker, module: Any) -> None:
        self.broker = broker
        self.module = module
        self.opened: list[int] = []

    def open(self, side: Side, volume: float) -> int:
        ticket = open_position(self.module, self.symbol, side, volume)
        self.opened.append(ticket)
        return ticket

    def cleanup(self) -> None:
        for ticket in self.opened:
            try:
                self.broker.close(ticket)
            except BrokerError:
                pass


@pytest.fixture(params=["sim", pytest.param("mt5", marks=pytest.mark.mt5)])
def backend(request: pytest.FixtureRequest, sims: Callable[..., Any]) -> Iterator[Backend]:
    if request.param == "sim":
        terminal = sims()
        broker, _ = connect(terminal)
        b = Backend(broker, terminal)
    else:  # a real terminal: Windows, the MetaTrader5 package, a demo account in FXNB_MT5_* / secrets
        mt5 = pytest.importorskip("MetaTrader5", reason="the MetaTrader5 package exists on Windows only")
        from fxnb.credentials import load_credentials

        broker = Broker(mt5, settings=AdapterSettings(magic=MAGIC), credentials=load_credentials())
        broker.connect()
        b = Backend(broker, mt5)
        b.symbol = os.environ.get("FXNB_MT5_TEST_SYMBOL", "EURUSD")
    try:
        yield b
    finally:
        b.cleanup()
        b.broker.shutdown()


def test_snapshot_fields(backend: Backend) -> None:
    buy = backend.open(Side.BUY, 0.10)
    sell = backend.open(Side.SELL, 0.10)
    snap = backend.broker.snapshot()
    a = snap.account
    assert a.login > 0 and a.currency and a.balance > 0 and a.leverage > 0
    assert a.equity == pytest.approx(a.balance + a.credit + a.profit, abs=0.011)
    assert a.margin_free == pytest.approx(a.equity - a.margin, abs=0.011)
    assert snap.taken_at > 0
    by_ticket = {p.ticket: p for p in snap.positions}
    assert {buy, sell} <= set(by_ticket)
    assert by_ticket[buy].side is Side.BUY and by_ticket[sell].side is Side.SELL
    for t in (buy, sell):
        p = by_ticket[t]
        assert p.symbol == backend.symbol and p.volume == 0.10 and p.magic == MAGIC
        assert p.price_open > 0 and p.price_current > 0 and p.identifier > 0
        assert isinstance(p.profit, float) and isinstance(p.swap, float)
    assert backend.broker.positions(symbol=backend.symbol)
    assert backend.broker.position(buy).ticket == buy


def test_full_close_reads_profit_from_the_out_deal(backend: Backend) -> None:
    ticket = backend.open(Side.BUY, 0.10)
    identifier = backend.broker.position(ticket).identifier
    result = backend.broker.close(ticket)
    assert result.status is CloseStatus.CLOSED, result
    assert result.closed_volume == result.requested_volume == 0.10
    assert result.attempts >= 1 and result.retcode == rc.DONE and result.deals
    assert result.price > 0
    assert backend.broker.position(ticket) is None
    deals = backend.broker.deals_for_position(identifier)
    assert set(deals[0]) == set(DEAL_FIELDS)
    outs = [d for d in deals if d["ticket"] in result.deals]
    assert outs and all(d["entry"] == backend.module.DEAL_ENTRY_OUT for d in outs)
    assert result.profit == pytest.approx(
        sum(d["profit"] + d["swap"] + d["commission"] + d["fee"] for d in outs), abs=0.005)
    assert backend.broker.realised_profit(identifier) == pytest.approx(result.profit, abs=0.005)


@pytest.mark.parametrize(("requested", "closed"), [(0.37, 0.37), (0.333, 0.33), (0.999, 0.99), (0.5, 0.5)])
def test_partial_close_rounds_down_to_the_step(backend: Backend, requested: float, closed: float) -> None:
    ticket = backend.open(Side.SELL, 1.00)
    result = backend.broker.close(ticket, volume=requested)
    assert result.status is CloseStatus.CLOSED, result
    assert result.closed_volume == closed and result.requested_volume == closed
    assert pos_volume(backend.broker, ticket) == pytest.approx(1.00 - closed, abs=1e-9)


def test_partial_close_without_a_valid_volume_sends_nothing(backend: Backend) -> None:
    ticket = backend.open(Side.BUY, 0.01)
    for volume in (0.005, 0.0, -1.0):
        result = backend.broker.close(ticket, volume=volume)
        assert result.status is CloseStatus.FAILED and result.attempts == 0, result
        assert result.message
    assert pos_volume(backend.broker, ticket) == 0.01
    whole = backend.broker.close(ticket, volume=5.0)  # more than open: a full close, never a reversal
    assert whole.status is CloseStatus.CLOSED and whole.closed_volume == 0.01


def test_already_closed(backend: Backend) -> None:
    ticket = backend.open(Side.BUY, 0.02)
    assert backend.broker.close(ticket).status is CloseStatus.CLOSED
    again = backend.broker.close(ticket)
    assert again.status is CloseStatus.ALREADY_CLOSED and again.attempts == 0


# ---------------------------------------------------------------------------- simulator only
def test_simulator_exports_exactly_the_package_constants_we_rely_on(sims: Callable[..., Any]) -> None:
    t = sims()
    for name, value in rc.TRADE_RETCODES.items():
        assert getattr(t, name) == value, name
    for name, value in rc.LAST_ERROR_NAMES.items():
        assert getattr(t, value) == name
    for adapter_only in ("SYMBOL_FILLING_FOK", "SYMBOL_FILLING_IOC", "SYMBOL_FILLING_BOC",
                         "TRADE_RETCODE_HEDGE_PROHIBITED"):
        assert not hasattr(t, adapter_only), adapter_only


def test_snapshot_values_on_frozen_prices(sims: Callable[..., Any]) -> None:
    t = sims(positions=[{"symbol": "EURUSD", "type": "buy", "volume": 1.0, "price_open": 1.08},
                        {"symbol": "GBPUSD", "type": "sell", "volume": 0.5, "price_open": 1.28}])
    broker, _ = connect(t)
    snap = broker.snapshot()
    eur, gbp = sorted(snap.positions, key=lambda p: p.symbol)
    assert (eur.side, eur.price_current, eur.profit) == (Side.BUY, 1.085, 500.0)  # bid 1.08500
    assert (gbp.side, gbp.price_current, gbp.profit) == (Side.SELL, 1.27014, 493.0)  # ask = bid + 14 points
    assert snap.account.profit == pytest.approx(eur.profit + gbp.profit)
    assert snap.account.hedging and snap.account.currency == "USD" and snap.account.balance == 10_000.0
    assert broker.terminal().trade_allowed and broker.terminal().connected


@pytest.mark.parametrize(
    ("position", "pin", "expected"),
    [
        # EURUSD buy closes at the bid: (1.09000 - 1.08000) x 100 000 x 1.0 = 1 000.00 USD
        ({"symbol": "EURUSD", "type": "buy", "volume": 1.0, "price_open": 1.08}, 1.09, 1000.00),
        # USDJPY sell closes at the ask (bid 150.000 + 12 points): JPY converted at the closing price
        ({"symbol": "USDJPY", "type": "sell", "volume": 0.5, "price_open": 151.0}, 150.0,
         round((151.0 - 150.012) * 100_000 * 0.5 / 150.012, 2)),
    ],
)
def test_full_close_profit_equals_the_hand_computed_value(
    sims: Callable[..., Any], tmp_path: Path, position: dict[str, Any], pin: float, expected: float
) -> None:
    t = sims(positions=[position], commission_per_lot=3.5)
    write_control(tmp_path / "sim.db", prices={position["symbol"]: pin})
    broker, _ = connect(t)
    (p,) = broker.positions()
    result = broker.close(p.ticket)
    assert result.status is CloseStatus.CLOSED and result.attempts == 1, result
    commission = -round(3.5 * position["volume"], 2)
    assert result.profit == pytest.approx(expected + commission, abs=0.001)
    (out,) = [d for d in broker.deals_for_position(p.identifier) if d["ticket"] in result.deals]
    assert out["profit"] == pytest.approx(expected, abs=0.001) and out["commission"] == commission
    assert out["magic"] == MAGIC and out["comment"] == "fxnb"
    assert result.price == (pin if position["type"] == "buy" else 150.012)
    assert broker.realised_profit(p.identifier) == pytest.approx(expected + commission, abs=0.001)


def test_requote_is_retried_with_a_fresh_read_and_backoff(sims: Callable[..., Any]) -> None:
    # seed 4: the simulator's first order_send draw requotes, the second executes
    t = Probe(sims(seed=4, positions=[{"symbol": "EURUSD", "volume": 0.3}], faults={"requote_rate": 0.5}))
    broker, ft = connect(t)
    (p,) = broker.positions()
    t.calls.clear()
    result = broker.close(p.ticket)
    assert result.status is CloseStatus.CLOSED and result.attempts == 2 and result.retcode == rc.DONE, result
    assert ft.sleeps == [0.1]
    names = [n for _, n in t.calls]
    first, second = (i for i, n in enumerate(names) if n == "order_send")
    between = names[first + 1:second]
    assert "positions_get" in between and "symbol_info_tick" in between  # re-read before the resend


def test_requotes_give_up_after_max_retries(sims: Callable[..., Any]) -> None:
    # seed 9: the first four draws all requote
    t = sims(seed=9, positions=[{"symbol": "EURUSD", "volume": 0.3}], faults={"requote_rate": 0.5})
    broker, ft = connect(t, max_retries=3)
    (p,) = broker.positions()
    result = broker.close(p.ticket)
    assert result.status is CloseStatus.FAILED and result.attempts == 4, result
    assert result.retcode == 10004 and "Requote" in result.message
    assert ft.sleeps == [0.1, 0.2, 0.4]
    assert pos_volume(broker, p.ticket) == 0.3


def test_filling_mode_follows_the_mask(sims: Callable[..., Any]) -> None:
    t = Probe(sims(positions=[{"symbol": "GBPUSD", "volume": 0.1}, {"symbol": "USDJPY", "volume": 0.1},
                              {"symbol": "EURUSD", "volume": 0.1}]))
    broker, _ = connect(t)
    results = {p.symbol: broker.close(p.ticket) for p in broker.positions()}
    assert all(r.status is CloseStatus.CLOSED and r.attempts == 1 for r in results.values()), results
    fill = {r["symbol"]: r["type_filling"] for r in t.requests}
    # GBPUSD advertises IOC only (10030 avoided), USDJPY FOK only, EURUSD both (FOK first)
    fok, ioc = t.ORDER_FILLING_FOK, t.ORDER_FILLING_IOC
    assert fill == {"GBPUSD": ioc, "USDJPY": fok, "EURUSD": fok}


def test_filling_fallback_recovers_from_10030_and_caches_the_working_mode(sims: Callable[..., Any]) -> None:
    inner = sims(positions=[{"symbol": "GBPUSD", "volume": 0.1}, {"symbol": "GBPUSD", "volume": 0.2}])
    t = Probe(LyingMask(inner, {"GBPUSD": 3}))  # advertises FOK|IOC, the server accepts IOC only
    broker, ft = connect(t)
    first, second = broker.positions()
    r1 = broker.close(first.ticket)
    assert r1.status is CloseStatus.CLOSED and r1.attempts == 2, r1
    assert [r["type_filling"] for r in t.requests] == [inner.ORDER_FILLING_FOK, inner.ORDER_FILLING_IOC]
    assert ft.sleeps == []  # a FIX is corrected at once, not backed off
    r2 = broker.close(second.ticket)
    assert r2.status is CloseStatus.CLOSED and r2.attempts == 1, r2  # the cache remembered IOC
    assert t.requests[-1]["type_filling"] == inner.ORDER_FILLING_IOC


def test_market_closed_fails_with_the_terminal_message(sims: Callable[..., Any], tmp_path: Path) -> None:
    t = sims(positions=[{"symbol": "EURUSD", "volume": 0.1}])
    broker, ft = connect(t)
    (p,) = broker.positions()
    write_control(tmp_path / "sim.db", market_closed=["EURUSD"])
    result = broker.close(p.ticket)
    assert result.status is CloseStatus.FAILED and result.retcode == 10018 and result.attempts == 1, result
    assert "Market closed" in result.message and "TRADE_RETCODE_MARKET_CLOSED" in result.message
    assert ft.sleeps == []  # FINAL: never retried
    write_control(tmp_path / "sim.db", market_closed=None)
    assert broker.close(p.ticket).status is CloseStatus.CLOSED


@pytest.mark.parametrize("how", ["control", "settings"])
def test_autotrading_disabled_fails_with_10027(sims: Callable[..., Any], tmp_path: Path, how: str) -> None:
    faults = {"autotrading_disabled": True} if how == "settings" else {}
    t = sims(positions=[{"symbol": "EURUSD", "volume": 0.1}], faults=faults)
    if how == "control":
        write_control(tmp_path / "sim.db", autotrading=False)
    broker, _ = connect(t)
    assert broker.terminal().trade_allowed is False
    (p,) = broker.positions()
    result = broker.close(p.ticket)
    assert result.status is CloseStatus.FAILED and result.retcode == 10027 and result.attempts == 1, result
    assert "AutoTrading disabled by client" in result.message
    assert pos_volume(broker, p.ticket) == 0.1


def test_disconnect_raises_instead_of_reading_an_empty_book(sims: Callable[..., Any], tmp_path: Path) -> None:
    t = sims(positions=[{"symbol": "EURUSD", "volume": 0.1}, {"symbol": "GBPUSD", "volume": 0.2}])
    broker, ft = connect(t)
    before = broker.positions()
    assert len(before) == 2 and broker.connected
    write_control(tmp_path / "sim.db", disconnected=True)
    reads = (broker.positions, broker.snapshot, broker.account, lambda: broker.position(before[0].ticket))
    for read in reads:
        with pytest.raises(BrokerUnavailable) as err:
            read()
        assert err.value.code == -10004 and "No IPC connection" in str(err.value)
    assert not broker.connected
    with pytest.raises(BrokerUnavailable):  # nothing was sent, so close may raise
        broker.close(before[0].ticket)
    with pytest.raises(BrokerUnavailable) as err:
        broker.ensure_connected(max_wait_s=5.0)
    assert err.value.code == -10003
    assert ft.sleeps == [0.5, 1.0, 2.0]  # exponential backoff, bounded by max_wait_s
    write_control(tmp_path / "sim.db", disconnected=False)
    status = broker.ensure_connected(max_wait_s=5.0)
    assert status.connected and broker.connected
    assert broker.positions() == before


class NoneRead(Passthrough):
    """``positions_get`` answers None with the given ``last_error()``."""

    def __init__(self, inner: Any, error: tuple[int, str]) -> None:
        super().__init__(inner)
        self.error = error
        self._pending: tuple[int, str] | None = None

    def positions_get(self, **filters: Any) -> Any:
        self._pending = self.error
        return None

    def last_error(self) -> tuple[int, str]:
        if self._pending is not None:
            err, self._pending = self._pending, None
            return err
        return self._inner.last_error()


@pytest.mark.parametrize(
    ("error", "raised"),
    [((1, "Success"), None), ((-10005, "IPC timeout"), BrokerUnavailable),
     ((-1, "Terminal: Call failed"), BrokerError)],
)
def test_a_none_read_is_empty_only_when_the_terminal_says_success(
    sims: Callable[..., Any], error: tuple[int, str], raised: type[BrokerError] | None
) -> None:
    broker, _ = connect(NoneRead(sims(positions=[{"symbol": "EURUSD", "volume": 0.1}]), error))
    if raised is None:
        assert broker.positions() == ()
        return
    with pytest.raises(raised) as err:
        broker.positions()
    assert err.value.code == error[0] and err.value.terminal_message == error[1]
    assert (type(err.value) is BrokerUnavailable) == (raised is BrokerUnavailable)
    assert broker.connected == (raised is not BrokerUnavailable)


def test_server_disconnected_is_ambiguous_and_never_over_closes(sims: Callable[..., Any],
                                                                tmp_path: Path) -> None:
    t = Probe(sims(positions=[{"symbol": "EURUSD", "volume": 0.5}]))
    broker, ft = connect(t, max_retries=2)
    (p,) = broker.positions()
    write_control(tmp_path / "sim.db", server_disconnected=True)
    assert broker.terminal().connected is False
    result = broker.close(p.ticket, volume=0.2)
    assert result.status is CloseStatus.FAILED and result.retcode == 10031 and result.attempts == 3, result
    assert pos_volume(broker, p.ticket) == 0.5
    assert all(r["volume"] == 0.2 for r in t.requests)


def test_lost_reply_after_a_full_close_is_not_resent(sims: Callable[..., Any]) -> None:
    t = LostReply(sims(positions=[{"symbol": "EURUSD", "volume": 0.4, "price_open": 1.08}]))
    broker, _ = connect(t)
    (p,) = broker.positions()
    result = broker.close(p.ticket)
    assert len(t.sent) == 1 and result.attempts == 1  # re-read found it closed: no second send
    assert result.status is CloseStatus.CLOSED and result.closed_volume == 0.4, result
    assert result.profit == pytest.approx(0.4 * 100_000 * (1.085 - 1.08)) and result.deals
    assert broker.position(p.ticket) is None


def test_lost_reply_after_a_partial_close_resends_nothing_more(sims: Callable[..., Any]) -> None:
    t = LostReply(sims(positions=[{"symbol": "EURUSD", "volume": 1.0}]))
    broker, _ = connect(t)
    (p,) = broker.positions()
    result = broker.close(p.ticket, volume=0.4)
    assert len(t.sent) == 1 and result.attempts == 1
    assert result.status is CloseStatus.CLOSED and result.closed_volume == 0.4, result
    assert pos_volume(broker, p.ticket) == 0.6  # never more than requested


def test_lost_reply_with_no_visible_change_is_not_resent(sims: Callable[..., Any]) -> None:
    """A lost reply that the terminal never shows as executed is reported, not resent: a lagging
    terminal looks exactly like this, and a resend there closes twice (tests/hardening)."""
    t = LostReply(sims(positions=[{"symbol": "EURUSD", "volume": 1.0}]), execute=False,
                  error=(-10005, "IPC timeout"))
    broker, ft = connect(t)
    (p,) = broker.positions()
    result = broker.close(p.ticket, volume=0.4)
    assert [r["volume"] for r in t.sent] == [0.4] and result.attempts == 1
    assert result.status is CloseStatus.FAILED and result.closed_volume == 0.0, result
    assert "not sending again" in result.message
    assert pos_volume(broker, p.ticket) == 1.0
    assert 0 < sum(ft.sleeps) <= 2.0  # a bounded wait for a lagging terminal, then stop


def _lagging(tmp_path: Path, ft: FakeTime, **faults: Any) -> tuple[Broker, int]:
    """A broker over a terminal on the fake clock with one 1.0-lot EURUSD position and ``faults``."""
    section = sim_section(positions=[{"symbol": "EURUSD", "volume": 1.0}], faults=faults)
    terminal = SimTerminal(SimSettings.from_mapping(section, tmp_path), clock=ft.clock)
    broker = Broker(terminal, settings=AdapterSettings(magic=MAGIC), sleep=ft.sleep, clock=ft.clock)
    broker.connect()
    ft.now += 1.0  # past the opening's own visibility delay
    (p,) = broker.positions()
    return broker, p.ticket


def _out_volumes(broker: Broker, ticket: int) -> list[float]:
    return [d["volume"] for d in broker.deals_for_position(ticket) if d["entry"] == 1]


def test_an_executed_10012_on_a_lagging_terminal_is_not_resent(tmp_path: Path) -> None:
    """10012 after executing, and the terminal shows the change only after 300 ms: the first re-read (after
    100 ms) still shows the whole position, and a resend there closed 0.2 of a 0.1 partial (soak, CI)."""
    ft = FakeTime()
    broker, ticket = _lagging(tmp_path, ft, timeout_rate=1.0, ambiguous_executes=True, visibility_delay_ms=300)
    result = broker.close(ticket, volume=0.1)
    ft.now += 1.0
    assert _out_volumes(broker, ticket) == [0.1]  # once
    assert result.attempts == 1 and (result.status, result.closed_volume) == (CloseStatus.CLOSED, 0.1), result
    assert pos_volume(broker, ticket) == 0.9


def test_an_unexecuted_10012_is_resent_after_the_wait(tmp_path: Path) -> None:
    """10012 that executed nothing shows no change in the whole wait: then resending is what §4.5 asks."""
    ft = FakeTime()
    broker, ticket = _lagging(tmp_path, ft, timeout_rate=1.0, visibility_delay_ms=300)
    result = broker.close(ticket, volume=0.1)
    assert result.attempts == broker.settings.max_retries + 1, result
    assert result.status is CloseStatus.FAILED and result.retcode == 10012, result
    assert _out_volumes(broker, ticket) == [] and pos_volume(broker, ticket) == 1.0


def test_lost_replies_until_retries_run_out_still_never_over_close(sims: Callable[..., Any]) -> None:
    t = LostReply(sims(positions=[{"symbol": "EURUSD", "volume": 1.0}]), lose=10, execute=True)
    broker, _ = connect(t, max_retries=3)
    (p,) = broker.positions()
    result = broker.close(p.ticket, volume=0.3)
    assert len(t.sent) == 1 and result.status is CloseStatus.CLOSED, result
    assert pos_volume(broker, p.ticket) == 0.7


def test_done_partial_records_the_fill_and_closes_the_rest(sims: Callable[..., Any]) -> None:
    t = PartialFill(sims(positions=[{"symbol": "EURUSD", "volume": 1.0}]), fill=0.3)
    broker, _ = connect(t)
    (p,) = broker.positions()
    result = broker.close(p.ticket, volume=0.8)
    assert result.status is CloseStatus.CLOSED and result.attempts == 2, result
    assert result.closed_volume == 0.8 and len(result.deals) == 2
    assert pos_volume(broker, p.ticket) == pytest.approx(0.2)
    assert "DONE_PARTIAL" in result.message


def test_done_partial_without_retries_left_reports_partial(sims: Callable[..., Any]) -> None:
    t = PartialFill(sims(positions=[{"symbol": "EURUSD", "volume": 1.0}]), fill=0.3)
    broker, _ = connect(t, max_retries=0)
    (p,) = broker.positions()
    result = broker.close(p.ticket)
    assert result.status is CloseStatus.PARTIAL, result
    assert result.closed_volume == 0.3 and result.attempts == 1
    assert result.retcode == rc.DONE_PARTIAL and result.requested_volume == 1.0
    assert pos_volume(broker, p.ticket) == 0.7


def test_closed_by_someone_else_just_before_the_send(sims: Callable[..., Any], tmp_path: Path) -> None:
    inner = sims(positions=[{"symbol": "EURUSD", "volume": 0.1}])
    other = create_terminal(SimSettings.from_mapping(sim_section(), tmp_path))  # a second client, same state

    def close_elsewhere() -> None:
        assert other.initialize()
        (pos,) = other.positions_get()
        res = other.order_send({"action": other.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 0.1,
                                "type": other.ORDER_TYPE_SELL, "position": pos.ticket, "price": 1.085})
        assert res.retcode == rc.DONE, res

    try:
        broker, _ = connect(BeforeSend(inner, close_elsewhere))
        (p,) = broker.positions()
        result = broker.close(p.ticket)
        assert result.status is CloseStatus.ALREADY_CLOSED and result.retcode == 10036, result
        assert result.attempts == 1 and result.closed_volume == 0.0
    finally:
        other.close()


def test_concurrent_reads_and_closes_are_serialised(sims: Callable[..., Any]) -> None:
    positions = [{"symbol": s, "volume": 0.1 * (i % 3 + 1)} for i, s in
                 enumerate(["EURUSD", "GBPUSD", "EURJPY", "XAUUSD"] * 3)]
    t = Probe(sims(positions=positions), dwell=0.0002)
    broker, _ = connect(t)
    start = broker.snapshot()
    tickets = [p.ticket for p in start.positions]
    results: list[Any] = []
    snaps: list[Any] = []
    errors: list[BaseException] = []

    def closer(mine: list[int]) -> None:
        try:
            results.extend(broker.close(tk) for tk in mine)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(25):
                snaps.append(broker.snapshot())
                broker.positions()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    # two closers work through the same tickets in opposite orders: each ticket is closed exactly once
    threads = [threading.Thread(target=closer, args=(tickets,)),
               threading.Thread(target=closer, args=(tickets[::-1],)),
               threading.Thread(target=reader), threading.Thread(target=reader)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not errors, errors
    assert t.overlaps == 0
    # last_error() always read right after the failing call of the same thread
    for i, (tid, name) in enumerate(t.calls):
        if name == "last_error":
            assert t.calls[i - 1][0] == tid
    by_status: dict[int, list[CloseStatus]] = {}
    for r in results:
        by_status.setdefault(r.ticket, []).append(r.status)
    once = sorted([CloseStatus.CLOSED, CloseStatus.ALREADY_CLOSED])
    assert all(sorted(v) == once for v in by_status.values())
    assert broker.positions() == ()
    for s in snaps:  # account and positions of one snapshot belong together
        assert s.account.profit == pytest.approx(sum(p.profit + p.swap for p in s.positions), abs=0.05)
    end = broker.account()
    closed = [r for r in results if r.status is CloseStatus.CLOSED]
    assert end.balance == pytest.approx(start.account.balance + sum(r.profit for r in closed), abs=0.01)
    assert sum(r.closed_volume for r in closed) == pytest.approx(sum(p.volume for p in start.positions))


def test_netting_account_closes_by_ticket(sims: Callable[..., Any]) -> None:
    t = sims(margin_mode="netting", positions=[{"symbol": "EURUSD", "volume": 1.0}])
    broker, _ = connect(t)
    assert broker.account().hedging is False
    (p,) = broker.positions()
    assert broker.close(p.ticket, volume=0.25).closed_volume == 0.25
    assert pos_volume(broker, p.ticket) == 0.75
    assert broker.close(p.ticket).status is CloseStatus.CLOSED
    assert broker.positions() == ()


def test_symbol_spec_selects_hidden_symbols_and_reports_unknown_ones(sims: Callable[..., Any]) -> None:
    t = Probe(sims())
    broker, _ = connect(t)
    spec = broker.symbol("AUDUSD")  # not in Market Watch: selected first, then priced
    assert ("symbol_select" in {n for _, n in t.calls}) and spec.bid == 0.66 and spec.ask == 0.66012
    rules = (spec.digits, spec.volume_min, spec.volume_step, spec.filling_mode, spec.spread)
    assert rules == (5, 0.01, 0.01, 3, 12)
    t.calls.clear()
    broker.symbol("AUDUSD")
    assert [n for _, n in t.calls] == ["symbol_info_tick"]  # cached spec, fresh prices
    with pytest.raises(BrokerError) as err:
        broker.symbol("NOPE")
    assert err.value.code == -4 and not isinstance(err.value, BrokerUnavailable)


def test_comment_is_sanitised_before_it_reaches_the_terminal(sims: Callable[..., Any]) -> None:
    t = Probe(sims(positions=[{"symbol": "EURUSD", "volume": 0.1}]))
    broker, _ = connect(t)
    (p,) = broker.positions()
    result = broker.close(p.ticket, comment="rule [take-profit 5%] für alle Positionen")
    assert result.status is CloseStatus.CLOSED, result
    assert t.requests[0]["comment"] == "rule _take-profit 5__ f_r"


def test_modify_sltp(sims: Callable[..., Any]) -> None:
    t = sims(positions=[{"symbol": "EURUSD", "type": "buy", "volume": 0.1, "price_open": 1.08}])
    broker, _ = connect(t)
    (p,) = broker.positions()
    ok = broker.modify_sltp(p.ticket, sl=1.08, tp=1.1)
    assert ok.ok and ok.retcode == rc.DONE and ok.attempts == 1, ok
    assert (broker.position(p.ticket).sl, broker.position(p.ticket).tp) == (1.08, 1.1)
    same = broker.modify_sltp(p.ticket, sl=1.08, tp=1.1)
    assert same.ok and same.retcode == rc.NO_CHANGES
    bad = broker.modify_sltp(p.ticket, sl=1.09, tp=0.0)  # a buy's SL above the bid
    assert not bad.ok and bad.retcode == 10016 and "Invalid stops" in bad.message
    broker.close(p.ticket)
    gone = broker.modify_sltp(p.ticket, sl=0.0, tp=0.0)
    assert not gone.ok and gone.attempts == 0


def test_wrong_login_fails_at_once(sims: Callable[..., Any]) -> None:
    from fxnb.credentials import Credentials

    ft = FakeTime()
    broker = Broker(sims(), credentials=Credentials(login=1, password="secret", server="FxnbSim-Demo"),
                    sleep=ft.sleep, clock=ft.clock)
    with pytest.raises(BrokerUnavailable) as err:
        broker.ensure_connected(max_wait_s=30)
    assert err.value.code == -6 and ft.sleeps == []  # waiting cannot fix bad credentials
    assert "secret" not in repr(broker._credentials) and "secret" not in str(err.value)


# ---------------------------------------------------------------------------- the factory
def _cfg(tmp_path: Path, kind: str, sim: dict[str, Any] | None = None) -> Any:
    from fxnb.config import config_from_mapping

    data = {"broker": {"kind": kind, "max_retries": 2, "sim": sim or sim_section(count=3)}}
    return config_from_mapping(data, path=tmp_path / "config.json")


def test_make_broker_sim_uses_the_config(tmp_path: Path) -> None:
    broker = make_broker(_cfg(tmp_path, "sim"))
    try:
        assert broker.settings.max_retries == 2 and broker.settings.magic == MAGIC
        assert broker.connect().connected
        assert len(broker.positions()) == 3
        assert (tmp_path / "sim.db").exists()
    finally:
        broker.shutdown()


def test_make_broker_mt5_on_linux_is_a_clear_config_error(tmp_path: Path) -> None:
    try:
        import MetaTrader5  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the MetaTrader5 package is installed here")
    with pytest.raises(ConfigError, match="only available on Windows; use broker.kind 'sim' or 'mt5linux'"):
        make_broker(_cfg(tmp_path, "mt5"))


def test_make_broker_refuses_an_unknown_kind(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "sim")
    odd = SimpleNamespace(base_dir=cfg.base_dir, credentials=None,
                          broker=SimpleNamespace(**{**cfg.broker.__dict__, "kind": "fix-api"}))
    with pytest.raises(ConfigError, match="broker.kind"):
        make_broker(odd)


def test_importing_the_broker_never_imports_metatrader5() -> None:
    import subprocess
    import sys

    code = ("import sys, fxnb.broker, fxnb.broker.adapter, fxnb.broker.serve, fxnb.broker.remote; "
            "print('MetaTrader5' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("hours", [2.0, -5.0, 5.5])
def test_server_offset_is_read_off_a_live_tick(sims: Callable[..., Any], hours: float) -> None:
    broker, _ = connect(sims(server_offset_hours=hours))
    assert broker.server_offset_s("EURUSD", time.time()) == int(hours * 3600)
    assert broker.server_offset_s("EURUSD", time.time() - 1000) is None  # a stale quote tells nothing
