"""Fixtures for the console tests: a real workspace (config, commands/, SQLite) without a monitor.

Pure panel tests write the database through :class:`fxnb.storage.Store` (the
writer API the monitor uses) with a clock the test controls, and check the
command files the panels drop. End-to-end tests start the real monitor.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_helpers import MIXED, BookWriter, FakeClock, account, beat, position

from fxnb.commands import CommandDir
from fxnb.config import Config, config_from_mapping
from fxnb.models import Position, Snapshot
from fxnb.storage import Store
from fxnb.widgets import Console
from fxnb.workspace import template


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    """A workspace config (EUR account, 1 s check interval) with its commands folder; no database yet."""
    data = template(sim_positions=0)
    data["profit_monitor"]["check_interval"] = 1.0
    data["broker"]["sim"]["currency"] = "EUR"
    path = tmp_path / "ws" / "config.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))
    config = config_from_mapping(data, path=path)
    CommandDir(config.paths.commands).ensure()
    return config


@pytest.fixture
def store(cfg: Config, clock: FakeClock) -> Iterator[Store]:
    s = Store.open(cfg.paths.database, clock=clock)
    yield s
    s.close()


@pytest.fixture
def console(cfg: Config, store: Store, clock: FakeClock) -> Iterator[Console]:
    c = Console(cfg, clock=clock, requested_by="test")
    yield c
    c.close()


@pytest.fixture
def book(store: Store, clock: FakeClock) -> BookWriter:
    """Record a book as the monitor would: positions, an account snapshot and a fresh heartbeat."""

    def write(positions: list[Position], *, currency: str = "EUR", heartbeat: bool = True) -> list[Position]:
        now = clock()
        store.sync_positions(Snapshot.of(account(currency), positions, now),
                             server_offset_s=0)
        store.append_snapshot(account(currency), positions, now)
        if heartbeat:
            beat(store, now)
        return positions

    return write


@pytest.fixture
def mixed_book(book: BookWriter) -> list[Position]:
    return book([position(t, p, s) for t, p, s in MIXED])
