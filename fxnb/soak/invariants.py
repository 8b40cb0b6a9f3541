"""What must hold after any run, however hostile: read from the terminal's deal history and the database.

Used by the soak driver (``fxnb.soak.driver``) and the crash-safety tests. Every
check returns a :class:`Check` (name, ok, one line of detail) so that a run can
print them as a table; nothing here asserts or raises on a violation.

The terminal is the simulator's state file, opened by a separate
:class:`~fxnb.broker.sim.SimTerminal` with its background trader and injected
faults switched off (several processes may share the file). The database is
opened with the read-only :class:`~fxnb.storage.Reader`.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fxnb.commands import reason_file
from fxnb.config import Config

EPS = 1e-6
FINAL = ("completed", "partially_completed", "failed", "expired", "rejected")
DEAL_IN, DEAL_OUT, DEAL_INOUT, DEAL_OUT_BY = 0, 1, 2, 3
DEAL_BUY, DEAL_SELL = 0, 1


@dataclass(frozen=True)
class Check:
    """One invariant's verdict."""

    name: str
    ok: bool
    detail: str


@dataclass
class Ledger:
    """The terminal's truth: every trade deal, and the positions open now (ticket -> volume)."""

    deals: list[dict[str, Any]]
    open_positions: dict[int, float]
    magic: int

    @property
    def trade_deals(self) -> list[dict[str, Any]]:
        return [d for d in self.deals if d["type"] in (DEAL_BUY, DEAL_SELL)]

    def outs(self) -> list[dict[str, Any]]:
        return [d for d in self.trade_deals if d["entry"] in (DEAL_OUT, DEAL_INOUT, DEAL_OUT_BY)]

    def fxnb_outs(self) -> list[dict[str, Any]]:
        """OUT deals made by fxnb: the adapter writes ``broker.magic`` on every close request."""
        return [d for d in self.outs() if d["magic"] == self.magic]


@dataclass
class Figures:
    """Numbers worth printing next to the checks."""

    values: dict[str, Any] = field(default_factory=dict)

    def __setitem__(self, key: str, value: Any) -> None:
        self.values[key] = value


_DEAL_KEYS = ("ticket", "order", "time", "time_msc", "type", "entry", "magic", "position_id", "reason",
              "volume", "price", "profit", "symbol", "comment")


def read_terminal(cfg: Config) -> Ledger:
    """Open the simulator's state file beside the monitor (or after it stopped) and read everything."""
    from fxnb.broker.sim import FaultSettings, SimSettings, SimTerminal, TraderSettings

    settings = SimSettings.from_mapping(cfg.broker.sim, cfg.base_dir)
    settings = replace(settings, trader=TraderSettings(enabled=False), faults=FaultSettings())
    term = SimTerminal(settings)
    try:
        if not term.initialize():
            raise RuntimeError(f"cannot read the simulated terminal {settings.state_file}: {term.last_error()}"
                               " (is the control file still saying disconnected?)")
        deals = term.history_deals_get(0, 2**31 - 1)
        positions = term.positions_get()
        if deals is None or positions is None:
            raise RuntimeError(f"reading the simulated terminal failed: {term.last_error()}")
        rows = [{k: getattr(d, k) for k in _DEAL_KEYS} for d in deals]
        return Ledger(deals=rows, open_positions={int(p.ticket): round(float(p.volume), 8) for p in positions},
                      magic=int(cfg.broker.magic))
    finally:
        term.close()


def query(db_path: Path, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
    from fxnb.storage import Reader

    with Reader(db_path) as reader:
        return [dict(r) for r in reader.db.query(sql, list(params))]


# ----------------------------------------------------------------------------- the terminal alone
def check_no_overclose(ledger: Ledger, figures: Figures | None = None) -> list[Check]:
    """Per position: the OUT volumes never exceed the IN volume, and nothing goes OUT once it is flat.

    Partial closes legitimately make several OUT deals per position, so "closed twice"
    means more volume out than in, or an OUT deal after the position reached zero.
    """
    ins: dict[int, float] = defaultdict(float)
    outs: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for d in ledger.trade_deals:
        if d["entry"] == DEAL_IN:
            ins[d["position_id"]] += d["volume"]
        elif d["entry"] in (DEAL_OUT, DEAL_OUT_BY, DEAL_INOUT):
            outs[d["position_id"]].append(d)
    over, after_flat, orphan = [], [], []
    for pid, deals in outs.items():
        if pid not in ins:
            orphan.append(pid)
            continue
        done = 0.0
        for d in sorted(deals, key=lambda x: (x["time_msc"], x["ticket"])):
            if done >= ins[pid] - EPS:
                after_flat.append((pid, d["ticket"]))
            done += d["volume"]
        if done > ins[pid] + EPS:
            over.append((pid, round(done, 8), round(ins[pid], 8)))
    volumes_ok = [t for t, v in ledger.open_positions.items()
                  if abs(ins.get(t, 0.0) - sum(d["volume"] for d in outs.get(t, [])) - v) > EPS]
    per_pos = Counter({pid: len(ds) for pid, ds in outs.items()})
    if figures is not None:
        figures["positions opened"] = len(ins)
        figures["positions with OUT deals"] = len(outs)
        figures["OUT deals"] = sum(per_pos.values())
        figures["most OUT deals on one position"] = max(per_pos.values(), default=0)
    return [
        Check("no volume closed beyond what was open", not over and not orphan,
              f"{len(outs)} positions with OUT deals; over-closed: {over[:5] or 'none'}; "
              f"OUT without IN: {orphan[:5] or 'none'}"),
        Check("no OUT deal after a position was flat (nothing closed twice)", not after_flat,
              f"{sum(per_pos.values())} OUT deals, up to {max(per_pos.values(), default=0)} on one position; "
              f"after flat: {after_flat[:5] or 'none'}"),
        Check("open volumes = IN - OUT in the terminal", not volumes_ok,
              f"{len(ledger.open_positions)} open; mismatched: {volumes_ok[:5] or 'none'}"),
    ]


# ----------------------------------------------------------------------------- terminal vs database
def check_db_matches_terminal(db_path: Path, ledger: Ledger) -> Check:
    """After a poll on a frozen book: the same open tickets with the same volumes."""
    rows = query(db_path, "SELECT ticket, volume FROM position_tracking WHERE status = 'open'")
    db = {int(r["ticket"]): round(float(r["volume"]), 8) for r in rows}
    term = ledger.open_positions
    only_db, only_term = sorted(set(db) - set(term)), sorted(set(term) - set(db))
    vol = sorted(t for t in set(db) & set(term) if abs(db[t] - term[t]) > EPS)
    ok = not (only_db or only_term or vol)
    return Check("database = terminal: open tickets and volumes", ok,
                 f"{len(term)} open in the terminal, {len(db)} in the database; only in db {only_db[:5]}, "
                 f"only in terminal {only_term[:5]}, volume differs {vol[:5]}")


def check_audit_trail(db_path: Path, ledger: Ledger, figures: Figures | None = None) -> list[Check]:
    """Every OUT deal fxnb made has a ``close_results`` row, every recorded close happened, volumes agree."""
    results = query(
        db_path,
        "SELECT r.ticket, r.status, r.closed_volume, r.deals, o.source, o.operation_type "
        "FROM close_results r JOIN position_close_operations o ON o.id = r.operation_id "
        "WHERE r.status IN ('closed', 'partial')",
    )
    recorded_deals: set[int] = set()
    recorded_volume: dict[int, float] = defaultdict(float)
    without_deals: set[int] = set()
    for r in results:
        deals = json.loads(r["deals"] or "[]")
        recorded_deals.update(int(x) for x in deals)
        recorded_volume[int(r["ticket"])] += float(r["closed_volume"] or 0.0)
        if not deals:
            without_deals.add(int(r["ticket"]))
    outs = ledger.fxnb_outs()
    by_deal = [d for d in outs if d["ticket"] in recorded_deals]
    by_ticket = [d for d in outs if d["ticket"] not in recorded_deals and d["position_id"] in without_deals]
    missing = [d for d in outs if d["ticket"] not in recorded_deals and d["position_id"] not in without_deals]
    out_tickets = {d["ticket"] for d in ledger.outs()}
    phantom = sorted(recorded_deals - out_tickets)
    closed_by_fxnb = {d["position_id"] for d in outs}
    no_deal_at_all = sorted(t for t in without_deals if t not in closed_by_fxnb)
    term_volume: dict[int, float] = defaultdict(float)
    for d in outs:
        term_volume[d["position_id"]] += d["volume"]
    vol_diff = sorted(t for t in set(term_volume) | set(recorded_volume)
                      if t not in without_deals and abs(term_volume[t] - recorded_volume[t]) > EPS)
    foreign = [d for d in ledger.outs() if d["magic"] != ledger.magic]
    if figures is not None:
        figures["OUT deals by fxnb"] = len(outs)
        figures["  matched to close_results by deal ticket"] = len(by_deal)
        figures["  matched by ticket only (no deal recorded)"] = len(by_ticket)
        figures["OUT deals not by fxnb"] = len(foreign)
    return [
        Check("audit: every close the terminal recorded has a close_results row", not missing,
              f"{len(outs)} fxnb OUT deals: {len(by_deal)} by deal ticket, {len(by_ticket)} by ticket; "
              f"unrecorded: {[(d['position_id'], d['ticket']) for d in missing[:5]] or 'none'}"),
        Check("audit: every recorded close happened in the terminal", not phantom and not no_deal_at_all,
              f"recorded deals missing from history: {phantom[:5] or 'none'}; 'closed' results on positions "
              f"fxnb never closed: {no_deal_at_all[:5] or 'none'}"),
        Check("audit: recorded closed volume = OUT deal volume per position", not vol_diff,
              f"{len(term_volume)} positions; differing: {vol_diff[:5] or 'none'}"),
    ]


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def attribute_deals(db_path: Path, ledger: Ledger, server_offset_s: float) -> list[dict[str, Any]]:
    """Each fxnb OUT deal attributed to the close result that produced it, from the time line alone.

    Closes run one at a time on the monitor's broker thread and a result is recorded right after its
    close returns, so a deal belongs to the first result of the same ticket finished at or after it.
    Returns the results (closed/partial/failed) with ``executed`` (volume) and ``executed_deals``.
    """
    results = query(db_path, "SELECT r.*, o.command_id, o.operation_type, o.source FROM close_results r "
                              "JOIN position_close_operations o ON o.id = r.operation_id "
                              "WHERE r.status IN ('closed', 'partial', 'failed') ORDER BY r.finished_at, r.id")
    by_ticket: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        r["executed"], r["executed_deals"], r["_at"] = 0.0, [], _epoch(r["finished_at"])
        by_ticket[int(r["ticket"])].append(r)
    for d in ledger.fxnb_outs():
        at = d["time_msc"] / 1000.0 - server_offset_s
        owner = next((r for r in by_ticket.get(d["position_id"], []) if r["_at"] >= at - 0.002), None)
        if owner is not None:
            owner["executed"] = round(owner["executed"] + d["volume"], 8)
            owner["executed_deals"].append(d["ticket"])
    return results


def check_close_accounting(db_path: Path, ledger: Ledger, server_offset_s: float,
                           figures: Figures | None = None) -> list[Check]:
    """Per close: it never took more than it asked for, and what it recorded is what the terminal did."""
    results = attribute_deals(db_path, ledger, server_offset_s)
    over = [r for r in results if r["requested_volume"] > 0 and r["executed"] > r["requested_volume"] + EPS]
    wrong = [r for r in results if abs(r["executed"] - (r["closed_volume"] or 0.0)) > EPS
             and not (r["status"] == "closed" and not json.loads(r["deals"] or "[]") and r["closed_volume"] == 0)]
    if figures is not None:
        figures["close results checked against the deals they made"] = len(results)

    def show(rs: list[dict[str, Any]]) -> str:
        return str([(r["ticket"], r["operation_type"], r["status"], r["requested_volume"], r["closed_volume"],
                     r["executed"]) for r in rs[:3]] or "none")

    return [
        Check("no close took more than it asked for (deals per close <= requested volume)", not over,
              f"{len(results)} closes; over (ticket, type, status, requested, recorded, executed): {show(over)}"),
        Check("each close recorded what the terminal executed (volume)", not wrong,
              f"{len(results)} closes; differing (ticket, type, status, requested, recorded, executed): "
              f"{show(wrong)}"),
    ]


def check_close_reasons(db_path: Path, ledger: Ledger) -> Check:
    """A position whose last OUT deal is fxnb's is closed 'command'/'rule' in the database, others 'external'."""
    last_out: dict[int, dict[str, Any]] = {}
    for d in sorted(ledger.outs(), key=lambda x: (x["time_msc"], x["ticket"])):
        last_out[d["position_id"]] = d
    rows = query(db_path, "SELECT ticket, close_reason FROM position_tracking WHERE status = 'closed'")
    wrong = []
    for r in rows:
        d = last_out.get(int(r["ticket"]))
        if d is None:
            continue
        by_fxnb = d["magic"] == ledger.magic
        if by_fxnb == (r["close_reason"] == "external"):
            wrong.append((r["ticket"], r["close_reason"]))
    return Check("close_reason says who closed it (fxnb: command/rule, else external)", not wrong,
                 f"{len(rows)} closed positions tracked; mislabelled {len(wrong)}: {wrong[:4] or 'none'}")


def check_partial_rule_once(db_path: Path) -> Check:
    rows = query(
        db_path,
        "SELECT r.ticket, COUNT(*) AS n FROM close_results r JOIN position_close_operations o "
        "ON o.id = r.operation_id WHERE o.source = 'rule' AND o.operation_type = 'partial' "
        "AND r.status IN ('closed', 'partial') GROUP BY r.ticket HAVING n > 1",
    )
    total = query(db_path, "SELECT COUNT(*) AS n FROM position_close_operations WHERE source = 'rule' "
                            "AND operation_type = 'partial' AND status = 'completed'")[0]["n"]
    return Check("partial rule fired at most once per position", not rows,
                 f"{total} partial rule closes; repeated on: {[r['ticket'] for r in rows[:5]] or 'none'}")


# ----------------------------------------------------------------------------- commands and files
def operations(db_path: Path) -> list[dict[str, Any]]:
    return query(db_path, "SELECT * FROM position_close_operations ORDER BY id")


def check_commands_final(db_path: Path, command_ids: Iterable[str], figures: Figures | None = None) -> list[Check]:
    ops = operations(db_path)
    by_id = {o["command_id"]: o for o in ops if o["command_id"] is not None}
    ids = list(dict.fromkeys(str(c) for c in command_ids))
    missing = [c for c in ids if c not in by_id]
    not_final = [c for c in ids if c in by_id and by_id[c]["status"] not in FINAL]
    statuses = Counter(by_id[c]["status"] for c in ids if c in by_id)
    unfinished = [o["command_id"] for o in ops if o["status"] not in FINAL]
    inconsistent = [o["command_id"] for o in ops if (o["status"] in FINAL) != (o["finished_at"] is not None)]
    if figures is not None:
        figures["operator commands"] = len(ids)
        figures["  by final status"] = dict(sorted(statuses.items()))
        figures["operations recorded (incl. rules, rejects)"] = len(ops)
    return [
        Check("every command reached a final state", not missing and not not_final,
              f"{len(ids)} commands: {dict(sorted(statuses.items()))}; never recorded: {missing[:5] or 'none'}; "
              f"not final: {not_final[:5] or 'none'}"),
        Check("no operation left pending/processing; final <=> finished_at", not unfinished and not inconsistent,
              f"{len(ops)} operations; unfinished {unfinished[:5] or 'none'}; "
              f"inconsistent {inconsistent[:5] or 'none'}"),
    ]


def check_files_accounted(commands_dir: Path, *, expect_rejected: Mapping[str, bool] | None = None) -> Check:
    """Nothing pending, nothing in processing/, every file in errors/ has its ``.error.json``.

    ``expect_rejected`` maps file names we wrote to whether they should end in ``errors/``.
    """
    pending = sorted(p.name for p in commands_dir.glob("cmd_*.json"))
    processing = sorted(p.name for p in (commands_dir / "processing").iterdir())
    errors = commands_dir / "errors"
    bad = [p for p in errors.iterdir() if not p.name.endswith(".error.json")]
    lonely = sorted(p.name for p in bad if not reason_file(p).exists())
    wrong = []
    for name, rejected in (expect_rejected or {}).items():
        if (errors / name).exists() != rejected:
            wrong.append(name)
    ok = not (pending or processing or lonely or wrong)
    return Check("command files accounted for (none pending or processing; errors/ has reasons)", ok,
                 f"pending {pending[:3] or 'none'}; processing {processing[:3] or 'none'}; {len(bad)} in errors/, "
                 f"without .error.json {lonely[:3] or 'none'}; misplaced {wrong[:3] or 'none'}")


def render_table(checks: Iterable[Check], figures: Mapping[str, Any] | None = None, *,
                 known: Mapping[str, str] | None = None) -> str:
    """The checks as a table (FAIL, or KNOWN for a failure listed in ``known``), then the figures."""
    checks = list(checks)
    known = known or {}
    width = max((len(c.name) for c in checks), default=10)
    lines = [f"{'invariant':<{width}}  ok     detail", f"{'-' * width}  -----  {'-' * 40}"]
    for c in checks:
        verdict = "PASS" if c.ok else ("KNOWN" if c.name in known else "FAIL")
        lines.append(f"{c.name:<{width}}  {verdict:<5}  {c.detail}")
    bad_known = [c for c in checks if not c.ok and c.name in known]
    if bad_known:
        lines += ["", "KNOWN = a pinned bug, not counted as a failure:"]
        lines += [f"  {c.name}: {known[c.name]}" for c in bad_known]
    if figures:
        lines += ["", "figures:"]
        fw = max(len(k) for k in figures)
        lines += [f"  {k:<{fw}}  {v}" for k, v in figures.items()]
    return "\n".join(lines)


__all__ = [
    "Check", "Figures", "Ledger", "check_audit_trail", "check_close_reasons", "check_commands_final",
    "check_db_matches_terminal", "check_files_accounted", "check_no_overclose", "check_partial_rule_once",
    "operations", "query", "read_terminal", "render_table",
]
