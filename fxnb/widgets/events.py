"""Events: the monitor's event log, newest first — what the webhooks are sent, as the operator sees it.

Every alert the monitor hands to a webhook is first recorded as an event
(``Store.event``), so this list shows the same guard warnings, guard firings,
failed commands and rule closes, plus what no webhook needs (connects, stop
moves, flattens). It is re-read only when the database changed (``data_version``),
never on a clock tick.
"""

from __future__ import annotations

import json
from typing import Any

import ipywidgets as w
import traitlets as t

from fxnb.widgets._fmt import clock, esc
from fxnb.widgets.base import Panel, set_if_changed
from fxnb.widgets.context import Console

LEVELS = (("All", "info"), ("Warnings + errors", "warning"), ("Errors only", "error"))


def _details(data: Any) -> str:
    if not data:
        return ""
    try:
        return json.dumps(data, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(data)


class EventsPanel(Panel):
    """The last ``limit`` events at or above a minimum level, level-coloured, newest first.

    CSS classes: ``events-level`` (the filter), ``events-table`` (rows
    ``event-row event-<level>`` with ``data-id``, ``data-level`` and ``data-kind``;
    the event's data as the row's tooltip).
    """

    css_class = "fxnb-events"
    title_text = "Events"

    rows = t.List(help="the events shown, newest first (Reader.events() dicts)")
    limit = t.Int(30, help="events shown")

    def __init__(self, console: Console, *, limit: int = 30, min_level: str = "info", **kwargs: Any) -> None:
        super().__init__(console, **kwargs)
        self.limit = limit
        if min_level not in {v for _, v in LEVELS}:
            raise ValueError(f"min_level must be info, warning or error, not {min_level!r}")
        self.level = w.ToggleButtons(options=list(LEVELS), value=min_level, style={"button_width": "140px"})
        self.level.add_class("events-level")
        self.table = w.HTML(layout=w.Layout(overflow="auto", max_height="320px"))
        self.table.add_class("events-table")
        self._compose(self.level, self.table)
        self.level.observe(lambda _c: self.refresh(), names="value")
        self.refresh()

    @property
    def min_level(self) -> str:
        return str(self.level.value)

    def refresh(self) -> None:
        self.rows = self.console.events(self.limit, self.min_level)
        set_if_changed(self.table, "value", self._table())

    def kinds(self) -> list[str]:
        """The kinds shown, newest first (for tests and notebooks)."""
        return [str(r.get("kind")) for r in self.rows]

    def _table(self) -> str:
        head = "<tr><th>Time (UTC)</th><th>Level</th><th>Kind</th><th>Message</th></tr>"
        body = []
        for e in self.rows:
            level = str(e.get("level") or "info")
            body.append(
                f'<tr class="event-row event-{esc(level)}" data-id="{esc(e.get("id"))}" data-level="{esc(level)}" '
                f'data-kind="{esc(e.get("kind"))}" title="{esc(_details(e.get("data")))}">'
                f"<td>{esc(clock(e.get('at'), with_date=True))}</td>"
                f'<td><span class="fxnb-badge {esc(level)}">{esc(level)}</span></td>'
                f"<td><code>{esc(e.get('kind'))}</code></td>"
                f'<td class="wrap">{esc(e.get("message"))}</td></tr>'
            )
        if not body:
            why = self.console.storage_error or (
                "no events yet" if self.min_level == "info" else f"no {self.min_level} events or worse")
            body.append(f'<tr><td colspan="4" class="fxnb-muted">{esc(why)}</td></tr>')
        return f'<table class="fxnb-table events-rows"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'


__all__ = ["EventsPanel"]
