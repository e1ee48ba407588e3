"""When this process may take over a Lease whose holder never gave it back: judged on its own clock.

A reporter holds a Rollout's report Lease while it writes, and gives it back at the end; one that
crashed leaves it held. Deciding that such a claim ran out by comparing the holder's `renewTime` with
the taker's clock compares two machines' clocks: a taker whose clock runs ahead takes a Lease that is
still held, and two reports then write the same history at once (duplicate deployments). So, as
Kubernetes' leader election does (client-go's `observedTime`), a claim runs out when *this* process has
seen the very same Lease record (same `resourceVersion`) for at least its `leaseDurationSeconds` on
its own monotonic clock. Any write of the Lease (a renewal, a new holder) starts the count again.

The observations live in this process only, as in client-go: losing them (a new instance) only delays
a takeover, it never allows one early. Bounded: the oldest observations are dropped past `LIMIT`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

LIMIT = 10_000
"""Leases observed at once (one per Rollout being reported); older observations are forgotten."""

Key = tuple[str, str, str]
"""(namespace, name, uid) of a Lease."""


class LeaseWatch:
    """How long this process has seen each held Lease unchanged."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic, limit: int = LIMIT) -> None:
        self._monotonic = monotonic
        self._limit = limit
        self._lock = threading.Lock()
        self._seen: OrderedDict[Key, tuple[str, float]] = OrderedDict()

    def ran_out(self, key: Key, version: str, duration: float) -> bool:
        """Whether the claim recorded at `version` has stood unchanged for `duration` seconds, as this
        process has watched it. The first sight of a version starts the count and is never enough."""
        now = self._monotonic()
        with self._lock:
            seen = self._seen.get(key)
            if seen is None or seen[0] != version:
                self._seen[key] = (version, now)
                self._seen.move_to_end(key)
                while len(self._seen) > self._limit:
                    self._seen.popitem(last=False)
                return False
            return now - seen[1] >= max(duration, 1)

    def forget(self, key: Key) -> None:
        """The Lease was taken or given back: its next holder's claim is counted afresh."""
        with self._lock:
            self._seen.pop(key, None)
