"""Retcode classes, last_error mapping and the adapter's pure helpers (no terminal needed)."""

from __future__ import annotations

import pytest

from fxnb.broker import retcodes as rc
from fxnb.broker.adapter import filling_candidates, sanitize_comment
from fxnb.broker.retcodes import RetcodeClass as C
from fxnb.errors import BrokerError, BrokerUnavailable, OrderRejected

# every TRADE_RETCODE_* the official 5.0.6231 package exports (mt5_api.md §3.1): no 10005, no 10037
OFFICIAL = {
    "TRADE_RETCODE_REQUOTE": 10004, "TRADE_RETCODE_REJECT": 10006, "TRADE_RETCODE_CANCEL": 10007,
    "TRADE_RETCODE_PLACED": 10008, "TRADE_RETCODE_DONE": 10009, "TRADE_RETCODE_DONE_PARTIAL": 10010,
    "TRADE_RETCODE_ERROR": 10011, "TRADE_RETCODE_TIMEOUT": 10012, "TRADE_RETCODE_INVALID": 10013,
    "TRADE_RETCODE_INVALID_VOLUME": 10014, "TRADE_RETCODE_INVALID_PRICE": 10015,
    "TRADE_RETCODE_INVALID_STOPS": 10016, "TRADE_RETCODE_TRADE_DISABLED": 10017,
    "TRADE_RETCODE_MARKET_CLOSED": 10018, "TRADE_RETCODE_NO_MONEY": 10019,
    "TRADE_RETCODE_PRICE_CHANGED": 10020, "TRADE_RETCODE_PRICE_OFF": 10021,
    "TRADE_RETCODE_INVALID_EXPIRATION": 10022, "TRADE_RETCODE_ORDER_CHANGED": 10023,
    "TRADE_RETCODE_TOO_MANY_REQUESTS": 10024, "TRADE_RETCODE_NO_CHANGES": 10025,
    "TRADE_RETCODE_SERVER_DISABLES_AT": 10026, "TRADE_RETCODE_CLIENT_DISABLES_AT": 10027,
    "TRADE_RETCODE_LOCKED": 10028, "TRADE_RETCODE_FROZEN": 10029, "TRADE_RETCODE_INVALID_FILL": 10030,
    "TRADE_RETCODE_CONNECTION": 10031, "TRADE_RETCODE_ONLY_REAL": 10032, "TRADE_RETCODE_LIMIT_ORDERS": 10033,
    "TRADE_RETCODE_LIMIT_VOLUME": 10034, "TRADE_RETCODE_INVALID_ORDER": 10035,
    "TRADE_RETCODE_POSITION_CLOSED": 10036, "TRADE_RETCODE_INVALID_CLOSE_VOLUME": 10038,
    "TRADE_RETCODE_CLOSE_ORDER_EXIST": 10039, "TRADE_RETCODE_LIMIT_POSITIONS": 10040,
    "TRADE_RETCODE_REJECT_CANCEL": 10041, "TRADE_RETCODE_LONG_ONLY": 10042, "TRADE_RETCODE_SHORT_ONLY": 10043,
    "TRADE_RETCODE_CLOSE_ONLY": 10044, "TRADE_RETCODE_FIFO_CLOSE": 10045,
}


def test_table_covers_exactly_the_official_retcodes() -> None:
    assert rc.TRADE_RETCODES == OFFICIAL
    assert "TRADE_RETCODE_HEDGE_PROHIBITED" not in rc.TRADE_RETCODES  # not exported by the package
    assert rc.retcode_name(10046) == "TRADE_RETCODE_HEDGE_PROHIBITED"
    assert rc.TRADE_RETCODE_HEDGE_PROHIBITED == 10046


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (10009, C.OK), (10025, C.OK),
        (10010, C.OK_PARTIAL),
        (10004, C.RETRY), (10020, C.RETRY), (10021, C.RETRY), (10024, C.RETRY), (10023, C.RETRY),
        (10028, C.RETRY), (10029, C.RETRY),
        (10011, C.AMBIGUOUS), (10012, C.AMBIGUOUS), (10031, C.AMBIGUOUS), (10008, C.AMBIGUOUS),
        (10039, C.AMBIGUOUS), (None, C.AMBIGUOUS),
        (10014, C.FIX), (10015, C.FIX), (10030, C.FIX), (10038, C.FIX),
        (10036, C.GONE),
        (10006, C.FINAL), (10013, C.FINAL), (10016, C.FINAL), (10017, C.FINAL), (10018, C.FINAL),
        (10019, C.FINAL), (10026, C.FINAL), (10027, C.FINAL), (10044, C.FINAL), (10045, C.FINAL),
        (10046, C.FINAL),
    ],
)
def test_classify(code: int | None, cls: C) -> None:
    assert rc.classify(code) is cls


def test_unknown_codes_are_final_and_keep_their_number() -> None:
    assert rc.classify(10005) is C.FINAL
    assert rc.classify(0) is C.FINAL
    assert rc.retcode_name(10037) == "retcode 10037"


def test_every_code_has_a_readable_name_and_a_class() -> None:
    for name, code in OFFICIAL.items():
        assert rc.retcode_name(code) == name
        assert isinstance(rc.classify(code), C)


def test_describe_keeps_the_server_comment_verbatim() -> None:
    assert rc.describe(10018, "Market closed") == "10018 TRADE_RETCODE_MARKET_CLOSED: Market closed"
    assert rc.describe(10009) == "10009 TRADE_RETCODE_DONE"
    assert rc.describe(None) == "no retcode"


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (-10000, BrokerUnavailable), (-10001, BrokerUnavailable), (-10002, BrokerUnavailable),
        (-10003, BrokerUnavailable), (-10004, BrokerUnavailable), (-10005, BrokerUnavailable),
        (-5, BrokerUnavailable), (-6, BrokerUnavailable),
        (-8, OrderRejected),
        (-1, BrokerError), (-2, BrokerError), (-3, BrokerError), (-4, BrokerError), (-7, BrokerError),
    ],
)
def test_last_error_codes_map_to_fxnb_errors(code: int, cls: type[BrokerError]) -> None:
    assert rc.error_class(code) is cls


def test_ipc_codes_and_send_outcome() -> None:
    assert {c for c in range(-10010, 5) if rc.is_ipc(c)} == set(range(-10005, -9999))
    # the request may have reached the server: the adapter re-reads before any resend
    assert all(rc.send_outcome_unknown(c) for c in (-10000, -10001, -10002, -10005))
    # never initialised / no session / bad arguments: nothing was sent
    assert not any(rc.send_outcome_unknown(c) for c in (-10003, -10004, -2, -8, 1))
    assert rc.last_error_name(-10004) == "RES_E_INTERNAL_FAIL_CONNECT"
    assert -6 in rc.PERMANENT_CONNECT_CODES and -10004 not in rc.PERMANENT_CONNECT_CODES


FOK, IOC, RET = 0, 1, 2


@pytest.mark.parametrize(
    ("mask", "first"),
    [(1, FOK), (3, FOK), (2, IOC), (6, IOC), (0, RET), (4, RET)],  # bit 4 is BOC, not RETURN
)
def test_filling_choice_reads_the_bitmask(mask: int, first: int) -> None:
    order = filling_candidates(mask, fok=FOK, ioc=IOC, ret=RET)
    assert order[0] == first
    assert sorted(order) == [FOK, IOC, RET]  # every mode is tried at most once


def test_filling_fallback_order_and_cache_preference() -> None:
    assert filling_candidates(2, fok=FOK, ioc=IOC, ret=RET) == [IOC, RET, FOK]
    assert filling_candidates(3, fok=FOK, ioc=IOC, ret=RET) == [FOK, IOC, RET]
    assert filling_candidates(3, fok=FOK, ioc=IOC, ret=RET, preferred=IOC) == [IOC, FOK, RET]


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("fxnb", "fxnb"),
        ("close [rule: 5%] é", "close _rule_ 5__ _"),
        ("x" * 40, "x" * 26),
        ("", "fxnb"),
        (None, "fxnb"),
        ("tp-1.5 ok_now", "tp-1.5 ok_now"),
    ],
)
def test_sanitize_comment(raw: str | None, clean: str) -> None:
    out = sanitize_comment(raw)
    assert out == clean
    assert len(out) <= 26 and out.isascii()
