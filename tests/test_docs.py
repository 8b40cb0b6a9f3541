"""Docs cannot rot silently: every CLI command, config key and command type is in the README."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fxnb.cli import cli
from fxnb.command_schema import CommandType
from fxnb.config import SCHEMA

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_cli_command_is_documented_and_has_help(name: str) -> None:
    assert f"fxnb {name}" in README
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0
    assert "--help" in result.output


def _keys(section: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in section.items():
        if prefix.startswith("broker.sim"):
            continue  # simulator settings are documented in fxnb/broker/sim
        out.append(k)
        if isinstance(v, dict):
            out += _keys(v, f"{prefix}.{k}" if prefix else k)
    return out


@pytest.mark.parametrize("key", sorted(set(_keys(SCHEMA))))
def test_every_config_key_is_documented(key: str) -> None:
    assert f"`{key}`" in README


@pytest.mark.parametrize("kind", [t.value for t in CommandType])
def test_every_command_type_is_documented(kind: str) -> None:
    assert f"`{kind}`" in README
