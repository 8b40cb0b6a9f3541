"""The ``"alerts"`` config section: spec, defaults and the validated settings.

``ALERTS_SCHEMA``/``ALERTS_DEFAULTS`` plug into the config loader like any other
section. ``webhooks`` is a list, which the spec language does not describe, so it is
``Free()`` there and :meth:`AlertSettings.from_mapping` validates each entry, naming
the offending key as ``alerts.webhooks[i].<key>``.

Webhook URLs usually embed a token (Slack, Discord, ntfy...), so ``url_env`` (the name of
an environment variable holding the URL) is preferred to ``url``, and URLs are only ever
shown through :func:`redact_url`. Environment variables are read by the dispatcher, not
here: loading config must not need the secrets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fxnb.alerts.model import ALERT_KINDS, DEFAULT_EVENTS
from fxnb.configspec import Free, Num, Str, check_value, type_name
from fxnb.errors import ConfigError

SECTION = "alerts"

ALERTS_SCHEMA: dict[str, Any] = {
    "webhooks": Free(),  # validated by AlertSettings.from_mapping
    "disconnected_after_seconds": Num(0, 86400),
}
ALERTS_DEFAULTS: dict[str, Any] = {
    "webhooks": [],
    "disconnected_after_seconds": 30,
}

WEBHOOK_SCHEMA: dict[str, Any] = {
    "url": Str(nullable=True, max_len=2048),
    "url_env": Str(nullable=True, max_len=128),
    "events": Free(),  # a list of ALERT_KINDS, checked below
    "timeout": Num(0, 300, lo_open=True),
    "retries": Num(0, 10, integer=True),
    "retry_delay": Num(0, 300),
    "headers_env": Str(nullable=True, max_len=128),
}
WEBHOOK_DEFAULTS: dict[str, Any] = {
    "url": None,
    "url_env": None,
    "events": list(DEFAULT_EVENTS),
    "timeout": 5,
    "retries": 3,
    "retry_delay": 1,
    "headers_env": None,
}

MAX_WEBHOOKS = 20
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def redact_url(url: str) -> str:
    """``https://hooks.example.com/***``: scheme and host only; user info, path and query hidden."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    if not parts.scheme or not host:
        return "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    hidden = "/***" if (parts.path not in ("", "/") or parts.query or parts.fragment or parts.username) else ""
    return f"{parts.scheme}://{host}{'' if port is None else f':{port}'}{hidden}"


def check_url(where: str, url: str) -> str:
    """``url`` stripped, or ConfigError naming ``where``; the message never shows the path or query."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ConfigError(f"{where}: not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        shown = f"{scheme!r}" if scheme else "none"
        raise ConfigError(f"{where}: only http:// and https:// webhook URLs are allowed (scheme: {shown})")
    if not parts.hostname:
        raise ConfigError(f"{where}: the URL has no host ({redact_url(url)})")
    if any(c in url for c in "\r\n\t "):
        raise ConfigError(f"{where}: the URL contains whitespace ({redact_url(url)})")
    return url


@dataclass(frozen=True)
class WebhookSettings:
    """One validated webhook. ``url`` is set when given in config, else ``url_env`` names the variable."""

    index: int
    url: str | None
    url_env: str | None
    events: frozenset[str]
    timeout: float
    retries: int
    retry_delay: float
    headers_env: str | None

    @property
    def where(self) -> str:
        return f"{SECTION}.webhooks[{self.index}]"

    def wants(self, kind: str) -> bool:
        return kind in self.events

    def __repr__(self) -> str:  # never show the URL: it is a secret
        url = None if self.url is None else redact_url(self.url)
        return (f"WebhookSettings(index={self.index}, url={url!r}, url_env={self.url_env!r}, "
                f"events={sorted(self.events)!r}, timeout={self.timeout!r}, retries={self.retries!r}, "
                f"retry_delay={self.retry_delay!r}, headers_env={self.headers_env!r})")

    @classmethod
    def from_mapping(cls, index: int, given: Any) -> WebhookSettings:
        where = f"{SECTION}.webhooks[{index}]"
        if not isinstance(given, Mapping):
            raise ConfigError(f"{where}: expected an object with url or url_env, got {type_name(given)}")
        unknown = sorted(set(given) - set(WEBHOOK_SCHEMA))
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: unknown key (allowed: {', '.join(sorted(WEBHOOK_SCHEMA))})")
        v = {k: check_value(f"{where}.{k}", spec, given[k]) if k in given else WEBHOOK_DEFAULTS[k]
             for k, spec in WEBHOOK_SCHEMA.items()}
        url, url_env = v["url"], v["url_env"]
        if (url is None) == (url_env is None):
            raise ConfigError(
                f"{where}.url_env: give exactly one of url and url_env "
                f"({'both are set' if url is not None else 'neither is set'}); webhook URLs often embed a token, "
                "so prefer url_env, the name of an environment variable holding the URL"
            )
        if url is not None:
            url = check_url(f"{where}.url", url)
        for key in ("url_env", "headers_env"):
            if v[key] is not None and not _ENV_NAME.match(v[key]):
                # the value itself is not echoed: it may be the secret pasted in the wrong place
                raise ConfigError(f"{where}.{key}: expected the name of an environment variable "
                                  "(letters, digits and underscores, not starting with a digit)")
        return cls(
            index=index, url=url, url_env=url_env, events=_check_events(f"{where}.events", v["events"]),
            timeout=float(v["timeout"]), retries=int(v["retries"]), retry_delay=float(v["retry_delay"]),
            headers_env=v["headers_env"],
        )


def _check_events(where: str, events: Any) -> frozenset[str]:
    if not isinstance(events, list | tuple):
        raise ConfigError(f"{where}: expected a list of event kinds, got {type_name(events)}")
    if not events:
        raise ConfigError(f"{where}: empty; list at least one of {', '.join(ALERT_KINDS)} (or remove the webhook)")
    for i, kind in enumerate(events):
        if kind not in ALERT_KINDS:
            raise ConfigError(f"{where}[{i}]: {kind!r} is not an alert kind (one of {', '.join(ALERT_KINDS)})")
    return frozenset(events)


@dataclass(frozen=True)
class AlertSettings:
    """The validated ``alerts`` section. ``warnings`` are questionable but accepted choices."""

    webhooks: tuple[WebhookSettings, ...] = ()
    disconnected_after_seconds: float = ALERTS_DEFAULTS["disconnected_after_seconds"]
    warnings: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.webhooks)

    def kinds(self) -> frozenset[str]:
        """Every kind at least one webhook wants."""
        return frozenset().union(*(w.events for w in self.webhooks))

    @classmethod
    def from_mapping(cls, given: Any = None) -> AlertSettings:
        """Validate the ``alerts`` section (raw from config.json, or already merged with defaults)."""
        if given is None:
            given = {}
        if not isinstance(given, Mapping):
            raise ConfigError(f"{SECTION}: expected a JSON object, got {type_name(given)}")
        unknown = sorted(set(given) - set(ALERTS_SCHEMA))
        if unknown:
            raise ConfigError(f"{SECTION}.{unknown[0]}: unknown key (allowed: {', '.join(sorted(ALERTS_SCHEMA))})")
        after = check_value(f"{SECTION}.disconnected_after_seconds", ALERTS_SCHEMA["disconnected_after_seconds"],
                            given.get("disconnected_after_seconds", ALERTS_DEFAULTS["disconnected_after_seconds"]))
        raw_hooks = given.get("webhooks")
        if raw_hooks is None:
            raw_hooks = []
        if not isinstance(raw_hooks, list | tuple):
            raise ConfigError(f"{SECTION}.webhooks: expected a list of webhooks, got {type_name(raw_hooks)}")
        if len(raw_hooks) > MAX_WEBHOOKS:
            raise ConfigError(f"{SECTION}.webhooks: at most {MAX_WEBHOOKS} webhooks, got {len(raw_hooks)}")
        hooks = tuple(WebhookSettings.from_mapping(i, h) for i, h in enumerate(raw_hooks))
        warnings = tuple(
            f"{w.where}.url: the webhook URL is written in the config file; webhook URLs usually embed a token, "
            "so prefer url_env (the name of an environment variable holding it)"
            for w in hooks if w.url is not None
        )
        return cls(webhooks=hooks, disconnected_after_seconds=float(after), warnings=warnings)


def redact_section(section: Any) -> Any:
    """The ``alerts`` section safe to display: every ``url`` redacted, everything else as is."""
    if not isinstance(section, Mapping):
        return section
    out = dict(section)
    hooks = out.get("webhooks")
    if isinstance(hooks, list):
        out["webhooks"] = [
            {**h, "url": redact_url(h["url"])} if isinstance(h, Mapping) and isinstance(h.get("url"), str) else h
            for h in hooks
        ]
    return out
