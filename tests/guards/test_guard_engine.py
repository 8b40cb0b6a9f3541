"""How the guards combine: one decision per ticket, silence while locked, a status row for each guard."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest
from guardkit import NOW, STARTED, account, guards, pos, row, run

from fxnb.guards import GUARD_NAMES, GuardInput, GuardSettings, GuardState, evaluate_guards, unlock
from fxnb.guards.state import UNTIL_RESUME

EVERYTHING = guards(
    basket={"take_profit": 100}, trailing={"distance": 300, "activation_points": 300},
    breakeven={"trigger_points": 200, "buffer_points": 20}, drawdown={"max_percent": 5},
    daily_loss={"max_loss": 500, "unit": "money"}, session_close={"time": "21:45"},
    spread={"max_points": 30},
)


def test_all_off_does_nothing_and_reports_every_guard_off() -> None:
    out = run([pos(1, profit=1e6, price_current=2.0)], GuardSettings(), acct=account(10_000, 1.0))
    assert (out.closes, out.stop_moves, out.alerts, out.lock, out.blocked) == ([], [], [], None, [])
    assert [s.guard for s in out.status] == list(GUARD_NAMES)
    assert all(s.state == "off" and not s.enabled for s in out.status)
    assert out.state == GuardState()


def test_a_quiet_book_everything_on() -> None:
    out = run([pos(1, profit=10)], EVERYTHING)
    assert (out.closes, out.stop_moves, out.alerts, out.lock) == ([], [], [], None)
    assert {s.guard: s.state for s in out.status} == {g: "ok" for g in GUARD_NAMES}
    assert row(out, "session_close").distance_text == "next close Fri 2024-01-05 21:45 server time (in 7h 45m)"
    assert row(out, "trailing").distance_text == "watching 1 position(s)"


def test_a_position_being_closed_gets_no_stop_move() -> None:
    s = guards(basket={"take_profit": 100, "group_by": "symbol"}, trailing={"distance": 300, "activation_points": 0})
    book = [pos(1, profit=150, price_current=1.104), pos(2, symbol="XAUUSD", price_open=2000.0, price_current=2010.0)]
    out = run(book, s)
    assert [d.ticket for d in out.closes] == [1]
    assert [(m.ticket, m.sl) for m in out.stop_moves] == [(2, 2007.0)]
    assert row(out, "trailing").state == "fired" and "ticket(s) 2" in (row(out, "trailing").last_action or "")


def test_a_firing_lock_supersedes_every_other_guard() -> None:
    book = [pos(1, profit=150, price_current=1.104), pos(2, profit=-800)]
    out = run(book, EVERYTHING, now=NOW.replace(hour=19, minute=45))  # basket, session, trailing all due too
    assert [(d.ticket, d.rule) for d in out.closes] == [(1, "daily_loss"), (2, "daily_loss")]
    assert out.stop_moves == [] and [a.guard for a in out.alerts] == ["daily_loss"]
    assert out.state.session_close_fired == ()  # the session close did not run
    assert row(out, "daily_loss").state == "fired" and row(out, "basket").state == "locked"
    assert row(out, "spread").state == "ok"


def test_while_locked_nothing_closes_or_moves_but_status_is_reported() -> None:
    locked = replace(GuardState(), locked=True, lock_kind=UNTIL_RESUME, lock_reason="drawdown",
                     lock_guards=("drawdown",))
    book = [pos(1, profit=150, price_current=1.104), pos(2, profit=-800)]
    out = run(book, EVERYTHING, locked, now=NOW.replace(hour=19, minute=45))
    assert (out.closes, out.stop_moves, out.alerts, out.lock) == ([], [], [], None)
    states = {s.guard: s.state for s in out.status}
    assert states == {**{g: "locked" for g in GUARD_NAMES}, "spread": "ok"}
    assert row(out, "daily_loss").value == pytest.approx(650)
    assert row(out, "basket").distance_text.startswith("locked (until_resume): ")
    after = run(book, EVERYTHING, unlock(out.state, NOW, by_operator=True), now=NOW.replace(hour=19, minute=46))
    assert after.closes  # unlocked: the guards act again (here the daily loss at once)


def test_inconsistent_snapshots_never_close_more_than_is_open() -> None:
    book = [pos(1, profit=-400), pos(1, profit=-400, volume=0.2), pos(2, volume=0.0), pos(3, volume=float("nan")),
            pos(4, volume=0.3)]
    out = run(book, guards(drawdown={"max_percent": 5}), replace(GuardState(), equity_hwm=20_000,
                                                                 hwm_period="day:2024-01-05"))
    assert [(d.ticket, d.volume, d.full) for d in out.closes] == [(4, 0.3, True)]


def test_deterministic() -> None:
    book = [pos(i, profit=(-1) ** i * 40.0 * i, price_current=1.1 + i / 1000) for i in range(1, 8)]
    a = run(book, EVERYTHING, now=NOW.replace(hour=19, minute=45))
    b = run(list(reversed(book)), EVERYTHING, now=NOW.replace(hour=19, minute=45))
    assert a == b


def test_naive_clocks_are_refused() -> None:
    inp = GuardInput(positions=[], account=account(), specs={}, realised_today=0.0,
                     now=datetime(2024, 1, 5, 12), session_started_at=STARTED)
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate_guards(inp, EVERYTHING, GuardState())
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate_guards(replace(inp, now=NOW, session_started_at=datetime(2024, 1, 5)), EVERYTHING, GuardState())


def test_the_package_stays_pure() -> None:
    """No broker, monitor or storage imports, no I/O modules, no clock reads, no open()."""
    import ast
    from pathlib import Path

    import fxnb.guards

    for path in sorted(Path(fxnb.guards.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                for name in names:
                    assert not name.startswith(("fxnb.broker", "fxnb.monitor", "fxnb.storage")), (path.name, name)
                    assert name.split(".")[0] not in {"time", "os", "pathlib", "sqlite3", "random", "logging"}, name
            if isinstance(node, ast.Call):
                f = node.func
                assert not (isinstance(f, ast.Attribute) and f.attr in {"now", "utcnow", "today"}), path.name
                assert not (isinstance(f, ast.Name) and f.id in {"open", "print", "input"}), path.name
