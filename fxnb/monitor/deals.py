"""Reading a position's deals (as ``Broker.deals_for_position`` gives them): exits, their P/L, a close they make.

Pure functions: reconciliation after a crash and the late settlement of a lost answer both record
closes from what the terminal's deal history says.
"""

from __future__ import annotations

from typing import Any

from fxnb.models import CloseResult, CloseStatus

EXIT_ENTRIES = frozenset({1, 2, 3})  # DEAL_ENTRY_OUT, _INOUT, _OUT_BY


def exits(deals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The exit deals among a position's deals, oldest first."""
    return sorted((d for d in deals if int(d["entry"]) in EXIT_ENTRIES), key=lambda d: (d["time_msc"], d["ticket"]))


def by_magic(deals: list[dict[str, Any]], magic: int) -> list[dict[str, Any]]:
    """The deals an EA with ``magic`` made (fxnb's own, given its magic)."""
    return [d for d in deals if int(d["magic"]) == magic]


def deal_net(d: dict[str, Any]) -> float:
    """A deal's (as ``Broker.deals_for_position`` gives it) part of realised P/L: profit, swap, commission, fee."""
    return float(d["profit"]) + float(d["swap"]) + float(d["commission"]) + float(d["fee"])


def from_deals(ticket: int, deals: list[dict[str, Any]], message: str, requested: float = 0.0) -> CloseResult:
    """A close found in the deal history, recorded with what the deals say."""
    volume = round(sum(float(d["volume"]) for d in deals), 8)
    price = sum(float(d["volume"]) * float(d["price"]) for d in deals) / volume if volume > 0 else 0.0
    profit = round(sum(deal_net(d) for d in deals), 2)
    return CloseResult(ticket=ticket, status=CloseStatus.CLOSED, requested_volume=requested or volume,
                       closed_volume=volume, price=round(price, 8), profit=profit, message=message,
                       deals=tuple(int(d["ticket"]) for d in deals), symbol=str(deals[0]["symbol"]))


def result_of(row: dict[str, Any]) -> CloseResult:
    """A recorded ``close_results`` row as the ``CloseResult`` an operation's final status is computed from."""
    return CloseResult(ticket=int(row["ticket"]), status=CloseStatus(row["status"]),
                       requested_volume=float(row.get("requested_volume") or 0))
