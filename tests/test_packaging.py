"""Packaging: environment.yml and pyproject.toml must declare the same dependencies."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~;\s\[]", req.strip().strip("\"'"), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {_name(d): d for d in deps}


def _environment() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (ROOT / "environment.yml").read_text().splitlines():
        m = re.match(r"^\s*-\s+(.+?)\s*$", line)
        if not m or m.group(1).startswith(("-e", "pip:")) or m.group(1) in {"pip", "conda-forge"}:
            continue
        out[_name(m.group(1))] = m.group(1).strip("\"")
    out.pop("python", None)
    return out


def test_environment_and_pyproject_list_the_same_packages() -> None:
    assert sorted(_pyproject()) == sorted(_environment())


def test_metatrader5_is_windows_only_everywhere() -> None:
    assert 'sys_platform == "win32"' in _pyproject()["metatrader5"]
    assert "sys_platform == 'win32'" in _environment()["metatrader5"]


def test_the_card_packages_are_declared() -> None:
    card = {"metatrader5", "jupyterlab", "ipywidgets", "voila", "tornado", "sqlite-utils", "apscheduler", "nbval"}
    assert card <= set(_pyproject())


def test_nothing_imports_metatrader5_at_import_time() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "fxnb").rglob("*.py")
        if re.search(r"^(import MetaTrader5|from MetaTrader5)", p.read_text(), re.M)
    ]
    assert offenders == []


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme
    assert "make test" in ci
