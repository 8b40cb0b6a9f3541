"""Break-even and trailing stops, computed by hand on a 5-digit symbol (1 point = 0.00001)."""

from __future__ import annotations

from collections.abc import Sequence

from guardkit import guards, pos, run, spec

from fxnb.guards import GuardSettings, StopMove
from fxnb.models import Position, Side

TRAIL = guards(trailing={"mode": "points", "distance": 300, "activation_points": 300})
BE = guards(breakeven={"trigger_points": 200, "buffer_points": 20})


def moves(book: Sequence[Position], settings: GuardSettings, **spec_changes: object) -> list[StopMove]:
    specs = {"EURUSD": spec(**spec_changes)}  # type: ignore[arg-type]
    return run(book, settings, specs=specs).stop_moves


def sl_after(p: Position, settings: GuardSettings, **spec_changes: object) -> float | None:
    out = moves([p], settings, **spec_changes)
    return out[0].sl if out else None


# -- trailing -------------------------------------------------------------------------------------


def test_trailing_buy_follows_the_bid_up_and_never_down() -> None:
    p = pos(1, price_open=1.10000, price_current=1.10250)
    assert sl_after(p, TRAIL) is None  # 250 points in profit < activation 300
    p = pos(1, price_open=1.10000, price_current=1.10400)
    [m] = moves([p], TRAIL)
    assert (m.sl, m.rule, m.previous_sl) == (1.10100, "trailing", 0.0)
    assert m.reason == "trailing: SL 300 points behind bid 1.104: none -> 1.10100"
    p = pos(1, price_open=1.10000, price_current=1.10500, sl=1.10100)
    assert sl_after(p, TRAIL) == 1.10200  # up with the price
    p = pos(1, price_open=1.10000, price_current=1.10300, sl=1.10200)
    assert sl_after(p, TRAIL) is None  # price fell back: the stop stays
    p = pos(1, price_open=1.10000, price_current=1.10500, sl=1.10199)
    assert sl_after(p, TRAIL) == 1.10200  # one point tighter is a move
    p = pos(1, price_open=1.10000, price_current=1.10500, sl=1.10200)
    assert sl_after(p, TRAIL) is None  # equal: nothing to send


def test_trailing_sell_follows_the_ask_down_and_never_up() -> None:
    p = pos(1, side=Side.SELL, price_open=1.10000, price_current=1.09600)
    [m] = moves([p], TRAIL)
    assert m.sl == 1.09900 and "behind ask 1.096" in m.reason
    p = pos(1, side=Side.SELL, price_open=1.10000, price_current=1.09500, sl=1.09900)
    assert sl_after(p, TRAIL) == 1.09800
    p = pos(1, side=Side.SELL, price_open=1.10000, price_current=1.09700, sl=1.09800)
    assert sl_after(p, TRAIL) is None  # price rose back: the stop stays


def test_trailing_respects_the_stops_level_and_rounds_away_from_the_price() -> None:
    p = pos(1, price_open=1.10000, price_current=1.10500)
    assert sl_after(p, TRAIL, stops_level=400) == 1.10100  # 300 < 400: pulled back to 400 points
    p = pos(1, price_open=1.10000, price_current=1.104003)  # an off-grid quote
    assert sl_after(p, TRAIL) == 1.10100  # 1.101003 rounded down for a buy
    p = pos(1, side=Side.SELL, price_open=1.10000, price_current=1.095997)
    assert sl_after(p, TRAIL) == 1.09900  # 1.098997 rounded up for a sell


def test_trailing_in_percent_of_the_price() -> None:
    s = guards(trailing={"mode": "percent", "distance": 0.5, "activation_points": 0})
    p = pos(1, price_open=1.10000, price_current=1.10400)
    assert sl_after(p, s) == 1.09848  # 1.104 x 0.5 % = 0.00552
    p = pos(1, price_open=1.10000, price_current=1.09990)  # 10 points in loss: not active yet
    assert sl_after(p, s) is None


def test_the_tp_is_carried_over_unchanged() -> None:
    [m] = moves([pos(1, price_open=1.1, price_current=1.104, tp=1.11)], TRAIL)
    assert m.tp == 1.11 and m.symbol == "EURUSD" and m.ticket == 1


def test_no_move_inside_the_freeze_level_or_with_a_tp_the_server_would_refuse() -> None:
    p = pos(1, price_open=1.1, price_current=1.105, sl=1.10460)  # SL 40 points from the price
    assert sl_after(p, TRAIL, freeze_level=50) is None
    assert sl_after(p, TRAIL, freeze_level=30) is None  # no freeze, but 1.10200 < 1.10460: no improvement
    p = pos(1, price_open=1.1, price_current=1.105, tp=1.10540)  # TP 40 points away
    assert sl_after(p, TRAIL, freeze_level=50) is None
    assert sl_after(p, TRAIL, stops_level=50) is None  # TP closer than the stops level: SLTP would fail
    assert sl_after(p, TRAIL, stops_level=30) == 1.10200


# -- break-even -----------------------------------------------------------------------------------


def test_breakeven_with_buffer() -> None:
    assert sl_after(pos(1, price_open=1.1, price_current=1.10150), BE) is None  # 150 < 200 points
    [m] = moves([pos(1, price_open=1.1, price_current=1.10200)], BE)
    assert (m.sl, m.rule) == (1.10020, "breakeven")
    assert m.reason == ("breakeven: 200 points in profit >= 200; SL to open 1.1 + 20 points: none -> 1.10020")
    sell = pos(1, side=Side.SELL, price_open=1.1, price_current=1.09800)
    assert sl_after(sell, BE) == 1.09980


def test_breakeven_never_for_a_position_already_better_protected() -> None:
    assert sl_after(pos(1, price_open=1.1, price_current=1.103, sl=1.10050), BE) is None
    assert sl_after(pos(1, price_open=1.1, price_current=1.103, sl=1.10020), BE) is None
    assert sl_after(pos(1, price_open=1.1, price_current=1.103, sl=1.09900), BE) == 1.10020  # a worse SL improves
    sell = pos(1, side=Side.SELL, price_open=1.1, price_current=1.097, sl=1.09950)
    assert sl_after(sell, BE) is None


def test_breakeven_waits_for_the_stops_level_instead_of_settling_for_less() -> None:
    # stops level 200: at 1.10200 the SL may be at most 1.10000 < 1.10020 -> wait
    assert sl_after(pos(1, price_open=1.1, price_current=1.10200), BE, stops_level=200) is None
    assert sl_after(pos(1, price_open=1.1, price_current=1.10250), BE, stops_level=200) == 1.10020
    sell = pos(1, side=Side.SELL, price_open=1.1, price_current=1.09800)
    assert sl_after(sell, BE, stops_level=200) is None


def test_both_on_the_more_protective_wins() -> None:
    s = guards(breakeven={"trigger_points": 200, "buffer_points": 20},
               trailing={"distance": 300, "activation_points": 100})
    [m] = moves([pos(1, price_open=1.1, price_current=1.10250)], s)
    assert (m.sl, m.rule) == (1.10020, "breakeven")  # trailing would be 1.09950
    [m] = moves([pos(1, price_open=1.1, price_current=1.10600)], s)
    assert (m.sl, m.rule) == (1.10300, "trailing")


def test_positions_without_spec_or_with_broken_prices_are_skipped() -> None:
    book = [pos(1, symbol="GBPUSD", price_current=1.104), pos(2, price_current=float("nan")),
            pos(3, price_current=1.104, sl=float("inf"))]
    assert moves(book, TRAIL) == []
    assert moves([pos(1, price_current=1.104)], TRAIL, point=0.0) == []


def test_several_positions_sorted_by_ticket() -> None:
    book = [pos(9, price_current=1.104), pos(4, side=Side.SELL, price_current=1.096), pos(5, price_current=1.1)]
    assert [(m.ticket, m.sl) for m in moves(book, TRAIL)] == [(4, 1.099), (9, 1.101)]
