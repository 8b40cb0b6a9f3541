"""Bulk actions: Close profitable / Close losing / Close all, and Flatten, each with a preview and a confirmation.

Clicking a bulk button writes nothing: it shows which tickets the command
would close *now* and the P/L that would be realised, and waits for
**Confirm**. The command written carries the filter (type, symbol, side), not
the ticket list: the monitor freezes its targets when it claims the command,
so the preview is informational and the tracker shows what really happened.

**Flatten** is the emergency command: the monitor pauses the rules (they stay
paused until resumed), closes every position whatever the filters, cancels
pending orders and checks the book really is flat. Its preview says so, with
the number of positions and the floating P/L that would be realised.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import traitlets as t

from fxnb.widgets._fmt import clock, esc, money, pnl_class
from fxnb.widgets.base import ConfirmBar, Panel, guarded
from fxnb.widgets.context import Console, matches_bulk
from fxnb.widgets.positions import net_pnl

LABELS = {"profit": "Close profitable", "loss": "Close losing", "all": "Close all"}
PREVIEW_TICKETS = 30  # tickets listed in a preview; the rest are counted


def preview_targets(positions: list[dict[str, Any]], cmd_type: str, *, symbol: str | None = None,
                    side: str | None = None) -> tuple[list[dict[str, Any]], float]:
    """The positions a bulk command would close right now, and their total net P/L."""
    targets = [p for p in positions if matches_bulk(p, cmd_type, symbol=symbol, side=side)]
    targets.sort(key=lambda p: (p["symbol"], p["ticket"]))
    return targets, sum(net_pnl(p) for p in targets)


class BulkActionsPanel(Panel):
    """Three bulk buttons, a symbol and side filter, and a confirmation step with a preview.

    CSS classes: ``bulk-close-profit``, ``bulk-close-loss``, ``bulk-close-all``,
    ``bulk-symbol``, ``bulk-side``, and the confirmation ``bulk-confirm`` /
    ``bulk-cancel`` (preview ``bulk-preview``, whose ``data-tickets`` lists the tickets).
    Flatten: ``flatten``, confirmation ``flatten-confirm`` / ``flatten-cancel``
    (preview ``flatten-preview`` with ``data-count``, ``data-pnl``, ``data-tickets``).
    """

    css_class = "fxnb-bulk"
    title_text = "Bulk actions"

    pending_type = t.Unicode("", help="the bulk command awaiting confirmation ('' when none)")
    flatten_pending = t.Bool(False, help="True while the Flatten preview waits for Confirm or Cancel")

    def __init__(self, console: Console, **kwargs: Any) -> None:
        super().__init__(console, **kwargs)
        self.buttons: dict[str, w.Button] = {}
        for cmd_type, label in LABELS.items():
            button = w.Button(description=label, button_style="danger" if cmd_type == "all" else "warning",
                              tooltip=f"{label}: shows a preview first; nothing is sent until you confirm")
            button.add_class(f"bulk-close-{cmd_type}")
            button.on_click(lambda _b, ct=cmd_type: self.ask(ct))
            self.buttons[cmd_type] = button
        self.symbol = w.Dropdown(options=[("All symbols", "")], value="", description="Symbol",
                                 layout=w.Layout(width="200px"))
        self.symbol.add_class("bulk-symbol")
        self.side = w.Dropdown(options=[("Both sides", ""), ("Buy only", "buy"), ("Sell only", "sell")], value="",
                               description="Side", layout=w.Layout(width="180px"))
        self.side.add_class("bulk-side")
        self.confirm = ConfirmBar("bulk", confirm_label="Confirm")
        self.flatten_button = w.Button(description="Flatten…", button_style="danger",
                                       tooltip="Emergency: pause the rules, close every position, cancel pending "
                                               "orders. Shows a preview first; nothing is sent until you confirm",
                                       layout=w.Layout(margin="2px 2px 2px auto"))
        self.flatten_button.add_class("flatten")
        self.flatten_button.on_click(lambda _b: self.ask_flatten())
        self.flatten_confirm = ConfirmBar("flatten", confirm_label="Confirm flatten")
        row = w.HBox([*self.buttons.values(), self.symbol, self.side, self.flatten_button],
                     layout=w.Layout(width="100%"))
        self._compose(row, self.confirm, self.flatten_confirm)
        self._filters: dict[str, Any] = {}
        self.symbol.observe(self._on_filter, names="value")
        self.side.observe(self._on_filter, names="value")
        self.confirm.observe(self._on_confirm_pending, names="pending")
        self.flatten_confirm.observe(lambda c: setattr(self, "flatten_pending", bool(c["new"])), names="pending")
        console.observe(lambda _c: self._update_preview(), names="stale")
        self.refresh()

    def refresh(self) -> None:
        positions = self.console.positions()
        symbols = sorted({p["symbol"] for p in positions} | ({self.symbol.value} - {""}))
        options = [("All symbols", ""), *((s, s) for s in symbols)]
        if list(self.symbol.options) != options:
            current = self.symbol.value
            with self.symbol.hold_trait_notifications():
                self.symbol.options = options
                self.symbol.value = current
        self._update_preview()

    # -- the confirmation step -----------------------------------------------------------------

    @guarded
    def ask(self, cmd_type: str) -> None:
        """Show the preview for ``cmd_type`` (``profit``/``loss``/``all``) with the current filters."""
        if cmd_type not in LABELS:
            raise ValueError(f"not a bulk command: {cmd_type!r}")
        self.message.clear()
        self.flatten_confirm.cancel()  # one confirmation at a time
        self._filters = {"symbol": self.symbol.value or None, "side": self.side.value or None}
        self.pending_type = cmd_type
        html, targets = self._preview_html()
        filters = dict(self._filters)
        self.confirm.ask(html, lambda: self._write_command(cmd_type, filters), can_confirm=bool(targets))

    def _on_filter(self, _change: dict[str, Any]) -> None:
        if self.pending_type:  # changing a filter while a preview is open: preview the new filter
            self.ask(self.pending_type)

    def _on_confirm_pending(self, change: dict[str, Any]) -> None:
        if not change["new"]:
            self.pending_type = ""

    def _update_preview(self) -> None:
        if self.pending_type and self.confirm.pending:
            html, targets = self._preview_html()
            self.confirm.update_preview(html, can_confirm=bool(targets))
        if self.flatten_confirm.pending:
            self.flatten_confirm.update_preview(self._flatten_preview_html())

    def _preview_html(self) -> tuple[str, list[dict[str, Any]]]:
        cmd_type = self.pending_type
        cur = self.console.currency
        targets, total = preview_targets(self.console.positions(), cmd_type, **self._filters)
        scope = " ".join(x for x in (self._filters.get("side"), self._filters.get("symbol")) if x) or "all"
        head = f"<b>{esc(LABELS[cmd_type])}</b> — filter: {esc(scope)} positions"
        if not targets:
            body = '<div data-count="0">No open position matches right now; there is nothing to confirm.</div>'
            return f"<div>{head}</div>{body}", targets
        listed = ", ".join(f"{p['ticket']} {esc(p['symbol'])} "
                           f"<span class='{pnl_class(net_pnl(p))}'>{esc(money(net_pnl(p), cur, signed=True))}</span>"
                           for p in targets[:PREVIEW_TICKETS])
        more = f" … and {len(targets) - PREVIEW_TICKETS} more" if len(targets) > PREVIEW_TICKETS else ""
        tickets = " ".join(str(p["ticket"]) for p in targets)
        acct = self.console.account() or {}
        body = (f'<div data-count="{len(targets)}" data-tickets="{tickets}" data-pnl="{total:.2f}">'
                f"<b>{len(targets)}</b> position(s) would close, realising about "
                f'<b class="{pnl_class(total)}">{esc(money(total, cur, signed=True))}</b> '
                f"at the prices of {esc(clock(acct.get('timestamp')))} UTC.</div>"
                f"<div class='fxnb-muted'>{listed}{more}</div>"
                "<div class='fxnb-muted'>The monitor chooses the tickets again when it runs the command, "
                "so a position that turns around before then is left alone.</div>")
        return f"<div>{head}</div>{body}{self._stale_note()}", targets

    def _stale_note(self) -> str:
        if not self.console.is_stale():
            return ""
        return ('<div class="fxnb-warning">The monitor is not running: the command will wait in the queue '
                f"and expire after {self.console.config.commands.max_age_seconds:g} s unless it restarts.</div>")

    @guarded
    def _write_command(self, cmd_type: str, filters: dict[str, Any]) -> None:
        fields = {k: v for k, v in filters.items() if v}
        cmd = self.console.send(cmd_type, **fields)
        scope = " ".join(str(v) for v in fields.values())
        self.message.ok(f"queued: {LABELS[cmd_type].lower()}{' (' + scope + ')' if scope else ''} "
                        f"— command {cmd.id}")

    def cancel(self) -> None:
        """Cancel a pending preview (same as the Cancel button)."""
        self.confirm.cancel()
        self.flatten_confirm.cancel()

    # -- flatten -----------------------------------------------------------------------------------

    @guarded
    def ask_flatten(self) -> None:
        """Show the Flatten preview (every open position, whatever the filters); Confirm writes ``flatten``."""
        self.message.clear()
        self.confirm.cancel()  # one confirmation at a time
        self.flatten_confirm.ask(self._flatten_preview_html(), self._write_flatten)

    def _flatten_preview_html(self) -> str:
        cur = self.console.currency
        targets, total = preview_targets(self.console.positions(), "all")
        acct = self.console.account() or {}
        head = "<div><b>Flatten</b> — every open position, whatever the symbol and side filters above.</div>"
        if targets:
            tickets = " ".join(str(p["ticket"]) for p in targets)
            book = (f'<div data-count="{len(targets)}" data-tickets="{tickets}" data-pnl="{total:.2f}">'
                    f"<b>{len(targets)}</b> position(s) would close, realising about "
                    f'<b class="{pnl_class(total)}">{esc(money(total, cur, signed=True))}</b> of floating P/L '
                    f"at the prices of {esc(clock(acct.get('timestamp')))} UTC.</div>")
        else:
            book = ('<div data-count="0" data-tickets="" data-pnl="0.00">No open position right now: a flatten '
                    "still pauses the rules and cancels any pending order.</div>")
        what = ("<div>The monitor first <b>pauses the automatic rules</b> — they stay paused until you press "
                "<b>Resume rules</b> — then closes every position it finds, cancels pending orders and checks "
                "that the book is flat. The Commands panel shows the outcome.</div>")
        return f"{head}{book}{what}{self._stale_note()}"

    @guarded
    def _write_flatten(self) -> None:
        cmd = self.console.send("flatten")
        self.message.ok(f"queued: flatten — command {cmd.id}; the rules will stay paused until resumed")


__all__ = ["BulkActionsPanel", "preview_targets"]
