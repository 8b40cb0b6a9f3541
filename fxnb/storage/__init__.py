"""fxnb's SQLite storage: one writer (the monitor's :class:`Store`), many read-only :class:`Reader`\\ s.

``schema`` owns every table and migration (the only DDL); ``writer`` (whose
``Store`` is assembled from ``_positions``, ``_history``, ``_operations``,
``_results`` and ``_monitor_state``) and ``reader`` hold the queries;
``frames`` (pandas) is imported on demand only;
``python -m fxnb.storage.bench`` prints timings of the hot paths.
"""

from __future__ import annotations

from fxnb.storage.reader import Reader
from fxnb.storage.schema import SCHEMA_VERSION
from fxnb.storage.writer import DuplicateCommand, PruneResult, Store, SyncResult

__all__ = ["SCHEMA_VERSION", "DuplicateCommand", "PruneResult", "Reader", "Store", "SyncResult"]
