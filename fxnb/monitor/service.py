"""Tornado wiring for the monitor: scheduler, command watcher, HTTP API, signals.

All broker and database work is submitted to ONE worker thread (the official
MetaTrader5 module is a single global connection, and the Store is the single
writer), so the IOLoop never blocks and nothing runs twice at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import hmac
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, TypeVar

import tornado.web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from fxnb import __version__
from fxnb.alerts import WebhookDispatcher
from fxnb.broker import make_broker
from fxnb.commands import CommandDir
from fxnb.config import Config
from fxnb.errors import ConfigError, FxnbError, StorageError
from fxnb.monitor.engine import Engine
from fxnb.monitor.health import DATABASE
from fxnb.monitor.lock import InstanceLock
from fxnb.monitor.logs import kv, setup_logging
from fxnb.monitor.watcher import CommandWatcher
from fxnb.storage import Store

log = logging.getLogger("fxnb.monitor")
T = TypeVar("T")


class Monitor:
    """The running service. ``run()`` blocks until SIGTERM/SIGINT, then exits cleanly."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="fxnb-broker")
        self.engine: Engine | None = None
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._backoff = 1.0
        self._next_connect = 0.0

    # ------------------------------------------------------------ worker thread
    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def _open(self) -> Engine:
        cfg = self.cfg
        store = Store.open(cfg.paths.database)
        commands = CommandDir(cfg.paths.commands)
        commands.ensure()
        broker = make_broker(cfg)
        alerts = WebhookDispatcher(cfg.alerts) if cfg.alerts.enabled else None
        if alerts is not None:
            alerts.start()
        engine = Engine(cfg, broker, store, commands, alerts=alerts)
        if engine.connect():
            try:
                engine.reconcile()
            except (StorageError, OSError) as exc:  # start anyway (polls, rules go on); Engine.recover retries
                engine.environment_failed(exc)
        return engine

    # ------------------------------------------------------------ jobs
    async def poll_job(self) -> None:
        engine = self.engine
        assert engine is not None
        if not engine.health.connected and time.monotonic() < self._next_connect:
            await self.call(engine.watch_connection)
            return
        was = engine.health.connected
        ok = await self.call(engine.guarded, engine.poll, False)  # a full disk is reported, not raised
        if engine.health.connected:
            self._backoff = 1.0
            if not was:  # back after an outage: reconcile (Engine.recover), then the commands that waited
                engine.needs_recovery = True
                self._wake.set()
            elif ok and engine.needs_recovery:  # the database takes writes again: finish what it refused
                self._wake.set()
        else:
            self._next_connect = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, 30.0)
        if not ok:
            log.debug("poll did not complete")

    async def command_loop(self) -> None:
        """Runs commands as soon as the watcher (or the rescan) wakes it."""
        engine = self.engine
        assert engine is not None
        while not self._stop.is_set():
            await self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                await self.call(engine.process_pending)
            except Exception:  # a bug must not stop the monitor; the file stays for the next look
                log.exception("command processing failed")

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------ HTTP
    def status(self) -> dict[str, Any]:
        engine = self.engine
        assert engine is not None
        h = engine.health
        return {
            "version": __version__,
            "state": h.state,
            "connected": h.connected,
            "broker": self.cfg.broker.kind,
            "account": dict(h.account),
            "open_positions": h.open_positions,
            "last_poll_at": _iso(h.last_poll_at),
            "last_poll_ok": h.last_poll_ok,
            "poll_duration_ms": round(h.poll_duration_ms, 3),
            "check_interval": self.cfg.profit_monitor.check_interval,
            "rules_mode": engine.rule_settings.rules_mode,
            "queue_depth": h.queue_depth,
            "last_error": h.error,
            "problems": dict(h.problems),
            "started_at": _iso(h.started_at),
            "pid": os.getpid(),
            "alerts": engine.alerts.stats() if engine.alerts is not None else {"enabled": False},
        }

    def health(self) -> tuple[int, dict[str, Any]]:
        engine = self.engine
        assert engine is not None
        h = engine.health
        reasons = []
        problems = dict(h.problems)
        if DATABASE in problems:  # nothing can be recorded, so no rule or command may run
            reasons.append(problems[DATABASE])
        if not h.connected:
            reasons.append(f"terminal not connected: {h.last_error or 'connecting'}")
        max_age = 2 * self.cfg.profit_monitor.check_interval + 5
        age = None if h.last_poll_at is None else time.time() - h.last_poll_at
        if age is None:
            reasons.append("no successful poll yet")
        elif age > max_age:
            reasons.append(f"last successful poll {age:.0f}s ago (limit {max_age:.0f}s)")
        ok = not reasons
        # the other problems (commands/ unwritable) stop operator commands, not the protection: still 200
        return (200 if ok else 503), {"ok": ok, "reasons": reasons, "connected": h.connected,
                                      "last_poll_age_s": None if age is None else round(age, 3),
                                      "problems": problems}

    def make_app(self) -> tornado.web.Application:
        token_env = self.cfg.http.token_env
        token = os.environ.get(token_env) if token_env else None
        if not self.cfg.http.loopback and not token:
            raise SystemExit(f"http.host {self.cfg.http.host} is not loopback and ${token_env} is empty: "
                             "refusing to start without an access token")
        return tornado.web.Application([
            (r"/healthz", _Handler, {"monitor": self, "what": "healthz", "token": token}),
            (r"/status", _Handler, {"monitor": self, "what": "status", "token": token}),
        ])

    # ------------------------------------------------------------ lifecycle
    async def main(self) -> int:
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        self.engine = await self.call(self._open)
        engine = self.engine
        app = self.make_app()
        server = app.listen(cfg.http.port, address=cfg.http.host)
        port = next(iter(server._sockets.values())).getsockname()[1]
        log.info(kv("listening", url=f"http://{cfg.http.host}:{port}", broker=cfg.broker.kind,
                    rules_mode=engine.rule_settings.rules_mode, workspace=str(cfg.base_dir)))
        sched = AsyncIOScheduler(timezone=UTC)
        interval = cfg.profit_monitor.check_interval
        sched.add_job(self.poll_job, "interval", seconds=interval, id="poll", coalesce=True, max_instances=1,
                      misfire_grace_time=max(1, int(interval)), next_run_time=datetime.now(UTC))
        sched.add_job(self.wake, "interval", seconds=cfg.commands.rescan_interval, id="rescan", coalesce=True,
                      max_instances=1)
        sched.start()
        watcher = CommandWatcher(cfg.paths.commands, loop, self.wake, force_polling=cfg.commands.force_polling)
        watcher.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        worker = asyncio.create_task(self.command_loop())
        self.wake()  # startup scan: files dropped while we were down
        _write_port_file(cfg, port)
        await self._stop.wait()
        log.info("stopping: finishing the command in flight")
        watcher.stop()
        sched.shutdown(wait=False)
        self._wake.set()
        await worker  # the in-flight process_pending finishes first
        server.stop()
        await self.call(engine.stopped)
        if engine.alerts is not None:
            engine.alerts.stop(5.0)
        self.pool.shutdown(wait=True)
        log.info("stopped")
        return 0


class _Handler(tornado.web.RequestHandler):
    def initialize(self, monitor: Monitor, what: str, token: str | None) -> None:
        self.monitor = monitor
        self.what = what
        self.token = token

    def get(self) -> None:
        if self.token:
            given = self.request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self.token.encode()):
                self.set_status(401)
                self.finish({"error": "missing or wrong bearer token"})
                return
        if self.what == "healthz":
            code, body = self.monitor.health()
            self.set_status(code)
        else:
            body = self.monitor.status()
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _write_port_file(cfg: Config, port: int) -> None:
    """Lets `fxnb demo` and tests find the API when port 0 (any free port) was configured."""
    path = cfg.paths.database.with_name("monitor.port")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(port))
    os.replace(tmp, path)


def run_monitor(cfg: Config) -> int:
    """Entry point for `fxnb monitor`: lock the workspace, log, run until signalled."""
    setup_logging(cfg.paths.logs)
    for w in cfg.warnings:
        log.warning(kv("config_warning", message=w))
    lock = InstanceLock(cfg.paths.database.with_name(".fxnb-monitor.lock"))
    lock.acquire()
    try:
        return asyncio.run(Monitor(cfg).main())
    except OSError as exc:  # a path that is a file, a missing folder, a port in use: one line, not a traceback
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        if exc.errno == errno.EADDRINUSE:
            raise FxnbError(f"http.port {cfg.http.port}: address already in use on {cfg.http.host}") from None
        if isinstance(exc, socket.gaierror):
            raise ConfigError(f"http.host {cfg.http.host!r}: cannot resolve it ({exc})") from None
        raise ConfigError(f"cannot start the monitor: {exc.strerror or exc}{where}") from None
    except (KeyError, TypeError) as exc:  # simulator settings the schema lets through (e.g. an unknown symbol)
        raise ConfigError(f"broker.sim: invalid simulator settings ({type(exc).__name__}: {exc})") from None
    finally:
        lock.release()


__all__ = ["Monitor", "run_monitor", "asdict"]
