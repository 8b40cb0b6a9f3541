"""Positions grid: open positions as one HTML table, sorted and paged, with Close / Partial close.

Buttons cannot live inside an HTML table, so a row is chosen with the
*ticket* dropdown under the table (it lists the rows on the current page; the
chosen row is highlighted) and acted on with **Close** or **Partial close**
(lots or percent). Both ask for confirmation with a preview first.

Only one page (``page_size`` rows, 50 by default) is rendered, whatever the
size of the book: 1,000 positions cost one query and one sort per change, and
the widget count never grows with the number of positions.
"""

from __future__ import annotations

import math
from typing import Any

import ipywidgets as w
import traitlets as t

from fxnb.widgets._fmt import clock, esc, money, number, percent, pnl_class, price
from fxnb.widgets.base import ConfirmBar, Panel, guarded, set_if_changed
from fxnb.widgets.context import Console

ALL = ""
NO_CHOICE = 0  # the ticket dropdown's "nothing chosen" value (tickets are >= 1)
NO_CHOICE_LABEL = "— choose a position —"

SORT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("P/L", "pnl"),
    ("Ticket", "ticket"),
    ("Symbol", "symbol"),
    ("Side", "type"),
    ("Volume", "volume"),
    ("Profit %", "profit_percent"),
    ("Opened", "open_time"),
)


def net_pnl(position: dict[str, Any]) -> float:
    """Floating P/L net of swap: what the bulk commands and the rules compare with zero."""
    return float(position.get("profit") or 0.0) + float(position.get("swap") or 0.0)


def sort_positions(positions: list[dict[str, Any]], column: str, *, descending: bool) -> list[dict[str, Any]]:
    """Sorted copy; ties broken by ticket; rows missing the column (e.g. no profit %) always last."""
    if column == "pnl":
        return sorted(positions, key=lambda p: (net_pnl(p), p["ticket"]), reverse=descending)
    present = [p for p in positions if p.get(column) is not None]
    missing = [p for p in positions if p.get(column) is None]
    present.sort(key=lambda p: (p[column], p["ticket"]), reverse=descending)
    return present + missing


class PositionsPanel(Panel):
    """Open positions with sorting, a symbol filter, paging and per-ticket Close / Partial close.

    Rows carry ``data-ticket``, ``data-symbol``, ``data-side`` and
    ``data-profit`` (net P/L) attributes. Buttons have the CSS classes
    ``positions-close``, ``positions-partial``, ``positions-prev``,
    ``positions-next``, and the confirmation ``positions-confirm`` /
    ``positions-cancel``.
    """

    css_class = "fxnb-positions"
    title_text = "Open positions"

    page = t.Int(0, help="zero-based page shown")
    page_size = t.Int(50, help="rows rendered per page (the only rows that cost anything in the browser)")
    selected = t.Int(None, allow_none=True, help="ticket chosen for Close / Partial close")

    def __init__(self, console: Console, *, page_size: int = 50, **kwargs: Any) -> None:
        super().__init__(console, **kwargs)
        self.page_size = page_size
        self._positions: list[dict[str, Any]] = []
        self._view: list[dict[str, Any]] = []  # filtered + sorted, all pages
        self._page_rows: list[dict[str, Any]] = []

        self.summary = w.HTML()
        self.summary.add_class("positions-summary")
        self.sort_column = w.Dropdown(options=SORT_COLUMNS, value="pnl", description="Sort by",
                                      layout=w.Layout(width="190px"))
        self.sort_column.add_class("positions-sort")
        self.sort_direction = w.ToggleButtons(options=[("desc", "desc"), ("asc", "asc")], value="desc",
                                              style={"button_width": "52px"})
        self.sort_direction.add_class("positions-direction")
        self.symbol_filter = w.Dropdown(options=[("All symbols", ALL)], value=ALL, description="Symbol",
                                        layout=w.Layout(width="200px"))
        self.symbol_filter.add_class("positions-symbol")
        self.prev_button = w.Button(description="‹ Prev", layout=w.Layout(width="70px"))
        self.prev_button.add_class("positions-prev")
        self.next_button = w.Button(description="Next ›", layout=w.Layout(width="70px"))
        self.next_button.add_class("positions-next")
        self.page_label = w.HTML()
        self.page_label.add_class("positions-page")
        self.grid = w.HTML(layout=w.Layout(overflow="auto", max_height="520px"))
        self.grid.add_class("positions-grid")

        self.ticket = w.Dropdown(options=[(NO_CHOICE_LABEL, NO_CHOICE)], value=NO_CHOICE, description="Ticket",
                                 layout=w.Layout(width="340px"))
        self.ticket.add_class("positions-ticket")
        self.close_button = w.Button(description="Close", button_style="warning",
                                     tooltip="Close the whole chosen position (asks to confirm)")
        self.close_button.add_class("positions-close")
        self.partial_mode = w.ToggleButtons(options=[("%", "percent"), ("lots", "volume")], value="percent",
                                            style={"button_width": "48px"})
        self.partial_mode.add_class("positions-partial-mode")
        self.partial_amount = w.BoundedFloatText(value=50.0, min=0.0, max=100.0, step=1.0,
                                                 layout=w.Layout(width="90px"))
        self.partial_amount.add_class("positions-partial-amount")
        self.partial_button = w.Button(description="Partial close", button_style="warning",
                                       tooltip="Close part of the chosen position (asks to confirm)")
        self.partial_button.add_class("positions-partial")
        self.confirm = ConfirmBar("positions")

        controls = w.HBox([self.sort_column, self.sort_direction, self.symbol_filter,
                           self.prev_button, self.page_label, self.next_button])
        actions = w.HBox([self.ticket, self.close_button, w.HTML("&nbsp;or&nbsp;"), self.partial_mode,
                          self.partial_amount, self.partial_button])
        self._compose(self.summary, controls, self.grid, actions, self.confirm)

        self.sort_column.observe(self._on_view_change, names="value")
        self.sort_direction.observe(self._on_view_change, names="value")
        self.symbol_filter.observe(self._on_filter_change, names="value")
        self.prev_button.on_click(lambda _b: self._go(-1))
        self.next_button.on_click(lambda _b: self._go(+1))
        self.ticket.observe(self._on_ticket, names="value")
        self.partial_mode.observe(self._on_partial_mode, names="value")
        self.close_button.on_click(self._ask_close)
        self.partial_button.on_click(self._ask_partial)
        console.observe(lambda _c: self._render(), names="stale")
        self.refresh()

    # -- data --------------------------------------------------------------------------------

    def refresh(self) -> None:
        self._positions = self.console.positions()
        self._render()
        if self.confirm.pending and self._pending_ticket is not None:
            self._update_pending_preview()

    @property
    def rendered_rows(self) -> int:
        """Rows in the table right now (bounded by ``page_size``)."""
        return len(self._page_rows)

    @property
    def position_count(self) -> int:
        return len(self._positions)

    def position(self, ticket: int | None) -> dict[str, Any] | None:
        if not ticket:
            return None
        for p in self._positions:
            if p["ticket"] == ticket:
                return p
        return None

    # -- view ------------------------------------------------------------------------------------

    def _on_view_change(self, _change: dict[str, Any]) -> None:
        self._render()

    def _on_filter_change(self, _change: dict[str, Any]) -> None:
        self.page = 0
        self._render()

    def _go(self, step: int) -> None:
        self.page = max(0, min(self._pages() - 1, self.page + step))
        self._render()

    def _pages(self) -> int:
        return max(1, math.ceil(len(self._view) / max(1, self.page_size)))

    def _render(self) -> None:
        self._update_symbols()
        symbol = self.symbol_filter.value
        view = sort_positions([p for p in self._positions if not symbol or p["symbol"] == symbol],
                              self.sort_column.value, descending=self.sort_direction.value == "desc")
        self._view = view
        self.page = max(0, min(self.page, self._pages() - 1))
        start = self.page * self.page_size
        self._page_rows = view[start:start + self.page_size]
        self._update_tickets()
        set_if_changed(self.grid, "value", self._table())
        set_if_changed(self.summary, "value", self._summary(view, start))
        set_if_changed(self.page_label, "value",
                       f'<span class="fxnb-muted">page {self.page + 1} / {self._pages()}</span>')
        set_if_changed(self.prev_button, "disabled", self.page == 0)
        set_if_changed(self.next_button, "disabled", self.page >= self._pages() - 1)
        nothing = not self.ticket.value
        set_if_changed(self.close_button, "disabled", nothing)
        set_if_changed(self.partial_button, "disabled", nothing)

    def _update_symbols(self) -> None:
        symbols = sorted({p["symbol"] for p in self._positions})
        current = self.symbol_filter.value
        if current and current not in symbols:
            symbols.append(current)  # keep the operator's filter even if that symbol has no position now
            symbols.sort()
        options = [("All symbols", ALL), *((s, s) for s in symbols)]
        if list(self.symbol_filter.options) != options:
            with self.symbol_filter.hold_trait_notifications():
                self.symbol_filter.options = options
                self.symbol_filter.value = current

    def _update_tickets(self) -> None:
        rows = self._page_rows
        options = [(NO_CHOICE_LABEL, NO_CHOICE),
                   *((f"{p['ticket']} · {p['symbol']} {p['type']} {p['volume']:g} lots", p["ticket"]) for p in rows)]
        current = self.ticket.value
        if list(self.ticket.options) != options:
            keep = current if any(p["ticket"] == current for p in rows) else NO_CHOICE
            with self.ticket.hold_trait_notifications():
                self.ticket.options = options
                self.ticket.value = keep
        self.selected = self.ticket.value or None

    def _summary(self, view: list[dict[str, Any]], start: int) -> str:
        cur = self.console.currency
        total = sum(net_pnl(p) for p in view)
        if not self._positions:
            why = self.console.storage_error or "no open positions"
            return f'<span class="fxnb-muted">{esc(why)}</span>'
        shown = f"{start + 1}–{start + len(self._page_rows)}" if self._page_rows else "0"
        stale = ('<span class="fxnb-neg"> · monitor not running: these positions may no longer be open</span>'
                 if self.console.stale else "")
        return (f'<span class="fxnb-muted" data-count="{len(view)}">{len(view)} of {len(self._positions)} open · '
                f"showing {shown} · floating P/L "
                f'<b class="{pnl_class(total)}">{esc(money(total, cur, signed=True))}</b></span>{stale}')

    def _table(self) -> str:
        cur = self.console.currency
        head = ("<tr><th class='num'>Ticket</th><th>Symbol</th><th>Side</th><th class='num'>Volume</th>"
                "<th class='num'>Open</th><th class='num'>Current</th><th class='num'>Swap</th>"
                "<th class='num'>P/L</th><th class='num'>Profit %</th><th>Opened (UTC)</th></tr>")
        body = []
        for p in self._page_rows:
            pnl = net_pnl(p)
            sel = " fxnb-selected" if p["ticket"] == self.ticket.value else ""
            body.append(
                f'<tr class="fxnb-row{sel}" data-ticket="{p["ticket"]}" data-symbol="{esc(p["symbol"])}" '
                f'data-side="{esc(p["type"])}" data-profit="{pnl:.2f}">'
                f'<td class="num">{p["ticket"]}</td><td>{esc(p["symbol"])}</td><td>{esc(p["type"])}</td>'
                f'<td class="num">{p["volume"]:g}</td><td class="num">{price(p.get("open_price"))}</td>'
                f'<td class="num">{price(p.get("current_price"))}</td>'
                f'<td class="num">{esc(number(p.get("swap")))}</td>'
                f'<td class="num {pnl_class(pnl)}">{esc(money(pnl, cur, signed=True))}</td>'
                f'<td class="num">{esc(percent(p.get("profit_percent")))}</td>'
                f'<td>{esc(clock(p.get("open_time"), with_date=True))}</td></tr>'
            )
        if not body:
            body.append('<tr><td colspan="10" class="fxnb-muted">no positions match</td></tr>')
        return f'<table class="fxnb-table positions-table"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'

    # -- selection and actions -------------------------------------------------------------------

    _pending_ticket: int | None = None
    _pending_kind: str = ""
    _pending_amount: tuple[str, float] = ("percent", 0.0)

    def select(self, ticket: int) -> None:
        """Choose ``ticket`` (it must be on the current page), as picking it in the dropdown does."""
        self.ticket.value = ticket

    def _on_ticket(self, change: dict[str, Any]) -> None:
        self.selected = change["new"] or None
        self._render()

    def _on_partial_mode(self, change: dict[str, Any]) -> None:
        if change["new"] == "percent":
            self.partial_amount.max = 100.0
            self.partial_amount.step = 1.0
            self.partial_amount.value = 50.0
        else:
            pos = self.position(self.ticket.value)
            self.partial_amount.max = 1000.0
            self.partial_amount.step = 0.01
            self.partial_amount.value = round(pos["volume"] / 2, 2) if pos else 0.01

    def _stale_warning(self) -> str:
        if not self.console.is_stale():
            return ""
        return ('<div class="fxnb-warning">The monitor is not running: the command will wait in the queue '
                f"and expire after {self.console.config.commands.max_age_seconds:g} s unless it restarts.</div>")

    @guarded
    def _ask_close(self, _button: w.Button | None = None) -> None:
        pos = self.position(self.ticket.value)
        if pos is None:
            self.message.error("choose an open position first")
            return
        self._pending_ticket, self._pending_kind = pos["ticket"], "single"
        self.message.clear()
        ticket = pos["ticket"]
        self.confirm.ask(self._preview(pos), lambda: self._write_command(ticket, "single", None))

    @guarded
    def _ask_partial(self, _button: w.Button | None = None) -> None:
        pos = self.position(self.ticket.value)
        if pos is None:
            self.message.error("choose an open position first")
            return
        amount = float(self.partial_amount.value)
        if self.partial_mode.value == "percent":
            if not 0 < amount < 100:
                self.message.error("partial close: percent must be between 0 and 100 (use Close for all of it)")
                return
        elif not 0 < amount < pos["volume"]:
            self.message.error(f"partial close: lots must be above 0 and below the position's "
                               f"{pos['volume']:g} lots (use Close for all of it)")
            return
        self._pending_ticket, self._pending_kind = pos["ticket"], "partial"
        self._pending_amount = (self.partial_mode.value, amount)
        self.message.clear()
        ticket, spec = pos["ticket"], self._pending_amount
        self.confirm.ask(self._preview(pos), lambda: self._write_command(ticket, "partial", spec))

    def _preview(self, pos: dict[str, Any]) -> str:
        cur = self.console.currency
        pnl = net_pnl(pos)
        what = (f"<b>{pos['ticket']}</b> {esc(pos['symbol'])} {esc(pos['type'])} {pos['volume']:g} lots, "
                f'floating P/L <b class="{pnl_class(pnl)}">{esc(money(pnl, cur, signed=True))}</b>')
        if self._pending_kind == "single":
            head = f"Close position {what}?"
            tail = "The monitor closes it at the market price; the realised P/L will differ as prices move."
        else:
            mode, amount = self._pending_amount
            fraction = amount / 100 if mode == "percent" else amount / pos["volume"]
            part = f"{amount:g} %" if mode == "percent" else f"{amount:g} lots"
            head = f"Close {part} of position {what}?"
            tail = (f"About {esc(money(pnl * fraction, cur, signed=True))} would be realised; the monitor rounds "
                    "the volume to the symbol's lot step.")
        return f"<div>{head}</div><div class='fxnb-muted'>{tail}</div>{self._stale_warning()}"

    def _update_pending_preview(self) -> None:
        pos = self.position(self._pending_ticket)
        if pos is None:
            self.confirm.update_preview(
                f"Position {self._pending_ticket} is no longer open; nothing to close.", can_confirm=False)
        else:
            self.confirm.update_preview(self._preview(pos), can_confirm=True)

    @guarded
    def _write_command(self, ticket: int, kind: str, spec: tuple[str, float] | None) -> None:
        self._pending_ticket = None
        if kind == "single" or spec is None:
            cmd = self.console.send("single", ticket=ticket)
            self.message.ok(f"queued: close {ticket} (command {cmd.id})")
            return
        mode, amount = spec
        if mode == "percent":
            cmd = self.console.send("partial", ticket=ticket, percent=amount)
        else:
            cmd = self.console.send("partial", ticket=ticket, volume=amount)
        unit = "%" if mode == "percent" else " lots"
        self.message.ok(f"queued: close {amount:g}{unit} of {ticket} (command {cmd.id})")


__all__ = ["PositionsPanel", "SORT_COLUMNS", "net_pnl", "sort_positions"]
