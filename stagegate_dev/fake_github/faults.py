"""Programmable misbehaviour: the next N requests fail, hang, or hit a rate limit.

Tests arm faults on the fake (`fail_next`, `hang_next`, `rate_limit_next`); each request takes the
first armed fault that applies to it (REST, GraphQL or either) and uses up one of its N.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

Api = Literal["any", "rest", "graphql"]
FaultKind = Literal["fail", "hang", "primary", "secondary"]


@dataclass
class Fault:
    """One armed fault and how many more requests it applies to."""

    kind: FaultKind
    remaining: int
    api: Api = "any"
    status: int = 502
    seconds: float = 0.0
    after_effect: bool = False
    reset_in: int = 3600

    def applies_to(self, api: Literal["rest", "graphql"]) -> bool:
        """Whether a request to this API takes this fault."""
        return self.api in ("any", api)


class Faults:
    """Armed faults in the order they were armed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[Fault] = []

    def arm(self, fault: Fault) -> None:
        """Add a fault after those already armed."""
        if fault.remaining < 1:
            raise ValueError("a fault must apply to at least one request")
        with self._lock:
            self._armed.append(fault)

    def take(self, api: Literal["rest", "graphql"]) -> Fault | None:
        """The fault this request suffers, if any (using up one of its requests)."""
        with self._lock:
            for fault in self._armed:
                if fault.applies_to(api):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._armed.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        """Disarm everything."""
        with self._lock:
            self._armed.clear()

    def pending(self) -> int:
        """How many requests are still to suffer an armed fault."""
        with self._lock:
            return sum(f.remaining for f in self._armed)
