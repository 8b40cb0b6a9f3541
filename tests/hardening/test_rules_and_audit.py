"""Two things the soak surfaced, reproduced on a frozen book so they are deterministic.

* A market that is closed (or Algo Trading off) makes every live rule close fail; the rule must close
  the position once the market opens, and should not write a failed operation on every poll meanwhile.
* A ``partial`` command that closes the whole remaining volume closes the position: the database must
  say fxnb closed it (``close_reason='command'``), not that it vanished on its own (``'external'``)
  (found by the soak; fixed in 2fd9e437, kept as a regression test).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _hardening_util import op_status, query, seed_doc, wait_until, write_command

from fxnb.broker.sim import write_control
from fxnb.config import Config
from fxnb.soak import invariants as inv
from fxnb.testing import FINAL, MonitorProcess, make_workspace

# Frozen EURUSD bid 1.08500, balance 10,000: +300 (3 %) and +500 (5 %) with a full close at 2 %.
WINNERS = [
    {"symbol": "EURUSD", "type": "buy", "volume": 1.0, "price_open": 1.08200},
    {"symbol": "EURUSD", "type": "buy", "volume": 0.5, "price_open": 1.07500},
]
CLOSED_FOR_S = 5.0
POLL_S = 0.2


@dataclass
class ClosedMarketRun:
    attempts_while_closed: Counter[int]
    polls_while_closed: int
    ops_after: list[dict[str, Any]]
    open_after: dict[int, float]
    events: int


@pytest.fixture(scope="module")
def closed_market_run(tmp_path_factory: pytest.TempPathFactory) -> ClosedMarketRun:
    cfg = make_workspace(tmp_path_factory.mktemp("closed") / "ws", sim_positions=0, check_interval=POLL_S,
                         overrides={"profit_monitor": {"rules_mode": "live", "min_profit_percent": 2.0,
                                                       "partial_close_enabled": False},
                                    "broker": {"sim": {"positions": {"count": 0, "list": WINNERS}}}})
    state = cfg.base_dir / cfg.broker.sim["state_file"]
    write_control(state, market_closed=["EURUSD"])
    with MonitorProcess(cfg):
        hb0 = wait_until(lambda: (query(cfg, "SELECT * FROM monitor_heartbeat") or [None])[0], 10, "a heartbeat")
        first = _poll_count(cfg)
        wait_until(lambda: _poll_count(cfg) - first >= CLOSED_FOR_S / POLL_S, 30, "polls while the market is closed")
        polls = _poll_count(cfg) - first
        rows = query(cfg, "SELECT r.ticket FROM close_results r JOIN position_close_operations o "
                          "ON o.id = r.operation_id WHERE o.source = 'rule' AND r.retcode = 10018")
        write_control(state, market_closed=None)
        wait_until(lambda: not inv.read_terminal(cfg).open_positions, 20, "the rules to close after the open")
        wait_until(lambda: all(o["status"] in FINAL for o in query(cfg, "SELECT status FROM "
                                                                     "position_close_operations")), 10, "final ops")
        ops = query(cfg, "SELECT * FROM position_close_operations WHERE source = 'rule' ORDER BY id")
        events = query(cfg, "SELECT COUNT(*) AS n FROM monitor_events")[0]["n"]
    assert hb0 is not None
    return ClosedMarketRun(Counter(r["ticket"] for r in rows), polls, ops, inv.read_terminal(cfg).open_positions,
                           events)


def _poll_count(cfg: Config) -> int:
    return query(cfg, "SELECT COUNT(*) AS n FROM profit_monitoring")[0]["n"]


def test_rule_closes_once_the_market_opens(closed_market_run: ClosedMarketRun) -> None:
    run = closed_market_run
    assert run.open_after == {}
    completed = [o for o in run.ops_after if o["status"] == "completed"]
    assert len(completed) == 2  # each winner closed exactly once, by the rule, after the open
    assert sum(run.attempts_while_closed.values()) >= 2  # and they were refused while closed


def test_rule_does_not_hammer_a_closed_market(closed_market_run: ClosedMarketRun) -> None:
    run = closed_market_run
    print(f"{run.polls_while_closed} polls while closed: failed rule attempts per ticket "
          f"{dict(run.attempts_while_closed)}")
    assert max(run.attempts_while_closed.values()) <= 3, dict(run.attempts_while_closed)


@pytest.mark.parametrize("how", [{"percent": 100}, {"volume": 5.0}])
def test_partial_command_closing_everything_is_recorded_as_command(how: dict[str, Any], tmp_path: Path) -> None:
    cfg = make_workspace(tmp_path / "ws", sim_positions=2, overrides={"profit_monitor": {"rules_mode": "off"}})
    with MonitorProcess(cfg):
        wait_until(lambda: len(query(cfg, "SELECT * FROM position_tracking")) == 2, 20, "the first poll")
        ticket = min(r["ticket"] for r in query(cfg, "SELECT ticket FROM position_tracking"))
        write_command(cfg, "cmd_p.json", seed_doc("p", "partial", ticket=ticket, **how))
        wait_until(lambda: op_status(cfg, "p") in FINAL, 20, "the partial command")
        assert op_status(cfg, "p") == "completed"
        assert ticket not in inv.read_terminal(cfg).open_positions  # the whole position is gone
        wait_until(lambda: query(cfg, "SELECT status FROM position_tracking WHERE ticket = ?",
                                 [ticket])[0]["status"] == "closed", 20, "the database to show it closed")
    (row,) = query(cfg, "SELECT close_reason FROM position_tracking WHERE ticket = ?", [ticket])
    assert row["close_reason"] == "command"
