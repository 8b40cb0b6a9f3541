"""Building the informational structs: SymbolInfo, TerminalInfo, AccountInfo."""

from __future__ import annotations

from . import constants as C
from .money import Converter
from .structs import AccountInfo, SymbolInfo, TerminalInfo, symbol_info_defaults
from .symbols import SymbolSpec

BUILD = 4755
VERSION = (500, BUILD, "14 Feb 2025")
COMPANY = "fxnb Simulated Markets Ltd."

_DEFAULTS = symbol_info_defaults()


def symbol_info(
    spec: SymbolSpec, bid: float, ask: float, server_time: int, visible: bool, conv: Converter
) -> SymbolInfo:
    """Static spec + current quote. Symbols not in Market Watch report zero prices, like the terminal."""
    if not visible:
        bid = ask = 0.0
    d = dict(_DEFAULTS)
    tick_profit = tick_loss = 0.0
    if visible:
        base = spec.point * spec.contract_size
        tick_profit = base * conv.factor(spec.currency_profit, True, spec.name, bid)
        tick_loss = base * conv.factor(spec.currency_profit, False, spec.name, ask)
    d.update(
        select=visible,
        visible=visible,
        time=server_time if visible else 0,
        digits=spec.digits,
        spread=spec.spread,
        spread_float=True,
        ticks_bookdepth=10,
        trade_calc_mode=C.SYMBOL_CALC_MODE_FOREX,
        trade_mode=spec.trade_mode,
        trade_stops_level=spec.stops_level,
        trade_exemode=spec.trade_exemode,
        swap_mode=C.SYMBOL_SWAP_MODE_POINTS,
        swap_rollover3days=C.DAY_OF_WEEK_WEDNESDAY,
        expiration_mode=15,
        filling_mode=spec.filling_mode,
        order_mode=127,
        bid=bid,
        bidhigh=bid,
        bidlow=bid,
        ask=ask,
        askhigh=ask,
        asklow=ask,
        point=spec.point,
        trade_tick_value=tick_profit,
        trade_tick_value_profit=tick_profit,
        trade_tick_value_loss=tick_loss,
        trade_tick_size=spec.point,
        trade_contract_size=spec.contract_size,
        volume_min=spec.volume_min,
        volume_max=spec.volume_max,
        volume_step=spec.volume_step,
        margin_hedged=spec.contract_size / 2,
        currency_base=spec.currency_base,
        currency_profit=spec.currency_profit,
        currency_margin=spec.currency_margin,
        description=spec.description,
        name=spec.name,
        path=spec.path,
    )
    return SymbolInfo(**d)


def terminal_info(*, connected: bool, trade_allowed: bool, path: str) -> TerminalInfo:
    return TerminalInfo(
        community_account=False,
        community_connection=False,
        connected=connected,
        dlls_allowed=False,
        trade_allowed=trade_allowed,
        tradeapi_disabled=False,
        email_enabled=False,
        ftp_enabled=False,
        notifications_enabled=False,
        mqid=False,
        build=BUILD,
        maxbars=100000,
        codepage=0,
        ping_last=35000 if connected else 0,
        community_balance=0.0,
        retransmission=0.0,
        company=COMPANY,
        name="MetaTrader 5 (fxnb simulator)",
        language="English",
        path=path,
        data_path=path,
        commondata_path=path,
    )


def account_info(
    *,
    login: int,
    leverage: int,
    hedging: bool,
    balance: float,
    credit: float,
    floating: float,
    margin: float,
    name: str,
    server: str,
    currency: str,
) -> AccountInfo:
    """equity = balance + credit + profit; margin_level is 0 when no margin is used."""
    equity = round(balance + credit + floating, 2)
    level = round(equity / margin * 100.0, 2) if margin else 0.0
    mode = C.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING if hedging else C.ACCOUNT_MARGIN_MODE_RETAIL_NETTING
    return AccountInfo(
        login=login,
        trade_mode=C.ACCOUNT_TRADE_MODE_DEMO,
        leverage=leverage,
        limit_orders=200,
        margin_so_mode=C.ACCOUNT_STOPOUT_MODE_PERCENT,
        trade_allowed=True,
        trade_expert=True,
        margin_mode=mode,
        currency_digits=2,
        fifo_close=False,
        balance=balance,
        credit=credit,
        profit=floating,
        equity=equity,
        margin=margin,
        margin_free=round(equity - margin, 2),
        margin_level=level,
        margin_so_call=50.0,
        margin_so_so=30.0,
        margin_initial=0.0,
        margin_maintenance=0.0,
        assets=0.0,
        liabilities=0.0,
        commission_blocked=0.0,
        name=name,
        server=server,
        currency=currency,
        company=COMPANY,
    )
