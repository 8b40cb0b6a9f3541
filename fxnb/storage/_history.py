"""The writer's account history: one ``profit_monitoring`` row per snapshot, and keeping it bounded.

Append-only while the monitor runs; ``prune_history`` expires old rows (and old
events) and downsamples the rest in bounded steps, so it can run on every tick.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from operator import add, gt, lt

from fxnb.models import Account, Book, Position
from fxnb.storage._base import StoreBase, _writes
from fxnb.storage._codec import Timestamp, iso_utc, to_epoch


@dataclass(frozen=True)
class PruneResult:
    """What one :meth:`Store.prune_history` call removed. ``done`` is False when the work budget ran out."""

    expired: int
    downsampled: int
    events: int
    done: bool


_POSITIVE = partial(lt, 0.0)  # x > 0
_NEGATIVE = partial(gt, 0.0)  # x < 0


class HistoryMixin(StoreBase):
    """:class:`~fxnb.storage.writer.Store`'s ``profit_monitoring`` methods."""

    @_writes
    def append_snapshot(self, account: Account, positions: Book | Iterable[Position], at: Timestamp) -> int:
        """Append one ``profit_monitoring`` row; returns its id.

        Winners and losers are split on ``profit + swap`` (the seed ignored swap,
        so a "profit" could be a net loss). ``total_loss`` is the absolute sum.
        """
        book = Book.of(positions)
        pnl = list(map(add, book.profit, book.swap))
        epoch = to_epoch(at)
        winners = sum(filter(_POSITIVE, pnl))
        losers = -sum(filter(_NEGATIVE, pnl))
        with self.db.atomic() as db:
            cur = db.execute(
                "INSERT INTO profit_monitoring (timestamp, ts, total_positions, total_profit, "
                "total_loss, net_profit, balance, equity, margin, margin_free, margin_level, currency, "
                "login, resolution) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                [
                    iso_utc(epoch),
                    epoch,
                    len(pnl),
                    winners,
                    losers,
                    winners - losers,
                    account.balance,
                    account.equity,
                    account.margin,
                    account.margin_free,
                    account.margin_level,
                    account.currency,
                    account.login,
                ],
            )
        return int(cur.lastrowid or 0)

    @_writes
    def prune_history(
        self,
        *,
        now: Timestamp,
        retention_days: float,
        full_resolution_hours: float,
        downsample_seconds: int,
        max_rows: int = 100_000,
    ) -> PruneResult:
        """Keep ``profit_monitoring`` (and ``monitor_events``) bounded.

        * rows older than ``retention_days`` are deleted (events too);
        * raw rows older than ``full_resolution_hours`` are reduced to the
          **last** row of each ``downsample_seconds`` bucket (bucket =
          ``floor(ts / downsample_seconds)``), which gets ``resolution`` set.

        The downsampling edge is rounded down to a bucket boundary, so a bucket
        is always reduced whole, once. Rows already downsampled are not
        revisited (a later, coarser ``downsample_seconds`` applies to rows
        reduced from then on). Work is bounded: each step touches at most about
        ``max_rows`` rows, all through the ``ts`` indexes; ``done=False`` means
        call again (the monitor's next prune tick), e.g. after a year without pruning.
        """
        if downsample_seconds < 1:
            raise ValueError("downsample_seconds must be >= 1")
        if max_rows < 1:
            raise ValueError("max_rows must be >= 1")
        now = to_epoch(now)
        retention_cut = now - retention_days * 86400.0
        ds = int(downsample_seconds)
        full_cut = (int((now - full_resolution_hours * 3600.0) // ds)) * ds
        db = self.db
        with db.atomic():
            expired = db.execute(
                "DELETE FROM profit_monitoring WHERE id IN "
                "(SELECT id FROM profit_monitoring WHERE ts < ? ORDER BY ts LIMIT ?)",
                [retention_cut, max_rows],
            ).rowcount
            events = db.execute(
                "DELETE FROM monitor_events WHERE id IN "
                "(SELECT id FROM monitor_events WHERE at < ? ORDER BY at LIMIT ?)",
                [iso_utc(retention_cut), max_rows],
            ).rowcount
            budget_left = expired < max_rows and events < max_rows
            downsampled, ds_done = (0, False)
            if budget_left:
                downsampled, ds_done = self._downsample(ds, full_cut, max_rows)
        return PruneResult(
            expired=expired, downsampled=downsampled, events=events, done=budget_left and ds_done
        )

    def _downsample(self, ds: int, full_cut: float, max_rows: int) -> tuple[int, bool]:
        """One bounded step of downsampling raw rows before ``full_cut``, inside prune's transaction."""
        db = self.db
        row = db.execute(
            "SELECT MIN(ts) FROM profit_monitoring WHERE resolution = 0 AND ts < ?", [full_cut]
        ).fetchone()
        if row[0] is None:
            return 0, True
        lo = (int(row[0] // ds)) * ds
        # End of this step: the bucket boundary at or before the max_rows-th row after lo,
        # but always at least one whole bucket, and never past the full-resolution edge.
        nth = db.execute(
            "SELECT ts FROM profit_monitoring WHERE ts >= ? ORDER BY ts LIMIT 1 OFFSET ?", [lo, max_rows]
        ).fetchone()
        hi = full_cut if nth is None else min(full_cut, (int(nth[0] // ds)) * ds)
        if hi <= lo:
            hi = min(full_cut, lo + ds)
        deleted = db.execute(
            """
            DELETE FROM profit_monitoring WHERE id IN (
                SELECT id FROM (
                    SELECT id, ROW_NUMBER() OVER (
                        PARTITION BY CAST(ts / :ds AS INTEGER) ORDER BY ts DESC, id DESC) AS rn
                    FROM profit_monitoring WHERE ts >= :lo AND ts < :hi
                ) WHERE rn > 1
            )
            """,
            {"ds": ds, "lo": lo, "hi": hi},
        ).rowcount
        db.execute(
            "UPDATE profit_monitoring SET resolution = :ds WHERE ts >= :lo AND ts < :hi AND resolution < :ds",
            {"ds": ds, "lo": lo, "hi": hi},
        )
        return deleted, hi >= full_cut
