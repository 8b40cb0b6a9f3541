"""Account guards: one row per guard, a LOCKED banner with a way out, and who paused the rules.

What is shown comes from the monitor's ``rule_state``: ``guard_status`` (one
row per guard, written after every evaluation), ``guards`` (the guards' memory:
the lock, its kind and reason) and ``rules_paused_by``. The thresholds come
from the console's config (what the monitor was started with). The console
never evaluates a guard itself: a guard the monitor has not evaluated yet is
shown as waiting, never as OK.

While the rules are paused by an operator or a flatten, the monitor does not
evaluate the guards, so the rows keep the values of the last evaluation; the
panel says so. While a guard lock holds, the monitor keeps the rows current.

**Resume rules** (with a confirmation: resuming re-anchors the guard that
fired) drops a ``resume_rules`` command, like the rules panel's button.
"""

from __future__ import annotations

import math
from typing import Any

import ipywidgets as w
import traitlets as t

from fxnb.guards import GUARD_NAMES, GuardSettings
from fxnb.widgets._fmt import clock, esc, money, parse_time
from fxnb.widgets.base import ConfirmBar, Panel, guarded, set_if_changed, show
from fxnb.widgets.context import Console

LABELS = {"basket": "Basket", "drawdown": "Drawdown", "daily_loss": "Daily loss", "breakeven": "Break-even",
          "trailing": "Trailing stop", "session_close": "Session close", "spread": "Spread filter"}
STATE_LABELS = {"off": "OFF", "ok": "OK", "warning": "WARNING", "fired": "FIRED", "locked": "LOCKED",
                "waiting": "NOT EVALUATED"}
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
LOCK_KINDS = {"until_resume": "until an operator resumes the rules",
              "until_next_day": "until the next trading day (or until an operator resumes the rules)"}


def describe_paused_by(by: str | None) -> tuple[str, str]:
    """``rules_paused_by`` as ``(kind, text)``: kind is ``operator``/``guard``/``flatten``/``unknown``/other."""
    if not by:
        return "unknown", "unknown"
    kind, _, who = str(by).partition(":")
    if kind == "operator":
        return kind, f"an operator ({who or 'operator'})"
    if kind == "flatten":
        return kind, f"a flatten ({who or 'operator'})"
    if kind == "guard":
        if who == "unreadable-state":
            return kind, "a guard: the guards' saved state could not be read"
        return kind, "a guard lock (" + ", ".join(LABELS.get(g, g) for g in who.split(",") if g) + ")"
    return kind or "unknown", str(by)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def setting_text(guard: str, gs: GuardSettings, cur: str) -> str:
    """The guard's thresholds from the config, in words."""
    if guard == "basket":
        s = gs.basket

        def amount(x: float | None) -> str:
            if x is None:
                return "—"
            return f"{x:g} % of balance" if s.unit == "percent" else money(x, cur)
        group = {"none": "all positions", "symbol": "per symbol", "magic": "per magic"}.get(s.group_by, s.group_by)
        return f"take profit {amount(s.take_profit)}, stop loss {amount(s.stop_loss)} ({group})"
    if guard == "drawdown":
        s2 = gs.drawdown
        period = "since the monitor started" if s2.period == "session" else "of the trading day"
        return (f"max {s2.max_percent:g} % below the equity high {period}; warn at {s2.warning_ratio:.0%}; "
                "locks until resumed")
    if guard == "daily_loss":
        s3 = gs.daily_loss
        cap = money(s3.max_loss, cur) if s3.unit == "money" else f"{s3.max_loss:g} % of the day's start balance"
        return f"max loss {cap} (realised + floating); warn at {s3.warning_ratio:.0%}; locks until the next day"
    if guard == "breakeven":
        s4 = gs.breakeven
        return f"at +{s4.trigger_points:g} points, SL to open + {s4.buffer_points:g} points"
    if guard == "trailing":
        s5 = gs.trailing
        unit = "points" if s5.mode == "points" else "% of price"
        return f"SL {s5.distance:g} {unit} behind, from +{s5.activation_points:g} points"
    if guard == "session_close":
        s6 = gs.session_close
        when = "every day" if s6.daily else f"{WEEKDAYS[s6.weekday]}" if s6.weekend else "never"
        symbols = ", ".join(s6.symbols) if s6.symbols else "every symbol"
        return f"{when} at {s6.time} server time (UTC{s6.utc_offset_hours:+g}); {symbols}"
    if guard == "spread":
        s7 = gs.spread
        limit = "no limit" if s7.max_points is None else f"max {s7.max_points:g} points"
        extra = f" ({len(s7.per_symbol)} per-symbol limits)" if s7.per_symbol else ""
        return f"{limit}{extra}; defers {', '.join(s7.applies_to) or 'nothing'}"
    return ""


def value_text(row: dict[str, Any], cur: str) -> str:
    """Current value vs limit, in the guard's own unit."""
    guard = row.get("guard")
    value, limit = _finite(row.get("value")), _finite(row.get("limit"))
    if guard in ("breakeven", "trailing"):
        return f"{int(value)} stop(s) moved" if value else "—"
    if value is None and limit is None:
        return "—"
    if guard == "basket":
        return f"P/L {money(value, cur, signed=True)} / target {money(limit, cur, signed=True)}"
    if guard == "daily_loss":
        return f"loss {money(value, cur)} / {money(limit, cur)}"
    if guard == "drawdown":
        v = "—" if value is None else f"{value:.2f} %"
        return f"{v} / {'—' if limit is None else f'{limit:g} %'}"
    if guard == "spread":
        v = "—" if value is None else f"{value:g}"
        return f"{v} / {'—' if limit is None else f'{limit:g}'} points"
    return f"{'—' if value is None else f'{value:g}'} / {'—' if limit is None else f'{limit:g}'}"


def last_action_text(value: Any) -> str:
    """``"<UTC ISO> <summary>"`` as ``YYYY-MM-DD HH:MM:SS summary`` (UTC)."""
    if not value:
        return ""
    when, _, summary = str(value).partition(" ")
    if parse_time(when) is None:
        return str(value)
    return f"{clock(when, with_date=True)} {summary}"


class GuardsPanel(Panel):
    """The guards' status rows, the LOCKED banner and its Resume rules button.

    CSS classes: ``guards-table`` (rows ``guard-row guard-<state>`` with
    ``data-guard``/``data-state``/``data-enabled``; each state badge also carries
    ``guard-state-<guard>``), ``guards-status`` (paused by / as of), the banner
    ``fxnb-locked-banner`` (shown only while locked), ``guards-resume`` and its
    confirmation ``guards-resume-confirm`` / ``guards-resume-cancel``.
    """

    css_class = "fxnb-guards"
    title_text = "Account guards"

    locked = t.Bool(False, help="the guards hold a lock (rules paused until resumed / the next day)")
    rows = t.List(help="the rows shown, one per guard (guard_status dicts, or config-only placeholders)")
    paused_by = t.Unicode("", help="rules_paused_by kind while the rules are paused: operator, guard, flatten")
    requested = t.Unicode("", help="'resume' while a resume_rules command from here is on its way")

    def __init__(self, console: Console, **kwargs: Any) -> None:
        super().__init__(console, **kwargs)
        self.banner = w.HTML()
        self.banner.add_class("fxnb-locked-banner")
        self.resume_button = w.Button(description="Resume rules…", button_style="success",
                                      tooltip="Clear the guard lock and let the rules run again (asks first)")
        self.resume_button.add_class("guards-resume")
        self.resume_button.on_click(lambda _b: self.ask_resume())
        self.confirm = ConfirmBar("guards-resume", confirm_label="Confirm resume")
        self.lock_box = w.VBox([self.banner, w.HBox([self.resume_button]), self.confirm])
        self.lock_box.add_class("guards-lock")
        self.status = w.HTML()
        self.status.add_class("guards-status")
        self.table = w.HTML(layout=w.Layout(overflow="auto"))
        self.table.add_class("guards-table")
        self._compose(self.lock_box, self.status, self.table)
        self._evaluated_at: str | None = None
        self._rules_paused: bool | None = None
        self._paused_by_text = ""
        console.observe(lambda _c: self._render_status(self.console.clock()), names="stale")
        self.refresh()

    @property
    def banner_visible(self) -> bool:
        return self.lock_box.layout.display != "none"

    # -- data ----------------------------------------------------------------------------------

    def refresh(self) -> None:
        state = self.console.guard_state()
        self.locked = bool(state.get("locked"))
        paused = self.console.rules_paused()
        self._rules_paused = None if paused is None else bool(paused)
        by_kind, self._paused_by_text = describe_paused_by(self.console.rules_paused_by()) if paused else ("", "")
        self.paused_by = by_kind
        if self.requested == "resume" and not self.locked:
            self.requested = ""
        status = self.console.guard_status()
        self._evaluated_at = self.console.guard_status_at() if status is not None else None
        self.rows = self._rows(status)
        self._render_banner(state)
        self._render_status(self.console.clock())
        set_if_changed(self.table, "value", self._table())

    def tick(self, now: float) -> None:
        self._render_status(now)  # the "not evaluated since" note moves with the clock alone

    def row(self, guard: str) -> dict[str, Any] | None:
        for r in self.rows:
            if r.get("guard") == guard:
                return r
        return None

    def state_of(self, guard: str) -> str | None:
        r = self.row(guard)
        return None if r is None else str(r.get("state"))

    def _rows(self, status: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        gs = self.console.config.guards
        if status is None:
            if not any(getattr(gs, g).enabled for g in GUARD_NAMES):
                return []
            return [{"guard": g, "enabled": getattr(gs, g).enabled,
                     "state": "waiting" if getattr(gs, g).enabled else "off",
                     "distance_text": "not evaluated by the monitor yet" if getattr(gs, g).enabled else "",
                     "placeholder": True} for g in GUARD_NAMES]
        by_name = {str(r["guard"]): r for r in status}
        order = [g for g in GUARD_NAMES if g in by_name] + sorted(set(by_name) - set(GUARD_NAMES))
        return [by_name[g] for g in order]

    # -- acting ----------------------------------------------------------------------------------

    @guarded
    def ask_resume(self) -> None:
        """Show what resuming does; Confirm drops a ``resume_rules`` command."""
        self.message.clear()
        guards = self.console.guard_state().get("lock_guards") or []
        notes = []
        if "drawdown" in guards:
            notes.append("the <b>drawdown</b> guard starts a new equity high at the equity of the moment")
        if "daily_loss" in guards:
            notes.append("the <b>daily loss</b> guard forgives today's loss so far and protects a fresh limit "
                         "for the rest of the day")
        html = ("<b>Resume rules</b> — clears the guard lock and lets the automatic rules close positions again."
                + (f"<div>When it resumes, {'; '.join(notes)}.</div>" if notes else "")
                + "<div class='fxnb-muted'>Check the account first: the guards locked it for a reason.</div>")
        self.confirm.ask(html, self._write_resume)

    @guarded
    def _write_resume(self) -> None:
        cmd = self.console.send("resume_rules")
        self.requested = "resume"
        self.message.ok(f"queued: resume rules (command {cmd.id}); the lock clears when the monitor applies it")
        self._render_banner(self.console.guard_state())

    # -- rendering -------------------------------------------------------------------------------

    def _render_banner(self, state: dict[str, Any]) -> None:
        if not self.locked:
            if self.confirm.pending:
                self.confirm.cancel()
            show(self.lock_box, False)
            return
        kind = str(state.get("lock_kind") or "")
        guards = [str(g) for g in state.get("lock_guards") or []]
        who = ", ".join(LABELS.get(g, g) for g in guards) or "a guard"
        until = LOCK_KINDS.get(kind, kind or "until resumed")
        if kind == "until_next_day" and state.get("lock_until"):
            until = (f"until {clock(state['lock_until'], with_date=True)} UTC (the next trading day), "
                     "or until an operator resumes the rules")
        since = f" since {esc(clock(state.get('locked_at'), with_date=True))} UTC" if state.get("locked_at") else ""
        dry = ""
        if self._rules_paused is False:
            hb = self.console.heartbeat() or {}
            mode = hb.get("rules_mode") or self.console.config.profit_monitor.rules_mode
            dry = ("<div><b>The rules are not paused</b>"
                   + (" (dry run: the monitor recorded the lock but closed nothing)" if mode == "dry_run" else "")
                   + "; the guards stay silent until the lock is cleared.</div>")
        pending = ""
        if self.requested == "resume":
            pending = "<div>Resume requested: waiting for the monitor to apply it.</div>"
        html = (f'<div data-locked="true" data-lock-kind="{esc(kind)}" data-guards="{esc(",".join(guards))}">'
                f'<div class="headline">LOCKED by {esc(who)}{since} — {esc(until)}</div>'
                f"<div>Why: {esc(state.get('lock_reason') or 'no reason recorded')}</div>{dry}"
                "<div>To resume: check the account, then press <b>Resume rules</b> below "
                "(or run <code>fxnb rules resume</code>).</div>"
                f"{pending}</div>")
        set_if_changed(self.banner, "value", html)
        set_if_changed(self.resume_button, "disabled", self.requested == "resume")
        show(self.lock_box, True)

    def _render_status(self, now: float) -> None:
        """The paused-by / evaluated-at line, from what :meth:`refresh` read (no database access: runs every tick)."""
        bits = []
        if self._rules_paused:
            bits.append(f'<span class="fxnb-badge paused" data-paused-by="{esc(self.paused_by)}">RULES PAUSED</span> '
                        f"by {esc(self._paused_by_text)}")
        if not self.rows:
            bits.append("All account guards are off (the <code>guards</code> section of config.json).")
        elif self._evaluated_at:
            bits.append(f"evaluated {esc(clock(self._evaluated_at, with_date=True))} UTC")
            if self._rules_paused and not self.locked:
                bits.append("<span class='fxnb-warning'>the monitor does not evaluate the guards while the rules "
                            "are paused: these are the figures of the last evaluation</span>")
            else:
                at = parse_time(self._evaluated_at)
                limit = max(10.0, 5 * self.console.check_interval)
                if at is not None and now - at.timestamp() > limit and not self.console.stale:
                    bits.append("<span class='fxnb-warning'>not evaluated for "
                                f"{now - at.timestamp():.0f} s: are the guards still enabled in the monitor's "
                                "config?</span>")
        elif any(r.get("placeholder") for r in self.rows):
            bits.append("enabled in config.json, not evaluated by the monitor yet")
        html = f'<div class="fxnb-muted" data-paused-by="{esc(self.paused_by)}">{" · ".join(bits)}</div>'
        set_if_changed(self.status, "value", html)

    def _table(self) -> str:
        if not self.rows:
            return ""
        cur = self.console.currency
        gs = self.console.config.guards
        head = ("<tr><th>Guard</th><th>State</th><th>Setting (config.json)</th><th>Now / limit</th>"
                "<th>Distance to firing</th><th>Last action (UTC)</th></tr>")
        body = []
        for r in self.rows:
            guard = str(r.get("guard"))
            state = str(r.get("state") or "off")
            enabled = bool(r.get("enabled"))
            configured = getattr(gs, guard, None)
            setting = "—"
            if configured is not None and (enabled or configured.enabled):
                setting = esc(setting_text(guard, gs, cur))
            if configured is not None and configured.enabled != enabled and not r.get("placeholder"):
                setting += (f" <span class='fxnb-warning'>config.json says {'on' if configured.enabled else 'off'}, "
                            f"the monitor runs it {'on' if enabled else 'off'}: restart the monitor to apply</span>")
            label = STATE_LABELS.get(state, state.upper())
            distance = _finite(r.get("distance"))
            body.append(
                f'<tr class="guard-row guard-{esc(state)}" data-guard="{esc(guard)}" data-state="{esc(state)}" '
                f'data-enabled="{str(enabled).lower()}" data-distance="{"" if distance is None else f"{distance:g}"}">'
                f"<td><b>{esc(LABELS.get(guard, guard))}</b></td>"
                f'<td><span class="fxnb-badge guard-badge guard-state-{esc(guard)} {esc(state)}" '
                f'data-state="{esc(state)}">{esc(label)}</span></td>'
                f'<td class="wrap">{setting}</td>'
                f"<td>{esc(value_text(r, cur)) if enabled else ''}</td>"
                f'<td class="wrap">{esc(r.get("distance_text") or "")}</td>'
                f'<td class="wrap">{esc(last_action_text(r.get("last_action")))}</td></tr>'
            )
        return (f'<table class="fxnb-table guards-rows"><thead>{head}</thead>'
                f'<tbody>{"".join(body)}</tbody></table>')


__all__ = ["GuardsPanel", "describe_paused_by", "setting_text", "value_text"]
