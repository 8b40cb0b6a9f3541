"""The 223 constants of the official ``MetaTrader5`` package (5.0.6231), as attributes.

The values come from ``constants.json``, generated once from the official wheel
so that CI needs no Windows wheel. Exactly these upper-case names exist here and
on ``SimTerminal``: code that uses a constant the real module lacks fails in
tests too. Import the module (``from fxnb.broker.sim import constants as C``).
"""

from __future__ import annotations

import json
from pathlib import Path

_TABLE: dict[str, int] = json.loads((Path(__file__).with_name("constants.json")).read_text("utf-8"))

globals().update(_TABLE)


def table() -> dict[str, int]:
    """A copy of the name → value table (223 entries)."""
    return dict(_TABLE)


def __getattr__(name: str) -> int:
    """Only reached for names that do not exist; it tells type checkers every other name is an int."""
    raise AttributeError(f"module 'MetaTrader5' has no attribute {name!r}")
