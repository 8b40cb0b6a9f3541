"""Shared pytest options. ``--mt5`` opts in to tests against a real terminal (Windows only)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--mt5",
        action="store_true",
        default=False,
        help="also run contract tests against a real MetaTrader 5 terminal (needs Windows and credentials)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--mt5"):
        return
    skip = pytest.mark.skip(reason="real-terminal test: opt in with --mt5")
    for item in items:
        if item.get_closest_marker("mt5") is not None:
            item.add_marker(skip)
