"""Crash safety: kill -9 the monitor again and again in the middle of a close-all, and at exact points.

1. A seeded loop of eight ``kill -9`` (six at a random number of closes done, two at a random
   moment after start, which land in start-up and reconciliation) during a close-all of 500
   positions, with other commands and bad files in flight, restarting each time.
2. A matrix of exact crash points (``_crashpoint_monitor.py`` SIGKILLs itself right before or
   after one named call): between claim and record, record and claim, send and record,
   record and finish, finish and file removal, and while moving a bad file to ``errors/``.
3. The environment failing under the monitor: ``commands`` is a file, ``commands/`` becomes
   read-only, the disk fills up.

After every scenario: nothing closed twice or beyond its volume (terminal deal history),
every command final, nothing lost from the database, every file accounted for.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _hardening_util import CrashingMonitor, eventually, op_status, query, seed_doc, wait_until, write_command

from fxnb.config import Config
from fxnb.soak import invariants as inv
from fxnb.storage import Store
from fxnb.testing import FINAL, MonitorProcess, fill_disk, make_workspace, run_cli

RULES_OFF = {"profit_monitor": {"rules_mode": "off"}, "commands": {"max_age_seconds": 600},
             "broker": {"sim": {"faults": {"latency_ms": 1.5}}}}  # ~10 ms a close: kills spread over the run


def _ws(directory: Path, n: int) -> Config:
    return make_workspace(directory, sim_positions=n, overrides=RULES_OFF)


def _open_in_db(cfg: Config) -> set[int]:
    return {r["ticket"] for r in query(cfg, "SELECT ticket FROM position_tracking WHERE status = 'open'")}


def _results(cfg: Config, command_id: str) -> int:
    rows = query(cfg, "SELECT COUNT(*) AS n FROM close_results r JOIN position_close_operations o "
                      "ON o.id = r.operation_id WHERE o.command_id = ?", [command_id])
    return rows[0]["n"] if rows else 0


def _assert_checks(checks: list[inv.Check]) -> None:
    bad = [c for c in checks if not c.ok]
    assert not bad, inv.render_table(checks)


# --------------------------------------------------------------------------- 1. the kill -9 loop
def test_kill9_eight_times_during_close_all_of_500(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    cfg = _ws(tmp_path / "ws", 500)
    mon = MonitorProcess(cfg).start()
    wait_until(lambda: len(_open_in_db(cfg)) == 500, 30, "the first poll")
    tickets = sorted(_open_in_db(cfg))
    expect_rejected: dict[str, bool] = {}
    ids: list[str] = []

    def drop(i: int) -> None:
        """One more file in flight around each kill: a valid single or partial, or a malformed one."""
        kind = i % 3
        name = f"cmd_k{i}.json"
        if kind == 0:
            write_command(cfg, name, seed_doc(f"k{i}", "single", ticket=rng.choice(tickets)))
        elif kind == 1:
            write_command(cfg, name, seed_doc(f"k{i}", "partial", ticket=rng.choice(tickets), percent=50))
        else:
            write_command(cfg, name, seed_doc(f"k{i}", "single", ticket="../../etc/passwd"))
        expect_rejected[name] = kind == 2
        if kind != 2:
            ids.append(f"k{i}")

    write_command(cfg, "cmd_1.json", seed_doc(1, "single", ticket=tickets[0]))
    write_command(cfg, "cmd_2.json", seed_doc(2, "partial", ticket=tickets[1], percent=50))
    write_command(cfg, "cmd_3.json", b'{"id": 3, "type": "all", "ticket": null')  # truncated for ever
    os.utime(cfg.paths.commands / "cmd_3.json", (time.time() - 60, time.time() - 60))  # past the grace
    expect_rejected.update({"cmd_1.json": False, "cmd_2.json": False, "cmd_3.json": True})
    ids += ["1", "2"]
    out = run_cli("close", "all", cfg=cfg)
    assert out.returncode == 0, out.stderr
    close_all = out.stdout.split()[3]
    ids.append(close_all)

    plan: list[tuple[str, float]] = [("closes", k) for k in sorted(rng.sample(range(5, 490), 6))]
    for _ in range(2):
        plan.insert(rng.randrange(1, len(plan) + 1), ("delay", rng.uniform(0.2, 1.6)))
    seen_ops: dict[int, tuple[Any, str]] = {}
    seen_results: dict[tuple[int, int], str] = {}
    kills = []
    for i, (mode, point) in enumerate(plan):
        if i:
            mon = MonitorProcess(cfg).start(wait=False)
        if mode == "closes":
            wait_until(lambda p=point: _results(cfg, close_all) >= p or op_status(cfg, close_all) in FINAL,
                       60, f"{point:.0f} closes")
        else:
            time.sleep(point)  # the kill point itself: a random moment after the process started
        mon.kill9()
        kills.append((mode, round(point, 2), _results(cfg, close_all)))
        for o in query(cfg, "SELECT id, command_id, status FROM position_close_operations"):
            seen_ops[o["id"]] = (o["command_id"], o["status"])
        for r in query(cfg, "SELECT operation_id, ticket, status FROM close_results"):
            seen_results[(r["operation_id"], r["ticket"])] = r["status"]
        drop(i)

    final = MonitorProcess(cfg).start()
    try:
        wait_until(lambda: all(op_status(cfg, c) in FINAL for c in ids), 60, "every command to be final")
        wait_until(lambda: not list(cfg.paths.commands.glob("cmd_*.json")), 30, "the queue to drain")
        wait_until(lambda: not _open_in_db(cfg), 30, "a poll that sees the book flat")
    finally:
        assert final.stop() == 0
    print(f"kills (mode, point, closes recorded at the kill): {kills}")

    ledger = inv.read_terminal(cfg)
    checks = inv.check_no_overclose(ledger)
    checks += inv.check_audit_trail(cfg.paths.database, ledger)
    checks += inv.check_commands_final(cfg.paths.database, ids)
    checks.append(inv.check_files_accounted(cfg.paths.commands, expect_rejected=expect_rejected))
    checks.append(inv.check_db_matches_terminal(cfg.paths.database, ledger))
    print(inv.render_table(checks))
    _assert_checks(checks)
    assert ledger.open_positions == {}, "the close-all must finish across the restarts"

    op = query(cfg, "SELECT * FROM position_close_operations WHERE command_id = ?", [close_all])[0]
    assert op["status"] == "completed", op
    assert len(json.loads(op["target_tickets"])) == _results(cfg, close_all) >= 497  # 500 minus the singles
    # Nothing lost from the database: every row seen after any kill is still there, final ones unchanged.
    ops_now = {o["id"]: (o["command_id"], o["status"])
               for o in query(cfg, "SELECT id, command_id, status FROM position_close_operations")}
    for op_id, (cid, status) in seen_ops.items():
        assert op_id in ops_now and ops_now[op_id][0] == cid, (op_id, cid)
        if status in FINAL:
            assert ops_now[op_id][1] == status, (cid, status, ops_now[op_id][1])
    res_now = {(r["operation_id"], r["ticket"]): r["status"]
               for r in query(cfg, "SELECT operation_id, ticket, status FROM close_results")}
    assert all(res_now.get(k) == v for k, v in seen_results.items())
    tracked = query(cfg, "SELECT status FROM position_tracking")
    assert len(tracked) == 500 and {r["status"] for r in tracked} == {"closed"}
    assert len(kills) == 8


# --------------------------------------------------------------------------- 2. exact crash points
@dataclass(frozen=True)
class Point:
    spec: str
    command: str  # "all", "partial" or "bad"
    expect: tuple[str, ...]  # the command's acceptable final statuses after the restart


# Where a close's outcome is written: one transaction per batch of results since the batched recording,
# one add_result per ticket before it.
RECORD_POINT = ("fxnb.storage.writer:Store.record_closes:after:1" if hasattr(Store, "record_closes")
                else "fxnb.storage.writer:Store.add_result:after:2")
POINTS: dict[str, Point] = {
    "claimed-not-recorded": Point("fxnb.commands:CommandDir.claim:after:1", "all", ("completed",)),
    "recorded-not-claimed": Point("fxnb.storage.writer:Store.create_operation:after:1", "all", ("completed",)),
    "claimed-nothing-sent": Point("fxnb.storage.writer:Store.claim_operation:after:1", "all", ("completed",)),
    "sent-not-recorded": Point("fxnb.broker.adapter:Broker.close:after:3", "all", ("completed",)),
    "recorded-not-finished": Point(RECORD_POINT, "all", ("completed",)),
    "finished-file-not-removed": Point("fxnb.storage.writer:Store.finish_operation:after:1", "all",
                                       ("completed",)),
    "partial-sent-not-recorded": Point("fxnb.broker.adapter:Broker.close:after:1", "partial", ("completed",)),
    "bad-file-not-yet-in-errors": Point("fxnb.commands:CommandDir.fail:before:1", "bad", ("rejected",)),
}
N_POINT = 6


@dataclass
class CrashRun:
    cfg: Config
    exit_code: int
    target: int
    ledger: inv.Ledger
    ops: list[dict[str, Any]]
    results: list[dict[str, Any]]
    tracked: dict[int, dict[str, Any]]


_runs: dict[str, CrashRun] = {}


@pytest.fixture(scope="module")
def crash_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("crashpoints")


def crash_run(name: str, base: Path) -> CrashRun:
    """Run scenario ``name`` once per session (several tests look at the same run)."""
    if name in _runs:
        return _runs[name]
    point = POINTS[name]
    cfg = _ws(base / name, N_POINT)
    mon = CrashingMonitor(cfg, point.spec).start()
    wait_until(lambda: len(_open_in_db(cfg)) == N_POINT, 30, "the first poll")
    target = min(_open_in_db(cfg))
    if point.command == "all":
        write_command(cfg, "cmd_1.json", seed_doc(1, "all"))
    elif point.command == "partial":
        write_command(cfg, "cmd_1.json", seed_doc(1, "partial", ticket=target, percent=50))
    else:
        write_command(cfg, "cmd_1.json", seed_doc(1, "explode"))
    code = mon.wait_crashed(30)
    with MonitorProcess(cfg) as again:
        if point.command != "bad":
            wait_until(lambda: op_status(cfg, "1") in FINAL, 30, "the command to be final")
        wait_until(lambda: not list((cfg.paths.commands / "processing").iterdir()), 30, "processing/ to empty")
        ledger = inv.read_terminal(cfg)
        wait_until(lambda: _open_in_db(cfg) == set(ledger.open_positions), 30, "a poll after the restart")
        again.wait_healthy()
    run = CrashRun(cfg, code, target, inv.read_terminal(cfg),
                   query(cfg, "SELECT * FROM position_close_operations ORDER BY id"),
                   query(cfg, "SELECT * FROM close_results ORDER BY id"),
                   {r["ticket"]: r for r in query(cfg, "SELECT * FROM position_tracking")})
    _runs[name] = run
    return run


@pytest.mark.parametrize("name", list(POINTS))
def test_crash_point_is_safe(name: str, crash_dir: Path) -> None:
    point = POINTS[name]
    run = crash_run(name, crash_dir)
    assert run.exit_code == -9, "the monitor must have died by SIGKILL at the crash point"
    checks = inv.check_no_overclose(run.ledger) + inv.check_audit_trail(run.cfg.paths.database, run.ledger)
    checks += inv.check_commands_final(run.cfg.paths.database, [] if point.command == "bad" else ["1"])
    checks.append(inv.check_files_accounted(run.cfg.paths.commands,
                                            expect_rejected={"cmd_1.json": point.command == "bad"}
                                            if name != "finished-file-not-removed" else None))
    checks.append(inv.check_db_matches_terminal(run.cfg.paths.database, run.ledger))
    _assert_checks(checks)
    ops = [o for o in run.ops if o["command_id"] == "1"]
    if point.command == "bad":
        assert [o["status"] for o in run.ops] == ["rejected"]
        assert "explode" in run.ops[0]["error_message"]
        assert len(run.ledger.open_positions) == N_POINT  # a bad file closes nothing
        return
    status = ops[0]["status"]
    assert status in point.expect, ops
    outs = [d for d in run.ledger.outs() if d["position_id"] == run.target]
    if point.command == "partial":
        assert len(outs) == 1, f"the partial close must happen exactly once: {outs}"
        assert len(run.ledger.open_positions) == N_POINT
    elif status == "completed":
        assert run.ledger.open_positions == {}
        assert len({r["ticket"] for r in run.results if r["status"] == "closed"}) == N_POINT
    else:  # reported as not run: then indeed nothing was sent
        assert len(run.ledger.open_positions) == N_POINT and not run.ledger.outs()


def test_crash_after_finish_leaves_no_spurious_rejection(crash_dir: Path) -> None:
    run = crash_run("finished-file-not-removed", crash_dir)
    assert [o["status"] for o in run.ops] == ["completed"], [(o["status"], o["error_message"]) for o in run.ops]
    assert not list((run.cfg.paths.commands / "errors").iterdir())


@pytest.mark.parametrize("name", ["claimed-nothing-sent", "sent-not-recorded"])
def test_reconciled_closes_keep_their_close_reason(name: str, crash_dir: Path) -> None:
    run = crash_run(name, crash_dir)
    check = inv.check_close_reasons(run.cfg.paths.database, run.ledger)
    assert check.ok, check.detail


@pytest.mark.parametrize("name", ["sent-not-recorded", "partial-sent-not-recorded"])
def test_reconciled_close_records_volume_and_deals(name: str, crash_dir: Path) -> None:
    run = crash_run(name, crash_dir)
    found = [r for r in run.results if "restart" in r["message"]]  # the ones found by reconciliation
    assert found
    for res in found:
        outs = [d for d in run.ledger.fxnb_outs() if d["position_id"] == res["ticket"]]
        assert json.loads(res["deals"]) == [d["ticket"] for d in outs], res
        assert abs(res["closed_volume"] - sum(d["volume"] for d in outs)) < 1e-9, res


def test_recorded_unclaimed_command_is_finished_after_restart(crash_dir: Path) -> None:
    run = crash_run("recorded-not-claimed", crash_dir)
    assert run.ops[0]["status"] == "completed", run.ops[0]["error_message"]


# --------------------------------------------------------------------------- 3. the environment fails
def test_commands_path_is_a_file_one_clear_line(tmp_path: Path) -> None:
    cfg = _ws(tmp_path / "ws", 2)
    shutil.rmtree(cfg.paths.commands)
    cfg.paths.commands.write_text("not a directory")
    out = run_cli("monitor", cfg=cfg, timeout=30)
    assert out.returncode == 2, "a configuration problem: exit 2 so that systemd does not restart in a loop"
    assert "Traceback" not in out.stderr
    assert "commands" in out.stderr and len(out.stderr.strip().splitlines()) <= 2, out.stderr


def _mount(*args: str) -> None:
    res = subprocess.run(["mount", *args], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount here ({res.stderr.strip() or res.returncode}); needs root and mount rights")


@dataclass
class ReadOnlyRun:
    alive: bool
    health: int
    healthz: dict[str, Any]
    done_after: str | None
    log: str
    status: dict[str, Any]
    events: list[dict[str, Any]]


@pytest.fixture(scope="module")
def read_only_run(tmp_path_factory: pytest.TempPathFactory) -> ReadOnlyRun:
    """``commands/`` is remounted read-only under a running monitor with a command waiting, then rw again."""
    cfg = _ws(tmp_path_factory.mktemp("ro") / "ws", 4)
    cdir = str(cfg.paths.commands)
    _mount("--bind", cdir, cdir)
    try:
        with MonitorProcess(cfg) as mon:
            wait_until(lambda: len(_open_in_db(cfg)) == 4, 30, "the first poll")
            write_command(cfg, "cmd_ro.json", seed_doc("ro", "loss"))
            _mount("-o", "remount,ro,bind", cdir)
            # the monitor tries (watcher event + rescan every second) and cannot claim the file, or (it usually
            # wins the race with the remount) ran it and cannot remove it from processing/: it retries on each
            # rescan; a log line per rescan would be seen here within 10 s
            eventually(lambda: (cfg.paths.logs / "profit_monitor.log").read_text().count("Read-only") >= 3, 10)
            alive, (health, healthz) = mon.proc.poll() is None, mon.get("/healthz")
            status = mon.get("/status")[1]
            events = query(cfg, "SELECT * FROM monitor_events")
            subprocess.run(["mount", "-o", "remount,rw,bind", cdir], check=True)
            done = wait_until(lambda: op_status(cfg, "ro") in FINAL and op_status(cfg, "ro"), 20, "the command")
            log = (cfg.paths.logs / "profit_monitor.log").read_text()
    finally:
        subprocess.run(["umount", cdir], capture_output=True)
    return ReadOnlyRun(alive, health, healthz, done, log, status, events)


def test_read_only_commands_dir_no_crash_and_recovers(read_only_run: ReadOnlyRun) -> None:
    assert read_only_run.alive and read_only_run.health == 200
    assert read_only_run.done_after == "completed"  # queued while read-only, executed once writable again


def test_read_only_commands_dir_is_one_clear_reported_error(read_only_run: ReadOnlyRun) -> None:
    assert "Traceback" not in read_only_run.log
    # said once when it starts (and once when it clears), not on each of the ~10 rescans in between
    assert read_only_run.log.count("Read-only") <= 2, read_only_run.log
    visible = json.dumps(read_only_run.status) + json.dumps(read_only_run.events)
    assert "Read-only" in visible or "read-only" in visible
    assert "Read-only" in json.dumps(read_only_run.healthz), "/healthz names it too (still 200: rules run)"


@dataclass
class FullDiskRun:
    alive_throughout: bool
    health_full: tuple[int, dict[str, Any]]
    health_after: int
    claimed_while_full: str | None
    bad_file_reason: bool
    bad_file_row: bool
    after_free: str | None
    stuck: list[str]


@pytest.fixture(scope="module")
def full_disk_run(tmp_path_factory: pytest.TempPathFactory) -> FullDiskRun:
    """The whole workspace on a 32 MB tmpfs that fills up under the monitor, then frees up."""
    mnt = tmp_path_factory.mktemp("full")
    _mount("-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mnt))
    try:
        cfg = _ws(mnt / "ws", 4)
        staging = mnt / "staging"
        staging.mkdir()
        (staging / "cmd_full.json").write_text(json.dumps(seed_doc("full", "loss")))
        (staging / "cmd_fullbad.json").write_text(json.dumps(seed_doc("fullbad", "explode")))
        with MonitorProcess(cfg) as mon:
            wait_until(lambda: len(_open_in_db(cfg)) == 4, 30, "the first poll")
            filler = fill_disk(mnt)
            for p in staging.iterdir():  # a rename needs no free blocks: the files arrive on a full disk
                os.rename(p, cfg.paths.commands / p.name)
            wait_until(lambda: not list(cfg.paths.commands.glob("cmd_*.json")), 15, "the monitor to take them")
            health_full = mon.wait_health(503, timeout=20)
            alive = mon.proc.poll() is None
            filler.unlink()
            mon.wait_healthy(timeout=30)
            write_command(cfg, "cmd_after.json", seed_doc("after", "profit"))
            wait_until(lambda: op_status(cfg, "after") in FINAL, 20, "a command after the disk freed up")
            # the command claimed while the disk was full: give it the time a later one needed, and more
            eventually(lambda: op_status(cfg, "full") in FINAL, 5)
            stuck = sorted(p.name for p in (cfg.paths.commands / "processing").iterdir())
            errors = cfg.paths.commands / "errors"
            run = FullDiskRun(
                alive_throughout=alive and mon.proc.poll() is None,
                health_full=(503, health_full), health_after=mon.get("/healthz")[0],
                claimed_while_full=op_status(cfg, "full"),
                bad_file_reason=(errors / "cmd_fullbad.json.error.json").exists(),
                bad_file_row=bool(query(cfg, "SELECT 1 FROM position_close_operations WHERE file_name = ?",
                                        ["cmd_fullbad.json"])),
                after_free=op_status(cfg, "after"), stuck=stuck)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    return run


def test_full_disk_no_crash_and_recovers(full_disk_run: FullDiskRun) -> None:
    assert full_disk_run.alive_throughout
    assert full_disk_run.health_after == 200
    assert full_disk_run.after_free == "completed"


def test_full_disk_command_claimed_meanwhile_is_not_stuck(full_disk_run: FullDiskRun) -> None:
    assert full_disk_run.stuck == []
    assert full_disk_run.claimed_while_full in FINAL


def test_full_disk_bad_file_still_gets_reason_and_row(full_disk_run: FullDiskRun) -> None:
    assert full_disk_run.bad_file_reason and full_disk_run.bad_file_row


def test_full_disk_is_named_in_health(full_disk_run: FullDiskRun) -> None:
    assert "disk" in json.dumps(full_disk_run.health_full[1]).lower()
