"""Alerts: webhooks (JSON POST with retries and a timeout) for chosen monitor events.

The monitor maps each ``Store.event`` with :func:`alert_from_event`, feeds its connection
state to a :class:`DisconnectWatch`, and hands the resulting :class:`Alert` objects to a
:class:`WebhookDispatcher`, which delivers them from its own thread.
"""

from fxnb.alerts.disconnect import DisconnectWatch
from fxnb.alerts.dispatch import USER_AGENT, WebhookDispatcher
from fxnb.alerts.model import ALERT_KINDS, DEFAULT_EVENTS, Alert, alert_from_event
from fxnb.alerts.schema import (
    ALERTS_DEFAULTS,
    ALERTS_SCHEMA,
    SECTION,
    WEBHOOK_DEFAULTS,
    WEBHOOK_SCHEMA,
    AlertSettings,
    WebhookSettings,
    redact_section,
    redact_url,
)

__all__ = [
    "ALERTS_DEFAULTS",
    "ALERTS_SCHEMA",
    "ALERT_KINDS",
    "DEFAULT_EVENTS",
    "SECTION",
    "USER_AGENT",
    "WEBHOOK_DEFAULTS",
    "WEBHOOK_SCHEMA",
    "Alert",
    "AlertSettings",
    "DisconnectWatch",
    "WebhookDispatcher",
    "WebhookSettings",
    "alert_from_event",
    "redact_section",
    "redact_url",
]
