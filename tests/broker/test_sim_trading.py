"""Trading on the simulated terminal: profit arithmetic, closes, retcodes, hedging and netting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fxnb.broker.sim import SimSettings, SimTerminal, create_terminal, write_control
from fxnb.broker.sim import constants as C
from fxnb.volume import partial_volume

DONE = C.TRADE_RETCODE_DONE
FILLING = {
    "EURUSD": 0,
    "GBPUSD": 1,
    "USDJPY": 0,
    "XAUUSD": 1,
    "EURJPY": 0,
    "USDCHF": 0,
}  # an allowed ORDER_FILLING_*


def _terminal(tmp_path: Path, **section: object) -> SimTerminal:
    base: dict[str, object] = {"volatility": 0.0, "positions": {"count": 0}}
    base.update(section)
    t = create_terminal(SimSettings.from_mapping(base, tmp_path))
    assert t.initialize()
    return t


@pytest.fixture
def mt5(tmp_path: Path) -> Iterator[SimTerminal]:
    t = _terminal(tmp_path)
    yield t
    t.close()


@pytest.fixture
def netting(tmp_path: Path) -> Iterator[SimTerminal]:
    t = _terminal(tmp_path, margin_mode="netting")
    yield t
    t.close()


def set_bid(mt5: SimTerminal, **bids: float) -> None:
    write_control(mt5.state_file, prices=bids)


def deal(mt5: SimTerminal, symbol: str, side: int, volume: float, **extra: object):
    """A market request the way a careful adapter builds it (fresh price, allowed filling)."""
    tick = mt5.symbol_info_tick(symbol)
    req: dict[str, object] = {
        "action": C.TRADE_ACTION_DEAL,
        "symbol": symbol,
        "volume": volume,
        "type": side,
        "price": tick.ask if side == C.ORDER_TYPE_BUY else tick.bid,
        "deviation": 20,
        "type_filling": FILLING[symbol],
        "magic": 770077,
        "comment": "test",
    }
    req.update(extra)
    return mt5.order_send(req)


def close(mt5: SimTerminal, ticket: int, volume: float | None = None, **extra: object):
    pos = mt5.positions_get(ticket=ticket)
    p = pos[0] if pos else None
    symbol = extra.pop("symbol", p.symbol if p else "EURUSD")
    side = extra.pop("type", C.ORDER_TYPE_SELL if (p is None or p.type == 0) else C.ORDER_TYPE_BUY)
    vol = volume if volume is not None else (p.volume if p else 0.1)
    return deal(mt5, symbol, side, vol, position=ticket, **extra)


# ---------------------------------------------------------------- hand-computed profit


def test_eurusd_buy_one_lot_ten_pips_is_100_usd(mt5: SimTerminal) -> None:
    set_bid(mt5, EURUSD=1.09990)  # spread 10 points -> ask 1.10000
    r = deal(mt5, "EURUSD", C.ORDER_TYPE_BUY, 1.0)
    assert (r.retcode, r.price, r.bid, r.ask) == (DONE, 1.10000, 1.09990, 1.10000)
    set_bid(mt5, EURUSD=1.10100)
    pos = mt5.positions_get(ticket=r.order)[0]
    assert (pos.price_open, pos.price_current, pos.profit) == (1.10000, 1.10100, 100.00)
    balance = mt5.account_info().balance
    out = close(mt5, r.order)
    assert out.retcode == DONE and out.price == 1.10100
    assert mt5.history_deals_get(ticket=out.order)[0].profit == 100.00
    assert mt5.account_info().balance == pytest.approx(balance + 100.00)


def test_usdjpy_profit_is_converted_at_the_closing_price(mt5: SimTerminal) -> None:
    set_bid(mt5, USDJPY=149.988)  # spread 12 points -> ask 150.000
    r = deal(mt5, "USDJPY", C.ORDER_TYPE_BUY, 1.0)
    assert r.retcode == DONE and r.price == 150.000
    set_bid(mt5, USDJPY=150.300)
    pos = mt5.positions_get(ticket=r.order)[0]
    assert pos.profit == round(30000 / 150.300, 2) == 199.60
    assert mt5.order_calc_profit(C.ORDER_TYPE_BUY, "USDJPY", 1.0, 150.000, 150.300) == 199.60
    out = close(mt5, r.order)
    assert out.retcode == DONE and mt5.history_deals_get(ticket=out.order)[0].profit == 199.60


def test_usdjpy_sell_side(mt5: SimTerminal) -> None:
    set_bid(mt5, USDJPY=150.300)
    r = deal(mt5, "USDJPY", C.ORDER_TYPE_SELL, 1.0)
    assert r.retcode == DONE and r.price == 150.300
    set_bid(mt5, USDJPY=149.988)  # a sell closes at the ask, 150.000
    pos = mt5.positions_get(ticket=r.order)[0]
    assert pos.price_current == 150.000 and pos.profit == 200.00  # 30 000 JPY / 150.000
    assert mt5.order_calc_profit(C.ORDER_TYPE_SELL, "USDJPY", 1.0, 150.300, 150.000) == 200.00


def test_xauusd_contract_100(mt5: SimTerminal) -> None:
    set_bid(mt5, XAUUSD=1999.70)  # spread 30 points -> ask 2000.00
    r = deal(mt5, "XAUUSD", C.ORDER_TYPE_BUY, 0.10)
    assert r.retcode == DONE and r.price == 2000.00
    set_bid(mt5, XAUUSD=2010.00)
    assert mt5.positions_get(ticket=r.order)[0].profit == 100.00
    assert mt5.order_calc_profit(C.ORDER_TYPE_BUY, "XAUUSD", 0.1, 2000.0, 2010.0) == 100.00


def test_order_calc_margin(mt5: SimTerminal) -> None:
    set_bid(mt5, EURUSD=1.10000, XAUUSD=2000.00)
    assert mt5.order_calc_margin(C.ORDER_TYPE_BUY, "USDJPY", 1.0, 150.0) == 1000.00  # 100 000 USD / 100
    assert mt5.order_calc_margin(C.ORDER_TYPE_BUY, "EURUSD", 1.0, 1.2) == 1200.00  # at the given price
    assert mt5.order_calc_margin(C.ORDER_TYPE_SELL, "XAUUSD", 0.5, 2000.0) == 1000.00
    assert mt5.order_calc_margin(C.ORDER_TYPE_BUY, "NOPE", 1.0, 1.0) is None
    assert mt5.last_error() == (-4, "Terminal: Not found")
    assert mt5.order_calc_profit(7, "EURUSD", 1.0, 1.0, 1.1) is None
    assert mt5.last_error() == (-2, "Invalid 1st unnamed argument")
    assert mt5.order_calc_profit(C.ORDER_TYPE_BUY, "EURUSD", "1", 1.0, 1.1) is None
    assert mt5.last_error() == (-2, "Invalid 3rd unnamed argument")


def test_eurjpy_converts_through_usdjpy(mt5: SimTerminal) -> None:
    set_bid(mt5, USDJPY=160.000, EURJPY=170.000)
    r = deal(mt5, "EURJPY", C.ORDER_TYPE_BUY, 1.0)
    set_bid(mt5, USDJPY=160.000, EURJPY=170.518)  # ask was 170.018: +0.500 x 100 000 = 50 000 JPY
    assert mt5.positions_get(ticket=r.order)[0].profit == round(50000 / 160.000, 2)


def test_account_identities(mt5: SimTerminal) -> None:
    set_bid(mt5, EURUSD=1.10000, USDJPY=150.000, XAUUSD=2000.00)
    for sym, side, vol in (("EURUSD", 0, 1.0), ("USDJPY", 1, 0.5), ("XAUUSD", 0, 0.2)):
        assert deal(mt5, sym, side, vol).retcode == DONE
    set_bid(mt5, EURUSD=1.10250, USDJPY=149.500, XAUUSD=1995.00)
    acct = mt5.account_info()
    positions = mt5.positions_get()
    assert acct.profit == pytest.approx(sum(p.profit + p.swap for p in positions), abs=1e-9)
    assert acct.equity == pytest.approx(acct.balance + acct.credit + acct.profit, abs=1e-9)
    expected_margin = (1.0 * 100000 / 100 * 1.10250) + (0.5 * 100000 / 100) + (0.2 * 100 / 100 * 1995.00)
    assert acct.margin == pytest.approx(expected_margin, abs=0.01)
    assert acct.margin_free == pytest.approx(acct.equity - acct.margin, abs=0.01)
    assert acct.margin_level == pytest.approx(acct.equity / acct.margin * 100, abs=0.01)
    for p in positions:
        assert close(mt5, p.ticket).retcode == DONE
    flat = mt5.account_info()
    assert (flat.margin, flat.margin_level, flat.profit) == (0.0, 0.0, 0.0)
    assert flat.equity == flat.balance


# ---------------------------------------------------------------- closing


def test_full_close_removes_the_position_and_records_out_deal(mt5: SimTerminal) -> None:
    r = deal(mt5, "EURUSD", C.ORDER_TYPE_BUY, 0.5)
    assert mt5.positions_total() == 1
    out = close(mt5, r.order)
    assert out.retcode == DONE and out.comment == "Request executed" and out.volume == 0.5
    assert out.deal and out.order and out.deal != out.order
    assert mt5.positions_get(ticket=r.order) == () and mt5.positions_total() == 0
    entries = [(d.entry, d.type, d.volume) for d in mt5.history_deals_get(position=r.order)]
    assert entries == [(C.DEAL_ENTRY_IN, C.DEAL_TYPE_BUY, 0.5), (C.DEAL_ENTRY_OUT, C.DEAL_TYPE_SELL, 0.5)]


def test_partial_close_keeps_ticket_and_identifier(mt5: SimTerminal) -> None:
    set_bid(mt5, EURUSD=1.09990)
    r = deal(mt5, "EURUSD", C.ORDER_TYPE_BUY, 1.0)
    before = mt5.positions_get(ticket=r.order)[0]
    set_bid(mt5, EURUSD=1.10050)
    out = close(mt5, r.order, 0.4)
    assert out.retcode == DONE and out.volume == 0.4
    after = mt5.positions_get(ticket=r.order)[0]
    assert (after.ticket, after.identifier, after.volume) == (before.ticket, before.identifier, 0.6)
    assert after.time_update_msc >= before.time_update_msc
    out_deal = mt5.history_deals_get(ticket=out.order)[0]
    assert out_deal.entry == C.DEAL_ENTRY_OUT and out_deal.position_id == before.identifier
    assert out_deal.profit == 20.00  # 5 pips x 0.4 lot x 100 000
    assert after.profit == 30.00  # the remaining 0.6 lot


def test_close_volume_larger_than_position_is_10038(mt5: SimTerminal) -> None:
    r = deal(mt5, "EURUSD", C.ORDER_TYPE_BUY, 0.3)
    out = close(mt5, r.order, 0.5)
    assert out.retcode == C.TRADE_RETCODE_INVALID_CLOSE_VOLUME
    assert (out.deal, out.order, out.volume, out.price, out.bid, out.ask, out.request_id) == (
        0,
        0,
        0.0,
        0.0,
        0.0,
        0.0,
        0,
    )
    assert mt5.positions_get(ticket=r.order)[0].volume == 0.3


def test_dust_remainder_is_refused_like_the_volume_policy(mt5: SimTerminal) -> None:
    # USDCHF: volume_min 0.10, step 0.01. Closing 0.07 of 0.15 would leave an unsellable 0.08.
    assert mt5.symbol_select("USDCHF", True)
    info = mt5.symbol_info("USDCHF")
    assert (info.volume_min, info.volume_step) == (0.10, 0.01)
    r = deal(mt5, "USDCHF", C.ORDER_TYPE_BUY, 0.25)
    out = close(mt5, r.order, 0.07)
    assert out.retcode == C.TRADE_RETCODE_INVALID_VOLUME and out.comment == "Invalid volume"
    assert mt5.positions_get(ticket=r.order)[0].volume == 0.25
    policy = partial_volume(0.25, 0.2, volume_min=info.volume_min, volume_step=info.volume_step)
    assert policy == 0.15  # the policy keeps the remainder at volume_min, which the server accepts
    assert close(mt5, r.order, policy).retcode == DONE
    assert mt5.positions_get(ticket=r.order)[0].volume == pytest.approx(0.10)
    assert partial_volume(0.10, 0.05, volume_min=0.10, volume_step=0.01) is None  # at the minimum already
    assert close(mt5, r.order, 0.05).retcode == C.TRADE_RETCODE_INVALID_VOLUME  # below volume_min
    assert close(mt5, r.order).retcode == DONE  # a full close is always possible


def test_a_position_below_the_minimum_can_still_be_closed_in_full(tmp_path: Path) -> None:
    listed = [{"symbol": "USDCHF", "type": "buy", "volume": 0.05}]  # below USDCHF's volume_min of 0.10
    mt5 = _terminal(tmp_path, positions={"count": 0, "list": listed})
    try:
        (p,) = mt5.positions_get()
        assert close(mt5, p.ticket, 0.04).retcode == C.TRADE_RETCODE_INVALID_VOLUME
        assert close(mt5, p.ticket).retcode == DONE and mt5.positions_total() == 0
    finally:
        mt5.close()


def test_closing_an_already_closed_ticket_is_10036(mt5: SimTerminal) -> None:
    r = deal(mt5, "EURUSD", C.ORDER_TYPE_BUY, 0.1)
    assert close(mt5, r.order).retcode == DONE
    again = close(mt5, r.order, 0.1, symbol="EURUSD", type=C.ORDER_TYPE_SELL)
    assert again.retcode == C.TRADE_RETCODE_POSITION_CLOSED and again.comment == "Position already closed"


def test_unknown_ticket_is_invalid_request(mt5: SimTerminal) -> None:
    out = close(mt5, 123456, 0.1, symbol="EURUSD", type=C.ORDER_TYPE_SELL)
    assert out.retcode == C.TRADE_RETCODE_INVALID and out.comment == "Invalid request"


def test_close_with_the_same_direction_or_wrong_symbol_is_invalid(mt5: SimTerminal) -> None:
    r = deal(mt5, "EURUSD", C.ORDER_TYPE_BUY, 0.1)
    assert close(mt5, r.order, type=C.ORDER_TYPE_BUY).retcode == C.TRADE_RETCODE_INVALID
    assert close(mt5, r.order, symbol="GBPUSD", type_filling=1).retcode == C.TRADE_RETCODE_INVALID
    assert mt5.positions_total() == 1


def test_hedging_opens_a_second_position_without_position_field(mt5: SimTerminal) -> None:
    a = deal(mt5, "EURUSD", C.ORDER_TYPE_BUY, 0.1)
    b = deal(mt5, "EURUSD", C.ORDER_TYPE_SELL, 0.1)
    assert a.order != b.order and mt5.positions_total() == 2
    assert mt5.account_info().margin_mode == C.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING


# ---------------------------------------------------------------- server checks


@pytest.mark.parametrize(
    ("symbol", "filling", "retcode"),
    [
        ("EURUSD", C.ORDER_FILLING_FOK, DONE),
        ("EURUSD", C.ORDER_FILLING_IOC, DONE),
        ("EURUSD", C.ORDER_FILLING_RETURN, C.TRADE_RETCODE_INVALID_FILL),
        ("GBPUSD", C.ORDER_FILLING_FOK, C.TRADE_RETCODE_INVALID_FILL),
        ("GBPUSD", C.ORDER_FILLING_IOC, DONE),
        ("USDJPY", C.ORDER_FILLING_FOK, DONE),
        ("USDJPY", C.ORDER_FILLING_IOC, C.TRADE_RETCODE_INVALID_FILL),
        ("XAUUSD", C.ORDER_FILLING_FOK, C.TRADE_RETCODE_INVALID_FILL),
        ("XAUUSD", C.ORDER_FILLING_IOC, DONE),
        ("XAUUSD", C.ORDER_FILLING_BOC, C.TRADE_RETCODE_INVALID_FILL),
    ],
)
def test_filling_mode_against_symbol_mask(mt5: SimTerminal, symbol: str, filling: int, retcode: int) -> None:
    r = deal(mt5, symbol, C.ORDER_TYPE_BUY, 0.01, type_filling=filling)
    assert r.retcode == retcode
    if retcode == C.TRADE_RETCODE_INVALID_FILL:
        assert r.comment == "Unsupported filling mode" and mt5.positions_total() == 0


def test_omitted_filling_means_fok_and_fails_on_ioc_only_symbols(mt5: SimTerminal) -> None:
    req = {"action": C.TRADE_ACTION_DEAL, "symbol": "GBPUSD", "volume": 0.1, "type": C.ORDER_TYPE_BUY}
    assert mt5.order_send(req).retcode == C.TRADE_RETCODE_INVALID_FILL
    assert mt5.order_check(req).retcode == C.TRADE_RETCODE_INVALID_FILL


@pytest.mark.parametrize("volume", [0.0, 0.005, 0.015, 100.01, 51.0, float("nan")])
def test_invalid_volumes(mt5: SimTerminal, volume: float) -> None:
    symbol = "XAUUSD" if volume == 51.0 else "EURUSD"
    assert deal(mt5, symbol, C.ORDER_TYPE_BUY, volume).retcode == C.TRADE_RETCODE_INVALID_VOLUME


def test_float_noise_in_volume_is_accepted(mt5: SimTerminal) -> None:
    assert deal(mt5, "EURUSD", C.ORDER_TYPE_BUY, 0.1 + 0.2).retcode == DONE  # 0.30000000000000004


def test_instant_execution_checks_price_and_deviation(mt5: SimTerminal) -> None:
    set_bid(mt5, USDJPY=149.988)
    far = deal(mt5, "USDJPY", C.ORDER_TYPE_BUY, 0.1, price=150.030, deviation=20)  # 30 points away
    assert far.retcode == C.TRADE_RETCODE_INVALID_PRICE and far.comment == "Invalid price"
    assert deal(mt5, "USDJPY", C.ORDER_TYPE_BUY, 0.1, price=0.0).retcode == C.TRADE_RETCODE_INVALID_PRICE
    near = deal(mt5, "USDJPY", C.ORDER_TYPE_BUY, 0.1, price=150.015, deviation=20)
    assert near.retcode == DONE and near.price == 150.000  # filled at the market
    # market execution ignores price and deviation
    assert deal(mt5, "EURUSD", C.ORDER_TYPE_BUY, 0.1, price=2.0, deviation=0).retcode == DONE


def test_no_money(mt5: SimTerminal) -> None:
    r = deal(mt5, "XAUUSD", C.ORDER_TYPE_BUY, 50.0)  # 50 x 100 oz x ~2350 / 100 = ~117k margin
    assert r.retcode == C.TRADE_RETCODE_NO_MONEY and r.comment == "No money"
    check = mt5.order_check(
        {"action": 1, "symbol": "XAUUSD", "volume": 50.0, "type": 0, "type_filling": C.ORDER_FILLING_IOC}
    )
    assert check.retcode == C.TRADE_RETCODE_NO_MONEY


def test_unknown_action_symbol_and_pending_orders_are_invalid(mt5: SimTerminal) -> None:
    assert deal(mt5, "EURUSD", C.ORDER_TYPE_BUY, 0.1, action=99).retcode == C.TRADE_RETCODE_INVALID
    assert deal(mt5, "EURUSD", C.ORDER_TYPE_BUY_LIMIT, 0.1).retcode == C.TRADE_RETCODE_INVALID
    assert deal(mt5, "EURUSD", C.ORDER_TYPE_BUY, 0.1, action=C.TRADE_ACTION_PENDING).retcode == 10013
    assert deal(mt5, "EURUSD", C.ORDER_TYPE_BUY, 0.1, action=C.TRADE_ACTION_REMOVE, order=5).retcode == 10013
    req = {"action": 1, "symbol": "NOPE", "volume": 0.1, "type": 0}
    assert mt5.order_send(req).retcode == C.TRADE_RETCODE_INVALID


def test_order_check_passes_with_retcode_0_done_and_projects_the_account(mt5: SimTerminal) -> None:
    set_bid(mt5, EURUSD=1.10000)
    req = {"action": 1, "symbol": "EURUSD", "volume": 1.0, "type": 0, "type_filling": C.ORDER_FILLING_FOK}
    before = mt5.account_info()
    check = mt5.order_check(req)
    assert (check.retcode, check.comment) == (0, "Done")
    assert check.margin == pytest.approx(1100.0) and check.balance == before.balance
    assert check.equity == pytest.approx(before.equity - 10.0)  # the spread, 10 points on 1 lot
    assert check.margin_free == pytest.approx(check.equity - check.margin)
    assert check.request.volume == 1.0
    assert mt5.positions_total() == 0  # nothing executed


def test_sltp_modify(mt5: SimTerminal) -> None:
    set_bid(mt5, EURUSD=1.10000)
    r = deal(mt5, "EURUSD", C.ORDER_TYPE_BUY, 0.1)
    req = {
        "action": C.TRADE_ACTION_SLTP,
        "symbol": "EURUSD",
        "position": r.order,
        "sl": 1.09500,
        "tp": 1.10500,
    }
    ok = mt5.order_send(req)
    assert ok.retcode == DONE and (ok.deal, ok.order) == (0, 0)
    pos = mt5.positions_get(ticket=r.order)[0]
    assert (pos.sl, pos.tp) == (1.09500, 1.10500)
    assert mt5.order_send(req).retcode == C.TRADE_RETCODE_NO_CHANGES
    wrong_side = dict(req, sl=1.10100)  # a buy's stop loss above the bid
    assert mt5.order_send(wrong_side).retcode == C.TRADE_RETCODE_INVALID_STOPS
    assert mt5.order_send(dict(req, tp=1.09900)).retcode == C.TRADE_RETCODE_INVALID_STOPS
    assert len(mt5.history_deals_get(position=r.order)) == 1  # no deals for a modification


def test_stops_level_on_usdjpy(mt5: SimTerminal) -> None:
    set_bid(mt5, USDJPY=150.000)
    r = deal(mt5, "USDJPY", C.ORDER_TYPE_SELL, 0.1)
    too_close = {"action": C.TRADE_ACTION_SLTP, "position": r.order, "sl": 150.015}  # ask 150.012, level 10
    assert mt5.order_send(too_close).retcode == C.TRADE_RETCODE_INVALID_STOPS
    assert mt5.order_send(dict(too_close, sl=150.030)).retcode == DONE
    bad_open = deal(mt5, "USDJPY", C.ORDER_TYPE_BUY, 0.1, sl=150.5)
    assert bad_open.retcode == C.TRADE_RETCODE_INVALID_STOPS


def test_commission_is_charged_per_deal(tmp_path: Path) -> None:
    mt5 = _terminal(tmp_path, commission_per_lot=3.5)
    try:
        set_bid(mt5, EURUSD=1.10000)
        r = deal(mt5, "EURUSD", C.ORDER_TYPE_BUY, 2.0)
        out = close(mt5, r.order)
        deals = mt5.history_deals_get(position=r.order)
        assert [d.commission for d in deals] == [-7.0, -7.0]
        assert mt5.account_info().balance == pytest.approx(10000.0 - 14.0 - 20.0)  # + spread loss 20 USD
        assert out.retcode == DONE
    finally:
        mt5.close()


def test_history_order_per_request(mt5: SimTerminal) -> None:
    r = deal(mt5, "EURUSD", C.ORDER_TYPE_BUY, 0.2)
    out = close(mt5, r.order)
    orders = mt5.history_orders_get(position=r.order)
    assert [o.ticket for o in orders] == [r.order, out.order]
    assert all(o.state == C.ORDER_STATE_FILLED and o.position_id == r.order for o in orders)
    assert mt5.history_orders_get(ticket=out.order)[0].type == C.ORDER_TYPE_SELL


def test_results_carry_server_time(mt5: SimTerminal) -> None:
    import time

    r = deal(mt5, "EURUSD", C.ORDER_TYPE_BUY, 0.1)
    pos = mt5.positions_get(ticket=r.order)[0]
    offset = pos.time - time.time()
    assert 2 * 3600 - 5 < offset < 2 * 3600 + 5  # server_offset_hours defaults to 2
    assert pos.time_msc // 1000 == pos.time


# ---------------------------------------------------------------- netting


def test_netting_increase_reduce_and_close(netting: SimTerminal) -> None:
    mt5 = netting
    assert mt5.account_info().margin_mode == C.ACCOUNT_MARGIN_MODE_RETAIL_NETTING
    set_bid(mt5, EURUSD=1.09990)
    a = deal(mt5, "EURUSD", C.ORDER_TYPE_BUY, 0.1)  # at 1.10000
    set_bid(mt5, EURUSD=1.10090)
    b = deal(mt5, "EURUSD", C.ORDER_TYPE_BUY, 0.1)  # at 1.10100: same position grows
    (pos,) = mt5.positions_get(symbol="EURUSD")
    assert pos.ticket == a.order and pos.volume == pytest.approx(0.2)
    assert pos.price_open == pytest.approx(1.10050)
    assert mt5.history_deals_get(ticket=b.order)[0].entry == C.DEAL_ENTRY_IN
    c = deal(mt5, "EURUSD", C.ORDER_TYPE_SELL, 0.05)  # no position field: reduces
    assert c.retcode == DONE and mt5.positions_get(symbol="EURUSD")[0].volume == pytest.approx(0.15)
    d = deal(mt5, "EURUSD", C.ORDER_TYPE_SELL, 0.15)
    assert d.retcode == DONE and mt5.positions_total() == 0
    assert mt5.history_deals_get(ticket=d.order)[0].entry == C.DEAL_ENTRY_OUT


def test_netting_reversal_is_one_inout_deal(netting: SimTerminal) -> None:
    mt5 = netting
    set_bid(mt5, EURUSD=1.09990)
    a = deal(mt5, "EURUSD", C.ORDER_TYPE_BUY, 0.3)  # at 1.10000
    set_bid(mt5, EURUSD=1.10200)
    rev = deal(mt5, "EURUSD", C.ORDER_TYPE_SELL, 0.5)  # sells 0.3 to close and 0.2 to open short
    assert rev.retcode == DONE and rev.volume == 0.5
    (pos,) = mt5.positions_get()
    assert pos.type == C.POSITION_TYPE_SELL and pos.volume == pytest.approx(0.2)
    assert pos.identifier == a.order and pos.ticket == rev.order != a.order  # identifier kept, ticket changes
    assert pos.price_open == 1.10200
    inout = mt5.history_deals_get(ticket=rev.order)[0]
    assert inout.entry == C.DEAL_ENTRY_INOUT and inout.volume == 0.5 and inout.position_id == a.order
    assert inout.profit == pytest.approx(60.0)  # 20 pips on the 0.3 lot that was closed
    assert close(mt5, a.order).retcode == C.TRADE_RETCODE_POSITION_CLOSED  # the old ticket is gone
    assert close(mt5, pos.ticket, 0.3).retcode == C.TRADE_RETCODE_INVALID_CLOSE_VOLUME  # explicit close


def test_netting_explicit_close_by_ticket(netting: SimTerminal) -> None:
    r = deal(netting, "GBPUSD", C.ORDER_TYPE_SELL, 0.4)
    assert close(netting, r.order, 0.1).retcode == DONE
    assert netting.positions_get(ticket=r.order)[0].volume == pytest.approx(0.3)
