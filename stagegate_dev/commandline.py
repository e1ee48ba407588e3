"""What every local tool does as a command (`make demo`, `make run`, `make bench`, the scripts): answer
`--help` before starting anything, and stop cleanly on SIGTERM as on Ctrl-C.

Python's default SIGTERM ends the interpreter without unwinding, so `with` blocks that stop etcd, the
kube-apiserver and the functions never run and those are left running, re-parented. Raising
`KeyboardInterrupt` instead unwinds them as Ctrl-C does. SIGINT is set back to Python's own handler too:
a process started from a non-interactive shell in the background inherits SIGINT ignored.
"""

from __future__ import annotations

import argparse
import signal
from types import FrameType


def no_arguments(prog: str, description: str) -> None:
    """Print usage for `--help` and exit, refuse any argument: the tool takes its settings from the
    environment, as the functions do."""
    argparse.ArgumentParser(prog=prog, description=description).parse_args()


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def stop_cleanly_on_signals() -> None:
    """Make SIGTERM and SIGINT raise `KeyboardInterrupt` in the main thread."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
