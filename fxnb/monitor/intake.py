"""Command files in, operations out: claim, validate, de-duplicate, expire, execute.

A mixin of ``Engine`` (kept apart so each module reads in one sitting); it
runs on the broker thread like the rest of the engine.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from fxnb.commands import Command, is_expired, parse_command, validate_id
from fxnb.errors import BrokerError, CommandError, StorageError
from fxnb.models import CloseStatus
from fxnb.monitor.health import COMMANDS, DATABASE
from fxnb.monitor.logs import kv
from fxnb.monitor.protect import PAUSED_BY_KEY
from fxnb.monitor.targets import BULK_TYPES, PAUSED_KEY, iso, opened_after, select_targets
from fxnb.storage import DuplicateCommand

if TYPE_CHECKING:
    from fxnb.monitor.engine import Engine as _Base
else:
    _Base = object

log = logging.getLogger("fxnb.monitor")
_iso = iso


class CommandIntake(_Base):
    def process_pending(self) -> int:
        """Handle every command file present now. Returns how many were handled.

        A write the environment refuses (database full, ``commands/`` read-only) stops neither
        this pass nor the other files: it is reported once (``environment_failed``), the file
        stays where it was (``commands/`` or ``processing/``) and ``recover`` finishes it later.
        """
        handled = 0
        folder_failed = False
        try:
            recovered = self.recover()
        except (StorageError, OSError) as exc:
            recovered, folder_failed = False, isinstance(exc, OSError)
            self.environment_failed(exc)
        try:
            pending = self.commands.pending()
        except OSError as exc:  # commands/ itself gone or unreadable
            self.environment_failed(exc)
            return 0
        self.health.queue_depth = len(pending)
        for path in pending:
            try:
                if self.process_file(path):
                    handled += 1
            except (StorageError, OSError) as exc:
                folder_failed = folder_failed or isinstance(exc, OSError)
                self.environment_failed(exc)
        if (handled or recovered) and not folder_failed:
            self.clear_problem(COMMANDS)  # files were moved again: the folder takes writes
        with contextlib.suppress(OSError):
            self.health.queue_depth = len(self.commands.pending()) if handled else self.health.queue_depth
        return handled

    def recover(self) -> bool:
        """After a refused write or a lost terminal, finish what was interrupted exactly as after a restart.

        That is ``reconcile``: a command whose row could not be written never ran, so it runs now if it
        has not expired (recorded 'expired' otherwise); an operation cut short is reconciled against the
        terminal, so nothing runs twice; a file that could not be removed or moved is dealt with. Waits
        while the database is known to fail (a successful poll clears that) and while the terminal is
        away. True if it ran.
        """
        if not self.needs_recovery or DATABASE in self.health.problems or not self.health.connected:
            return False
        self.needs_recovery = False  # environment_failed sets it again if this fails too
        while self._unrecorded_rejections:
            try:
                self._unrecorded_rejections[0]()
            except DuplicateCommand:
                pass  # the id was recorded meanwhile: that record stands
            self._unrecorded_rejections.pop(0)
        self.reconcile()
        return True

    def process_file(self, path: Path) -> bool:
        """Claim, validate and run one file. Never raises for a bad file."""
        now = self.clock()
        max_bytes = self.cfg.commands.max_file_bytes
        if self.commands.is_possibly_incomplete(path, datetime.fromtimestamp(now, UTC)):
            return False  # a hand-written file still being saved; look again later
        if not self.health.connected:
            return self._expire_if_due(path, now)
        claimed = self._claim(path, now)
        if claimed is None:
            return False
        return self._run_claimed(claimed, now, max_bytes)

    def _claim(self, path: Path, now: float) -> Path | None:
        """Atomic rename into processing/; None if another claimer won (or the name is taken there)."""
        try:
            return self.commands.claim(path)
        except CommandError as exc:
            self._reject(path, str(exc), now)
            return None

    def _expire_if_due(self, path: Path, now: float) -> bool:
        """While the terminal is away commands wait; the ones past expiry end as expired."""
        try:
            cmd = self._parse(self.commands.read_claimed(path, self.cfg.commands.max_file_bytes), path.name, now)
        except (OSError, CommandError):
            return False
        if not is_expired(cmd, datetime.fromtimestamp(now, UTC)):
            return False
        claimed = self._claim(path, now)
        if claimed is None:
            return False
        return self._run_claimed(claimed, now, self.cfg.commands.max_file_bytes)

    def _parse(self, data: bytes, name: str, now: float) -> Command:
        return parse_command(data, file_name=name, now=datetime.fromtimestamp(now, UTC),
                             max_age_seconds=self.cfg.commands.max_age_seconds,
                             max_bytes=self.cfg.commands.max_file_bytes)

    def _run_claimed(self, claimed: Path, now: float, max_bytes: int) -> bool:
        name = claimed.name
        try:
            cmd = self._parse(self.commands.read_claimed(claimed, max_bytes), name, now)
        except CommandError as exc:
            self._reject(claimed, str(exc), now)
            return True
        except OSError as exc:
            self._reject(claimed, f"{name}: cannot read the file ({exc.strerror or exc})", now)
            return True
        if self.store.get_operation_by_command(cmd.id) is not None:
            self._reject(claimed, f"{name}: duplicate command id {cmd.id!r}: it was already received; "
                                  "not executed again", now, duplicate_of=cmd.id)
            return True
        try:
            op_id = self._create(cmd, now)
        except DuplicateCommand:
            self._reject(claimed, f"{name}: duplicate command id {cmd.id!r}", now, duplicate_of=cmd.id)
            return True
        if is_expired(cmd, datetime.fromtimestamp(now, UTC)):
            msg = f"expired at {cmd.expires_at.isoformat()} before it could run; nothing was closed"
            self.store.finish_operation(op_id, "expired", finished_at=_iso(now), error_message=msg)
            self.commands.fail(claimed, msg)
            log.info(kv("command", id=cmd.id, type=cmd.type, status="expired"))
            return True
        self._execute_command(op_id, cmd)
        self.commands.complete(claimed)
        return True

    def _create(self, cmd: Command, now: float) -> int:
        params = {k: v for k, v in {"ticket": cmd.ticket, "volume": cmd.volume, "percent": cmd.percent,
                                    "symbol": cmd.symbol, "magic": cmd.magic, "side": cmd.side}.items()
                  if v is not None}
        return self.store.create_operation(
            cmd.id, cmd.type, source="operator", requested_by=cmd.requested_by or "operator", params=params,
            timestamp=cmd.timestamp.isoformat(), created_at=_iso(now),
            expires_at=cmd.expires_at.isoformat() if cmd.expires_at else None, file_name=cmd.file_name,
        )

    def _id_from_name(self, name: str) -> str | None:
        """The id a malformed file's name claims, so the operator's tool can find its rejection."""
        raw = name.removeprefix("cmd_").removesuffix(".json")
        try:
            cmd_id = validate_id(raw)
        except ValueError:
            return None
        return None if self.store.get_operation_by_command(cmd_id) is not None else cmd_id

    def _reject(self, claimed: Path, reason: str, now: float, *, duplicate_of: str | None = None) -> None:
        """Malformed or duplicate: to commands/errors/ with the reason, and a final 'rejected' row."""
        cmd_id = None if duplicate_of else self._id_from_name(claimed.name)
        # the file first (all or nothing: a refused move or reason file leaves it where it was, for a retry),
        # then its row; a row the database refuses is written by ``recover`` once it can be
        self.commands.fail(claimed, reason)
        log.warning(kv("command", file=claimed.name, status="rejected", reason=reason))
        record = functools.partial(
            self.store.reject_operation, cmd_id, error_message=reason,
            operation_type="invalid", requested_by="unknown",
            params={"duplicate_of": duplicate_of} if duplicate_of else None, file_name=claimed.name, at=now,
        )
        try:
            record()
        except DuplicateCommand:
            pass  # the id was recorded meanwhile (a race with its own file): that record stands
        except StorageError:
            self._unrecorded_rejections.append(record)
            raise
        self.emit("warning", "command_rejected", reason, {"file": claimed.name})

    def _execute_command(self, op_id: int, cmd: Command) -> None:
        now = self.clock()
        if cmd.type in ("pause_rules", "resume_rules"):
            paused = cmd.type == "pause_rules"
            self.store.set_rule_state(PAUSED_KEY, paused)
            if paused:
                self.store.set_rule_state(PAUSED_BY_KEY, f"operator:{cmd.requested_by or 'operator'}")
            else:
                self.unlock_guards(now)
            self.store.claim_operation(op_id, target_tickets=[], claimed_at=_iso(now))
            self.store.finish_operation(op_id, "completed", finished_at=_iso(self.clock()))
            self.emit("info", "rules_paused" if paused else "rules_resumed",
                             f"rules {'paused' if paused else 'resumed'} by {cmd.requested_by or 'operator'}")
            log.info(kv("command", id=cmd.id, type=cmd.type, status="completed"))
            return
        if cmd.type == "flatten":
            self.flatten(op_id, requested_by=cmd.requested_by or "operator")
            return
        if cmd.type in BULK_TYPES:
            try:
                snap = self.broker.snapshot()
            except BrokerError as exc:
                msg = f"could not read open positions, nothing was closed: {exc}"
                self.store.claim_operation(op_id, target_tickets=[], claimed_at=_iso(now))
                self.store.finish_operation(op_id, "failed", finished_at=_iso(self.clock()), error_message=msg)
                log.error(kv("command", id=cmd.id, type=cmd.type, status="failed", error=msg))
                return
            offset = self.server_offset(snap.book.symbol)
            targets = select_targets(cmd, snap.positions, server_offset_s=offset)
            later = [p.ticket for p in snap.positions if opened_after(cmd, p, offset)]
            if later:
                log.info(kv("command_left_open", id=cmd.id, reason="opened after the command was written",
                            tickets=later[:20]))
        else:
            assert cmd.ticket is not None
            targets = [cmd.ticket]
        self.store.claim_operation(op_id, target_tickets=targets, claimed_at=_iso(now))
        results = self._close_tickets(op_id, targets, volume=cmd.volume, percent=cmd.percent, reason="command")
        status = self._final_status(results, single=cmd.type in ("single", "partial"))
        error = None
        if status != "completed":
            bad = [r for r in results if r.status not in (CloseStatus.CLOSED,)]
            error = "; ".join(f"{r.ticket}: {r.message or r.status.value}" for r in bad[:5])
        self.store.finish_operation(op_id, status, finished_at=_iso(self.clock()), error_message=error)
        log.info(kv("command", id=cmd.id, type=cmd.type, targets=len(targets), status=status,
                    closed=sum(r.status == CloseStatus.CLOSED for r in results), error=error))
        if status in ("failed", "partially_completed"):
            self.emit("error", "command_failed", f"command {cmd.id} ({cmd.type}) {status}: {error}",
                             {"command_id": cmd.id})
