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
* Structs are read by attribute only (the real ones have no ``_fields``).
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
import math
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from fxnb.broker import retcodes as rc
from fxnb.credentials import Credentials
from fxnb.errors import BrokerError, BrokerUnavailable
from fxnb.models import (
    Account,
    CloseResult,
    CloseStatus,
    Position,
    Side,
    Snapshot,
    SymbolSpec,
    TerminalStatus,
)
from fxnb.volume import partial_volume

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

EPS = 1e-9
COMMENT_MAX = 26
_COMMENT_BAD = re.compile(r"[^A-Za-z0-9 _.\-]")

#: ``TradeDeal`` fields in the package's order; ``deals_for_position`` returns dicts with these keys.
DEAL_FIELDS = (
    "ticket", "order", "time", "time_msc", "type", "entry", "magic", "position_id", "reason", "volume",
    "price", "commission", "swap", "profit", "fee", "symbol", "comment", "external_id",
)


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


def sanitize_comment(text: str | None, default: str = "fxnb") -> str:
    """A request comment the terminal will accept: ASCII ``[A-Za-z0-9 _.-]``, at most 26 characters.

    Longer or exotic comments make ``order_send`` return ``None`` with
    ``(-2, 'Invalid "comment" argument')`` on some builds (``mt5_api.md`` §5.8).
    """
    cleaned = _COMMENT_BAD.sub("_", text or "").strip()[:COMMENT_MAX].strip()
    if not cleaned and text != default:
        return sanitize_comment(default, default="")
    return cleaned


def filling_candidates(mask: int, *, fok: int, ioc: int, ret: int, preferred: int | None = None) -> list[int]:
    """``ORDER_FILLING_*`` values to try, best first, for a ``SYMBOL_FILLING_*`` bitmask.

    FOK if bit 1 is set, else IOC if bit 2, else RETURN (bit 4 is BOC, which is
    *not* RETURN and is never used for a market close). Modes the mask does
    not advertise come last, for brokers whose mask is wrong; a mode that
    worked before for this symbol (``preferred``) comes first.
    """
    order: list[int] = []
    if mask & rc.SYMBOL_FILLING_FOK:
        order.append(fok)
    if mask & rc.SYMBOL_FILLING_IOC:
        order.append(ioc)
    order.append(ret)
    order += [m for m in (fok, ioc) if m not in order]
    if preferred is not None and preferred in order:
        order.remove(preferred)
        order.insert(0, preferred)
    return order


def _f(x: float) -> float:
    """Volumes as clean floats (0.30000000000000004 -> 0.3)."""
    return round(float(x), 8)


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
            hedging_mode = self._const("ACCOUNT_MARGIN_MODE_RETAIL_HEDGING")
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
            hedging=int(ai.margin_mode) == hedging_mode,
        )

    def _to_position(self, p: Any, buy_type: int) -> Position:
        return Position(
            ticket=int(p.ticket),
            symbol=str(p.symbol),
            side=Side.BUY if int(p.type) == buy_type else Side.SELL,
            volume=_f(p.volume),
            price_open=float(p.price_open),
            price_current=float(p.price_current),
            profit=float(p.profit),
            swap=float(p.swap),
            sl=float(p.sl),
            tp=float(p.tp),
            magic=int(p.magic),
            identifier=int(p.identifier),
            comment=str(p.comment),
            time=int(p.time),
            time_update=int(p.time_update),
        )

    def positions(self, *, symbol: str | None = None) -> tuple[Position, ...]:
        """Every open position (or one symbol's). Raises on a failed read: a failure is never "flat"."""
        filters = {"symbol": symbol} if symbol else {}
        with self._lock:
            raw = self._read_many("positions_get()", "positions_get", **filters)
            buy = self._const("POSITION_TYPE_BUY")
        return tuple(self._to_position(p, buy) for p in raw)

    def _position_raw(self, ticket: int) -> Any | None:
        raw = self._read_many(f"positions_get(ticket={ticket})", "positions_get", ticket=int(ticket))
        for p in raw:
            if int(p.ticket) == int(ticket):
                return p
        return None

    def position(self, ticket: int) -> Position | None:
        with self._lock:
            p = self._position_raw(ticket)
            return None if p is None else self._to_position(p, self._const("POSITION_TYPE_BUY"))

    def snapshot(self) -> Snapshot:
        """Account and positions read back to back under one lock hold."""
        with self._lock:
            account = self.account()
            positions = self.positions()
            return Snapshot(account=account, positions=positions, taken_at=self._wall_clock())

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
        return frozenset(self._const(n) for n in ("DEAL_ENTRY_OUT", "DEAL_ENTRY_INOUT", "DEAL_ENTRY_OUT_BY"))

    def realised_profit(self, identifier: int) -> float:
        """Σ profit + swap + commission + fee over the position's OUT/INOUT/OUT_BY deals (account ccy)."""
        with self._lock:
            outs = self._out_entries()
            deals = self._deals_raw(identifier)
        return round(sum(_net(d) for d in deals if int(d.entry) in outs), 2)

    # ------------------------------------------------------------------ trading
    def close(self, ticket: int, *, volume: float | None = None, comment: str | None = None) -> CloseResult:
        """Close ``ticket`` fully (``volume=None``) or partly (rounded down to the symbol's step).

        Raises ``BrokerUnavailable``/``BrokerError`` only if nothing was sent;
        after a send it always returns a ``CloseResult``.
        """
        with self._trade_lock:
            return _CloseJob(self, int(ticket), volume, comment).run()

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


def _net(deal: Any) -> float:
    return float(deal.profit) + float(deal.swap) + float(deal.commission) + float(deal.fee)


class _Stop(Exception):
    """Ends a close job early with a message (internal)."""

    def __init__(self, message: str, retcode: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retcode = retcode


class _CloseJob:
    """One ``Broker.close`` call: the retry state machine of ``mt5_api.md`` §4.5."""

    def __init__(self, broker: Broker, ticket: int, volume: float | None, comment: str | None) -> None:
        self.b = broker
        self.s = broker.settings
        self.ticket = ticket
        self.volume_arg = volume
        self.comment = sanitize_comment(comment or self.s.comment)
        self.sends = 0  # order_send calls (CloseResult.attempts)
        self.answered = False  # some order_send reached the terminal (then we never raise)
        self.closed = 0.0  # volume we know we closed (DONE / DONE_PARTIAL results)
        self.deals: list[int] = []  # deal tickets from those results
        self.prices: list[tuple[float, float]] = []  # (volume, price) from results, if deals never show up
        self.unresolved = False  # an ambiguous answer has not been reconciled with a re-read yet
        self.ambiguous_seen = False
        self.retries_left = self.s.max_retries
        self.fixed: set[int] = set()
        self.tried_fillings: set[int] = set()
        self.delay = self.s.retry_backoff_s
        self.retcode: int | None = None
        self.message = ""
        self.notes: list[str] = []

    # -- the run --------------------------------------------------------------
    def run(self) -> CloseResult:
        pos = self.b._position_raw(self.ticket)  # may raise: nothing sent yet
        if pos is None:
            return CloseResult(self.ticket, CloseStatus.ALREADY_CLOSED,
                               requested_volume=_f(self.volume_arg or 0.0), message="position is not open")
        self.symbol = str(pos.symbol)
        self.identifier = int(pos.identifier) or self.ticket
        self.start_volume = _f(pos.volume)
        self.buy = int(pos.type) == self.b._const("POSITION_TYPE_BUY")
        spec = self.b._static_spec(self.symbol)
        target = self._target(spec)
        if target is None:
            return self._result(CloseStatus.FAILED, 0.0)
        self.target = target
        self.baseline = {int(d.ticket) for d in self.b._deals_raw(self.identifier)}
        self.out_entries = self.b._out_entries()
        try:
            self._loop(pos)
        except _Stop as stop:
            self.message = stop.message
            if stop.retcode is not None:
                self.retcode = stop.retcode
        return self._finish()

    def _target(self, spec: SymbolSpec) -> float | None:
        if self.volume_arg is None:
            return self.start_volume
        v = float(self.volume_arg)
        if not math.isfinite(v) or v <= 0:
            self.message = f"close volume must be a positive number, got {self.volume_arg!r}"
            return None
        target = partial_volume(self.start_volume, v, volume_min=spec.volume_min,
                                volume_step=spec.volume_step)
        if target is None:
            self.message = (
                f"cannot close {v:g} of {self.start_volume:g} lots of {self.symbol}: with volume_min "
                f"{spec.volume_min:g} and volume_step {spec.volume_step:g} no valid partial close exists "
                "(nothing sent)"
            )
            return None
        target = _f(target)
        if abs(target - v) > EPS and target < self.start_volume:
            self.notes.append(f"requested {v:g} lots, sending {target:g} (rounded to the volume rules)")
        return target

    def _loop(self, pos: Any) -> None:
        first = True
        for _ in range(4 * (self.s.max_retries + 4)):  # hard stop; the budgets below end it much earlier
            if not self.unresolved and self._remaining() <= EPS:
                return
            if not first:
                pos = self._reread()
                if self._remaining() <= EPS:
                    return
            first = False
            try:
                spec = self.b._static_spec(self.symbol)
                vol = self._next_volume(pos, spec)
                tick = self.b._tick(self.symbol)
                filling = self._next_filling(spec)
                request = self._request(pos, vol, tick, spec, filling)
            except BrokerError as exc:
                if self.sends == 0:
                    raise  # nothing sent yet: the caller may treat this as "nothing happened"
                raise _Stop(f"{self._so_far()}; could not prepare the next request: {exc}") from exc
            result, err = self.b._call("order_send", request)
            self.sends += 1
            if result is None:
                self._on_none(err or (rc.RES_E_FAIL, "order_send returned None"))
            else:
                self.answered = True
                self._on_result(result, vol, filling)
        raise _Stop("gave up: too many attempts")

    # -- each step -----------------------------------------------------------
    def _remaining(self) -> float:
        return _f(self.target - self.closed)

    def _reread(self) -> Any:
        try:
            pos = self.b._position_raw(self.ticket)
        except BrokerError as exc:
            raise _Stop(f"{self._so_far()}; could not re-read the position: {exc}") from exc
        if self.unresolved:
            self._reconcile(pos)
        if pos is None:
            if self.closed > EPS or self.ambiguous_seen:
                raise _Stop(f"{self._so_far()}; the position is no longer open")
            raise _Stop("the position was closed elsewhere while retrying", retcode=rc.POSITION_CLOSED)
        return pos

    def _reconcile(self, pos: Any | None) -> None:
        """After an ambiguous answer: how much is closed now, by position volume and by new OUT deals."""
        self.unresolved = False
        by_volume = self.start_volume - (_f(pos.volume) if pos is not None else 0.0)
        by_deals = sum(float(d.volume) for d in self._new_out_deals())
        observed = _f(min(max(by_volume, by_deals), self.target))
        if observed > self.closed + EPS:
            self.notes.append(f"after the ambiguous answer {observed:g} lots turned out to be closed")
            self.closed = observed

    def _new_out_deals(self) -> list[Any]:
        try:
            deals = self.b._deals_raw(self.identifier)
        except BrokerError:
            return []
        return [d for d in deals if int(d.ticket) not in self.baseline and int(d.entry) in self.out_entries]

    def _next_volume(self, pos: Any, spec: SymbolSpec) -> float:
        open_volume = _f(pos.volume)
        rem = min(self._remaining(), open_volume)
        if rem >= open_volume - EPS:
            return open_volume
        vol = partial_volume(open_volume, rem, volume_min=spec.volume_min, volume_step=spec.volume_step)
        if vol is None or vol <= EPS:
            raise _Stop(
                f"{self._so_far()}; the remaining {rem:g} lots cannot be closed on their own "
                f"(volume_min {spec.volume_min:g}, step {spec.volume_step:g})"
            )
        return _f(vol)

    def _next_filling(self, spec: SymbolSpec) -> int:
        b = self.b
        order = filling_candidates(
            spec.filling_mode, fok=b._const("ORDER_FILLING_FOK"), ioc=b._const("ORDER_FILLING_IOC"),
            ret=b._const("ORDER_FILLING_RETURN"), preferred=b._filling.get(self.symbol),
        )
        for mode in order:
            if mode not in self.tried_fillings:
                return mode
        raise _Stop(f"{self._so_far()}; the server refused every filling mode", retcode=rc.INVALID_FILL)

    def _request(self, pos: Any, vol: float, tick: Any, spec: SymbolSpec, filling: int) -> dict[str, Any]:
        b = self.b
        price = float(tick.bid) if self.buy else float(tick.ask)
        return {
            "action": b._const("TRADE_ACTION_DEAL"),
            "symbol": self.symbol,
            "position": self.ticket,
            "volume": float(vol),
            "type": b._const("ORDER_TYPE_SELL") if self.buy else b._const("ORDER_TYPE_BUY"),
            "price": round(price, spec.digits),
            "deviation": int(self.s.deviation),
            "magic": int(self.s.magic),
            "comment": self.comment,
            "type_time": b._const("ORDER_TIME_GTC"),
            "type_filling": int(filling),
        }

    def _on_none(self, err: tuple[int, str]) -> None:
        code, text = err
        self.retcode = code
        self.message = f"order_send returned None: {text} ({rc.last_error_name(code)} {code})"
        if rc.send_outcome_unknown(code):
            # the request may have been executed: never resend blindly; re-read first (next loop turn)
            self.unresolved = self.ambiguous_seen = True
            self._spend_retry()
            return
        if rc.is_ipc(code):
            self.b._connected = False
            if not (self.answered or self.ambiguous_seen or self.closed > EPS):
                # nothing reached the terminal: nothing happened, so this may raise
                raise self.b._error(f"close {self.ticket}: order_send", code, text)
        raise _Stop(self._so_far_or(self.message))

    def _on_result(self, result: Any, vol: float, filling: int) -> None:
        retcode = int(result.retcode)
        comment = str(result.comment)
        self.retcode, self.message = retcode, rc.describe(retcode, comment)
        cls = rc.classify(retcode)
        if cls in (rc.RetcodeClass.OK, rc.RetcodeClass.OK_PARTIAL):
            done = _f(result.volume) if float(result.volume) > 0 else vol
            self.closed = _f(self.closed + done)
            if int(result.deal):
                self.deals.append(int(result.deal))
            self.prices.append((done, float(result.price)))
            self.b._filling[self.symbol] = filling
            if cls is rc.RetcodeClass.OK_PARTIAL:
                self.notes.append(f"{rc.describe(retcode)}: {done:g} of {vol:g} lots filled")
                self._spend_retry()
            return
        if cls is rc.RetcodeClass.GONE:
            raise _Stop(self._so_far_or(self.message), retcode=retcode)
        if cls is rc.RetcodeClass.RETRY:
            self._spend_retry()
            return
        if cls is rc.RetcodeClass.AMBIGUOUS:
            self.unresolved = self.ambiguous_seen = True
            self._spend_retry()
            return
        if cls is rc.RetcodeClass.FIX:
            self._fix(retcode, filling)
            return
        raise _Stop(self._so_far_or(self.message), retcode=retcode)

    def _fix(self, retcode: int, filling: int) -> None:
        if retcode == rc.INVALID_FILL:
            self.tried_fillings.add(filling)
            if self.b._filling.get(self.symbol) == filling:
                del self.b._filling[self.symbol]
            self.notes.append(f"filling mode {filling} refused (10030); trying the next one")
            return
        if retcode in self.fixed:
            raise _Stop(self._so_far_or(self.message), retcode=retcode)
        self.fixed.add(retcode)
        if retcode == rc.INVALID_VOLUME:
            self.b._specs.pop(self.symbol, None)  # re-read the volume rules
        # INVALID_PRICE: the next turn reads a fresh tick; INVALID_CLOSE_VOLUME: it re-reads the volume

    def _spend_retry(self) -> None:
        if self.retries_left <= 0:
            if self.unresolved:
                self._settle_ambiguity()
            raise _Stop(self._so_far_or(f"gave up after {self.sends} attempts; last answer: {self.message}"))
        self.retries_left -= 1
        self.b._sleep(self.delay)
        self.delay = min(self.delay * 2, self.s.retry_backoff_max_s)

    def _settle_ambiguity(self) -> None:
        try:
            pos = self.b._position_raw(self.ticket)
        except BrokerError as exc:
            self.notes.append(f"outcome unknown: could not re-read the position ({exc})")
            return
        self._reconcile(pos)

    # -- reporting -----------------------------------------------------------
    def _so_far(self) -> str:
        return f"closed {self.closed:g} of {self.target:g} lots"

    def _so_far_or(self, message: str) -> str:
        return f"{self._so_far()}; {message}" if self.closed > EPS else message

    def _our_deals(self) -> list[Any]:
        """The OUT deals this job produced, polled briefly because the terminal may lag its own reply."""
        wanted = set(self.deals)
        found: list[Any] = []
        for i in range(max(1, self.s.deal_poll_attempts)):
            found = self._new_out_deals()
            tickets = {int(d.ticket) for d in found}
            if wanted <= tickets and (wanted or not self.ambiguous_seen or found):
                break
            if i + 1 < self.s.deal_poll_attempts:
                self.b._sleep(self.s.deal_poll_interval_s)
        if not self.ambiguous_seen:
            found = [d for d in found if int(d.ticket) in wanted]
        missing = wanted - {int(d.ticket) for d in found}
        if missing:
            self.notes.append(f"deal(s) {sorted(missing)} not yet in history; profit may be incomplete")
        return found

    def _finish(self) -> CloseResult:
        if self.unresolved:
            self._settle_ambiguity()
        if self.closed <= EPS and self.sends == 0:
            return self._result(CloseStatus.FAILED, 0.0)
        if self.closed <= EPS and self.retcode == rc.POSITION_CLOSED and not self.ambiguous_seen:
            return self._result(CloseStatus.ALREADY_CLOSED, 0.0)
        deals = self._our_deals() if self.closed > EPS else []
        deal_volume = _f(sum(float(d.volume) for d in deals))
        closed = max(self.closed, deal_volume)
        if deals:
            profit = round(sum(_net(d) for d in deals), 2)
            price = sum(float(d.volume) * float(d.price) for d in deals) / max(deal_volume, EPS)
        else:
            profit = 0.0
            vol = sum(v for v, _ in self.prices)
            price = sum(v * p for v, p in self.prices) / vol if vol > EPS else 0.0
        if closed >= self.target - EPS:
            status = CloseStatus.CLOSED
        elif closed > EPS:
            status = CloseStatus.PARTIAL
        else:
            status = CloseStatus.FAILED
        return self._result(status, closed, price=price, profit=profit,
                            deals=tuple(int(d.ticket) for d in deals) or tuple(self.deals))

    def _result(self, status: CloseStatus, closed: float, *, price: float = 0.0, profit: float = 0.0,
                deals: Iterable[int] = ()) -> CloseResult:
        message = "; ".join([m for m in [self.message, *self.notes] if m])
        if status is CloseStatus.CLOSED and self.retcode == rc.DONE:
            message = "; ".join(self.notes) or rc.describe(rc.DONE)
        return CloseResult(
            ticket=self.ticket,
            status=status,
            requested_volume=_f(getattr(self, "target", None) or self.volume_arg or 0.0),
            closed_volume=_f(closed),
            price=round(price, 8),
            profit=profit,
            retcode=self.retcode,
            message=message,
            deals=tuple(deals),
            attempts=self.sends,
            symbol=getattr(self, "symbol", ""),
        )
