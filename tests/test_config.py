"""Config validation: the committed file loads, and each mistake names its key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fxnb.config import config_from_mapping, load_config, sanitize
from fxnb.credentials import load_credentials
from fxnb.errors import ConfigError

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
