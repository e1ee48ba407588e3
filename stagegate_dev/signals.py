"""SIGTERM as Ctrl-C, for the local tools that start processes (`make demo`, `make dev`, the devstack).

Python's default SIGTERM ends the interpreter without unwinding, so `with` blocks that stop etcd, the
kube-apiserver and the functions never run and those are left running, re-parented. Raising
`KeyboardInterrupt` instead unwinds them as Ctrl-C does. SIGINT is set back to Python's own handler too:
a process started from a non-interactive shell in the background inherits SIGINT ignored.
"""

from __future__ import annotations

import signal
from types import FrameType


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def stop_cleanly_on_signals() -> None:
    """Make SIGTERM and SIGINT raise `KeyboardInterrupt` in the main thread."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
