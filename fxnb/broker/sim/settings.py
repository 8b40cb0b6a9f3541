"""Settings of the simulated terminal: the ``broker.sim`` section of config.json.

Defaults equal config.json's. Validation of the config file lives elsewhere;
``from_mapping`` only converts what the constructor needs (types, the state file
path relative to the config's directory) and fills in missing keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FaultSettings:
    """Injected faults. Every random choice comes from an RNG seeded with ``SimSettings.seed``.

    ``market_closed`` entries are symbol names (``"*"`` = every symbol) or
    mappings ``{"symbol": "EURUSD", "from": "HH:MM", "to": "HH:MM"}``: closed
    daily in that window of *server* time (wrapping midnight when from > to).

    The ambiguous outcomes an adapter must survive (contract §3.1/§4.5):
    ``lost_reply_rate``: the request executes but ``order_send`` returns None with
    an IPC error (-10005/-10002/-10001), so a blind resend would trade twice.
    ``error_rate`` / ``timeout_rate``: retcode 10011 / 10012 instead of executing,
    or after executing when ``ambiguous_executes``. ``partial_fill_rate``: an IOC
    open or close fills only part of the volume (10010). ``visibility_delay_ms``:
    positions and history reads show the pre-trade state that long after an
    execution. ``history_delay_ms``: history reads are empty that long after login.
    """

    requote_rate: float = 0.0
    reject_rate: float = 0.0
    disconnect_rate: float = 0.0
    disconnect_seconds: float = 5.0
    market_closed: tuple[str | Mapping[str, str], ...] = ()
    autotrading_disabled: bool = False
    latency_ms: float = 0.0
    lost_reply_rate: float = 0.0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    ambiguous_executes: bool = False
    partial_fill_rate: float = 0.0
    visibility_delay_ms: float = 0.0
    history_delay_ms: float = 0.0

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any]) -> FaultSettings:
        return cls(
            requote_rate=float(section.get("requote_rate", 0.0)),
            reject_rate=float(section.get("reject_rate", 0.0)),
            disconnect_rate=float(section.get("disconnect_rate", 0.0)),
            disconnect_seconds=float(section.get("disconnect_seconds", 5.0)),
            market_closed=tuple(
                e if isinstance(e, str) else dict(e) for e in section.get("market_closed", ()) or ()
            ),
            autotrading_disabled=bool(section.get("autotrading_disabled", False)),
            latency_ms=float(section.get("latency_ms", 0.0)),
            lost_reply_rate=float(section.get("lost_reply_rate", 0.0)),
            error_rate=float(section.get("error_rate", 0.0)),
            timeout_rate=float(section.get("timeout_rate", 0.0)),
            ambiguous_executes=bool(section.get("ambiguous_executes", False)),
            partial_fill_rate=float(section.get("partial_fill_rate", 0.0)),
            visibility_delay_ms=float(section.get("visibility_delay_ms", 0.0)),
            history_delay_ms=float(section.get("history_delay_ms", 0.0)),
        )


@dataclass(frozen=True)
class TraderSettings:
    """The optional background trader that opens positions now and then (like a human on the GUI)."""

    enabled: bool = False
    interval: float = 20.0
    max_positions: int = 30

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any]) -> TraderSettings:
        return cls(
            enabled=bool(section.get("enabled", False)),
            interval=float(section.get("interval", 20.0)),
            max_positions=int(section.get("max_positions", 30)),
        )


@dataclass(frozen=True)
class SimSettings:
    """Everything the simulated terminal needs.

    ``positions_count`` / ``positions_list`` are config's ``positions.count`` /
    ``positions.list``; they seed the book only when the state file is new.
    ``commission_per_lot``, ``login``, ``server`` are optional extra keys (not in
    config.json): commission charged on every deal, and the account identity.
    ``price_path`` is a scripted price file (see ``script``), relative to the
    config's directory; None keeps the random walk for every symbol.
    """

    state_file: Path = Path("sim_terminal.db")
    seed: int = 42
    volatility: float = 1.0
    margin_mode: str = "hedging"
    balance: float = 10000.0
    currency: str = "USD"
    leverage: int = 100
    server_offset_hours: float = 2.0
    positions_count: int = 12
    positions_list: tuple[Mapping[str, Any], ...] = ()
    trader: TraderSettings = field(default_factory=TraderSettings)
    faults: FaultSettings = field(default_factory=FaultSettings)
    commission_per_lot: float = 0.0
    login: int = 5010042
    server: str = "FxnbSim-Demo"
    price_path: Path | None = None

    @property
    def hedging(self) -> bool:
        return self.margin_mode != "netting"

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any], base_dir: Path) -> SimSettings:
        """Build from config.json's ``broker.sim`` section; ``state_file`` and ``price_path`` are
        relative to ``base_dir``."""
        positions = section.get("positions", {}) or {}
        price_path = section.get("price_path")
        return cls(
            state_file=Path(base_dir) / str(section.get("state_file", "sim_terminal.db")),
            seed=int(section.get("seed", 42)),
            volatility=float(section.get("volatility", 1.0)),
            margin_mode=str(section.get("margin_mode", "hedging")),
            balance=float(section.get("balance", 10000.0)),
            currency=str(section.get("currency", "USD")),
            leverage=int(section.get("leverage", 100)),
            server_offset_hours=float(section.get("server_offset_hours", 2)),
            positions_count=int(positions.get("count", 12)),
            positions_list=tuple(dict(p) for p in positions.get("list", ()) or ()),
            trader=TraderSettings.from_mapping(section.get("trader", {}) or {}),
            faults=FaultSettings.from_mapping(section.get("faults", {}) or {}),
            commission_per_lot=float(section.get("commission_per_lot", 0.0)),
            login=int(section.get("login", 5010042)),
            server=str(section.get("server", "FxnbSim-Demo")),
            price_path=Path(base_dir) / str(price_path) if price_path else None,
        )
