"""WebhookDispatcher against a real HTTP server on 127.0.0.1 (see conftest.py)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import pytest

from fxnb import __version__
from fxnb.alerts import Alert, AlertSettings, WebhookDispatcher, alert_from_event
from fxnb.errors import ConfigError

SECRET_PATH = "/hooks/T0PSECRET-path"
SECRET_QUERY = "token=q-secret-123"


def settings(*hooks: dict) -> AlertSettings:
    return AlertSettings.from_mapping({"webhooks": list(hooks)})


def hook(url: str, **kw) -> dict:
    return {"url": url, "timeout": 1, "retries": 0, "retry_delay": 0.01, **kw}


class Sleeps:
    """An injected sleep that records the delays and does not wait."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class LogEvent(logging.Handler):
    """Set when ``fxnb.alerts`` logs a message starting with ``prefix``: a way to await the thread's state."""

    def __init__(self, prefix: str) -> None:
        super().__init__(logging.DEBUG)
        self.prefix = prefix
        self.event = threading.Event()
        self.logger = logging.getLogger("fxnb.alerts")
        self.logger.addHandler(self)
        self._old_level = self.logger.level
        self.logger.setLevel(logging.DEBUG)

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(self.prefix):
            self.event.set()

    def wait(self, timeout: float = 3.0) -> None:
        try:
            assert self.event.wait(timeout), f"no {self.prefix} log line"
        finally:
            self.logger.removeHandler(self)
            self.logger.setLevel(self._old_level)


def failed_alert(i: int = 0) -> Alert:
    return alert_from_event("error", "command_failed", f"command c{i} (close_all) failed: boom",
                            {"command_id": f"c{i}"}, at=1_767_225_600.5)


def test_delivers_json_with_headers(hooks):
    env = {"HOOK_URL": hooks.url(f"{SECRET_PATH}?{SECRET_QUERY}"),
           "HOOK_HEADERS": json.dumps({"Authorization": "Bearer abc", "X-Team": "ops"})}
    d = WebhookDispatcher(settings({"url_env": "HOOK_URL", "headers_env": "HOOK_HEADERS"}), env=env,
                          account=5551234, hostname="box-1")
    d.start()
    d.submit(failed_alert())
    (req,) = hooks.wait_for(1)
    assert d.stop(2)
    assert req.path == f"{SECRET_PATH}?{SECRET_QUERY}"
    assert req.json == {
        "event": "command_failed", "level": "error", "message": "command c0 (close_all) failed: boom",
        "data": {"command_id": "c0"}, "at": "2026-01-01T00:00:00.500Z", "source": "fxnb",
        "account": 5551234, "host": "box-1",
    }
    assert req.headers["content-type"] == "application/json"
    assert req.headers["user-agent"] == f"fxnb/{__version__}"
    assert req.headers["authorization"] == "Bearer abc"
    assert req.headers["x-team"] == "ops"
    assert (d.sent, d.failed, d.dropped, d.retried) == (1, 0, 0, 0)
    stats = d.stats()
    assert stats["sent"] == 1 and stats["queued"] == 0 and stats["last_error"] is None


def test_alert_without_time_is_stamped_by_clock_and_nan_is_still_json(hooks):
    d = WebhookDispatcher(settings(hook(hooks.url("/h"), events=["guard_warning"])), clock=lambda: 0.25)
    d.set_account(42)
    d.start()
    d.submit(Alert("guard_warning", "warning", "daily loss at 80 %", {"ratio": float("nan"), "tickets": (1, 2)}))
    assert d.stop(2)
    body = hooks.on("/h")[0].json
    assert body["at"] == "1970-01-01T00:00:00.250Z"
    assert body["account"] == 42
    assert body["data"] == {"ratio": "nan", "tickets": [1, 2]}


def test_each_webhook_gets_only_its_events(hooks):
    d = WebhookDispatcher(settings(
        hook(hooks.url("/ops"), events=["command_failed", "guard_fired"]),
        hook(hooks.url("/pager"), events=["guard_fired", "disconnected"]),
    ))
    d.start()
    d.submit(failed_alert())
    d.submit(Alert("guard_fired", "error", "basket loss limit hit", at=1.0))
    d.submit(Alert("rule_close", "info", "nobody subscribed", at=2.0))
    d.submit(Alert("disconnected", "error", "terminal gone", at=3.0))
    assert d.stop(3)
    assert [r.json["event"] for r in hooks.on("/ops")] == ["command_failed", "guard_fired"]
    assert [r.json["event"] for r in hooks.on("/pager")] == ["guard_fired", "disconnected"]
    assert d.sent == 4 and d.dropped == 0  # rule_close is not even queued


def test_two_webhooks_both_receive_the_same_alert(hooks):
    d = WebhookDispatcher(settings(hook(hooks.url("/a")), hook(hooks.url("/b"))))
    d.start()
    d.submit(failed_alert())
    hooks.wait_for(2)
    assert d.stop(2)
    a, b = hooks.on("/a"), hooks.on("/b")
    assert len(a) == len(b) == 1 and a[0].body == b[0].body
    assert d.sent == 2


def test_retries_5xx_with_doubling_delay_then_succeeds(hooks):
    hooks.script("/flaky", 500, 503)
    sleeps = Sleeps()
    d = WebhookDispatcher(settings(hook(hooks.url("/flaky"), retries=3, retry_delay=0.5)), sleep=sleeps)
    d.start()
    d.submit(failed_alert())
    hooks.wait_for(3)
    assert d.stop(2)
    assert len(hooks.on("/flaky")) == 3
    assert sleeps.delays == [0.5, 1.0]
    assert (d.sent, d.failed, d.retried) == (1, 0, 2)


def test_429_honours_retry_after_and_gives_up_after_the_retries(hooks):
    hooks.script("/busy", 429, 429, 429, headers={"Retry-After": "3"})
    sleeps = Sleeps()
    d = WebhookDispatcher(settings(hook(hooks.url("/busy"), retries=2, retry_delay=1)), sleep=sleeps)
    d.start()
    d.submit(failed_alert())
    hooks.wait_for(3)  # stop() sooner would abandon a 3 s backoff that ends after its deadline
    assert d.stop(2)
    assert len(hooks.on("/busy")) == 3
    assert sleeps.delays == [3.0, 3.0]  # max(own backoff 1, 2; Retry-After 3)
    assert (d.sent, d.failed, d.retried) == (0, 1, 2)
    assert "HTTP 429" in d.stats()["last_error"]


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_other_4xx_is_not_retried(hooks, status):
    hooks.script("/bad", status)
    sleeps = Sleeps()
    d = WebhookDispatcher(settings(hook(hooks.url("/bad"), retries=3)), sleep=sleeps)
    d.start()
    d.submit(failed_alert())
    assert d.stop(2)
    assert len(hooks.on("/bad")) == 1
    assert sleeps.delays == []
    assert (d.sent, d.failed, d.retried) == (0, 1, 0)
    assert f"HTTP {status}" in d.stats()["last_error"]


def test_redirect_is_not_followed(hooks):
    hooks.script("/moved", 302, headers={"Location": hooks.url("/elsewhere")})
    d = WebhookDispatcher(settings(hook(hooks.url("/moved"), retries=2)), sleep=Sleeps())
    d.start()
    d.submit(failed_alert())
    assert d.stop(2)
    assert [r.path for r in hooks.received] == ["/moved"]
    assert d.failed == 1 and "redirect" in d.stats()["last_error"]


def test_timeout_on_a_slow_server_is_retried_then_fails(hooks):
    hooks.hold("/slow", 5.0)
    d = WebhookDispatcher(settings(hook(hooks.url("/slow"), timeout=0.2, retries=1)), sleep=Sleeps())
    d.start()
    t0 = time.monotonic()
    d.submit(failed_alert())
    assert d.stop(3)
    elapsed = time.monotonic() - t0
    assert len(hooks.on("/slow")) == 2
    assert (d.sent, d.failed, d.retried) == (0, 1, 1)
    assert "timed out" in d.stats()["last_error"]
    assert elapsed < 1.5


def test_connection_refused_is_retried(hooks):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    sleeps = Sleeps()
    d = WebhookDispatcher(settings(hook(f"http://127.0.0.1:{port}/x", retries=2)), sleep=sleeps)
    d.start()
    d.submit(failed_alert())
    assert d.stop(3)
    assert (d.sent, d.failed, d.retried) == (0, 1, 2)
    assert len(sleeps.delays) == 2
    assert "cannot connect" in d.stats()["last_error"]


def test_full_queue_drops_the_oldest(hooks):
    d = WebhookDispatcher(settings(hook(hooks.url("/q"))), max_queue=3)
    for i in range(5):  # not started yet: everything waits in the queue
        d.submit(failed_alert(i))
    assert d.dropped == 2 and d.queued == 3
    d.start()
    assert d.stop(3)
    assert [r.json["data"]["command_id"] for r in hooks.on("/q")] == ["c2", "c3", "c4"]
    assert (d.sent, d.dropped) == (3, 2)


def test_submit_does_not_block_while_a_delivery_hangs(hooks):
    hooks.hold("/slow", 5.0)
    d = WebhookDispatcher(settings(hook(hooks.url("/slow"), timeout=2)), max_queue=2)
    d.start()
    d.submit(failed_alert(0))
    hooks.wait_for(1)  # the thread is now stuck in the request
    t0 = time.monotonic()
    for i in range(1, 50):
        d.submit(failed_alert(i))
    assert time.monotonic() - t0 < 0.2
    assert d.queued == 2 and d.dropped == 47
    hooks.release.set()
    assert d.stop(3)
    assert [r.json["data"]["command_id"] for r in hooks.on("/slow")] == ["c0", "c48", "c49"]


def test_stop_drains_the_queue(hooks):
    d = WebhookDispatcher(settings(hook(hooks.url("/drain"))))
    for i in range(20):
        d.submit(failed_alert(i))
    d.start()
    assert d.stop(5)
    assert len(hooks.on("/drain")) == 20
    assert (d.sent, d.failed, d.dropped) == (20, 0, 0)
    assert d.stats()["running"] is False
    d.submit(failed_alert(99))  # after stop: counted, never raises
    assert d.dropped == 1


def test_stop_cuts_a_long_backoff_short(hooks):
    hooks.script("/down", *[500] * 10)
    d = WebhookDispatcher(settings(hook(hooks.url("/down"), retries=5, retry_delay=30)))  # real, interruptible wait
    d.start()
    waiting = LogEvent("alert_retry")
    d.submit(failed_alert(0))
    d.submit(failed_alert(1))
    waiting.wait()  # the thread has logged its retry and is now in the 30 s wait
    t0 = time.monotonic()
    assert d.stop(0)  # the 30 s wait is interrupted and, past the deadline, abandoned
    assert time.monotonic() - t0 < 1.0
    assert len(hooks.on("/down")) == 1
    assert (d.sent, d.failed, d.retried) == (0, 1, 1)
    assert d.dropped == 1  # the second alert never got its turn
    assert "shutting down" in d.stats()["last_error"]


def test_url_from_env_and_missing_env_is_a_config_error(hooks):
    s = settings({"url_env": "FXNB_TEST_HOOK"})
    d = WebhookDispatcher(s, env={"FXNB_TEST_HOOK": hooks.url("/from-env")})
    d.start()
    d.submit(failed_alert())
    assert d.stop(2)
    assert len(hooks.on("/from-env")) == 1
    with pytest.raises(ConfigError, match=r"alerts\.webhooks\[0\]\.url_env: environment variable FXNB_TEST_HOOK"):
        WebhookDispatcher(s, env={})


@pytest.mark.parametrize("value", ["ftp://h.example/hooks/secret", "file:///etc/hooks/secret", "h.example/secret"])
def test_url_env_with_a_non_http_scheme_is_refused_without_echoing_it(value):
    with pytest.raises(ConfigError, match=r"alerts\.webhooks\[0\]\.url_env.*only http:// and https://") as err:
        WebhookDispatcher(settings({"url_env": "HOOK"}), env={"HOOK": value})
    assert "secret" not in str(err.value)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (None, "not set or empty"),
        ("{not json", "not valid JSON"),
        ('["Authorization", "x"]', "expected a JSON object"),
        ('{"Content-Type": "text/plain"}', "cannot be overridden"),
        ('{"X-Token": 5}', "single-line string"),
        ('{"X-Token": "a\\r\\nInjected: 1"}', "single-line string"),
        ('{"Bad Name": "v"}', "not a valid header name"),
    ],
)
def test_headers_env_errors(value, match):
    env = {"HOOK": "https://h.example/x"}
    if value is not None:
        env["HDRS"] = value
    with pytest.raises(ConfigError, match=r"alerts\.webhooks\[0\]\.headers_env \(\$HDRS\): .*" + match):
        WebhookDispatcher(settings({"url_env": "HOOK", "headers_env": "HDRS"}), env=env)


def test_url_path_query_and_header_values_never_reach_the_logs(hooks, caplog):
    caplog.set_level(logging.DEBUG)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    secret_url = f"{SECRET_PATH}?{SECRET_QUERY}"
    hooks.script(SECRET_PATH, 500, 404)
    env = {"OK": hooks.url(secret_url), "BAD": hooks.url(f"{SECRET_PATH}-2?{SECRET_QUERY}"),
           "DEAD": f"http://127.0.0.1:{dead}{secret_url}", "HDRS": '{"Authorization": "Bearer hdr-secret"}'}
    s = settings(
        {"url_env": "OK", "retries": 1, "retry_delay": 0, "headers_env": "HDRS"},  # 500, then 404: gives up
        {"url_env": "DEAD", "retries": 1, "retry_delay": 0},
        {"url": hooks.url(f"{SECRET_PATH}-3?{SECRET_QUERY}")},
    )
    d = WebhookDispatcher(s, env=env, sleep=Sleeps())
    d.start()
    d.submit(failed_alert(0))
    d.submit(failed_alert(1))  # now the first webhook succeeds
    assert d.stop(3)
    assert d.sent == 3 and d.failed == 3  # webhooks[0]: 1 sent 1 failed; [1]: 2 failed; [2]: 2 sent
    text = caplog.text + repr(d.stats()) + repr(s) + repr(d.targets) + "\n".join(s.warnings)
    for secret in ("T0PSECRET", "q-secret-123", "hdr-secret", "/hooks"):
        assert secret not in text
    assert "alert_failed" in caplog.text and "alert_retry" in caplog.text and "alert_sent" in caplog.text
    assert f"http://127.0.0.1:{hooks.port}/***" in caplog.text


def test_no_webhooks_means_nothing_to_do():
    d = WebhookDispatcher(AlertSettings.from_mapping({}))
    d.start()
    d.submit(failed_alert())
    assert d.stop(1)
    assert d.stats() | {"running": None} == {
        "enabled": False, "webhooks": 0, "running": None, "queued": 0, "sent": 0, "failed": 0, "dropped": 0,
        "retried": 0, "last_sent_at": None, "last_error": None, "last_error_at": None,
    }


def test_stop_without_start_counts_queued_alerts_as_dropped(hooks):
    d = WebhookDispatcher(settings(hook(hooks.url("/never"))))
    d.submit(failed_alert())
    assert d.stop(1)
    assert d.dropped == 1 and hooks.received == []


def test_one_daemon_thread():
    d = WebhookDispatcher(settings(hook("http://127.0.0.1:9/x")))
    before = threading.active_count()
    d.start()
    d.start()
    threads = [t for t in threading.enumerate() if t.name == "fxnb-alerts"]
    assert threading.active_count() == before + 1 and len(threads) == 1 and threads[0].daemon
    assert d.stop(1)
