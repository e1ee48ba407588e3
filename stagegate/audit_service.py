"""What the audit functions do with a parsed delivery: route each event, then act once per object.

Both transports end here (the webhook posts an EventList, Pub/Sub carries an Event or EventList).
Events for one object collapse to the newest in the delivery, since each only says "look again".
An Environment change ensures its gates exist and have the right shape. The object in the event
(`responseObject`, policy level RequestResponse) is used as is to tighten (that keeps a create at one
API call), but it may be old or of an earlier incarnation: whatever would relax a gate (lift the
list, move it, change its owners) acts only on the Environment read from the API, with the same uid.
A Rollout status change recomputes the gates of the Environments that govern it (its
release candidates may now include a revision baked upstream before). When an Environment change
withdrew what its gate allowed (a new upstream or Rollout), the gate is recomputed right away.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.audit import AuditEvent, Ignored, Route, Routed, route
from shared.errors import BadEvent, PartialFailure, PermanentError, RetryableError
from shared.trust import RepositoryPolicy
from shared.views import Environment
from stagegate.logs import get_logger
from stagegate.recompute_service import ANY_REPOSITORY, Clock, RecomputeStore, Upstream, recompute
from stagegate.reconcile import GateOutcome, NeedsCurrentState, ensure_gates

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
    clock: Clock = time.time
    repositories: RepositoryPolicy = ANY_REPOSITORY


class _Ignore(Exception):
    """Raised by a handler that has nothing to do for a good reason (counted, not an error)."""


def _environment_changed(routed: Routed, ctx: AuditContext) -> list[GateOutcome]:
    response = routed.event.response_object
    copy = (
        Environment.from_raw(response)
        if response is not None and response.get("kind") == "Environment"
        else None
    )
    outcomes: list[GateOutcome] | None = None
    if copy is not None:
        try:
            outcomes = ensure_gates(
                copy, ctx.kube, fresh=routed.event.verb == "create", attempts=ctx.attempts, current=False
            )
        except NeedsCurrentState as exc:
            log.info(
                "the event's copy would relax a gate; reading the Environment",
                extra={"fields": {"environment": copy.key, "wanted": str(exc)}},
            )
        if outcomes is not None and not _withdrawn(outcomes):
            return outcomes
    env = ctx.kube.get_environment(routed.namespace, routed.name)
    if env is None or (copy is not None and env.uid != copy.uid):
        if outcomes is not None:
            return outcomes
        raise _Ignore("the Environment no longer exists (deleted, or recreated since the event)")
    if outcomes is None:
        fresh = copy is None and routed.event.verb == "create"  # a 409 tells if it is not that new
        outcomes = ensure_gates(env, ctx.kube, fresh=fresh, attempts=ctx.attempts)
    if _withdrawn(outcomes) and env.relationship is not None and ctx.upstream is not None:
        outcomes += _recomputed([env], ctx, ctx.upstream)  # what the new upstream or Rollout justifies
    return outcomes


def _withdrawn(outcomes: list[GateOutcome]) -> bool:
    """True when a gate that allowed versions was just closed (new upstream or Rollout)."""
    return any(o.allowed_before and o.allowed_after == [] for o in outcomes)


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
    return _recomputed(governing, ctx, ctx.upstream)


def _recomputed(environments: list[Environment], ctx: AuditContext, upstream: Upstream) -> list[GateOutcome]:
    """Recompute, raising the first failure (the delivery is retried or refused as a whole)."""
    report = recompute(environments, ctx.kube, upstream, ctx.attempts, ctx.clock, ctx.repositories)
    if report.errors:
        reasons = "; ".join(f"{key}: {why}" for key, why in report.errors.items())
        raise (RetryableError if report.retryable else PermanentError)(reasons)
    return report.outcomes


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
