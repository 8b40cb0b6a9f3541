"""Scripted price paths: replay a file of bids instead of the random walk (``broker.sim.price_path``).

Rule tests need prices that cross a threshold at a known moment; the seeded walk
cannot promise that. A script is a list of rows ``(t, symbol, bid)``: from ``t``
seconds after the origin on, ``symbol``'s bid is ``bid`` (ask = bid + spread).
Between rows the price steps (no interpolation: the last row whose ``t`` has
passed wins; of rows with equal ``t`` the later one in the file); before a
symbol's first row its first bid applies; after its last row that bid holds.
Symbols the script does not list keep the random walk. The control file's
``prices`` still pin over a script, and ``price_shift`` is still added.

The origin is the state file's creation (the walk's origin too), so every
process on one state file sees the same prices and a restart continues the
script where it was. A JSON script may set its own origin with ``start``
(epoch seconds), e.g. the moment a test wrote the file.

Formats (chosen by the file suffix):

- ``.json``: ``[[t, symbol, bid], ...]``, rows may also be objects
  ``{"t": 0, "symbol": "EURUSD", "bid": 1.085}``; or an object
  ``{"start": 1700000000.0, "rows": [...]}``.
- anything else is CSV: ``t,symbol,bid`` per line; blank lines, lines starting
  with ``#`` and a first line that is not a row (a header) are skipped::

      t,symbol,bid
      0,EURUSD,1.08500
      2.5,EURUSD,1.09200
      10,XAUUSD,2400

The file is read once, when the terminal starts; a bad file raises
``ConfigError`` naming the row.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import math
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fxnb.errors import ConfigError

_KEY = "broker.sim.price_path"


@dataclass(frozen=True)
class PriceScript:
    """Per symbol, the row times (ascending) and their bids; ``times`` holds every row's time."""

    series: dict[str, tuple[tuple[float, ...], tuple[float, ...]]]
    times: tuple[float, ...]
    start: float | None = None

    def position(self, elapsed: float) -> int:
        """How many rows have taken effect: changes exactly when some scripted price may have."""
        return bisect.bisect_right(self.times, elapsed)

    def bid(self, symbol: str, elapsed: float) -> float | None:
        """The scripted bid ``elapsed`` seconds after the origin; None for an unscripted symbol."""
        found = self.series.get(symbol)
        if found is None:
            return None
        times, bids = found
        return bids[max(bisect.bisect_right(times, elapsed) - 1, 0)]


def load_script(path: Path, symbols: Collection[str]) -> PriceScript:
    """Read and check ``path``; ``symbols`` are the names a row may use."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{_KEY}: cannot read {path}: {exc}") from None
    if path.suffix.lower() == ".json":
        start, rows = _json_rows(path, text)
    else:
        start, rows = None, _csv_rows(text)
    series: dict[str, list[tuple[float, float]]] = {}
    for where, row in rows:
        t, symbol, bid = _row(path, where, row, symbols)
        series.setdefault(symbol, []).append((t, bid))
    if not series:
        raise ConfigError(f"{_KEY}: {path} has no rows")
    out = {}
    for symbol, points in series.items():
        points.sort(key=lambda p: p[0])  # stable: of equal times, the file's order stays
        out[symbol] = (tuple(p[0] for p in points), tuple(p[1] for p in points))
    times = tuple(sorted(t for ts, _ in out.values() for t in ts))
    return PriceScript(out, times, start)


def _json_rows(path: Path, text: str) -> tuple[float | None, list[tuple[str, Any]]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{_KEY}: {path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    start = None
    if isinstance(data, dict):
        start = data.get("start")
        if start is not None and not _finite(start):
            raise ConfigError(f"{_KEY}: {path}: start must be epoch seconds, got {start!r}")
        data = data.get("rows")
    if not isinstance(data, list):
        raise ConfigError(f"{_KEY}: {path}: expected a list of rows or an object with 'rows'")
    rows = [(f"row {i + 1}", r) for i, r in enumerate(data)]
    return (None if start is None else float(start)), rows


def _csv_rows(text: str) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    first = True
    for n, cells in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in cells]
        if not any(cells) or cells[0].startswith("#"):
            continue
        header = first and not _is_number(cells[0])
        first = False
        if not header:
            rows.append((f"line {n}", cells))
    return rows


def _row(path: Path, where: str, row: Any, symbols: Collection[str]) -> tuple[float, str, float]:
    if isinstance(row, dict):
        row = [row.get("t"), row.get("symbol"), row.get("bid")]
    if not isinstance(row, list) or len(row) != 3:
        raise ConfigError(f"{_KEY}: {path}: {where}: expected t, symbol, bid; got {row!r}")
    t, symbol, bid = _number(row[0]), row[1], _number(row[2])
    if t is None or t < 0:
        raise ConfigError(f"{_KEY}: {path}: {where}: t must be seconds >= 0, got {row[0]!r}")
    if symbol not in symbols:
        raise ConfigError(f"{_KEY}: {path}: {where}: unknown symbol {symbol!r}")
    if bid is None or bid <= 0:
        raise ConfigError(f"{_KEY}: {path}: {where}: bid must be a positive number, got {row[2]!r}")
    return t, symbol, bid


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _number(value: Any) -> float | None:
    """A finite float from a JSON number or a CSV cell, else None."""
    if isinstance(value, str):
        return float(value) if _is_number(value) else None
    return float(value) if _finite(value) else None


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False
