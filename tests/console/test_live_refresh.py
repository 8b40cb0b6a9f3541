"""The live refresh loop: skip work when nothing changed, keep the STALE check on time, one task per key."""

from __future__ import annotations

import asyncio
import time

import pytest
from console_helpers import FakeClock, position

from fxnb.storage import Store
from fxnb.widgets import Console, Dashboard, LiveRefresh, PositionsPanel, live, running_tasks


class CountingPanel(PositionsPanel):
    refreshes = 0
    ticks = 0

    def refresh(self) -> None:
        type(self).refreshes += 1
        super().refresh()

    def tick(self, now: float) -> None:
        type(self).ticks += 1


def test_tick_skips_refresh_until_the_monitor_commits(console: Console, book, clock: FakeClock) -> None:
    book([position(1, 1.0)])
    CountingPanel.refreshes = CountingPanel.ticks = 0
    panel = CountingPanel(console)
    loop = LiveRefresh(console, [panel])
    assert loop.tick() is True  # first tick always refreshes
    base = CountingPanel.refreshes
    for _ in range(5):
        clock.advance(0.1)
        assert loop.tick() is False
    assert CountingPanel.refreshes == base and CountingPanel.ticks == 6
    book([position(1, 2.0), position(2, 3.0)])
    assert loop.tick() is True
    assert CountingPanel.refreshes == base + 1 and panel.position_count == 2


def test_stale_banner_turns_on_without_any_new_data(console: Console, mixed_book, clock: FakeClock) -> None:
    dash = Dashboard(console)
    dash.refresh()
    assert dash.health.state == "live" and not dash.stale
    clock.advance(2.5)  # > 2 × check_interval (1 s); the monitor wrote nothing
    changed = dash.refresh()
    assert changed is False  # no panel re-read the database...
    assert dash.health.state == "stale" and dash.health.banner_visible  # ...but the verdict moved on
    assert dash.stale and "fxnb-stale" in dash._dom_classes
    assert "monitor not running" in dash.account.header.value


def test_a_failing_panel_does_not_stop_the_others(console: Console, mixed_book) -> None:
    class Broken(PositionsPanel):
        armed = False

        def refresh(self) -> None:
            if self.armed:
                raise RuntimeError("boom")
            super().refresh()

    broken = Broken(console)
    broken.armed = True
    good = PositionsPanel(console)
    loop = LiveRefresh(console, [broken, good])
    loop.tick()
    assert loop.errors and "boom" in loop.errors[0]
    assert "refresh failed" in broken.message.value
    assert good.position_count == 5


def test_start_needs_a_running_loop(console: Console) -> None:
    with pytest.raises(RuntimeError, match="running event loop"):
        LiveRefresh(console, []).start()


def test_rerun_cancels_the_previous_task_and_refreshes_on_the_loop(cfg, store: Store) -> None:
    """A re-run cell builds a new dashboard: the old loop must stop, the new one must tick."""
    async def scenario() -> None:
        first = Dashboard(Console(cfg), period=0.05)
        first.start()
        await asyncio.sleep(0.2)
        assert first.running and first.refresher.ticks >= 2
        second = Dashboard(Console(cfg), period=0.05).start()
        await asyncio.sleep(0.2)
        assert not first.running and second.running
        assert list(running_tasks()) == ["dashboard"]
        ticks = second.refresher.ticks
        await asyncio.sleep(0.2)
        assert second.refresher.ticks > ticks
        panel = PositionsPanel(second.console)
        handle = live(panel, period=0.05)
        again = live(panel, period=0.05)  # same key: replaces
        await asyncio.sleep(0.1)
        assert not handle.running and again.running
        again.stop()
        second.stop()
        await asyncio.sleep(0)
        assert running_tasks() == {}

    asyncio.run(scenario())


def test_tick_cost_with_1000_positions(console: Console, book, clock: FakeClock) -> None:
    """A bound, not a benchmark: a full refresh of the dashboard with 1,000 positions stays well under a tick."""
    book([position(t, float(t % 50 - 25), symbol=f"SYM{t % 20}") for t in range(1, 1001)])
    dash = Dashboard(console)
    dash.refresh()
    clock.advance(0.5)
    book([position(t, float(t % 50 - 24), symbol=f"SYM{t % 20}") for t in range(1, 1001)])
    t0 = time.perf_counter()
    assert dash.refresh() is True
    full = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert dash.refresh() is False
    idle = time.perf_counter() - t0
    print(f"\nrefresh with 1,000 positions: {full * 1000:.1f} ms after a change, {idle * 1000:.2f} ms idle")
    assert full < 0.5 and idle < 0.05
