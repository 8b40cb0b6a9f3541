"""Load and validate ``config.json`` into frozen dataclasses.

Every mistake (missing file, bad JSON, unknown key, wrong type, impossible
combination) becomes one ``ConfigError`` whose message names the key, so the
CLI can print it without a traceback. Paths are relative to the config file.
Credentials never come from here: see ``fxnb.credentials``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fxnb.alerts.schema import ALERTS_DEFAULTS, ALERTS_SCHEMA, AlertSettings, redact_section
from fxnb.configspec import Bool, Choice, Free, Num, Str, check_value, type_name
from fxnb.credentials import Credentials, load_credentials
from fxnb.errors import ConfigError
from fxnb.guards.schema import GUARDS_DEFAULTS, GUARDS_SCHEMA
from fxnb.guards.settings import GuardSettings

CONFIG_ENV = "FXNB_CONFIG"
SECRET_KEYS = {"password", "login", "server", "token", "secret", "api_key"}


# The schema: section -> key -> spec, and the defaults (equal to the committed config.json).
SCHEMA: dict[str, Any] = {
    "profit_monitor": {
        "check_interval": Num(0.1, 86400, lo_open=False),
        "min_profit_percent": Num(0, 1000, lo_open=True),
        "partial_close_enabled": Bool(),
        "partial_close_threshold": Num(0, 1000, lo_open=True),
        "partial_close_percent": Num(0, 100, lo_open=True),
        "profit_basis": Choice(("balance", "equity", "price_move")),
        "rules_mode": Choice(("live", "dry_run", "off")),
    },
    "commands": {
        "max_age_seconds": Num(1, 86400),
        "max_file_bytes": Num(256, 10_000_000, integer=True),
        "rescan_interval": Num(0.2, 3600),
        "force_polling": Bool(),
    },
    "broker": {
        "kind": Choice(("sim", "mt5", "mt5linux")),
        "deviation": Num(0, 10_000, integer=True),
        "magic": Num(0, 2**63 - 1, integer=True),
        "comment": Str(max_len=26),
        "max_retries": Num(0, 20, integer=True),
        "mt5": {"path": Str(nullable=True, max_len=1024), "timeout_ms": Num(100, 600_000, integer=True),
                "portable": Bool()},
        "mt5linux": {"host": Str(), "port": Num(1, 65535, integer=True)},
        "sim": {
            "state_file": Str(),
            "seed": Num(0, 2**32 - 1, integer=True),
            "volatility": Num(0, 100),
            "margin_mode": Choice(("hedging", "netting")),
            "balance": Num(0, 1e12, lo_open=True),
            "currency": Choice(("USD", "EUR", "GBP", "JPY")),
            "leverage": Num(1, 5000, integer=True),
            "server_offset_hours": Num(-12, 14),
            "commission_per_lot": Num(0, 1000),
            "price_path": Str(nullable=True, max_len=1024),
            "positions": {"count": Num(0, 100_000, integer=True), "list": Free()},
            "trader": {"enabled": Bool(), "interval": Num(0.05, 86400), "max_positions": Num(0, 100_000, integer=True)},
            "faults": {
                "requote_rate": Num(0, 1),
                "reject_rate": Num(0, 1),
                "disconnect_rate": Num(0, 1),
                "disconnect_seconds": Num(0, 3600),
                "market_closed": Free(),
                "autotrading_disabled": Bool(),
                "latency_ms": Num(0, 60_000),
                "lost_reply_rate": Num(0, 1),
                "error_rate": Num(0, 1),
                "timeout_rate": Num(0, 1),
                "ambiguous_executes": Bool(),
                "partial_fill_rate": Num(0, 1),
                "visibility_delay_ms": Num(0, 60_000),
                "history_delay_ms": Num(0, 600_000),
            },
        },
    },
    "paths": {"database": Str(), "commands": Str(), "logs": Str()},
    "http": {"host": Str(), "port": Num(0, 65535, integer=True), "token_env": Str(nullable=True)},
    "storage": {
        "retention_days": Num(1, 36500),
        "full_resolution_hours": Num(0, 8760),
        "downsample_seconds": Num(1, 86400, integer=True),
    },
    "alerts": ALERTS_SCHEMA,
    "guards": GUARDS_SCHEMA,
}

DEFAULTS: dict[str, Any] = {
    "profit_monitor": {
        "check_interval": 30, "min_profit_percent": 2.0, "partial_close_enabled": True,
        "partial_close_threshold": 5.0, "partial_close_percent": 50, "profit_basis": "balance",
        "rules_mode": "live",
    },
    "commands": {"max_age_seconds": 60, "max_file_bytes": 65536, "rescan_interval": 5, "force_polling": False},
    "broker": {
        "kind": "sim", "deviation": 20, "magic": 770077, "comment": "fxnb", "max_retries": 3,
        "mt5": {"path": None, "timeout_ms": 60000, "portable": False},
        "mt5linux": {"host": "127.0.0.1", "port": 18812},
        "sim": {},
    },
    "paths": {"database": "fxnb.db", "commands": "commands", "logs": "logs"},
    "http": {"host": "127.0.0.1", "port": 8765, "token_env": None},
    "storage": {"retention_days": 30, "full_resolution_hours": 24, "downsample_seconds": 60},
    "alerts": ALERTS_DEFAULTS,
    "guards": GUARDS_DEFAULTS,
}


@dataclass(frozen=True)
class ProfitMonitorConfig:
    check_interval: float
    min_profit_percent: float
    partial_close_enabled: bool
    partial_close_threshold: float
    partial_close_percent: float
    profit_basis: str
    rules_mode: str


@dataclass(frozen=True)
class CommandsConfig:
    max_age_seconds: float
    max_file_bytes: int
    rescan_interval: float
    force_polling: bool


@dataclass(frozen=True)
class Mt5Config:
    path: str | None
    timeout_ms: int
    portable: bool


@dataclass(frozen=True)
class Mt5LinuxConfig:
    host: str
    port: int


@dataclass(frozen=True)
class BrokerConfig:
    kind: str
    deviation: int
    magic: int
    comment: str
    max_retries: int
    mt5: Mt5Config
    mt5linux: Mt5LinuxConfig
    sim: Mapping[str, Any]


@dataclass(frozen=True)
class PathsConfig:
    database: Path
    commands: Path
    logs: Path


@dataclass(frozen=True)
class HttpConfig:
    host: str
    port: int
    token_env: str | None

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


@dataclass(frozen=True)
class StorageConfig:
    retention_days: float
    full_resolution_hours: float
    downsample_seconds: int


@dataclass(frozen=True)
class Config:
    """The whole validated configuration. ``raw`` is the merged mapping, for display (see ``sanitized``)."""

    path: Path
    base_dir: Path
    profit_monitor: ProfitMonitorConfig
    commands: CommandsConfig
    broker: BrokerConfig
    paths: PathsConfig
    http: HttpConfig
    storage: StorageConfig
    alerts: AlertSettings
    guards: GuardSettings
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def credentials(self) -> Credentials:
        """Read on demand (env or secrets file), only by the process that talks to the terminal."""
        return load_credentials(repo_root=self.base_dir)

    def sanitized(self) -> dict[str, Any]:
        """The config as a plain dict, safe to display or log (webhook URLs carry tokens: redacted)."""
        out = sanitize(self.raw)
        out["alerts"] = redact_section(out.get("alerts"))
        return out


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def sanitize(value: Any) -> Any:
    """Replace anything that looks like a secret with ``***`` (defence in depth; config.json holds none)."""
    if isinstance(value, Mapping):
        return {k: ("***" if k.lower() in SECRET_KEYS and v else sanitize(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [sanitize(v) for v in value]
    return value


def _merge(prefix: str, schema: Mapping[str, Any], defaults: Mapping[str, Any], given: Any) -> dict[str, Any]:
    if not isinstance(given, Mapping):
        raise ConfigError(f"{prefix or 'config'}: expected a JSON object, got {type_name(given)}")
    out: dict[str, Any] = {}
    for key in given:
        if key not in schema:
            where = f"{prefix}.{key}" if prefix else key
            if key.lower() in SECRET_KEYS:
                raise ConfigError(
                    f"{where}: MT5 credentials do not belong in config.json; set FXNB_MT5_LOGIN, "
                    "FXNB_MT5_PASSWORD and FXNB_MT5_SERVER, or use a secrets file outside the repository"
                )
            raise ConfigError(f"{where}: unknown key (allowed: {', '.join(sorted(schema))})")
    for key, spec in schema.items():
        where = f"{prefix}.{key}" if prefix else key
        default = defaults.get(key) if isinstance(defaults, Mapping) else None
        if isinstance(spec, dict):
            out[key] = _merge(where, spec, default or {}, given.get(key, {}))
        elif key in given:
            out[key] = check_value(where, spec, given[key])
        elif default is not None or (isinstance(spec, Str) and spec.nullable):
            out[key] = default
        elif isinstance(defaults, Mapping) and key not in defaults and prefix.startswith("broker.sim"):
            continue  # the simulator has its own defaults
        else:
            out[key] = default
    return out


def _cross_checks(data: Mapping[str, Any]) -> list[str]:
    """Impossible combinations raise; questionable ones come back as warnings."""
    pm = data["profit_monitor"]
    warnings: list[str] = []
    if pm["partial_close_enabled"] and pm["partial_close_threshold"] >= pm["min_profit_percent"]:
        warnings.append(
            f"profit_monitor.partial_close_threshold ({pm['partial_close_threshold']}) >= "
            f"min_profit_percent ({pm['min_profit_percent']}): the partial close can never fire, "
            "because the full close fires first"
        )
    http = data["http"]
    if not is_loopback(http["host"]) and not http["token_env"]:
        raise ConfigError(
            f"http.host: {http['host']!r} is not a loopback address; set http.token_env to the name of an "
            "environment variable holding an access token, or listen on 127.0.0.1"
        )
    sim = data["broker"]["sim"]
    _check_sim_positions(sim.get("positions", {}).get("list"))
    _check_market_closed(sim.get("faults", {}).get("market_closed"))
    return warnings


# One entry of broker.sim.positions.list: the keys fxnb.broker.sim.seeding reads (symbol and type apart).
_POSITION_NUMBERS: dict[str, Num] = {
    "volume": Num(0, 100_000, lo_open=True),
    "price_open": Num(0, 1e9, lo_open=True),
    "magic": Num(0, 2**63 - 1, integer=True),
    "sl": Num(0, 1e9),
    "tp": Num(0, 1e9),
}
_POSITION_KEYS = ("symbol", "type", "volume", "price_open", "magic", "comment", "sl", "tp")
_WINDOW_KEYS = ("symbol", "from", "to")
_HHMM = re.compile(r"(?:[01]?\d|2[0-3]):[0-5]\d|24:00")


def _sim_symbol(key: str, value: Any, *, star: bool = False) -> None:
    """A name from the simulator's own symbol table (``"*"`` too where it means every symbol).

    Checked here, not by the simulator, because there an unknown symbol is a KeyError at start-up."""
    from fxnb.broker.sim.symbols import SPECS  # lazy: loading a config must not load the simulator

    if star and value == "*":
        return
    if not isinstance(value, str) or value not in SPECS:
        every = '"*" (every symbol) or ' if star else ""
        raise ConfigError(f"{key}: {value!r} is not a simulator symbol (use {every}one of {', '.join(SPECS)})")


def _entries(key: str, value: Any, what: str) -> Iterator[tuple[str, Any]]:
    """``(key[i], entry)`` for a list setting (None: no entries); anything but a list is a ConfigError."""
    if value is None:
        return
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list of {what}, got {type_name(value)}")
    for i, entry in enumerate(value):
        yield f"{key}[{i}]", entry


def _check_sim_positions(value: Any) -> None:
    """``broker.sim.positions.list``: the simulator opens these as given, so a typo must stop the start."""
    from fxnb.broker.sim.requests import COMMENT_MAX, valid_comment  # lazy, as in _sim_symbol

    for where, item in _entries("broker.sim.positions.list", value, "positions"):
        if not isinstance(item, Mapping) or "symbol" not in item or "volume" not in item:
            raise ConfigError(f"{where}: expected an object with at least symbol and volume, got {item!r}")
        for k in item:
            if k not in _POSITION_KEYS:
                raise ConfigError(f"{where}.{k}: unknown key (allowed: {', '.join(_POSITION_KEYS)})")
        _sim_symbol(f"{where}.symbol", item["symbol"])
        side = item.get("type", "buy")
        if side not in ("buy", "sell", 0, 1) or isinstance(side, bool):
            raise ConfigError(f"{where}.type: expected \"buy\" or \"sell\", got {side!r}")
        for k, spec in _POSITION_NUMBERS.items():
            if k in item and not (k == "price_open" and item[k] is None):  # a null price_open: at the market
                check_value(f"{where}.{k}", spec, item[k])
        comment = item.get("comment", "")
        if not isinstance(comment, str) or not valid_comment(comment):
            raise ConfigError(f"{where}.comment: expected printable ASCII of at most {COMMENT_MAX} characters, "
                              f"got {comment!r}")


def _check_market_closed(value: Any) -> None:
    """``broker.sim.faults.market_closed``: symbol names, or daily windows of server time."""
    for where, entry in _entries("broker.sim.faults.market_closed", value, "symbols"):
        if isinstance(entry, str):
            _sim_symbol(where, entry, star=True)
            continue
        if not isinstance(entry, Mapping):
            raise ConfigError(f'{where}: expected a symbol name ("*" = every symbol) or an object '
                              f'{{"symbol": ..., "from": "HH:MM", "to": "HH:MM"}}, got {type_name(entry)} {entry!r}')
        for k in entry:
            if k not in _WINDOW_KEYS:
                raise ConfigError(f"{where}.{k}: unknown key (allowed: {', '.join(_WINDOW_KEYS)})")
        _sim_symbol(f"{where}.symbol", entry.get("symbol", "*"), star=True)
        if ("from" in entry) != ("to" in entry):
            raise ConfigError(f"{where}: give both from and to (a daily window), or neither (closed all day)")
        for k in ("from", "to"):
            if k in entry and not (isinstance(entry[k], str) and _HHMM.fullmatch(entry[k])):
                raise ConfigError(f"{where}.{k}: expected a time \"HH:MM\" (server time), got {entry[k]!r}")


def default_config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or "config.json")


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read, validate and resolve ``path`` (default: ``$FXNB_CONFIG`` or ``./config.json``)."""
    p = Path(path) if path is not None else default_config_path()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found (create one with `fxnb init DIR`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config ({exc})") from None
    try:
        given = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    return config_from_mapping(given, path=p)


def config_from_mapping(given: Any, *, path: Path) -> Config:
    """Validate an already-parsed config (tests and ``fxnb init`` use this)."""
    data = _merge("", SCHEMA, DEFAULTS, given)
    warnings = _cross_checks(data)
    alerts = AlertSettings.from_mapping(data["alerts"])
    warnings += list(alerts.warnings)
    base = path.resolve().parent
    pm, cm, br, pa, ht, st = (data[k] for k in ("profit_monitor", "commands", "broker", "paths", "http", "storage"))
    return Config(
        path=path.resolve(),
        base_dir=base,
        profit_monitor=ProfitMonitorConfig(**pm),
        commands=CommandsConfig(**cm),
        broker=BrokerConfig(
            kind=br["kind"], deviation=br["deviation"], magic=br["magic"], comment=br["comment"],
            max_retries=br["max_retries"], mt5=Mt5Config(**br["mt5"]), mt5linux=Mt5LinuxConfig(**br["mt5linux"]),
            sim=given.get("broker", {}).get("sim", {}) if isinstance(given.get("broker"), Mapping) else {},
        ),
        paths=PathsConfig(**{k: (base / v) for k, v in pa.items()}),
        http=HttpConfig(**ht),
        storage=StorageConfig(**st),
        alerts=alerts,
        guards=GuardSettings.from_mapping(data["guards"]),
        raw=data,
        warnings=tuple(warnings),
    )
