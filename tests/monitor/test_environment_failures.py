"""The environment refuses writes under a running monitor: a read-only ``commands/``, a full database disk,
a full commands disk.

What must hold: the operator is told once (log line, event, /status, /healthz), not in a traceback per
rescan; no close runs before its operation is recorded; a command held that way runs once when the
database takes writes again, or ends 'expired' if its time ran out meanwhile; nothing is closed twice;
no file is lost or left in ``processing/``; a rejected file gets its reason and its row.

Real monitor processes, real bind mounts and tmpfs (needs root; skipped otherwise).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fxnb.commands import CommandDir
from fxnb.config import Config
from fxnb.errors import StorageError
from fxnb.soak import invariants as inv
from fxnb.status import read_status
from fxnb.testing import FINAL, MonitorProcess, fill_disk, make_workspace

BASE = {"profit_monitor": {"rules_mode": "off"}, "commands": {"max_age_seconds": 600, "rescan_interval": 0.2},
        "broker": {"sim": {"faults": {"latency_ms": 1.0}}}}


# --------------------------------------------------------------------------- helpers
def _mount(*args: str) -> None:
    res = subprocess.run(["mount", *args], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount here ({res.stderr.strip() or res.returncode}); needs root and mount rights")


@contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)
    return value


def _never(predicate: Callable[[], Any], within: float) -> bool:
    """True if ``predicate`` stays falsy for ``within`` seconds (for "it is NOT said again")."""
    try:
        _wait(predicate, within, "")
    except TimeoutError:
        return True
    return False


def _query(cfg: Config, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    try:
        return inv.query(cfg.paths.database, sql, params or [])
    except StorageError:
        return []


def _op(cfg: Config, command_id: str) -> dict[str, Any]:
    rows = _query(cfg, "SELECT * FROM position_close_operations WHERE command_id = ?", [command_id])
    return rows[0] if rows else {}


def _events(cfg: Config, kind: str) -> list[dict[str, Any]]:
    return _query(cfg, "SELECT * FROM monitor_events WHERE kind = ?", [kind])


def _log(cfg: Config) -> str:
    return (cfg.paths.logs / "profit_monitor.log").read_text()


def _open_in_db(cfg: Config) -> set[int]:
    return {r["ticket"] for r in _query(cfg, "SELECT ticket FROM position_tracking WHERE status = 'open'")}


def _outs(ledger: inv.Ledger, ticket: int) -> int:
    return sum(1 for d in ledger.fxnb_outs() if d["position_id"] == ticket)


def _assert_no_overclose(cfg: Config) -> inv.Ledger:
    ledger = inv.read_terminal(cfg)
    bad = [c for c in inv.check_no_overclose(ledger) if not c.ok]
    assert not bad, inv.render_table(bad)
    return ledger


# --------------------------------------------------------------------------- read-only commands/
def test_read_only_commands_folder_refuses_the_claim_said_once_then_runs(tmp_path: Path) -> None:
    """The claim itself is refused (the file was there before the remount): one line, visible, then run."""
    cfg = make_workspace(tmp_path / "ws", sim_positions=4, overrides=BASE)
    cdir = str(cfg.paths.commands)
    _mount("--bind", cdir, cdir)
    try:
        CommandDir(cfg.paths.commands).write("all", id="ro1")
        _mount("-o", "remount,ro,bind", cdir)
        with MonitorProcess(cfg) as mon:  # healthy (200): the rules still protect the account
            status = _wait(lambda: (s := mon.get("/status")[1]).get("problems") and s, 10, "the problem reported")
            assert "Read-only file system" in status["problems"]["commands"]
            assert "Read-only file system" in status["last_error"]
            code, body = mon.get("/healthz")
            assert code == 200 and "Read-only file system" in body["problems"]["commands"], body
            assert any("Read-only" in e["message"] for e in _events(cfg, "commands_failing"))
            # the heartbeat carries it to `fxnb status` and the console
            _wait(lambda: "Read-only" in (read_status(cfg)["monitor"].get("reason") or ""), 10, "fxnb status")
            # ~15 rescans at 0.2 s, each refused again: not one more log line
            assert _never(lambda: _log(cfg).count("problem area=") > 1, 3), _log(cfg)
            assert len(inv.read_terminal(cfg).open_positions) == 4  # nothing ran
            assert _op(cfg, "ro1") == {}

            _mount("-o", "remount,rw,bind", cdir)
            _wait(lambda: _op(cfg, "ro1").get("status") in FINAL, 20, "the command after the remount")
            assert _op(cfg, "ro1")["status"] == "completed"
            _wait(lambda: mon.get("/status")[1]["problems"] == {}, 10, "the problem cleared")
            assert mon.get("/status")[1]["last_error"] is None
            assert _events(cfg, "commands_recovered")
    finally:
        subprocess.run(["umount", cdir], capture_output=True)
    log = _log(cfg)
    assert "Traceback" not in log
    assert log.count("problem area=") == 1 and log.count("problem_cleared") == 1, log
    assert inv.read_terminal(cfg).open_positions == {}


def test_monitor_starts_with_read_only_commands_and_a_leftover_then_cleans_up(tmp_path: Path) -> None:
    """A file left in processing/ (claimed, never recorded) and commands/ read-only at start: the monitor
    still starts (the rules must run), runs the leftover once, and removes it when it can."""
    cfg = make_workspace(tmp_path / "ws", sim_positions=3, overrides=BASE)
    cdir = CommandDir(cfg.paths.commands)
    cdir.write("all", id="left")
    assert cdir.claim(cfg.paths.commands / "cmd_left.json") is not None  # as if killed right after the claim
    _mount("--bind", str(cdir.root), str(cdir.root))
    try:
        _mount("-o", "remount,ro,bind", str(cdir.root))
        with MonitorProcess(cfg) as mon:
            status = _wait(lambda: (s := mon.get("/status")[1]).get("problems") and s, 10, "the problem reported")
            assert "Read-only file system" in status["problems"]["commands"]
            assert _op(cfg, "left")["status"] == "completed"
            assert [p.name for p in cdir.in_processing()] == ["cmd_left.json"]
            _mount("-o", "remount,rw,bind", str(cdir.root))
            _wait(lambda: not cdir.in_processing(), 10, "the leftover removed")
            _wait(lambda: mon.get("/status")[1]["problems"] == {}, 10, "the problem cleared")
    finally:
        subprocess.run(["umount", str(cdir.root)], capture_output=True)
    assert [o["status"] for o in _query(cfg, "SELECT status FROM position_close_operations")] == ["completed"]
    _assert_no_overclose(cfg)
    assert "Traceback" not in _log(cfg)


# --------------------------------------------------------------------------- full database disk
def test_full_database_holds_commands_then_runs_each_once_or_expires_it(tmp_path: Path) -> None:
    """The database alone is on a full disk: commands are taken but not run (no audit, no close); when it
    has space again the one still valid runs once, the one past its expiry is recorded 'expired', unrun."""
    with _tmpfs(tmp_path / "dbfs", "32m") as mnt:
        cfg = make_workspace(tmp_path / "ws", sim_positions=6,
                             overrides={**BASE, "paths": {"database": str(mnt / "fxnb.db")}})
        cdir = CommandDir(cfg.paths.commands)
        with MonitorProcess(cfg) as mon:
            _wait(lambda: len(_open_in_db(cfg)) == 6, 30, "the first poll")
            keep, lapse = sorted(_open_in_db(cfg))[:2]
            filler = fill_disk(mnt)
            body = mon.wait_health(503, timeout=20)
            assert any("database write failed: database or disk is full" in r for r in body["reasons"]), body
            status = mon.get("/status")[1]
            assert "database or disk is full" in status["last_error"], status

            cdir.write("single", ticket=keep, id="held")
            short = cdir.write("single", ticket=lapse, id="lapsed", expires_in=1.0)
            _wait(lambda: not cdir.pending(), 10, "both files taken")
            assert {p.name for p in cdir.in_processing()} == {"cmd_held.json", "cmd_lapsed.json"}
            ledger = inv.read_terminal(cfg)
            assert keep in ledger.open_positions and lapse in ledger.open_positions and not ledger.fxnb_outs()
            assert short.expires_at is not None
            _wait(lambda: time.time() > short.expires_at.timestamp() + 0.3, 5, "the short command to expire")

            filler.unlink()
            _wait(lambda: _op(cfg, "held").get("status") in FINAL and _op(cfg, "lapsed").get("status") in FINAL,
                  20, "both commands final")
            mon.wait_healthy(timeout=10)
            assert _op(cfg, "held")["status"] == "completed", _op(cfg, "held")
            assert _op(cfg, "lapsed")["status"] == "expired", _op(cfg, "lapsed")
            _wait(lambda: not cdir.in_processing(), 10, "processing/ empty")
            recovered = _events(cfg, "database_recovered")
            assert recovered and "database or disk is full" in recovered[0]["message"]
            assert mon.get("/status")[1]["problems"] == {}

        ledger = _assert_no_overclose(cfg)
        assert _outs(ledger, keep) == 1 and keep not in ledger.open_positions
        assert _outs(ledger, lapse) == 0 and lapse in ledger.open_positions  # never run late
        assert "Traceback" not in _log(cfg)


def test_database_full_in_the_middle_of_a_close_all_finishes_it_without_closing_twice(tmp_path: Path) -> None:
    """Results stop being recordable halfway through a close-all: the closes already sent are found in the
    terminal, the rest run once the database has space again, none twice."""
    n = 200
    overrides = {**BASE, "broker": {"sim": {"faults": {"latency_ms": 3.0}}}}
    with _tmpfs(tmp_path / "dbfs", "32m") as mnt:
        cfg = make_workspace(tmp_path / "ws", sim_positions=n,
                             overrides={**overrides, "paths": {"database": str(mnt / "fxnb.db")}})
        with MonitorProcess(cfg) as mon:
            _wait(lambda: len(_open_in_db(cfg)) == n, 30, "the first poll")
            CommandDir(cfg.paths.commands).write("all", id="big")
            _wait(lambda: _query(cfg, "SELECT COUNT(*) AS n FROM close_results")[0]["n"] >= 20, 30, "20 closes")
            filler = fill_disk(mnt)
            mon.wait_health(503, timeout=20)
            filler.unlink()
            _wait(lambda: _op(cfg, "big").get("status") in FINAL, 60, "the close-all final")
            mon.wait_healthy(timeout=10)
            _wait(lambda: not _open_in_db(cfg), 20, "a poll that sees the book flat")
            assert not CommandDir(cfg.paths.commands).in_processing()
        op = _op(cfg, "big")
        assert op["status"] == "completed", op
        results = _query(cfg, "SELECT ticket FROM close_results WHERE operation_id = ?", [op["id"]])
        assert sorted(r["ticket"] for r in results) == sorted(json.loads(op["target_tickets"]))
        ledger = _assert_no_overclose(cfg)
        assert ledger.open_positions == {}
        assert 'problem area="database"' in _log(cfg), "the disk must have filled during the close-all"


# --------------------------------------------------------------------------- full commands disk
def test_full_commands_disk_bad_file_gets_reason_and_row_once_there_is_space(tmp_path: Path) -> None:
    """Only ``commands/`` is full: a valid command still runs (renames need no space); a bad file whose reason
    cannot be written is not left in errors/ unexplained but waits, and is rejected properly later."""
    with _tmpfs(tmp_path / "cmdfs", "1m") as mnt:
        cfg = make_workspace(tmp_path / "ws", sim_positions=4,
                             overrides={**BASE, "paths": {"commands": str(mnt / "commands")}})
        staging = mnt / "staging"
        staging.mkdir()
        now = datetime.now(UTC).isoformat()
        (staging / "cmd_good.json").write_text(json.dumps({"id": "good", "type": "all", "timestamp": now}))
        (staging / "cmd_bad.json").write_text(json.dumps({"id": "bad", "type": "explode", "timestamp": now}))
        commands, errors = cfg.paths.commands, cfg.paths.commands / "errors"
        with MonitorProcess(cfg) as mon:
            _wait(lambda: len(_open_in_db(cfg)) == 4, 30, "the first poll")
            filler = fill_disk(mnt)
            (staging / "cmd_bad.json").rename(commands / "cmd_bad.json")
            status = _wait(lambda: (s := mon.get("/status")[1])["problems"] and s, 10, "the problem reported")
            assert "No space left on device" in status["problems"]["commands"], status
            assert mon.get("/healthz")[0] == 200
            assert not (errors / "cmd_bad.json").exists(), "in errors/ without its reason"
            assert (commands / "processing" / "cmd_bad.json").exists()
            assert _op(cfg, "bad") == {}
            # a valid command still runs: claiming and removing a file need no space (removing frees some)
            (staging / "cmd_good.json").rename(commands / "cmd_good.json")
            _wait(lambda: _op(cfg, "good").get("status") == "completed", 20, "the valid command")

            filler.unlink()
            _wait(lambda: _op(cfg, "bad").get("status") == "rejected", 10, "the bad file rejected")
            assert (errors / "cmd_bad.json").exists()
            reason = json.loads((errors / "cmd_bad.json.error.json").read_text())
            assert "explode" in reason["reason"]
            _wait(lambda: mon.get("/status")[1]["problems"] == {}, 10, "the problem cleared")
            assert not list((commands / "processing").iterdir())
        rows = _query(cfg, "SELECT status FROM position_close_operations WHERE file_name = 'cmd_bad.json'")
        assert [r["status"] for r in rows] == ["rejected"]
        log = _log(cfg)
        assert "Traceback" not in log and log.count("problem area=") == 1, log
