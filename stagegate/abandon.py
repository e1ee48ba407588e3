"""Work whose caller stopped waiting makes no further call.

An entry point answers within its deadline even when the work behind it is slow (`stagegate.http.within`,
the audit webhook's lanes): a thread cannot be stopped, so the work used to go on after the answer. On
Cloud Run functions (CPU only while a request is handled) and on Lambda (frozen once the handler
returns) such work may be frozen half-way and resume whenever the instance next runs, long after anyone
can tell. So work runs `abandonable`: once its caller gives up, the flag is set, and every adapter checks
it before each call to Kubernetes or GitHub (`check`), raising `Abandoned` instead. What is in flight at
that moment ends within its own timeout; nothing starts after the answer. What was left undone is the
caller's to hand on: a 503 (the apiserver in batch mode and Pub/Sub resend), or the scheduled resync.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import TypeVar

from shared.errors import RetryableError

T = TypeVar("T")

_FLAG: ContextVar[threading.Event | None] = ContextVar("stagegate_abandoned", default=None)


class Abandoned(RetryableError):
    """The caller stopped waiting for this work, so it made no further call."""


def abandonable(work: Callable[[], T]) -> tuple[Callable[[], T], threading.Event]:
    """`work` wrapped to run under a flag (in whichever thread runs it), and the flag to set to abandon it."""
    flag = threading.Event()

    def run() -> T:
        token = _FLAG.set(flag)
        try:
            return work()
        finally:
            _FLAG.reset(token)

    return run, flag


def check(what: str) -> None:
    """Raise `Abandoned` when the work running in this thread was abandoned; called before each I/O call."""
    flag = _FLAG.get()
    if flag is not None and flag.is_set():
        raise Abandoned(f"{what}: not attempted, the answer was already given (past its deadline)")
