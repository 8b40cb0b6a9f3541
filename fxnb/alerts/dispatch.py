"""Deliver alerts to webhooks: a bounded queue and one daemon thread, so the monitor never waits.

``submit`` only appends to the queue (dropping the oldest alert when it is full);
the thread POSTs each alert as JSON to every webhook that wants its kind, with a
per-attempt timeout and retries with doubling delays on connection errors,
timeouts, 429 and 5xx. Other 4xx and redirects are not retried (the request
itself is wrong; redirects are not followed, so headers never go to another host).
Nothing here raises into the caller after construction: failures are counted and
logged, and a webhook URL is only ever logged redacted (it usually holds a token).
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from fxnb import __version__
from fxnb.alerts.model import Alert, iso_utc
from fxnb.alerts.schema import AlertSettings, WebhookSettings, check_url, redact_url
from fxnb.errors import ConfigError

log = logging.getLogger("fxnb.alerts")

USER_AGENT = f"fxnb/{__version__}"
DEFAULT_MAX_QUEUE = 1000
MAX_RETRY_AFTER = 60.0  # a server's Retry-After is honoured up to this many seconds
_MAX_RESPONSE_READ = 64 * 1024
_RESERVED_HEADERS = frozenset({"content-type", "content-length", "host", "transfer-encoding", "connection"})
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")


def _kv(name: str, /, **fields: Any) -> str:
    return " ".join([name] + [f"{k}={json.dumps(v, default=str)}" for k, v in fields.items() if v is not None])


@dataclass(frozen=True)
class _Target:
    """A webhook with its secrets resolved. ``label`` is what logs show."""

    settings: WebhookSettings
    url: str
    label: str
    headers: Mapping[str, str]

    def __repr__(self) -> str:
        return f"_Target({self.label})"

    @classmethod
    def resolve(cls, w: WebhookSettings, env: Mapping[str, str]) -> _Target:
        if w.url is not None:
            url = w.url
        else:
            assert w.url_env is not None
            value = env.get(w.url_env, "")
            if not value.strip():
                raise ConfigError(f"{w.where}.url_env: environment variable {w.url_env} is not set or empty "
                                  "(it should hold the webhook URL)")
            url = check_url(f"{w.where}.url_env (${w.url_env})", value)
        headers: dict[str, str] = {}
        if w.headers_env is not None:
            headers = _parse_headers(f"{w.where}.headers_env (${w.headers_env})", env.get(w.headers_env))
        return cls(settings=w, url=url, label=f"webhooks[{w.index}] {redact_url(url)}", headers=headers)


def _parse_headers(where: str, text: str | None) -> dict[str, str]:
    # Values are never echoed in errors: they are usually tokens.
    if text is None or not text.strip():
        raise ConfigError(f"{where}: the environment variable is not set or empty "
                          '(it should hold a JSON object such as {"Authorization": "Bearer ..."})')
    try:
        loaded = json.loads(text)
    except ValueError:
        raise ConfigError(f"{where}: not valid JSON (expected an object of header names to string values)") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{where}: expected a JSON object of header names to string values")
    out: dict[str, str] = {}
    for name, value in loaded.items():
        if not _HEADER_NAME.match(name):
            raise ConfigError(f"{where}: {name!r} is not a valid header name")
        if name.lower() in _RESERVED_HEADERS:
            raise ConfigError(f"{where}: header {name!r} is set by fxnb and cannot be overridden")
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise ConfigError(f"{where}: the value of header {name!r} must be a single-line string")
        out[name] = value
    return out


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects become errors: following one would send the alert (and auth headers) elsewhere."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201
        return None


def _json_safe(value: Any) -> Any:
    """NaN and infinities (not JSON) become strings; everything else json.dumps handles or str()s."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    return value


def _retry_after(headers: Any) -> float | None:
    try:
        value = float(headers.get("Retry-After"))
    except (TypeError, ValueError, AttributeError):
        return None  # absent, or an HTTP date (then our own backoff applies)
    return value if math.isfinite(value) and value >= 0 else None


_OK, _RETRY, _PERMANENT = "ok", "retry", "permanent"


class WebhookDispatcher:
    """Send alerts to the configured webhooks from one background thread.

    ``env`` resolves ``url_env``/``headers_env`` at construction (a missing variable is a
    ``ConfigError`` then, not a silent failure later). ``sleep`` waits between attempts
    (default: a wait that :meth:`stop` can cut short); ``clock`` (epoch seconds) stamps
    alerts without ``at``; ``opener`` is a ``urllib.request.OpenerDirector`` (default:
    the standard one, with redirects refused). ``account`` (the MT5 login) goes into every
    body; set it later with :meth:`set_account`.
    """

    def __init__(
        self,
        settings: AlertSettings,
        *,
        env: Mapping[str, str] = os.environ,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.time,
        opener: urllib.request.OpenerDirector | None = None,
        account: int | None = None,
        hostname: str | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be >= 1")
        self.settings = settings
        self.targets: tuple[_Target, ...] = tuple(_Target.resolve(w, env) for w in settings.webhooks)
        self._kinds = settings.kinds()
        self._sleep = sleep
        self._clock = clock
        self._opener = opener or urllib.request.build_opener(_NoRedirect())
        self.account = account
        self.hostname = hostname or socket.gethostname()
        self.max_queue = max_queue
        self._queue: deque[Alert] = deque()
        self._cond = threading.Condition()
        self._stop_evt = threading.Event()
        self._deadline = math.inf  # time.monotonic() by which stop() wants the thread gone
        self._closed = False
        self._overflowing = False
        self._busy = False
        self._thread: threading.Thread | None = None
        self._sent = self._failed = self._dropped = self._retried = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_sent_at: float | None = None

    # ------------------------------------------------------------------ caller side
    def set_account(self, login: int | None) -> None:
        self.account = login

    def wants(self, kind: str) -> bool:
        return kind in self._kinds

    def start(self) -> None:
        """Start the delivery thread (once; later calls do nothing)."""
        with self._cond:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._run, name="fxnb-alerts", daemon=True)
            self._thread.start()

    def submit(self, alert: Alert) -> None:
        """Queue ``alert`` for every webhook that wants its kind. Never blocks, never raises."""
        try:
            if alert.kind not in self._kinds:
                return
            if alert.at is None:
                alert = replace(alert, at=self._clock())
            note: str | None = None
            with self._cond:
                if self._closed:
                    self._dropped += 1
                    note = _kv("alert_dropped", event=alert.kind, reason="alerts stopped")
                else:
                    if len(self._queue) >= self.max_queue:
                        oldest = self._queue.popleft()
                        self._dropped += 1
                        if not self._overflowing:
                            self._overflowing = True
                            note = _kv("alert_queue_full", size=self.max_queue, dropped_event=oldest.kind,
                                       note="dropping the oldest alerts until the queue drains")
                    self._queue.append(alert)
                    self._cond.notify()
            if note:
                log.warning(note)
        except Exception:  # pragma: no cover - the monitor must never fail because of an alert
            log.exception("alert submit failed")

    def stop(self, timeout: float = 5.0) -> bool:
        """Deliver what can be delivered within ``timeout`` seconds, then stop the thread.

        Retries that would end after the deadline are abandoned (counted as failed) and
        alerts still queued then are counted as dropped. True when everything was delivered
        or abandoned and the thread has ended.
        """
        with self._cond:
            self._closed = True
            self._deadline = time.monotonic() + max(0.0, timeout)
            self._stop_evt.set()
            self._cond.notify_all()
            thread = self._thread
            if thread is None and self._queue:
                self._dropped += len(self._queue)
                log.warning(_kv("alerts_not_sent", count=len(self._queue), reason="dispatcher was never started"))
                self._queue.clear()
        if thread is None:
            return True
        thread.join(max(0.0, timeout) + 0.5)
        return not thread.is_alive()

    def __enter__(self) -> WebhookDispatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ counters
    @property
    def sent(self) -> int:
        return self._sent

    @property
    def failed(self) -> int:
        return self._failed

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def retried(self) -> int:
        return self._retried

    @property
    def queued(self) -> int:
        return len(self._queue)

    def idle(self) -> bool:
        """Nothing queued and nothing being delivered."""
        with self._cond:
            return not self._queue and not self._busy

    def stats(self) -> dict[str, Any]:
        """For ``/status``: counters, queue depth and the last (redacted) error."""
        with self._cond:
            return {
                "enabled": bool(self.targets),
                "webhooks": len(self.targets),
                "running": self._thread is not None and self._thread.is_alive(),
                "queued": len(self._queue),
                "sent": self._sent,
                "failed": self._failed,
                "dropped": self._dropped,
                "retried": self._retried,
                "last_sent_at": None if self.last_sent_at is None else iso_utc(self.last_sent_at),
                "last_error": self.last_error,
                "last_error_at": None if self.last_error_at is None else iso_utc(self.last_error_at),
            }

    # ------------------------------------------------------------------ delivery thread
    def _run(self) -> None:
        while True:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                if time.monotonic() >= self._deadline:
                    n = len(self._queue)
                    self._dropped += n
                    self._queue.clear()
                    log.warning(_kv("alerts_not_sent", count=n, reason="stop timeout reached"))
                    return
                alert = self._queue.popleft()
                if not self._queue:
                    self._overflowing = False
                self._busy = True
            try:
                self._deliver_all(alert)
            except Exception:  # a bug here must not end delivery for good
                log.exception("alert_delivery_crashed event=%s", json.dumps(alert.kind, default=str))

    def _body(self, alert: Alert) -> bytes:
        payload = {
            "event": alert.kind,
            "level": alert.level,
            "message": alert.message,
            "data": _json_safe(dict(alert.data or {})),
            "at": iso_utc(alert.at if alert.at is not None else self._clock()),
            "source": "fxnb",
            "account": self.account,
            "host": self.hostname,
        }
        return json.dumps(payload, default=str, ensure_ascii=False, allow_nan=False).encode("utf-8")

    def _deliver_all(self, alert: Alert) -> None:
        targets = [t for t in self.targets if t.settings.wants(alert.kind)]
        if not targets:
            return
        body = self._body(alert)
        for t in targets:
            self._deliver(t, alert, body)

    def _deliver(self, t: _Target, alert: Alert, body: bytes) -> bool:
        w = t.settings
        attempts = 1 + w.retries
        for attempt in range(1, attempts + 1):
            outcome, detail, retry_after = self._post(t, body)
            if outcome == _OK:
                with self._cond:
                    self._sent += 1
                    self.last_sent_at = self._clock()
                log.info(_kv("alert_sent", webhook=t.label, event=alert.kind, attempts=attempt))
                return True
            give_up = outcome == _PERMANENT or attempt == attempts
            delay = w.retry_delay * 2 ** (attempt - 1)
            if retry_after is not None:
                delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
            if not give_up and not self._fits(delay):
                give_up, detail = True, f"{detail}; no retry: shutting down"
            if give_up:
                self._record_failure(t, alert, detail, attempt)
                return False
            with self._cond:
                self._retried += 1
            log.info(_kv("alert_retry", webhook=t.label, event=alert.kind, attempt=attempt, error=detail,
                         delay_s=round(delay, 3)))
            if not self._wait(delay):
                self._record_failure(t, alert, f"{detail}; no retry: shutting down", attempt)
                return False
        return False  # pragma: no cover - the loop always returns

    def _record_failure(self, t: _Target, alert: Alert, detail: str, attempts: int) -> None:
        with self._cond:
            self._failed += 1
            self.last_error = f"{t.label}: {detail}"
            self.last_error_at = self._clock()
        log.warning(_kv("alert_failed", webhook=t.label, event=alert.kind, attempts=attempts, error=detail))

    def _fits(self, delay: float) -> bool:
        """Whether waiting ``delay`` and trying once more ends before stop()'s deadline."""
        return time.monotonic() + delay < self._deadline

    def _wait(self, delay: float) -> bool:
        """Wait before the next attempt; False when stop() came meanwhile and its deadline is too near."""
        if self._sleep is not None:
            self._sleep(delay)
            return True
        end = time.monotonic() + delay
        while (left := end - time.monotonic()) > 0:
            if self._stop_evt.is_set():
                if not self._fits(left):
                    return False
                time.sleep(left)
                return True
            self._stop_evt.wait(left)  # stop() wakes us to re-check against its deadline
        return True

    def _post(self, t: _Target, body: bytes) -> tuple[str, str, float | None]:
        """One attempt: (outcome, safe description, Retry-After seconds or None)."""
        timeout = t.settings.timeout
        if self._deadline != math.inf:
            timeout = max(0.05, min(timeout, self._deadline - time.monotonic()))
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **t.headers}
        req = urllib.request.Request(t.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(req, timeout=timeout) as resp:
                resp.read(_MAX_RESPONSE_READ)
                status = resp.status
        except urllib.error.HTTPError as exc:
            code = exc.code
            retry_after = _retry_after(exc.headers)
            exc.close()
            if code == 429 or code >= 500:
                return _RETRY, f"HTTP {code}", retry_after
            if 300 <= code < 400:
                return _PERMANENT, f"HTTP {code} (redirects are not followed; configure the final URL)", None
            return _PERMANENT, f"HTTP {code} (not retried)", None
        except TimeoutError:
            return _RETRY, f"timed out after {timeout:g} s", None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                return _RETRY, f"timed out after {timeout:g} s (connecting)", None
            return _RETRY, self._scrub(t, f"cannot connect: {exc.reason}"), None
        except (OSError, http.client.HTTPException) as exc:
            return _RETRY, self._scrub(t, f"{type(exc).__name__}: {exc}"), None
        except ValueError as exc:  # e.g. a header value http.client refuses
            return _PERMANENT, self._scrub(t, f"invalid request: {exc}"), None
        if 200 <= status < 300:
            return _OK, f"HTTP {status}", None
        return _PERMANENT, f"HTTP {status} (unexpected status)", None

    @staticmethod
    def _scrub(t: _Target, text: str) -> str:
        """Library error text should not contain the URL or a header value; make sure of it."""
        parts = urlsplit(t.url)
        secrets = {t.url, parts.path, parts.query, parts.path + ("?" + parts.query if parts.query else "")}
        secrets.update(t.headers.values())
        for s in sorted((s for s in secrets if s and s not in ("/", "")), key=len, reverse=True):
            text = text.replace(s, "***")
        return text
