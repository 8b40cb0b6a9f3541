"""Account panel: balance, equity, margins and floating P/L in the account's own currency."""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import traitlets as t

from fxnb.widgets._fmt import clock, esc, money, percent, pnl_class
from fxnb.widgets.base import Panel, set_if_changed
from fxnb.widgets.context import Console


def _card(field: str, label: str, value: str, css: str = "") -> str:
    return (f'<div class="fxnb-card" data-field="{field}"><div class="label">{esc(label)}</div>'
            f'<div class="value {css}">{esc(value)}</div></div>')


class AccountPanel(Panel):
    """The latest account snapshot from ``profit_monitoring``.

    Floating P/L is the snapshot's ``net_profit`` (winners minus losers,
    profit + swap), the same figure the equity curve plots. Amounts are shown in
    the currency the terminal reports, never a hard-coded ``$``.
    """

    css_class = "fxnb-account"
    title_text = "Account"

    snapshot = t.Dict(allow_none=True, default_value=None, help="the profit_monitoring row shown")

    def __init__(self, console: Console, **kwargs: Any) -> None:
        super().__init__(console, **kwargs)
        self.header = w.HTML()
        self.header.add_class("fxnb-account-header")
        self.cards = w.HTML()
        self.cards.add_class("fxnb-account-cards")
        self._compose(self.header, self.cards)
        console.observe(self._on_stale, names="stale")
        self.refresh()

    def refresh(self) -> None:
        self.snapshot = self.console.account()
        self._render()

    def _on_stale(self, _change: dict[str, Any]) -> None:
        self._render()

    def _render(self) -> None:
        acct = self.snapshot
        if not acct:
            why = self.console.storage_error or "no account snapshot yet: the monitor has not polled the terminal"
            set_if_changed(self.header, "value", f'<span class="fxnb-muted">{esc(why)}</span>')
            set_if_changed(self.cards, "value", "")
            return
        cur = acct.get("currency") or ""
        stale = self.console.stale
        note = ' · <span class="fxnb-neg">monitor not running — figures may be out of date</span>' if stale else ""
        login = f"#{acct['login']} · " if acct.get("login") else ""
        header = (f'<span class="fxnb-muted" data-currency="{esc(cur)}" data-stale="{str(stale).lower()}">'
                  f"{esc(login)}{esc(cur)} · as of {esc(clock(acct.get('timestamp'), with_date=True))} UTC"
                  f"{note}</span>")
        floating = acct.get("net_profit")
        margin = acct.get("margin") or 0.0
        cards = "".join([
            _card("balance", "Balance", money(acct.get("balance"), cur)),
            _card("equity", "Equity", money(acct.get("equity"), cur)),
            _card("floating", "Floating P/L", money(floating, cur, signed=True), pnl_class(floating)),
            _card("margin", "Margin", money(margin, cur)),
            _card("free_margin", "Free margin", money(acct.get("margin_free"), cur)),
            _card("margin_level", "Margin level", percent(acct.get("margin_level")) if margin else "—"),
            _card("positions", "Open positions", str(acct.get("total_positions", "—"))),
        ])
        set_if_changed(self.header, "value", header)
        set_if_changed(self.cards, "value", f'<div class="fxnb-cards">{cards}</div>')
