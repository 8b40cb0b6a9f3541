"""Pieces of a trade request that must be right every time: the comment, the filling mode, volumes."""

from __future__ import annotations

import re

from fxnb.broker import retcodes as rc

EPS = 1e-9
COMMENT_MAX = 26
_COMMENT_BAD = re.compile(r"[^A-Za-z0-9 _.\-]")

#: ``TradeDeal`` fields in the package's order; ``deals_for_position`` returns dicts with these keys.
DEAL_FIELDS = (
    "ticket", "order", "time", "time_msc", "type", "entry", "magic", "position_id", "reason", "volume",
    "price", "commission", "swap", "profit", "fee", "symbol", "comment", "external_id",
)



def sanitize_comment(text: str | None, default: str = "fxnb") -> str:
    """A request comment the terminal will accept: ASCII ``[A-Za-z0-9 _.-]``, at most 26 characters.

    Longer or exotic comments make ``order_send`` return ``None`` with
    ``(-2, 'Invalid "comment" argument')`` on some builds (``mt5_api.md`` §5.8).
    """
    cleaned = _COMMENT_BAD.sub("_", text or "").strip()[:COMMENT_MAX].strip()
    if not cleaned and text != default:
        return sanitize_comment(default, default="")
    return cleaned


def filling_candidates(mask: int, *, fok: int, ioc: int, ret: int, preferred: int | None = None) -> list[int]:
    """``ORDER_FILLING_*`` values to try, best first, for a ``SYMBOL_FILLING_*`` bitmask.

    FOK if bit 1 is set, else IOC if bit 2, else RETURN (bit 4 is BOC, which is
    *not* RETURN and is never used for a market close). Modes the mask does
    not advertise come last, for brokers whose mask is wrong; a mode that
    worked before for this symbol (``preferred``) comes first.
    """
    order: list[int] = []
    if mask & rc.SYMBOL_FILLING_FOK:
        order.append(fok)
    if mask & rc.SYMBOL_FILLING_IOC:
        order.append(ioc)
    order.append(ret)
    order += [m for m in (fok, ioc) if m not in order]
    if preferred is not None and preferred in order:
        order.remove(preferred)
        order.insert(0, preferred)
    return order


def _f(x: float) -> float:
    """Volumes as clean floats (0.30000000000000004 -> 0.3)."""
    return round(float(x), 8)
