"""The command folder protocol (fxnb.commands): real files in tmp_path, no mocks."""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from fxnb.commands import (
    Command,
    CommandDir,
    CommandError,
    CommandSyntaxError,
    CommandType,
    is_expired,
    is_possibly_incomplete,
    new_command_id,
    parse_command,
)
from fxnb.models import Side

NOW = datetime(2024, 1, 1, 12, 0, 30, tzinfo=UTC)
MAX_AGE = 60.0
MAX_BYTES = 65536
posix_only = pytest.mark.skipif(os.name == "nt", reason="POSIX file semantics")


def parse(
    obj: object,
    name: str = "cmd_7.json",
    *,
    now: datetime = NOW,
    raw: bytes | None = None,
    max_bytes: int = MAX_BYTES,
) -> Command:
    data = raw if raw is not None else json.dumps(obj).encode()
    return parse_command(
        data, file_name=name, now=now, max_age_seconds=MAX_AGE, max_bytes=max_bytes, local_tz=UTC
    )


def base(**kw: object) -> dict[str, object]:
    d: dict[str, object] = {
        "id": 7,
        "type": "single",
        "ticket": 12345,
        "timestamp": "2024-01-01T12:00:00",
        "status": "pending",
    }
    d.update(kw)
    return {k: v for k, v in d.items() if v is not _DROP}


_DROP = object()


@pytest.fixture
def cdir(tmp_path: Path) -> CommandDir:
    d = CommandDir(tmp_path / "commands", max_age_seconds=MAX_AGE, max_bytes=MAX_BYTES, clock=lambda: NOW)
    d.ensure()
    return d


def drop(d: CommandDir, name: str, content: bytes | str, *, mtime: float | None = None) -> Path:
    """A file written by hand / by another program (non-atomically, on purpose)."""
    p = d.root / name
    p.write_bytes(content.encode() if isinstance(content, str) else content)
    if mtime is not None:
        os.utime(p, (mtime, mtime))
    return p


# -- parsing: the seed's format ------------------------------------------------------------------


def test_seed_format_written_by_hand_parses() -> None:
    raw = (
        b'{"id": 123, "type": "all", "ticket": null, "timestamp": "2024-01-01T12:00:00", "status": "pending"}'
    )
    cmd = parse(None, "cmd_123.json", raw=raw)
    assert cmd.id == "123" and cmd.type is CommandType.ALL and cmd.ticket is None and cmd.is_bulk
    assert cmd.timestamp == datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert cmd.expires_at == cmd.timestamp + timedelta(seconds=MAX_AGE)
    assert cmd.file_name == "cmd_123.json"


@pytest.mark.parametrize("ctype", ["profit", "loss", "all"])
def test_seed_bulk_types_with_null_ticket(ctype: str) -> None:
    assert parse(base(type=ctype, ticket=None)).type == CommandType(ctype)


def test_seed_single_and_enhanced_priority_key() -> None:
    cmd = parse(base(priority="high"))
    assert cmd.type is CommandType.SINGLE and cmd.ticket == 12345


def test_status_may_be_omitted_and_bom_is_tolerated() -> None:
    data = b"\xef\xbb\xbf" + json.dumps(base(status=_DROP)).encode()
    assert parse(None, raw=data).ticket == 12345


def test_naive_timestamp_is_local_time_of_this_machine() -> None:
    data = json.dumps(base()).encode()
    cmd = parse_command(data, file_name="cmd_7.json", now=NOW, max_age_seconds=MAX_AGE, max_bytes=MAX_BYTES)
    assert cmd.timestamp == datetime(2024, 1, 1, 12, 0, 0).astimezone().astimezone(UTC)
    east = timezone(timedelta(hours=2))
    cmd = parse_command(
        data, file_name="cmd_7.json", now=NOW, max_age_seconds=MAX_AGE, max_bytes=MAX_BYTES, local_tz=east
    )
    assert cmd.timestamp == datetime(2024, 1, 1, 10, tzinfo=UTC)


def test_aware_timestamps_are_taken_as_given() -> None:
    assert parse(base(timestamp="2024-01-01T14:00:00+02:00")).timestamp == datetime(
        2024, 1, 1, 12, tzinfo=UTC
    )
    assert parse(base(timestamp="2024-01-01T12:00:00Z")).timestamp == datetime(2024, 1, 1, 12, tzinfo=UTC)


def test_extensions_parse() -> None:
    cmd = parse(base(type="partial", percent=50))
    assert cmd.type is CommandType.PARTIAL and cmd.percent == 50.0 and cmd.volume is None
    cmd = parse(base(type="partial", volume=0.05))
    assert cmd.volume == 0.05 and cmd.percent is None
    cmd = parse(
        base(
            id="ab_C.9-x",
            type="profit",
            ticket=_DROP,
            symbol="EURUSD.m",
            magic=0,
            side="sell",
            requested_by="alice",
            expires_at="2024-01-01T12:10:00",
        ),
        "cmd_ab_C.9-x.json",
    )
    assert (cmd.id, cmd.symbol, cmd.magic, cmd.side, cmd.requested_by) == (
        "ab_C.9-x",
        "EURUSD.m",
        0,
        Side.SELL,
        "alice",
    )
    assert cmd.expires_at == datetime(2024, 1, 1, 12, 10, tzinfo=UTC)
    for t in ("pause_rules", "resume_rules"):
        assert parse(base(type=t, ticket=None)).type == CommandType(t)
    assert parse(base(type="partial", percent=100)).percent == 100.0
    assert parse(base(type="partial", volume=1000)).volume == 1000.0


# -- parsing: every malformed kind is rejected, naming the key -------------------------------------

MALFORMED: list[tuple[str, dict[str, object], str]] = [
    ("ticket not a number", base(ticket="abc"), "'ticket' must be a positive integer, got 'abc'"),
    ("ticket bool", base(ticket=True), "'ticket'"),
    ("ticket float", base(ticket=12345.0), "'ticket'"),
    ("ticket zero", base(ticket=0), "'ticket'"),
    ("ticket negative", base(ticket=-5), "'ticket'"),
    ("ticket too big", base(ticket=2**63), "'ticket'"),
    ("single without ticket", base(ticket=_DROP), "'ticket' is required"),
    ("single with null ticket", base(ticket=None), "'ticket' is required"),
    ("partial without ticket", base(type="partial", ticket=None, percent=50), "'ticket' is required"),
    ("bulk with a ticket", base(type="all"), "'ticket' must be null or absent"),
    ("typo in key", base(ticket=_DROP, tiket=12345), "'tiket'"),
    ("unknown key on bulk", base(type="all", ticket=None, tiket=1), "'tiket'"),
    ("filter on single", base(symbol="EURUSD"), "'symbol'"),
    ("volume on single", base(volume=0.1), "'volume'"),
    ("filter on pause", base(type="pause_rules", ticket=None, side="buy"), "'side'"),
    ("unknown type", base(type="close_everything"), "'type'"),
    ("type not a string", base(type=3), "'type'"),
    ("type wrong case", base(type="ALL", ticket=None), "'type'"),
    ("missing type", base(type=_DROP), "'type'"),
    ("missing id", base(id=_DROP), "'id'"),
    ("id bool", base(id=True), "'id'"),
    ("id zero", base(id=0), "'id'"),
    ("id float", base(id=7.0), "'id'"),
    ("id with slash", base(id="../7"), "'id'"),
    ("id too long", base(id="x" * 65), "'id'"),
    ("id does not match file name", base(id=8), "'id' 8 does not match the file name"),
    ("status not pending", base(status="completed"), "'status'"),
    ("missing timestamp", base(timestamp=_DROP), "'timestamp'"),
    ("null timestamp", base(timestamp=None), "'timestamp'"),
    ("timestamp not ISO", base(timestamp="yesterday noon"), "'timestamp'"),
    ("timestamp a number", base(timestamp=1704110400), "'timestamp'"),
    ("timestamp in the future", base(timestamp="2024-01-01T12:06:00"), "'timestamp'"),
    ("partial with neither", base(type="partial"), "'volume'"),
    ("partial with both", base(type="partial", volume=0.1, percent=50), "'percent'"),
    ("volume zero", base(type="partial", volume=0), "'volume'"),
    ("volume absurd", base(type="partial", volume=1000.5), "'volume'"),
    ("volume bool", base(type="partial", volume=True), "'volume'"),
    ("volume string", base(type="partial", volume="0.1"), "'volume'"),
    ("percent zero", base(type="partial", percent=0), "'percent'"),
    ("percent over 100", base(type="partial", percent=100.5), "'percent'"),
    ("side invalid", base(type="all", ticket=None, side="long"), "'side'"),
    ("magic negative", base(type="all", ticket=None, magic=-1), "'magic'"),
    ("magic bool", base(type="all", ticket=None, magic=False), "'magic'"),
    ("symbol empty", base(type="all", ticket=None, symbol=""), "'symbol'"),
    ("symbol not a string", base(type="all", ticket=None, symbol=["EURUSD"]), "'symbol'"),
    ("requested_by too long", base(requested_by="x" * 65), "'requested_by'"),
    ("requested_by control chars", base(requested_by="bob\nFAKE LOG LINE"), "'requested_by'"),
    ("expires_at before timestamp", base(expires_at="2024-01-01T11:59:00"), "'expires_at'"),
    ("expires_at too far", base(expires_at="2024-01-01T14:00:00"), "'expires_at'"),
    ("expires_at garbage", base(expires_at="soon"), "'expires_at'"),
    ("priority not a string", base(priority=1), "'priority'"),
]


@pytest.mark.parametrize(
    ("obj", "needle"), [(o, n) for _, o, n in MALFORMED], ids=[i for i, _, _ in MALFORMED]
)
def test_malformed_is_rejected_naming_the_key(obj: dict[str, object], needle: str) -> None:
    with pytest.raises(CommandError) as ei:
        parse(obj)
    msg = str(ei.value)
    assert msg.startswith("cmd_7.json: ") and "\n" not in msg
    assert needle in msg


RAW_MALFORMED: list[tuple[str, bytes, str]] = [
    (
        "NaN",
        b'{"id": 7, "type": "partial", "ticket": 1, "volume": NaN, "timestamp": "2024-01-01T12:00:00"}',
        "'volume' must be",
    ),
    (
        "Infinity",
        b'{"id": 7, "type": "partial", "ticket": 1, "percent": Infinity, "timestamp": "2024-01-01T12:00:00"}',
        "'percent' must be",
    ),
    (
        "1e999",
        b'{"id": 7, "type": "partial", "ticket": 1, "volume": 1e999, "timestamp": "2024-01-01T12:00:00"}',
        "'volume' must be",
    ),
    (
        "NaN ticket",
        b'{"id": 7, "type": "single", "ticket": NaN, "timestamp": "2024-01-01T12:00:00"}',
        "'ticket'",
    ),
    (
        "duplicate key",
        b'{"id": 7, "type": "single", "ticket": 1, "type": "all", "timestamp": "2024-01-01T12:00"}',
        "'type' appears more than once",
    ),
    ("not an object", b'[{"id": 7}]', "must be a JSON object, got list"),
    ("a string", b'"cmd"', "must be a JSON object"),
    ("UTF-16", '{"id": 7}'.encode("utf-16"), "UTF-16"),
    ("too deep", b"[" * 50000 + b"]" * 50000, "nested too deeply"),
]


@pytest.mark.parametrize(
    ("raw", "needle"), [(r, n) for _, r, n in RAW_MALFORMED], ids=[i for i, _, _ in RAW_MALFORMED]
)
def test_malformed_bytes(raw: bytes, needle: str) -> None:
    with pytest.raises(CommandError) as ei:
        parse(None, raw=raw, max_bytes=200_000)
    assert not isinstance(ei.value, CommandSyntaxError)
    assert str(ei.value).startswith("cmd_7.json: ") and needle in str(ei.value)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b'{"id": 7, "type": "sin', "not valid JSON"),
        (b'{"id": 7, "type": "\xe9"}', "not valid UTF-8"),
    ],
)
def test_syntax_errors_are_distinguishable(raw: bytes, needle: str) -> None:
    with pytest.raises(CommandSyntaxError) as ei:
        parse(None, raw=raw)
    assert needle in str(ei.value)


def test_oversized_bytes_and_bad_file_name() -> None:
    data = json.dumps(base(requested_by="x" * 40)).encode()
    with pytest.raises(CommandError, match=r"more than the limit of 50"):
        parse(None, raw=data, max_bytes=50)
    with pytest.raises(CommandError, match=r"cmd_\{id\}\.json"):
        parse(base(), "command_7.json")
    with pytest.raises(ValueError, match="timezone-aware"):
        parse(base(), now=datetime(2024, 1, 1, 12))


def test_small_future_skew_is_accepted() -> None:
    assert parse(base(timestamp="2024-01-01T12:05:00")).timestamp > NOW  # 270 s ahead < 300 s


# -- expiry -------------------------------------------------------------------------------------


def test_expiry_default_and_explicit() -> None:
    cmd = parse(base())  # 12:00:00 + 60 s
    assert not is_expired(cmd, datetime(2024, 1, 1, 12, 0, 59, 999999, tzinfo=UTC))
    assert is_expired(cmd, datetime(2024, 1, 1, 12, 1, tzinfo=UTC))
    cmd = parse(base(expires_at="2024-01-01T12:30:00Z"))
    assert not is_expired(cmd, datetime(2024, 1, 1, 12, 29, tzinfo=UTC))
    assert is_expired(cmd, datetime(2024, 1, 1, 12, 30, tzinfo=UTC))
    with pytest.raises(ValueError):
        is_expired(cmd, datetime(2024, 1, 1, 12, 29))


def test_a_stale_command_parses_but_is_expired() -> None:
    cmd = parse(base(timestamp="2023-12-31T12:00:00"))
    assert is_expired(cmd, NOW)


# -- the writer ---------------------------------------------------------------------------------


def test_ensure_is_owner_only(tmp_path: Path) -> None:
    d = CommandDir(tmp_path / "commands")
    d.ensure()
    d.ensure()  # idempotent
    for p in (d.root, d.errors_dir, d.processing_dir):
        assert p.is_dir()
        if os.name != "nt":
            assert stat.S_IMODE(p.stat().st_mode) == 0o700


def test_writer_is_atomic_and_parseable(cdir: CommandDir) -> None:
    written = [
        cdir.write(CommandType.ALL),
        cdir.write("single", ticket=42, requested_by="op"),
        cdir.write("partial", ticket=42, percent=25),
        cdir.write("partial", ticket=43, volume=0.02),
        cdir.write("profit", symbol="EURUSD", magic=770077, side=Side.BUY, expires_in=300),
        cdir.write("loss", side="sell", expires_in=timedelta(seconds=30)),
        cdir.write("pause_rules"),
        cdir.write("resume_rules", id=99),
    ]
    assert sorted(p.name for p in cdir.root.iterdir()) == sorted(
        ["errors", "processing"] + [c.file_name for c in written]
    )
    for cmd in written:
        path = cdir.root / cmd.file_name
        if os.name != "nt":
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        again = parse_command(
            cdir.read_claimed(path),
            file_name=path.name,
            now=NOW,
            max_age_seconds=MAX_AGE,
            max_bytes=MAX_BYTES,
        )
        assert again == cmd
        assert json.loads(path.read_bytes())["status"] == "pending"
    assert written[4].expires_at == NOW + timedelta(seconds=300)
    assert written[0].expires_at == NOW + timedelta(seconds=MAX_AGE)
    assert written[7].id == "99" and written[7].file_name == "cmd_99.json"
    assert written[4].side is Side.BUY and written[4].magic == 770077


def test_writer_ids_are_time_ordered_and_well_formed() -> None:
    a = new_command_id(datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=UTC))
    assert a.startswith("20240101T120000123456-") and len(a) == 30
    assert new_command_id(datetime(2024, 1, 1, 12, 0, 1, tzinfo=UTC)) > a


def test_writer_ids_unique_across_10000_writes(cdir: CommandDir) -> None:
    # Every write sees the same microsecond (fixed clock), from 4 threads: only the random part
    # and the no-replace rename keep them apart.
    ids: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = [cdir.write("all").id for _ in range(2500)]
        with lock:
            ids.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == len(set(ids)) == 10_000
    assert len(cdir.pending()) == 10_000
    assert not [p for p in cdir.root.iterdir() if p.name.startswith(".")]


def test_writer_rejects_invalid_and_writes_nothing(cdir: CommandDir) -> None:
    with pytest.raises(CommandError, match="'ticket' is required"):
        cdir.write("single")
    with pytest.raises(CommandError, match="'symbol'"):
        cdir.write("single", ticket=1, symbol="EURUSD")
    with pytest.raises(CommandError, match="'volume'"):
        cdir.write("partial", ticket=1, volume=0.1, percent=10)
    with pytest.raises(CommandError, match="'expires_at'"):
        cdir.write("all", expires_in=7200)
    with pytest.raises(CommandError, match="expires_in"):
        cdir.write("all", expires_in=-1)
    with pytest.raises(CommandError, match="'id'"):
        cdir.write("all", id="a/b")
    with pytest.raises(CommandError, match="'type'"):
        cdir.write("everything")
    assert cdir.pending() == []
    assert sorted(p.name for p in cdir.root.iterdir()) == ["errors", "processing"]


def test_writer_never_replaces_a_pending_command(cdir: CommandDir) -> None:
    first = cdir.write("single", ticket=1, id="fixed")
    with pytest.raises(CommandError, match="already pending"):
        cdir.write("all", id="fixed")
    path = cdir.root / first.file_name
    assert json.loads(path.read_bytes())["type"] == "single"
    assert [p.name for p in cdir.root.iterdir() if p.name.startswith(".")] == []


def test_writer_leaves_a_crashed_writers_temp_file_alone(cdir: CommandDir) -> None:
    stale = cdir.root / ".cmd_fixed.json.tmp"
    stale.write_bytes(b'{"half": ')
    with pytest.raises(CommandError, match="tmp exists"):
        cdir.write("all", id="fixed")
    assert stale.read_bytes() == b'{"half": ' and cdir.pending() == []
    assert cdir.write("all").file_name != "cmd_fixed.json"  # generated ids are unaffected


# -- listing ------------------------------------------------------------------------------------


def test_pending_skips_temp_dot_files_and_directories_and_is_fifo(cdir: CommandDir) -> None:
    t0 = time.time() - 100
    drop(cdir, "cmd_b.json", "{}", mtime=t0 + 2)
    drop(cdir, "cmd_a.json", "{}", mtime=t0 + 2)  # same mtime: by name
    drop(cdir, "cmd_z.json", "{}", mtime=t0 + 1)  # oldest first
    drop(cdir, ".cmd_x.json.tmp", "{")
    drop(cdir, "cmd_y.json.tmp", "{")  # the seed's enhanced writer's temp name
    drop(cdir, ".cmd_w.json", "{}")
    drop(cdir, ".gitkeep", "")
    drop(cdir, "notes.txt", "")
    drop(cdir, "cmd_v.json~", "")
    (cdir.root / "cmd_dir.json").mkdir()
    assert [p.name for p in cdir.pending()] == ["cmd_z.json", "cmd_a.json", "cmd_b.json"]
    assert all(p.parent == cdir.root for p in cdir.pending())


def test_pending_on_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        CommandDir(tmp_path / "nope").pending()


# -- claiming -----------------------------------------------------------------------------------


def test_claim_twice_second_gets_none(cdir: CommandDir) -> None:
    cmd = cdir.write("single", ticket=5)
    path = cdir.root / cmd.file_name
    claimed = cdir.claim(path)
    assert claimed == cdir.processing_dir / cmd.file_name and claimed.exists()
    assert not path.exists()
    assert cdir.claim(path) is None
    assert cdir.pending() == [] and cdir.in_processing() == [claimed]
    cdir.complete(claimed)
    cdir.complete(claimed)  # idempotent
    assert cdir.in_processing() == []


def test_claim_race_between_threads_each_file_exactly_once(cdir: CommandDir) -> None:
    names = {cdir.write("single", ticket=i + 1).file_name for i in range(300)}
    wins: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        try:
            for _ in range(3):
                for p in cdir.pending():
                    got = cdir.claim(p)
                    if got is not None:
                        with lock:
                            wins.append(got.name)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Counter(wins) == Counter(names)  # every file, exactly once
    assert {p.name for p in cdir.in_processing()} == names


def test_claim_never_replaces_a_leftover_in_processing(cdir: CommandDir) -> None:
    leftover = cdir.processing_dir / "cmd_5.json"
    leftover.write_bytes(b"LEFTOVER")
    path = drop(cdir, "cmd_5.json", json.dumps(base(id=5)))
    with pytest.raises(CommandError, match="already in processing"):
        cdir.claim(path)
    assert leftover.read_bytes() == b"LEFTOVER" and path.exists()
    moved = cdir.fail(path, "same name as an unfinished command")
    assert moved.parent == cdir.errors_dir and leftover.read_bytes() == b"LEFTOVER"


def test_claim_refuses_paths_outside_the_queue(cdir: CommandDir) -> None:
    with pytest.raises(ValueError):
        cdir.claim(cdir.errors_dir / "cmd_1.json")
    with pytest.raises(ValueError):
        cdir.claim(cdir.root / ".cmd_1.json.tmp")
    with pytest.raises(ValueError):
        cdir.complete(cdir.root / "cmd_1.json")


def test_claim_with_missing_processing_folder_is_loud(cdir: CommandDir) -> None:
    path = drop(cdir, "cmd_7.json", json.dumps(base()))
    cdir.processing_dir.rmdir()
    with pytest.raises(FileNotFoundError):
        cdir.claim(path)
    assert path.exists()


def test_hand_written_file_end_to_end(cdir: CommandDir) -> None:
    path = drop(
        cdir,
        "cmd_123.json",
        '{"id": 123, "type": "single", "ticket": 12345, "timestamp": "2024-01-01T12:00:00", '
        '"status": "pending"}',
    )
    [found] = cdir.pending()
    claimed = cdir.claim(found)
    assert claimed is not None
    cmd = parse_command(
        cdir.read_claimed(claimed, MAX_BYTES),
        file_name=path.name,
        now=NOW,
        max_age_seconds=MAX_AGE,
        max_bytes=MAX_BYTES,
        local_tz=UTC,
    )
    assert (cmd.id, cmd.type, cmd.ticket) == ("123", CommandType.SINGLE, 12345)
    assert not is_expired(cmd, NOW)
    cdir.complete(claimed)
    assert cdir.pending() == [] and cdir.in_processing() == []


# -- failing ------------------------------------------------------------------------------------


def test_fail_moves_to_errors_with_reason_and_never_overwrites(cdir: CommandDir) -> None:
    results = []
    for content in (b"first", b"second", b"third"):
        path = drop(cdir, "cmd_9.json", content)
        claimed = cdir.claim(path)
        assert claimed is not None
        results.append(cdir.fail(claimed, f"bad {content.decode()}", extra={"n": len(results)}))
    assert [p.name for p in results] == ["cmd_9.json", "cmd_9.dup-1.json", "cmd_9.dup-2.json"]
    assert [p.read_bytes() for p in results] == [b"first", b"second", b"third"]
    for i, p in enumerate(results):
        rec = json.loads((cdir.errors_dir / f"{p.name}.error.json").read_text())
        assert rec["file"] == p.name and rec["original"] == "cmd_9.json" and rec["from"] == "processing"
        assert rec["reason"] == ["bad first", "bad second", "bad third"][i]
        assert rec["at"] == NOW.isoformat() and rec["extra"] == {"n": i}
    assert cdir.in_processing() == [] and cdir.pending() == []


def test_fail_skips_a_name_whose_error_record_exists(cdir: CommandDir) -> None:
    (cdir.errors_dir / "cmd_4.json.error.json").write_text("OLD")
    path = drop(cdir, "cmd_4.json", b"x")
    moved = cdir.fail(path, "unclaimed, bad JSON after grace")
    assert moved.name == "cmd_4.dup-1.json"
    assert (cdir.errors_dir / "cmd_4.json.error.json").read_text() == "OLD"
    assert json.loads((cdir.errors_dir / "cmd_4.dup-1.json.error.json").read_text())["from"] == "pending"


def test_fail_of_a_vanished_file_raises(cdir: CommandDir) -> None:
    with pytest.raises(FileNotFoundError):
        cdir.fail(cdir.root / "cmd_404.json", "gone")
    with pytest.raises(ValueError):
        cdir.fail(cdir.errors_dir / "cmd_404.json", "wrong folder")


# -- grace period for files still being written ---------------------------------------------------


def _just_after(path: Path, seconds: float) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC) + timedelta(seconds=seconds)


def test_grace_period_for_incomplete_hand_written_file(cdir: CommandDir) -> None:
    path = drop(cdir, "cmd_7.json", b'{"id": 7, "type": "sing')
    now = _just_after(path, 0.5)
    with pytest.raises(CommandSyntaxError):
        parse_command(
            cdir.read_claimed(path),
            file_name=path.name,
            now=now,
            max_age_seconds=MAX_AGE,
            max_bytes=MAX_BYTES,
        )
    assert cdir.is_possibly_incomplete(path, now)  # leave it for a later look
    assert is_possibly_incomplete(path, now, grace_s=0.6)
    assert not cdir.is_possibly_incomplete(path, now + timedelta(seconds=2))  # after the grace: reject it
    assert not is_possibly_incomplete(path, now, grace_s=0.4)
    assert not is_possibly_incomplete(path, now + timedelta(days=-1))  # mtime far in the future
    assert not is_possibly_incomplete(cdir.root / "cmd_gone.json", now)
    # the writer finishes: a whole document is never "incomplete", even within the grace
    path.write_bytes(json.dumps(base()).encode())
    assert not cdir.is_possibly_incomplete(path, _just_after(path, 0.1))


@pytest.mark.parametrize("content", [b"", b"  ", b'{"id": 7', b'{"id": "\xc3', b"\xef\xbb\xbf{"])
def test_fresh_half_written_files_wait(cdir: CommandDir, content: bytes) -> None:
    path = drop(cdir, "cmd_7.json", content)
    assert cdir.is_possibly_incomplete(path, _just_after(path, 0.1))


@pytest.mark.parametrize("content", [b"[1, 2]", b'{"id": 7}', b'{"tiket": 1}', '{"id": 7}'.encode("utf-16")])
def test_fresh_complete_but_invalid_files_do_not_wait(cdir: CommandDir, content: bytes) -> None:
    path = drop(cdir, "cmd_7.json", content)
    assert not cdir.is_possibly_incomplete(path, _just_after(path, 0.1))  # rejected straight away


def test_fresh_atomic_writes_are_not_delayed(cdir: CommandDir) -> None:
    path = cdir.root / cdir.write("all").file_name
    assert not cdir.is_possibly_incomplete(path, _just_after(path, 0.0))


@posix_only
def test_fresh_symlink_or_oversized_file_does_not_wait(cdir: CommandDir, tmp_path: Path) -> None:
    (tmp_path / "t.json").write_bytes(b"{")
    link = cdir.root / "cmd_1.json"
    link.symlink_to(tmp_path / "t.json")
    assert not cdir.is_possibly_incomplete(link, datetime.now(UTC))
    big = drop(cdir, "cmd_2.json", b"{" + b" " * MAX_BYTES)
    assert not cdir.is_possibly_incomplete(big, _just_after(big, 0.1))


# -- hostile files --------------------------------------------------------------------------------


@posix_only
def test_oversized_file_refused_without_reading_it_whole(cdir: CommandDir) -> None:
    path = cdir.root / "cmd_7.json"
    with path.open("wb") as fh:
        fh.truncate(64 * 2**30)  # 64 GiB, sparse: reading it whole would exhaust memory
    t = time.perf_counter()
    with pytest.raises(CommandError, match=r"cmd_7\.json: file is 68719476736 bytes, more than the limit"):
        cdir.read_claimed(path, MAX_BYTES)
    assert time.perf_counter() - t < 1.0
    claimed = cdir.claim(path)
    assert claimed is not None
    with pytest.raises(CommandError, match="more than the limit"):
        cdir.read_claimed(claimed, 1024)


@posix_only
def test_symlink_is_refused_not_followed(cdir: CommandDir, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps(base()))
    link = cdir.root / "cmd_7.json"
    link.symlink_to(target)
    assert cdir.pending() == [link]  # listed, so that it gets rejected
    with pytest.raises(CommandError, match="symbolic link"):
        cdir.read_claimed(link, MAX_BYTES)
    claimed = cdir.claim(link)
    assert claimed is not None and claimed.is_symlink()
    with pytest.raises(CommandError, match="symbolic link"):
        cdir.read_claimed(claimed, MAX_BYTES)
    moved = cdir.fail(claimed, "symbolic link")
    assert moved.is_symlink() and target.read_text() == json.dumps(base())


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs mkfifo")
def test_fifo_is_refused_without_blocking(cdir: CommandDir) -> None:
    fifo = cdir.root / "cmd_7.json"
    os.mkfifo(fifo)
    assert cdir.pending() == [fifo]
    with pytest.raises(CommandError, match="not a regular file"):
        cdir.read_claimed(fifo, MAX_BYTES)


@pytest.mark.skipif(sys.platform != "linux", reason="renameat2 is Linux-only")
def test_linux_uses_an_atomic_no_replace_rename() -> None:
    from fxnb import commands

    assert commands._NOREPLACE is not None
