"""Heartbeat, event log and durable rule state: what the monitor leaves for operators and restarts."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from conftest import T0

from fxnb.errors import StorageError
from fxnb.storage import Store


def heartbeat_row(store: Store) -> dict:
    return dict(store.db["monitor_heartbeat"].get(1))


def test_heartbeat_is_one_row_updated_in_place(store: Store, clock) -> None:
    store.heartbeat(pid=10, hostname="box", version="0.1.0", started_at=T0, state="starting", connected=False)
    clock.advance(5)
    store.heartbeat(
        state="running", connected=True, last_poll_ok=True, poll_duration_ms=12.5, open_positions=3
    )
    assert store.db["monitor_heartbeat"].count == 1
    hb = heartbeat_row(store)
    assert (hb["pid"], hb["hostname"], hb["started_at"]) == (10, "box", "2026-01-01T00:00:00.000Z")  # kept
    assert (hb["state"], hb["connected"], hb["last_poll_ok"], hb["open_positions"]) == ("running", 1, 1, 3)
    assert (hb["updated_at"], hb["updated_ts"]) == ("2026-01-01T00:00:05.000Z", T0 + 5)


def test_heartbeat_can_clear_a_field(store: Store) -> None:
    store.heartbeat(last_error="IPC timeout")
    store.heartbeat(last_error=None)
    assert heartbeat_row(store)["last_error"] is None


def test_heartbeat_rejects_typos_and_bad_states(store: Store) -> None:
    with pytest.raises(ValueError, match="conected"):
        store.heartbeat(conected=True)
    with pytest.raises(ValueError, match="state"):
        store.heartbeat(state="sleeping")
    assert store.db["monitor_heartbeat"].count == 0


def test_events_are_appended_with_json_data(store: Store) -> None:
    first = store.event(
        "info", "rule_close", "closed 1234 at +12.50", {"ticket": 1234, "profit": 12.5}, at=T0 + 1
    )
    second = store.event("error", "command_failed", "no connection")
    assert second > first
    rows = list(store.db.query("SELECT at, level, kind, data FROM monitor_events ORDER BY id"))
    assert rows[0] == {
        "at": "2026-01-01T00:00:01.000Z",
        "level": "info",
        "kind": "rule_close",
        "data": '{"profit":12.5,"ticket":1234}',
    }
    assert rows[1]["data"] is None and rows[1]["at"] == "2026-01-01T00:00:00.000Z"


def test_event_level_is_validated(store: Store) -> None:
    with pytest.raises(ValueError, match="level"):
        store.event("debug", "k", "m")


def test_event_data_must_be_json(store: Store) -> None:
    with pytest.raises((TypeError, ValueError)):
        store.event("info", "k", "m", {"bad": object()})
    with pytest.raises(ValueError):
        store.event("info", "k", "m", {"nan": float("nan")})
    assert store.db["monitor_events"].count == 0


def test_rule_state_survives_restart(db_path: Path, clock) -> None:
    with Store.open(db_path, clock=clock) as s:
        s.set_rule_state("rules_paused", True)
        s.set_rule_state("high_water", {"equity": 10_500.0, "at": "2026-01-01T00:00:00Z"})
        s.set_rule_state("rules_paused", False, at=T0 + 9)
    with Store.open(db_path, clock=clock) as s:
        assert s.get_rule_state("rules_paused") is False
        assert s.get_rule_state("high_water") == {"equity": 10_500.0, "at": "2026-01-01T00:00:00Z"}
        assert s.get_rule_state("unknown", default="d") == "d"
        assert dict(s.db["rule_state"].get("rules_paused"))["updated_at"] == "2026-01-01T00:00:09.000Z"


def test_store_can_be_used_from_worker_threads(store: Store) -> None:
    """APScheduler runs plain jobs in a pool: the store must not be tied to its creating thread."""
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                store.event("info", f"t{n}", str(i))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.db["monitor_events"].count == 80


def test_sqlite_errors_become_storage_errors(store: Store) -> None:
    store.db.execute("DROP TABLE monitor_events")
    with pytest.raises(StorageError, match="event failed"):
        store.event("info", "k", "m")


def test_heartbeat_accepts_updated_at_and_iso_times(store: Store) -> None:
    store.heartbeat(updated_at="2026-01-01T00:00:10Z", started_at="2026-01-01T00:00:00Z", last_poll_at=None)
    hb = heartbeat_row(store)
    assert (hb["updated_at"], hb["updated_ts"]) == ("2026-01-01T00:00:10.000Z", T0 + 10)
    assert hb["started_at"] == "2026-01-01T00:00:00.000Z" and hb["last_poll_at"] is None
