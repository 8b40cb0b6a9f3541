"""Formatting shared by the panels: money in the account's currency, ages, times, HTML escaping.

Pure functions, no widgets: easy to test and identical in every panel.
"""

from __future__ import annotations

import html
import math
from datetime import UTC, datetime
from typing import Any

# Symbol placed before the amount, and decimals, for the currencies a terminal commonly reports.
_CURRENCIES: dict[str, tuple[str, int]] = {
    "USD": ("$", 2),
    "EUR": ("€", 2),
    "GBP": ("£", 2),
    "JPY": ("¥", 0),
    "CHF": ("CHF ", 2),
    "AUD": ("A$", 2),
    "CAD": ("C$", 2),
    "NZD": ("NZ$", 2),
}

MINUS = "\u2212"  # a real minus sign: same width as "+", reads better than a hyphen


def esc(value: Any) -> str:
    """HTML-escape anything (``None`` becomes an empty string)."""
    return "" if value is None else html.escape(str(value), quote=True)


def money(value: float | None, currency: str | None, *, signed: bool = False) -> str:
    """``value`` in ``currency``: ``$1,234.56``, ``€-`` … ``-¥1,235``; unknown codes as ``1,234.56 XYZ``.

    With ``signed`` a positive amount gets a ``+`` (for P/L). ``None``/NaN give an em dash.
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    code = (currency or "").upper()
    prefix, decimals = _CURRENCIES.get(code, ("", 2))
    amount = f"{abs(value):,.{decimals}f}"
    if amount.strip("0.,") == "":
        sign = ""  # never show "-$0.00"
    elif value < 0:
        sign = MINUS
    else:
        sign = "+" if signed else ""
    if prefix:
        return f"{sign}{prefix}{amount}"
    suffix = f" {code}" if code else ""
    return f"{sign}{amount}{suffix}"


def number(value: float | None, decimals: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:,.{decimals}f}".replace("-", MINUS)


def price(value: float | None) -> str:
    """A quote with as many decimals as it needs (up to 5): 1.08512, 150.012, 2350.3."""
    if value is None:
        return "—"
    text = f"{value:.5f}".rstrip("0")
    if text.endswith("."):
        text += "0"
    return text


def percent(value: float | None, decimals: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:,.{decimals}f} %".replace("-", MINUS)


def pnl_class(value: float | None) -> str:
    """CSS class for a P/L value: ``fxnb-pos``, ``fxnb-neg`` or ``fxnb-flat``."""
    if value is None or value == 0:
        return "fxnb-flat"
    return "fxnb-pos" if value > 0 else "fxnb-neg"


def parse_time(value: str | float | None) -> datetime | None:
    """Stored ISO text (``...Z``) or epoch seconds as an aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), UTC)
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def clock(value: str | float | None, *, with_date: bool = False) -> str:
    """``HH:MM:SS`` (UTC), or ``YYYY-MM-DD HH:MM:SS`` with ``with_date``; em dash if unknown."""
    dt = parse_time(value)
    if dt is None:
        return "—"
    return dt.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")


def age(seconds: float | None) -> str:
    """A short human age: ``0.4 s``, ``12 s``, ``3 min 05 s``, ``2 h 03 min``, ``3 d 4 h``."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    s = max(0.0, seconds)
    if s < 10:
        return f"{s:.1f} s"
    if s < 60:
        return f"{s:.0f} s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m:02d} min"
    d, h = divmod(h, 24)
    return f"{d} d {h} h"


def short_id(command_id: str | None) -> str:
    """The end of a command id, enough to tell commands apart in a table (the full id is in a tooltip)."""
    if not command_id:
        return "—"
    return command_id if len(command_id) <= 12 else "…" + command_id[-8:]
