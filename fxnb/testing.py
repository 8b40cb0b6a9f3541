"""Helpers shared by the tests, the runbooks' fixture and the benchmarks.

They start the real ``fxnb monitor`` process on a temporary workspace and talk
to it only the way users do: files, the CLI, the database and HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fxnb.config import Config, load_config
from fxnb.workspace import deep_update, template

FINAL = {"completed", "partially_completed", "failed", "expired", "rejected"}


def make_workspace(directory: Path, *, sim_positions: int = 12, sim_seed: int = 42, sim_frozen: bool = True,
                   check_interval: float = 0.5, overrides: Mapping[str, Any] | None = None) -> Config:
    """``fxnb init`` with test-friendly defaults: frozen prices, a fast poll, HTTP on a free port."""
    from fxnb.workspace import init_workspace

    changes: dict[str, Any] = {"http": {"port": 0}, "commands": {"rescan_interval": 1}}
    deep_update(changes, overrides or {})
    return init_workspace(directory, sim_positions=sim_positions, sim_seed=sim_seed, sim_frozen=sim_frozen,
                          check_interval=check_interval, overrides=changes)


def update_config(cfg: Config, changes: Mapping[str, Any]) -> Config:
    data = json.loads(cfg.path.read_text())
    deep_update(data, changes)
    cfg.path.write_text(json.dumps(data, indent=2))
    return load_config(cfg.path)


class MonitorProcess:
    """A real ``fxnb monitor`` subprocess."""

    def __init__(self, cfg: Config, *, env: Mapping[str, str] | None = None) -> None:
        self.cfg = cfg
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.log_path = cfg.base_dir / "monitor.out"

    @property
    def port_file(self) -> Path:
        return self.cfg.paths.database.with_name("monitor.port")

    def start(self, *, wait: bool = True, timeout: float = 30.0) -> MonitorProcess:
        self.port_file.unlink(missing_ok=True)
        out = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fxnb", "monitor", "--config", str(self.cfg.path)],
            stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
        )
        out.close()
        if wait:
            self.wait_healthy(timeout)
        return self

    def _wait_port(self, deadline: float) -> int:
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"monitor exited with {self.proc.returncode}:\n{self.output()}")
            try:
                return int(self.port_file.read_text())
            except (FileNotFoundError, ValueError):
                time.sleep(0.02)
        raise TimeoutError(f"monitor did not open its HTTP port:\n{self.output()}")

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        assert self.port is not None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def wait_health(self, code: int, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        self.port = self.port or self._wait_port(deadline)
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"monitor exited with {self.proc.returncode}:\n{self.output()}")
            status, body = self.get("/healthz")
            if status == code:
                return body
            time.sleep(0.05)
        raise TimeoutError(f"/healthz never returned {code} (last {body}):\n{self.output()}")

    def wait_healthy(self, timeout: float = 30.0) -> dict[str, Any]:
        return self.wait_health(200, timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except FileNotFoundError:
            return ""

    def __enter__(self) -> MonitorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for_operation(cfg: Config, command_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """Block until the command reaches a final state in the database; returns it with its results."""
    from fxnb.errors import StorageError
    from fxnb.storage import Reader

    deadline = time.monotonic() + timeout
    op = None
    while time.monotonic() < deadline:
        try:
            reader = Reader(cfg.paths.database)
            op = reader.operation(command_id)
        except StorageError:
            op = None
        if op is not None and op["status"] in FINAL:
            return op
        time.sleep(0.02)
    raise TimeoutError(f"command {command_id} not final after {timeout}s (last: {op})")


def run_cli(*args: str, cfg: Config | None = None, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run ``fxnb ARGS`` as a user would (a separate process)."""
    cmd = [sys.executable, "-m", "fxnb", *args]
    if cfg is not None:
        cmd += ["--config", str(cfg.path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


__all__ = ["MonitorProcess", "make_workspace", "update_config", "wait_for_operation", "run_cli", "template"]


def fill_disk(directory: Path) -> Path:
    """Write zeros into ``directory/.filler`` until its file system says it is full; unlink it to free the space.

    For tests on a small tmpfs: size it well above what the workspace writes on its own (SQLite's WAL
    grows to about 4 MB before its first checkpoint), or the disk is full before this is called.
    """
    filler = directory / ".filler"
    block = b"\0" * 65536
    with open(filler, "wb", buffering=0) as fh:  # unbuffered: nothing left over for close() to fail on
        try:
            while fh.write(block):
                pass
        except OSError:
            pass
    return filler

