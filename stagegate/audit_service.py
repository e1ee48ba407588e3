"""What the audit functions do with a parsed delivery: route, read the Environment, ensure its gates.

Both transports end here (the webhook posts an EventList, Pub/Sub carries an Event or EventList).
Events for one Environment collapse to the newest in the delivery, since each only says "look
again". The created object in the event (`responseObject`, policy level RequestResponse) is used as
is; only when it is absent is the Environment read from the API.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.audit import AuditEvent, Ignored, Routed, route
from shared.errors import BadEvent, PermanentError, RetryableError
from shared.views import Environment
from stagegate.logs import get_logger
from stagegate.reconcile import GateOutcome, GateStore, ensure_gates

log = get_logger("audit")


class EnvironmentGateStore(GateStore, Protocol):
    """The gate store plus the one read the audit path may need."""

    def get_environment(self, namespace: str, name: str) -> Environment | None: ...


@dataclass
class AuditSummary:
    """The answer to one delivery: what was acted on, what was ignored and why."""

    events: int = 0
    acted: int = 0
    ignored: Counter[str] = field(default_factory=Counter)
    gates: list[GateOutcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "acted": self.acted,
            "ignored": dict(self.ignored),
            "gates": [g.to_json() for g in self.gates],
            "errors": self.errors,
        }


class AuditRetry(RetryableError):
    """Some Environments of the delivery could not be handled now; the summary says which."""

    def __init__(self, message: str, summary: AuditSummary) -> None:
        super().__init__(message)
        self.summary = summary


def handle_audit_events(
    events: Sequence[AuditEvent], store: EnvironmentGateStore, attempts: int
) -> AuditSummary:
    """Ensure the gates of every Environment the events changed; raise `AuditRetry` if any must be retried."""
    summary = AuditSummary(events=len(events))
    newest: dict[tuple[str, str], Routed] = {}
    for event in events:
        decision = route(event)
        if isinstance(decision, Ignored):
            summary.ignored[decision.reason] += 1
        else:
            newest[(decision.namespace, decision.name)] = decision
    retry: list[str] = []
    for routed in newest.values():
        try:
            env = _environment(routed, store)
            if env is None:
                summary.ignored["environment no longer exists"] += 1
                continue
            summary.acted += 1
            summary.gates += ensure_gates(env, store, fresh=routed.event.verb == "create", attempts=attempts)
        except (BadEvent, PermanentError) as exc:
            summary.errors.append(f"{routed.namespace}/{routed.name}: {exc}")
            log.error(
                "cannot gate this Environment",
                extra={"fields": {"environment": f"{routed.namespace}/{routed.name}", "reason": str(exc)}},
            )
        except RetryableError as exc:
            summary.errors.append(f"{routed.namespace}/{routed.name}: {exc}")
            retry.append(f"{routed.namespace}/{routed.name}")
    if retry:
        raise AuditRetry(f"will retry: {', '.join(retry)}", summary)
    return summary


def _environment(routed: Routed, store: EnvironmentGateStore) -> Environment | None:
    response = routed.event.response_object
    if response is not None and response.get("kind") == "Environment":
        return Environment.from_raw(response)
    return store.get_environment(routed.namespace, routed.name)
