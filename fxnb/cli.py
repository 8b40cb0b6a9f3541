"""The ``fxnb`` command line: thin commands over the library.

Every command takes ``--config PATH`` (default ``$FXNB_CONFIG`` or
``./config.json``). Any ``FxnbError`` is printed as one line, never a traceback.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from fxnb import __version__
from fxnb.config import Config, load_config
from fxnb.errors import FxnbError

FINAL = {"completed", "partially_completed", "failed", "expired", "rejected"}


class FxnbClickError(click.ClickException):
    """One line on stderr; the exit code says what kind of failure (systemd uses it)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


EXIT_CONFIG = 2  # bad configuration: a restart will not help
EXIT_ALREADY_RUNNING = 3  # another monitor holds the workspace


class _Group(click.Group):
    """Turns fxnb's own errors into one clear line and a meaningful exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        from fxnb.errors import ConfigError
        from fxnb.monitor.lock import AlreadyRunning

        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise FxnbClickError(str(exc), EXIT_CONFIG) from None
        except AlreadyRunning as exc:
            raise FxnbClickError(str(exc), EXIT_ALREADY_RUNNING) from None
        except FxnbError as exc:
            raise FxnbClickError(str(exc), 1) from None


def _config_option(fn: Any) -> Any:
    return click.option(
        "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
        envvar="FXNB_CONFIG", show_envvar=True, help="Path to config.json (default: ./config.json).",
    )(fn)


def _load(config_path: Path | None) -> Config:
    return load_config(config_path)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fxnb")
def cli() -> None:
    """fxnb: an operator console for MetaTrader 5 accounts (monitor, commands, dashboard)."""


# ---------------------------------------------------------------------------- workspace
@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--sim-positions", type=click.IntRange(0, 100_000), default=12, show_default=True,
              help="Open positions the simulated terminal starts with.")
@click.option("--sim-seed", type=click.IntRange(0, 2**32 - 1), default=42, show_default=True,
              help="Seed for the simulated prices and positions.")
@click.option("--sim-frozen", is_flag=True, help="Hold simulated prices still (volatility 0).")
@click.option("--check-interval", type=click.FloatRange(0.1, 86400), default=None,
              help="Seconds between polls (default 30).")
def init(directory: Path, sim_positions: int, sim_seed: int, sim_frozen: bool, check_interval: float | None) -> None:
    """Create a new workspace in DIRECTORY on the simulated terminal."""
    from fxnb.workspace import init_workspace

    cfg = init_workspace(directory, sim_positions=sim_positions, sim_seed=sim_seed, sim_frozen=sim_frozen,
                         check_interval=check_interval)
    click.echo(f"workspace ready: {cfg.base_dir}")
    click.echo(f"  config:   {cfg.path}")
    click.echo(f"  database: {cfg.paths.database}")
    click.echo(f"  commands: {cfg.paths.commands}")
    click.echo(f"next: fxnb monitor --config {cfg.path}")


@cli.command("config")
@_config_option
def show_config(config_path: Path | None) -> None:
    """Validate the config and print it (secrets redacted) with any warnings."""
    cfg = _load(config_path)
    click.echo(json.dumps(cfg.sanitized(), indent=2))
    for w in cfg.warnings:
        click.echo(f"warning: {w}", err=True)


# ---------------------------------------------------------------------------- service
@cli.command()
@_config_option
def monitor(config_path: Path | None) -> None:
    """Run the monitor service until SIGTERM or Ctrl-C."""
    from fxnb.monitor.service import run_monitor

    sys.exit(run_monitor(_load(config_path)))


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8866, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Listen address (loopback by default).")
@_config_option
def dashboard(port: int, host: str, config_path: Path | None) -> None:
    """Serve the Voila dashboard (sources stripped, no tracebacks) for this workspace."""
    from fxnb.dashboard import serve_dashboard

    sys.exit(serve_dashboard(_load(config_path), port=port, host=host))


@cli.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Demo workspace (default ./.fxnb/demo, created on first run).")
@click.option("--port", type=click.IntRange(0, 65535), default=8866, show_default=True)
def demo(directory: Path | None, port: int) -> None:
    """Start the monitor and the dashboard together on the simulated terminal; Ctrl-C stops both."""
    from fxnb.dashboard import run_demo

    sys.exit(run_demo(directory, port=port))


@cli.command()
@_config_option
def terminal(config_path: Path | None) -> None:
    """Read the account and open positions straight from the terminal, through the adapter."""
    from fxnb.broker import make_broker

    cfg = _load(config_path)
    broker = make_broker(cfg)
    broker.connect()
    try:
        snap = broker.snapshot()
    finally:
        broker.shutdown()
    a = snap.account
    click.echo(f"account {a.login} ({a.server}) {a.currency}  balance {a.balance:,.2f}  equity {a.equity:,.2f}  "
               f"floating {a.profit:+,.2f}  margin level {a.margin_level:,.1f}%")
    _print_positions([_pos_dict(p) for p in snap.positions])


# ---------------------------------------------------------------------------- commands
@cli.command()
@click.argument("kind", type=click.Choice(["profit", "loss", "all", "single"]))
@click.argument("ticket", type=int, required=False)
@click.option("--volume", type=float, default=None, help="single: close only this many lots (partial close).")
@click.option("--percent", type=float, default=None, help="single: close this percent of the volume.")
@click.option("--symbol", default=None, help="profit/loss/all: only this symbol.")
@click.option("--magic", type=int, default=None, help="profit/loss/all: only this magic number.")
@click.option("--side", type=click.Choice(["buy", "sell"]), default=None, help="profit/loss/all: only one side.")
@click.option("--expires-in", type=click.FloatRange(1, 86400), default=None,
              help="Seconds after which the command is refused instead of run late (default from config).")
@click.option("--wait", is_flag=True, help="Wait for the result; exit 1 unless it completed.")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="With --wait: give up after this.")
@_config_option
def close(kind: str, ticket: int | None, volume: float | None, percent: float | None, symbol: str | None,
          magic: int | None, side: str | None, expires_in: float | None, wait: bool, timeout: float,
          config_path: Path | None) -> None:
    """Drop a close command: profit | loss | all [--symbol S], or single TICKET [--volume V | --percent P]."""
    if kind == "single":
        if ticket is None:
            raise click.UsageError("close single needs a TICKET")
        if volume is not None and percent is not None:
            raise click.UsageError("give --volume or --percent, not both")
        if symbol or magic is not None or side:
            raise click.UsageError("--symbol/--magic/--side filter bulk closes only")
    else:
        if ticket is not None:
            raise click.UsageError(f"close {kind} takes no TICKET (did you mean `close single {ticket}`?)")
        if volume is not None or percent is not None:
            raise click.UsageError("--volume/--percent apply to `close single` only")
    cmd_type = "partial" if kind == "single" and (volume is not None or percent is not None) else kind
    _drop(config_path, cmd_type, wait=wait, timeout=timeout, ticket=ticket, volume=volume, percent=percent,
          symbol=symbol, magic=magic, side=side, expires_in=expires_in)


@cli.command()
@click.argument("action", type=click.Choice(["pause", "resume"]))
@click.option("--wait", is_flag=True, help="Wait until the monitor has applied it.")
@click.option("--timeout", type=float, default=60.0, show_default=True)
@_config_option
def rules(action: str, wait: bool, timeout: float, config_path: Path | None) -> None:
    """Pause or resume the automatic rules (through a command file)."""
    _drop(config_path, f"{action}_rules", wait=wait, timeout=timeout)


@cli.command()
@click.option("--wait", is_flag=True, help="Wait for the result; exit 1 unless the book ended flat.")
@click.option("--timeout", type=float, default=180.0, show_default=True)
@_config_option
def flatten(wait: bool, timeout: float, config_path: Path | None) -> None:
    """Pause the rules, close everything, cancel pending orders, and report the book flat."""
    _drop(config_path, "flatten", wait=wait, timeout=timeout)


def _drop(config_path: Path | None, cmd_type: str, *, wait: bool, timeout: float, **fields: Any) -> None:
    from fxnb.commands import CommandDir

    cfg = _load(config_path)
    cmd = CommandDir(cfg.paths.commands).write(cmd_type, requested_by="cli", **fields)
    click.echo(f"queued {cmd_type} command {cmd.id} ({cfg.paths.commands / cmd.file_name})")
    if not wait:
        return
    op = _wait_for(cfg, cmd.id, timeout)
    if op is None:
        click.echo(f"no final result after {timeout:.0f}s: is the monitor running?", err=True)
        sys.exit(1)
    _print_operation(op)
    sys.exit(0 if op["status"] == "completed" else 1)


def _wait_for(cfg: Config, command_id: str, timeout: float) -> dict[str, Any] | None:
    from fxnb.errors import StorageError
    from fxnb.storage import Reader

    deadline = time.monotonic() + timeout
    reader = None
    while time.monotonic() < deadline:
        try:
            reader = reader or Reader(cfg.paths.database)
            op = reader.operation(command_id)
        except StorageError:
            op = None
        if op is not None and op["status"] in FINAL:
            return op
        time.sleep(0.05)
    return None


# ---------------------------------------------------------------------------- reading
@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_config_option
def status(as_json: bool, config_path: Path | None) -> None:
    """Account, open positions and monitor health, from the database."""
    from fxnb.status import read_status

    cfg = _load(config_path)
    st = read_status(cfg)
    if as_json:
        click.echo(json.dumps(st, indent=2, default=str))
        return
    mon = st["monitor"]
    a = st["account"] or {}
    health = "STALE" if mon.get("stale") else ("connected" if mon.get("connected") else "DISCONNECTED")
    click.echo(f"monitor: {health}  state {mon.get('state')}  last poll {mon.get('last_poll_at')}  "
               f"rules {mon.get('rules_mode')}{' (paused)' if mon.get('rules_paused') else ''}")
    if a:
        click.echo(f"account: {a.get('currency')}  balance {a.get('balance', 0):,.2f}  "
                   f"equity {a.get('equity', 0):,.2f}  floating {a.get('net_profit', 0):+,.2f}")
    _print_positions(st["positions"])


@cli.command("commands")
@click.option("--last", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_config_option
def commands_(last: int, as_json: bool, config_path: Path | None) -> None:
    """Recent operations (operator commands and rule actions) with their per-ticket results."""
    from fxnb.storage import Reader

    cfg = _load(config_path)
    reader = Reader(cfg.paths.database)
    ops = reader.operations(last=last)
    if as_json:
        for op in ops:
            op["results"] = reader.results(op["id"])
        click.echo(json.dumps(ops, indent=2, default=str))
        return
    if not ops:
        click.echo("no operations yet")
    for op in ops:
        _print_operation({**op, "results": reader.results(op["id"])})


def _pos_dict(p: Any) -> dict[str, Any]:
    return {"ticket": p.ticket, "symbol": p.symbol, "type": p.side.value, "volume": p.volume,
            "price_open": p.price_open, "price_current": p.price_current, "profit": p.profit, "swap": p.swap}


def _print_positions(positions: list[dict[str, Any]]) -> None:
    if not positions:
        click.echo("no open positions")
        return
    click.echo(f"{'ticket':>10} {'symbol':<8} {'type':<4} {'volume':>7} {'open':>11} {'current':>11} {'profit':>10}")
    for p in positions:
        click.echo(f"{p['ticket']:>10} {p['symbol']:<8} {p['type']:<4} {p['volume']:>7.2f} {p['price_open']:>11.5f} "
                   f"{p['price_current']:>11.5f} {p['profit']:>+10.2f}")
    click.echo(f"{len(positions)} open, floating {sum(p['profit'] for p in positions):+,.2f}")


def _print_operation(op: dict[str, Any]) -> None:
    click.echo(f"{op.get('command_id')}  {op.get('operation_type')}  {op['status']}  "
               f"source={op.get('source')}  closed={op.get('positions_closed')} failed={op.get('positions_failed')}"
               + (f"  error: {op['error_message']}" if op.get("error_message") else ""))
    for r in op.get("results") or []:
        click.echo(f"    ticket {r['ticket']}: {r['status']}  {r.get('closed_volume') or 0:.2f} lots  "
                   f"profit {r.get('profit') or 0:+.2f}  retcode {r.get('retcode')}  {r.get('message') or ''}")


def main() -> None:
    cli(prog_name="fxnb")


if __name__ == "__main__":
    main()
