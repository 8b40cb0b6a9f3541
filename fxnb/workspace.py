"""``fxnb init``: a new workspace (config, folders, database, simulated terminal)."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fxnb.config import DEFAULTS, Config, config_from_mapping
from fxnb.errors import ConfigError

SIM_DEFAULTS: dict[str, Any] = {
    "state_file": "sim_terminal.db",
    "seed": 42,
    "volatility": 1.0,
    "margin_mode": "hedging",
    "balance": 10000.0,
    "currency": "USD",
    "leverage": 100,
    "server_offset_hours": 2,
    "positions": {"count": 12, "list": []},
    "trader": {"enabled": False, "interval": 20.0, "max_positions": 30},
    "faults": {"requote_rate": 0.0, "reject_rate": 0.0, "disconnect_rate": 0.0, "disconnect_seconds": 5.0,
               "market_closed": [], "autotrading_disabled": False, "latency_ms": 0.0,
               "lost_reply_rate": 0.0, "error_rate": 0.0, "timeout_rate": 0.0, "ambiguous_executes": False,
               "partial_fill_rate": 0.0, "visibility_delay_ms": 0.0, "history_delay_ms": 0.0},
    "price_path": None,
}


def deep_update(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """Merge nested ``changes`` into ``base`` in place (lists and scalars replace)."""
    for k, v in changes.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            deep_update(base[k], v)
        else:
            base[k] = v
    return base


def template(*, sim_positions: int = 12, sim_seed: int = 42, sim_frozen: bool = False,
             check_interval: float | None = None, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config a new workspace starts with: the defaults, on the simulated terminal."""
    data = copy.deepcopy(DEFAULTS)
    sim = copy.deepcopy(SIM_DEFAULTS)
    sim["positions"]["count"] = sim_positions
    sim["seed"] = sim_seed
    if sim_frozen:
        sim["volatility"] = 0.0
    data["broker"]["sim"] = sim
    if check_interval is not None:
        data["profit_monitor"]["check_interval"] = check_interval
    return deep_update(data, overrides or {})


def init_workspace(directory: Path, **options: Any) -> Config:
    """Create DIR with config.json, commands/, commands/errors/, logs/ and the database (owner-only)."""
    from fxnb.commands import CommandDir
    from fxnb.storage import Store

    directory = directory.expanduser()
    cfg_path = directory / "config.json"
    if cfg_path.exists():
        raise ConfigError(f"{cfg_path} already exists: choose an empty directory")
    directory.mkdir(parents=True, exist_ok=True)
    data = template(**options)
    cfg = config_from_mapping(data, path=cfg_path)
    tmp = cfg_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, cfg_path)
    CommandDir(cfg.paths.commands).ensure()
    cfg.paths.logs.mkdir(parents=True, exist_ok=True)
    os.chmod(cfg.paths.logs, 0o700)
    Store.open(cfg.paths.database).close()
    _seed_simulator(cfg)
    return cfg


def _seed_simulator(cfg: Config) -> None:
    """Open the simulated terminal once so its state file holds the starting positions."""
    from fxnb.broker.sim import SimSettings, create_terminal

    term = create_terminal(SimSettings.from_mapping(cfg.broker.sim, cfg.base_dir))
    term.initialize()
    term.shutdown()
