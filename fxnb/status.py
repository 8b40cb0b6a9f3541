"""What `fxnb status` and the console's health panel show: read from the database only."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from fxnb.config import Config


def _age(iso: str | None, now: float) -> float | None:
    if not iso:
        return None
    return now - datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def monitor_health(
    heartbeat: dict[str, Any] | None, check_interval: float, *, now: float | None = None
) -> dict[str, Any]:
    """Heartbeat plus a verdict. STALE once the monitor has not written for 2 x check_interval."""
    now = time.time() if now is None else now
    if not heartbeat:
        return {"state": "never started", "connected": False, "stale": True, "last_poll_age_s": None,
                "reason": "no heartbeat: the monitor has never run on this workspace"}
    hb = dict(heartbeat)
    updated_age = _age(hb.get("updated_at"), now)
    poll_age = _age(hb.get("last_poll_at"), now)
    limit = 2 * float(hb.get("check_interval") or check_interval)
    stale = hb.get("state") == "stopped" or updated_age is None or updated_age > limit
    reason = None
    if hb.get("state") == "stopped":
        reason = "the monitor was stopped"
    elif stale:
        reason = (f"no heartbeat for {updated_age:.0f}s (limit {limit:.0f}s): the monitor is not running "
                  "(or cannot write the database: see its /healthz and log)")
    elif not hb.get("connected"):
        reason = f"terminal disconnected: {hb.get('last_error') or 'reconnecting'}"
    elif hb.get("last_error"):  # running, but something fails (e.g. commands/ is read-only)
        reason = hb["last_error"]
    hb.update(stale=stale, last_poll_age_s=None if poll_age is None else round(poll_age, 1),
              heartbeat_age_s=None if updated_age is None else round(updated_age, 1), reason=reason)
    return hb


def read_status(cfg: Config) -> dict[str, Any]:
    """``{"account": {...}, "positions": [...], "monitor": {...}}`` for `fxnb status --json`."""
    from fxnb.storage import Reader

    reader = Reader(cfg.paths.database)
    positions = [
        {"ticket": p["ticket"], "symbol": p["symbol"], "type": p["type"], "volume": p["volume"],
         "price_open": p["open_price"], "price_current": p["current_price"], "profit": p["profit"],
         "swap": p.get("swap"), "sl": p.get("sl"), "tp": p.get("tp"), "magic": p.get("magic"),
         "open_time": p.get("open_time"), "profit_percent": p.get("profit_percent")}
        for p in reader.open_positions()
    ]
    return {
        "account": reader.account(),
        "positions": positions,
        "monitor": monitor_health(reader.heartbeat(), cfg.profit_monitor.check_interval),
    }
