"""``SimTerminal``: a simulated MetaTrader 5 terminal shaped like the ``MetaTrader5`` module.

An instance has the package's 223 constants as attributes and its functions as
methods with the official argument rules: keyword-only filters, typed request
fields, one ``last_error()`` slot that every call overwrites, and None/False
with ``(-10004, 'No IPC connection')`` before ``initialize()``, after
``shutdown()`` and while the terminal is away. Calls are serialised by one
internal lock (the real module is not thread-safe either; the lock only keeps
the background trader from racing the client).

State lives in the SQLite ``state_file`` (see ``store``); prices come from the
seeded walk (``market``) or a price script (``script``); the control file
(``control``) and ``faults`` settings inject the failures a real terminal
produces, ``lag`` its late view of the server's changes.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import constants as C
from . import info
from .book import Account, Book, Pos
from .control import ControlWatcher, control_path, take_lost_reply
from .engine import COMMENTS, Engine, Plan, Rejected
from .faults import IPC_TIMEOUT, Faults
from .groups import matcher
from .lag import Lag
from .market import PriceFeed
from .money import Converter, margin, profit
from .queries import history
from .requests import (
    ApiError,
    check_calc,
    check_filter,
    check_filters,
    check_history,
    check_symbol,
    invalid,
    parse_request,
)
from .script import PriceScript, load_script
from .seeding import initial_changes
from .settings import SimSettings
from .store import Store
from .structs import (
    AccountInfo,
    OrderCheckResult,
    OrderSendResult,
    SymbolInfo,
    TerminalInfo,
    Tick,
    TradeDeal,
    TradeOrder,
    TradePosition,
    TradeRequest,
)
from .symbols import SPECS
from .trader import Trader
from .valuation import Valuer

log = logging.getLogger(__name__)

_OK = (C.RES_S_OK, "Success")
_NO_IPC = ApiError(C.RES_E_INTERNAL_FAIL_CONNECT, "No IPC connection")
_NOT_FOUND = ApiError(C.RES_E_NOT_FOUND, "Terminal: Not found")
_INIT_FAILED = ApiError(C.RES_E_INTERNAL_FAIL_INIT, "IPC initialize failed, MetaTrader 5 x64 not found")
_AUTH_FAILED = ApiError(C.RES_E_AUTH_FAILED, "Terminal: Authorization failed")
_FIRST_ORDER, _FIRST_DEAL = 500_000_001, 300_000_001  # distinct ranges: mixing them up finds nothing


class SimTerminal:
    """One simulated terminal logged into one account, persisted in ``settings.state_file``."""

    def __init__(self, settings: SimSettings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.state_file = Path(settings.state_file)
        self.control_file = control_path(self.state_file)
        self._clock = clock
        self._t = clock()
        self._lock = threading.RLock()
        self._error: tuple[int, str] = _OK
        self._session = False
        self._outage_until = 0.0
        self._request_id = 0
        self._latency = max(settings.faults.latency_ms, 0.0) / 1000.0
        self._offset_ms = round(settings.server_offset_hours * 3_600_000)
        self._selected = {s.name for s in SPECS.values() if s.visible}
        self._faults = Faults(settings.faults, settings.seed)
        self._control = ControlWatcher(self.state_file)
        self._lag = Lag(settings.faults.visibility_delay_ms, settings.faults.history_delay_ms)
        self._script: PriceScript | None = None
        if settings.price_path is not None:
            self._script = load_script(settings.price_path, SPECS)
        self._trader: Trader | None = None
        self._closed = False
        self._store = Store(self.state_file)
        with self._store.transaction():
            book = self._store.load_book()
            new = book is None
            if book is None:
                account = Account(
                    login=settings.login,
                    currency=settings.currency,
                    margin_mode=settings.margin_mode,
                    balance=0.0,  # the deposit deal below brings the balance
                    credit=0.0,
                    next_order=_FIRST_ORDER,
                    next_deal=_FIRST_DEAL,
                    created=self._t,
                )
                book = Book(account)
                self._store.create_account(book.account)
            self._wire(book)
            self._poll_control()  # pinned prices apply to the initial positions too
            if new:
                self._commit_changes(
                    initial_changes(book, settings, SPECS, self._quote, self.conv, self._now_msc())
                )

    def _wire(self, book: Book) -> None:
        s = self.settings
        self.book = book
        self.feed = PriceFeed(SPECS, s.seed, s.volatility, origin=book.account.created, script=self._script)
        self.conv = Converter(SPECS, book.account.currency, self._quote)
        self.valuer = Valuer(book, SPECS, self.conv, self._quote, self._price_key, s.leverage)
        self.engine = Engine(
            book,
            SPECS,
            self.conv,
            self._quote,
            self.valuer.totals,
            self._market_closed,
            self._trade_disabled,
            self._now_msc,
            leverage=s.leverage,
            commission_per_lot=s.commission_per_lot,
        )

    # ------------------------------------------------------------------ internals
    def _now_msc(self) -> int:
        return int(self._t * 1000) + self._offset_ms

    def _server_time(self) -> int:
        return self._now_msc() // 1000

    def _quote(self, symbol: str) -> tuple[float, float]:
        return self.feed.quote(symbol, self._t)

    def _price_key(self) -> tuple[int, int]:
        return self.feed.step(self._t), self.feed.version

    def _market_closed(self, symbol: str) -> bool:
        return self._faults.closed(symbol, self._server_time(), self._control.control.market_closed)

    def _trade_disabled(self, symbol: str) -> bool:
        disabled = self._control.control.trade_disabled
        return symbol in disabled or "*" in disabled

    def _autotrading(self) -> bool:
        auto = self._control.control.autotrading
        return (not self.settings.faults.autotrading_disabled) if auto is None else auto

    def _poll_control(self) -> None:
        if self._control.poll():
            c = self._control.control
            self.feed.set_overrides(c.prices, c.price_shift)

    def _sync(self) -> None:
        """Pick up what another process committed to the state file."""
        if self._store.changed_elsewhere():
            account = self._store.load_account()
            if account is not None:
                self.book.account = account
            self.book.positions = self._store.load_positions()
            self._store.load_history_into(self.book)
            self.book.version += 1

    def _commit_changes(self, ch: Any) -> None:
        with self._store.transaction():
            self._store.write(ch, self.book.account)
        self.book.apply(ch)

    def _begin(self) -> None:
        """Every call but last_error/initialize/shutdown: the IPC session must be alive."""
        self._t = self._clock()
        self._poll_control()
        if self._control.control.disconnected or self._t < self._outage_until:
            self._session = False
        if not self._session:
            raise _NO_IPC
        if self._faults.drop_link():
            self._session = False
            self._outage_until = self._t + self.settings.faults.disconnect_seconds
            raise _NO_IPC
        self._sync()

    def _api(
        self, fail: Any, fn: Callable[..., Any], *args: Any, check: Callable[..., Any] | None = None
    ) -> Any:
        """Run ``fn`` as one API call. ``check`` validates the arguments first (client side, before the
        IPC session is looked at); if it returns a value, ``fn`` gets that instead of ``args``."""
        if self._latency:
            time.sleep(self._latency)
        with self._lock:
            try:
                prepared = check(*args) if check is not None else None
                self._begin()
                result = fn(*args) if prepared is None else fn(prepared)
            except ApiError as exc:
                self._error = (exc.code, exc.message)
                return fail
            except sqlite3.Error:
                # the state file failed (disk full, read-only...): like the real module, fail, never raise
                log.exception("simulated terminal: state file error")
                self._error = (C.RES_E_FAIL, "Terminal: Call failed")
                return fail
            self._error = _OK
            return result

    # ------------------------------------------------------------------ connection
    def initialize(
        self,
        path: Any = None,
        *,
        login: Any = None,
        password: Any = None,
        server: Any = None,
        timeout: Any = None,
        portable: Any = None,
    ) -> bool:
        """Attach to the terminal (the account must match ``settings.login``/``server`` if given)."""
        with self._lock:
            try:
                for name, value, kind in (
                    ("path", path, str),
                    ("login", login, int),
                    ("password", password, str),
                    ("server", server, str),
                    ("timeout", timeout, int),
                    ("portable", portable, bool),
                ):
                    check_filter(name, value, kind)
                self._t = self._clock()
                self._poll_control()
                if self._closed or self._control.control.disconnected or self._t < self._outage_until:
                    raise _INIT_FAILED
                self._authorize(login, server)
            except ApiError as exc:
                self._error = (exc.code, exc.message)
                return False
            self._session = True
            self._lag.logged_in(self._t)
            self._sync()
            self._error = _OK
            return True

    def _authorize(self, login: int | None, server: str | None) -> None:
        if login is not None and login != self.book.account.login:
            raise _AUTH_FAILED
        if server is not None and server != self.settings.server:
            raise _AUTH_FAILED

    def login(self, login: Any, *, password: Any = None, server: Any = None, timeout: Any = None) -> bool:
        def check(login: Any, password: Any, server: Any, timeout: Any) -> None:
            check_filter("login", login, int)
            if login is None:
                raise invalid("login")
            check_filter("password", password, str)
            check_filter("server", server, str)
            check_filter("timeout", timeout, int)

        def run(login: int, password: Any, server: str | None, timeout: Any) -> bool:
            self._authorize(login, server)
            self._lag.logged_in(self._t)
            return True

        return bool(self._api(False, run, login, password, server, timeout, check=check))

    def shutdown(self) -> None:
        """Close the IPC session (the simulated terminal and its state keep running)."""
        with self._lock:
            self._session = False
            self._error = _OK

    def version(self) -> tuple[int, int, str] | None:
        return self._api(None, lambda: info.VERSION)

    def last_error(self) -> tuple[int, str]:
        with self._lock:
            return self._error

    def terminal_info(self) -> TerminalInfo | None:
        return self._api(
            None,
            lambda: info.terminal_info(
                connected=not self._control.control.server_disconnected,
                trade_allowed=self._autotrading(),
                path=str(self.state_file.parent),
            ),
        )

    def account_info(self) -> AccountInfo | None:
        return self._api(None, self._account_info)

    def _account_info(self) -> AccountInfo:
        acct = self.book.account
        floating, used = self.valuer.totals()
        return info.account_info(
            login=acct.login,
            leverage=self.settings.leverage,
            hedging=self.engine.hedging,
            balance=acct.balance,
            credit=acct.credit,
            floating=floating,
            margin=used,
            name="fxnb simulator",
            server=self.settings.server,
            currency=acct.currency,
        )

    # ------------------------------------------------------------------ positions & orders
    def positions_total(self) -> int | None:
        return self._api(None, lambda: len(self._shown_positions()))

    def _shown_positions(self) -> Mapping[int, Pos]:
        """The positions the client sees: the book's, or an older state while changes are in flight."""
        stale = self._lag.positions(self._t)
        return self.book.positions if stale is None else stale

    def positions_get(
        self, *args: Any, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> tuple[TradePosition, ...] | None:
        """Open positions; ``symbol`` wins over ``ticket`` (as documented); ``group`` filters further."""
        return self._api(None, self._positions_get, args, symbol, group, ticket, check=check_filters)

    def _positions_get(
        self, args: Any, symbol: str | None, group: str | None, ticket: int | None
    ) -> tuple[TradePosition, ...]:
        shown = self._shown_positions()
        if symbol is not None:
            rows: Iterable[TradePosition] = self.valuer.structs(
                p for p in shown.values() if p.symbol == symbol
            )
        elif ticket is not None:
            pos = shown.get(ticket)
            rows = self.valuer.structs([pos]) if pos is not None else ()
        elif shown is self.book.positions:
            rows = self.valuer.all()  # cached
        else:
            rows = self.valuer.structs(shown.values())
        if group is not None:
            match = matcher(group)
            rows = [p for p in rows if match(p.symbol)]
        return rows if isinstance(rows, tuple) else tuple(rows)

    def orders_total(self) -> int | None:
        return self._api(None, lambda: 0)

    def orders_get(
        self, *args: Any, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> tuple[TradeOrder, ...] | None:
        """Active pending orders: the simulator executes market orders only, so always empty."""
        return self._api(None, lambda *a: (), args, symbol, group, ticket, check=check_filters)

    # ------------------------------------------------------------------ symbols
    def symbols_total(self) -> int | None:
        return self._api(None, lambda: len(SPECS))

    def symbols_get(self, *args: Any, group: str | None = None) -> tuple[SymbolInfo, ...] | None:
        def run(args: Any, symbol: Any, group: str | None, ticket: Any) -> tuple[SymbolInfo, ...]:
            match = matcher(group) if group is not None else None
            return tuple(self._symbol_info(n) for n in SPECS if match is None or match(n))

        return self._api(None, run, args, None, group, None, check=check_filters)

    def _visible(self, symbol: str) -> bool:
        return symbol in self._selected or any(p.symbol == symbol for p in self.book.positions.values())

    def _symbol_info(self, symbol: str) -> SymbolInfo:
        bid, ask = self._quote(symbol)
        spec = SPECS[symbol]
        if self._trade_disabled(symbol):
            spec = replace(spec, trade_mode=C.SYMBOL_TRADE_MODE_DISABLED)
        return info.symbol_info(spec, bid, ask, self._server_time(), self._visible(symbol), self.conv)

    def symbol_info(self, symbol: Any) -> SymbolInfo | None:
        def run(symbol: str) -> SymbolInfo:
            if symbol not in SPECS:
                raise _NOT_FOUND
            return self._symbol_info(symbol)

        return self._api(None, run, symbol, check=check_symbol)

    def symbol_info_tick(self, symbol: Any) -> Tick | None:
        """The last tick; None for unknown symbols and for symbols not in Market Watch."""

        def run(symbol: str) -> Tick:
            if symbol not in SPECS or not self._visible(symbol):
                raise _NOT_FOUND
            bid, ask = self._quote(symbol)
            now = self._now_msc()
            return Tick(now // 1000, bid, ask, 0.0, 0, now, C.TICK_FLAG_BID | C.TICK_FLAG_ASK, 0.0)

        return self._api(None, run, symbol, check=check_symbol)

    def symbol_select(self, symbol: Any, enable: Any = True) -> bool:
        """Add to / remove from Market Watch; a symbol with open positions cannot be hidden."""

        def check(symbol: Any, enable: Any) -> None:
            check_symbol(symbol)
            if not isinstance(enable, bool):
                raise ApiError(C.RES_E_INVALID_PARAMS, "Invalid 2nd unnamed argument")

        def run(symbol: str, enable: bool) -> bool:
            if symbol not in SPECS:
                raise _NOT_FOUND
            if enable:
                self._selected.add(symbol)
            elif any(p.symbol == symbol for p in self.book.positions.values()):
                raise ApiError(C.RES_E_FAIL, "Terminal: Call failed")
            else:
                self._selected.discard(symbol)
            return True

        return bool(self._api(False, run, symbol, enable, check=check))

    # ------------------------------------------------------------------ trading
    def order_calc_profit(
        self, action: Any, symbol: Any, volume: Any, price_open: Any, price_close: Any
    ) -> float | None:
        def run(action: int, symbol: str, volume: float, price_open: float, price_close: float) -> float:
            spec = SPECS.get(symbol)
            if spec is None:
                raise _NOT_FOUND
            return profit(
                self.conv,
                spec,
                action == C.ORDER_TYPE_BUY,
                float(volume),
                float(price_open),
                float(price_close),
            )

        return self._api(None, run, action, symbol, volume, price_open, price_close, check=check_calc)

    def order_calc_margin(self, action: Any, symbol: Any, volume: Any, price: Any) -> float | None:
        def run(action: int, symbol: str, volume: float, price: float) -> float:
            spec = SPECS.get(symbol)
            if spec is None:
                raise _NOT_FOUND
            return round(margin(self.conv, spec, float(volume), self.settings.leverage, float(price)), 2)

        return self._api(None, run, action, symbol, volume, price, check=check_calc)

    def order_check(self, request: Any) -> OrderCheckResult | None:
        """Checks without executing: retcode 0 and comment 'Done' when the request would pass."""
        return self._api(None, self._order_check, request, check=parse_request)

    def _order_check(self, req: TradeRequest) -> OrderCheckResult:
        acct = self._account_info()
        current = (acct.balance, acct.equity, acct.profit, acct.margin)
        try:
            self._client_checks()
            plan = self.engine.plan(req)
        except Rejected as r:
            return OrderCheckResult(
                r.retcode, *current, acct.margin_free, acct.margin_level, COMMENTS.get(r.retcode, ""), req
            )
        balance, equity, floating, used = self.engine.projection(plan)
        level = round(equity / used * 100.0, 2) if used else 0.0
        return OrderCheckResult(
            0, balance, equity, floating, used, round(equity - used, 2), level, "Done", req
        )

    def _client_checks(self) -> None:
        if not self._autotrading():
            raise Rejected(C.TRADE_RETCODE_CLIENT_DISABLES_AT)
        if self._control.control.server_disconnected:
            raise Rejected(C.TRADE_RETCODE_CONNECTION)

    def order_send(self, request: Any) -> OrderSendResult | None:
        """Execute a request; inspect ``retcode`` (10009 on success)."""
        return self._api(None, self._order_send, request, check=parse_request)

    def _order_send(self, req: TradeRequest) -> OrderSendResult:
        self._request_id += 1
        result = self._execute(req)
        lost = self._faults.lost_reply()  # drawn on every call, so forced losses do not shift the sequence
        if self._reply_lost():
            lost = IPC_TIMEOUT
        if lost is not None:
            raise lost  # processed all the same: only the caller does not know the outcome
        return result

    def _reply_lost(self) -> bool:
        """Use up one of the control file's ``lose_next_replies`` (under the state file's write lock)."""
        if self._control.control.lose_next_replies <= 0:
            return False
        with self._store.transaction():
            taken = take_lost_reply(self.state_file)
        self._poll_control()
        return taken

    def _execute(self, req: TradeRequest) -> OrderSendResult:
        try:
            self._client_checks()
            with self._store.transaction():
                self._sync()
                plan = self.engine.plan(req)
                fault = self._faults.send_fault() if plan.kind != "sltp" else None
                if fault is not None and not self._faults.executes(fault):
                    return self._fault_result(fault, plan, req)
                plan = self._maybe_partial(plan)
                ch, deal, order = self.engine.changes(plan)
                self._store.write(ch, self.book.account)
        except Rejected as r:
            return OrderSendResult(
                r.retcode, 0, 0, 0.0, 0.0, 0.0, 0.0, COMMENTS.get(r.retcode, ""), 0, 0, req
            )
        self._lag.executing(self._t, self.book)
        self.book.apply(ch)
        if fault is not None:  # executed, yet answered 10011/10012: the truly ambiguous case
            return self._fault_result(fault, plan, req)
        executed = plan.kind != "sltp"  # a modification reports no deal, order, volume or prices
        retcode = C.TRADE_RETCODE_DONE_PARTIAL if plan.requested else C.TRADE_RETCODE_DONE
        return OrderSendResult(
            retcode=retcode,
            deal=deal,
            order=order,
            volume=plan.volume,
            price=plan.price,
            bid=plan.bid if executed else 0.0,
            ask=plan.ask if executed else 0.0,
            comment=COMMENTS[retcode],
            request_id=self._request_id,
            retcode_external=0,
            request=req,
        )

    def _maybe_partial(self, plan: Plan) -> Plan:
        """An IOC open, increase or close may fill only partly (``partial_fill_rate``); FOK never does."""
        if plan.kind not in ("open", "increase", "close") or plan.req.type_filling != C.ORDER_FILLING_IOC:
            return plan
        held = plan.pos.volume if plan.kind == "close" and plan.pos is not None else None
        filled = self._faults.partial_volume(plan.spec, plan.volume, held)
        return plan if filled is None else self.engine.partial(plan, filled)

    def _fault_result(self, retcode: int, plan: Plan, req: TradeRequest) -> OrderSendResult:
        """An injected answer (a refusal, or 10011/10012 whether executed or not) with no deal or order;
        a requote carries the new prices, like the real one."""
        bid, ask = (plan.bid, plan.ask) if retcode == C.TRADE_RETCODE_REQUOTE else (0.0, 0.0)
        return OrderSendResult(retcode, 0, 0, 0.0, 0.0, bid, ask, COMMENTS.get(retcode, ""), 0, 0, req)

    # ------------------------------------------------------------------ history
    def history_deals_get(
        self,
        date_from: Any = None,
        date_to: Any = None,
        *,
        group: str | None = None,
        ticket: int | None = None,
        position: int | None = None,
    ) -> tuple[TradeDeal, ...] | None:
        """Deals by date range (server-time bounds, inclusive), by order ticket, or by position id."""
        return self._api(
            None, self._history, date_from, date_to, group, ticket, position, True, check=check_history
        )

    def history_orders_get(
        self,
        date_from: Any = None,
        date_to: Any = None,
        *,
        group: str | None = None,
        ticket: int | None = None,
        position: int | None = None,
    ) -> tuple[TradeOrder, ...] | None:
        return self._api(
            None, self._history, date_from, date_to, group, ticket, position, False, check=check_history
        )

    def history_deals_total(self, date_from: Any, date_to: Any) -> int | None:
        return self._api(
            None, lambda f, t: len(self._history(f, t, None, None, None, True)), date_from, date_to
        )

    def history_orders_total(self, date_from: Any, date_to: Any) -> int | None:
        return self._api(
            None, lambda f, t: len(self._history(f, t, None, None, None, False)), date_from, date_to
        )

    def _history(self, *args: Any) -> tuple[Any, ...]:
        """``args`` end with ``deals`` (True: deals, False: history orders)."""
        return self._lag.history(self._t, history(self.book, *args), args[-1])

    # ------------------------------------------------------------------ simulator extras (not MT5 API)
    def start_trader(self) -> None:
        """Start the background trader (``settings.trader``) on a daemon thread."""
        with self._lock:
            if self._trader is None:
                t = self.settings.trader
                self._trader = Trader(
                    self._trader_open,
                    lambda: len(self.book.positions),
                    ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD", "EURJPY"),
                    interval=t.interval,
                    max_positions=t.max_positions,
                    seed=self.settings.seed,
                )
            trader = self._trader
        trader.start()

    def stop_trader(self) -> None:
        trader = self._trader
        if trader is not None:
            trader.stop()

    @property
    def trader(self) -> Trader | None:
        return self._trader

    def _trader_open(self, symbol: str, is_buy: bool, volume: float) -> bool:
        """A manual (GUI) market order: no IPC session, Algo Trading button or injected faults involved."""
        with self._lock:
            self._t = self._clock()
            self._poll_control()
            spec = SPECS[symbol]
            bid, ask = self._quote(symbol)
            req = TradeRequest(
                C.TRADE_ACTION_DEAL,
                0,
                0,
                symbol,
                volume,
                ask if is_buy else bid,
                0.0,
                0.0,
                0.0,
                0,
                C.ORDER_TYPE_BUY if is_buy else C.ORDER_TYPE_SELL,
                C.ORDER_FILLING_FOK if spec.filling_mode & 1 else C.ORDER_FILLING_IOC,
                C.ORDER_TIME_GTC,
                0,
                "",
                0,
                0,
            )
            try:
                with self._store.transaction():
                    self._sync()
                    plan = self.engine.plan(req)
                    ch, _, _ = self.engine.changes(plan, reason=C.DEAL_REASON_CLIENT)
                    self._store.write(ch, self.book.account)
            except Rejected:
                return False
            self.book.apply(ch)
            return True

    def close(self) -> None:
        """Stop the trader and close the state file (the API's ``shutdown`` keeps both). Afterwards the
        terminal behaves as if it had exited: every call fails with an IPC error."""
        self.stop_trader()
        with self._lock:
            if not self._closed:
                self._closed = True
                self._session = False
                self._store.close()

    def __enter__(self) -> SimTerminal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SimTerminal {self.state_file} login={self.book.account.login}>"


for _name, _value in C.table().items():
    setattr(SimTerminal, _name, _value)
del _name, _value


def create_terminal(settings: SimSettings) -> SimTerminal:
    """A terminal for ``settings``; starts the background trader when ``settings.trader.enabled``."""
    terminal = SimTerminal(settings)
    if settings.trader.enabled:
        terminal.start_trader()
    return terminal
