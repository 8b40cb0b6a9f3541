"""A MetaTrader5-shaped client for an mt5linux server (RPyC classic), without the mt5linux client.

An mt5linux server is an RPyC *classic* server on a (Wine) Windows Python that
can ``import MetaTrader5``; ``python -m fxnb.broker.serve`` is the same thing
around the simulator. The client protocol is small: run
``import MetaTrader5 as mt5`` remotely, then evaluate ``mt5.<function>(...)``
there and copy the result back. ``RemoteTerminal`` speaks exactly that protocol.

Why not ``mt5linux.MetaTrader5(host, port)`` itself (checked against the
installed 1.1.1 and against 1.0.11):

* 1.1.1 does not import on Python 3.11: ``metatrader5.py`` uses PEP 701
  f-strings (line breaks and quotes inside ``{...}``), a ``SyntaxError`` before 3.12.
* 1.1.x's constructor is a container manager: it runs ``docker``/``udocker``,
  and when no ``lprett/mt5linux`` container owns the port it takes the *next
  free* port and pulls and starts the image, instead of connecting.
* 1.0.x returns RPyC proxies: every attribute of every position is a network
  round trip; 1.1.x copies results by pickle, which the real package's structs
  refuse (mt5linux issue #57).

``RemoteTerminal`` converts results *on the server* into plain tuples and dicts
(via ``_asdict()``, which the real structs and the simulator's namedtuples both
have), copies them in one round trip, and hands the adapter objects with
attribute access. Constants are read from the server's module, once.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from fxnb.errors import BrokerUnavailable, ConfigError

#: What a call raises when the link breaks (RPyC's ``AsyncResultTimeout`` is a ``TimeoutError``).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (EOFError, OSError)

# Run once per connection on the server, in the connection's namespace (after mt5linux's own setup lines).
_SERVER_SETUP = """
import sys
sys.path.append('C:\\\\mt5libs')
import datetime
mt5 = __import__('MetaTrader5')  # the server's package (or the simulator serve.py registered)

def _fxnb_plain(value):
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if hasattr(value, '_asdict'):
        return {'__struct__': type(value).__name__,
                **{k: _fxnb_plain(v) for k, v in value._asdict().items()}}
    if isinstance(value, (tuple, list)):
        return tuple(_fxnb_plain(v) for v in value)
    return value

def _fxnb_call(name, args, kwargs):
    return _fxnb_plain(getattr(mt5, name)(*args, **kwargs))
"""


class Struct(SimpleNamespace):
    """A copied result struct: attribute access and ``_asdict()``, like the package's struct-sequences."""

    def _asdict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "__struct__"}


def _local(value: Any) -> Any:
    if isinstance(value, dict) and "__struct__" in value:
        return Struct(**{k: _local(v) for k, v in value.items()})
    if isinstance(value, tuple):
        return tuple(_local(v) for v in value)
    return value


class RemoteTerminal:
    """The server's ``MetaTrader5`` module, as a local module-shaped object (one RPyC connection).

    Functions are forwarded as ``mt5.<name>(*args, **kwargs)`` with arguments
    sent as Python literals; upper-case names are the server module's constants.
    Calls are serialised per connection (an RPyC connection is one stream).
    """

    def __init__(self, host: str, port: int, *, timeout_s: float = 300.0) -> None:
        try:
            import rpyc
        except ImportError as exc:
            raise ConfigError("broker.kind 'mt5linux' needs rpyc: pip install 'fxnb[mt5linux]'") from exc
        self._obtain = rpyc.classic.obtain
        self._address = f"{host}:{port}"
        self._lock = threading.Lock()
        self._consts: dict[str, Any] = {}
        try:
            self._conn = rpyc.classic.connect(host, int(port))
        except TRANSPORT_ERRORS as exc:
            raise BrokerUnavailable(f"cannot reach the mt5linux server at {self._address}: {exc}") from exc
        self._conn._config["sync_request_timeout"] = timeout_s
        try:
            self._conn.execute(_SERVER_SETUP)
        except TRANSPORT_ERRORS as exc:
            self.close()
            raise BrokerUnavailable(f"the server at {self._address} dropped the link: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - e.g. the server's ImportError, re-raised by RPyC
            self.close()
            raise BrokerUnavailable(
                f"the server at {self._address} cannot import MetaTrader5 ({type(exc).__name__}: {exc})"
            ) from exc

    def _eval(self, code: str) -> Any:
        with self._lock:
            return self._obtain(self._conn.eval(code))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name.isupper():
            if name not in self._consts:
                self._consts[name] = self._eval(f"mt5.{name}")  # a missing one raises AttributeError
            return self._consts[name]

        def call(*args: Any, **kwargs: Any) -> Any:
            return _local(self._eval(f"_fxnb_call({name!r}, {args!r}, {kwargs!r})"))

        call.__name__ = name
        return call

    def close(self) -> None:
        try:
            self._conn.close()
        except Exception:  # noqa: BLE001 - closing a dead link
            pass

    def __repr__(self) -> str:
        return f"<RemoteTerminal mt5linux server {self._address}>"


def connect_mt5linux(host: str, port: int, *, timeout_s: float = 300.0) -> RemoteTerminal:
    """A ``RemoteTerminal`` on ``host:port``; ``BrokerUnavailable`` if nothing answers.

    ``timeout_s`` is RPyC's ``sync_request_timeout``: it must exceed the
    terminal's ``initialize`` timeout, or a slow login surfaces as "result expired".
    """
    return RemoteTerminal(host, port, timeout_s=timeout_s)


def close_client(client: Any) -> None:
    """Close a ``RemoteTerminal`` (no-op for other objects)."""
    if isinstance(client, RemoteTerminal):
        client.close()
