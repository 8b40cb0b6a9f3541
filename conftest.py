"""Root pytest hooks for the runbooks (``pytest --nbval-lax --nbval-current-env notebooks/``).

nbval starts a notebook's kernel while setting up the notebook collector:
before any fixture runs, and the kernel inherits the environment as it is at
that moment. So the workspace and its monitor are prepared by hooks, not
fixtures:

* ``pytest_sessionstart`` creates a temporary workspace on the simulated
  terminal (frozen prices), starts ``fxnb monitor`` on it and sets
  ``FXNB_CONFIG``: any kernel started from now on finds a live workspace;
* ``pytest_runtest_setup`` (first item of each notebook, before its kernel
  starts) gives every runbook a fresh workspace of its own, so that
  ``emergency_flatten`` cannot leave ``quickstart`` an empty book;
* ``pytest_sessionfinish`` stops the monitors and removes the workspaces.

Nothing happens unless notebooks are being run with nbval: a plain
``pytest tests/`` never starts a monitor. Set ``FXNB_KEEP_RUNBOOK_WORKSPACES=1``
to keep the workspaces (and the monitors' logs) for inspection.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

_STATE = pytest.StashKey[dict[str, Any]]()


def _nbval_active(config: pytest.Config) -> bool:
    return bool(config.getoption("nbval", default=False) or config.getoption("nbval_lax", default=False))


def _start(root: Path, name: str) -> tuple[Any, Any]:
    from fxnb.testing import MonitorProcess, make_workspace

    cfg = make_workspace(root / name, sim_positions=12, sim_frozen=True, check_interval=0.5)
    monitor = MonitorProcess(cfg).start()
    os.environ["FXNB_CONFIG"] = str(cfg.path)
    return cfg, monitor


def pytest_sessionstart(session: pytest.Session) -> None:
    if not _nbval_active(session.config):
        return
    root = Path(tempfile.mkdtemp(prefix="fxnb-runbooks-"))
    state: dict[str, Any] = {"root": root, "monitors": [], "current": None, "claimed": False,
                             "old_env": os.environ.get("FXNB_CONFIG")}
    cfg, monitor = _start(root, "session")
    state["monitors"].append(monitor)
    session.config.stash[_STATE] = state


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    state = item.config.stash.get(_STATE, None)
    path = Path(str(getattr(item, "path", item.fspath)))
    if state is None or path.suffix != ".ipynb" or state["current"] == path:
        return
    state["current"] = path
    if not state["claimed"]:
        state["claimed"] = True  # the first notebook gets the untouched session workspace
        return
    for monitor in state["monitors"]:
        monitor.stop()
    cfg, monitor = _start(state["root"], path.stem)
    state["monitors"].append(monitor)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(_STATE, None)
    if state is None:
        return
    for monitor in state["monitors"]:
        monitor.stop()
    if state["old_env"] is None:
        os.environ.pop("FXNB_CONFIG", None)
    else:
        os.environ["FXNB_CONFIG"] = state["old_env"]
    if os.environ.get("FXNB_KEEP_RUNBOOK_WORKSPACES"):
        print(f"\nrunbook workspaces kept in {state['root']}")
    else:
        shutil.rmtree(state["root"], ignore_errors=True)
