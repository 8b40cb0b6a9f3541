"""Rules panel: the configured profit rules, whether they are paused, and Pause / Resume.

Thresholds and mode come from the config (what the monitor was started with;
the heartbeat's ``rules_mode`` is what it actually runs). The paused flag comes
from the durable ``rule_state`` (falling back to the heartbeat), with who
paused them (an operator, a flatten or a guard lock). Pause and
Resume drop ``pause_rules`` / ``resume_rules`` commands; the change shows here
once the monitor has applied it. Pausing stops the automatic rules only:
operator commands still run.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import traitlets as t

from fxnb.widgets._fmt import esc, money
from fxnb.widgets.base import Panel, guarded, set_if_changed
from fxnb.widgets.context import Console
from fxnb.widgets.guards import describe_paused_by

MODES = {"live": "live — closes positions", "dry_run": "dry run — records decisions, closes nothing",
         "off": "off"}
BASES = {"balance": "of balance", "equity": "of equity", "price_move": "price move from open"}


class RulesPanel(Panel):
    """Mode, thresholds (with the amount they mean now), paused state, Pause / Resume.

    CSS classes: ``rules-pause``, ``rules-resume``, ``rules-state`` (with ``data-paused``
    and ``data-paused-by``: ``operator``, ``flatten``, ``guard`` or ``unknown``).
    """

    css_class = "fxnb-rules"
    title_text = "Profit rules"

    paused = t.Bool(None, allow_none=True, help="rules paused (None while unknown)")
    requested = t.Unicode("", help="'pause' or 'resume' while a command is on its way")
    paused_by = t.Unicode("", help="who paused the rules (rules_paused_by, e.g. 'flatten:voila'); '' if running")

    def __init__(self, console: Console, **kwargs: Any) -> None:
        super().__init__(console, **kwargs)
        self.state = w.HTML()
        self.state.add_class("rules-state")
        self.settings = w.HTML()
        self.settings.add_class("rules-settings")
        self.pause_button = w.Button(description="Pause rules", button_style="warning",
                                     tooltip="Stop the automatic closes (operator commands still run)")
        self.pause_button.add_class("rules-pause")
        self.resume_button = w.Button(description="Resume rules", button_style="success",
                                      tooltip="Let the automatic profit rules run again")
        self.resume_button.add_class("rules-resume")
        self.pause_button.on_click(lambda _b: self.pause())
        self.resume_button.on_click(lambda _b: self.resume())
        self._compose(self.state, self.settings, w.HBox([self.pause_button, self.resume_button]))
        self.refresh()

    @guarded
    def pause(self) -> None:
        """Drop a ``pause_rules`` command."""
        cmd = self.console.send("pause_rules")
        self.requested = "pause"
        self.message.ok(f"queued: pause rules (command {cmd.id})")
        self._render()

    @guarded
    def resume(self) -> None:
        """Drop a ``resume_rules`` command."""
        cmd = self.console.send("resume_rules")
        self.requested = "resume"
        self.message.ok(f"queued: resume rules (command {cmd.id})")
        self._render()

    def refresh(self) -> None:
        paused = self.console.rules_paused()
        if paused is None:
            hb = self.console.heartbeat()
            paused = None if hb is None else hb.get("rules_paused")
        self.paused = None if paused is None else bool(paused)
        self.paused_by = (self.console.rules_paused_by() or "") if self.paused else ""
        if (self.requested == "pause" and self.paused) or (self.requested == "resume" and self.paused is False):
            self.requested = ""
        self._render()

    def _render(self) -> None:
        pm = self.console.config.profit_monitor
        hb = self.console.heartbeat() or {}
        running_mode = hb.get("rules_mode") or pm.rules_mode
        if self.paused is None:
            badge = '<span class="fxnb-badge">unknown</span>'
        elif self.paused:
            badge = (f'<span class="fxnb-badge paused">PAUSED</span> by '
                     f"{esc(describe_paused_by(self.paused_by or None)[1])} ·")
        elif running_mode == "off":
            badge = '<span class="fxnb-badge">OFF</span>'
        elif running_mode == "dry_run":
            badge = '<span class="fxnb-badge paused">DRY RUN</span>'
        else:
            badge = '<span class="fxnb-badge live">ACTIVE</span>'
        pending = ""
        if self.requested:
            pending = f' · <span class="fxnb-muted">{self.requested} requested, waiting for the monitor</span>'
        mode_note = ""
        if running_mode != pm.rules_mode:
            mode_note = f" (config says {esc(pm.rules_mode)}; the monitor runs {esc(running_mode)})"
        by_kind = describe_paused_by(self.paused_by or None)[0] if self.paused else ""
        state = (f'<div data-paused="{str(self.paused).lower()}" data-paused-by="{esc(by_kind)}" '
                 f'data-mode="{esc(running_mode)}">{badge} '
                 f"mode: <b>{esc(MODES.get(running_mode, running_mode))}</b>{mode_note}{pending}</div>")
        set_if_changed(self.state, "value", state)
        set_if_changed(self.settings, "value", self._settings_html())
        set_if_changed(self.pause_button, "disabled", self.paused is True or self.requested == "pause")
        set_if_changed(self.resume_button, "disabled", self.paused is False or self.requested == "resume")

    def _settings_html(self) -> str:
        pm = self.console.config.profit_monitor
        basis = pm.profit_basis
        acct = self.console.account() or {}
        cur = acct.get("currency") or self.console.currency
        base_amount = acct.get(basis) if basis in ("balance", "equity") else None

        def amount(pct: float) -> str:
            if base_amount is None:
                return ""
            return f" ≈ {esc(money(base_amount * pct / 100, cur))} per position"

        rows = [f"Full close at <b>{pm.min_profit_percent:g} %</b> {esc(BASES.get(basis, basis))}"
                f"{amount(pm.min_profit_percent)}"]
        if pm.partial_close_enabled:
            rows.append(f"Partial close of <b>{pm.partial_close_percent:g} %</b> of the volume at "
                        f"<b>{pm.partial_close_threshold:g} %</b>{amount(pm.partial_close_threshold)} "
                        "(once per position)")
        else:
            rows.append("Partial close: off")
        rows.append(f"Checked every {pm.check_interval:g} s")
        return "<div class='fxnb-muted'>" + "<br>".join(rows) + "</div>"


__all__ = ["RulesPanel"]
