"""Config validation: the committed file loads, and each mistake names its key."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from fxnb.config import config_from_mapping, load_config, sanitize
from fxnb.credentials import load_credentials
from fxnb.errors import ConfigError
from fxnb.monitor.lock import InstanceLock

ROOT = Path(__file__).resolve().parents[1]


def test_committed_config_is_valid() -> None:
    cfg = load_config(ROOT / "config.json")
    assert cfg.profit_monitor.check_interval == 30
    assert cfg.profit_monitor.min_profit_percent == 2.0
    assert cfg.profit_monitor.partial_close_enabled is True
    assert cfg.profit_monitor.partial_close_threshold == 5.0
    assert cfg.profit_monitor.partial_close_percent == 50
    assert cfg.broker.kind == "sim"
    assert cfg.paths.database == ROOT / "fxnb.db"
    assert cfg.http.loopback


def test_unreachable_partial_rule_is_warned() -> None:
    cfg = load_config(ROOT / "config.json")
    assert any("partial close can never fire" in w for w in cfg.warnings)
    ok = config_from_mapping(
        {"profit_monitor": {"min_profit_percent": 5.0, "partial_close_threshold": 2.0}}, path=Path("c.json")
    )
    assert ok.warnings == ()


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"profit_monitor": {"check_interval": "30"}}, "profit_monitor.check_interval: expected a number"),
        ({"profit_monitor": {"check_interval": True}}, "profit_monitor.check_interval: expected a number"),
        ({"profit_monitor": {"check_interval": 0}}, "profit_monitor.check_interval: 0 is out of range"),
        ({"profit_monitor": {"partial_close_percent": 150}}, "profit_monitor.partial_close_percent: 150"),
        ({"profit_monitor": {"rules_mode": "yolo"}}, "profit_monitor.rules_mode: 'yolo' is not one of"),
        ({"profit_monitor": {"min_profit_pct": 2}}, "profit_monitor.min_profit_pct: unknown key"),
        ({"brokr": {}}, "brokr: unknown key"),
        ({"broker": {"kind": "mt4"}}, "broker.kind: 'mt4' is not one of sim, mt5, mt5linux"),
        ({"broker": {"password": "hunter2"}}, "broker.password: MT5 credentials do not belong in config.json"),
        ({"broker": {"comment": "x" * 40}}, "broker.comment: longer than 26"),
        ({"broker": {"sim": {"faults": {"requote_rate": 2}}}}, "broker.sim.faults.requote_rate: 2 is out of range"),
        ({"broker": {"sim": {"positions": {"list": [{"volume": 1}]}}}}, "broker.sim.positions.list[0]"),
        ({"http": {"host": "0.0.0.0"}}, "http.host: '0.0.0.0' is not a loopback address"),
        ({"commands": {"max_file_bytes": 1.5}}, "commands.max_file_bytes: expected a whole number"),
        ([], "config: expected a JSON object"),
    ],
)
def test_mistakes_name_the_key(config: object, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_mapping(config, path=Path("config.json"))
    assert needle in str(err.value)


def test_missing_file_and_bad_json(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.json")
    bad = tmp_path / "config.json"
    bad.write_text('{"profit_monitor": {"check_interval": 30,}}')
    with pytest.raises(ConfigError, match=r"invalid JSON at line 1 column \d+"):
        load_config(bad)


def test_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"paths": {"database": "data/x.db"}}))
    cfg = load_config(tmp_path / "config.json")
    assert cfg.paths.database == tmp_path / "data" / "x.db"
    assert cfg.paths.commands == tmp_path / "commands"


def test_non_loopback_http_needs_a_token_env() -> None:
    cfg = config_from_mapping({"http": {"host": "0.0.0.0", "token_env": "FXNB_HTTP_TOKEN"}}, path=Path("c.json"))
    assert not cfg.http.loopback


def test_credentials_from_env_are_redacted(tmp_path: Path) -> None:
    env = {"FXNB_MT5_LOGIN": "5012345", "FXNB_MT5_PASSWORD": "s3cret-pw", "FXNB_MT5_SERVER": "Demo-Server",
           "FXNB_SECRETS_FILE": str(tmp_path / "none.json")}
    creds = load_credentials(env)
    assert creds.login == 5012345 and creds.password == "s3cret-pw"
    assert "s3cret-pw" not in repr(creds)
    assert creds.redacted()["password"] == "***"
    assert sanitize({"a": {"password": "x", "n": 1}}) == {"a": {"password": "***", "n": 1}}


def test_secrets_file_inside_repo_is_refused(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"login": 1, "password": "p", "server": "s"}))
    with pytest.raises(ConfigError, match="inside the repository"):
        load_credentials({"FXNB_SECRETS_FILE": str(secrets)}, repo_root=tmp_path)
    creds = load_credentials({"FXNB_SECRETS_FILE": str(secrets)}, repo_root=tmp_path / "elsewhere")
    assert creds.login == 1


def test_bad_login_is_named() -> None:
    with pytest.raises(ConfigError, match="FXNB_MT5_LOGIN: the MT5 login must be a number"):
        load_credentials({"FXNB_MT5_LOGIN": "abc", "FXNB_SECRETS_FILE": "/nonexistent"})


# --------------------------------------------------------------------------- simulator lists
def _sim(positions: object = None, market_closed: object = None) -> dict[str, object]:
    sim: dict[str, object] = {}
    if positions is not None:
        sim["positions"] = {"list": positions}
    if market_closed is not None:
        sim["faults"] = {"market_closed": market_closed}
    return {"broker": {"sim": sim}}


def test_valid_simulator_lists_load() -> None:
    book = [{"symbol": "EURUSD", "type": "buy", "volume": 1.0, "price_open": 1.082},
            {"symbol": "USDJPY", "type": "sell", "volume": 0.5, "price_open": None, "magic": 7, "comment": "seed",
             "sl": 0, "tp": 140.0},
            {"symbol": "USDCHF", "type": 1, "volume": 0.05}]
    closed = ["*", "XAUUSD", {"symbol": "GBPUSD", "from": "22:00", "to": "23:00"}, {"symbol": "EURUSD"},
              {"from": "23:30", "to": "24:00"}]
    cfg = config_from_mapping(_sim(book, closed), path=Path("c.json"))
    assert cfg.broker.sim["positions"]["list"] == book
    assert cfg.broker.sim["faults"]["market_closed"] == closed


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        (_sim({"symbol": "EURUSD"}), "broker.sim.positions.list: expected a list"),
        (_sim([{"symbol": "NOPE", "volume": 1}]), "broker.sim.positions.list[0].symbol: 'NOPE' is not a simulator"),
        (_sim([{"symbol": "eurusd", "volume": 1}]), "broker.sim.positions.list[0].symbol: 'eurusd'"),
        (_sim([{"symbol": "*", "volume": 1}]), "broker.sim.positions.list[0].symbol: '*'"),
        (_sim([{"symbol": 5, "volume": 1}]), "broker.sim.positions.list[0].symbol: 5"),
        (_sim([{"symbol": "EURUSD", "volume": 0}]), "broker.sim.positions.list[0].volume: 0 is out of range"),
        (_sim([{"symbol": "EURUSD", "volume": "1"}]), "broker.sim.positions.list[0].volume: expected a number"),
        (_sim([{"symbol": "EURUSD", "volume": 1, "type": "long"}]), "broker.sim.positions.list[0].type"),
        (_sim([{"symbol": "EURUSD", "volume": 1, "type": True}]), "broker.sim.positions.list[0].type"),
        (_sim([{"symbol": "EURUSD", "volume": 1, "price": 1.1}]), "broker.sim.positions.list[0].price: unknown"),
        (_sim([{"symbol": "EURUSD", "volume": 1, "price_open": -1}]), "broker.sim.positions.list[0].price_open"),
        (_sim([{"symbol": "EURUSD", "volume": 1, "magic": 1.5}]), "broker.sim.positions.list[0].magic"),
        (_sim([{"symbol": "EURUSD", "volume": 1, "sl": None}]), "broker.sim.positions.list[0].sl"),
        (_sim([{"symbol": "EURUSD", "volume": 1, "comment": "é"}]), "broker.sim.positions.list[0].comment"),
        (_sim(market_closed="EURUSD"), "broker.sim.faults.market_closed: expected a list"),
        (_sim(market_closed=[5]), "broker.sim.faults.market_closed[0]: expected a symbol name"),
        (_sim(market_closed=["NOPE"]), "broker.sim.faults.market_closed[0]: 'NOPE' is not a simulator symbol"),
        (_sim(market_closed=[{"symbol": "NOPE"}]), "broker.sim.faults.market_closed[0].symbol: 'NOPE'"),
        (_sim(market_closed=[{"symbol": "EURUSD", "from": "22:00"}]),
         "broker.sim.faults.market_closed[0]: give both from and to"),
        (_sim(market_closed=[{"from": "25:00", "to": "01:00"}]), "broker.sim.faults.market_closed[0].from"),
        (_sim(market_closed=[{"from": "22:00", "to": 23}]), "broker.sim.faults.market_closed[0].to"),
        (_sim(market_closed=[{"symbol": "EURUSD", "until": "22:00"}]),
         "broker.sim.faults.market_closed[0].until: unknown key"),
    ],
)
def test_simulator_list_mistakes_name_the_entry(config: object, needle: str) -> None:
    """Unchecked, these surfaced only when the simulator started: a KeyError or TypeError, no key named."""
    with pytest.raises(ConfigError) as err:
        config_from_mapping(config, path=Path("config.json"))
    assert needle in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------------------- the database folder
def test_missing_database_folder_is_created_owner_only(tmp_path: Path) -> None:
    lock = InstanceLock(tmp_path / "data" / "db" / ".fxnb-monitor.lock")
    with lock:
        assert (tmp_path / "data" / "db").is_dir()
    assert stat.S_IMODE((tmp_path / "data" / "db").stat().st_mode) == 0o700


def test_unusable_database_folder_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    for folder in (Path("/proc/no-such-dir"), tmp_path / "file"):
        with pytest.raises(ConfigError, match=r"^paths\.database: cannot use the folder ") as err:
            InstanceLock(folder / ".fxnb-monitor.lock").acquire()
        assert str(folder) in str(err.value)
