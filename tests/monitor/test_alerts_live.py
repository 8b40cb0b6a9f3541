"""Webhook alerts from the running monitor, received by a real local HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fxnb.broker.sim import write_control
from fxnb.testing import MonitorProcess, make_workspace, run_cli


class Inbox:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.cond = threading.Condition()

    def add(self, item: dict[str, Any]) -> None:
        with self.cond:
            self.items.append(item)
            self.cond.notify_all()

    def wait_for(self, event: str, timeout: float = 30.0) -> dict[str, Any]:
        with self.cond:
            ok = self.cond.wait_for(lambda: any(i["event"] == event for i in self.items), timeout)
            assert ok, f"no {event!r} alert; got {[i['event'] for i in self.items]}"
            return next(i for i in self.items if i["event"] == event)


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, str]]:
    box = Inbox()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            box.add(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield box, f"http://127.0.0.1:{server.server_port}/hook/secret-token"
    server.shutdown()


def test_monitor_posts_alerts(tmp_path: Path, inbox: tuple[Inbox, str]) -> None:
    box, url = inbox
    cfg = make_workspace(tmp_path / "ws", sim_positions=3, overrides={
        "profit_monitor": {"rules_mode": "off"},
        "alerts": {"disconnected_after_seconds": 1, "webhooks": [{"url_env": "FXNB_TEST_HOOK", "retries": 1}]},
    })
    with MonitorProcess(cfg, env={"FXNB_TEST_HOOK": url}) as mon:
        out = run_cli("close", "single", "999999999", "--wait", cfg=cfg)
        assert out.returncode == 1
        failed = box.wait_for("command_failed")
        assert "999999999" in failed["message"] and failed["source"] == "fxnb"

        state_file = cfg.base_dir / cfg.broker.sim["state_file"]
        write_control(state_file, disconnected=True)
        down = box.wait_for("disconnected")
        assert down["level"] == "error"
        write_control(state_file, disconnected=False)
        back = box.wait_for("reconnected")
        assert back["level"] == "info"
        import time

        deadline = time.monotonic() + 10  # the counter moves once the server's reply is read
        while mon.get("/status")[1]["alerts"]["sent"] < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mon.get("/status")[1]["alerts"]["sent"] >= 3
    assert "secret-token" not in (cfg.paths.logs / "profit_monitor.log").read_text()
