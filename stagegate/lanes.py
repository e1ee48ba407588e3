"""Bounded lanes of worker threads: a fixed number of workers per kind of work, a bounded queue served
in priority order, and a refusal instead of growth.

Why it exists: the blocking audit webhook must have the gate of a new Environment written within
`AUDIT_DEADLINE_SECONDS`, whatever else is going on. One shared, unbounded pool let large deliveries and
slow recomputes pile up in front of an Environment create (issue 10, item 3). Separate lanes keep kinds
of work apart, priorities inside a lane let urgent work pass queued work, and a full lane refuses
(`LaneFull`, a retryable error: 503 over HTTP) or evicts its least urgent entry rather than grow.

What a lane must never do: start work whose caller has stopped waiting. A caller withdraws what it no
longer waits for with `Future.cancel()`, and a cancelled entry is never run. Work already running cannot
be interrupted (it is a thread); it ends within the timeouts of the calls it makes.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from shared.errors import RetryableError

T = TypeVar("T")

Priority = tuple[int, ...]


class LaneFull(RetryableError):
    """The lane's queue is full of work at least as urgent: refused (or evicted) before anything was done."""


@dataclass(order=True)
class _Entry:
    priority: Priority
    seq: int
    work: Callable[[], Any] = field(compare=False)
    future: Future[Any] = field(compare=False)


class Lane:
    """`workers` threads taking work in priority order (lower first, then first come) from a queue of at
    most `limit` entries. Threads start with the first submission."""

    def __init__(self, name: str, workers: int, limit: int) -> None:
        self.name = name
        self.workers = workers
        self.limit = limit
        self._queue: list[_Entry] = []
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []

    def submit(self, work: Callable[[], T], priority: Priority = ()) -> Future[T]:
        """Queue `work`; raise `LaneFull` when the queue holds `limit` entries none less urgent than this.

        When the queue is full and a less urgent entry waits, that entry is evicted instead: its future
        fails with `LaneFull` and its work never runs.
        """
        future: Future[T] = Future()
        with self._lock:
            entry = _Entry(priority, next(self._seq), work, future)
            if len(self._queue) >= self.limit:
                self._drop_withdrawn()
            if len(self._queue) >= self.limit:
                worst = max(self._queue)
                if worst < entry:
                    raise LaneFull(f"{self.name}: {self.limit} requests are waiting already; refused")
                self._queue.remove(worst)
                heapq.heapify(self._queue)
                if worst.future.set_running_or_notify_cancel():
                    worst.future.set_exception(
                        LaneFull(f"{self.name}: evicted by more urgent work before it started")
                    )
            heapq.heappush(self._queue, entry)
            self._start_workers()
            self._ready.notify()
        return future

    @property
    def waiting(self) -> int:
        """Entries queued and not withdrawn."""
        with self._lock:
            return sum(1 for entry in self._queue if not entry.future.cancelled())

    def _drop_withdrawn(self) -> None:
        kept = [entry for entry in self._queue if not entry.future.cancelled()]
        if len(kept) != len(self._queue):
            self._queue = kept
            heapq.heapify(self._queue)

    def _start_workers(self) -> None:
        while len(self._threads) < self.workers:
            thread = threading.Thread(
                target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue:
                    self._ready.wait()
                entry = heapq.heappop(self._queue)
            if not entry.future.set_running_or_notify_cancel():
                continue  # withdrawn while it waited
            try:
                result = entry.work()
            except BaseException as exc:  # handed to the waiter, as concurrent.futures does
                entry.future.set_exception(exc)
            else:
                entry.future.set_result(result)
