"""One ``Broker.close`` call: the retry state machine of ``mt5_api.md`` §4.5.

Re-reads the position and the tick before every send, retries only what
``retcodes.classify`` calls RETRY, settles ambiguous answers by re-reading
before sending anything more, and never raises once a request may have
reached the server.

Terminal calls of a clean full close (the common case): the position re-read,
a fresh tick for the request's price, the send, and one deal-history read for
the realised profit of the deal the answer named. On a hedging account the
deal history is read before the send as well only when the position has
changed since it opened (see ``_unchanged_since_open``): only then can older
exit deals exist that an ambiguous answer must not be confused with.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from fxnb.broker import retcodes as rc
from fxnb.broker.requests import EPS, filling_candidates, sanitize_comment
from fxnb.broker.requests import _f as _round8
from fxnb.errors import BrokerError
from fxnb.models import CloseResult, CloseStatus, SymbolSpec
from fxnb.volume import partial_volume

if TYPE_CHECKING:
    from fxnb.broker.adapter import Broker


_ROUNDED: dict[float, float] = {}


def _f(x: Any) -> float:
    """``requests._f`` (a volume as a clean float, ``round(float(x), 8)``), memoised.

    ``round`` with digits goes through a correctly rounded decimal conversion (about a
    microsecond); a close job rounds the same few volumes a dozen times and a poll rounds every
    position's volume, out of a handful of distinct values. Only positive values are kept (0.0 and
    -0.0 are equal keys with different signs; NaN is never found again), at most 4,096 of them.
    """
    v = float(x)
    r = _ROUNDED.get(v)
    if r is None:
        r = _round8(v)
        if v > 0.0:
            if len(_ROUNDED) >= 4096:
                _ROUNDED.clear()
            _ROUNDED[v] = r
    return r


def net_result(deal: Any) -> float:
    """A deal's contribution to realised P/L: profit, swap, commission and fee."""
    return float(deal.profit) + float(deal.swap) + float(deal.commission) + float(deal.fee)


def _unchanged_since_open(pos: Any) -> bool:
    """The terminal reports that the position has not changed since it opened.

    On a hedging account every exit deal of a position (a partial close, a close-by) and every
    other change (SL/TP) moves its ``time_update_msc`` past ``time_msc``; so a position whose two
    times are equal has no exit deal in the history yet, and the deal-history read before the
    first send (the baseline that tells our exit deals from older ones) can be skipped. (Netting
    accounts are excluded by the caller: a reversal re-stamps both times.) The one way this can be
    wrong, a change within the millisecond the position opened, is caught when it matters: see
    ``CloseJob._no_exit_before``. Without both times (an unusual module) the history is read.
    """
    try:
        opened, changed = int(pos.time_msc), int(pos.time_update_msc)
    except (AttributeError, TypeError, ValueError):
        return False
    return opened > 0 and changed == opened


_COMMENTS: dict[str, str] = {}


def _comment(text: str) -> str:
    """``sanitize_comment``, memoised (a close-all sends the same comment a thousand times)."""
    clean = _COMMENTS.get(text)
    if clean is None:
        clean = sanitize_comment(text)
        if len(_COMMENTS) < 256:
            _COMMENTS[text] = clean
    return clean


class _Stop(Exception):
    """Ends a close job early with a message (internal)."""

    def __init__(self, message: str, retcode: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retcode = retcode


class CloseJob:
    """One ``Broker.close`` call: the retry state machine of ``mt5_api.md`` §4.5."""

    def __init__(
        self, broker: Broker, ticket: int, volume: float | None, comment: str | None, *, deals_later: bool = False
    ) -> None:
        self.b = broker
        self.deals_later = deals_later  # a clean close may leave its deal read to settle_deals (see there)
        self.s = broker.settings
        self.ticket = ticket
        self.volume_arg = volume
        self.comment = _comment(comment or self.s.comment)
        self.sends = 0  # order_send calls (CloseResult.attempts)
        self.answered = False  # some order_send reached the terminal (then we never raise)
        self.closed = 0.0  # volume we know we closed (DONE / DONE_PARTIAL results)
        self.deals: list[int] = []  # deal tickets from those results
        self.prices: list[tuple[float, float]] = []  # (volume, price) from results, if deals never show up
        self.unresolved = False  # an ambiguous answer has not been reconciled with a re-read yet
        self.reply_lost = False  # the last send's reply never came (it may have executed)
        self.await_change = False  # after an ambiguous answer: give a lagging terminal time to show it
        self.ambiguous_seen = False
        self.retries_left = self.s.max_retries
        self.fixed: set[int] = set()
        self.tried_fillings: set[int] = set()
        self.delay = self.s.retry_backoff_s
        self.retcode: int | None = None
        self.message = ""
        self.notes: list[str] = []
        # Tickets of the position's deals before the first send; None: not read (no exit deal existed).
        self.baseline: set[int] | None = None
        self.deals_in_doubt = False  # after an ambiguous answer, our exit deals could not be told apart

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
        if not (self.b._hedging and _unchanged_since_open(pos)):
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
                price = self._price(pos, spec)
                filling = self._next_filling(spec)
                request = self._request(vol, price, spec, filling)
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
        # (target is already a clean volume: nothing closed yet needs no rounding)
        return _f(self.target - self.closed) if self.closed else self.target

    def _reread(self) -> Any:
        try:
            pos = self.b._position_raw(self.ticket)
        except BrokerError as exc:
            raise _Stop(f"{self._so_far()}; could not re-read the position: {exc}") from exc
        if self.unresolved:
            before = self.closed
            self._reconcile(pos)
            if self.await_change:
                pos = self._await_change(pos, before)
            if self.deals_in_doubt and pos is not None and self._remaining() > EPS:
                # the position's view may lag its deals: without knowing which exit deals are ours,
                # a resend could close twice what was asked once; stop and report what is known
                raise _Stop(f"{self._so_far()}; after an ambiguous answer the deal history cannot tell "
                            "this close's deals from older ones: not sending again")
        if pos is None:
            if self.closed > EPS or self.ambiguous_seen:
                raise _Stop(f"{self._so_far()}; the position is no longer open")
            raise _Stop("the position was closed elsewhere while retrying", retcode=rc.POSITION_CLOSED)
        return pos

    def _await_change(self, pos: Any | None, before: float) -> Any | None:
        """After an ambiguous answer: give a lagging terminal (300-800 ms is reported) a bounded time to show it.

        The first re-read can come before the terminal shows an executed close; resending then closes
        twice what was asked once, the worst outcome there is. So wait until the close shows or the
        window ends. An answered 10011/10012 that still shows nothing was not executed: the loop resends
        what is still open (``mt5_api.md`` §4.5). A lost reply that shows nothing stops instead: the
        request may still be queued in the terminal, and an unsent close is reported and can be retried.
        """
        lost, self.await_change, self.reply_lost = self.reply_lost, False, False
        for _ in range(max(1, self.s.deal_poll_attempts)):
            if pos is None or self.closed > before + EPS:
                return pos
            self.b._sleep(self.s.deal_poll_interval_s)
            try:
                pos = self.b._position_raw(self.ticket)
            except BrokerError as exc:
                raise _Stop(f"{self._so_far()}; after an ambiguous answer the position could not be re-read: "
                            f"{exc}") from exc
            self._reconcile(pos)
        if lost and pos is not None and self.closed <= before + EPS:
            waited = max(1, self.s.deal_poll_attempts) * self.s.deal_poll_interval_s
            raise _Stop(f"{self._so_far()}; the reply to the request was lost and after {waited:g} s the terminal "
                        "shows no change: not sending again (check the position before retrying)")
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
        """Exit deals of the position that did not exist before the first send."""
        try:
            deals = self.b._deals_raw(self.identifier)
        except BrokerError:
            return []
        outs = [d for d in deals if int(d.entry) in self.out_entries]
        if self.baseline is not None:
            return [d for d in outs if int(d.ticket) not in self.baseline]
        # No baseline was read because the position had never changed (no exit deal existed). Without
        # an ambiguous answer the caller keeps only the deals our results named; after one, check that
        # no exit deal is older than this job before taking them all as ours.
        if not self.ambiguous_seen or self._no_exit_before(deals):
            return outs
        if not self.deals_in_doubt:
            self.deals_in_doubt = True
            self.notes.append("the deal history has exit deals older than this close; only the deals "
                              "the terminal's answers named are counted")
        known = set(self.deals)
        return [d for d in outs if int(d.ticket) in known]

    def _no_exit_before(self, deals: Iterable[Any]) -> bool:
        """The deal history proves the position had no exit deal when this job read it.

        Its entry deals must add up to the volume the job started from (an earlier partial close
        would leave more volume entered than open), and every exit deal must be a plain OUT (ours
        are: a close by ticket never reverses or closes by another position).
        """
        entry_in, entry_out = self.b._const("DEAL_ENTRY_IN"), self.b._const("DEAL_ENTRY_OUT")
        entered = 0.0
        for d in deals:
            entry = int(d.entry)
            if entry == entry_in:
                entered += float(d.volume)
            elif entry != entry_out and entry in self.out_entries:
                return False
        return abs(_f(entered) - self.start_volume) <= EPS

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
        preferred = b._filling.get(self.symbol)
        if preferred is not None and preferred not in self.tried_fillings:
            return preferred  # the mode that worked last for this symbol: filling_candidates puts it first
        order = filling_candidates(
            spec.filling_mode, fok=b._const("ORDER_FILLING_FOK"), ioc=b._const("ORDER_FILLING_IOC"),
            ret=b._const("ORDER_FILLING_RETURN"), preferred=preferred,
        )
        for mode in order:
            if mode not in self.tried_fillings:
                return mode
        raise _Stop(f"{self._so_far()}; the server refused every filling mode", retcode=rc.INVALID_FILL)

    def _price(self, pos: Any, spec: SymbolSpec) -> float:
        """The request's price: a fresh tick's bid (closing a buy) or ask where the server uses it.

        Only request and instant execution fill at the request's price (``mt5_api.md`` §4.1); market
        and exchange execution ignore it. For those the first send takes the price the position
        just re-read closes at (``price_current``: bid for a buy, ask for a sell), so the tick read
        is skipped: one terminal call less per ticket of a close-all. Every resend reads a fresh
        tick (§4.5: a requote or an invalid price is answered with a fresh one), as does a position
        without a current price.
        """
        b = self.b
        if not self.sends and spec.trade_exemode in (
            b._const("SYMBOL_TRADE_EXECUTION_MARKET"), b._const("SYMBOL_TRADE_EXECUTION_EXCHANGE")
        ):
            current = float(pos.price_current)
            if current > 0.0 and math.isfinite(current):
                return current
        tick = b._tick(self.symbol)
        return float(tick.bid) if self.buy else float(tick.ask)

    def _request(self, vol: float, price: float, spec: SymbolSpec, filling: int) -> dict[str, Any]:
        b = self.b
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
            self.unresolved = self.ambiguous_seen = self.reply_lost = self.await_change = True
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
            self.unresolved = self.ambiguous_seen = self.await_change = True
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
        """The last answer was ambiguous and nothing more will be sent: find out what it did, in bounded time."""
        before = self.closed
        try:
            pos = self.b._position_raw(self.ticket)
        except BrokerError as exc:
            self.notes.append(f"outcome unknown: could not re-read the position ({exc})")
            return
        self._reconcile(pos)
        if self.await_change:
            try:
                self._await_change(pos, before)
            except _Stop as stop:
                self.notes.append(f"outcome unknown: {stop.message}")

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
            # (in doubt only the named deals can be found: once they are, there is nothing to wait for)
            if wanted <= tickets and (wanted or not self.ambiguous_seen or found or self.deals_in_doubt):
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
        if self.deals_later and self._clean():
            return self._pending_result()
        return self._settled(self._our_deals() if self.closed > EPS else [])

    def _clean(self) -> bool:
        """A full close the terminal answered plainly: done, nothing ambiguous, every fill naming its deal.

        Then the only deals that count are the ones the answers named (``_our_deals`` keeps just
        those too), so they can be looked up in a deal-history read shared with other closes.
        """
        return (not self.ambiguous_seen and not self.unresolved and self.closed >= self.target - EPS
                and bool(self.deals) and len(self.deals) == len(self.prices))

    def _pending_result(self) -> CloseResult:
        return self._result(CloseStatus.CLOSED, self.closed, price=self._fill_price(), deals=self.deals, pending=True)

    def _fill_price(self) -> float:
        """The volume-weighted price of the fills the answers reported (when no deal says better)."""
        vol = sum(v for v, _ in self.prices)
        return sum(v * p for v, p in self.prices) / vol if vol > EPS else 0.0

    def settle(self, window: Mapping[int, Any]) -> CloseResult:
        """The final result of a job ``_finish`` left pending: its deals from ``window`` if all are
        there (deal ticket -> deal, one read for many closes), else read for this position alone,
        polled as ``_our_deals`` does (the terminal may lag its own replies)."""
        found = [window.get(t) for t in self.deals]
        if all(d is not None and int(d.position_id) == self.identifier for d in found):
            return self._settled(found)
        return self._settled(self._our_deals())

    def _settled(self, deals: list[Any]) -> CloseResult:
        deal_volume = _f(sum(float(d.volume) for d in deals))
        closed = max(self.closed, deal_volume)
        if deals:
            profit = round(sum(net_result(d) for d in deals), 2)
            price = sum(float(d.volume) * float(d.price) for d in deals) / max(deal_volume, EPS)
        else:
            profit = 0.0
            price = self._fill_price()
        if closed >= self.target - EPS:
            status = CloseStatus.CLOSED
        elif closed > EPS:
            status = CloseStatus.PARTIAL
        else:
            status = CloseStatus.FAILED
        return self._result(status, closed, price=price, profit=profit,
                            deals=tuple(int(d.ticket) for d in deals) or tuple(self.deals))

    def _result(self, status: CloseStatus, closed: float, *, price: float = 0.0, profit: float = 0.0,
                deals: Iterable[int] = (), pending: bool = False) -> CloseResult:
        if status is CloseStatus.CLOSED and self.retcode == rc.DONE:
            message = "; ".join(self.notes) or self.message or rc.describe(rc.DONE)
        else:
            message = "; ".join([m for m in [self.message, *self.notes] if m])
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
            deals_pending=pending,
        )
