"""Account protection guards: pure decisions about closing, locking and moving stops.

Why a package of pure functions: these guards close real positions and lock an
account, so every decision must be reproducible from its inputs. Nothing here
does I/O, reads a clock or talks to the terminal: the monitor passes in a
snapshot, the settings and the guards' remembered state, and gets back closes,
stop moves, alerts, an optional lock, the new state and one status row per
guard. It executes the closes through its one close path, the stop moves as
``TRADE_ACTION_SLTP`` requests, and persists the state.

The guards (all disabled by default; see ``GUARDS_DEFAULTS``):

* ``basket``: close a group when its floating P/L crosses a target.
* ``drawdown``: equity too far below its high-water mark: flatten, lock until resumed.
* ``daily_loss``: today's realised + floating loss at the limit: flatten, lock until tomorrow.
* ``breakeven`` / ``trailing``: move the server-side SL, never backwards.
* ``session_close``: be flat before the weekend (or every day) at a server time.
* ``spread``: defer the optional closes while the spread is wide; never an emergency.
"""

from __future__ import annotations

from fxnb.guards.engine import evaluate_guards, unlock
from fxnb.guards.model import (
    Blocked,
    GuardAlert,
    GuardInput,
    GuardOutcome,
    GuardStatus,
    LockRequest,
    StopMove,
)
from fxnb.guards.periods import day_key, day_start, next_reset
from fxnb.guards.schema import GUARDS_DEFAULTS, GUARDS_SCHEMA
from fxnb.guards.settings import (
    GUARD_NAMES,
    PROTECTIVE_RULES,
    BasketSettings,
    BreakevenSettings,
    DailyLossSettings,
    DrawdownSettings,
    GuardSettings,
    SessionCloseSettings,
    SpreadSettings,
    TrailingSettings,
)
from fxnb.guards.spread import filter_by_spread, spread_ok, spread_points, spread_warning
from fxnb.guards.state import UNTIL_NEXT_DAY, UNTIL_RESUME, GuardState

__all__ = [
    "GUARDS_DEFAULTS",
    "GUARDS_SCHEMA",
    "GUARD_NAMES",
    "PROTECTIVE_RULES",
    "UNTIL_NEXT_DAY",
    "UNTIL_RESUME",
    "BasketSettings",
    "Blocked",
    "BreakevenSettings",
    "DailyLossSettings",
    "DrawdownSettings",
    "GuardAlert",
    "GuardInput",
    "GuardOutcome",
    "GuardSettings",
    "GuardState",
    "GuardStatus",
    "LockRequest",
    "SessionCloseSettings",
    "SpreadSettings",
    "StopMove",
    "TrailingSettings",
    "day_key",
    "day_start",
    "evaluate_guards",
    "filter_by_spread",
    "next_reset",
    "spread_ok",
    "spread_points",
    "spread_warning",
    "unlock",
]
