"""Guard settings: the shipped defaults, the schema in the loader's terms, and every refusal names its key."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fxnb.config import DEFAULTS, SCHEMA, _merge
from fxnb.configspec import Bool, Choice, Free, Num, Str
from fxnb.errors import ConfigError
from fxnb.guards import GUARDS_DEFAULTS, GUARDS_SCHEMA, GuardSettings


def test_defaults_are_all_disabled_and_equal_the_dataclass_defaults() -> None:
    assert all(section["enabled"] is False for section in GUARDS_DEFAULTS.values())
    assert set(GUARDS_DEFAULTS) == set(GUARDS_SCHEMA)
    for name, section in GUARDS_SCHEMA.items():
        assert set(GUARDS_DEFAULTS[name]) == set(section), name
    assert GuardSettings.from_mapping(GUARDS_DEFAULTS) == GuardSettings()
    assert GuardSettings.from_mapping({}) == GuardSettings()
    assert GuardSettings.from_mapping(None) == GuardSettings()
    json.dumps(GUARDS_DEFAULTS)  # plain JSON, ready for config.json


def test_schema_uses_only_the_config_building_blocks() -> None:
    for section in GUARDS_SCHEMA.values():
        for spec in section.values():
            assert isinstance(spec, Num | Choice | Bool | Str | Free)


def test_merges_into_the_config_loader_and_round_trips() -> None:
    # What the lead does: the loader validates the leaves, from_mapping the rest.
    schema = {**SCHEMA, "guards": GUARDS_SCHEMA}
    defaults = {**DEFAULTS, "guards": GUARDS_DEFAULTS}
    given = {"guards": {"drawdown": {"enabled": True, "max_percent": 4}, "spread": {"per_symbol": {"XAUUSD": 60}}}}
    merged = _merge("", schema, defaults, given)["guards"]
    s = GuardSettings.from_mapping(merged)
    assert s.drawdown.enabled and s.drawdown.max_percent == 4 and s.drawdown.warning_ratio == 0.8
    assert s.spread.limit_for("XAUUSD") == 60 and s.spread.limit_for("EURUSD") == 30
    assert s.basket.take_profit is None
    with pytest.raises(ConfigError, match=r"^guards\.drawdown\.max_percent: "):
        _merge("", schema, defaults, {"guards": {"drawdown": {"max_percent": 0}}})


def test_a_full_section() -> None:
    s = GuardSettings.from_mapping({
        "basket": {"enabled": True, "take_profit": 2, "stop_loss": 1.5, "unit": "percent", "group_by": "magic"},
        "session_close": {"enabled": True, "symbols": ["XAUUSD", "EURUSD", "EURUSD"], "time": "23:30"},
        "spread": {"enabled": True, "max_points": None, "per_symbol": {"XAUUSD": 60, "EURUSD": 20},
                   "applies_to": ["min_profit", "trailing", "min_profit"]},
    })
    assert (s.basket.take_profit, s.basket.stop_loss, s.basket.group_by) == (2.0, 1.5, "magic")
    assert s.session_close.symbols == ("EURUSD", "XAUUSD") and s.session_close.minutes == 23 * 60 + 30
    assert s.spread.per_symbol == (("EURUSD", 20.0), ("XAUUSD", 60.0))
    assert s.spread.applies_to == ("min_profit", "trailing")
    assert s.spread.limit_for("GBPUSD") is None


REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"nonsense": {}}, r"guards\.nonsense: unknown guard"),
    ({"drawdown": {"max_pct": 3}}, r"guards\.drawdown\.max_pct: unknown key"),
    ({"drawdown": []}, r"guards\.drawdown: expected an object"),
    ({"drawdown": {"enabled": "yes"}}, r"guards\.drawdown\.enabled: expected true or false"),
    ({"drawdown": {"warning_ratio": 1}}, r"guards\.drawdown\.warning_ratio: must be > 0 and < 1"),
    ({"daily_loss": {"warning_ratio": 1.0}}, r"guards\.daily_loss\.warning_ratio: must be > 0 and < 1"),
    ({"daily_loss": {"warning_ratio": 1.5}}, r"guards\.daily_loss\.warning_ratio: 1\.5 is out of range"),
    ({"daily_loss": {"max_loss": 150, "unit": "percent"}}, r"guards\.daily_loss\.max_loss: 150% .* never"),
    ({"daily_loss": {"reset_hour": 24}}, r"guards\.daily_loss\.reset_hour: 24 is out of range"),
    ({"daily_loss": {"utc_offset_hours": 2.5, "reset_hour": 1.5}}, r"guards\.daily_loss\.reset_hour: expected a whole"),
    ({"basket": {"take_profit": 0}}, r"guards\.basket\.take_profit: must be null or a number > 0"),
    ({"basket": {"take_profit": -5}}, r"guards\.basket\.take_profit: must be null or a number > 0"),
    ({"basket": {"stop_loss": -100}}, r"guards\.basket\.stop_loss: must be null or a number > 0"),
    ({"basket": {"stop_loss": "100"}}, r"guards\.basket\.stop_loss: must be null or a number > 0"),
    ({"basket": {"stop_loss": 101, "unit": "percent"}}, r"guards\.basket\.stop_loss: 101% .* <= 100"),
    ({"basket": {"enabled": True}}, r"guards\.basket\.take_profit: .*neither take_profit nor stop_loss"),
    ({"basket": {"group_by": "side"}}, r"guards\.basket\.group_by: 'side' is not one of none, symbol, magic"),
    ({"breakeven": {"trigger_points": 100, "buffer_points": 100}}, r"guards\.breakeven\.buffer_points: must be"),
    ({"trailing": {"mode": "percent", "distance": 100}}, r"guards\.trailing\.distance: 100% .* < 100"),
    ({"trailing": {"distance": 0}}, r"guards\.trailing\.distance: 0 is out of range"),
    ({"session_close": {"time": "21.45"}}, r"guards\.session_close\.time: expected \"HH:MM\""),
    ({"session_close": {"time": "24:00"}}, r"guards\.session_close\.time: expected \"HH:MM\""),
    ({"session_close": {"weekday": 7}}, r"guards\.session_close\.weekday: 7 is out of range"),
    ({"session_close": {"symbols": "EURUSD"}}, r"guards\.session_close\.symbols: expected a list"),
    ({"session_close": {"symbols": [""]}}, r"guards\.session_close\.symbols: expected a list"),
    ({"session_close": {"enabled": True, "weekend": False}}, r"guards\.session_close\.weekend: .*never fire"),
    ({"spread": {"max_points": 0}}, r"guards\.spread\.max_points: must be null or a number > 0"),
    ({"spread": {"per_symbol": ["XAUUSD"]}}, r"guards\.spread\.per_symbol: expected an object"),
    ({"spread": {"per_symbol": {"XAUUSD": -1}}}, r"guards\.spread\.per_symbol\.XAUUSD: must be"),
    ({"spread": {"per_symbol": {"XAUUSD": None}}}, r"guards\.spread\.per_symbol\.XAUUSD: must be"),
    ({"spread": {"applies_to": ["drawdown"]}}, r"guards\.spread\.applies_to: 'drawdown' is an emergency flatten"),
    ({"spread": {"applies_to": ["daily_loss"]}}, r"guards\.spread\.applies_to: 'daily_loss' is an emergency"),
    ({"spread": {"applies_to": ["min_proft"]}}, r"guards\.spread\.applies_to: unknown rule 'min_proft'"),
    ({"spread": {"applies_to": "min_profit"}}, r"guards\.spread\.applies_to: expected a list"),
    ({"spread": {"enabled": True, "max_points": None}}, r"guards\.spread\.max_points: .*has no limit"),
]


@pytest.mark.parametrize(("section", "message"), REFUSED)
def test_impossible_settings_are_refused_naming_the_key(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{message}"):
        GuardSettings.from_mapping(section)


def test_does_nothing_checks_only_apply_to_enabled_guards() -> None:
    # The shipped defaults have no basket target and may have an empty spread limit when disabled.
    s = GuardSettings.from_mapping({"basket": {"enabled": False}, "spread": {"enabled": False, "max_points": None},
                                    "session_close": {"enabled": False, "weekend": False}})
    assert not s.basket.enabled and s.spread.max_points is None
