"""Hostile input thrown at ONE running monitor: it stays up, rejects every bad file with a reason and a
``rejected`` row, and no position is ever closed by one. Then every kind of config mistake.

* hypothesis-generated files: random bytes, random JSON, and valid commands aimed at real open
  tickets with at least one defect (wrong types, huge numbers, NaN/Infinity, unicode, path-like
  tickets, unknown keys, bad times, id/file-name mismatch, UTF-16, deep nesting, duplicate keys);
* special files: empty, 10 MB, symlinks (to /etc/passwd, to a valid close-all elsewhere), a FIFO,
  a directory, odd names;
* files that vanish before they are read;
* 2,000 bad files at once;
* broken configs: every leaf key in-process, and ``fxnb monitor --config`` as a subprocess for
  each kind of mistake (no traceback, non-zero exit, the key named).
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from _hardening_util import eventually, query, seed_doc, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fxnb.commands import CommandDir
from fxnb.config import SCHEMA, config_from_mapping
from fxnb.configspec import Bool, Choice, Free, Num, Str
from fxnb.errors import ConfigError
from fxnb.soak import invariants as inv
from fxnb.testing import MonitorProcess, make_workspace, template

N_POSITIONS = 20
_counter = itertools.count(1)
THROWN: dict[str, str] = {}  # file name -> what was thrown (every one must end rejected)


class Hostile:
    def __init__(self, root: Path) -> None:
        self.cfg = make_workspace(root / "ws", sim_positions=N_POSITIONS,
                                  overrides={"profit_monitor": {"rules_mode": "off"}})
        self.staging = root / "ws" / "staging"  # same file system: a rename makes a file appear whole
        self.staging.mkdir()
        self.mon = MonitorProcess(self.cfg)
        self.tickets: list[int] = []
        self.flood_poll_gap = 0.0

    @property
    def errors(self) -> Path:
        return self.cfg.paths.commands / "errors"

    def throw(self, data: bytes, what: str, *, name: str | None = None, old: bool = True) -> str:
        """Make ``commands/<name>`` appear at once; ``old`` backdates it past the 2 s grace for half-written files."""
        name = name or f"cmd_h{next(_counter)}.json"
        tmp = self.staging / name
        tmp.write_bytes(data)
        if old:
            past = time.time() - 30
            os.utime(tmp, (past, past))
        os.rename(tmp, self.cfg.paths.commands / name)
        THROWN[name] = what
        return name

    def rejected(self, names: list[str], timeout: float = 30) -> dict[str, str]:
        """Wait until each file is in errors/ with its reason; returns name -> reason."""
        wait_until(lambda: all((self.errors / f"{n}.error.json").exists() for n in names), timeout,
                   f"{len(names)} files to be rejected")
        return {n: json.loads((self.errors / f"{n}.error.json").read_text())["reason"] for n in names}

    def rows(self) -> dict[str, dict[str, Any]]:
        return {r["file_name"]: r for r in query(self.cfg, "SELECT * FROM position_close_operations")}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    h = Hostile(tmp_path_factory.mktemp("hostile"))
    h.mon.start()
    wait_until(lambda: len(query(h.cfg, "SELECT ticket FROM position_tracking")) == N_POSITIONS, 30, "a poll")
    h.tickets = sorted(r["ticket"] for r in query(h.cfg, "SELECT ticket FROM position_tracking"))
    yield h
    h.mon.stop()


def _assert_rejected(h: Hostile, reasons: dict[str, str]) -> None:
    # the reason file lands in errors/ just before the row commits: wait for the rows, not only the files
    eventually(lambda: set(reasons) <= set(h.rows()), 10)
    rows = h.rows()
    for name, reason in reasons.items():
        assert reason.strip(), name
        row = rows.get(name)
        assert row is not None, f"{name} ({THROWN[name]}): no 'rejected' row"
        assert row["status"] == "rejected" and row["error_message"] == reason, (name, row)
        assert not (h.cfg.paths.commands / name).exists()


def _assert_untouched(h: Hostile) -> None:
    assert h.mon.get("/healthz")[0] == 200
    assert h.mon.proc is not None and h.mon.proc.poll() is None
    ledger = inv.read_terminal(h.cfg)
    assert sorted(ledger.open_positions) == h.tickets, "a bad file closed something"
    assert ledger.outs() == []
    ops = query(h.cfg, "SELECT status, COUNT(*) AS n FROM position_close_operations GROUP BY status")
    assert {o["status"] for o in ops} <= {"rejected"}, ops


# --------------------------------------------------------------------------- hypothesis
SPECIAL_NUMBERS = [0, -1, 2**63, 2**64 + 1, 10**30, -(10**30), 1e308, -1e308, 1e-320, 0.0, -0.0, 5.5]
NON_FINITE = ["NaN", "Infinity", "-Infinity"]
ODD_TEXT = ["../../etc/passwd", "/etc/passwd", "..\\..\\boot.ini", "", " ", "\u0000", "EURUSD\n", " EURUSD",
            "\u202eDSUREU", "💣" * 20, "x" * 65, "ｅｕｒｕｓｄ", "null", "1e3", "0x10"]
_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                       st.text(max_size=20), st.sampled_from(ODD_TEXT), st.sampled_from(SPECIAL_NUMBERS))
json_values = st.recursive(_json_leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                           max_size=4), max_leaves=12)
wrong_values = st.one_of(st.sampled_from(ODD_TEXT), st.sampled_from(SPECIAL_NUMBERS), st.booleans(),
                         st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                              max_size=2))

# key -> values that make it invalid (beyond plain wrong_values)
MUTATIONS: dict[str, st.SearchStrategy[Any]] = {
    "ticket": st.one_of(st.sampled_from(["../../etc/passwd", "500000001", 1.0, -5, 0, 2**63, 10**30, True, [1]]),
                        st.text(min_size=1, max_size=12)),
    "volume": st.sampled_from([0, -0.01, 1001, 1e308, "0.1", True, [0.1]]),
    "percent": st.sampled_from([0, -1, 100.0001, 101, 1e9, "50", False]),
    "type": st.one_of(st.sampled_from(["explode", "ALL", "all ", "Profit", "close", "", "ａｌｌ", "single\u0000"]),
                      st.integers()),
    "timestamp": st.sampled_from(["yesterday", "2024-13-45T99:00:00", "99999-01-01T00:00:00", "", 1700000000,
                                  "2099-01-01T00:00:00", "2024-01-01T00:00:00\u0000", "💣"]),
    "status": st.sampled_from(["done", "completed", "", 1, None, "PENDING"]),
    "symbol": st.sampled_from(["x" * 65, "", " EURUSD", "EUR\nUSD", 1, ["EURUSD"]]),
    "magic": st.sampled_from([-1, "0", 1.5, 2**64, True]),
    "side": st.sampled_from(["long", "BUY", 1, "", "sell "]),
    "expires_at": st.sampled_from(["2000-01-01T00:00:00", "9999-01-01T00:00:00", "soon", 60]),
    "requested_by": st.sampled_from(["", " me", "x" * 65, "a\nb", 7]),
    "tiket": st.just(500000001),
    "__proto__": json_values,
    "ticket\u0000": st.just(1),
}


def _base(cmd_id: str, kind: str, ticket: int) -> dict[str, Any]:
    doc = seed_doc(cmd_id, kind if not kind.startswith("partial") else "partial")
    if kind in ("single", "partial_v", "partial_p"):
        doc["ticket"] = ticket
    if kind == "partial_v":
        doc["volume"] = 0.01
    if kind == "partial_p":
        doc["percent"] = 50
    if kind in ("pause_rules", "resume_rules"):
        doc.pop("ticket")
    return doc


@st.composite
def hostile_file(draw: st.DrawFn, tickets: list[int]) -> tuple[str, bytes, str]:
    """(file name, bytes, description). Always something the monitor must refuse."""
    n = next(_counter)
    name = f"cmd_h{n}.json"
    family = draw(st.sampled_from(["bytes", "json", "mutant", "mutant", "mutant", "mutant", "encoding"]))
    if family == "bytes":
        data = draw(st.binary(max_size=200))
        return name, data, "random bytes"
    if family == "json":
        value = draw(json_values)
        if isinstance(value, dict):
            value.pop("id", None)  # no id: cannot be a valid command
        return name, json.dumps(value).encode(), "random JSON"
    kind = draw(st.sampled_from(["single", "partial_v", "partial_p", "profit", "loss", "all", "pause_rules"]))
    doc = _base(f"h{n}", kind, draw(st.sampled_from(tickets)))
    keys = draw(st.lists(st.sampled_from([*MUTATIONS, "id", "drop"]), min_size=1, max_size=3, unique=True))
    for key in keys:
        if key == "id":
            doc["id"] = draw(st.one_of(st.sampled_from([f"h{n + 1}", "", "../x", True, 0, -1, 1.5, None, "é"]),
                                       st.text(max_size=70).filter(lambda s, n=n: s != f"h{n}")))
        elif key == "drop":
            doc.pop(draw(st.sampled_from(["id", "type", "timestamp"])))
        else:
            doc[key] = draw(MUTATIONS[key])
    if family == "encoding":
        doc["id"] = doc.get("id", f"h{n}")
        return name, json.dumps(doc).encode("utf-16"), "a valid-looking command in UTF-16"
    text = json.dumps(doc, allow_nan=True)
    if draw(st.booleans()):  # NaN / Infinity literals, which Python's json happily reads
        text = text.rstrip("}") + f', "volume": {draw(st.sampled_from(NON_FINITE))}}}'
    return name, text.encode(), f"mutated {kind}: {keys}"


@settings(max_examples=30, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_hypothesis_files_are_all_rejected(hostile: Hostile, data: st.DataObject) -> None:
    files = data.draw(st.lists(hostile_file(hostile.tickets), min_size=1, max_size=12))
    names = [hostile.throw(raw, what, name=name) for name, raw, what in files]
    _assert_rejected(hostile, hostile.rejected(names))
    assert hostile.mon.get("/healthz")[0] == 200


# --------------------------------------------------------------------------- special files
def test_special_files(hostile: Hostile, tmp_path: Path) -> None:
    h = hostile
    c = h.cfg.paths.commands
    names = [
        h.throw(b"", "empty file", old=False),  # fresh: waits out the grace for half-written files, then goes
        h.throw(b"{" + b" " * (10 * 1024 * 1024) + b"}", "10 MB"),
        h.throw(json.dumps(seed_doc("huge", "all")).encode() + b" " * 70_000, "valid command padded past the limit",
                name="cmd_huge.json"),
        h.throw(b"[" * 100_000, "deep nesting"),
        h.throw(b'{"id": "dup", "type": "single", "ticket": 1, "ticket": %d, "timestamp": "%s"}'
                % (h.tickets[0], seed_doc(0, "x")["timestamp"].encode()), "duplicate key", name="cmd_dup.json"),
        h.throw(b"\xef\xbb\xbf" + b"\xff\xfe" * 10, "BOM then garbage"),
        h.throw(json.dumps(seed_doc("é", "all")).encode(), "unicode id", name="cmd_é.json"),
        h.throw(json.dumps(seed_doc("nl", "all")).encode(), "newline in the name", name="cmd_n\nl.json"),
    ]
    # symlinks: to a system file, and to a perfectly valid close-all outside commands/ (same id as the link)
    outside = tmp_path / "cmd_evil.json"
    outside.write_text(json.dumps(seed_doc("evil", "all")))
    os.symlink(outside, c / "cmd_evil.json")
    os.symlink("/etc/passwd", c / "cmd_passwd.json")
    os.mkfifo(c / "cmd_fifo.json")
    THROWN.update({"cmd_evil.json": "symlink to a valid close-all", "cmd_passwd.json": "symlink to /etc/passwd",
                   "cmd_fifo.json": "FIFO"})
    names += ["cmd_evil.json", "cmd_passwd.json", "cmd_fifo.json"]
    (c / "cmd_dir.json").mkdir()  # a directory is not a command: left alone, and it must not jam the queue
    reasons = h.rejected(names, timeout=30)
    _assert_rejected(h, reasons)
    assert "symbolic link" in reasons["cmd_evil.json"] and "symbolic link" in reasons["cmd_passwd.json"]
    assert "regular file" in reasons["cmd_fifo.json"]
    assert "limit" in reasons["cmd_huge.json"]
    assert "more than once" in reasons["cmd_dup.json"]
    assert (h.errors / "cmd_evil.json").is_symlink() and outside.exists()  # the link moved, the target untouched
    assert (c / "cmd_dir.json").is_dir()
    (c / "cmd_dir.json").rmdir()
    _assert_untouched(h)


def test_long_file_name_is_rejected_with_a_reason(hostile: Hostile) -> None:
    """A legal name too long for '<name>.error.json' (> 255 bytes): the reason file gets a shortened name."""
    h = hostile
    name = h.throw(b"{}", "long name", name="cmd_" + "x" * 240 + ".json")  # 249 bytes: a legal name
    wait_until(lambda: not (h.cfg.paths.commands / name).exists(), 20, "the monitor to take it")
    assert eventually(lambda: name in h.rows(), 2), "no 'rejected' row for the long-named file"
    assert h.rows()[name]["status"] == "rejected"
    assert (h.errors / name).exists()
    records = [json.loads(p.read_text()) for p in h.errors.glob("*.error.json")]
    mine = [r for r in records if r.get("original") == name]
    assert mine, "no error record for the long-named file"
    assert mine[0]["reason"] == h.rows()[name]["error_message"]


def test_long_names_and_their_duplicates_get_reason_files(tmp_path: Path) -> None:
    """Up to 255 bytes, ASCII or not, failed three times: every copy kept, each with its own record."""
    cdir = CommandDir(tmp_path / "commands")
    cdir.ensure()
    names = ["cmd_" + "x" * 240 + ".json", "cmd_" + "é" * 120 + ".json", "cmd_" + "y" * 246 + ".json"]
    for name in names:
        for _ in range(3):
            (cdir.root / name).write_bytes(b"{}")
            cdir.fail(cdir.root / name, f"bad {name}")
    records = [json.loads(p.read_text()) for p in cdir.errors_dir.glob("*.error.json")]
    assert sorted(r["original"] for r in records) == sorted(names * 3)
    assert all((cdir.errors_dir / r["file"]).exists() and r["reason"] == f"bad {r['original']}" for r in records)
    assert max(len(os.fsencode(p.name)) for p in cdir.errors_dir.iterdir()) <= 255


def test_files_that_vanish_before_they_are_read(hostile: Hostile) -> None:
    h = hostile
    taken = []
    race = random.Random(7)
    for _ in range(300):
        name = h.throw(json.dumps(seed_doc("gone", "single", ticket=h.tickets[0])).encode(), "vanishing file")
        time.sleep(race.uniform(0, 0.02))  # the race itself: sometimes the monitor wins, sometimes the deleter
        try:
            (h.cfg.paths.commands / name).unlink()
            THROWN.pop(name)
        except FileNotFoundError:
            taken.append(name)  # the monitor claimed it first: then it must be rejected properly
    reasons = h.rejected(taken, timeout=30)
    _assert_rejected(h, reasons)
    assert all("does not match the file name" in r for r in reasons.values()), reasons
    print(f"vanishing files: 300 thrown, {len(taken)} claimed by the monitor before they vanished")
    _assert_untouched(h)


def test_two_thousand_bad_files_at_once(hostile: Hostile) -> None:
    h = hostile
    names = []
    for i in range(2000):
        kind = i % 4
        doc = seed_doc(f"f{i}", ["single", "all", "partial", "explode"][kind], ticket=h.tickets[i % N_POSITIONS])
        if kind == 0:
            doc["ticket"] = str(doc["ticket"])  # a ticket as a string
        elif kind == 1:
            doc["tiket"] = doc.pop("ticket")  # a typo that must not turn into a close-all
        elif kind == 2:
            doc["percent"] = 150
        name = f"cmd_f{i}.json"
        (h.staging / name).write_text(json.dumps(doc))
        THROWN[name] = "flood"
        names.append(name)
    start = time.monotonic()
    for name in names:
        os.rename(h.staging / name, h.cfg.paths.commands / name)
    gaps = []
    while not all((h.errors / f"{n}.error.json").exists() for n in names[-20:]):
        gaps.append(h.mon.get("/healthz")[1].get("last_poll_age_s") or 0.0)
        assert time.monotonic() - start < 120, "2,000 bad files not rejected within 2 minutes"
        time.sleep(0.2)
    reasons = h.rejected(names, timeout=60)
    elapsed = time.monotonic() - start
    h.flood_poll_gap = max(gaps, default=0.0)
    print(f"2,000 bad files rejected in {elapsed:.1f}s; longest poll gap meanwhile {h.flood_poll_gap:.1f}s")
    _assert_rejected(h, reasons)
    assert "tiket" in reasons["cmd_f1.json"] and "'ticket' must be" in reasons["cmd_f0.json"]
    _assert_untouched(h)


def test_every_thrown_file_is_accounted_for(hostile: Hostile) -> None:
    h = hostile
    rows = h.rows()
    THROWN.pop("cmd_" + "x" * 240 + ".json", None)  # its reason file has a shortened name: checked above
    missing = [n for n in THROWN if n not in rows or not (h.errors / f"{n}.error.json").exists()]
    assert not missing, missing[:10]
    rejected = query(h.cfg, "SELECT COUNT(*) AS n FROM position_close_operations WHERE status = 'rejected'")[0]["n"]
    assert rejected >= len(THROWN)
    assert not list(h.cfg.paths.commands.glob("cmd_*.json")) and not list((h.cfg.paths.commands / "processing")
                                                                             .iterdir())
    print(f"files thrown and rejected: {len(THROWN)}")
    _assert_untouched(h)
    assert h.mon.stop() == 0


# --------------------------------------------------------------------------- config mistakes
def _leaves(schema: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, spec in schema.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(spec, dict):
            yield from _leaves(spec, path)
        else:
            yield path, spec


def _wrong(spec: Any) -> list[Any]:
    if isinstance(spec, Num):
        out: list[Any] = ["3", True, None, [1]]
        if spec.hi != float("inf"):
            out.append(spec.hi * 10 + 1)
        if spec.lo != float("-inf"):
            out.append(spec.lo - 1)
        if spec.integer:
            out.append(1.5)
        return out
    if isinstance(spec, Bool):
        return ["true", 1, None]
    if isinstance(spec, Choice):
        return ["nope", 1, None]
    if isinstance(spec, Str):
        return [5, "", "x" * (spec.max_len + 1), ["a"]] + ([] if spec.nullable else [None])
    if isinstance(spec, Free):
        return [5, "x", {"a": 1}]
    raise AssertionError(spec)


def _with(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    node = out
    *parents, last = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return out


# Free values are validated by their owners; these two by the config loader itself.
FREE_CHECKED_BY_LOADER = {"broker.sim.positions.list", "broker.sim.faults.market_closed"}
LEAF_CASES = [(key, value) for key, spec in _leaves(SCHEMA)
              if not isinstance(spec, Free) or key in FREE_CHECKED_BY_LOADER for value in _wrong(spec)]


@pytest.mark.parametrize(("key", "value"), LEAF_CASES, ids=[f"{k}={v!r}"[:60] for k, v in LEAF_CASES])
def test_every_config_key_mistake_names_the_key(key: str, value: Any, tmp_path: Path) -> None:
    data = _with(template(), key, value)
    if key == "http.host":
        data["http"]["token_env"] = "X"  # so that the host itself is judged
    with pytest.raises(ConfigError) as err:
        config_from_mapping(data, path=tmp_path / "config.json")
    assert key in str(err.value) and "\n" not in str(err.value)


def _busy_port() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def _config_cases(busy_port: int) -> dict[str, tuple[Any, str]]:
    """name -> (config content, or ("file", name) for a plain file where a folder belongs; the key to name)."""
    base = template(sim_positions=2)
    return {
        "bad JSON": ("{\"profit_monitor\": {", "line 1"),
        "not an object": ("[1, 2]", "config"),
        "unknown section": (_with(base, "profits", {}), "profits"),
        "unknown nested key": (_with(base, "broker.sim.faults.requote", 0.1), "broker.sim.faults.requote"),
        "wrong type": (_with(base, "profit_monitor.check_interval", "30"), "profit_monitor.check_interval"),
        "out of range": (_with(base, "commands.max_file_bytes", 10), "commands.max_file_bytes"),
        "credential in config": (_with(base, "broker.password", "hunter2"), "broker.password"),
        "remote host, no token": (_with(base, "http.host", "0.0.0.0"), "http.host"),
        "partial percent 100": (_with(base, "profit_monitor.partial_close_percent", 100),
                                "profit_monitor.partial_close_percent"),
        "logs path is a file": (("file", "logs"), "logs"),
        "http.port in use": (_with(base, "http.port", busy_port), "http.port"),
        "database dir missing": (_with(base, "paths.database", "/proc/no-such-dir/fxnb.db"), "paths.database"),
        "sim position unknown symbol": (_with(base, "broker.sim.positions.list", [{"symbol": "NOPE", "volume": 1}]),
                                        "broker.sim.positions.list"),
        "market_closed entry not a name": (_with(base, "broker.sim.faults.market_closed", [5]),
                                           "broker.sim.faults.market_closed"),
        "http.host unresolvable": (_with(_with(base, "http.host", "no-such-host.invalid"), "http.token_env", "HOME"),
                                   "http.host"),
    }


KNOWN_CONFIG_BUGS: dict[str, str] = {}  # case name -> why it still fails (pinned as a strict xfail)


@pytest.fixture(scope="module")
def config_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every broken config through `fxnb monitor --config`, four at a time."""
    root = tmp_path_factory.mktemp("configs")
    held = _busy_port()
    cases = _config_cases(held.getsockname()[1])

    def run(item: tuple[str, tuple[Any, str]]) -> tuple[str, subprocess.CompletedProcess[str]]:
        name, (content, _) = item
        d = root / name.replace(" ", "_")
        d.mkdir()
        if isinstance(content, tuple):  # ("file", "logs"): a valid config whose logs path is a plain file
            (d / content[1]).write_text("not a directory")
            content = template(sim_positions=2)
        (d / "config.json").write_text(content if isinstance(content, str) else json.dumps(content))
        cmd = [sys.executable, "-m", "fxnb", "monitor", "--config", str(d / "config.json")]
        try:
            return name, subprocess.run(cmd, capture_output=True, text=True, timeout=20, cwd=d)
        except subprocess.TimeoutExpired as exc:  # it started: the mistake was not caught at all
            return name, subprocess.CompletedProcess(cmd, 0, "", f"still running after 20s: {exc.stderr!r}")

    try:
        with ThreadPoolExecutor(4) as pool:
            return dict(pool.map(run, cases.items()))
    finally:
        held.close()


CONFIG_KEYS = {name: key for name, (_, key) in _config_cases(0).items()}


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=KNOWN_CONFIG_BUGS[n])) if n in KNOWN_CONFIG_BUGS
    else n for n in CONFIG_KEYS])
def test_config_mistake_one_clear_message(name: str, config_runs: dict[str, Any]) -> None:
    out = config_runs[name]
    assert out.returncode not in (0, None), out.stderr
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if "WARNING" not in line and line.strip()]
    assert len(errors) <= 3 and CONFIG_KEYS[name] in out.stderr, out.stderr[-2000:]
