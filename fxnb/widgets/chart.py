"""Equity and P/L chart over time, from ``profit_monitoring``, with bqplot (no CDN, works offline).

The history is read with :meth:`Reader.history(max_points=...)
<fxnb.storage.Reader.history>`, which thins any range to at most
``max_points`` rows with one indexed seek per bucket, so a week costs the same
as a minute. Updates only assign ``marks.x`` / ``marks.y``, and only when a new
snapshot arrived or the window changed.
"""

from __future__ import annotations

from typing import Any

import bqplot as bq
import ipywidgets as w
import numpy as np
import traitlets as t

from fxnb.widgets._fmt import esc
from fxnb.widgets.base import Panel, set_if_changed
from fxnb.widgets.context import Console

WINDOWS: tuple[tuple[str, float | None], ...] = (
    ("15 min", 15 * 60.0),
    ("1 h", 3600.0),
    ("1 day", 86400.0),
    ("all", None),
)


class EquityChart(Panel):
    """Equity and balance (top) and floating P/L (bottom) over a chosen window.

    CSS classes: ``chart-equity`` and ``chart-pnl`` (the bqplot figures), ``chart-window``.
    """

    css_class = "fxnb-chart"
    title_text = "Equity and floating P/L"

    points = t.Int(0, help="points currently plotted")
    max_points = t.Int(400, help="upper bound on points read and plotted")

    def __init__(self, console: Console, *, max_points: int = 400, window: str = "1 h", **kwargs: Any) -> None:
        super().__init__(console, **kwargs)
        self.max_points = max_points
        self.window = w.ToggleButtons(options=[label for label, _ in WINDOWS], value=window,
                                      style={"button_width": "72px"})
        self.window.add_class("chart-window")
        self.info = w.HTML()
        self.info.add_class("chart-info")

        x = bq.DateScale()
        y = bq.LinearScale()
        empty_x = np.array([], dtype="datetime64[ms]")
        self.equity_lines = bq.Lines(x=empty_x, y=np.zeros((2, 0)), scales={"x": x, "y": y},
                                     labels=["equity", "balance"], colors=["#1e88e5", "#9e9e9e"],
                                     display_legend=True, stroke_width=2)
        self.equity_x_axis = bq.Axis(scale=x, label="UTC", tick_format="%H:%M:%S")
        self.equity_figure = bq.Figure(
            marks=[self.equity_lines],
            axes=[self.equity_x_axis,
                  bq.Axis(scale=y, orientation="vertical", tick_format=",.0f")],
            layout=w.Layout(height="240px", width="100%"),
            fig_margin={"top": 10, "bottom": 35, "left": 70, "right": 15},
            legend_location="top-left",
        )
        self.equity_figure.add_class("chart-equity")

        x2 = bq.DateScale()
        y2 = bq.LinearScale()
        self.pnl_lines = bq.Lines(x=empty_x, y=np.zeros(0), scales={"x": x2, "y": y2},
                                  colors=["#6a1b9a"], fill="bottom", fill_opacities=[0.15], stroke_width=1.5)
        self.pnl_x_axis = bq.Axis(scale=x2, label="UTC", tick_format="%H:%M:%S")
        self.pnl_figure = bq.Figure(
            marks=[self.pnl_lines],
            axes=[self.pnl_x_axis,
                  bq.Axis(scale=y2, orientation="vertical", tick_format=",.0f")],
            layout=w.Layout(height="170px", width="100%"),
            fig_margin={"top": 10, "bottom": 35, "left": 70, "right": 15},
        )
        self.pnl_figure.add_class("chart-pnl")

        pnl_title = w.HTML('<span class="fxnb-muted">floating P/L (profit + swap of the open book)</span>')
        self._compose(w.HBox([self.window, self.info]), self.equity_figure, pnl_title, self.pnl_figure)
        self._last_key: tuple[Any, ...] | None = None
        self.window.observe(lambda _c: self.refresh(force=True), names="value")
        self.refresh()

    def _since(self) -> float | None:
        span = dict(WINDOWS)[self.window.value]
        return None if span is None else self.console.clock() - span

    def refresh(self, force: bool = False) -> None:
        acct = self.console.account()
        latest = acct.get("ts") if acct else None
        key = (latest, self.window.value)
        if not force and key == self._last_key:
            return  # no new snapshot: nothing to redraw
        self._last_key = key
        since = self._since()
        rows = self.console.read(f"history:{self.window.value}:{self.max_points}",
                                 lambda r: r.history(since_ts=since, max_points=self.max_points), [])
        self.points = len(rows)
        cur = (acct or {}).get("currency") or self.console.currency
        if not rows:
            set_if_changed(self.info, "value", '<span class="fxnb-muted">no account history in this window</span>')
            self._assign(np.array([], dtype="datetime64[ms]"), np.zeros((2, 0)), np.zeros(0))
            return
        ts = np.array([r["ts"] for r in rows], dtype=float)
        x = (ts * 1000).astype("int64").astype("datetime64[ms]")
        equity = np.array([r["equity"] for r in rows], dtype=float)
        balance = np.array([r["balance"] for r in rows], dtype=float)
        pnl = np.array([r["net_profit"] for r in rows], dtype=float)
        span = float(ts[-1] - ts[0])
        fmt = "%H:%M:%S" if span < 1800 else "%H:%M" if span < 2 * 86400 else "%m-%d %H:%M"
        set_if_changed(self.equity_x_axis, "tick_format", fmt)
        set_if_changed(self.pnl_x_axis, "tick_format", fmt)
        self._assign(x, np.vstack([equity, balance]), pnl)
        thinned = " (thinned)" if len(rows) >= self.max_points else ""
        set_if_changed(self.info, "value", f'<span class="fxnb-muted">{len(rows)} points{thinned} · '
                                           f"amounts in {esc(cur)}</span>")

    def _assign(self, x: np.ndarray, ys: np.ndarray, pnl: np.ndarray) -> None:
        with self.equity_lines.hold_sync():
            self.equity_lines.x = x
            self.equity_lines.y = ys
        with self.pnl_lines.hold_sync():
            self.pnl_lines.x = x
            self.pnl_lines.y = pnl


__all__ = ["WINDOWS", "EquityChart"]
