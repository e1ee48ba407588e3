"""What the audit functions do with a parsed delivery: route each event, then act once per object.

Both transports end here (the webhook posts an EventList, Pub/Sub carries an Event or EventList).
Events for one object collapse to the newest in the delivery, since each only says "look again".
An Environment change ensures its gates exist and have the right shape; the created object in the
event (`responseObject`, policy level RequestResponse) is used as is, and read from the API only
when absent. A Rollout status change recomputes the gates of the Environments that govern it (its
release candidates may now include a revision baked upstream before).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.audit import AuditEvent, Ignored, Route, Routed, route
from shared.errors import BadEvent, PartialFailure, PermanentError, RetryableError
from shared.views import Environment
from stagegate.logs import get_logger
from stagegate.recompute_service import RecomputeStore, Upstream, recompute
from stagegate.reconcile import GateOutcome, ensure_gates

log = get_logger("audit")


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


@dataclass(frozen=True)
class AuditContext:
    """What the handlers work with: Kubernetes, GitHub when configured, the retry budget."""

    kube: RecomputeStore
    upstream: Upstream | None
    attempts: int


class _Ignore(Exception):
    """Raised by a handler that has nothing to do for a good reason (counted, not an error)."""


def _environment_changed(routed: Routed, ctx: AuditContext) -> list[GateOutcome]:
    response = routed.event.response_object
    if response is not None and response.get("kind") == "Environment":
        env: Environment | None = Environment.from_raw(response)
    else:
        env = ctx.kube.get_environment(routed.namespace, routed.name)
    if env is None:
        raise _Ignore("environment no longer exists")
    return ensure_gates(env, ctx.kube, fresh=routed.event.verb == "create", attempts=ctx.attempts)


def _rollout_changed(routed: Routed, ctx: AuditContext) -> list[GateOutcome]:
    if ctx.upstream is None:
        raise _Ignore("rollout change, but no GitHub credentials are configured here")
    governing = [
        env
        for env in ctx.kube.list_environments([routed.namespace])
        if env.rollout_name == routed.name and env.relationship is not None
    ]
    if not governing:
        raise _Ignore("rollout governed by no Environment with a relationship")
    return [outcome for env in governing for outcome in recompute(env, ctx.kube, ctx.upstream, ctx.attempts)]


HANDLERS: Mapping[Route, Callable[[Routed, AuditContext], list[GateOutcome]]] = {
    "environment": _environment_changed,
    "rollout": _rollout_changed,
}


def handle_audit_events(events: Sequence[AuditEvent], ctx: AuditContext) -> AuditSummary:
    """Act on every object the events changed; raise `PartialFailure` if any must be retried."""
    summary = AuditSummary(events=len(events))
    newest: dict[tuple[Route, str, str], Routed] = {}
    for event in events:
        decision = route(event)
        if isinstance(decision, Ignored):
            summary.ignored[decision.reason] += 1
        else:
            newest[(decision.route, decision.namespace, decision.name)] = decision
    retry: list[str] = []
    for routed in newest.values():
        key = f"{routed.route} {routed.namespace}/{routed.name}"
        try:
            summary.gates += HANDLERS[routed.route](routed, ctx)
            summary.acted += 1
        except _Ignore as exc:
            summary.ignored[str(exc)] += 1
        except (BadEvent, PermanentError) as exc:
            summary.errors.append(f"{key}: {exc}")
            log.error("cannot act on this object", extra={"fields": {"object": key, "reason": str(exc)}})
        except RetryableError as exc:
            summary.errors.append(f"{key}: {exc}")
            retry.append(key)
    if retry:
        raise PartialFailure(f"will retry: {', '.join(retry)}", summary.to_json())
    return summary
