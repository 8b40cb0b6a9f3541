"""Serve the simulated terminal over RPyC, the way an mt5linux server serves the real package.

    python -m fxnb.broker.serve --state-file sim_terminal.db --port 18812 [--host 127.0.0.1]
                                [--config config.json]

An mt5linux server is an RPyC *classic* server (``SlaveService``) on a
Windows Python that has the ``MetaTrader5`` package. The client runs
``import MetaTrader5 as mt5`` remotely and then evaluates strings such as
``mt5.positions_get(*(),**{'ticket': 5})``, copying results back by pickle.
Here the simulated terminal object is registered as ``sys.modules["MetaTrader5"]``
before the classic server starts, so that import resolves to it, and
``make_broker`` with ``broker.kind = "mt5linux"`` talks to the simulator
through the real mt5linux client code.

A classic server executes any code its clients send. It therefore listens on
loopback only, unless ``--allow-remote`` is given on purpose.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fxnb.config import is_loopback

log = logging.getLogger("fxnb.broker.serve")

READY_LINE = "fxnb-sim-rpyc listening on {host}:{port}"


def build_terminal(state_file: Path, *, section: Mapping[str, Any] | None = None) -> Any:
    """A simulated terminal on ``state_file``; ``section`` is a ``broker.sim`` mapping (minus state_file)."""
    from fxnb.broker.sim import SimSettings, create_terminal

    state_file = state_file.resolve()
    merged = dict(section or {})
    merged["state_file"] = state_file.name
    return create_terminal(SimSettings.from_mapping(merged, state_file.parent))


def make_server(terminal: Any, host: str, port: int) -> Any:
    """A threaded RPyC classic server whose ``import MetaTrader5`` is ``terminal`` (not started)."""
    from rpyc.core.service import SlaveService
    from rpyc.utils.server import ThreadedServer

    sys.modules["MetaTrader5"] = terminal
    return ThreadedServer(
        SlaveService,
        hostname=host,
        port=port,
        reuse_addr=True,
        auto_register=False,
        protocol_config={"sync_request_timeout": 300},
    )


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fxnb.broker.serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--state-file", required=True, type=Path, help="simulator state file (created if new)")
    p.add_argument("--port", required=True, type=int, help="TCP port (mt5linux's default is 18812)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--config", type=Path, help="read broker.sim from this config.json")
    p.add_argument("-v", "--verbose", action="store_true", help="log every RPyC connection")
    p.add_argument("--allow-remote", action="store_true",
                   help="listen on a non-loopback address: anyone who can connect can run code here")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not is_loopback(args.host) and not args.allow_remote:
        print(f"refusing to serve on {args.host}: an RPyC classic server runs any code a client sends; "
              "use a loopback address or pass --allow-remote", file=sys.stderr)
        return 2
    section: Mapping[str, Any] = {}
    if args.config is not None:
        from fxnb.config import load_config
        from fxnb.errors import ConfigError

        try:
            section = load_config(args.config).broker.sim
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            return 2
    terminal = build_terminal(args.state_file, section=section)
    server = make_server(terminal, args.host, args.port)

    def _stop(signum: int, _frame: Any) -> None:
        log.info("signal %s: stopping", signum)
        threading.Thread(target=server.close, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(READY_LINE.format(host=args.host, port=server.port), flush=True)
    try:
        server.start()
    finally:
        close = getattr(terminal, "close", None)
        if callable(close):
            close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
