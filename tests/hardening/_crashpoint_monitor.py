"""``fxnb monitor`` with a kill -9 injected at one named point of its own code.

    FXNB_CRASH_AT="fxnb.storage.writer:Store.finish_operation:after:1" \
        python tests/hardening/_crashpoint_monitor.py --config ws/config.json

``module:Class.method:before|after:N`` — on the Nth call of that method the process
sends itself SIGKILL, just before the call or just after it returned. Nothing is
cleaned up (no atexit, no finally), exactly as if the operator's ``kill -9`` or the
OOM killer had landed there; what was committed to SQLite and the file system stays.

``FXNB_HOOK_ACTION=disconnect`` (with ``FXNB_HOOK_STATE`` = the simulator's state file)
does something else at that point: it makes the simulated terminal unreachable (control
file ``disconnected: true``) and lets the call go on, as if the terminal died right there.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys
import threading
from typing import Any


def install(spec: str) -> None:
    module_name, attr, when, nth_text = spec.split(":")
    if when not in ("before", "after"):
        raise SystemExit(f"FXNB_CRASH_AT: expected before|after, got {when!r}")
    nth = int(nth_text)
    module = importlib.import_module(module_name)
    owner_name, _, method = attr.rpartition(".")
    owner = getattr(module, owner_name) if owner_name else module
    original = getattr(owner, method)
    lock = threading.Lock()
    calls = 0
    action = os.environ.get("FXNB_HOOK_ACTION", "kill")

    def strike() -> None:
        if action == "disconnect":
            from fxnb.broker.sim import write_control

            write_control(os.environ["FXNB_HOOK_STATE"], disconnected=True)
        else:
            os.kill(os.getpid(), signal.SIGKILL)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        with lock:
            calls += 1
            hit = calls == nth
        if hit and when == "before":
            strike()
        result = original(*args, **kwargs)
        if hit and when == "after":
            strike()
        return result

    setattr(owner, method, wrapper)


if __name__ == "__main__":
    install(os.environ["FXNB_CRASH_AT"])
    from fxnb.cli import main

    sys.argv = ["fxnb", "monitor", *sys.argv[1:]]
    main()
