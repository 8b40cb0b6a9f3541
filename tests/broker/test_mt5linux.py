"""The ``mt5linux`` path end to end: a real ``python -m fxnb.broker.serve`` process serves the simulator
over RPyC the way an mt5linux server serves the real package, and ``make_broker`` (kind ``mt5linux``)
talks to it through ``fxnb.broker.remote.RemoteTerminal``."""

from __future__ import annotations

import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fxnb.broker import make_broker
from fxnb.broker.remote import RemoteTerminal
from fxnb.config import config_from_mapping
from fxnb.errors import BrokerUnavailable
from fxnb.models import CloseStatus, Side

pytest.importorskip("rpyc")

HOST = "127.0.0.1"
SIM = {
    "state_file": "unused.db",  # the server takes --state-file
    "seed": 5,
    "volatility": 0.0,
    "commission_per_lot": 2.0,
    "positions": {"count": 0, "list": [
        {"symbol": "EURUSD", "type": "buy", "volume": 1.0, "price_open": 1.08},
        {"symbol": "USDJPY", "type": "sell", "volume": 0.5, "price_open": 151.0},
        {"symbol": "GBPUSD", "type": "sell", "volume": 0.3, "price_open": 1.28},
    ]},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Server:
    """``python -m fxnb.broker.serve`` as a subprocess."""

    def __init__(self, tmp_path: Path, port: int) -> None:
        self.tmp_path, self.port = tmp_path, port
        self.proc: subprocess.Popen[str] | None = None
        self.log = tmp_path / "serve.log"

    def start(self) -> Server:
        cmd = [sys.executable, "-m", "fxnb.broker.serve", "--state-file", str(self.tmp_path / "sim.db"),
               "--port", str(self.port), "--config", str(self.tmp_path / "config.json")]
        self.log = self.tmp_path / "serve.log"
        with self.log.open("a") as log:  # a file, not a pipe nobody reads: the server can never block on it
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # poll the port until it accepts
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}: {self.log.read_text()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        pytest.fail(f"server did not listen within 30 s: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("FXNB_MT5_LOGIN", "FXNB_MT5_PASSWORD", "FXNB_MT5_SERVER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FXNB_SECRETS_FILE", str(tmp_path / "no-secrets.json"))


@pytest.fixture
def served(tmp_path: Path, no_credentials: None) -> Iterator[tuple[Server, Any]]:
    port = free_port()
    data = {"broker": {"kind": "mt5linux", "mt5linux": {"host": HOST, "port": port}, "sim": SIM}}
    (tmp_path / "config.json").write_text(json.dumps(data))
    cfg = config_from_mapping(data, path=tmp_path / "config.json")
    server = Server(tmp_path, port).start()
    try:
        yield server, cfg
    finally:
        server.stop()


class FakeTime:
    def __init__(self) -> None:
        self.now, self.sleeps = 0.0, []

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s

    def clock(self) -> float:
        return self.now


def test_read_and_close_through_mt5linux(served: tuple[Server, Any]) -> None:
    _, cfg = served
    ft = FakeTime()
    broker = make_broker(cfg, sleep=ft.sleep, clock=ft.clock)
    try:
        status = broker.connect()
        assert status.connected and status.trade_allowed
        assert isinstance(broker._mt5, RemoteTerminal)  # a real RPyC link, not the simulator in-process
        snap = broker.snapshot()
        assert snap.account.currency == "USD" and snap.account.hedging
        by_symbol = {p.symbol: p for p in snap.positions}
        assert set(by_symbol) == {"EURUSD", "USDJPY", "GBPUSD"}
        eur, jpy = by_symbol["EURUSD"], by_symbol["USDJPY"]
        assert (eur.side, eur.volume, eur.price_current, eur.profit) == (Side.BUY, 1.0, 1.085, 500.0)

        part = broker.close(eur.ticket, volume=0.333)
        assert part.status is CloseStatus.CLOSED and part.closed_volume == 0.33, part
        assert part.profit == pytest.approx(0.33 * 100_000 * 0.005 - 0.66)  # commission 2.0/lot
        assert broker.position(eur.ticket).volume == 0.67

        full = broker.close(jpy.ticket)  # instant execution: price and deviation travel through RPyC
        assert full.status is CloseStatus.CLOSED and full.attempts == 1, full
        expected = round((151.0 - 150.012) * 100_000 * 0.5 / 150.012, 2) - 1.0
        assert full.profit == pytest.approx(expected, abs=0.001)
        assert broker.realised_profit(jpy.identifier) == pytest.approx(expected, abs=0.001)
        assert broker.position(jpy.ticket) is None
        assert {p.symbol for p in broker.positions()} == {"EURUSD", "GBPUSD"}
        assert broker.close(jpy.ticket).status is CloseStatus.ALREADY_CLOSED
    finally:
        broker.shutdown()


def test_a_dead_link_raises_and_reconnect_recreates_it(served: tuple[Server, Any]) -> None:
    server, cfg = served
    ft = FakeTime()
    broker = make_broker(cfg, sleep=ft.sleep, clock=ft.clock)
    try:
        broker.connect()
        before = broker.positions()
        assert len(before) == 3
        server.stop()
        with pytest.raises(BrokerUnavailable):  # never an empty book
            broker.positions()
        assert not broker.connected
        with pytest.raises(BrokerUnavailable) as err:  # nothing listening: backoff, then give up
            broker.ensure_connected(max_wait_s=2.0)
        assert err.value.code == -10004 and ft.sleeps == [0.5, 1.0]
        server.start()  # same port, same state file
        assert broker.ensure_connected(max_wait_s=2.0).connected
        assert broker.positions() == before
    finally:
        broker.shutdown()


def test_serve_refuses_a_non_loopback_address(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fxnb.broker.serve", "--state-file", str(tmp_path / "s.db"),
         "--port", str(free_port()), "--host", "0.0.0.0"],
        capture_output=True, text=True, timeout=60, env={**os.environ},
    )
    assert out.returncode == 2 and "loopback" in out.stderr
    assert not (tmp_path / "s.db").exists()


def _plain_mt5linux_client() -> Any:
    """mt5linux's own client class, if this environment has one that simply connects."""
    try:
        import mt5linux
    except (ImportError, SyntaxError) as exc:  # 1.1.1 uses Python 3.12 f-string syntax
        pytest.skip(f"the installed mt5linux client cannot be imported here: {type(exc).__name__}: {exc}")
    if "engine" in inspect.signature(mt5linux.MetaTrader5.__init__).parameters:
        pytest.skip("this mt5linux client starts Docker containers instead of connecting")
    return mt5linux.MetaTrader5


def test_mt5linux_own_client_reads_our_server(served: tuple[Server, Any]) -> None:
    client_class = _plain_mt5linux_client()
    server, _ = served
    mt5 = client_class(host=HOST, port=server.port)
    assert mt5.initialize()
    positions = mt5.positions_get()
    assert sorted(p.symbol for p in positions) == ["EURUSD", "GBPUSD", "USDJPY"]
    assert mt5.last_error() == (1, "Success")
