"""Scripted price paths (``broker.sim.price_path``) and the settings of the new faults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _sim_clock import T0, Clock

from fxnb.broker.sim import FaultSettings, SimSettings, SimTerminal, write_control
from fxnb.broker.sim import constants as C
from fxnb.config import config_from_mapping
from fxnb.errors import ConfigError
from fxnb.workspace import template

CSV = """# a rule test's path
t,symbol,bid
0,EURUSD,1.10000
2.5,EURUSD,1.20000

5,EURUSD,1.15000
1,XAUUSD,2400
"""


def _terminal(tmp_path: Path, clock: Clock, script: str, name: str = "path.csv", **section: object) -> SimTerminal:
    (tmp_path / name).write_text(script)
    base: dict[str, object] = {"volatility": 0.0, "positions": {"count": 0}, "price_path": name}
    base.update(section)
    t = SimTerminal(SimSettings.from_mapping(base, tmp_path), clock=clock)
    assert t.initialize(), t.last_error()
    return t


def bid(mt5: SimTerminal, symbol: str = "EURUSD") -> float:
    return mt5.symbol_info_tick(symbol).bid


def test_csv_path_steps_through_the_rows_then_holds(tmp_path: Path) -> None:
    clock = Clock()
    mt5 = _terminal(tmp_path, clock, CSV)
    try:
        tick = mt5.symbol_info_tick("EURUSD")
        assert (tick.bid, tick.ask) == (1.1, 1.1001)  # ask = bid + 10 points
        assert bid(mt5, "XAUUSD") == 2400.0  # before its first row: the first bid
        assert bid(mt5, "GBPUSD") == 1.27  # not scripted: the (frozen) walk
        for dt, expected in [(2.49, 1.1), (2.5, 1.2), (4.99, 1.2), (5.0, 1.15), (10_000.0, 1.15)]:
            clock.now = T0 + dt
            assert bid(mt5) == expected, dt
        assert mt5.symbol_info("EURUSD").ask == 1.1501
    finally:
        mt5.close()


def test_positions_are_valued_and_closed_at_scripted_prices(tmp_path: Path) -> None:
    clock = Clock()
    mt5 = _terminal(tmp_path, clock, CSV)
    try:
        r = mt5.order_send({"action": 1, "symbol": "EURUSD", "volume": 1.0, "type": 0, "type_filling": 1})
        assert r.price == 1.1001
        clock.now += 3.0
        (p,) = mt5.positions_get()
        assert (p.price_current, p.profit) == (1.2, 9990.0)  # (1.2 - 1.1001) * 100,000
        assert mt5.account_info().profit == 9990.0
        out = mt5.order_send(
            {"action": 1, "symbol": "EURUSD", "volume": 1.0, "type": 1, "position": r.order, "type_filling": 1}
        )
        assert out.price == 1.2 and mt5.history_deals_get(ticket=out.order)[0].profit == 9990.0
    finally:
        mt5.close()


def test_control_pins_and_shifts_apply_over_the_script(tmp_path: Path) -> None:
    clock = Clock()
    mt5 = _terminal(tmp_path, clock, CSV)
    try:
        write_control(mt5.state_file, prices={"EURUSD": 1.3})
        assert bid(mt5) == 1.3
        write_control(mt5.state_file, prices=None, price_shift={"EURUSD": 0.001})
        assert bid(mt5) == 1.101
    finally:
        mt5.close()


def test_json_path_with_start_objects_and_equal_times(tmp_path: Path) -> None:
    clock = Clock()
    script = {
        "start": T0 + 100,
        "rows": [
            [0, "EURUSD", 1.1],
            {"t": 1, "symbol": "EURUSD", "bid": 1.2},
            [1, "EURUSD", 1.25],  # same time, later in the file: wins
        ],
    }
    mt5 = _terminal(tmp_path, clock, json.dumps(script), name="path.json")
    try:
        assert bid(mt5) == 1.1  # before start: the first row
        clock.now = T0 + 100.999
        assert bid(mt5) == 1.1
        clock.now = T0 + 101
        assert bid(mt5) == 1.25
    finally:
        mt5.close()


def test_the_origin_is_the_state_files_so_every_terminal_agrees(tmp_path: Path) -> None:
    clock = Clock()
    first = _terminal(tmp_path, clock, CSV)
    clock.now += 3.0
    later = _terminal(tmp_path, clock, CSV)  # another process, started later, same state file
    try:
        assert bid(first) == bid(later) == 1.2
    finally:
        first.close()
        later.close()


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("p.csv", "0,EURUSD,1.1\n1,NOPE,1.2\n", "line 2: unknown symbol 'NOPE'"),
        ("p.csv", "t,symbol,bid\n-1,EURUSD,1.1\n", "line 2: t must be seconds >= 0"),
        ("p.csv", "0,EURUSD,zero\n", "line 1: bid must be a positive number"),
        ("p.csv", "0,EURUSD\n", "line 1: expected t, symbol, bid"),
        ("p.csv", "t,symbol,bid\n", "has no rows"),
        ("p.json", "[[0, 'EURUSD', 1]]", "invalid JSON"),
        ("p.json", '{"start": "now", "rows": []}', "start must be epoch seconds"),
        ("p.json", '[[0, "EURUSD", 0]]', "row 1: bid must be a positive number"),
    ],
)
def test_a_bad_path_file_is_a_config_error_naming_the_row(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="broker.sim.price_path") as err:
        _terminal(tmp_path, Clock(), text, name=name)
    assert message in str(err.value)


def test_a_missing_path_file_is_a_config_error(tmp_path: Path) -> None:
    settings = SimSettings.from_mapping({"price_path": "nowhere.csv"}, tmp_path)
    with pytest.raises(ConfigError, match="cannot read"):
        SimTerminal(settings)


# ---------------------------------------------------------------- settings and config


NEW_FAULTS = {
    "lost_reply_rate": 0.1,
    "error_rate": 0.2,
    "timeout_rate": 0.3,
    "ambiguous_executes": True,
    "partial_fill_rate": 0.4,
    "visibility_delay_ms": 500,
    "history_delay_ms": 2000,
}


def test_settings_read_the_new_keys_and_default_to_off(tmp_path: Path) -> None:
    s = SimSettings.from_mapping({"price_path": "paths/a.csv", "faults": NEW_FAULTS}, tmp_path)
    assert s.price_path == tmp_path / "paths/a.csv"
    f = s.faults
    assert (f.lost_reply_rate, f.error_rate, f.timeout_rate, f.partial_fill_rate) == (0.1, 0.2, 0.3, 0.4)
    assert (f.ambiguous_executes, f.visibility_delay_ms, f.history_delay_ms) == (True, 500.0, 2000.0)
    assert SimSettings.from_mapping({"price_path": None}, tmp_path).price_path is None
    off = FaultSettings()
    assert (off.lost_reply_rate, off.error_rate, off.timeout_rate, off.partial_fill_rate) == (0, 0, 0, 0)
    assert (off.ambiguous_executes, off.visibility_delay_ms, off.history_delay_ms) == (False, 0, 0)


def test_config_validates_the_new_keys_and_the_workspace_template_is_off(tmp_path: Path) -> None:
    data = template()
    cfg = config_from_mapping(data, path=tmp_path / "config.json")
    sim = SimSettings.from_mapping(cfg.broker.sim, cfg.base_dir)
    assert sim.price_path is None and sim.faults == FaultSettings()
    data["broker"]["sim"]["faults"].update(NEW_FAULTS)
    data["broker"]["sim"]["price_path"] = "path.csv"
    config_from_mapping(data, path=tmp_path / "config.json")
    for key, bad in [("lost_reply_rate", 1.5), ("ambiguous_executes", 1), ("visibility_delay_ms", -1)]:
        data["broker"]["sim"]["faults"][key] = bad
        with pytest.raises(ConfigError, match=f"broker.sim.faults.{key}"):
            config_from_mapping(data, path=tmp_path / "config.json")
        data["broker"]["sim"]["faults"][key] = NEW_FAULTS[key]


def test_constants_used_by_the_new_faults_exist() -> None:
    assert (C.TRADE_RETCODE_DONE_PARTIAL, C.TRADE_RETCODE_ERROR, C.TRADE_RETCODE_TIMEOUT) == (10010, 10011, 10012)
    assert C.RES_E_INTERNAL_FAIL_TIMEOUT == -10005
