"""Argument checking the way the C extension does it, before anything reaches the "server".

A request dict is checked field by field: ints must be ``int``, the five price
and volume fields must be ``float`` (``"volume": 1`` is refused, a classic
pitfall), strings ``str``. Unknown keys are ignored; omitted keys default to
0 / 0.0 / "" (so an omitted ``type_filling`` means FOK). Failures raise
``ApiError(-2, 'Invalid "<field>" argument')``.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from datetime import datetime
from typing import Any

from . import constants as C
from .structs import TradeRequest

_INT_FIELDS = frozenset(
    {
        "action",
        "magic",
        "order",
        "deviation",
        "type",
        "type_filling",
        "type_time",
        "expiration",
        "position",
        "position_by",
    }
)
_FLOAT_FIELDS = frozenset({"volume", "price", "stoplimit", "sl", "tp"})
_STR_FIELDS = frozenset({"symbol", "comment"})
COMMENT_MAX = 31


class ApiError(Exception):
    """A call fails with ``None``/``False`` and this ``last_error()``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


def invalid(field: str) -> ApiError:
    return ApiError(C.RES_E_INVALID_PARAMS, f'Invalid "{field}" argument')


UNNAMED = ApiError(C.RES_E_INVALID_PARAMS, "Unnamed arguments not allowed")
INVALID_ARGS = ApiError(C.RES_E_INVALID_PARAMS, "Invalid arguments")


def _is_int(v: Any) -> bool:
    return isinstance(v, int)


def _is_float(v: Any) -> bool:
    return isinstance(v, float)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _check_for(name: str) -> Callable[[Any], bool]:
    if name in _INT_FIELDS:
        return _is_int
    if name in _FLOAT_FIELDS:
        return _is_float
    return _is_str


_CHECKS = tuple((name, _check_for(name)) for name in TradeRequest._fields)
_DEFAULTS = tuple(0.0 if n in _FLOAT_FIELDS else "" if n in _STR_FIELDS else 0 for n in TradeRequest._fields)


def valid_comment(comment: str) -> bool:
    return len(comment) <= COMMENT_MAX and comment.isascii() and comment.isprintable()


def parse_request(request: Any) -> TradeRequest:
    """The request as a TradeRequest echo, or ApiError(-2, ...)."""
    if not isinstance(request, dict):
        raise INVALID_ARGS
    values = list(_DEFAULTS)
    for i, (name, ok) in enumerate(_CHECKS):
        if name in request:
            v = request[name]
            if not ok(v):
                raise invalid(name)
            values[i] = v
    req = TradeRequest._make(values)
    if not valid_comment(req.comment):
        raise invalid("comment")
    return req


def check_filter(name: str, value: Any, kind: type) -> None:
    """Filters of positions_get & co.: None or the right type."""
    if value is not None and not isinstance(value, kind):
        raise invalid(name)


def to_epoch(value: Any, position: int) -> int:
    """A history date bound: int/float epoch seconds, or a datetime.

    Aware datetimes convert to their epoch; naive ones are read as server
    wall-clock (the number MT5 compares against), i.e. without local-zone shifts.
    """
    if isinstance(value, bool):
        raise _unnamed(position)
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return int(value.timestamp())
        return calendar.timegm(value.timetuple())
    raise _unnamed(position)


def _unnamed(position: int) -> ApiError:
    nth = {1: "1st", 2: "2nd", 3: "3rd"}.get(position, f"{position}th")
    return ApiError(C.RES_E_INVALID_PARAMS, f"Invalid {nth} unnamed argument")


def check_filters(args: tuple[Any, ...], symbol: Any, group: Any, ticket: Any) -> None:
    """positions_get / orders_get / symbols_get: filters are keyword-only and typed."""
    if args:
        raise UNNAMED
    check_filter("symbol", symbol, str)
    check_filter("group", group, str)
    check_filter("ticket", ticket, int)


def check_history(date_from: Any, date_to: Any, group: Any, ticket: Any, position: Any, *_: Any) -> None:
    """history_*_get filters (the dates are checked where they are used, see ``to_epoch``)."""
    check_filter("group", group, str)
    check_filter("ticket", ticket, int)
    check_filter("position", position, int)


def check_symbol(symbol: Any, *_: Any) -> None:
    """symbol_info & co. take the symbol as their first unnamed argument."""
    if not isinstance(symbol, str):
        raise ApiError(C.RES_E_INVALID_PARAMS, "Invalid 1st unnamed argument")


def check_calc(action: Any, symbol: Any, volume: Any, *prices: Any) -> None:
    """order_calc_profit / order_calc_margin: (ORDER_TYPE_BUY|SELL, symbol, numbers...)."""
    if not isinstance(action, int) or action not in (C.ORDER_TYPE_BUY, C.ORDER_TYPE_SELL):
        raise _unnamed(1)
    if not isinstance(symbol, str):
        raise _unnamed(2)
    for n, value in enumerate((volume, *prices), start=3):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _unnamed(n)
