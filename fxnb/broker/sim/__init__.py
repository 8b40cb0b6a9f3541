"""A simulated MetaTrader 5 terminal that speaks the ``MetaTrader5`` Python API.

The default broker everywhere (the official package is Windows-only). A
``SimTerminal`` instance is module-shaped: use it where ``import MetaTrader5 as
mt5`` would be used. State persists in a SQLite file; ``write_control`` flips the
running terminal from outside (disconnect, Algo Trading, market hours, prices)::

    mt5 = create_terminal(SimSettings.from_mapping(config["broker"]["sim"], workspace))
    mt5.initialize()
    mt5.positions_get(symbol="EURUSD")
    write_control(mt5.state_file, prices={"EURUSD": 1.1})  # as if from the terminal's GUI

Where the settings are described: ``settings`` (every key of ``broker.sim``,
including the ambiguous-outcome faults), ``control`` (the control file),
``script`` (the ``price_path`` file format), ``lag`` (late visibility).
"""

from __future__ import annotations

from .control import read_control, write_control
from .settings import FaultSettings, SimSettings, TraderSettings
from .terminal import SimTerminal, create_terminal

__all__ = [
    "FaultSettings",
    "SimSettings",
    "SimTerminal",
    "TraderSettings",
    "create_terminal",
    "read_control",
    "write_control",
]
