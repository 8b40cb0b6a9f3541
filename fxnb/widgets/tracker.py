"""Command tracker: every command from *queued* to its final state, with per-ticket outcomes.

States: ``queued`` (written by this console, not yet recorded by the monitor)
→ ``pending`` → ``processing`` → ``completed`` | ``partially_completed`` |
``failed`` | ``expired`` | ``rejected``. A command this console wrote that the
monitor never recorded before its expiry shows as ``unclaimed`` (the monitor
was not running). The reason of any failure, rejection or expiry is shown,
and the details table gives each ticket's retcode, message and realised P/L.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import traitlets as t

from fxnb.widgets._fmt import clock, esc, money, number, parse_time, pnl_class, price, short_id
from fxnb.widgets.base import Panel, set_if_changed
from fxnb.widgets.context import FINAL_STATUSES, Console, SentCommand

UNCLAIMED_GRACE_S = 5.0
LATEST = "__latest__"


def _describe_params(op_type: str, params: dict[str, Any]) -> str:
    bits = [op_type]
    if params.get("ticket") is not None:
        bits.append(str(params["ticket"]))
    if params.get("percent") is not None:
        bits.append(f"{params['percent']:g} %")
    if params.get("volume") is not None:
        bits.append(f"{params['volume']:g} lots")
    for key in ("side", "symbol"):
        if params.get(key):
            bits.append(str(params[key]))
    if params.get("magic") is not None:
        bits.append(f"magic {params['magic']}")
    if params.get("rule"):
        bits.append(f"rule {params['rule']}")
    return " ".join(bits)


def _local_row(item: SentCommand, now: float) -> dict[str, Any]:
    cmd = item.command
    params = {k: getattr(cmd, k) for k in ("ticket", "volume", "percent", "symbol", "magic")
              if getattr(cmd, k) is not None}
    if cmd.side is not None:
        params["side"] = cmd.side.value
    expires = cmd.expires_at.timestamp()
    unclaimed = now > expires + UNCLAIMED_GRACE_S
    return {
        "command_id": cmd.id,
        "operation_type": cmd.type.value,
        "status": "unclaimed" if unclaimed else "queued",
        "source": "operator",
        "requested_by": cmd.requested_by,
        "params": params,
        "created_at": cmd.timestamp.isoformat(),
        "finished_at": None,
        "expires_at": cmd.expires_at.isoformat(),
        "positions_closed": 0,
        "positions_failed": 0,
        "total_profit_closed": 0.0,
        "total_loss_closed": 0.0,
        "error_message": (f"the monitor never picked it up before it expired at {clock(expires)} UTC — "
                          "is the monitor running?") if unclaimed else None,
        "file_name": cmd.file_name,
        "local": True,
    }


class CommandTracker(Panel):
    """Recent commands (and, optionally, rule actions) with status, outcome and reason.

    Rows carry ``data-command-id``, ``data-status`` and ``data-type``; the
    details table's rows carry ``data-ticket`` and ``data-status``. CSS classes:
    ``tracker-table``, ``tracker-details``, ``tracker-source``, ``tracker-select``.
    """

    css_class = "fxnb-tracker"
    title_text = "Commands"

    rows = t.List(help="the rows shown, newest first (dicts like Reader.operations() rows)")
    limit = t.Int(15, help="rows shown")

    def __init__(self, console: Console, *, limit: int = 15, **kwargs: Any) -> None:
        super().__init__(console, **kwargs)
        self.limit = limit
        self.source = w.ToggleButtons(options=[("Operator commands", "operator"), ("All, with rule closes", "all")],
                                      value="operator", style={"button_width": "175px"})
        self.source.add_class("tracker-source")
        self.table = w.HTML(layout=w.Layout(overflow="auto"))
        self.table.add_class("tracker-table")
        self.select = w.Dropdown(options=[("latest command", LATEST)], value=LATEST, description="Details",
                                 layout=w.Layout(width="420px"))
        self.select.add_class("tracker-select")
        self.details = w.HTML(layout=w.Layout(overflow="auto"))
        self.details.add_class("tracker-details")
        self._compose(self.source, self.table, self.select, self.details)
        self.source.observe(lambda _c: self.refresh(), names="value")
        self.select.observe(lambda _c: self._render_details(), names="value")
        console.observe(lambda _c: self.refresh(), names="sent_count")  # show a new command at once
        self.refresh()

    # -- data --------------------------------------------------------------------------------

    def refresh(self) -> None:
        now = self.console.clock()
        ops = self.console.operations(200)
        if self.source.value == "operator":
            ops = [op for op in ops if op.get("source") == "operator"]
        recorded = {op.get("command_id") for op in ops} | {op.get("file_name") for op in ops}
        local = []
        for item in self.console.sent:
            if item.id in recorded or item.command.file_name in recorded:
                continue
            # not among the newest rows: recorded long ago, or (rejected files) recorded by file name only
            op = self.console.operation(item.id, item.command.file_name)
            local.append(op if op is not None else _local_row(item, now))
        merged = [*local, *ops]
        merged.sort(key=_created, reverse=True)
        self.rows = merged[: self.limit]
        self._render()

    def tick(self, now: float) -> None:
        # a queued command turns 'unclaimed' with the clock alone
        if any(r.get("local") and r["status"] == "queued" and now > _expiry(r) + UNCLAIMED_GRACE_S
               for r in self.rows):
            self.refresh()

    def row(self, command_id: str) -> dict[str, Any] | None:
        """The row shown for ``command_id`` (None if not among the rows)."""
        for r in self.rows:
            if r.get("command_id") == command_id:
                return r
        return None

    def status_of(self, command_id: str) -> str | None:
        r = self.row(command_id)
        return None if r is None else r["status"]

    # -- rendering ---------------------------------------------------------------------------

    def _render(self) -> None:
        set_if_changed(self.table, "value", self._table())
        options = [("latest command", LATEST),
                   *((f"{r['status']:<10} {_describe_params(r['operation_type'], r.get('params') or {})} "
                      f"· {_label(r)}", r.get("command_id") or f"row-{r.get('id')}")
                     for r in self.rows)]
        if list(self.select.options) != options:
            current = self.select.value
            with self.select.hold_trait_notifications():
                self.select.options = options
                self.select.value = current if any(v == current for _, v in options) else LATEST
        self._render_details()

    def _table(self) -> str:
        cur = self.console.currency
        head = ("<tr><th>Status</th><th>Command</th><th>What</th><th>By</th><th>Requested (UTC)</th>"
                "<th>Finished</th><th class='num'>Closed</th><th class='num'>Failed</th>"
                "<th class='num'>Realised</th><th>Reason / error</th></tr>")
        body = []
        for r in self.rows:
            status = r["status"]
            realised = float(r.get("total_profit_closed") or 0) - float(r.get("total_loss_closed") or 0)
            final = status in FINAL_STATUSES
            cid = r.get("command_id") or ""
            by = r.get("requested_by") or r.get("source") or ""
            body.append(
                f'<tr data-command-id="{esc(cid)}" data-status="{esc(status)}" '
                f'data-type="{esc(r["operation_type"])}" data-source="{esc(r.get("source"))}">'
                f'<td><span class="fxnb-badge {esc(status)}">{esc(status)}</span></td>'
                f'<td title="{esc(cid or r.get("file_name"))}"><code>{esc(_label(r))}</code></td>'
                f'<td>{esc(_describe_params(r["operation_type"], r.get("params") or {}))}</td>'
                f"<td>{esc(by)}</td><td>{esc(clock(r.get('created_at')))}</td>"
                f"<td>{esc(clock(r.get('finished_at')))}</td>"
                f'<td class="num">{r.get("positions_closed", 0) if final else ""}</td>'
                f'<td class="num">{r.get("positions_failed", 0) if final else ""}</td>'
                f'<td class="num {pnl_class(realised)}">'
                f'{esc(money(realised, cur, signed=True)) if final and r.get("positions_closed") else ""}</td>'
                f'<td class="wrap">{esc(r.get("error_message") or "")}</td></tr>'
            )
        if not body:
            body.append('<tr><td colspan="10" class="fxnb-muted">no commands yet</td></tr>')
        return f'<table class="fxnb-table tracker-commands"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'

    def _chosen(self) -> dict[str, Any] | None:
        if not self.rows:
            return None
        if self.select.value == LATEST:
            return self.rows[0]
        for r in self.rows:
            if (r.get("command_id") or f"row-{r.get('id')}") == self.select.value:
                return r
        return None

    def _render_details(self) -> None:
        set_if_changed(self.details, "value", self._details_html(self._chosen()))

    def _details_html(self, row: dict[str, Any] | None) -> str:
        if row is None:
            return ""
        cur = self.console.currency
        cid = row.get("command_id") or ""
        status = row["status"]
        facts = [f'<span class="fxnb-badge {esc(status)}">{esc(status)}</span>',
                 f"<code>{esc(cid)}</code>",
                 esc(_describe_params(row["operation_type"], row.get("params") or {})),
                 f"requested {esc(clock(row.get('created_at'), with_date=True))} UTC"]
        if row.get("claimed_at"):
            facts.append(f"claimed {esc(clock(row['claimed_at']))}")
        if row.get("finished_at"):
            facts.append(f"finished {esc(clock(row['finished_at']))}")
        targets = row.get("target_tickets")
        if targets is not None:
            facts.append(f"{len(targets)} target ticket(s) frozen at claim")
        head = f'<div data-command-id="{esc(cid)}" data-status="{esc(status)}">{" · ".join(facts)}</div>'
        reason = ""
        if row.get("error_message"):
            reason = f'<div class="fxnb-message-error">Reason: {esc(row["error_message"])}</div>'
        if row.get("local"):
            wait = ("waiting for the monitor to pick up "
                    f"<code>{esc(row.get('file_name'))}</code> (expires {esc(clock(row.get('expires_at')))} UTC)")
            return f"{head}{reason}<div class='fxnb-muted'>{wait if status == 'queued' else ''}</div>"
        results = self.console.results(row["id"]) if row.get("id") is not None else []
        if not results:
            note = "no per-ticket results yet" if status not in FINAL_STATUSES else "no ticket was touched"
            return f"{head}{reason}<div class='fxnb-muted'>{note}</div>"
        lines = []
        for res in results:
            lines.append(
                f'<tr data-ticket="{res["ticket"]}" data-status="{esc(res["status"])}" '
                f'data-retcode="{esc(res.get("retcode"))}">'
                f'<td class="num">{res["ticket"]}</td><td>{esc(res.get("symbol"))}</td>'
                f'<td>{_result_badge(res["status"])}</td>'
                f'<td class="num">{number(res.get("requested_volume"))}</td>'
                f'<td class="num">{number(res.get("closed_volume"))}</td>'
                f'<td class="num">{price(res.get("price")) if res.get("price") else "—"}</td>'
                f'<td class="num {pnl_class(res.get("profit"))}">{esc(money(res.get("profit"), cur, signed=True))}</td>'
                f'<td class="num">{esc(res.get("retcode") if res.get("retcode") is not None else "—")}</td>'
                f'<td class="wrap">{esc(res.get("message"))}</td><td class="num">{res.get("attempts", 0)}</td></tr>'
            )
        table = ("<table class='fxnb-table tracker-results'><thead><tr><th class='num'>Ticket</th><th>Symbol</th>"
                 "<th>Outcome</th><th class='num'>Requested</th><th class='num'>Closed</th><th class='num'>Price</th>"
                 "<th class='num'>Realised</th><th class='num'>Retcode</th><th>Terminal message</th>"
                 f"<th class='num'>Attempts</th></tr></thead><tbody>{''.join(lines)}</tbody></table>")
        return f"{head}{reason}{table}"


def _expiry(row: dict[str, Any]) -> float:
    dt = parse_time(row.get("expires_at"))
    return dt.timestamp() if dt else float("inf")


def _created(row: dict[str, Any]) -> float:
    dt = parse_time(row.get("created_at"))
    return dt.timestamp() if dt else 0.0


def _label(row: dict[str, Any]) -> str:
    """``#<row id> …<end of the command id>``: rule ids share their suffix, row ids never collide."""
    cid = row.get("command_id")
    tail = short_id(cid) if cid else (row.get("file_name") or "no id")
    return f"#{row['id']} {tail}" if row.get("id") is not None else tail


def _result_badge(status: str) -> str:
    css = {"closed": "completed", "partial": "completed", "failed": "failed"}.get(status, "")
    return f'<span class="fxnb-badge {css}">{esc(status)}</span>'


__all__ = ["CommandTracker"]
