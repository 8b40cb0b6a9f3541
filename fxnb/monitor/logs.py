"""Logging for the monitor: rotated file plus console, one structured line per action."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
from pathlib import Path
from typing import Any

from fxnb.errors import ConfigError

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def setup_logging(logs_dir: Path, *, level: int = logging.INFO, console: bool = True) -> Path:
    """Send fxnb's logs to ``logs/profit_monitor.log`` (5 MB x 5 files) and stderr."""
    try:
        logs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"paths.logs: cannot create {logs_dir} ({exc.strerror or exc})") from None
    os.chmod(logs_dir, 0o700)
    path = logs_dir / "profit_monitor.log"
    root = logging.getLogger()
    root.setLevel(level)
    for h in list(root.handlers):
        root.removeHandler(h)
    fh = logging.handlers.RotatingFileHandler(path, maxBytes=5_000_000, backupCount=5, encoding="utf-8")
    fh.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(fh)
    if path.exists():
        os.chmod(path, 0o600)
    if console:
        sh = logging.StreamHandler()
        sh.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(sh)
    for noisy in ("apscheduler", "tornado.access", "watchdog"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path


def kv(event: str, **fields: Any) -> str:
    """``event key=value ...`` with JSON-quoted values: greppable and machine-readable."""
    parts = [event] + [f"{k}={json.dumps(v, default=str)}" for k, v in fields.items() if v is not None]
    return " ".join(parts)
