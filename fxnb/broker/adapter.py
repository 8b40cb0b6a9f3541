"""The one class that talks to a MetaTrader5-shaped module.

``Broker`` wraps "something module-shaped": the official ``MetaTrader5``
module (Windows), the simulator's terminal object, or an ``mt5linux`` RPyC
client. It never asks which one it has. Everything the rest of fxnb sees is a
``fxnb.models`` value or an ``fxnb.errors`` exception.

Rules this module keeps (``mt5_api.md`` §1, §4, §5; the seed system's §5C):

* Every module call, and the ``last_error()`` that explains a failed call, runs
  under one ``threading.RLock``: the module has one global session and one
  global error slot.
* A read that returns ``None`` is an error, never an empty book. Only
  ``None`` with ``last_error() == (1, ...)`` means "nothing there".
* Structs are read by attribute (the real ones have no ``_fields``), or by iteration
  once ``_asdict()`` has shown the official field order.
* Closing re-reads the position and the tick before every send, retries only
  what ``retcodes.classify`` calls RETRY, and after an ambiguous answer re-reads
  the position and sends only what is still open: it never closes more than
  was asked for.
* Nothing raises after a request may have reached the server; the
  ``CloseResult`` says what is known instead.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import Any

from fxnb.broker import retcodes as rc
from fxnb.broker.closing import CloseJob, _f, net_result
from fxnb.broker.requests import DEAL_FIELDS, EPS, filling_candidates, sanitize_comment
from fxnb.credentials import Credentials
from fxnb.errors import BrokerError, BrokerUnavailable
from fxnb.gcpause import gc_paused
from fxnb.models import (
    POSITION_FIELDS,
    Account,
    Book,
    CloseResult,
    Position,
    Side,
    Snapshot,
    SymbolSpec,
    TerminalStatus,
)

__all__ = [
    "AdapterSettings",
    "Broker",
    "Credentials",
    "ModifyResult",
    "DEAL_FIELDS",
    "sanitize_comment",
    "filling_candidates",
]

log = logging.getLogger(__name__)

# settle_deals' window starts this long before the first send: the server offset is estimated to
# within two minutes (server_offset_s), and deal times are whole seconds.
_WINDOW_MARGIN_S = 300

# -- TradePosition -> Book, in bulk ----------------------------------------------------------------
# A poll converts the whole book (10,000 positions in the benchmark), so this is the adapter's hot
# loop, and it runs column by column in C: the structs are transposed with zip, each column is cast
# with map (the values are exactly those of ``int(p.ticket)``, ``float(p.price_open)``, ...), the
# volume rounding and the side are computed per distinct raw value (a book has a handful of
# volumes and two types), and no Position object is built (see ``models.Book``).
# The official field order of TradePosition (mt5_api.md §2). When a read's structs are tuples in
# that order (struct-sequences and namedtuples, checked with ``_asdict()``), they are transposed by
# iteration; anything else is read by attribute.
_TRADE_POSITION = (
    "ticket", "time", "time_msc", "time_update", "time_update_msc", "type", "magic", "identifier", "reason",
    "volume", "price_open", "sl", "tp", "price_current", "swap", "profit", "symbol", "comment", "external_id",
)  # fmt: skip
# The struct attribute behind each Book column (POSITION_FIELDS; the side comes from "type").
_BOOK_SOURCES = tuple("type" if name == "side" else name for name in POSITION_FIELDS)
_BOOK_INDEXES = tuple(_TRADE_POSITION.index(name) for name in _BOOK_SOURCES)
_BOOK_ATTRS = attrgetter(*_BOOK_SOURCES)
# How each Book column is cast from its struct attribute; the side is computed from "type" (_side).
_CASTS: dict[str, Callable[[Any], Any]] = {
    "ticket": int, "symbol": str, "volume": _f, "price_open": float, "price_current": float, "profit": float,
    "swap": float, "sl": float, "tp": float, "magic": int, "identifier": int, "comment": str, "time": int,
    "time_update": int,
}  # fmt: skip


def _side(type_: Any, buy_type: int) -> Side:
    return Side.BUY if int(type_) == buy_type else Side.SELL


def _official_tuples(raw: tuple[Any, ...]) -> bool:
    """Whether every struct of ``raw`` is a tuple of one type whose items are TradePosition's fields in order."""
    first = raw[0]
    if not isinstance(first, tuple) or len(first) != len(_TRADE_POSITION) or len(set(map(type, raw))) != 1:
        return False
    asdict = getattr(first, "_asdict", None)
    return asdict is not None and tuple(asdict()) == _TRADE_POSITION


def _volumes(raw: tuple[Any, ...]) -> tuple[float, ...]:
    table = {v: _f(v) for v in set(raw)}
    if all(v > 0.0 for v in table):  # no NaN, and no 0.0/-0.0 (equal keys that round to different signs)
        return tuple(map(table.__getitem__, raw))
    return tuple(map(_f, raw))


def book_from_structs(raw: Iterable[Any], buy_type: int) -> Book:
    """``TradePosition`` structs (anything with those attributes) as a :class:`Book`, in order."""
    raw = tuple(raw)
    if not raw:
        return Book()
    if _official_tuples(raw):
        every = tuple(zip(*raw, strict=True))
        columns = [every[i] for i in _BOOK_INDEXES]
    else:
        columns = list(zip(*map(_BOOK_ATTRS, raw), strict=True))
    cast: list[tuple[Any, ...]] = []
    for name, col in zip(POSITION_FIELDS, columns, strict=True):
        if name == "side":
            sides = {t: _side(t, buy_type) for t in set(col)}
            cast.append(tuple(map(sides.__getitem__, col)))
        elif name == "volume":
            cast.append(_volumes(col))
        else:
            cast.append(tuple(map(_CASTS[name], col)))
    return Book(*cast)


def position_from_struct(p: Any, buy_type: int) -> Position:
    """One ``TradePosition`` as a ``Position`` (a close's re-read): the casts of :func:`book_from_structs`."""
    values = _BOOK_ATTRS(p)
    return Position(*(_side(v, buy_type) if name == "side" else _CASTS[name](v)
                      for name, v in zip(POSITION_FIELDS, values, strict=True)))


def positions_from_structs(raw: Iterable[Any], buy_type: int) -> tuple[Position, ...]:
    """``TradePosition`` structs (anything with those attributes) as ``Position`` values, in order."""
    return book_from_structs(raw, buy_type).positions


@dataclass(frozen=True)
class AdapterSettings:
    """How the adapter trades and connects. The first seven come from ``config.json``'s ``broker`` section."""

    deviation: int = 20  # points; only used by Instant/Request execution
    magic: int = 0  # written on every close request
    comment: str = "fxnb"  # default request comment (sanitised to [A-Za-z0-9 _.-], <= 26 chars)
    max_retries: int = 3  # resends after RETRY/AMBIGUOUS/DONE_PARTIAL answers (FIX corrections are extra)
    path: str | None = None  # terminal64.exe for initialize(); None: the running/last terminal
    timeout_ms: int = 60_000  # initialize() timeout
    portable: bool = False
    retry_backoff_s: float = 0.1  # first wait before a resend; doubles each time
    retry_backoff_max_s: float = 2.0
    deal_poll_attempts: int = 10  # after DONE, wait this many times for the OUT deal to show up...
    deal_poll_interval_s: float = 0.1  # ...this long each (the real terminal lags behind its own reply)
    reconnect_backoff_s: float = 0.5  # ensure_connected(): first wait; doubles
    reconnect_backoff_max_s: float = 30.0


@dataclass(frozen=True)
class ModifyResult:
    """Outcome of ``modify_sltp``. ``ok`` is True for DONE and for NO_CHANGES (already at those levels)."""

    ticket: int
    ok: bool
    sl: float
    tp: float
    retcode: int | None = None
    message: str = ""
    attempts: int = 0


class Broker:
    """The adapter. Build it with ``fxnb.broker.make_broker(cfg)``; tests may build it directly.

    :param terminal: a module-shaped object (has ``initialize``), or a zero-argument
        callable returning one; the callable is called again on reconnect after a
        transport failure (an mt5linux connection that died).
    :param transport_errors: exceptions a call may raise when the link to the
        terminal breaks (RPyC raises ``EOFError``/``TimeoutError``); they are
        handled like an IPC error.
    :param release: called with a module object that is being discarded (closes an RPyC link).
    :param sleep: injected so tests never really wait; ``clock`` is monotonic seconds,
        ``wall_clock`` UTC epoch seconds for ``Snapshot.taken_at``.
    """

    def __init__(
        self,
        terminal: Any,
        *,
        settings: AdapterSettings | None = None,
        credentials: Credentials | None = None,
        transport_errors: tuple[type[BaseException], ...] = (OSError, EOFError),
        release: Callable[[Any], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if hasattr(terminal, "initialize"):
            self._factory: Callable[[], Any] = lambda: terminal
            self._mt5: Any = terminal
        elif callable(terminal):
            self._factory = terminal
            self._mt5 = None
        else:
            raise TypeError(f"Broker needs a MetaTrader5-shaped object or a factory, got {terminal!r}")
        self.settings = settings or AdapterSettings()
        self._credentials = credentials or Credentials()
        self._transport_errors = transport_errors
        self._release = release
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.RLock()  # every module call + its last_error()
        self._trade_lock = threading.Lock()  # one close/modify at a time: the volume bookkeeping relies on it
        self._connected = False
        self._stale = False  # the transport broke: re-create the module before the next initialize
        self._specs: dict[str, SymbolSpec] = {}
        self._filling: dict[str, int] = {}
        self._consts: dict[str, int] = {}
        self._out_entry_set: frozenset[int] | None = None
        self._hedging: bool | None = None  # the account's margin mode, from the last account() read
        self._unsettled: dict[int, CloseJob] = {}  # ticket -> job whose deal read waits for settle_deals

    # ------------------------------------------------------------------ module access
    @property
    def connected(self) -> bool:
        """True after a successful ``connect`` until a call finds the terminal unreachable or ``shutdown``."""
        return self._connected

    def _module(self) -> Any:
        if self._mt5 is None or self._stale:
            old, self._mt5 = self._mt5, None
            if old is not None and self._release is not None:
                try:
                    self._release(old)
                except Exception:  # noqa: BLE001 - a dead link may fail to close; it is gone either way
                    log.debug("releasing the old terminal link failed", exc_info=True)
            try:
                self._mt5 = self._factory()
            except BrokerError:
                raise
            except Exception as exc:
                raise BrokerUnavailable(f"cannot reach the terminal: {exc}") from exc
            self._stale = False
            self._specs.clear()
        return self._mt5

    def _call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, tuple[int, str] | None]:
        """Call ``mt5.<name>``; on ``None``/``False`` also return ``last_error()``, under the same lock."""
        with self._lock:
            try:
                mt5 = self._module()
            except BrokerUnavailable as exc:  # the link cannot even be opened: nothing was sent
                return None, (rc.RES_E_INTERNAL_FAIL_CONNECT, str(exc))
            try:
                result = getattr(mt5, name)(*args, **kwargs)
                if result is None or result is False:
                    code, message = mt5.last_error()
                    return result, (int(code), str(message))
                return result, None
            except self._transport_errors as exc:
                self._stale = True
                self._connected = False
                text = f"link to the terminal failed: {type(exc).__name__}: {exc}"
                return None, (rc.RES_E_INTERNAL_FAIL, text)

    def _const(self, name: str) -> int:
        """A module constant, read from the module once (so a simulator missing one fails loudly)."""
        value = self._consts.get(name)
        if value is None:
            with self._lock:
                value = self._consts[name] = int(getattr(self._module(), name))
        return value

    def _error(self, what: str, code: int, message: str) -> BrokerError:
        cls = rc.error_class(code)
        if cls is BrokerUnavailable:
            self._connected = False
        return cls(f"{what} failed: {message} ({rc.last_error_name(code)} {code})", code=code,
                   terminal_message=message)

    def _read(self, what: str, name: str, *args: Any, **kwargs: Any) -> Any:
        """A read: the result, or ``None`` when the terminal says success with nothing; raises otherwise."""
        result, err = self._call(name, *args, **kwargs)
        if err is None:
            return result
        code, message = err
        if code == rc.RES_S_OK:
            return None
        raise self._error(what, code, message)

    def _read_many(self, what: str, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        result = self._read(what, name, *args, **kwargs)
        return () if result is None else tuple(result)

    def _read_one(self, what: str, name: str, *args: Any, **kwargs: Any) -> Any:
        result = self._read(what, name, *args, **kwargs)
        if result is None:
            raise BrokerError(f"{what} returned nothing", code=rc.RES_S_OK)
        return result

    # ------------------------------------------------------------------ connection
    def connect(self) -> TerminalStatus:
        """``initialize()`` with the configured path and credentials.

        Raises ``BrokerUnavailable`` carrying the terminal's code and message.
        """
        s, c = self.settings, self._credentials
        args: tuple[Any, ...] = (s.path,) if s.path else ()
        kwargs: dict[str, Any] = {"timeout": int(s.timeout_ms), "portable": bool(s.portable)}
        if c.login is not None:
            kwargs["login"] = int(c.login)
        if c.password:
            kwargs["password"] = c.password
        if c.server:
            kwargs["server"] = c.server
        with self._lock:
            ok, err = self._call("initialize", *args, **kwargs)
            if err is not None:
                code, message = err
                self._connected = False
                raise BrokerUnavailable(
                    f"cannot connect to the terminal: {message} ({rc.last_error_name(code)} {code})",
                    code=code, terminal_message=message,
                )
            self._connected = True
            self._specs.clear()
            self._hedging = None  # possibly another account now
            return self.terminal()

    def shutdown(self) -> None:
        """Close the session (not the terminal). Safe to call twice or on a dead link."""
        with self._lock:
            if self._mt5 is not None and not self._stale:
                try:
                    self._mt5.shutdown()
                except self._transport_errors:
                    pass
            if self._mt5 is not None and self._release is not None:
                try:
                    self._release(self._mt5)
                except Exception:  # noqa: BLE001
                    log.debug("releasing the terminal link failed", exc_info=True)
                self._stale = True
            self._connected = False

    def ensure_connected(self, max_wait_s: float = 60.0) -> TerminalStatus:
        """Return the terminal status, reconnecting with exponential backoff for up to ``max_wait_s``.

        Raises ``BrokerUnavailable`` when the time is up, or at once for a failure
        that waiting cannot fix (bad credentials, version mismatch).
        """
        deadline = self._clock() + max_wait_s
        delay = self.settings.reconnect_backoff_s
        while True:
            try:
                if self._connected:
                    try:
                        return self.terminal()
                    except BrokerUnavailable:
                        pass  # the session is gone: initialize again, now
                return self.connect()
            except BrokerUnavailable as exc:
                if exc.code in rc.PERMANENT_CONNECT_CODES:
                    raise
                last = exc
            if self._clock() + delay > deadline:
                raise BrokerUnavailable(
                    f"terminal still unreachable after {max_wait_s:g}s: {last}",
                    code=last.code, terminal_message=last.terminal_message,
                ) from last
            log.warning("terminal unreachable (%s); retrying in %.1fs", last, delay)
            self._sleep(delay)
            delay = min(delay * 2, self.settings.reconnect_backoff_max_s)

    reconnect_with_backoff = ensure_connected

    # ------------------------------------------------------------------ reads
    def terminal(self) -> TerminalStatus:
        ti = self._read_one("terminal_info()", "terminal_info")
        return TerminalStatus(
            connected=bool(ti.connected),
            trade_allowed=bool(ti.trade_allowed) and not bool(ti.tradeapi_disabled),
            build=int(ti.build),
            name=str(ti.name),
            company=str(ti.company),
        )

    def account(self) -> Account:
        with self._lock:
            ai = self._read_one("account_info()", "account_info")
            hedging = self._hedging = int(ai.margin_mode) == self._const("ACCOUNT_MARGIN_MODE_RETAIL_HEDGING")
        return Account(
            login=int(ai.login),
            currency=str(ai.currency),
            balance=float(ai.balance),
            equity=float(ai.equity),
            profit=float(ai.profit),
            margin=float(ai.margin),
            margin_free=float(ai.margin_free),
            margin_level=float(ai.margin_level),
            leverage=int(ai.leverage),
            credit=float(ai.credit),
            server=str(ai.server),
            name=str(ai.name),
            company=str(ai.company),
            trade_allowed=bool(ai.trade_allowed) and bool(ai.trade_expert),
            hedging=hedging,
        )

    def positions(self, *, symbol: str | None = None) -> tuple[Position, ...]:
        """Every open position (or one symbol's). Raises on a failed read: a failure is never "flat"."""
        return self._book(**({"symbol": symbol} if symbol else {})).positions

    def _book(self, **filters: Any) -> Book:
        """``positions_get(**filters)`` as a :class:`Book`. Raises on a failed read."""
        with self._lock:
            raw = self._read("positions_get()", "positions_get", **filters)
            return Book() if raw is None else book_from_structs(raw, self._const("POSITION_TYPE_BUY"))

    def _position_raw(self, ticket: int) -> Any | None:
        raw = self._read_many(f"positions_get(ticket={ticket})", "positions_get", ticket=int(ticket))
        for p in raw:
            if int(p.ticket) == int(ticket):
                return p
        return None

    def position(self, ticket: int) -> Position | None:
        with self._lock:
            p = self._position_raw(ticket)
            return None if p is None else position_from_struct(p, self._const("POSITION_TYPE_BUY"))

    def snapshot(self) -> Snapshot:
        """Account and positions read back to back under one lock hold; the positions as a :class:`Book`.

        The cyclic garbage collector is paused meanwhile: the terminal builds a struct per position
        (10,000 for a 10,000-position book), none in a reference cycle, and left alone the collector
        would walk them, and every few polls the whole heap, in the middle of the read.
        """
        with gc_paused(), self._lock:
            account = self.account()
            return Snapshot(account=account, book=self._book(), taken_at=self._wall_clock())

    def _static_spec(self, name: str) -> SymbolSpec:
        spec = self._specs.get(name)
        if spec is not None:
            return spec
        with self._lock:
            info = self._read_one(f"symbol_info({name!r})", "symbol_info", name)
            if not bool(info.visible):
                _, err = self._call("symbol_select", name, True)
                if err is not None:
                    raise self._error(f"symbol_select({name!r})", *err)
                info = self._read_one(f"symbol_info({name!r})", "symbol_info", name)
        spec = SymbolSpec(
            name=str(info.name),
            digits=int(info.digits),
            point=float(info.point),
            contract_size=float(info.trade_contract_size),
            volume_min=float(info.volume_min),
            volume_step=float(info.volume_step),
            volume_max=float(info.volume_max),
            filling_mode=int(info.filling_mode),
            trade_mode=int(info.trade_mode),
            currency_profit=str(info.currency_profit),
            spread=int(info.spread),
            bid=float(info.bid),
            ask=float(info.ask),
            stops_level=int(info.trade_stops_level),
            freeze_level=int(info.trade_freeze_level),
            trade_exemode=int(info.trade_exemode),
        )
        self._specs[name] = spec
        return spec

    def market(self, name: str) -> SymbolSpec:
        """``symbol(name)`` with a fresh bid, ask and spread (guards need the current spread)."""
        spec = self.symbol(name)
        with self._lock:
            tick = self._tick(name)
        bid, ask = float(tick.bid), float(tick.ask)
        spread = round((ask - bid) / spec.point) if spec.point > 0 else spec.spread
        return dataclasses.replace(spec, bid=bid, ask=ask, spread=int(spread))

    def server_offset_s(self, name: str, now: float) -> int | None:
        """Terminal server time minus UTC, from ``name``'s last tick, rounded to 30 minutes.

        MT5 stamps positions and deals in the trade server's time zone and never says which one.
        A live quote arrives within seconds, so the tick's time minus ``now`` (UTC) is the offset
        plus a little; a stale tick (a closed market) says nothing: None.
        """
        with self._lock:
            tick = self._tick(name)
        diff = int(tick.time) - now
        offset = round(diff / 1800) * 1800
        return int(offset) if abs(diff - offset) <= 120 else None

    def _tick(self, name: str) -> Any:
        return self._read_one(f"symbol_info_tick({name!r})", "symbol_info_tick", name)

    def symbol(self, name: str) -> SymbolSpec:
        """Volume rules, digits and filling mask (cached per connection) with a fresh bid/ask."""
        spec = self._static_spec(name)
        tick = self._tick(name)
        bid, ask = float(tick.bid), float(tick.ask)
        spread = round((ask - bid) / spec.point) if spec.point > 0 else spec.spread
        return replace(spec, bid=bid, ask=ask, spread=int(spread))

    def _deals_raw(self, identifier: int) -> tuple[Any, ...]:
        return self._read_many(
            f"history_deals_get(position={identifier})", "history_deals_get", position=int(identifier)
        )

    def deals_for_position(self, identifier: int) -> list[dict[str, Any]]:
        """Every deal of one position (``identifier``, not necessarily the ticket), as plain dicts."""
        return [{k: getattr(d, k) for k in DEAL_FIELDS} for d in self._deals_raw(identifier)]

    def _out_entries(self) -> frozenset[int]:
        outs = self._out_entry_set
        if outs is None:  # module constants never change (like _const's cache)
            names = ("DEAL_ENTRY_OUT", "DEAL_ENTRY_INOUT", "DEAL_ENTRY_OUT_BY")
            outs = self._out_entry_set = frozenset(self._const(n) for n in names)
        return outs

    def realised_profit(self, identifier: int) -> float:
        """Σ profit + swap + commission + fee over the position's OUT/INOUT/OUT_BY deals (account ccy)."""
        with self._lock:
            outs = self._out_entries()
            deals = self._deals_raw(identifier)
        return round(sum(net_result(d) for d in deals if int(d.entry) in outs), 2)

    # ------------------------------------------------------------------ trading
    def close(
        self, ticket: int, *, volume: float | None = None, comment: str | None = None, deals_later: bool = False
    ) -> CloseResult:
        """Close ``ticket`` fully (``volume=None``) or partly (rounded down to the symbol's step).

        Raises ``BrokerUnavailable``/``BrokerError`` only if nothing was sent;
        after a send it always returns a ``CloseResult``. With ``deals_later`` a clean close
        returns ``deals_pending`` and its deal read waits for :meth:`settle_deals`.
        """
        with self._trade_lock:
            job = CloseJob(self, int(ticket), volume, comment, deals_later=deals_later)
            result = job.run()
            if result.deals_pending:
                self._unsettled[result.ticket] = job
            return result

    def settle_deals(
        self, results: Sequence[CloseResult], *, server_offset_s: int | None, since: float, now: float
    ) -> list[CloseResult]:
        """``results`` with those ``close(..., deals_later=True)`` left pending completed from their deals.

        A clean full close needs one more terminal call after its send: the deal-history read
        for the price and realised profit of the deal the answer named. For a batch of closes
        one read of the deals between ``since`` (UTC epoch seconds, before the first send) and
        a day past ``now`` serves them all (``mt5_api.md`` §7 pitfall 6: the bounds are server
        time, hence ``server_offset_s``; the far bound is the recommended day ahead). A deal
        missing from it (the terminal lags its replies) is read for its position alone, as
        ``close`` would have. Without a known offset, or for a single close, each is read alone.
        Never raises: a failed read leaves the result with the fill's price and a note.
        """
        jobs = {r.ticket: self._unsettled.pop(r.ticket, None) for r in results if r.deals_pending}
        window: dict[int, Any] = {}
        if server_offset_s is not None and len(jobs) > 1:
            date_from = int(since) + int(server_offset_s) - _WINDOW_MARGIN_S
            date_to = int(now) + int(server_offset_s) + 86_400
            try:
                raw = self._read_many("history_deals_get(date range)", "history_deals_get", date_from, date_to)
            except BrokerError as exc:
                log.debug("deal window read failed, reading per position: %s", exc)
                raw = ()
            window = {int(d.ticket): d for d in raw}
        out: list[CloseResult] = []
        for r in results:
            job = jobs.get(r.ticket)
            if job is not None:
                out.append(job.settle(window))
            elif r.deals_pending:  # not from this broker's close(): nothing to read it with
                out.append(replace(r, deals_pending=False,
                                   message=f"{r.message}; realised profit not read (no close job)"))
            else:
                out.append(r)
        return out

    def pending_orders(self) -> tuple[int, ...]:
        """Tickets of the active pending orders (flatten cancels them). Raises on a failed read."""
        with self._lock:
            raw = self._read_many("orders_get()", "orders_get")
        return tuple(sorted(int(o.ticket) for o in raw))

    def cancel_order(self, ticket: int) -> ModifyResult:
        """Remove a pending order (``TRADE_ACTION_REMOVE``). Never retried blindly: the result says what happened."""
        with self._trade_lock:
            request = {"action": self._const("TRADE_ACTION_REMOVE"), "order": int(ticket)}
            result, err = self._call("order_send", request)
        if result is None:
            code, text = err or (rc.RES_E_FAIL, "order_send returned None")
            return ModifyResult(int(ticket), False, 0.0, 0.0, code, f"order_send returned None: {text}", 1)
        code = int(result.retcode)
        ok = rc.classify(code) is rc.RetcodeClass.OK
        return ModifyResult(int(ticket), ok, 0.0, 0.0, code, rc.describe(code, str(result.comment)), 1)

    def modify_sltp(self, ticket: int, *, sl: float, tp: float, comment: str | None = None) -> ModifyResult:
        """Set a position's stop loss / take profit (0.0 removes one). Retries RETRY codes only."""
        with self._trade_lock:
            return self._modify(int(ticket), sl, tp, comment)

    def _modify(self, ticket: int, sl: float, tp: float, comment: str | None) -> ModifyResult:
        attempts, delay = 0, self.settings.retry_backoff_s
        retcode: int | None = None
        message = ""
        while True:
            try:
                pos = self._position_raw(ticket)
                digits = self._static_spec(str(pos.symbol)).digits if pos is not None else 0
            except BrokerError as exc:
                if attempts == 0:
                    raise
                text = f"{message}; could not re-read the position: {exc}"
                return ModifyResult(ticket, False, sl, tp, retcode, text, attempts)
            if pos is None:
                return ModifyResult(ticket, False, sl, tp, rc.POSITION_CLOSED, "position is not open",
                                    attempts)
            want_sl, want_tp = round(float(sl), digits), round(float(tp), digits)
            if attempts and abs(float(pos.sl) - want_sl) < EPS and abs(float(pos.tp) - want_tp) < EPS:
                return ModifyResult(ticket, True, want_sl, want_tp, retcode, "levels are set", attempts)
            request = {
                "action": self._const("TRADE_ACTION_SLTP"), "symbol": str(pos.symbol), "position": ticket,
                "sl": want_sl, "tp": want_tp, "magic": int(self.settings.magic),
                "comment": sanitize_comment(comment or self.settings.comment),
            }
            result, err = self._call("order_send", request)
            attempts += 1
            if result is not None:
                retcode, message = int(result.retcode), rc.describe(int(result.retcode), str(result.comment))
                cls = rc.classify(retcode)
            else:
                retcode, text = err or (rc.RES_E_FAIL, "order_send returned None")
                if attempts == 1 and rc.is_ipc(retcode) and not rc.send_outcome_unknown(retcode):
                    raise self._error("order_send(SLTP)", retcode, text)
                message = f"order_send returned None: {text} ({rc.last_error_name(retcode)} {retcode})"
                # re-sending absolute SL/TP levels is idempotent, so an unknown outcome is simply re-checked
                cls = rc.RetcodeClass.AMBIGUOUS if rc.send_outcome_unknown(retcode) else rc.RetcodeClass.FINAL
            if cls is rc.RetcodeClass.OK:
                return ModifyResult(ticket, True, want_sl, want_tp, retcode, message, attempts)
            retryable = cls in (rc.RetcodeClass.RETRY, rc.RetcodeClass.AMBIGUOUS)
            if not retryable or attempts > self.settings.max_retries:
                return ModifyResult(ticket, False, sl, tp, retcode, message, attempts)
            self._sleep(delay)
            delay = min(delay * 2, self.settings.retry_backoff_max_s)
