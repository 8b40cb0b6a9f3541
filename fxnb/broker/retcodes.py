"""What a terminal answer means, and what the adapter does about it.

Two kinds of codes reach fxnb from a MetaTrader5-shaped module:

* ``order_send(...).retcode``: a ``TRADE_RETCODE_*`` from the trade server.
  ``classify(retcode)`` puts each into one :class:`RetcodeClass`, which is the
  whole retry policy of the adapter (``mt5_api.md`` §3.1 and §4.5).
* ``last_error()`` after a call returned ``None``/``False``: a ``RES_*`` code.
  ``error_class(code)`` says which ``fxnb.errors`` class it becomes, and
  ``is_ipc(code)`` / ``send_outcome_unknown(code)`` say whether a request may
  have reached the server.

The numeric values are facts about the official package. Constants that the
package does *not* export (``SYMBOL_FILLING_*`` bits, ``HEDGE_PROHIBITED``)
live here and nowhere in the simulator.
"""

from __future__ import annotations

from enum import StrEnum

from fxnb.errors import BrokerError, BrokerUnavailable, OrderRejected

# --- not exported by the MetaTrader5 module -------------------------------------------------
SYMBOL_FILLING_FOK = 1  # bit in symbol_info().filling_mode
SYMBOL_FILLING_IOC = 2
SYMBOL_FILLING_BOC = 4
TRADE_RETCODE_HEDGE_PROHIBITED = 10046

# --- last_error() codes (RES_*) ---------------------------------------------------------------
RES_S_OK = 1
RES_E_FAIL = -1
RES_E_INVALID_PARAMS = -2
RES_E_NO_MEMORY = -3
RES_E_NOT_FOUND = -4
RES_E_INVALID_VERSION = -5
RES_E_AUTH_FAILED = -6
RES_E_UNSUPPORTED = -7
RES_E_AUTO_TRADING_DISABLED = -8
RES_E_INTERNAL_FAIL = -10000
RES_E_INTERNAL_FAIL_SEND = -10001
RES_E_INTERNAL_FAIL_RECEIVE = -10002
RES_E_INTERNAL_FAIL_INIT = -10003
RES_E_INTERNAL_FAIL_CONNECT = -10004
RES_E_INTERNAL_FAIL_TIMEOUT = -10005

LAST_ERROR_NAMES: dict[int, str] = {
    RES_S_OK: "RES_S_OK",
    RES_E_FAIL: "RES_E_FAIL",
    RES_E_INVALID_PARAMS: "RES_E_INVALID_PARAMS",
    RES_E_NO_MEMORY: "RES_E_NO_MEMORY",
    RES_E_NOT_FOUND: "RES_E_NOT_FOUND",
    RES_E_INVALID_VERSION: "RES_E_INVALID_VERSION",
    RES_E_AUTH_FAILED: "RES_E_AUTH_FAILED",
    RES_E_UNSUPPORTED: "RES_E_UNSUPPORTED",
    RES_E_AUTO_TRADING_DISABLED: "RES_E_AUTO_TRADING_DISABLED",
    RES_E_INTERNAL_FAIL: "RES_E_INTERNAL_FAIL",
    RES_E_INTERNAL_FAIL_SEND: "RES_E_INTERNAL_FAIL_SEND",
    RES_E_INTERNAL_FAIL_RECEIVE: "RES_E_INTERNAL_FAIL_RECEIVE",
    RES_E_INTERNAL_FAIL_INIT: "RES_E_INTERNAL_FAIL_INIT",
    RES_E_INTERNAL_FAIL_CONNECT: "RES_E_INTERNAL_FAIL_CONNECT",
    RES_E_INTERNAL_FAIL_TIMEOUT: "RES_E_INTERNAL_FAIL_TIMEOUT",
}

#: IPC failures: the terminal could not be reached.
IPC_CODES = frozenset(range(RES_E_INTERNAL_FAIL_TIMEOUT, RES_E_INTERNAL_FAIL + 1))
#: After ``order_send`` returned None with one of these, the request may or may not have reached
#: the server. -10003 (init failed) and -10004 (no IPC session) mean nothing was sent.
_SEND_UNKNOWN = frozenset({RES_E_INTERNAL_FAIL, RES_E_INTERNAL_FAIL_SEND, RES_E_INTERNAL_FAIL_RECEIVE,
                           RES_E_INTERNAL_FAIL_TIMEOUT})
#: Connecting again with the same settings will not help; a human has to act.
PERMANENT_CONNECT_CODES = frozenset({RES_E_INVALID_PARAMS, RES_E_INVALID_VERSION, RES_E_AUTH_FAILED,
                                     RES_E_UNSUPPORTED})


def is_ipc(code: int | None) -> bool:
    """True for the ``-1000x`` codes: the terminal is unreachable, not wrong."""
    return code in IPC_CODES


def send_outcome_unknown(code: int | None) -> bool:
    """True when ``order_send`` returned ``None`` but the request may still have been executed."""
    return code in _SEND_UNKNOWN


def error_class(code: int | None) -> type[BrokerError]:
    """The ``fxnb.errors`` class for a failed call whose ``last_error()`` is ``code``.

    IPC codes, a version mismatch and failed authorisation mean the terminal is
    unusable (``BrokerUnavailable``: the monitor reconnects and never reads the
    failure as an empty book). Python trading disabled in the terminal is an
    ``OrderRejected`` (an operator must flip the switch). Everything else is a
    plain ``BrokerError``.
    """
    if code in IPC_CODES or code in (RES_E_INVALID_VERSION, RES_E_AUTH_FAILED):
        return BrokerUnavailable
    if code == RES_E_AUTO_TRADING_DISABLED:
        return OrderRejected
    return BrokerError


def last_error_name(code: int | None) -> str:
    return LAST_ERROR_NAMES.get(code, f"last_error {code}") if code is not None else "no code"


# --- trade server return codes ----------------------------------------------------------------
class RetcodeClass(StrEnum):
    """What a close/modify request does after ``order_send`` answered with a retcode."""

    OK = "ok"  # done: read back the deal
    OK_PARTIAL = "ok_partial"  # part done: record it, re-read the position, close the rest
    RETRY = "retry"  # nothing done, transient: back off, re-read position and tick, resend
    AMBIGUOUS = "ambiguous"  # outcome unknown: re-read the position, resend only what is still open
    FIX = "fix"  # our request was wrong: correct it once (filling, volume, price), resend
    GONE = "gone"  # the position is already closed: a close is idempotently done
    FINAL = "final"  # refused: stop, report code and the server's comment verbatim


_TABLE: dict[int, tuple[str, RetcodeClass]] = {
    10004: ("TRADE_RETCODE_REQUOTE", RetcodeClass.RETRY),
    10006: ("TRADE_RETCODE_REJECT", RetcodeClass.FINAL),
    10007: ("TRADE_RETCODE_CANCEL", RetcodeClass.FINAL),
    # accepted, not yet filled: whether it fills is unknown until the position is re-read
    10008: ("TRADE_RETCODE_PLACED", RetcodeClass.AMBIGUOUS),
    10009: ("TRADE_RETCODE_DONE", RetcodeClass.OK),
    10010: ("TRADE_RETCODE_DONE_PARTIAL", RetcodeClass.OK_PARTIAL),
    10011: ("TRADE_RETCODE_ERROR", RetcodeClass.AMBIGUOUS),
    10012: ("TRADE_RETCODE_TIMEOUT", RetcodeClass.AMBIGUOUS),
    10013: ("TRADE_RETCODE_INVALID", RetcodeClass.FINAL),
    10014: ("TRADE_RETCODE_INVALID_VOLUME", RetcodeClass.FIX),
    10015: ("TRADE_RETCODE_INVALID_PRICE", RetcodeClass.FIX),
    10016: ("TRADE_RETCODE_INVALID_STOPS", RetcodeClass.FINAL),  # SL/TP values are the caller's decision
    10017: ("TRADE_RETCODE_TRADE_DISABLED", RetcodeClass.FINAL),
    10018: ("TRADE_RETCODE_MARKET_CLOSED", RetcodeClass.FINAL),
    10019: ("TRADE_RETCODE_NO_MONEY", RetcodeClass.FINAL),
    10020: ("TRADE_RETCODE_PRICE_CHANGED", RetcodeClass.RETRY),
    10021: ("TRADE_RETCODE_PRICE_OFF", RetcodeClass.RETRY),
    10022: ("TRADE_RETCODE_INVALID_EXPIRATION", RetcodeClass.FINAL),
    10023: ("TRADE_RETCODE_ORDER_CHANGED", RetcodeClass.RETRY),
    10024: ("TRADE_RETCODE_TOO_MANY_REQUESTS", RetcodeClass.RETRY),
    10025: ("TRADE_RETCODE_NO_CHANGES", RetcodeClass.OK),  # only sent by SLTP/modify: nothing to do
    10026: ("TRADE_RETCODE_SERVER_DISABLES_AT", RetcodeClass.FINAL),
    10027: ("TRADE_RETCODE_CLIENT_DISABLES_AT", RetcodeClass.FINAL),
    10028: ("TRADE_RETCODE_LOCKED", RetcodeClass.RETRY),
    10029: ("TRADE_RETCODE_FROZEN", RetcodeClass.RETRY),
    10030: ("TRADE_RETCODE_INVALID_FILL", RetcodeClass.FIX),
    10031: ("TRADE_RETCODE_CONNECTION", RetcodeClass.AMBIGUOUS),
    10032: ("TRADE_RETCODE_ONLY_REAL", RetcodeClass.FINAL),
    10033: ("TRADE_RETCODE_LIMIT_ORDERS", RetcodeClass.FINAL),
    10034: ("TRADE_RETCODE_LIMIT_VOLUME", RetcodeClass.FINAL),
    10035: ("TRADE_RETCODE_INVALID_ORDER", RetcodeClass.FINAL),
    10036: ("TRADE_RETCODE_POSITION_CLOSED", RetcodeClass.GONE),
    10038: ("TRADE_RETCODE_INVALID_CLOSE_VOLUME", RetcodeClass.FIX),
    # another close order is pending for this position: what it will do is unknown
    10039: ("TRADE_RETCODE_CLOSE_ORDER_EXIST", RetcodeClass.AMBIGUOUS),
    10040: ("TRADE_RETCODE_LIMIT_POSITIONS", RetcodeClass.FINAL),
    10041: ("TRADE_RETCODE_REJECT_CANCEL", RetcodeClass.FINAL),
    10042: ("TRADE_RETCODE_LONG_ONLY", RetcodeClass.FINAL),
    10043: ("TRADE_RETCODE_SHORT_ONLY", RetcodeClass.FINAL),
    10044: ("TRADE_RETCODE_CLOSE_ONLY", RetcodeClass.FINAL),
    10045: ("TRADE_RETCODE_FIFO_CLOSE", RetcodeClass.FINAL),  # an older position must go first: operator
    TRADE_RETCODE_HEDGE_PROHIBITED: ("TRADE_RETCODE_HEDGE_PROHIBITED", RetcodeClass.FINAL),
}

#: Every ``TRADE_RETCODE_*`` the official package exports, name -> value.
TRADE_RETCODES: dict[str, int] = {
    name: code for code, (name, _) in _TABLE.items() if code != TRADE_RETCODE_HEDGE_PROHIBITED
}

DONE = 10009
DONE_PARTIAL = 10010
INVALID_VOLUME = 10014
INVALID_PRICE = 10015
INVALID_FILL = 10030
POSITION_CLOSED = 10036
INVALID_CLOSE_VOLUME = 10038
NO_CHANGES = 10025


def classify(retcode: int | None) -> RetcodeClass:
    """The class of a ``TRADE_RETCODE_*``. Unknown codes are FINAL: never retry what we do not understand."""
    if retcode is None:
        return RetcodeClass.AMBIGUOUS
    entry = _TABLE.get(retcode)
    return entry[1] if entry else RetcodeClass.FINAL


def retcode_name(retcode: int | None) -> str:
    """``10004`` -> ``"TRADE_RETCODE_REQUOTE"``; unknown codes keep their number."""
    if retcode is None:
        return "no retcode"
    entry = _TABLE.get(retcode)
    return entry[0] if entry else f"retcode {retcode}"


def describe(retcode: int | None, comment: str = "") -> str:
    """``"10018 TRADE_RETCODE_MARKET_CLOSED: Market closed"``: code, name and the server's own words."""
    text = f"{retcode} {retcode_name(retcode)}" if retcode is not None else retcode_name(retcode)
    return f"{text}: {comment}" if comment else text
