"""Panels, headless: real SQLite written through Store, driven with Button.click(), checked by the files dropped."""

from __future__ import annotations

import re

import ipywidgets as w
import pytest
from console_helpers import FakeClock, beat, command_files, position

from fxnb.config import Config
from fxnb.models import CloseResult, CloseStatus, Side
from fxnb.storage import Store
from fxnb.widgets import (
    AccountPanel,
    BulkActionsPanel,
    CommandTracker,
    Console,
    Dashboard,
    EquityChart,
    HealthPanel,
    PositionsPanel,
    RulesPanel,
)


def rows(html: str, attr: str = "data-ticket") -> list[str]:
    return re.findall(rf'<tr[^>]*{attr}="([^"]*)"', html)


# -- account ---------------------------------------------------------------------------------


def test_account_shows_the_accounts_currency(console: Console, mixed_book) -> None:
    panel = AccountPanel(console)
    assert "€10,000.00" in panel.cards.value and "€10,050.00" in panel.cards.value
    assert "$" not in panel.cards.value
    assert 'data-currency="EUR"' in panel.header.value
    floating = re.search(r'data-field="floating".*?class="value ([^"]*)">([^<]*)<', panel.cards.value)
    assert floating is not None
    assert floating.group(2) == "+€17.25"  # 120 + 15.5 - 40 - 75.25 - 3
    assert floating.group(1) == "fxnb-pos"


def test_account_in_yen_has_no_decimals(console: Console, book) -> None:
    book([position(1, -1234.0)], currency="JPY")
    panel = AccountPanel(console)
    assert "¥10,000<" in panel.cards.value and "−¥1,234" in panel.cards.value


def test_account_without_data_says_why(cfg: Config, store: Store, clock: FakeClock) -> None:
    panel = AccountPanel(Console(cfg, clock=clock))
    assert "no account snapshot yet" in panel.header.value and panel.cards.value == ""


def test_missing_database_is_shown_not_raised(cfg: Config, clock: FakeClock) -> None:
    console = Console(cfg, clock=clock)  # no Store: the file does not exist
    dash = Dashboard(console)
    dash.refresh()
    assert "no database" in console.storage_error
    assert dash.health.state == "stale" and dash.health.banner_visible
    assert "no database" in dash.positions.summary.value


# -- positions grid ----------------------------------------------------------------------------


def test_grid_rows_carry_ticket_symbol_profit(console: Console, mixed_book) -> None:
    grid = PositionsPanel(console)
    html = grid.grid.value
    assert rows(html) == ["1", "3", "5", "2", "4"]  # default: P/L, descending
    assert 'data-ticket="4" data-symbol="GBPUSD" data-side="buy" data-profit="-75.25"' in html
    assert 'class="num fxnb-neg">−€75.25' in html and 'class="num fxnb-pos">+€120.00' in html


def test_grid_sorts_and_filters(console: Console, mixed_book) -> None:
    grid = PositionsPanel(console)
    grid.sort_direction.value = "asc"
    assert rows(grid.grid.value) == ["4", "2", "5", "3", "1"]
    grid.sort_column.value = "ticket"
    assert rows(grid.grid.value) == ["1", "2", "3", "4", "5"]
    grid.sort_column.value = "symbol"
    grid.sort_direction.value = "desc"
    assert [s for s in rows(grid.grid.value, "data-symbol")][:2] == ["GBPUSD", "GBPUSD"]
    grid.symbol_filter.value = "EURUSD"
    assert sorted(rows(grid.grid.value)) == ["1", "2", "5"]
    assert 'data-count="3"' in grid.summary.value


def test_grid_pages(console: Console, book) -> None:
    book([position(t, float(t)) for t in range(1, 26)])
    grid = PositionsPanel(console, page_size=10)
    grid.sort_column.value = "ticket"
    grid.sort_direction.value = "asc"
    assert rows(grid.grid.value) == [str(t) for t in range(1, 11)]
    assert grid.prev_button.disabled and not grid.next_button.disabled
    grid.next_button.click()
    grid.next_button.click()
    assert rows(grid.grid.value) == [str(t) for t in range(21, 26)]
    assert grid.next_button.disabled
    grid.next_button.click()  # clamps
    assert "page 3 / 3" in grid.page_label.value


def count_widgets(widget: w.Widget) -> int:
    children = getattr(widget, "children", ())
    return 1 + sum(count_widgets(c) for c in children)


def test_grid_with_1000_positions_renders_one_page(console: Console, book, clock: FakeClock) -> None:
    book([position(t, 10.0) for t in range(1, 11)])
    small = count_widgets(Dashboard(console))
    clock.advance(1)
    book([position(t, float((t * 37) % 200 - 100), symbol=("EURUSD", "GBPUSD", "USDJPY")[t % 3])
          for t in range(1, 1001)])
    dash = Dashboard(console)
    grid = dash.positions
    assert grid.position_count == 1000
    assert grid.rendered_rows == 50
    assert grid.grid.value.count('class="fxnb-row') == 50
    assert len(grid.ticket.options) == 51  # the page's tickets and "choose"
    assert count_widgets(dash) == small  # no widget per position
    assert "page 1 / 20" in grid.page_label.value


def test_close_selected_writes_single_after_confirm(console: Console, cfg: Config, mixed_book) -> None:
    grid = PositionsPanel(console)
    grid.close_button.click()  # nothing chosen
    assert grid.message.kind == "error" and command_files(cfg) == []
    grid.select(4)
    assert 'class="fxnb-row fxnb-selected" data-ticket="4"' in grid.grid.value
    grid.close_button.click()
    assert grid.confirm.pending and "4</b> GBPUSD buy 1 lots" in grid.confirm.preview.value
    assert command_files(cfg) == []  # nothing before Confirm
    grid.confirm.confirm_button.click()
    files = command_files(cfg)
    assert len(files) == 1
    assert files[0]["type"] == "single" and files[0]["ticket"] == 4 and files[0]["requested_by"] == "test"
    assert not grid.confirm.pending and grid.message.kind == "ok"


def test_cancel_writes_nothing(console: Console, cfg: Config, mixed_book) -> None:
    grid = PositionsPanel(console)
    grid.select(2)
    grid.close_button.click()
    grid.confirm.cancel_button.click()
    grid.confirm.confirm_button.click()  # a stale click after Cancel does nothing
    assert command_files(cfg) == []


def test_partial_close_by_percent_and_by_lots(console: Console, cfg: Config, book) -> None:
    book([position(7, 50.0, volume=0.4)])
    grid = PositionsPanel(console)
    grid.select(7)
    grid.partial_amount.value = 25
    grid.partial_button.click()
    assert "Close 25 % of position" in grid.confirm.preview.value
    grid.confirm.confirm_button.click()
    grid.partial_mode.value = "volume"
    assert grid.partial_amount.value == 0.2  # half the position, as a starting point
    grid.partial_amount.value = 0.1
    grid.partial_button.click()
    grid.confirm.confirm_button.click()
    files = command_files(cfg)
    assert [(f["type"], f["ticket"], f.get("percent"), f.get("volume")) for f in files] == [
        ("partial", 7, 25.0, None), ("partial", 7, None, 0.1)]


@pytest.mark.parametrize(("mode", "amount"), [("percent", 100.0), ("percent", 0.0), ("volume", 0.4), ("volume", 1)])
def test_partial_close_refuses_impossible_amounts(console: Console, cfg: Config, book, mode: str,
                                                  amount: float) -> None:
    book([position(7, 50.0, volume=0.4)])
    grid = PositionsPanel(console)
    grid.select(7)
    grid.partial_mode.value = mode
    grid.partial_amount.value = amount
    grid.partial_button.click()
    assert grid.message.kind == "error" and not grid.confirm.pending
    assert command_files(cfg) == []


def test_pending_close_of_a_vanished_position_cannot_be_confirmed(console: Console, cfg: Config, book,
                                                                  store: Store, clock: FakeClock) -> None:
    book([position(1, 5.0), position(2, -5.0)])
    grid = PositionsPanel(console)
    grid.select(2)
    grid.close_button.click()
    clock.advance(1)
    book([position(1, 5.0)])
    store.mark_closed(2, realised_profit=-5.0, reason="external")
    grid.refresh()
    assert "no longer open" in grid.confirm.preview.value and grid.confirm.confirm_button.disabled
    grid.confirm.confirm_button.click()
    assert command_files(cfg) == []


# -- bulk actions --------------------------------------------------------------------------------


def test_close_losing_previews_then_writes_one_loss_command_with_symbol(console: Console, cfg: Config,
                                                                        mixed_book) -> None:
    bulk = BulkActionsPanel(console)
    bulk.symbol.value = "EURUSD"
    bulk.buttons["loss"].click()
    preview = bulk.confirm.preview.value
    assert 'data-tickets="2 5"' in preview and 'data-pnl="-43.00"' in preview and "−€43.00" in preview
    assert command_files(cfg) == []
    bulk.confirm.confirm_button.click()
    files = command_files(cfg)
    assert len(files) == 1
    assert files[0]["type"] == "loss" and files[0]["symbol"] == "EURUSD" and "ticket" not in files[0]
    assert "side" not in files[0]


def test_bulk_cancel_writes_nothing(console: Console, cfg: Config, mixed_book) -> None:
    bulk = BulkActionsPanel(console)
    for kind in ("profit", "loss", "all"):
        bulk.buttons[kind].click()
        assert bulk.confirm.pending
        bulk.confirm.cancel_button.click()
    assert command_files(cfg) == []


def test_bulk_preview_follows_filters_and_refuses_empty(console: Console, cfg: Config, mixed_book) -> None:
    bulk = BulkActionsPanel(console)
    bulk.buttons["profit"].click()
    assert 'data-tickets="1 3"' in bulk.confirm.preview.value
    bulk.side.value = "sell"  # no sells in the book: preview updates, Confirm is disabled
    assert 'data-count="0"' in bulk.confirm.preview.value and bulk.confirm.confirm_button.disabled
    bulk.confirm.confirm_button.click()
    assert command_files(cfg) == []
    bulk.side.value = ""
    bulk.confirm.confirm_button.click()
    files = command_files(cfg)
    assert [(f["type"], f.get("symbol"), f.get("side")) for f in files] == [("profit", None, None)]


def test_bulk_close_all_with_side(console: Console, cfg: Config, book) -> None:
    book([position(1, 5.0, side=Side.SELL), position(2, -5.0, side=Side.BUY)])
    bulk = BulkActionsPanel(console)
    bulk.side.value = "sell"
    bulk.buttons["all"].click()
    assert 'data-tickets="1"' in bulk.confirm.preview.value
    bulk.confirm.confirm_button.click()
    assert [(f["type"], f["side"]) for f in command_files(cfg)] == [("all", "sell")]


def test_bulk_preview_warns_when_monitor_is_stale(console: Console, mixed_book, clock: FakeClock) -> None:
    bulk = BulkActionsPanel(console)
    clock.advance(10)
    console.update_health()
    bulk.buttons["all"].click()
    assert "monitor is not running" in bulk.confirm.preview.value


# -- command tracker -------------------------------------------------------------------------------


def test_tracker_shows_a_new_command_at_once_then_follows_it(console: Console, store: Store, mixed_book,
                                                             clock: FakeClock) -> None:
    tracker = CommandTracker(console)
    assert "no commands yet" in tracker.table.value
    bulk = BulkActionsPanel(console)
    bulk.buttons["loss"].click()
    bulk.confirm.confirm_button.click()
    cid = console.sent[-1].id
    assert tracker.status_of(cid) == "queued"  # before the monitor knows about it
    assert f'data-command-id="{cid}" data-status="queued"' in tracker.table.value

    clock.advance(0.2)
    op = store.create_operation(cid, "loss", source="operator", requested_by="test", params={})
    tracker.refresh()
    assert tracker.status_of(cid) == "pending"
    store.claim_operation(op, target_tickets=[2, 4, 5])
    tracker.refresh()
    assert tracker.status_of(cid) == "processing"
    store.add_result(op, CloseResult(ticket=2, status=CloseStatus.CLOSED, requested_volume=1, closed_volume=1,
                                     price=1.1, profit=-41.0, retcode=10009, message="10009 TRADE_RETCODE_DONE",
                                     attempts=1, symbol="EURUSD"))
    store.add_result(op, CloseResult(ticket=4, status=CloseStatus.FAILED, requested_volume=1, retcode=10018,
                                     message="10018 TRADE_RETCODE_MARKET_CLOSED", attempts=1, symbol="GBPUSD"))
    store.finish_operation(op, "partially_completed", error_message="1 of 2 tickets failed")
    tracker.refresh()
    assert tracker.status_of(cid) == "partially_completed"
    assert "1 of 2 tickets failed" in tracker.table.value
    details = tracker.details.value
    assert 'data-ticket="2" data-status="closed" data-retcode="10009"' in details
    assert 'data-ticket="4" data-status="failed" data-retcode="10018"' in details
    assert "TRADE_RETCODE_MARKET_CLOSED" in details and "−€41.00" in details
    assert "3 target ticket(s) frozen at claim" in details


def test_tracker_shows_rejection_and_expiry_reasons(console: Console, store: Store, mixed_book) -> None:
    store.reject_operation("bad-1", error_message="cmd_bad-1.json: unknown key 'tiket' for type 'single'",
                           operation_type="single")
    store.reject_operation("old-1", status="expired", error_message="expired 12 s before it was read",
                           operation_type="all")
    tracker = CommandTracker(console)
    assert tracker.status_of("bad-1") == "rejected" and tracker.status_of("old-1") == "expired"
    assert "unknown key &#x27;tiket&#x27;" in tracker.table.value
    assert "expired 12 s before it was read" in tracker.table.value
    tracker.select.value = "old-1"
    assert "Reason: expired 12 s" in tracker.details.value


def test_tracker_flags_a_command_nobody_picked_up(console: Console, mixed_book, clock: FakeClock) -> None:
    tracker = CommandTracker(console)
    console.send("all")
    cid = console.sent[-1].id
    assert tracker.status_of(cid) == "queued"
    clock.advance(cfg_max_age(console) + 10)
    tracker.tick(clock())
    assert tracker.status_of(cid) == "unclaimed"
    assert "is the monitor running?" in tracker.table.value


def cfg_max_age(console: Console) -> float:
    return float(console.config.commands.max_age_seconds)


def test_tracker_hides_rule_closes_unless_asked(console: Console, store: Store, mixed_book) -> None:
    store.create_operation("rule-1", "rule_close", source="rule", params={"rule": "min_profit"})
    tracker = CommandTracker(console)
    assert tracker.row("rule-1") is None
    tracker.source.value = "all"
    assert tracker.status_of("rule-1") == "pending"


# -- health -----------------------------------------------------------------------------------------


def test_health_live_then_stale_after_two_intervals(console: Console, mixed_book, clock: FakeClock) -> None:
    health = HealthPanel(console)
    assert health.state == "live" and not health.banner_visible
    assert 'data-state="live"' in health.status.value
    clock.advance(1.9)  # check_interval 1 s: still within 2 × interval
    health.tick(clock())
    assert health.state == "live"
    clock.advance(0.3)
    health.tick(clock())
    assert health.state == "stale" and health.banner_visible
    assert "STALE" in health.banner.value and "LIVE" not in health.status.value
    assert console.stale


def test_health_stopped_monitor_is_stale_at_once(console: Console, store: Store, mixed_book,
                                                 clock: FakeClock) -> None:
    beat(store, clock(), state="stopped")
    health = HealthPanel(console)
    assert health.state == "stale" and "the monitor was stopped" in health.banner.value


def test_health_never_started_is_stale(console: Console) -> None:
    health = HealthPanel(console)
    assert health.state == "stale" and "never run" in health.banner.value


def test_health_disconnected_terminal(console: Console, store: Store, mixed_book, clock: FakeClock) -> None:
    beat(store, clock(), connected=False, state="reconnecting", last_error="IPC timeout")
    health = HealthPanel(console)
    assert health.state == "disconnected" and not health.banner_visible
    assert "IPC timeout" in health.status.value


# -- rules ---------------------------------------------------------------------------------------------


def test_rules_pause_and_resume_drop_commands(console: Console, cfg: Config, store: Store, mixed_book) -> None:
    rules = RulesPanel(console)
    assert rules.paused is False and rules.resume_button.disabled and not rules.pause_button.disabled
    assert "2 %</b> of balance ≈ €200.00 per position" in rules.settings.value
    rules.pause_button.click()
    assert rules.requested == "pause" and rules.pause_button.disabled
    store.set_rule_state("rules_paused", True)
    rules.refresh()
    assert rules.paused is True and rules.requested == "" and 'data-paused="true"' in rules.state.value
    rules.resume_button.click()
    assert [f["type"] for f in command_files(cfg)] == ["pause_rules", "resume_rules"]


# -- chart -----------------------------------------------------------------------------------------------


def test_chart_plots_history_and_skips_unchanged(console: Console, book, clock: FakeClock) -> None:
    for i in range(5):
        book([position(1, float(i))])
        clock.advance(1)
    chart = EquityChart(console)
    assert chart.points == 5 and len(chart.equity_lines.x) == 5 and chart.equity_lines.y.shape == (2, 5)
    assert list(chart.pnl_lines.y) == [0.0, 1.0, 2.0, 3.0, 4.0]
    before = chart.equity_lines.x
    chart.refresh()
    assert chart.equity_lines.x is before  # no new snapshot: no reassignment
    book([position(1, 9.0)])
    chart.refresh()
    assert chart.points == 6


def test_chart_thins_long_history(console: Console, store: Store, clock: FakeClock) -> None:
    from console_helpers import account

    for i in range(3000):
        store.append_snapshot(account(), [], clock() - 3000 + i)
    chart = EquityChart(console, max_points=200)
    assert chart.points <= 200 and "(thinned)" in chart.info.value


# -- the whole dashboard -------------------------------------------------------------------------------


def test_dashboard_composes_every_panel(console: Console, mixed_book) -> None:
    dash = Dashboard(console)
    dash.refresh()
    assert dash.refresher.errors == []
    classes = set()

    def walk(wd: w.Widget) -> None:
        classes.update(getattr(wd, "_dom_classes", ()))
        for c in getattr(wd, "children", ()):
            walk(c)

    walk(dash)
    for css in ("fxnb-dashboard", "fxnb-health", "fxnb-account", "fxnb-rules", "fxnb-bulk", "fxnb-positions",
                "fxnb-tracker", "fxnb-chart", "bulk-close-loss", "bulk-confirm", "positions-close",
                "rules-pause", "fxnb-stale-banner"):
        assert css in classes, css


def test_tracker_finds_a_rejection_recorded_by_file_name(console: Console, store: Store, mixed_book) -> None:
    """The monitor records a file it rejects without its id; the console matches it by file name."""
    cmd = console.send("single", ticket=99)
    tracker = CommandTracker(console)
    assert tracker.status_of(cmd.id) == "queued"
    store.reject_operation(None, error_message="something about the file", operation_type="invalid",
                           file_name=cmd.file_name)
    tracker.refresh()
    shown = [r for r in tracker.rows if r.get("file_name") == cmd.file_name]
    assert len(shown) == 1 and shown[0]["status"] == "rejected"
    assert "something about the file" in tracker.table.value
