"""The operator dashboard: every panel on one page, refreshed live.

>>> dashboard = Dashboard.from_env()    # doctest: +SKIP
>>> dashboard.start(); dashboard        # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any

import ipywidgets as w
import traitlets as t

from fxnb.widgets._fmt import esc
from fxnb.widgets._style import stylesheet
from fxnb.widgets.account import AccountPanel
from fxnb.widgets.bulk import BulkActionsPanel
from fxnb.widgets.chart import EquityChart
from fxnb.widgets.context import Console
from fxnb.widgets.events import EventsPanel
from fxnb.widgets.guards import GuardsPanel
from fxnb.widgets.health import HealthPanel
from fxnb.widgets.live import LiveRefresh
from fxnb.widgets.positions import PositionsPanel
from fxnb.widgets.rules import RulesPanel
from fxnb.widgets.tracker import CommandTracker


class Dashboard(w.VBox):
    """Health, account guards, account, rules, bulk actions (and Flatten), positions, commands, events
    and the equity chart.

    Parameters
    ----------
    console:
        The shared :class:`Console` (config, reader, command folder).
    period:
        Seconds between refresh ticks once :meth:`start` is called.
    page_size:
        Rows of the positions grid rendered per page.
    key:
        Name of the refresh task; starting a dashboard cancels the previous task
        with the same key (a re-run cell never leaves two loops running).
    """

    stale = t.Bool(True, help="mirrors the console: True while the monitor is not known to be alive")
    locked = t.Bool(False, help="mirrors the guards panel: True while a guard lock holds")

    def __init__(self, console: Console, *, period: float = 1.0, page_size: int = 50, key: str = "dashboard",
                 **kwargs: Any) -> None:
        self.console = console
        self.health = HealthPanel(console)
        self.account = AccountPanel(console)
        self.rules = RulesPanel(console)
        self.guards = GuardsPanel(console)
        self.bulk = BulkActionsPanel(console)
        self.positions = PositionsPanel(console, page_size=page_size)
        self.tracker = CommandTracker(console)
        self.events = EventsPanel(console)
        self.chart = EquityChart(console)
        self.panels = (self.health, self.guards, self.account, self.rules, self.bulk, self.positions, self.tracker,
                       self.events, self.chart)
        self.refresher = LiveRefresh(console, self.panels, period=period, key=key)
        where = console.config.base_dir
        self.header = w.HTML(
            f'<div class="fxnb-title" style="font-size:18px">fxnb operator console '
            f'<span class="fxnb-muted">· workspace {esc(where)}</span></div>'
        )
        self.header.add_class("fxnb-header")
        top = w.HBox([self.account, self.rules], layout=w.Layout(width="100%"))
        self.account.layout.flex = "3 1 0%"
        self.rules.layout.flex = "2 1 0%"
        top.add_class("fxnb-row")
        super().__init__([stylesheet(), self.header, self.health, self.guards, top, self.bulk, self.positions,
                          self.tracker, self.events, self.chart], **kwargs)
        self.add_class("fxnb-dashboard")
        t.dlink((console, "stale"), (self, "stale"))
        t.dlink((self.guards, "locked"), (self, "locked"))
        self.observe(self._on_stale, names="stale")
        self.observe(self._on_locked, names="locked")
        self._on_stale({"new": self.stale})
        self._on_locked({"new": self.locked})

    @classmethod
    def from_env(cls, path: str | os.PathLike[str] | None = None, *, requested_by: str = "console",
                 **kwargs: Any) -> Dashboard:
        """A dashboard for ``path`` / ``$FXNB_CONFIG`` / ``./config.json``."""
        return cls(Console.from_env(path, requested_by=requested_by), **kwargs)

    def _on_stale(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.add_class("fxnb-stale")
        else:
            self.remove_class("fxnb-stale")

    def _on_locked(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.add_class("fxnb-locked")
        else:
            self.remove_class("fxnb-locked")

    def refresh(self) -> bool:
        """One refresh cycle now (what the live task does every ``period``)."""
        return self.refresher.tick()

    def start(self, period: float | None = None) -> Dashboard:
        """Refresh live from the kernel's event loop; returns ``self`` so a cell can end with it."""
        if period is not None:
            self.refresher.period = period
        self.refresher.start()
        return self

    def stop(self) -> None:
        """Stop refreshing (the widgets stay as they are)."""
        self.refresher.stop()

    @property
    def running(self) -> bool:
        return self.refresher.running


__all__ = ["Dashboard"]
