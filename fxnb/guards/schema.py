"""The ``guards`` section of config.json: specs and defaults, in the config loader's terms.

Why a separate module: ``fxnb.config`` owns loading, and merges ``GUARDS_SCHEMA``
into its ``SCHEMA`` so every leaf is type- and range-checked by
``fxnb.configspec.check_value`` with the key named (``guards.drawdown.max_percent``).
What a single spec cannot say (a number *or* null, a list of symbols, a
symbol -> points mapping, "warning_ratio must be below 1") is checked by
``fxnb.guards.settings.GuardSettings.from_mapping``, which the loader should call
once at start-up so a mistake stops the process before it trades.

Every guard ships disabled: a guard closes real positions, so turning one on is
the operator's decision. The numbers are the common MT5 trade-manager defaults
(80 % warning, reset at midnight server time, server time UTC+2, a Friday
close before the weekend rollover).
"""

from __future__ import annotations

from typing import Any

from fxnb.configspec import Bool, Choice, Free, Num, Str

UTC_OFFSET = Num(-12, 14)  # hours; fractional offsets (5.5, 5.75) exist
RESET_HOUR = Num(0, 23, integer=True)
POINTS = Num(0, 10_000_000)

GUARDS_SCHEMA: dict[str, Any] = {
    "basket": {
        "enabled": Bool(),
        "take_profit": Free(),  # null or a number > 0 (money, or percent of balance)
        "stop_loss": Free(),  # null or a number > 0: the loss, as a positive amount
        "unit": Choice(("money", "percent")),
        "group_by": Choice(("none", "symbol", "magic")),
    },
    "drawdown": {
        "enabled": Bool(),
        "max_percent": Num(0, 100, lo_open=True),
        "warning_ratio": Num(0, 1, lo_open=True),  # 1 itself is refused by GuardSettings
        "period": Choice(("session", "day")),
        "utc_offset_hours": UTC_OFFSET,
        "reset_hour": RESET_HOUR,
    },
    "daily_loss": {
        "enabled": Bool(),
        "max_loss": Num(0, 1e12, lo_open=True),
        "unit": Choice(("money", "percent")),
        "warning_ratio": Num(0, 1, lo_open=True),
        "utc_offset_hours": UTC_OFFSET,
        "reset_hour": RESET_HOUR,
    },
    "breakeven": {
        "enabled": Bool(),
        "trigger_points": Num(0, 10_000_000, lo_open=True),
        "buffer_points": POINTS,
    },
    "trailing": {
        "enabled": Bool(),
        "mode": Choice(("points", "percent")),
        "distance": Num(0, 10_000_000, lo_open=True),
        "activation_points": POINTS,
    },
    "session_close": {
        "enabled": Bool(),
        "weekend": Bool(),
        "daily": Bool(),
        "weekday": Num(0, 6, integer=True),  # 0 = Monday ... 6 = Sunday, in server time
        "time": Str(max_len=5),  # "HH:MM", server time
        "utc_offset_hours": UTC_OFFSET,
        "symbols": Free(),  # list of symbol names; empty = every symbol
    },
    "spread": {
        "enabled": Bool(),
        "max_points": Free(),  # null or a number > 0
        "per_symbol": Free(),  # {"XAUUSD": 60, ...}
        "applies_to": Free(),  # rule names the filter may defer
    },
}

GUARDS_DEFAULTS: dict[str, Any] = {
    "basket": {"enabled": False, "take_profit": None, "stop_loss": None, "unit": "money", "group_by": "none"},
    "drawdown": {"enabled": False, "max_percent": 10.0, "warning_ratio": 0.8, "period": "day",
                 "utc_offset_hours": 2, "reset_hour": 0},
    "daily_loss": {"enabled": False, "max_loss": 5.0, "unit": "percent", "warning_ratio": 0.8,
                   "utc_offset_hours": 2, "reset_hour": 0},
    "breakeven": {"enabled": False, "trigger_points": 200, "buffer_points": 20},
    "trailing": {"enabled": False, "mode": "points", "distance": 300, "activation_points": 300},
    "session_close": {"enabled": False, "weekend": True, "daily": False, "weekday": 4, "time": "21:45",
                      "utc_offset_hours": 2, "symbols": []},
    "spread": {"enabled": False, "max_points": 30, "per_symbol": {},
               "applies_to": ["min_profit", "partial_close", "basket", "session_close"]},
}
