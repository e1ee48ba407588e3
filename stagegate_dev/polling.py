"""Waiting for a child process to become ready: shared by `make run` (`stagegate_dev.serve`) and the
local test stack (`stagegate_dev.devstack`), so serving the functions does not import the stack's
tooling (the `kubernetes` package among it)."""

from __future__ import annotations

import time
from typing import Any


class ProcessExited(RuntimeError):
    """A child process we were waiting for has exited instead of becoming ready."""


def wait_until(ready: Any, timeout: float, what: str, diagnose: Any = None) -> None:
    """Poll `ready()` until it is true; raise with `diagnose()` output after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except ProcessExited:
            raise
        except Exception:  # noqa: S110  not ready yet: try again until the deadline
            pass
        time.sleep(0.1)
    detail = diagnose() if diagnose else ""
    raise RuntimeError(f"{what} not ready after {timeout:.0f}s\n{detail}")
