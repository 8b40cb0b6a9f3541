"""The soak's options: ``--soak-minutes`` runs the long soak (``make soak``: ``-m slow --soak-minutes=60``).

The long soak is marked ``slow`` and skipped unless ``--soak-minutes`` is given or
``-m`` selects ``slow``. The short soak always runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
DEFAULT_LONG_MINUTES = 60.0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak-minutes", type=float, default=None,
                     help="run the long soak for this many minutes (make soak: 60)")


def soak_minutes(config: pytest.Config) -> float | None:
    """The requested long-soak length, or None (this conftest is not loaded early when tests/soak is
    not on the command line, so the option may not exist)."""
    try:
        return config.getoption("--soak-minutes")
    except ValueError:
        return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    minutes = soak_minutes(config)
    asked = minutes is not None or "slow" in (config.option.markexpr or "")
    for item in items:
        if HERE not in item.path.parents or item.get_closest_marker("slow") is None:
            continue
        if not asked:
            item.add_marker(pytest.mark.skip(reason="hour-long soak: run `make soak` (-m slow --soak-minutes=60)"))
        else:  # the suite's 300 s timeout would cut the hour short
            item.add_marker(pytest.mark.timeout((minutes or DEFAULT_LONG_MINUTES) * 90 + 900))


@pytest.fixture
def long_soak_minutes(request: pytest.FixtureRequest) -> float:
    return soak_minutes(request.config) or DEFAULT_LONG_MINUTES
