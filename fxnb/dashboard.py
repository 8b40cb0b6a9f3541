"""Serving the Voila dashboard (``fxnb dashboard``) and the self-contained demo (``fxnb demo``).

Voila runs as a child process serving only ``voila_apps/``, bound to
127.0.0.1, with sources stripped and tracebacks hidden. Every browser tab gets
its own kernel; two measures make closing a tab free that kernel within
seconds (Voila alone leaks it, voila#1458):

* ``tornado_settings.disable_check_xsrf`` — lets the page's unload beacon
  (``POST /voila/api/shutdown/<kernel>``) through; applied only on a loopback
  address, where cross-site requests from other machines cannot reach it;
* :class:`DisconnectCullingKernelManager` — shuts down a kernel whose page
  has been gone for ``cull_disconnected_after`` seconds (crashed browser, lost
  network, or a beacon that never arrived).

The kernels inherit Voila's environment minus credentials (``FXNB_MT5_*``,
``FXNB_SECRETS_FILE``, the monitor's HTTP token variable) and with
``FXNB_CONFIG`` set to the workspace config, which is how the notebook finds it.

This module imports nothing heavy at import time: the kernel-manager class is
built on first attribute access (``fxnb.dashboard.DisconnectCullingKernelManager``),
which only the Voila process does.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from fxnb.config import CONFIG_ENV, Config, is_loopback, load_config

APPS_DIR = Path(__file__).resolve().parent.parent / "voila_apps"
"""The Voila apps, next to the package (fxnb is installed editable from the repository)."""

DASHBOARD_APP = "dashboard.ipynb"
CREDENTIAL_ENV = ("FXNB_MT5_LOGIN", "FXNB_MT5_PASSWORD", "FXNB_MT5_SERVER", "FXNB_SECRETS_FILE")
DEMO_DIR = Path(".fxnb") / "demo"

_KM_CLASS: Any = None


def _kernel_manager_class() -> Any:
    """Build :class:`DisconnectCullingKernelManager` (imports jupyter_server: ~1.5 s, so only on demand)."""
    global _KM_CLASS
    if _KM_CLASS is not None:
        return _KM_CLASS
    from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
    from traitlets import Float

    class DisconnectCullingKernelManager(AsyncMappingKernelManager):
        """Also cull kernels whose page went away, even though their live refresh keeps them "active".

        jupyter_server's idle culler never culls a dashboard kernel: its refresh
        task's comm messages count as activity. This manager remembers when a
        kernel's last websocket closed and shuts it down ``cull_disconnected_after``
        seconds later if nobody reconnected; a kernel that never got a connection
        (a page abandoned while rendering) goes after ``cull_unconnected_after``.
        The check runs every ``MappingKernelManager.cull_interval`` seconds and
        only when ``cull_idle_timeout > 0`` (jupyter_server starts its culler then).
        """

        cull_disconnected_after = Float(10.0, config=True,
                                        help="seconds without any connection, after having had one, before shutdown")
        cull_unconnected_after = Float(300.0, config=True,
                                       help="seconds a kernel may wait for its first connection")

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._fxnb_started: dict[str, float] = {}
            self._fxnb_disconnected: dict[str, float | None] = {}

        async def start_kernel(self, *args: Any, **kwargs: Any) -> str:
            kernel_id = await super().start_kernel(*args, **kwargs)
            self._fxnb_started.setdefault(kernel_id, time.monotonic())
            return kernel_id

        def notify_connect(self, kernel_id: str) -> None:
            super().notify_connect(kernel_id)
            self._fxnb_disconnected[kernel_id] = None

        def notify_disconnect(self, kernel_id: str) -> None:
            super().notify_disconnect(kernel_id)
            if self._kernel_connections.get(kernel_id, 0) <= 0:
                self._fxnb_disconnected[kernel_id] = time.monotonic()

        async def cull_kernel_if_idle(self, kernel_id: str) -> None:
            now = time.monotonic()
            gone = self._fxnb_disconnected.get(kernel_id, "never")
            connections = self._kernel_connections.get(kernel_id, 0)
            reason = None
            if connections <= 0 and isinstance(gone, float) and now - gone >= self.cull_disconnected_after:
                reason = f"its page disconnected {now - gone:.0f} s ago"
            elif gone == "never" and now - self._fxnb_started.get(kernel_id, now) >= self.cull_unconnected_after:
                reason = f"no page connected within {self.cull_unconnected_after:g} s"
            if reason is None:
                await super().cull_kernel_if_idle(kernel_id)
                return
            self.log.info("fxnb: shutting down kernel %s: %s", kernel_id, reason)
            await self.shutdown_kernel(kernel_id)

        async def shutdown_kernel(self, kernel_id: str, *args: Any, **kwargs: Any) -> None:
            self._fxnb_started.pop(kernel_id, None)
            self._fxnb_disconnected.pop(kernel_id, None)
            await super().shutdown_kernel(kernel_id, *args, **kwargs)

    DisconnectCullingKernelManager.__module__ = __name__
    DisconnectCullingKernelManager.__qualname__ = "DisconnectCullingKernelManager"
    _KM_CLASS = DisconnectCullingKernelManager
    return _KM_CLASS


def __getattr__(name: str) -> Any:  # PEP 562: traitlets imports the class by its dotted name
    if name == "DisconnectCullingKernelManager":
        return _kernel_manager_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def kernel_env(cfg: Config, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for Voila and its kernels: ``FXNB_CONFIG`` set, credentials removed."""
    env = dict(os.environ if base is None else base)
    for name in (*CREDENTIAL_ENV, cfg.http.token_env or ""):
        env.pop(name, None)
    env[CONFIG_ENV] = str(cfg.path)
    return env


def voila_config(*, host: str, port: int, show_tracebacks: bool = False, cull_disconnected_after: float = 10.0,
                 cull_interval: int = 2) -> dict[str, Any]:
    """The ``voila.json`` written for one server (dicts cannot be passed on Voila's command line)."""
    voila: dict[str, Any] = {"ip": host, "port": port, "open_browser": False}
    if is_loopback(host):
        voila["tornado_settings"] = {"disable_check_xsrf": True}
    return {
        "Voila": voila,
        "VoilaConfiguration": {
            "template": "lab",
            "strip_sources": True,
            "show_tracebacks": show_tracebacks,
            "multi_kernel_manager_class": f"{__name__}.DisconnectCullingKernelManager",
        },
        "DisconnectCullingKernelManager": {"cull_disconnected_after": cull_disconnected_after},
        # jupyter_server runs the culler only when cull_idle_timeout > 0. A connected kernel is never
        # culled for idleness (cull_connected is off), so a day only bounds truly forgotten kernels.
        "MappingKernelManager": {"cull_idle_timeout": 86400, "cull_interval": cull_interval},
    }


class DashboardServer:
    """One Voila child process serving ``voila_apps/`` for the workspace ``cfg``.

    >>> server = DashboardServer(cfg, port=0).start()      # doctest: +SKIP
    >>> server.app_url                                      # doctest: +SKIP
    'http://127.0.0.1:40123/voila/render/dashboard.ipynb'
    >>> server.stop()                                       # doctest: +SKIP
    """

    def __init__(self, cfg: Config, *, port: int = 8866, host: str = "127.0.0.1", token: str | None = None,
                 apps_dir: Path | None = None, show_tracebacks: bool = False,
                 cull_disconnected_after: float = 10.0, log_path: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        if not is_loopback(host) and not token:
            raise ValueError(f"refusing to serve the dashboard on {host!r} without a token: it can close "
                             "positions. Use 127.0.0.1 (and an SSH tunnel), or pass a token.")
        self.cfg = cfg
        self.host = host
        self.port = free_port(host) if port == 0 else port
        self.token = token
        self.apps_dir = (apps_dir or APPS_DIR).resolve()
        if not (self.apps_dir / DASHBOARD_APP).is_file():
            raise FileNotFoundError(f"{self.apps_dir / DASHBOARD_APP} not found (is fxnb installed from its "
                                    "repository with `pip install -e .`?)")
        self.show_tracebacks = show_tracebacks
        self.cull_disconnected_after = cull_disconnected_after
        self.log_path = log_path
        self.env = kernel_env(cfg, env)
        self.proc: subprocess.Popen[bytes] | None = None
        self._confdir: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def app_url(self) -> str:
        query = f"?token={self.token}" if self.token else ""
        return f"{self.url}voila/render/{DASHBOARD_APP}{query}"

    def command(self, confdir: Path) -> list[str]:
        cmd = [sys.executable, "-m", "voila", str(self.apps_dir), "--no-browser", f"--port={self.port}",
               f"--Voila.ip={self.host}", f"--Voila.config_file_paths={confdir}",
               "--strip_sources=True", f"--show_tracebacks={self.show_tracebacks}"]
        if self.token:
            cmd.append(f"--token={self.token}")
        return cmd

    def start(self, *, wait: bool = True, timeout: float = 60.0) -> DashboardServer:
        self._confdir = Path(tempfile.mkdtemp(prefix="fxnb-voila-"))
        conf = voila_config(host=self.host, port=self.port, show_tracebacks=self.show_tracebacks,
                            cull_disconnected_after=self.cull_disconnected_after)
        (self._confdir / "voila.json").write_text(json.dumps(conf, indent=2))
        out: Any = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = self.log_path.open("ab")
        try:
            # own process group: a terminal's Ctrl-C reaches us, and we stop Voila in order
            self.proc = subprocess.Popen(self.command(self._confdir), env=self.env, cwd=str(self.apps_dir),
                                         stdout=out, stderr=subprocess.STDOUT if out else None,
                                         start_new_session=True)
        finally:
            if out is not None:
                out.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll the tree page until Voila answers (it starts kernels only when a page is opened)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"voila exited with {self.proc.returncode}{self._log_tail()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"voila did not answer on {self.url} within {timeout:g} s{self._log_tail()}")

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return ":\n" + self.log_path.read_text(errors="replace")[-4000:]

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM Voila and wait: it shuts its kernels down (each lives in its own process group).

        Only if that times out is Voila's group killed; kernels it had not stopped yet are then
        orphaned, so the wait is generous.
        """
        rc = 0
        if self.proc is not None:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(10)
            rc = self.proc.returncode or 0
        if self._confdir is not None:
            shutil.rmtree(self._confdir, ignore_errors=True)
            self._confdir = None
        return rc

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Stop(Exception):
    pass


def _raise_stop(signum: int, _frame: Any) -> None:
    raise _Stop(signum)


def _wait_forever(*procs: subprocess.Popen[bytes]) -> int:
    """Block until Ctrl-C / SIGTERM (returns 0) or a child exits (returns 1)."""
    old = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        while True:
            for p in procs:
                if p.poll() is not None:
                    print(f"fxnb: {p.args[2] if len(p.args) > 2 else p.args[0]} exited with {p.returncode}",
                          file=sys.stderr)
                    return 1
            time.sleep(0.5)
    except (KeyboardInterrupt, _Stop):
        return 0
    finally:
        signal.signal(signal.SIGTERM, old)


def serve_dashboard(cfg: Config, *, port: int = 8866, host: str = "127.0.0.1", token: str | None = None,
                    show_tracebacks: bool = False) -> int:
    """Serve the dashboard until Ctrl-C or SIGTERM; returns an exit status for the CLI.

    The monitor is not started here (``fxnb monitor`` runs on its own); the
    dashboard shows a STALE banner if it is not running.
    """
    server = DashboardServer(cfg, port=port, host=host, token=token, show_tracebacks=show_tracebacks)
    old = signal.signal(signal.SIGTERM, _raise_stop)
    status = 0
    try:
        server.start()
        print(f"fxnb dashboard: open {server.app_url}  (workspace {cfg.base_dir}; Ctrl-C to stop)", flush=True)
        assert server.proc is not None
        status = _wait_forever(server.proc)
    except (KeyboardInterrupt, _Stop):
        status = 0
    except (RuntimeError, TimeoutError) as exc:
        print(f"fxnb dashboard: {exc}", file=sys.stderr)
        status = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the clean-up
        try:
            server.stop()
        finally:
            signal.signal(signal.SIGTERM, old)
    return status


# -- demo ----------------------------------------------------------------------------------------

DEMO_SETTINGS: dict[str, Any] = {
    "profit_monitor": {"check_interval": 2.0},
    "broker": {"sim": {"volatility": 1.0, "trader": {"enabled": True, "interval": 6.0, "max_positions": 30}}},
}


def _deep_update(base: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value


def demo_workspace(directory: Path | None = None) -> Config:
    """Create (or reuse) the demo workspace: ~20 simulated positions, moving prices, a background trader."""
    from fxnb.config import config_from_mapping
    from fxnb.workspace import init_workspace

    directory = (directory or DEMO_DIR).expanduser().resolve()
    cfg_path = directory / "config.json"
    if cfg_path.exists():
        return load_config(cfg_path)
    cfg = init_workspace(directory, sim_positions=20, check_interval=2.0)
    data = json.loads(cfg.path.read_text())
    _deep_update(data, DEMO_SETTINGS)
    config_from_mapping(data, path=cfg.path)  # validate before writing
    tmp = cfg.path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, cfg.path)
    return load_config(cfg.path)


def _wait_monitor(cfg: Config, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    from fxnb.errors import StorageError
    from fxnb.status import monitor_health
    from fxnb.storage import Reader

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"fxnb monitor exited with {proc.returncode}:\n"
                               f"{log.read_text(errors='replace')[-4000:] if log.exists() else ''}")
        try:
            with Reader(cfg.paths.database) as r:
                hb = r.heartbeat()
            if hb and hb.get("pid") == proc.pid and not monitor_health(hb, cfg.profit_monitor.check_interval)["stale"]:
                return
        except StorageError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"fxnb monitor did not report healthy within {timeout:g} s (log: {log})")


def run_demo(directory: Path | None = None, *, port: int = 8866, host: str = "127.0.0.1") -> int:
    """``fxnb demo``: a demo workspace, its monitor and the dashboard, until Ctrl-C / SIGTERM.

    Stops both cleanly: Voila first (SIGTERM to its group, then wait; it shuts
    its kernels down), then the monitor (SIGTERM, wait).
    """
    cfg = demo_workspace(directory)
    log = cfg.paths.logs / "demo-monitor.out"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"fxnb demo: workspace {cfg.base_dir} (simulated terminal)", flush=True)
    server: DashboardServer | None = None
    with log.open("ab") as out:
        monitor = subprocess.Popen([sys.executable, "-m", "fxnb", "monitor", "--config", str(cfg.path)],
                                   stdout=out, stderr=subprocess.STDOUT, env=kernel_env(cfg),
                                   start_new_session=True)
    status = 0
    old = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        _wait_monitor(cfg, monitor, log)
        server = DashboardServer(cfg, port=port, host=host, log_path=cfg.paths.logs / "demo-voila.out")
        server.start()
        print(f"fxnb demo: open {server.app_url}  (Ctrl-C to stop)", flush=True)
        assert server.proc is not None
        status = _wait_forever(server.proc, monitor)
    except (KeyboardInterrupt, _Stop):
        status = 0
    except (RuntimeError, TimeoutError, FileNotFoundError) as exc:
        print(f"fxnb demo: {exc}", file=sys.stderr)
        status = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the clean-up
        try:
            if server is not None:
                server.stop()
            if monitor.poll() is None:
                monitor.send_signal(signal.SIGTERM)
                try:
                    monitor.wait(30)
                except subprocess.TimeoutExpired:
                    monitor.kill()
                    monitor.wait(10)
        finally:
            signal.signal(signal.SIGTERM, old)
        print("fxnb demo: stopped", flush=True)
    return status


__all__ = ["APPS_DIR", "DashboardServer", "demo_workspace", "kernel_env", "run_demo", "serve_dashboard",
           "voila_config"]
