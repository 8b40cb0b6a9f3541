"""fxnb: a Jupyter-native operator console for MetaTrader 5 accounts."""

__version__ = "0.1.0"

__all__ = ["__version__"]
