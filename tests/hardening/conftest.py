"""Hardening tests: the long variants are marked ``slow`` and run only when ``-m`` selects ``slow``."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="long variant: run with `pytest -m slow tests/hardening`")
    for item in items:
        if HERE in item.path.parents and item.get_closest_marker("slow") is not None:
            item.add_marker(skip)
