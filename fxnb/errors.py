"""fxnb's own exception hierarchy.

Library errors (MetaTrader5 retcodes, sqlite, file system) are translated into
these at the boundary. Each class says what the monitor does about it, so the
policy lives in one place (freqtrade's ``exceptions.py`` is the model).
"""

from __future__ import annotations


class FxnbError(Exception):
    """Base class: every error fxnb raises on purpose."""


class ConfigError(FxnbError):
    """Configuration is invalid. The process refuses to start and prints this one message."""


class BrokerError(FxnbError):
    """Something went wrong talking to the terminal.

    ``code`` is the terminal's code (a ``last_error()`` code or an ``order_send``
    retcode) and ``message`` its text, kept verbatim for the audit trail.
    """

    def __init__(self, message: str, *, code: int | None = None, terminal_message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.terminal_message = terminal_message


class BrokerUnavailable(BrokerError):
    """The terminal cannot be reached (IPC error, not initialised, disconnected).

    The monitor marks itself disconnected, reconnects with backoff and never
    treats the failed read as an empty book.
    """


class TemporaryBrokerError(BrokerError):
    """Requote, price changed, off quotes, timeout, too many requests.

    Retried a bounded number of times after re-reading the position.
    """


class OrderRejected(BrokerError):
    """The trade server refused the order for a reason that retrying will not fix
    (invalid volume, market closed, autotrading disabled, no money...).

    Never retried; recorded as the ticket's final result.
    """


class PositionNotFound(BrokerError):
    """The ticket is not open on the terminal (already closed, or never existed)."""


class CommandError(FxnbError):
    """A command file is malformed. It is moved to ``commands/errors/`` with this reason."""


class StorageError(FxnbError):
    """The database cannot be opened or written (missing, read-only, disk full)."""
