"""The console's ipywidgets panels: read the database, act only by dropping command files.

Each panel is a ``VBox`` built from stock widgets on a shared :class:`Console`
and works on its own in JupyterLab or inside the Voila :class:`Dashboard`::

    from fxnb.widgets import Console, PositionsPanel, live
    console = Console.from_env()            # $FXNB_CONFIG or ./config.json
    grid = PositionsPanel(console)
    live(grid)                              # refresh about once a second
    grid

Nothing here imports the broker layer or the monitor, touches the terminal or
reads credentials (a test enforces it).
"""

from __future__ import annotations

from fxnb.widgets.account import AccountPanel
from fxnb.widgets.base import ConfirmBar, MessageLine, Panel
from fxnb.widgets.bulk import BulkActionsPanel, preview_targets
from fxnb.widgets.chart import EquityChart
from fxnb.widgets.context import Console, SentCommand, matches_bulk
from fxnb.widgets.dashboard import Dashboard
from fxnb.widgets.events import EventsPanel
from fxnb.widgets.guards import GuardsPanel, describe_paused_by
from fxnb.widgets.health import HealthPanel
from fxnb.widgets.live import LiveRefresh, live, running_tasks
from fxnb.widgets.positions import PositionsPanel
from fxnb.widgets.rules import RulesPanel
from fxnb.widgets.tracker import CommandTracker

__all__ = [
    "AccountPanel",
    "BulkActionsPanel",
    "CommandTracker",
    "ConfirmBar",
    "Console",
    "Dashboard",
    "EquityChart",
    "EventsPanel",
    "GuardsPanel",
    "HealthPanel",
    "LiveRefresh",
    "MessageLine",
    "Panel",
    "PositionsPanel",
    "RulesPanel",
    "SentCommand",
    "describe_paused_by",
    "live",
    "matches_bulk",
    "preview_targets",
    "running_tasks",
]
