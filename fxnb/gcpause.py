"""``gc_paused()``: no cyclic garbage collection inside a burst of short-lived, cycle-free objects."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: for bursts of many small containers without cycles.

    A poll builds tens of thousands of tuples and records for a 10,000-position book. Left alone,
    the collector runs dozens of young collections in the middle of it and, every few polls, a full
    one walking the whole heap (tens of milliseconds). Nothing made there is part of a cycle, so
    nothing is lost by collecting later. Only re-enables what it disabled (nesting and other
    threads are safe: the worst case is a collection that runs a little early).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
