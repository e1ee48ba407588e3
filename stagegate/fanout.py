"""Many independent Kubernetes calls at once: bounded, in the caller's context, and stopped at a deadline.

A recompute of one upstream reads and writes a gate per downstream Environment; a thousand of them one
after the other outlast GitHub's ten-second wait for a webhook's answer. The calls are independent
(every write is conditional on the gate it read), so they run `WORKERS` at a time. Each task runs in a
copy of the caller's context, so a caller that stopped waiting (`stagegate.abandon`) stops every task
before its next call. A task not started by `deadline` (a `time.monotonic()` moment) is not started at
all: it comes back as not done, for the caller to hand on, rather than run past the answer.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

WORKERS = 8
"""Kubernetes calls in flight at once per recompute: the local apiserver served 1,000 gate writes in
about a second this way (bench/bench_revocation.py), and the client's pool keeps 10 connections."""


@dataclass(frozen=True)
class Done(Generic[T, R]):
    """What became of one task: its result or its error; `started` False when the deadline came first."""

    item: T
    result: R | None = None
    error: Exception | None = None
    started: bool = True


def fan_out(
    items: Sequence[T], work: Callable[[T], R], deadline: float | None = None, workers: int = WORKERS
) -> list[Done[T, R]]:
    """`work(item)` for every item, `workers` at a time, in submission order; results in item order."""

    def one(item: T) -> Done[T, R]:
        if deadline is not None and time.monotonic() > deadline:
            return Done(item, started=False)
        try:
            return Done(item, result=work(item))
        except Exception as exc:  # handed back to the caller, which decides per kind
            return Done(item, error=exc)

    if len(items) <= 1 or workers <= 1:
        return [one(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="fanout") as pool:
        futures = [pool.submit(contextvars.copy_context().run, one, item) for item in items]
        return [future.result() for future in futures]
