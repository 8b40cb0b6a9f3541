"""Helpers shared by the hardening tests (real processes, real files, real SQLite)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from fxnb.config import Config
from fxnb.errors import StorageError
from fxnb.storage import Reader
from fxnb.testing import MonitorProcess

HERE = Path(__file__).resolve().parent
CRASH_HELPER = HERE / "_crashpoint_monitor.py"
T = TypeVar("T")


def seed_doc(cmd_id: int | str, cmd_type: str, **fields: Any) -> dict[str, Any]:
    """The seed's command format: naive local timestamp, ``status: pending``, ``ticket`` null for bulk."""
    return {"id": cmd_id, "type": cmd_type, "ticket": fields.pop("ticket", None),
            "timestamp": datetime.now().isoformat(timespec="seconds"), "status": "pending", **fields}


def write_command(cfg: Config, name: str, data: bytes | str | Mapping[str, Any]) -> Path:
    """Drop ``commands/<name>`` atomically (temp file + rename), as a careful producer would."""
    if isinstance(data, Mapping):
        data = json.dumps(data)
    raw = data.encode() if isinstance(data, str) else data
    path = cfg.paths.commands / name
    tmp = cfg.paths.commands / f".{name}.tmp"
    tmp.write_bytes(raw)
    os.replace(tmp, path)
    return path


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def eventually(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is truthy or ``timeout`` passes; True if it became truthy."""
    try:
        wait_until(predicate, timeout, "", interval)
    except TimeoutError:
        return False
    return True


def query(cfg: Config, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    """Rows from the database through the read-only Reader ([] while it does not exist yet)."""
    try:
        with Reader(cfg.paths.database) as r:
            return [dict(row) for row in r.db.query(sql, params or [])]
    except StorageError:
        return []


def op_status(cfg: Config, command_id: str) -> str | None:
    rows = query(cfg, "SELECT status FROM position_close_operations WHERE command_id = ?", [command_id])
    return rows[0]["status"] if rows else None


class CrashingMonitor(MonitorProcess):
    """``fxnb monitor`` that SIGKILLs itself at ``crash_at`` (see ``_crashpoint_monitor.py``)."""

    def __init__(self, cfg: Config, crash_at: str, *, env: Mapping[str, str] | None = None) -> None:
        super().__init__(cfg, env={"FXNB_CRASH_AT": crash_at, **(env or {})})

    def start(self, *, wait: bool = False, timeout: float = 30.0) -> CrashingMonitor:
        self.port_file.unlink(missing_ok=True)
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, str(CRASH_HELPER), "--config", str(self.cfg.path)],
                                         stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=True)
        if wait:
            self.wait_healthy(timeout)
        return self

    def wait_crashed(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"the crash point was never reached:\n{self.output()}") from None
