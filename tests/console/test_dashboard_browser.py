"""End to end in a real browser: monitor + Voila dashboard + headless Chromium.

Close losing → Confirm must make the losers leave the grid and the tracker show
the command completed; Flatten → Confirm must empty the grid, show the flatten
completed, the ``flattened`` event and the rules paused by the flatten; closing
the tab must free its kernel within seconds.
Run with ``pytest -m browser tests/console/test_dashboard_browser.py``; skips
(with the reason) only when Chromium or playwright is missing.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fxnb.config import Config
from fxnb.dashboard import DashboardServer
from fxnb.storage import Reader
from fxnb.testing import MonitorProcess, make_workspace

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "", shutil.which("chromium-browser")
                              or "") if p and Path(p).exists()), None)
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"]
CULL_AFTER = 3.0  # seconds a kernel may stay without its page (fast for the test; 10 s in production)
CULL_INTERVAL = 2  # how often Voila's culler looks (fxnb.dashboard.voila_config)

if CHROMIUM is None:
    pytest.skip("Chromium not found (/usr/bin/chromium): `apt-get install -y chromium` or `make chromium`",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright python package is not installed")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Config, DashboardServer, Path]]:
    """A frozen-price workspace (winners and losers), its monitor, and Voila on a free port."""
    tmp = tmp_path_factory.mktemp("browser")
    cfg = make_workspace(tmp / "ws", sim_positions=12, sim_frozen=True, check_interval=0.5,
                         overrides={"profit_monitor": {"rules_mode": "off"},
                                    # evaluated and shown, never firing: frozen prices, wide limits
                                    "guards": {"drawdown": {"enabled": True, "max_percent": 50.0},
                                               "daily_loss": {"enabled": True, "max_loss": 50.0},
                                               "spread": {"enabled": True, "max_points": 1000}}})
    monitor = MonitorProcess(cfg).start()
    log = tmp / "voila.log"
    server = DashboardServer(cfg, port=0, show_tracebacks=True, cull_disconnected_after=CULL_AFTER, log_path=log)
    try:
        server.start(timeout=60)
        yield cfg, server, log
    finally:
        server.stop()
        monitor.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()


def kernel_status(server: DashboardServer, kernel_id: str) -> int:
    try:
        with urllib.request.urlopen(f"{server.url}api/kernels/{kernel_id}", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


GRID_ROWS = ".fxnb-positions table.positions-table tr[data-ticket]"


def open_dashboard(browser: Any, server: DashboardServer, ready: str = GRID_ROWS) -> tuple[Any, list[str], float]:
    page = browser.new_page(viewport={"width": 1400, "height": 2600})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    t0 = time.monotonic()
    page.goto(server.app_url, wait_until="domcontentloaded")
    page.wait_for_selector(ready, timeout=60_000)
    return page, errors, time.monotonic() - t0


def assert_no_widget_errors(page: Any, errors: list[str]) -> None:
    assert page.locator(".jupyter-widgets-error-widget").count() == 0
    assert "Error displaying widget" not in page.content()
    assert errors == []


def test_close_losing_from_the_browser(stack, browser) -> None:
    cfg, server, log = stack
    expect = sync_api.expect
    with Reader(cfg.paths.database) as r:
        book = r.open_positions()
    losers = sorted(p["ticket"] for p in book if p["profit"] + p["swap"] < 0)
    winners = sorted(p["ticket"] for p in book if p["profit"] + p["swap"] > 0)
    assert losers and winners, "the seeded book must mix winners and losers"

    page, errors, ttw = open_dashboard(browser, server)
    print(f"\ntime to widgets: {ttw:.2f} s")
    for css in (".fxnb-health", ".fxnb-account", ".fxnb-rules", ".fxnb-bulk", ".fxnb-tracker", ".chart-equity svg",
                ".fxnb-guards", ".fxnb-events", "button.flatten"):
        expect(page.locator(css).first).to_be_visible(timeout=30_000)
    expect(page.locator(".guards-table tr[data-guard=drawdown][data-state=ok]")).to_be_visible(timeout=10_000)
    expect(page.locator(".fxnb-locked-banner")).to_be_hidden()
    expect(page.locator(".fxnb-health .fxnb-badge[data-state=live]")).to_be_visible(timeout=10_000)
    expect(page.locator(".fxnb-stale-banner")).to_be_hidden()
    grid = page.locator(".positions-table tr[data-profit^='-']")
    assert sorted(int(t) for t in grid.evaluate_all("rows => rows.map(r => r.dataset.ticket)")) == losers

    page.click("button.bulk-close-loss")
    preview = page.locator(".bulk-preview [data-tickets]")
    expect(preview).to_be_visible(timeout=10_000)
    assert sorted(int(t) for t in preview.get_attribute("data-tickets").split()) == losers
    assert list(Path(cfg.paths.commands).glob("cmd_*.json")) == []  # nothing written before Confirm

    t0 = time.monotonic()
    page.click("button.bulk-confirm")
    expect(grid).to_have_count(0, timeout=15_000)
    latency = time.monotonic() - t0
    print(f"click Confirm -> losers gone from the grid: {latency:.2f} s")
    done = page.locator(".tracker-table tr[data-type=loss][data-status=completed]")
    expect(done).to_have_count(1, timeout=10_000)
    shown = page.locator(".positions-table tr[data-ticket]").evaluate_all("rows => rows.map(r => +r.dataset.ticket)")
    assert sorted(shown) == winners
    expect(page.locator(".tracker-details tr[data-status=closed]")).to_have_count(len(losers))

    assert_no_widget_errors(page, errors)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    page.close()


@pytest.mark.parametrize("how", ["leave", "close"])
def test_closing_the_tab_frees_its_kernel(stack, browser, how: str) -> None:
    """``leave``: the page unloads normally and its beacon shuts the kernel down (needs the xsrf fix).
    ``close``: the tab vanishes without a beacon (headless Chromium's close sends none, like a crash):
    the disconnect-culling kernel manager frees it ``CULL_AFTER`` s later."""
    _cfg, server, log = stack
    page, errors, _ = open_dashboard(browser, server)
    config_data = json.loads(page.locator("#jupyter-config-data").text_content())
    kernel_id = config_data["kernelId"]
    assert kernel_status(server, kernel_id) == 200
    assert_no_widget_errors(page, errors)

    t0 = time.monotonic()
    if how == "leave":
        page.goto("about:blank")
    else:
        page.close(run_before_unload=True)
    limit = 3.0 if how == "leave" else CULL_AFTER + 2 * CULL_INTERVAL + 2
    while kernel_status(server, kernel_id) != 404:
        assert time.monotonic() - t0 < limit, f"the kernel outlived its tab by {limit:g} s"
        time.sleep(0.05)
    freed = time.monotonic() - t0
    text = log.read_text(errors="replace")
    culled = f"shutting down kernel {kernel_id}" in text
    print(f"\nkernel freed {freed:.2f} s after the tab {'navigated away' if how == 'leave' else 'closed'} "
          f"({'disconnect culler' if culled else 'unload beacon'})")
    assert culled == (how == "close")
    if how == "leave":
        page.close()


def test_flatten_from_the_browser(stack, browser) -> None:
    """Runs after the tab tests (they need open positions): it leaves the book empty and the rules paused."""
    cfg, server, _log = stack
    expect = sync_api.expect
    page, errors, _ = open_dashboard(browser, server)
    grid = page.locator(".positions-table tr[data-ticket]")
    shown = grid.count()
    assert shown > 0
    page.click("button.flatten")
    preview = page.locator(".flatten-preview [data-count]")
    expect(preview).to_be_visible(timeout=10_000)
    assert int(preview.get_attribute("data-count")) == shown
    expect(page.locator(".flatten-preview")).to_contain_text("pauses the automatic rules")
    page.click("button.flatten-cancel")
    expect(preview).to_have_count(0)
    assert list(Path(cfg.paths.commands).glob("cmd_*.json")) == []  # Cancel wrote nothing

    page.click("button.flatten")
    expect(preview).to_be_visible(timeout=10_000)
    t0 = time.monotonic()
    page.click("button.flatten-confirm")
    expect(grid).to_have_count(0, timeout=15_000)
    print(f"\nclick Confirm flatten -> grid empty: {time.monotonic() - t0:.2f} s")
    expect(page.locator(".tracker-table tr[data-type=flatten][data-status=completed]")).to_have_count(1, timeout=10_000)
    expect(page.locator(".events-table tr[data-kind=flattened]")).to_have_count(1, timeout=10_000)
    expect(page.locator(".rules-state [data-paused=true][data-paused-by=flatten]")).to_be_visible(timeout=10_000)
    expect(page.locator(".fxnb-locked-banner")).to_be_hidden()  # a flatten pauses; only a guard locks
    op = Reader(cfg.paths.database).operations(last=1)[0]
    assert op["operation_type"] == "flatten" and op["status"] == "completed" and op["positions_closed"] == shown
    assert_no_widget_errors(page, errors)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-flattened.png"), full_page=True)
    page.close()


def test_a_dead_monitor_shows_stale_in_the_browser(stack, browser) -> None:
    """Runs last in this module: it stops the monitor."""
    cfg, server, _log = stack
    page, errors, _ = open_dashboard(browser, server, ready=".fxnb-positions table.positions-table")
    expect = sync_api.expect
    expect(page.locator(".fxnb-health .fxnb-badge[data-state=live]")).to_be_visible(timeout=10_000)
    pid = Reader(cfg.paths.database).heartbeat()["pid"]
    import os
    import signal

    os.kill(pid, signal.SIGKILL)  # dies without a word: only the clock can tell
    t0 = time.monotonic()
    expect(page.locator(".fxnb-stale-banner")).to_be_visible(timeout=10_000)
    print(f"\nSTALE banner {time.monotonic() - t0:.2f} s after kill -9 (limit 2 x 0.5 s + 1 s tick)")
    expect(page.locator(".fxnb-health .fxnb-badge[data-state=live]")).to_have_count(0)
    assert_no_widget_errors(page, errors)
    page.close()
