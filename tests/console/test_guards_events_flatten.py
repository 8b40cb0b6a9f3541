"""Guards, events and Flatten, headless: rule_state and events written through Store, buttons clicked."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_helpers import FakeClock, command_files

from fxnb.config import Config
from fxnb.guards import GuardSettings
from fxnb.storage import Reader, Store
from fxnb.widgets import (
    BulkActionsPanel,
    CommandTracker,
    Console,
    Dashboard,
    EventsPanel,
    GuardsPanel,
    LiveRefresh,
    RulesPanel,
    describe_paused_by,
)

GUARDS_ON = {"drawdown": {"enabled": True, "max_percent": 10.0}, "daily_loss": {"enabled": True, "max_loss": 300.0,
                                                                                 "unit": "money"},
             "basket": {"enabled": True, "take_profit": 500.0, "unit": "money"}, "spread": {"enabled": True},
             "breakeven": {"enabled": True}}


def status_row(guard: str, state: str, *, enabled: bool = True, **kw: Any) -> dict[str, Any]:
    row = {"guard": guard, "enabled": enabled, "state": state, "value": None, "limit": None, "distance": None,
           "distance_text": "", "last_action": None}
    row.update(kw)
    return row


EVERY_STATE = [
    status_row("basket", "fired", value=520.0, limit=500.0, distance=-20.0,
               distance_text="all positions: P/L 520.00, take profit 500.00 reached",
               last_action="2026-11-18T10:00:01.5+00:00 closed 3 position(s) in all positions"),
    status_row("drawdown", "warning", value=8.5, limit=10.0, distance=1.5,
               distance_text="drawdown 8.50% of max 10%; 1.50 percentage points to go"),
    status_row("daily_loss", "ok", value=40.0, limit=300.0, distance=260.0, distance_text="260.00 to go"),
    status_row("breakeven", "ok", value=0.0, distance_text="watching 5 position(s)"),
    status_row("trailing", "off", enabled=False),
    status_row("session_close", "off", enabled=False),
    status_row("spread", "locked", value=12.0, limit=30.0, distance=18.0, distance_text="EURUSD spread 12 points"),
]

LOCK = {"locked": True, "lock_kind": "until_resume", "lock_guards": ["drawdown"],
        "lock_reason": "drawdown 10.80% >= max 10% (equity 8,920.00 from high 10,000.00): closing everything, "
                       "locked until resume_rules",
        "locked_at": "2026-11-18T10:00:00+00:00", "lock_until": None}


def with_guards(cfg: Config, section: dict[str, Any]) -> Config:
    return dataclasses.replace(cfg, guards=GuardSettings.from_mapping(section))


@pytest.fixture
def gconsole(cfg: Config, store: Store, clock: FakeClock) -> Iterator[Console]:
    """A console whose config enables some guards (the monitor's view is whatever the test writes)."""
    c = Console(with_guards(cfg, GUARDS_ON), clock=clock, requested_by="test")
    yield c
    c.close()


def guard_rows(html: str) -> dict[str, str]:
    return dict(re.findall(r'<tr class="guard-row[^"]*" data-guard="([^"]+)" data-state="([^"]+)"', html))


def event_rows(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<tr class="event-row[^"]*" data-id="\d+" data-level="([^"]+)" data-kind="([^"]+)"', html)


def lock(store: Store, by: str = "guard:drawdown", **changes: Any) -> None:
    store.set_rule_state("guards", {**LOCK, **changes})
    store.set_rule_state("rules_paused", True)
    store.set_rule_state("rules_paused_by", by)


def unlock(store: Store) -> None:
    store.set_rule_state("guards", {**LOCK, "locked": False, "lock_kind": "", "lock_guards": [], "lock_reason": ""})
    store.set_rule_state("rules_paused", False)
    store.set_rule_state("rules_paused_by", None)


# -- guard rows --------------------------------------------------------------------------------


def test_guard_rows_render_every_state(gconsole: Console, store: Store, mixed_book) -> None:
    store.set_rule_state("guard_status", EVERY_STATE)
    panel = GuardsPanel(gconsole)
    html = panel.table.value
    assert guard_rows(html) == {"basket": "fired", "drawdown": "warning", "daily_loss": "ok", "breakeven": "ok",
                                "trailing": "off", "session_close": "off", "spread": "locked"}
    for guard, state, label in (("basket", "fired", "FIRED"), ("drawdown", "warning", "WARNING"),
                                ("daily_loss", "ok", "OK"), ("spread", "locked", "LOCKED"), ("trailing", "off", "OFF")):
        assert f'class="fxnb-badge guard-badge guard-state-{guard} {state}" data-state="{state}">{label}<' in html
    assert '<tr class="guard-row guard-warning" data-guard="drawdown"' in html
    assert "8.50 % / 10 %" in html and "1.50 percentage points to go" in html
    assert "loss €40.00 / €300.00" in html  # money in the account's currency
    assert "P/L +€520.00 / target +€500.00" in html and "12 / 30 points" in html
    assert "2026-11-18 10:00:01 closed 3 position(s) in all positions" in html  # last action, UTC
    assert "max 10 % below the equity high" in html and "max loss €300.00" in html  # settings from config
    assert panel.state_of("drawdown") == "warning" and not panel.banner_visible
    assert "evaluated 2026-11-18" in panel.status.value


def test_guards_all_off_is_one_line(console: Console, mixed_book) -> None:
    panel = GuardsPanel(console)  # the shipped defaults: every guard disabled, nothing evaluated
    assert panel.rows == [] and panel.table.value == ""
    assert "All account guards are off" in panel.status.value


def test_enabled_guards_not_yet_evaluated_never_show_ok(gconsole: Console, mixed_book) -> None:
    panel = GuardsPanel(gconsole)
    states = guard_rows(panel.table.value)
    assert states["drawdown"] == "waiting" and states["trailing"] == "off"
    assert "OK<" not in panel.table.value and "NOT EVALUATED" in panel.table.value
    assert "not evaluated by the monitor yet" in panel.status.value


def test_config_and_monitor_disagreeing_is_flagged(console: Console, store: Store, mixed_book) -> None:
    store.set_rule_state("guard_status", [status_row("drawdown", "ok", value=1.0, limit=10.0)])
    panel = GuardsPanel(console)  # config: drawdown off; the monitor runs it
    assert "config.json says off, the monitor runs it on" in panel.table.value


def test_guards_not_evaluated_while_paused_or_for_long(gconsole: Console, store: Store, mixed_book,
                                                       clock: FakeClock) -> None:
    store.set_rule_state("guard_status", EVERY_STATE)
    panel = GuardsPanel(gconsole)
    clock.advance(30)
    from console_helpers import beat

    beat(store, clock())  # the monitor is alive, but wrote no guard status for 30 s
    panel.refresh()
    assert "not evaluated for 30 s" in panel.status.value
    store.set_rule_state("rules_paused", True)
    store.set_rule_state("rules_paused_by", "operator:lab")
    panel.refresh()
    assert "does not evaluate the guards while the rules are paused" in panel.status.value
    assert 'data-paused-by="operator"' in panel.status.value and "by an operator (lab)" in panel.status.value


# -- the lock --------------------------------------------------------------------------------------


def test_locked_banner_appears_resume_confirms_then_disappears(gconsole: Console, cfg: Config, store: Store,
                                                               mixed_book) -> None:
    store.set_rule_state("guard_status", EVERY_STATE)
    dash = Dashboard(gconsole)
    panel = dash.guards
    assert not panel.banner_visible and "fxnb-locked" not in dash._dom_classes
    lock(store)
    dash.refresh()
    assert panel.locked and panel.banner_visible and "fxnb-locked" in dash._dom_classes
    banner = panel.banner.value
    assert 'data-locked="true" data-lock-kind="until_resume" data-guards="drawdown"' in banner
    assert "LOCKED by Drawdown since 2026-11-18 10:00:00 UTC — until an operator resumes the rules" in banner
    assert "Why: drawdown 10.80% &gt;= max 10%" in banner and "Resume rules" in banner
    assert 'data-paused-by="guard"' in dash.rules.state.value and "a guard lock (Drawdown)" in dash.rules.state.value

    panel.resume_button.click()
    assert panel.confirm.pending and "new equity high" in panel.confirm.preview.value
    assert command_files(cfg) == []  # nothing before Confirm
    panel.confirm.cancel_button.click()
    assert command_files(cfg) == []
    panel.resume_button.click()
    panel.confirm.confirm_button.click()
    assert [f["type"] for f in command_files(cfg)] == ["resume_rules"]
    assert panel.requested == "resume" and panel.resume_button.disabled and "Resume requested" in panel.banner.value

    unlock(store)
    dash.refresh()
    assert not panel.locked and not panel.banner_visible and panel.requested == ""
    assert "fxnb-locked" not in dash._dom_classes
    assert dash.rules.paused is False


def test_daily_lock_says_until_when(gconsole: Console, store: Store, mixed_book) -> None:
    lock(store, by="guard:daily_loss", lock_kind="until_next_day", lock_guards=["daily_loss"],
         lock_until="2026-11-18T22:00:00+00:00", lock_reason="daily loss 300.00 >= max 300.00")
    panel = GuardsPanel(gconsole)
    assert "until 2026-11-18 22:00:00 UTC (the next trading day)" in panel.banner.value
    panel.resume_button.click()
    assert "forgives today's loss so far" in panel.confirm.preview.value


def test_a_lock_without_paused_rules_says_so(gconsole: Console, store: Store, mixed_book, clock: FakeClock) -> None:
    from console_helpers import beat

    beat(store, clock(), rules_mode="dry_run")
    store.set_rule_state("guards", LOCK)  # dry run: the monitor records the lock but pauses nothing
    store.set_rule_state("rules_paused", False)
    panel = GuardsPanel(gconsole)
    assert panel.banner_visible
    assert "The rules are not paused</b> (dry run: the monitor recorded the lock but closed nothing)" in \
        panel.banner.value


@pytest.mark.parametrize(("by", "kind", "text"), [
    ("operator:console", "operator", "an operator (console)"),
    ("flatten:voila", "flatten", "a flatten (voila)"),
    ("guard:drawdown,daily_loss", "guard", "a guard lock (Drawdown, Daily loss)"),
    (None, "unknown", "unknown"),
])
def test_paused_by_is_shown(console: Console, store: Store, mixed_book, by: str | None, kind: str,
                            text: str) -> None:
    assert describe_paused_by(by) == (kind, text)
    store.set_rule_state("rules_paused", True)
    store.set_rule_state("rules_paused_by", by)
    rules = RulesPanel(console)
    assert f'data-paused-by="{kind}"' in rules.state.value and f"PAUSED</span> by {text}" in rules.state.value


# -- events ------------------------------------------------------------------------------------------


def test_events_newest_first_level_coloured_and_filtered(console: Console, store: Store, clock: FakeClock) -> None:
    for level, kind, msg in (("info", "connected", "terminal connected"),
                             ("warning", "guard_warning", "drawdown warning: 8.50% >= 80% of the 10% limit"),
                             ("error", "guard_fired", "drawdown 10.80% >= max 10%: closing everything"),
                             ("info", "rule_close", "drawdown: 2 tickets"),
                             ("error", "command_failed", "command x (all) failed: 10018 market closed")):
        clock.advance(1)
        store.event(level, kind, msg, {"guard": "drawdown"} if kind.startswith("guard") else None)
    panel = EventsPanel(console)
    assert [k for _, k in event_rows(panel.table.value)] == ["command_failed", "rule_close", "guard_fired",
                                                              "guard_warning", "connected"]
    assert '<tr class="event-row event-error"' in panel.table.value
    assert '<span class="fxnb-badge warning">warning</span>' in panel.table.value
    assert 'title="{&quot;guard&quot;: &quot;drawdown&quot;}"' in panel.table.value  # the event's data
    panel.level.value = "warning"
    assert event_rows(panel.table.value) == [("error", "command_failed"), ("error", "guard_fired"),
                                             ("warning", "guard_warning")]
    panel.level.value = "error"
    assert panel.kinds() == ["command_failed", "guard_fired"]


def test_events_empty_says_so(console: Console, store: Store) -> None:
    panel = EventsPanel(console, min_level="error")
    assert "no error events or worse" in panel.table.value


def test_events_are_read_only_when_the_data_version_changes(console: Console, store: Store, mixed_book,
                                                             clock: FakeClock, monkeypatch) -> None:
    calls = []
    real = Reader.events

    def counting(self: Reader, *args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Reader, "events", counting)
    panel = EventsPanel(console)
    loop = LiveRefresh(console, [panel])
    loop.tick()
    base = len(calls)
    for _ in range(5):
        clock.advance(0.2)
        assert loop.tick() is False
    assert len(calls) == base  # nothing committed: no query
    store.event("warning", "guard_warning", "daily loss warning")
    assert loop.tick() is True
    assert len(calls) == base + 1 and panel.kinds()[0] == "guard_warning"


# -- flatten -------------------------------------------------------------------------------------------


def cmd_paths(cfg: Config) -> list[Path]:
    return sorted(Path(cfg.paths.commands).glob("cmd_*.json"))


def test_flatten_previews_then_confirm_writes_exactly_one_flatten(console: Console, cfg: Config, store: Store,
                                                                  mixed_book) -> None:
    bulk = BulkActionsPanel(console)
    tracker = CommandTracker(console)
    bulk.symbol.value = "EURUSD"  # the filters do not apply to a flatten
    bulk.flatten_button.click()
    preview = bulk.flatten_confirm.preview.value
    assert bulk.flatten_pending and 'data-count="5"' in preview and 'data-pnl="17.25"' in preview
    assert "+€17.25" in preview and "pauses the automatic rules" in preview and "Resume rules" in preview
    assert "flatten-preview" in bulk.flatten_confirm.preview._dom_classes
    assert cmd_paths(cfg) == []  # nothing before Confirm
    bulk.flatten_confirm.confirm_button.click()
    paths = cmd_paths(cfg)
    assert len(paths) == 1
    (doc,) = command_files(cfg)
    assert doc["type"] == "flatten" and doc["requested_by"] == "test" and "symbol" not in doc
    assert not bulk.flatten_pending and "queued: flatten" in bulk.message.value
    bulk.flatten_confirm.confirm_button.click()  # a second click on a closed bar does nothing
    assert len(cmd_paths(cfg)) == 1

    cid = console.sent[-1].id
    assert tracker.status_of(cid) == "queued"
    op = store.create_operation(cid, "flatten", source="operator", requested_by="test", params={})
    store.claim_operation(op, target_tickets=[1, 2, 3, 4, 5])
    store.finish_operation(op, "completed")
    tracker.refresh()
    assert tracker.status_of(cid) == "completed"
    assert f'data-command-id="{cid}" data-status="completed" data-type="flatten"' in tracker.table.value


def test_flatten_cancel_writes_nothing(console: Console, cfg: Config, mixed_book) -> None:
    bulk = BulkActionsPanel(console)
    bulk.flatten_button.click()
    bulk.flatten_confirm.cancel_button.click()
    bulk.flatten_confirm.confirm_button.click()  # a stale click after Cancel
    assert cmd_paths(cfg) == [] and not bulk.flatten_pending


def test_flatten_and_bulk_confirmations_exclude_each_other(console: Console, cfg: Config, mixed_book) -> None:
    bulk = BulkActionsPanel(console)
    bulk.buttons["loss"].click()
    bulk.flatten_button.click()
    assert not bulk.confirm.pending and bulk.pending_type == "" and bulk.flatten_confirm.pending
    bulk.buttons["profit"].click()
    assert bulk.confirm.pending and not bulk.flatten_confirm.pending
    bulk.confirm.confirm_button.click()
    assert [f["type"] for f in command_files(cfg)] == ["profit"]


def test_flatten_an_empty_book_can_still_be_confirmed(console: Console, cfg: Config, book) -> None:
    book([])
    bulk = BulkActionsPanel(console)
    bulk.flatten_button.click()
    assert 'data-count="0"' in bulk.flatten_confirm.preview.value
    assert "still pauses the rules" in bulk.flatten_confirm.preview.value
    bulk.flatten_confirm.confirm_button.click()
    assert [f["type"] for f in command_files(cfg)] == ["flatten"]


def test_flatten_preview_warns_when_the_monitor_is_stale(console: Console, mixed_book, clock: FakeClock) -> None:
    bulk = BulkActionsPanel(console)
    bulk.flatten_button.click()
    assert "monitor is not running" not in bulk.flatten_confirm.preview.value
    clock.advance(10)
    console.update_health()
    assert "monitor is not running" in bulk.flatten_confirm.preview.value  # updated in place


# -- composition ------------------------------------------------------------------------------------------


def test_dashboard_has_guards_events_and_flatten(gconsole: Console, store: Store, mixed_book) -> None:
    store.set_rule_state("guard_status", EVERY_STATE)
    store.event("error", "guard_fired", "basket take profit")
    dash = Dashboard(gconsole)
    dash.refresh()
    assert dash.refresher.errors == []
    classes: set[str] = set()

    def walk(wd: Any) -> None:
        classes.update(getattr(wd, "_dom_classes", ()))
        for c in getattr(wd, "children", ()):
            walk(c)

    walk(dash)
    for css in ("fxnb-guards", "guards-table", "fxnb-locked-banner", "guards-resume", "guards-resume-confirm",
                "fxnb-events", "events-level", "events-table", "flatten", "flatten-confirm", "flatten-cancel"):
        assert css in classes, css
    assert dash.guards.state_of("basket") == "fired" and dash.events.kinds() == ["guard_fired"]


def test_an_idle_dashboard_tick_reads_no_table(gconsole: Console, store: Store, mixed_book,
                                               clock: FakeClock) -> None:
    """Guards, events and the rest re-read only after a commit: an idle tick only asks for the data version."""
    store.set_rule_state("guard_status", EVERY_STATE)
    lock(store)
    store.event("error", "guard_fired", "drawdown")
    dash = Dashboard(gconsole)
    dash.refresh()
    statements: list[str] = []
    gconsole.reader.db.conn.set_trace_callback(statements.append)
    clock.advance(0.3)
    assert dash.refresh() is False
    assert statements and {s.strip().upper() for s in statements} == {"PRAGMA DATA_VERSION"}
    store.event("info", "guard_unlocked", "cleared")
    assert dash.refresh() is True
    assert any("monitor_events" in s for s in statements)
