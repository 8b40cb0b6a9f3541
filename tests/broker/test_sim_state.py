"""State file, seeding, history, prices over time, the background trader and settings."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from _sim_clock import Clock

from fxnb.broker.sim import FaultSettings, SimSettings, SimTerminal, TraderSettings, create_terminal
from fxnb.broker.sim import constants as C

ROOT = Path(__file__).resolve().parents[2]
DONE = C.TRADE_RETCODE_DONE


def _settings(tmp_path: Path, **section: object) -> SimSettings:
    base: dict[str, object] = {"volatility": 0.0, "positions": {"count": 0}}
    base.update(section)
    return SimSettings.from_mapping(base, tmp_path)


def _open(tmp_path: Path, clock: Clock | None = None, **section: object) -> SimTerminal:
    s = _settings(tmp_path, **section)
    t = SimTerminal(s, clock=clock) if clock is not None else create_terminal(s)
    assert t.initialize()
    return t


def buy(mt5: SimTerminal, symbol: str = "EURUSD", volume: float = 0.1):
    return mt5.order_send(
        {
            "action": C.TRADE_ACTION_DEAL,
            "symbol": symbol,
            "volume": volume,
            "type": C.ORDER_TYPE_BUY,
            "type_filling": C.ORDER_FILLING_IOC,
        }
    )


def close(mt5: SimTerminal, ticket: int, volume: float | None = None):
    (p,) = mt5.positions_get(ticket=ticket)
    return mt5.order_send(
        {
            "action": C.TRADE_ACTION_DEAL,
            "symbol": p.symbol,
            "type": 1 - p.type,
            "volume": p.volume if volume is None else volume,
            "position": ticket,
            "type_filling": C.ORDER_FILLING_IOC,
        }
    )


def _book(mt5: SimTerminal) -> list[tuple[object, ...]]:
    return [
        (p.ticket, p.identifier, p.symbol, p.type, p.volume, p.price_open, p.time_msc)
        for p in mt5.positions_get()
    ]


# ---------------------------------------------------------------- persistence


def test_state_survives_a_restart_without_reseeding(tmp_path: Path) -> None:
    a = _open(tmp_path, positions={"count": 5})
    seeded = a.positions_get()
    opened = buy(a, volume=0.5)
    assert close(a, opened.order, 0.2).retcode == DONE
    assert close(a, seeded[0].ticket).retcode == DONE
    book, account, deals = _book(a), a.account_info(), a.history_deals_get(0, 2**40)
    a.close()

    b = _open(tmp_path, positions={"count": 5})  # same settings: must not seed again
    try:
        assert _book(b) == book and len(book) == 5
        assert b.positions_get(ticket=opened.order)[0].volume == pytest.approx(0.3)
        assert b.account_info().balance == account.balance
        assert b.history_deals_get(0, 2**40) == deals
        again = buy(b)
        assert again.order > opened.order and again.deal > max(d.ticket for d in deals)  # counters persisted
        gone = seeded[0]
        again_close = b.order_send(
            {
                "action": 1,
                "symbol": gone.symbol,
                "volume": gone.volume,
                "type": 1 - gone.type,
                "position": gone.ticket,
                "type_filling": 1,
                "price": gone.price_current,
                "deviation": 1000,
            }
        )
        assert (
            again_close.retcode == C.TRADE_RETCODE_POSITION_CLOSED
        )  # a known ticket, closed before the restart
    finally:
        b.close()
    assert (tmp_path / "sim_terminal.db").exists()


def test_two_live_terminals_on_one_state_file_see_each_other(tmp_path: Path) -> None:
    a = _open(tmp_path)
    b = _open(tmp_path)
    try:
        r = buy(a)
        assert [p.ticket for p in b.positions_get()] == [r.order]
        assert close(b, r.order).retcode == DONE
        assert a.positions_total() == 0
        assert (
            a.order_send(
                {
                    "action": 1,
                    "symbol": "EURUSD",
                    "volume": 0.1,
                    "type": 1,
                    "position": r.order,
                    "type_filling": 1,
                }
            ).retcode
            == C.TRADE_RETCODE_POSITION_CLOSED
        )
        assert a.account_info().balance == b.account_info().balance
        assert [d.ticket for d in a.history_deals_get(position=r.order)] == [
            d.ticket for d in b.history_deals_get(position=r.order)
        ]
        tickets = {buy(a).order, buy(b).order, buy(a).order}
        assert len(tickets) == 3  # no ticket collisions between the two writers
    finally:
        a.close()
        b.close()


def test_state_file_is_sqlite_in_wal_mode(tmp_path: Path) -> None:
    import sqlite3

    mt5 = _open(tmp_path, state_file="nested/dir/state.db")
    buy(mt5)
    mt5.close()
    db = sqlite3.connect(tmp_path / "nested/dir/state.db")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT COUNT(*) FROM positions").fetchone()[0] == 1
    finally:
        db.close()


def test_timing_sanity_print(tmp_path: Path) -> None:
    """Prints timings (never asserted): 10,000-position reads and 1,000 closes with write-through."""
    t0 = time.perf_counter()
    mt5 = _open(tmp_path, positions={"count": 10_000})
    created = time.perf_counter() - t0
    try:
        write_prices = {"EURUSD": 1.09}
        from fxnb.broker.sim import write_control

        write_control(mt5.state_file, prices=write_prices)  # invalidate the cache once
        t0 = time.perf_counter()
        positions = mt5.positions_get()
        read = time.perf_counter() - t0
        assert len(positions) == 10_000
        acct = mt5.account_info()
        assert acct.profit == pytest.approx(sum(p.profit for p in positions), abs=1e-6)
        t0 = time.perf_counter()
        for p in positions[:1000]:
            filling = (
                C.ORDER_FILLING_FOK if p.symbol in ("EURUSD", "USDJPY", "EURJPY") else C.ORDER_FILLING_IOC
            )
            r = mt5.order_send(
                {
                    "action": 1,
                    "symbol": p.symbol,
                    "volume": p.volume,
                    "type": 1 - p.type,
                    "position": p.ticket,
                    "price": p.price_current,
                    "deviation": 20,
                    "type_filling": filling,
                }
            )
            assert r.retcode == DONE, r
        closes = time.perf_counter() - t0
        assert mt5.positions_total() == 9_000
        print(
            f"\nseed 10k: {created * 1e3:.0f} ms; positions_get(10k) uncached: {read * 1e3:.1f} ms; "
            f"1000 closes: {closes * 1e3:.0f} ms, i.e. {closes * 1e3:.0f} us per close"
        )
    finally:
        mt5.close()


# ---------------------------------------------------------------- seeding


def _seed_view(mt5: SimTerminal) -> list[tuple[object, ...]]:
    return [(p.symbol, p.type, p.volume, p.price_open) for p in mt5.positions_get()]


def test_seeded_positions_are_reproducible_and_mixed(tmp_path: Path) -> None:
    a = _open(tmp_path / "a", positions={"count": 12}, seed=42)
    b = _open(tmp_path / "b", positions={"count": 12}, seed=42)
    c = _open(tmp_path / "c", positions={"count": 12}, seed=43)
    try:
        assert _seed_view(a) == _seed_view(b) != _seed_view(c)
        positions = a.positions_get()
        assert len(positions) == 12
        assert sum(p.profit > 0 for p in positions) == 6 and sum(p.profit < 0 for p in positions) == 6
        assert len({p.symbol for p in positions}) >= 3 and {p.type for p in positions} == {0, 1}
        assert all(p.time < positions[-1].time or p is positions[-1] for p in positions)  # oldest first
        assert all(p.reason == C.POSITION_REASON_CLIENT for p in positions)
        for p in positions:
            (deal,) = a.history_deals_get(position=p.identifier)
            assert (deal.entry, deal.volume, deal.price, deal.time_msc) == (
                0,
                p.volume,
                p.price_open,
                p.time_msc,
            )
    finally:
        for t in (a, b, c):
            t.close()


def test_explicit_position_list(tmp_path: Path) -> None:
    listed = [
        {"symbol": "EURUSD", "type": "buy", "volume": 1.0, "price_open": 1.08000, "magic": 7, "comment": "a"},
        {"symbol": "USDJPY", "type": "sell", "volume": 0.5},
        {"symbol": "XAUUSD", "volume": 0.1},
    ]
    mt5 = _open(tmp_path, positions={"count": 2, "list": listed})
    try:
        positions = mt5.positions_get()
        assert len(positions) == 5
        eu = next(p for p in positions if p.magic == 7)
        assert (eu.symbol, eu.type, eu.volume, eu.price_open, eu.comment) == ("EURUSD", 0, 1.0, 1.08, "a")
        assert eu.profit == pytest.approx(500.0)  # bid 1.08500
        uj = next(p for p in positions if p.symbol == "USDJPY" and p.volume == 0.5 and p.type == 1)
        assert uj.price_open == 150.000  # a sell opens at the bid
        assert any(p.symbol == "XAUUSD" and p.type == 0 and p.price_open == 2350.30 for p in positions)
    finally:
        mt5.close()


# ---------------------------------------------------------------- history


def test_history_by_position_date_range_and_balance_deal(tmp_path: Path) -> None:
    mt5 = _open(tmp_path, balance=25000.0)
    try:
        r = buy(mt5, volume=0.3)
        close(mt5, r.order, 0.1)
        out = close(mt5, r.order)
        by_pos = mt5.history_deals_get(position=r.order)
        assert [d.entry for d in by_pos] == [C.DEAL_ENTRY_IN, C.DEAL_ENTRY_OUT, C.DEAL_ENTRY_OUT]
        assert [d.volume for d in by_pos] == [0.3, 0.1, 0.2]
        everything = mt5.history_deals_get(0, 2**40)
        balance = everything[0]
        assert (balance.type, balance.profit, balance.symbol, balance.position_id, balance.order) == (
            C.DEAL_TYPE_BALANCE,
            25000.0,
            "",
            0,
            0,
        )
        assert everything[1:] == by_pos
        assert mt5.history_deals_total(0, 2**40) == 4
        last = by_pos[-1].time
        assert mt5.history_deals_get(last + 1, 2**40) == ()
        assert mt5.history_deals_get(balance.time, balance.time) == (balance,)
        assert mt5.history_deals_get(0, 2**40, group="*USD*") == by_pos
        assert mt5.history_deals_get(ticket=out.order) == (by_pos[-1],)  # ticket= is the ORDER ticket
        assert mt5.history_deals_get(ticket=out.deal) == ()  # a deal ticket finds nothing
        assert [o.ticket for o in mt5.history_orders_get(0, 2**40)] == [d.order for d in by_pos]
        assert mt5.history_orders_total(0, 2**40) == 3
    finally:
        mt5.close()


def test_history_times_are_server_time(tmp_path: Path) -> None:
    mt5 = _open(tmp_path)
    try:
        r = buy(mt5)
        utc_now = datetime.now(UTC)
        # the classic bug: "now" in UTC as date_to misses the deals of the last server_offset hours
        assert mt5.history_deals_get(utc_now - timedelta(days=1), utc_now, group="EURUSD") == ()
        found = mt5.history_deals_get(
            utc_now - timedelta(days=1), utc_now + timedelta(days=1), group="EURUSD"
        )
        assert [d.order for d in found] == [r.order]
        naive_server_now = (utc_now + timedelta(hours=2)).replace(tzinfo=None) + timedelta(seconds=5)
        assert len(mt5.history_deals_get(naive_server_now - timedelta(hours=1), naive_server_now)) == 1
    finally:
        mt5.close()


# ---------------------------------------------------------------- prices over time


def test_volatility_zero_freezes_prices(tmp_path: Path) -> None:
    clock = Clock()
    mt5 = _open(tmp_path, clock)
    try:
        first = mt5.symbol_info_tick("XAUUSD")
        clock.now += 3 * 86400 + 17.5
        later = mt5.symbol_info_tick("XAUUSD")
        assert (first.bid, first.ask) == (later.bid, later.ask) == (2350.00, 2350.30)
        assert later.time - first.time == 3 * 86400 + 17
    finally:
        mt5.close()


def test_price_walk_moves_with_time_and_is_reproducible(tmp_path: Path) -> None:
    ca, cb = Clock(), Clock()
    a = _open(tmp_path / "a", ca, volatility=1.0, seed=9)
    b = _open(tmp_path / "b", cb, volatility=1.0, seed=9)
    try:
        path_a, path_b = [], []
        for step in (1, 60, 3600, 7200, 86400):
            ca.now = cb.now = 1_700_000_000.0 + step
            path_a.append(a.symbol_info_tick("EURUSD").bid)
            path_b.append(b.symbol_info_tick("EURUSD").bid)
        assert path_a == path_b
        assert len(set(path_a)) > 3  # it moves
        assert all(abs(p / 1.085 - 1) < 0.05 for p in path_a)  # realistic FX magnitudes
        spec_spread = a.symbol_info("EURUSD").spread * a.symbol_info("EURUSD").point
        tick = a.symbol_info_tick("EURUSD")
        assert tick.ask - tick.bid == pytest.approx(spec_spread)
    finally:
        a.close()
        b.close()


def test_price_path_continues_across_restart(tmp_path: Path) -> None:
    clock = Clock()
    a = _open(tmp_path, clock, volatility=1.0)
    clock.now += 5000
    before = a.symbol_info_tick("GBPUSD").bid
    a.close()
    b = _open(tmp_path, clock, volatility=1.0)
    try:
        assert b.symbol_info_tick("GBPUSD").bid == before
    finally:
        b.close()


# ---------------------------------------------------------------- trader


def test_trader_opens_positions_up_to_the_limit(tmp_path: Path) -> None:
    mt5 = create_terminal(_settings(tmp_path, trader={"enabled": True, "interval": 0.01, "max_positions": 3}))
    try:
        assert mt5.trader is not None and mt5.trader.running
        deadline = time.monotonic() + 10
        while len(mt5.book.positions) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        mt5.stop_trader()
        assert not mt5.trader.running
        assert mt5.initialize()
        positions = mt5.positions_get()
        assert len(positions) == 3  # never above max_positions
        assert all(p.reason == C.POSITION_REASON_CLIENT and p.magic == 0 for p in positions)
        assert mt5.trader.step() is False  # at the limit it opens nothing
    finally:
        mt5.close()


def test_trader_respects_market_hours(tmp_path: Path) -> None:
    mt5 = _open(tmp_path, faults={"market_closed": ["*"]}, trader={"interval": 60, "max_positions": 5})
    try:
        mt5.start_trader()
        assert mt5.trader.step() is False and mt5.positions_total() == 0
    finally:
        mt5.close()


# ---------------------------------------------------------------- settings


def test_settings_defaults_equal_config_json(tmp_path: Path) -> None:
    section = json.loads((ROOT / "config.json").read_text())["broker"]["sim"]
    from_config = SimSettings.from_mapping(section, tmp_path)
    defaults = SimSettings()
    assert from_config.state_file == tmp_path / section["state_file"]
    assert from_config == SimSettings(state_file=tmp_path / defaults.state_file)
    assert SimSettings.from_mapping({}, tmp_path) == from_config
    assert defaults.faults == FaultSettings() and defaults.trader == TraderSettings()


def test_settings_from_mapping_reads_every_key(tmp_path: Path) -> None:
    s = SimSettings.from_mapping(
        {
            "state_file": "x/y.db",
            "seed": 3,
            "volatility": 0.5,
            "margin_mode": "netting",
            "balance": 500,
            "currency": "USD",
            "leverage": 30,
            "server_offset_hours": 3,
            "positions": {"count": 4, "list": [{"symbol": "EURUSD", "volume": 0.1}]},
            "trader": {"enabled": True, "interval": 1, "max_positions": 9},
            "faults": {
                "requote_rate": 0.1,
                "reject_rate": 0.2,
                "disconnect_rate": 0.3,
                "disconnect_seconds": 2,
                "market_closed": ["EURUSD", {"symbol": "GBPUSD", "from": "22:00", "to": "23:00"}],
                "autotrading_disabled": True,
                "latency_ms": 4,
            },
        },
        tmp_path,
    )
    assert s.state_file == tmp_path / "x/y.db" and (s.seed, s.volatility, s.leverage) == (3, 0.5, 30)
    assert not s.hedging and s.balance == 500.0 and s.server_offset_hours == 3.0
    assert (s.positions_count, s.positions_list) == (4, ({"symbol": "EURUSD", "volume": 0.1},))
    assert s.trader == TraderSettings(True, 1.0, 9)
    assert s.faults.market_closed[1] == {"symbol": "GBPUSD", "from": "22:00", "to": "23:00"}
    assert (s.faults.requote_rate, s.faults.latency_ms, s.faults.autotrading_disabled) == (0.1, 4.0, True)


def test_account_mode_is_fixed_by_the_state_file(tmp_path: Path) -> None:
    a = _open(tmp_path, margin_mode="netting")
    a.close()
    b = _open(tmp_path, margin_mode="hedging")
    try:
        assert b.account_info().margin_mode == C.ACCOUNT_MARGIN_MODE_RETAIL_NETTING
    finally:
        b.close()


def test_server_offset_is_configurable(tmp_path: Path) -> None:
    clock = Clock()
    mt5 = _open(tmp_path, clock, server_offset_hours=3)
    try:
        assert mt5.symbol_info_tick("EURUSD").time == int(clock.now) + 3 * 3600
    finally:
        mt5.close()


def test_netting_account_seeds_one_position_per_symbol(tmp_path: Path) -> None:
    listed = [{"symbol": "EURUSD", "volume": 0.1}, {"symbol": "EURUSD", "volume": 0.2, "type": "sell"}]
    mt5 = _open(tmp_path, margin_mode="netting", positions={"count": 8, "list": listed})
    try:
        positions = mt5.positions_get()
        symbols = [p.symbol for p in positions]
        assert len(symbols) == len(set(symbols)) >= 2
        eu = mt5.positions_get(symbol="EURUSD")
        assert [(p.type, p.volume) for p in eu] == [(C.POSITION_TYPE_BUY, 0.1)]  # the first entry wins
    finally:
        mt5.close()


def test_a_closed_terminal_cannot_be_initialized_again(tmp_path: Path) -> None:
    mt5 = _open(tmp_path)
    mt5.close()
    mt5.close()  # idempotent
    assert mt5.positions_total() is None and mt5.last_error() == (-10004, "No IPC connection")
    assert mt5.initialize() is False and mt5.last_error()[0] == -10003


def test_concurrent_clients_and_trader_keep_the_books_consistent(tmp_path: Path) -> None:
    import threading

    mt5 = _open(tmp_path, volatility=1.0, trader={"interval": 0.001, "max_positions": 1000})
    mt5.start_trader()
    errors: list[object] = []

    def worker(symbol: str) -> None:
        for _ in range(30):
            r = buy(mt5, symbol, 0.02)
            if r is None or r.retcode != DONE:
                errors.append(r)
                continue
            out = close(mt5, r.order, 0.01)
            out2 = close(mt5, r.order)
            if out.retcode != DONE or out2.retcode != DONE:
                errors.append((out, out2))

    threads = [threading.Thread(target=worker, args=(s,)) for s in ("EURUSD", "GBPUSD", "XAUUSD", "EURUSD")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    mt5.stop_trader()
    try:
        assert errors == []
        deals = mt5.history_deals_get(0, 2**40)
        realised = sum(d.profit + d.commission + d.swap + d.fee for d in deals)
        assert mt5.account_info().balance == pytest.approx(realised, abs=0.005)
        assert len({d.ticket for d in deals}) == len(deals)
        open_ids = {p.identifier for p in mt5.positions_get()}
        for p in mt5.positions_get():  # every open position is the trader's: the clients closed all theirs
            assert p.reason == C.POSITION_REASON_CLIENT and p.identifier in open_ids
        volume_in = sum(d.volume for d in deals if d.entry == C.DEAL_ENTRY_IN)
        volume_out = sum(d.volume for d in deals if d.entry == C.DEAL_ENTRY_OUT)
        assert volume_in - volume_out == pytest.approx(sum(p.volume for p in mt5.positions_get()))
    finally:
        mt5.close()
