"""The command folder: the only code in fxnb that touches ``commands/`` files.

No SQL and no broker here. The format and its validation live in
``fxnb.command_schema`` and are re-exported from this module.

Layout (``CommandDir(root)``)::

    commands/cmd_{id}.json           pending commands (written atomically)
    commands/.cmd_{id}.json.tmp      a writer's temp file (never read)
    commands/processing/cmd_{id}.json  claimed, being executed
    commands/errors/cmd_{id}.json    rejected, with cmd_{id}.json.error.json beside it

A reason file whose name would be too long for the file system (a legal but
long command file name) is named ``{name cut short}~{12 hex of its SHA-256}.error.json``;
its ``original`` field holds the full name either way.

At-most-once: a command runs only after :meth:`CommandDir.claim` has moved its
file into ``processing/`` with one atomic rename; of several claimers exactly one
gets the path, the others ``None``. Renames never replace an existing file
(``renameat2(RENAME_NOREPLACE)`` on Linux, ``renamex_np(RENAME_EXCL)`` on macOS,
``os.rename`` on Windows; elsewhere a check-then-rename). A crash after the claim
leaves the file in ``processing/`` (:meth:`CommandDir.in_processing`), never back in
the queue. Deduplication on the command id (a replayed or copied file) is the
monitor's job, against its command log.

Recommended consumer loop::

    for path in cdir.pending():
        if cdir.is_possibly_incomplete(path, now):
            continue  # half-written by hand (bad JSON, touched < 2 s ago): look again on the next scan
        try:
            claimed = cdir.claim(path)
        except CommandError as e:  # the same name is already in processing/
            cdir.fail(path, str(e))
            continue
        if claimed is None:
            continue  # someone else has it
        try:  # the claimed bytes are the ones that count
            cmd = parse_command(cdir.read_claimed(claimed), file_name=claimed.name, now=now, ...)
        except CommandError as e:
            cdir.fail(claimed, str(e))
            continue
        if is_expired(cmd, now): record it as 'expired', cdir.complete(claimed), continue
        ... dedupe on cmd.id, run it, record the result ...
        cdir.complete(claimed)

Ids chosen by :meth:`CommandDir.write` are ``{UTC %Y%m%dT%H%M%S%f}-{8 hex}``: they
sort by creation time, and 32 random bits per microsecond make a collision
practically impossible; the no-replace rename turns one into a retry anyway.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import secrets
import stat
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fxnb.command_schema import (
    ID_RE,
    MAX_CLOCK_SKEW_S,
    MAX_LIFETIME_S,
    Command,
    CommandSyntaxError,
    CommandType,
    command_file_name,
    is_command_file_name,
    is_expired,
    is_incomplete_document,
    parse_command,
    validate_id,
)
from fxnb.errors import CommandError
from fxnb.models import Side

__all__ = [
    "ID_RE",
    "MAX_CLOCK_SKEW_S",
    "MAX_LIFETIME_S",
    "Command",
    "CommandDir",
    "CommandError",
    "CommandSyntaxError",
    "CommandType",
    "command_file_name",
    "is_command_file_name",
    "is_expired",
    "is_incomplete_document",
    "is_possibly_incomplete",
    "new_command_id",
    "parse_command",
    "reason_file",
]

DEFAULT_MAX_AGE_S = 60.0
DEFAULT_MAX_BYTES = 65536
DIR_MODE = 0o700
FILE_MODE = 0o600
NAME_MAX = 255  # bytes in one file name (Linux and macOS file systems)
_TMP_EXTRA = len(".") + len(".tmp")  # what _write_atomic adds to a name for its temp file


def _utcnow() -> datetime:
    return datetime.now(UTC)


def new_command_id(now: datetime) -> str:
    """``{UTC time to the microsecond}-{8 random hex digits}``, e.g. ``20240101T120000123456-9f86d081``."""
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%S%f}-{secrets.token_hex(4)}"


def is_possibly_incomplete(path: Path, now: datetime, grace_s: float = 2.0, *,
                           max_bytes: int = DEFAULT_MAX_BYTES) -> bool:
    """True if ``path`` is not (yet) a whole JSON document *and* was modified less than ``grace_s``
    ago (or up to ``grace_s`` in the future): a hand-written file still being saved. Leave it
    for a later look; once the grace is over it is claimed and rejected like any bad file.

    A complete document (even an invalid command), a vanished file, a symlink, a non-regular
    or an oversized file is never "incomplete" (False), so fxnb's own atomic writes are not
    delayed. Reads at most ``max_bytes + 1`` bytes and only for files inside the grace.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode) or not -grace_s < now.timestamp() - st.st_mtime < grace_s:
        return False
    try:
        data = _read_limited(Path(path), max_bytes)
    except (CommandError, OSError):
        return False
    return is_incomplete_document(data)


class CommandDir:
    """The ``commands/`` folder. ``clock`` (aware UTC) is read only for ``write``/``fail`` without ``now``."""

    def __init__(self, root: Path, *, max_age_seconds: float = DEFAULT_MAX_AGE_S,
                 max_bytes: int = DEFAULT_MAX_BYTES, clock: Callable[[], datetime] = _utcnow) -> None:
        self.root = Path(root)
        self.processing_dir = self.root / "processing"
        self.errors_dir = self.root / "errors"
        self.max_age_seconds = max_age_seconds
        self.max_bytes = max_bytes
        self._clock = clock

    # -- setup -------------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create ``commands/``, ``errors/`` and ``processing/``, owner-only (0700) where we own them."""
        for d in (self.root, self.errors_dir, self.processing_dir):
            d.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            st = d.stat()
            if os.name != "nt" and st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) != DIR_MODE:
                d.chmod(DIR_MODE)

    # -- writing -----------------------------------------------------------------------------

    def write(self, cmd_type: CommandType | str, *, ticket: int | None = None, volume: float | None = None,
              percent: float | None = None, symbol: str | None = None, magic: int | None = None,
              side: Side | str | None = None, expires_in: float | timedelta | None = None,
              requested_by: str | None = None, id: str | int | None = None,
              now: datetime | None = None) -> Command:
        """Validate and atomically write ``cmd_{id}.json``; returns the parsed command.

        The file is written as ``.cmd_{id}.json.tmp`` (0600), flushed and fsynced,
        renamed to its final name without replacing anything, and the directory is
        fsynced. A given ``id`` that is already pending raises ``CommandError``.
        ``expires_in`` (seconds) sets ``expires_at``; otherwise the reader's
        ``max_age_seconds`` applies.
        """
        now = now if now is not None else self._clock()
        obj: dict[str, Any] = {
            "type": cmd_type.value if isinstance(cmd_type, CommandType) else cmd_type,
            "timestamp": now.astimezone(UTC).isoformat(),
            "status": "pending",
        }
        optional = {"ticket": ticket, "volume": volume, "percent": percent, "symbol": symbol, "magic": magic,
                    "side": side.value if isinstance(side, Side) else side, "requested_by": requested_by}
        obj.update({k: v for k, v in optional.items() if v is not None})
        if expires_in is not None:
            seconds = expires_in.total_seconds() if isinstance(expires_in, timedelta) else expires_in
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
                raise CommandError(f"expires_in must be a positive number of seconds, got {seconds!r}")
            obj["expires_at"] = (now.astimezone(UTC) + timedelta(seconds=seconds)).isoformat()
        for _ in range(5):
            try:
                cmd_id = validate_id(id) if id is not None else new_command_id(now)
            except ValueError as e:
                raise CommandError(str(e)) from None
            name = command_file_name(cmd_id)
            data = json.dumps({"id": id if id is not None else cmd_id, **obj}, allow_nan=False).encode()
            cmd = parse_command(data, file_name=name, now=now, max_age_seconds=self.max_age_seconds,
                                max_bytes=self.max_bytes)
            try:
                self._write_atomic(self.root / name, data)
            except FileExistsError:
                if id is None:
                    continue  # astronomically unlikely: draw another id
                if os.path.lexists(self.root / name):
                    raise CommandError(f"{name}: a command with id {cmd_id!r} is already pending") from None
                raise CommandError(f"{name}: .{name}.tmp exists "
                                   f"(another writer, or one that crashed)") from None
            return cmd
        raise CommandError("could not choose a free command id")  # pragma: no cover

    def _write_atomic(self, final: Path, data: bytes) -> None:
        tmp = final.with_name(f".{final.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            _rename_noreplace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync_dir(final.parent)

    # -- listing -----------------------------------------------------------------------------

    def pending(self) -> list[Path]:
        """Top-level ``cmd_*.json`` entries, oldest first by (mtime, name).

        Dot files, temp files and directories are skipped. A symlink or other
        non-regular entry *is* listed (not followed) so that the consumer rejects
        it: ``read_claimed`` refuses it.
        """
        return _listing(self.root)

    def in_processing(self) -> list[Path]:
        """Files left in ``processing/`` (claimed but not completed: a crash). Oldest first."""
        return _listing(self.processing_dir)

    # -- consuming ---------------------------------------------------------------------------

    def claim(self, path: Path) -> Path | None:
        """Atomically move a pending file into ``processing/``; ``None`` if it is gone (already claimed).

        Raises ``CommandError`` if ``processing/`` already holds a *different*
        file of the same name (a crash leftover or a reused id): nothing is
        replaced, and the pending file stays where it is for the caller to ``fail``.
        """
        path = Path(path)
        if path.parent != self.root or not is_command_file_name(path.name):
            raise ValueError(f"{path} is not a pending command in {self.root}")
        dest = self.processing_dir / path.name
        try:
            _rename_noreplace(path, dest)
        except FileNotFoundError:
            if os.path.lexists(path):
                raise  # the source is there: processing/ itself is missing
            return None
        except FileExistsError:
            if not os.path.lexists(path):
                return None  # another claimer won between our check and our look
            raise CommandError(f"{path.name}: a file of the same name is already in processing/ "
                               f"(unfinished earlier command); not run") from None
        _fsync_dir(self.processing_dir)
        _fsync_dir(self.root)
        return dest

    def read_claimed(self, path: Path, max_bytes: int | None = None) -> bytes:
        """The file's bytes. Refuses (``CommandError``) symlinks, non-regular files and files
        over ``max_bytes`` (checked on the open descriptor before reading; at most
        ``max_bytes + 1`` bytes are ever read). ``FileNotFoundError`` if it is gone."""
        return _read_limited(Path(path), self.max_bytes if max_bytes is None else max_bytes)

    def is_possibly_incomplete(self, path: Path, now: datetime, grace_s: float = 2.0) -> bool:
        """:func:`is_possibly_incomplete` with this folder's ``max_bytes``."""
        return is_possibly_incomplete(path, now, grace_s, max_bytes=self.max_bytes)

    def complete(self, claimed_path: Path) -> None:
        """Remove a claimed file once its outcome is recorded. Idempotent."""
        claimed_path = Path(claimed_path)
        if claimed_path.parent != self.processing_dir:
            raise ValueError(f"{claimed_path} is not in {self.processing_dir}")
        with contextlib.suppress(FileNotFoundError):
            claimed_path.unlink()
            _fsync_dir(self.processing_dir)

    def fail(self, path_or_claimed: Path, reason: str, *, extra: dict[str, Any] | None = None,
             now: datetime | None = None) -> Path:
        """Move a pending or claimed file into ``errors/`` and write ``<name>.error.json`` beside it.

        Nothing in ``errors/`` is ever replaced: on a name clash the file becomes
        ``cmd_{id}.dup-N.json``. A name too long for its reason file gets a shortened
        one (see ``_fit_name``); the record's ``original`` is always the full name.
        Failing a *pending* file is itself a claim (one atomic rename), so it cannot
        race with a consumer. Raises ``FileNotFoundError`` if the file is gone, and
        ``OSError`` if it cannot be moved or its reason cannot be written (a full disk,
        a read-only folder): the file is then put back where it was. Returns the new path.
        """
        src = Path(path_or_claimed)
        if src.parent not in (self.root, self.processing_dir):
            raise ValueError(f"{src} is not in {self.root} or {self.processing_dir}")
        at = (now if now is not None else self._clock()).astimezone(UTC)
        stem, suffix = Path(src.name).stem, Path(src.name).suffix
        for n in range(10_000):
            name = src.name if n == 0 else _fit_name(stem, f".dup-{n}{suffix}")
            dest = self.errors_dir / name
            if os.path.lexists(dest) or os.path.lexists(reason_file(dest)):
                continue
            try:
                _rename_noreplace(src, dest)
            except FileExistsError:
                continue
            break
        else:  # pragma: no cover
            raise CommandError(f"{src.name}: no free name in {self.errors_dir}")
        origin = "processing" if src.parent == self.processing_dir else "pending"
        record: dict[str, Any] = {"file": dest.name, "original": src.name, "from": origin,
                                  "reason": reason, "at": at.isoformat()}
        if extra:
            record["extra"] = extra
        data = json.dumps(record, indent=2, default=str).encode()
        try:
            try:
                self._write_atomic(reason_file(dest), data)
            except FileExistsError:  # someone created it in between: keep theirs, add ours uniquely
                self._write_atomic(dest.with_name(_fit_name(dest.name, f".{secrets.token_hex(4)}.error.json",
                                                            reserve=_TMP_EXTRA)), data)
        except OSError:  # full disk, read-only folder: no file in errors/ without its reason
            with contextlib.suppress(OSError):
                _rename_noreplace(dest, src)  # back where it was, to be failed again later
            raise
        return dest


def _read_limited(path: Path, limit: int) -> bytes:
    symlink = f"{path.name}: is a symbolic link; command files must be regular files"
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise CommandError(symlink)
    if not stat.S_ISREG(st.st_mode):
        raise CommandError(f"{path.name}: is not a regular file")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_BINARY", 0))
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise CommandError(symlink) from None
        raise
    with os.fdopen(fd, "rb") as fh:
        fst = os.fstat(fh.fileno())
        if not stat.S_ISREG(fst.st_mode):
            raise CommandError(f"{path.name}: is not a regular file")
        if fst.st_size > limit:
            raise CommandError(f"{path.name}: file is {fst.st_size} bytes, more than the limit of {limit}")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise CommandError(f"{path.name}: file is more than the limit of {limit} bytes")
    return data


def reason_file(path: Path) -> Path:
    """``<name>.error.json`` beside ``path`` (shortened if too long to write; see ``_fit_name``)."""
    return path.with_name(_fit_name(path.name, ".error.json", reserve=_TMP_EXTRA))


def _fit_name(name: str, tail: str, *, reserve: int = 0) -> str:
    """``name + tail``, unless that (plus ``reserve`` bytes for a temp file's affixes) is longer than a
    file name may be: then ``name`` cut short, ``~``, 12 hex digits of its SHA-256, ``tail``. A legal
    command file name must not make its reason file impossible to write; the hash keeps the short
    name deterministic and distinct."""
    if len(os.fsencode(name + tail)) + reserve <= NAME_MAX:
        return name + tail
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:12]
    budget = NAME_MAX - reserve - len(os.fsencode(tail)) - len(digest) - 1
    cut = name
    while len(os.fsencode(cut)) > budget:  # by characters, so a multi-byte one is never split
        cut = cut[:-1]
    return f"{cut}~{digest}{tail}"


def _listing(directory: Path) -> list[Path]:
    found: list[tuple[int, str]] = []
    with os.scandir(directory) as it:
        for entry in it:
            if not is_command_file_name(entry.name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                continue
            found.append((st.st_mtime_ns, entry.name))
    return [directory / name for _, name in sorted(found)]


def _fsync_dir(directory: Path) -> None:
    """Make a rename/unlink in ``directory`` durable (POSIX; a no-op on Windows)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory
    finally:
        os.close(fd)


def _load_noreplace() -> tuple[Callable[..., int], tuple[Any, ...], int] | None:
    """(function, leading args, flag) for the platform's no-replace rename, or None."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if sys.platform.startswith("linux"):
            fn = libc.renameat2  # glibc >= 2.28
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
            return fn, (-100,), 1  # AT_FDCWD, RENAME_NOREPLACE
        if sys.platform == "darwin":
            fn = libc.renamex_np
            fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
            return fn, (), 4  # RENAME_EXCL
    except (OSError, AttributeError):
        pass
    return None


_NOREPLACE = None if os.name == "nt" else _load_noreplace()
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, getattr(errno, "ENOTSUP", errno.EINVAL),
                getattr(errno, "EOPNOTSUPP", errno.EINVAL)}


def _rename_noreplace(src: Path, dst: Path) -> None:
    """Atomically rename ``src`` to ``dst``; ``FileExistsError`` if ``dst`` exists (never replaced)."""
    if os.name == "nt":
        Path(src).rename(dst)  # Windows refuses to replace
        return
    if _NOREPLACE is not None:
        fn, lead, flag = _NOREPLACE
        if len(lead) == 1:
            rc = fn(lead[0], os.fsencode(src), lead[0], os.fsencode(dst), flag)
        else:
            rc = fn(os.fsencode(src), os.fsencode(dst), flag)
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err not in _UNSUPPORTED:
            raise OSError(err, os.strerror(err), str(src), None, str(dst))
    # No atomic no-replace here (e.g. a file system without renameat2 flags): check, then rename.
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(src), None, str(dst))
    Path(src).rename(dst)
