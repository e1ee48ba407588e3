"""What every local tool does as a command (`make demo`, `make run`, `make bench`, the scripts): answer
`--help` before starting anything, and stop cleanly on SIGTERM as on Ctrl-C.

Python's default SIGTERM ends the interpreter without unwinding, so `with` blocks that stop etcd, the
kube-apiserver and the functions never run and those are left running, re-parented. Raising
`KeyboardInterrupt` instead unwinds them as Ctrl-C does. SIGINT is set back to Python's own handler too:
a process started from a non-interactive shell in the background inherits SIGINT ignored.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


def no_arguments(prog: str, description: str) -> None:
    """Print usage for `--help` and exit, refuse any argument: the tool takes its settings from the
    environment, as the functions do."""
    argparse.ArgumentParser(prog=prog, description=description).parse_args()


class _Held:
    """Whether the main thread is in a `signals_held` block, and whether a signal came meanwhile."""

    depth = 0
    pending = False


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    if _Held.depth:
        _Held.pending = True
        return
    raise KeyboardInterrupt


def stop_cleanly_on_signals() -> None:
    """Make SIGTERM and SIGINT raise `KeyboardInterrupt` in the main thread (held in `signals_held`)."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Raise a SIGTERM or SIGINT that arrives in the block only when it ends: a child process started in
    it is then already registered to be stopped (an interrupt between the fork and the registration
    left one running, re-parented). Only the main thread gets interrupts; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _Held.depth += 1
    try:
        yield
    finally:
        _Held.depth -= 1
        if not _Held.depth and _Held.pending:
            _Held.pending = False
            raise KeyboardInterrupt
