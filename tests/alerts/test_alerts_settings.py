"""The ``alerts`` config section and the event-to-alert mapping."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fxnb.alerts import (
    ALERT_KINDS,
    ALERTS_DEFAULTS,
    ALERTS_SCHEMA,
    DEFAULT_EVENTS,
    WEBHOOK_DEFAULTS,
    Alert,
    AlertSettings,
    alert_from_event,
    redact_section,
    redact_url,
)
from fxnb.errors import ConfigError


def one(**hook) -> AlertSettings:
    return AlertSettings.from_mapping({"webhooks": [hook]})


def test_defaults():
    s = AlertSettings.from_mapping({})
    assert s.webhooks == () and not s.enabled and s.disconnected_after_seconds == 30
    assert AlertSettings.from_mapping(None) == s == AlertSettings.from_mapping(ALERTS_DEFAULTS)
    w = one(url_env="HOOK").webhooks[0]
    assert (w.url, w.url_env, w.timeout, w.retries, w.retry_delay, w.headers_env) == (None, "HOOK", 5, 3, 1, None)
    assert w.events == frozenset(DEFAULT_EVENTS) == {
        "command_failed", "guard_warning", "guard_fired", "disconnected", "reconnected", "database_failing",
        "commands_failing"}
    assert set(WEBHOOK_DEFAULTS["events"]) == set(DEFAULT_EVENTS)


def test_full_webhook_and_section():
    s = AlertSettings.from_mapping({
        "disconnected_after_seconds": 90,
        "webhooks": [
            {"url_env": "OPS_HOOK", "events": ["command_failed", "guard_fired", "guard_fired"], "timeout": 2.5,
             "retries": 0, "retry_delay": 0, "headers_env": "OPS_HEADERS"},
            {"url": "https://hooks.example.com/services/T0K3N"},
        ],
    })
    a, b = s.webhooks
    assert a.events == {"command_failed", "guard_fired"} and a.retries == 0 and a.timeout == 2.5
    assert a.where == "alerts.webhooks[0]" and b.url == "https://hooks.example.com/services/T0K3N"
    assert s.disconnected_after_seconds == 90
    assert s.kinds() == frozenset(DEFAULT_EVENTS)
    # a URL written in config.json is accepted, with a warning that never repeats it
    assert len(s.warnings) == 1 and "alerts.webhooks[1].url" in s.warnings[0] and "T0K3N" not in s.warnings[0]
    assert "T0K3N" not in repr(s)


def test_merged_through_the_config_loader_spec():
    from fxnb.config import _merge  # how the lead will plug the section in

    merged = _merge("alerts", ALERTS_SCHEMA, ALERTS_DEFAULTS, {"webhooks": [{"url_env": "H"}]})
    assert merged == {"webhooks": [{"url_env": "H"}], "disconnected_after_seconds": 30}
    assert AlertSettings.from_mapping(merged).webhooks[0].url_env == "H"
    with pytest.raises(ConfigError, match=r"alerts\.disconnected_after_seconds"):
        _merge("alerts", ALERTS_SCHEMA, ALERTS_DEFAULTS, {"disconnected_after_seconds": -1})


@pytest.mark.parametrize(
    ("hook", "match"),
    [
        ({}, r"alerts\.webhooks\[0\]\.url_env: give exactly one of url and url_env \(neither is set\)"),
        ({"url": "https://a.example/x", "url_env": "H"}, r"webhooks\[0\]\.url_env: .*\(both are set\)"),
        ({"url": None, "url_env": None}, r"neither is set"),
        ({"url_env": "H", "urls": "x"}, r"alerts\.webhooks\[0\]\.urls: unknown key"),
        ({"url_env": "H", "timeout": 0}, r"alerts\.webhooks\[0\]\.timeout: 0 is out of range"),
        ({"url_env": "H", "timeout": "5"}, r"alerts\.webhooks\[0\]\.timeout: expected a number"),
        ({"url_env": "H", "retries": 1.5}, r"alerts\.webhooks\[0\]\.retries: expected a whole number"),
        ({"url_env": "H", "retries": -1}, r"alerts\.webhooks\[0\]\.retries: -1 is out of range"),
        ({"url_env": "H", "retry_delay": -0.1}, r"alerts\.webhooks\[0\]\.retry_delay"),
        ({"url_env": "H", "events": "command_failed"}, r"alerts\.webhooks\[0\]\.events: expected a list"),
        ({"url_env": "H", "events": []}, r"alerts\.webhooks\[0\]\.events: empty"),
        ({"url_env": "H", "events": ["command_failed", "guard_fire"]},
         r"alerts\.webhooks\[0\]\.events\[1\]: 'guard_fire' is not an alert kind"),
        ({"url_env": "H", "events": ["connected"]}, r"'connected' is not an alert kind"),
        ({"url_env": "1BAD"}, r"alerts\.webhooks\[0\]\.url_env: expected the name of an environment variable"),
        ({"url_env": "H", "headers_env": "A-B"}, r"alerts\.webhooks\[0\]\.headers_env: expected the name"),
        ({"url": 5}, r"alerts\.webhooks\[0\]\.url: expected a non-empty string"),
    ],
)
def test_webhook_errors_name_the_key(hook, match):
    with pytest.raises(ConfigError, match=match):
        one(**hook)


def test_a_url_pasted_into_url_env_is_not_echoed():
    with pytest.raises(ConfigError) as err:
        one(url_env="https://hooks.example.com/services/T0K3N")
    assert "T0K3N" not in str(err.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ftp://files.example/secret-path", "'ftp'"),
        ("file:///etc/secret-path", "'file'"),
        ("javascript:alert(1)//secret-path", "'javascript'"),
        ("hooks.example.com/secret-path", "none"),
    ],
)
def test_only_http_and_https_urls(url, shown):
    with pytest.raises(ConfigError, match=r"alerts\.webhooks\[0\]\.url: only http:// and https://") as err:
        one(url=url)
    assert f"(scheme: {shown})" in str(err.value) and "secret-path" not in str(err.value)


@pytest.mark.parametrize("url", ["https:///no-host/secret-path", "http://h.example:99999/secret-path",
                                 "https://h.example/secret path"])
def test_malformed_urls_are_refused_without_the_path(url):
    with pytest.raises(ConfigError, match=r"alerts\.webhooks\[0\]\.url: ") as err:
        one(url=url)
    assert "secret-path" not in str(err.value)


def test_http_and_https_are_accepted_case_insensitively():
    assert one(url="HTTPS://h.example/x").webhooks[0].url == "HTTPS://h.example/x"
    assert one(url=" http://127.0.0.1:8080/x ").webhooks[0].url == "http://127.0.0.1:8080/x"


@pytest.mark.parametrize(
    ("given", "match"),
    [
        ([], r"alerts: expected a JSON object"),
        ({"webhook": []}, r"alerts\.webhook: unknown key"),
        ({"webhooks": {"url": "x"}}, r"alerts\.webhooks: expected a list"),
        ({"webhooks": ["https://h.example/x"]}, r"alerts\.webhooks\[0\]: expected an object"),
        ({"webhooks": [{"url_env": "H"}, {"url_env": "H", "retries": 99}]}, r"alerts\.webhooks\[1\]\.retries"),
        ({"disconnected_after_seconds": "30"}, r"alerts\.disconnected_after_seconds: expected a number"),
        ({"webhooks": [{"url_env": "H"}] * 21}, r"alerts\.webhooks: at most 20"),
    ],
)
def test_section_errors(given, match):
    with pytest.raises(ConfigError, match=match):
        AlertSettings.from_mapping(given)


def test_redaction():
    assert redact_url("https://hooks.slack.com/services/T0/B1/XYZ") == "https://hooks.slack.com/***"
    assert redact_url("http://user:pw@127.0.0.1:8080/?token=1") == "http://127.0.0.1:8080/***"
    assert redact_url("https://h.example") == "https://h.example"
    assert redact_url("https://[::1]:9/x") == "https://[::1]:9/***"
    assert redact_url("not a url") == "<invalid URL>"
    section = {"webhooks": [{"url": "https://h.example/T0K3N"}, {"url_env": "H"}], "disconnected_after_seconds": 30}
    assert redact_section(section) == {"webhooks": [{"url": "https://h.example/***"}, {"url_env": "H"}],
                                       "disconnected_after_seconds": 30}
    assert section["webhooks"][0]["url"] == "https://h.example/T0K3N"  # not modified in place


def test_alert_from_event():
    a = alert_from_event("error", "command_failed", "command c1 failed", {"command_id": "c1"},
                         at="2026-01-01T00:00:00.500Z")
    assert a == Alert("command_failed", "error", "command c1 failed", {"command_id": "c1"}, 1_767_225_600.5)
    assert alert_from_event("warning", "guard_warning", "80 % of the daily loss limit").data == {}
    assert alert_from_event("info", "rule_close", "x", at=12).at == 12.0
    assert alert_from_event("info", "x", "y", at=datetime(2026, 1, 1, tzinfo=UTC)).at == 1_767_225_600.0
    assert alert_from_event("info", "x", "y", at=datetime(2026, 1, 1)).at == 1_767_225_600.0  # naive = UTC
    assert alert_from_event("fatal", "guard_fired", "z").level == "error"
    # the store's connect/disconnect events are DisconnectWatch's business (only lasting outages alert)
    assert alert_from_event("error", "disconnected", "terminal unreachable: boom") is None
    assert alert_from_event("info", "connected", "terminal connected (build 1)") is None
    assert {"command_failed", "guard_warning", "guard_fired", "disconnected", "reconnected"} <= set(ALERT_KINDS)
