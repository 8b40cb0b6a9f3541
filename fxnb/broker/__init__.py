"""The broker layer: one adapter over anything shaped like the MetaTrader5 module.

``make_broker(cfg)`` picks what the adapter talks to, once, from
``cfg.broker.kind``:

* ``sim`` (default): the simulated terminal in ``fxnb.broker.sim``; no credentials.
* ``mt5``: the official ``MetaTrader5`` package (Windows only), imported here,
  lazily, and nowhere else.
* ``mt5linux``: an mt5linux server (RPyC classic) that runs the real package
  under Wine, or ``python -m fxnb.broker.serve`` around the simulator; reached
  through ``fxnb.broker.remote.RemoteTerminal`` (see there why not through the
  mt5linux client class).

Nothing else in fxnb knows which one it has.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from fxnb.broker.adapter import AdapterSettings, Broker, Credentials, ModifyResult
from fxnb.errors import ConfigError

__all__ = ["AdapterSettings", "Broker", "Credentials", "ModifyResult", "make_broker", "settings_from_config"]

KINDS = ("sim", "mt5", "mt5linux")


class _Mt5Section(Protocol):
    path: str | None
    timeout_ms: int
    portable: bool


class _Mt5LinuxSection(Protocol):
    host: str
    port: int


class _BrokerSection(Protocol):
    kind: str
    deviation: int
    magic: int
    comment: str
    max_retries: int
    mt5: _Mt5Section
    mt5linux: _Mt5LinuxSection
    sim: Mapping[str, Any]


class BrokerConfigLike(Protocol):
    """What ``make_broker`` reads from ``fxnb.config.Config`` (any object with these attributes will do)."""

    base_dir: Path
    broker: _BrokerSection

    @property
    def credentials(self) -> Credentials: ...


def settings_from_config(cfg: BrokerConfigLike) -> AdapterSettings:
    b = cfg.broker
    return AdapterSettings(
        deviation=int(b.deviation),
        magic=int(b.magic),
        comment=str(b.comment),
        max_retries=int(b.max_retries),
        path=b.mt5.path,
        timeout_ms=int(b.mt5.timeout_ms),
        portable=bool(b.mt5.portable),
    )


def _official_module() -> Any:
    try:
        import MetaTrader5  # noqa: PLC0415 - Windows-only; never imported at module import time
    except ImportError as exc:
        raise ConfigError(
            "broker.kind 'mt5': the MetaTrader5 package is only available on Windows; "
            "use broker.kind 'sim' or 'mt5linux'"
        ) from exc
    return MetaTrader5


def _sim_terminal(cfg: BrokerConfigLike) -> Any:
    from fxnb.broker.sim import SimSettings, create_terminal

    return create_terminal(SimSettings.from_mapping(cfg.broker.sim, cfg.base_dir))


def make_broker(cfg: BrokerConfigLike, **overrides: Any) -> Broker:
    """The adapter for ``cfg.broker.kind``, not yet connected (call ``connect()``).

    ``overrides`` go to ``Broker`` (``sleep``, ``clock``... for tests).
    """
    kind = cfg.broker.kind
    settings = settings_from_config(cfg)
    if kind == "sim":
        return Broker(_sim_terminal(cfg), settings=settings, **overrides)
    if kind == "mt5":
        return Broker(_official_module(), settings=settings, credentials=cfg.credentials, **overrides)
    if kind == "mt5linux":
        from fxnb.broker.remote import TRANSPORT_ERRORS, close_client, connect_mt5linux

        host, port = cfg.broker.mt5linux.host, int(cfg.broker.mt5linux.port)
        timeout_s = max(120.0, settings.timeout_ms / 1000 + 60.0)
        overrides.setdefault("transport_errors", TRANSPORT_ERRORS)
        return Broker(
            lambda: connect_mt5linux(host, port, timeout_s=timeout_s),
            settings=settings,
            credentials=cfg.credentials,
            release=close_client,
            **overrides,
        )
    raise ConfigError(f"broker.kind: {kind!r} is not one of {', '.join(KINDS)}")
