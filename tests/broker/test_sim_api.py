"""The simulated terminal's module shape: constants, struct layouts, argument rules, connection, symbols."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import fxnb.broker.sim as sim_pkg
from fxnb.broker.sim import SimSettings, SimTerminal, create_terminal, structs
from fxnb.broker.sim import constants as C

TABLE = json.loads((Path(sim_pkg.__file__).parent / "constants.json").read_text("utf-8"))
NO_IPC = (-10004, "No IPC connection")
UNNAMED = (-2, "Unnamed arguments not allowed")


def _terminal(tmp_path: Path, **section: object) -> SimTerminal:
    base: dict[str, object] = {"volatility": 0.0, "positions": {"count": 3}}
    base.update(section)
    return create_terminal(SimSettings.from_mapping(base, tmp_path))


@pytest.fixture
def mt5(tmp_path: Path) -> Iterator[SimTerminal]:
    t = _terminal(tmp_path)
    assert t.initialize() is True
    yield t
    t.close()


def _buy(symbol: str = "EURUSD", volume: float = 0.1, **extra: object) -> dict[str, object]:
    req: dict[str, object] = {
        "action": C.TRADE_ACTION_DEAL,
        "symbol": symbol,
        "volume": volume,
        "type": C.ORDER_TYPE_BUY,
        "type_filling": C.ORDER_FILLING_IOC,
    }
    req.update(extra)
    return req


# ---------------------------------------------------------------- constants


def test_terminal_constants_equal_the_committed_table_exactly(mt5: SimTerminal) -> None:
    upper = {name: getattr(mt5, name) for name in dir(mt5) if name.isupper() and not name.startswith("_")}
    assert len(TABLE) == 223
    assert upper == TABLE


def test_constants_module_exposes_exactly_the_table() -> None:
    upper = {name: getattr(C, name) for name in dir(C) if name.isupper() and not name.startswith("_")}
    assert upper == TABLE == C.table()
    with pytest.raises(AttributeError):
        _ = C.SYMBOL_FILLING_FOK  # a DOC constant the package does not export


def test_selected_constant_values_match_the_reference() -> None:
    assert TABLE["TRADE_RETCODE_DONE"] == 10009
    assert TABLE["TRADE_RETCODE_INVALID_FILL"] == 10030
    assert TABLE["RES_E_INTERNAL_FAIL_CONNECT"] == -10004
    assert TABLE["TIMEFRAME_H1"] == 1 | 0x4000
    assert TABLE["TIMEFRAME_MN1"] == 1 | 0xC000
    assert TABLE["ACCOUNT_MARGIN_MODE_RETAIL_HEDGING"] == 2
    assert TABLE["DEAL_TAX"] == 17
    assert "TRADE_RETCODE_HEDGE_PROHIBITED" not in TABLE


# ---------------------------------------------------------------- structs

FIELDS = {
    "TradePosition": (
        "ticket time time_msc time_update time_update_msc type magic identifier reason volume price_open "
        "sl tp price_current swap profit symbol comment external_id"
    ),
    "TradeOrder": (
        "ticket time_setup time_setup_msc time_done time_done_msc time_expiration type type_time "
        "type_filling state magic position_id position_by_id reason volume_initial volume_current "
        "price_open sl tp price_current price_stoplimit symbol comment external_id"
    ),
    "TradeDeal": (
        "ticket order time time_msc type entry magic position_id reason volume price commission swap "
        "profit fee symbol comment external_id"
    ),
    "TradeRequest": (
        "action magic order symbol volume price stoplimit sl tp deviation type type_filling type_time "
        "expiration comment position position_by"
    ),
    "OrderSendResult": (
        "retcode deal order volume price bid ask comment request_id retcode_external request"
    ),
    "OrderCheckResult": ("retcode balance equity profit margin margin_free margin_level comment request"),
    "Tick": ("time bid ask last volume time_msc flags volume_real"),
    "AccountInfo": (
        "login trade_mode leverage limit_orders margin_so_mode trade_allowed trade_expert margin_mode "
        "currency_digits fifo_close balance credit profit equity margin margin_free margin_level "
        "margin_so_call margin_so_so margin_initial margin_maintenance assets liabilities "
        "commission_blocked name server currency company"
    ),
    "SymbolInfo": (
        "custom chart_mode select visible session_deals session_buy_orders session_sell_orders volume "
        "volumehigh volumelow time digits spread spread_float ticks_bookdepth trade_calc_mode trade_mode "
        "start_time expiration_time trade_stops_level trade_freeze_level trade_exemode swap_mode "
        "swap_rollover3days margin_hedged_use_leg expiration_mode filling_mode order_mode order_gtc_mode "
        "option_mode option_right bid bidhigh bidlow ask askhigh asklow last lasthigh lastlow volume_real "
        "volumehigh_real volumelow_real option_strike point trade_tick_value trade_tick_value_profit "
        "trade_tick_value_loss trade_tick_size trade_contract_size trade_accrued_interest "
        "trade_face_value trade_liquidity_rate volume_min volume_max volume_step volume_limit swap_long "
        "swap_short margin_initial margin_maintenance session_volume session_turnover session_interest "
        "session_buy_orders_volume session_sell_orders_volume session_open session_close session_aw "
        "session_price_settlement session_price_limit_min session_price_limit_max margin_hedged "
        "price_change price_volatility price_theoretical price_greeks_delta price_greeks_theta "
        "price_greeks_gamma price_greeks_vega price_greeks_rho price_greeks_omega price_sensitivity basis "
        "category currency_base currency_profit currency_margin bank description exchange formula isin "
        "name page path"
    ),
    "TerminalInfo": (
        "community_account community_connection connected dlls_allowed trade_allowed tradeapi_disabled "
        "email_enabled ftp_enabled notifications_enabled mqid build maxbars codepage ping_last "
        "community_balance retransmission company name language path data_path commondata_path"
    ),
}
COUNTS = {
    "TradePosition": 19,
    "AccountInfo": 28,
    "SymbolInfo": 96,
    "TerminalInfo": 22,
    "TradeDeal": 18,
    "TradeOrder": 24,
    "Tick": 8,
    "OrderSendResult": 11,
    "OrderCheckResult": 9,
    "TradeRequest": 17,
}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_struct_field_counts(name: str) -> None:
    assert len(getattr(structs, name)._fields) == COUNTS[name]


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_struct_field_names_in_official_order(name: str) -> None:
    assert getattr(structs, name)._fields == tuple(FIELDS[name].split())


def test_symbol_info_layout_ends_and_typed_zeros(mt5: SimTerminal) -> None:
    info = mt5.symbol_info("EURUSD")
    fields = type(info)._fields
    assert fields[:4] == ("custom", "chart_mode", "select", "visible")
    assert fields[30:32] == ("option_right", "bid")  # first 31 are bool/int, then floats
    assert fields[83:] == (
        "basis",
        "category",
        "currency_base",
        "currency_profit",
        "currency_margin",
        "bank",
        "description",
        "exchange",
        "formula",
        "isin",
        "name",
        "page",
        "path",
    )
    assert isinstance(info.custom, bool) and isinstance(info.digits, int) and isinstance(info.point, float)
    assert info.isin == "" and info.option_strike == 0.0


def test_asdict_on_returned_structs(mt5: SimTerminal) -> None:
    pos = mt5.positions_get()[0]
    d = pos._asdict()
    assert list(d) == FIELDS["TradePosition"].split() and d["ticket"] == pos.ticket
    acct = mt5.account_info()._asdict()
    assert acct["currency"] == "USD" and len(acct) == 28
    result = mt5.order_send(_buy())
    assert result._asdict()["request"]._asdict()["symbol"] == "EURUSD"
    assert mt5.symbol_info_tick("EURUSD")._asdict().keys() == set(FIELDS["Tick"].split())
    assert len(mt5.terminal_info()._asdict()) == 22


# ---------------------------------------------------------------- connection and last_error


def test_calls_before_initialize_fail_with_no_ipc(tmp_path: Path) -> None:
    t = _terminal(tmp_path)
    try:
        assert t.last_error() == (1, "Success")
        assert t.account_info() is None and t.last_error() == NO_IPC
        assert t.positions_get() is None and t.last_error() == NO_IPC
        assert t.positions_total() is None and t.last_error() == NO_IPC
        assert t.order_send(_buy()) is None and t.last_error() == NO_IPC
        assert t.symbol_select("EURUSD", True) is False and t.last_error() == NO_IPC
        assert t.history_deals_get(0, 2**40) is None and t.last_error() == NO_IPC
        assert t.version() is None and t.last_error() == NO_IPC
        assert t.login(t.settings.login) is False and t.last_error() == NO_IPC
    finally:
        t.close()


def test_shutdown_then_calls_fail_then_initialize_recovers(mt5: SimTerminal) -> None:
    assert mt5.version() == (500, 4755, "14 Feb 2025")
    assert mt5.shutdown() is None
    assert mt5.terminal_info() is None and mt5.last_error() == NO_IPC
    assert mt5.initialize() is True and mt5.last_error() == (1, "Success")
    assert mt5.terminal_info().connected is True


def test_last_error_is_one_slot_overwritten_by_every_call(mt5: SimTerminal) -> None:
    assert mt5.symbol_info("NOPE") is None
    assert mt5.last_error() == (-4, "Terminal: Not found")
    assert mt5.last_error() == (-4, "Terminal: Not found")  # reading does not reset it
    assert mt5.positions_total() == 3
    assert mt5.last_error() == (1, "Success")


def test_initialize_and_login_argument_rules(mt5: SimTerminal) -> None:
    login = mt5.settings.login
    assert mt5.initialize(login=str(login)) is False
    assert mt5.last_error() == (-2, 'Invalid "login" argument')
    assert mt5.login(str(login)) is False and mt5.last_error() == (-2, 'Invalid "login" argument')
    assert mt5.initialize(timeout=60.0) is False and mt5.last_error() == (-2, 'Invalid "timeout" argument')
    assert mt5.initialize(login=login + 1, password="x", server="FxnbSim-Demo") is False
    assert mt5.last_error() == (-6, "Terminal: Authorization failed")
    assert (
        mt5.initialize(
            "C:/MT5/terminal64.exe",
            login=login,
            password="pw",
            server="FxnbSim-Demo",
            timeout=60000,
            portable=False,
        )
        is True
    )
    assert mt5.login(login, password="pw", server="FxnbSim-Demo") is True
    assert mt5.account_info().login == login


# ---------------------------------------------------------------- argument rules


def test_positional_filters_are_refused(mt5: SimTerminal) -> None:
    assert mt5.positions_get("EURUSD") is None and mt5.last_error() == UNNAMED
    assert mt5.orders_get("EURUSD") is None and mt5.last_error() == UNNAMED
    assert mt5.symbols_get("*USD*") is None and mt5.last_error() == UNNAMED
    assert mt5.positions_get(symbol="EURUSD") is not None and mt5.last_error() == (1, "Success")


def test_filter_types_are_checked(mt5: SimTerminal) -> None:
    assert mt5.positions_get(ticket="1") is None
    assert mt5.last_error() == (-2, 'Invalid "ticket" argument')
    assert mt5.history_deals_get(position="1") is None
    assert mt5.last_error() == (-2, 'Invalid "position" argument')
    assert mt5.history_deals_get() is None and mt5.last_error() == (-2, "Invalid arguments")
    assert mt5.history_deals_get("yesterday", 0) is None
    assert mt5.last_error() == (-2, "Invalid 1st unnamed argument")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("volume", 1),  # an int volume is the classic mistake
        ("price", 1),
        ("sl", "1.0"),
        ("action", 1.0),
        ("type", "buy"),
        ("type_filling", None),
        ("magic", 1.5),
        ("symbol", b"EURUSD"),
        ("position", "123"),
        ("deviation", 20.0),
    ],
)
def test_request_fields_are_type_checked(mt5: SimTerminal, field: str, value: object) -> None:
    for call in (mt5.order_send, mt5.order_check):
        assert call(_buy(**{field: value})) is None
        assert mt5.last_error() == (-2, f'Invalid "{field}" argument')
    assert mt5.positions_total() == 3  # nothing was executed


def test_comment_rules(mt5: SimTerminal) -> None:
    assert mt5.order_send(_buy(comment="x" * 32)) is None
    assert mt5.last_error() == (-2, 'Invalid "comment" argument')
    assert mt5.order_send(_buy(comment="tab\there")) is None
    assert mt5.last_error() == (-2, 'Invalid "comment" argument')
    ok = mt5.order_send(_buy(comment="y" * 31))
    assert ok.retcode == C.TRADE_RETCODE_DONE
    assert mt5.positions_get(ticket=ok.order)[0].comment == "y" * 31


def test_request_must_be_a_dict(mt5: SimTerminal) -> None:
    assert mt5.order_send([("action", 1)]) is None and mt5.last_error() == (-2, "Invalid arguments")


def test_omitted_keys_default_to_zero_in_the_echo(mt5: SimTerminal) -> None:
    r = mt5.order_send({"action": C.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 0.1, "type": 0})
    assert r.retcode == C.TRADE_RETCODE_DONE  # EURUSD allows FOK, the omitted default
    assert r.request.type_filling == C.ORDER_FILLING_FOK
    assert (r.request.price, r.request.comment, r.request.position) == (0.0, "", 0)


# ---------------------------------------------------------------- symbols


def test_symbols_are_realistic(mt5: SimTerminal) -> None:
    expected = {  # digits, contract, volume_max, filling bitmask, execution mode
        "EURUSD": (5, 100000.0, 100.0, 3, C.SYMBOL_TRADE_EXECUTION_MARKET),
        "GBPUSD": (5, 100000.0, 100.0, 2, C.SYMBOL_TRADE_EXECUTION_MARKET),
        "USDJPY": (3, 100000.0, 100.0, 1, C.SYMBOL_TRADE_EXECUTION_INSTANT),
        "XAUUSD": (2, 100.0, 50.0, 2, C.SYMBOL_TRADE_EXECUTION_MARKET),
    }
    for name, (digits, contract, vmax, filling, exemode) in expected.items():
        s = mt5.symbol_info(name)
        assert (s.digits, s.trade_contract_size, s.volume_max, s.filling_mode, s.trade_exemode) == (
            digits,
            contract,
            vmax,
            filling,
            exemode,
        )
        assert s.point == pytest.approx(10.0**-digits) and s.volume_min == 0.01 and s.volume_step == 0.01
        assert s.ask == pytest.approx(s.bid + s.spread * s.point)
    jpy = mt5.symbol_info("EURJPY")
    assert (jpy.currency_base, jpy.currency_profit, jpy.currency_margin) == ("EUR", "JPY", "EUR")
    assert mt5.symbols_total() == len(mt5.symbols_get()) >= 7


def test_tick_value_is_in_account_currency(mt5: SimTerminal) -> None:
    eu = mt5.symbol_info("EURUSD")
    assert eu.trade_tick_value == pytest.approx(1.0)  # 0.00001 x 100 000 USD
    uj = mt5.symbol_info("USDJPY")
    assert uj.trade_tick_value == pytest.approx(100.0 / uj.bid)  # 100 JPY per tick, in USD


def test_symbol_select_and_market_watch(mt5: SimTerminal) -> None:
    hidden = mt5.symbol_info("AUDUSD")
    assert hidden.visible is False and hidden.bid == 0.0
    assert mt5.symbol_info_tick("AUDUSD") is None and mt5.last_error() == (-4, "Terminal: Not found")
    assert mt5.symbol_select("AUDUSD", True) is True
    tick = mt5.symbol_info_tick("AUDUSD")
    assert tick.bid > 0 and tick.ask > tick.bid and tick.flags == C.TICK_FLAG_BID | C.TICK_FLAG_ASK
    assert mt5.symbol_select("NOPE") is False and mt5.last_error() == (-4, "Terminal: Not found")
    busy = mt5.positions_get()[0].symbol
    assert mt5.symbol_select(busy, False) is False  # cannot hide a symbol with open positions
    assert mt5.symbol_select("AUDUSD", "yes") is False
    assert mt5.last_error() == (-2, "Invalid 2nd unnamed argument")


def test_group_filters(mt5: SimTerminal) -> None:
    names = {s.name for s in mt5.symbols_get(group="*USD*,!*JPY*")}
    assert "EURUSD" in names and "XAUUSD" in names and "USDJPY" not in names and "EURJPY" not in names
    assert {s.name for s in mt5.symbols_get(group="eur*")} == {"EURUSD", "EURJPY"}
    for sym in ("EURUSD", "USDJPY"):
        assert (
            mt5.order_send(
                _buy(
                    sym,
                    price=mt5.symbol_info_tick(sym).ask,
                    deviation=10,
                    type_filling=0 if sym == "USDJPY" else 1,
                )
            ).retcode
            == 10009
        )
    everything = mt5.positions_get()
    only_jpy = mt5.positions_get(group="*JPY*")
    assert only_jpy and all("JPY" in p.symbol for p in only_jpy)
    assert len(mt5.positions_get(group="*")) == len(everything)
    assert all(p.symbol == "EURUSD" for p in mt5.positions_get(symbol="EURUSD"))


def test_positions_get_by_ticket_and_symbol_wins_over_ticket(mt5: SimTerminal) -> None:
    first = mt5.positions_get()[0]
    assert mt5.positions_get(ticket=first.ticket) == (first,)
    assert mt5.positions_get(ticket=1) == ()
    other = "GBPUSD" if first.symbol != "GBPUSD" else "EURUSD"
    assert all(p.symbol == other for p in mt5.positions_get(symbol=other, ticket=first.ticket))
    assert mt5.orders_get() == () and mt5.orders_total() == 0


def test_struct_types_are_tuples_with_attribute_access(mt5: SimTerminal) -> None:
    pos = mt5.positions_get()[0]
    assert pos[0] == pos.ticket and len(pos) == 19 and list(pos)[16] == pos.symbol
    assert type(pos).__name__ == "TradePosition"
