"""The console's stylesheet, shipped inside an ``HTML`` widget (no CDN, no icon fonts).

Every panel includes :func:`stylesheet` once, so a panel displayed on its own in
JupyterLab looks the same as inside the Voila dashboard (a duplicate ``<style>``
is harmless). Colours use the JupyterLab theme variables where they exist, with
light-theme fallbacks, so the panels stay readable in the dark theme too.
"""

from __future__ import annotations

import ipywidgets as w

CSS = """
.fxnb-panel { border: 1px solid var(--jp-border-color2, #ddd); border-radius: 6px; padding: 6px 10px;
  margin: 4px 0; background: var(--jp-layout-color1, #fff); }
.fxnb-title { font-weight: 600; font-size: 14px; margin: 0 0 4px 0; color: var(--jp-ui-font-color0, #111); }
.fxnb-muted { color: var(--jp-ui-font-color2, #666); font-size: 12px; }
.fxnb-pos { color: #13803b; }
.fxnb-neg { color: #c62828; }
.fxnb-flat { color: var(--jp-ui-font-color1, #333); }
table.fxnb-table { border-collapse: collapse; width: 100%; font-size: 12px;
  font-variant-numeric: tabular-nums; }
table.fxnb-table th { text-align: left; font-weight: 600; border-bottom: 2px solid var(--jp-border-color1, #bbb);
  padding: 3px 6px; white-space: nowrap; }
table.fxnb-table td { border-bottom: 1px solid var(--jp-border-color3, #eee); padding: 2px 6px;
  white-space: nowrap; }
table.fxnb-table td.num, table.fxnb-table th.num { text-align: right; }
table.fxnb-table tr.fxnb-selected td { background: rgba(255, 193, 7, 0.25); }
table.fxnb-table td.wrap { white-space: normal; max-width: 420px; }
.fxnb-cards { display: flex; flex-wrap: wrap; gap: 8px; }
.fxnb-card { min-width: 120px; padding: 4px 8px; border-radius: 4px; background: var(--jp-layout-color2, #f5f5f5); }
.fxnb-card .label { font-size: 11px; color: var(--jp-ui-font-color2, #666); }
.fxnb-card .value { font-size: 16px; font-weight: 600; font-variant-numeric: tabular-nums; }
.fxnb-badge { display: inline-block; padding: 1px 7px; border-radius: 10px; font-size: 11px; font-weight: 600;
  color: #fff; background: #777; }
.fxnb-badge.live, .fxnb-badge.completed { background: #13803b; }
.fxnb-badge.stale, .fxnb-badge.failed, .fxnb-badge.rejected { background: #c62828; }
.fxnb-badge.disconnected, .fxnb-badge.partially_completed, .fxnb-badge.expired,
.fxnb-badge.unclaimed { background: #d9822b; }
.fxnb-badge.queued, .fxnb-badge.pending { background: #5c6bc0; }
.fxnb-badge.processing { background: #1e88e5; }
.fxnb-badge.paused { background: #d9822b; }
.fxnb-badge.sim { background: #6d4c41; }
.fxnb-stale-banner { background: #c62828; color: #fff; font-weight: 700; padding: 8px 12px; border-radius: 6px;
  font-size: 14px; }
.fxnb-badge.ok { background: #13803b; }
.fxnb-badge.warning { background: #d9822b; }
.fxnb-badge.fired, .fxnb-badge.error { background: #c62828; }
.fxnb-badge.locked { background: #6a1b9a; }
.fxnb-badge.off { background: #9e9e9e; }
.fxnb-badge.info { background: #5c6bc0; }
.fxnb-locked-banner { background: #6a1b9a; color: #fff; padding: 8px 12px; border-radius: 6px; font-size: 13px; }
.fxnb-locked-banner .headline { font-weight: 700; font-size: 15px; }
.fxnb-locked-banner code { color: #fff; background: rgba(255, 255, 255, 0.15); }
table.fxnb-table tr.guard-warning td { background: rgba(217, 130, 43, 0.12); }
table.fxnb-table tr.guard-fired td, table.fxnb-table tr.event-error td { background: rgba(198, 40, 40, 0.10); }
table.fxnb-table tr.guard-locked td { background: rgba(106, 27, 154, 0.10); }
table.fxnb-table tr.guard-off td { color: var(--jp-ui-font-color2, #888); }
table.fxnb-table tr.event-warning td { background: rgba(217, 130, 43, 0.10); }
.fxnb-warning { background: #fff4e5; color: #663c00; padding: 4px 8px; border-radius: 4px; }
.fxnb-preview { border-left: 4px solid #d9822b; padding: 4px 10px; background: var(--jp-layout-color2, #fafafa); }
.fxnb-message-error { color: #c62828; }
.fxnb-message-ok { color: #13803b; }
"""


def stylesheet() -> w.HTML:
    """A zero-size widget carrying the console's CSS."""
    sheet = w.HTML(f"<style>{CSS}</style>", layout=w.Layout(height="0px", margin="0px"))
    sheet.add_class("fxnb-stylesheet")
    return sheet
