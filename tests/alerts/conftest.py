"""A real webhook receiver on 127.0.0.1 for the alert tests."""

from __future__ import annotations

import json
import threading
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class HookServer:
    """Records every POST. ``script(path, status, ...)`` queues responses for a path (then 200);
    ``hold(path, seconds)`` makes a path answer late (released at teardown)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._cond = threading.Condition()
        self._scripts: dict[str, deque[tuple[int, dict[str, str]]]] = defaultdict(deque)
        self._holds: dict[str, float] = {}
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?")[0]
                with server._cond:
                    server.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    server._cond.notify_all()
                    status, headers = (server._scripts[path].popleft() if server._scripts[path] else (200, {}))
                    hold = server._holds.get(path)
                if hold:
                    server.release.wait(hold)
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the client gave up (timeout test)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *statuses: int, headers: dict[str, str] | None = None) -> None:
        with self._cond:
            self._scripts[path].extend((s, headers or {}) for s in statuses)

    def hold(self, path: str, seconds: float) -> None:
        self._holds[path] = seconds

    def on(self, path: str) -> list[Received]:
        with self._cond:
            return [r for r in self.received if r.path.split("?")[0] == path.split("?")[0]]

    def wait_for(self, count: int, timeout: float = 3.0) -> list[Received]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.received) >= count, timeout), (
                f"expected {count} requests, got {len(self.received)}")
            return list(self.received)


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    server = HookServer()
    server.thread.start()
    yield server
    server.release.set()
    server.httpd.shutdown()
    server.httpd.server_close()
