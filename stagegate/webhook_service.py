"""What `github_webhook` does with a verified delivery, dispatched on the event name.

`ping` answers, `deployment_status` recomputes the gates of the Environments downstream of the
environment the status is about (each on its own: one that cannot be recomputed is reported in the
answer and does not stop the others, and only a retryable failure makes the answer a 503), anything
else is acknowledged as ignored with the reason. Narrowing writes go first; what is not reached
`handoff.RESERVE_SECONDS` before the deadline is handed to the durable audit transport
(`stagegate.handoff`), since GitHub never delivers the webhook again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.errors import PartialFailure, RetryableError
from shared.github_delivery import (
    BakeTarget,
    Delivery,
    DeploymentStatusEvent,
    kuberik_target,
    verify_delivery,
)
from shared.trust import RepositoryPolicy
from shared.views import Environment
from stagegate.bridge import Transport
from stagegate.handoff import BATCH, RESERVE_SECONDS, hand_off
from stagegate.http import within
from stagegate.lanes import Lane
from stagegate.logs import get_logger
from stagegate.protection_service import Protection, ProtectionGitHub, answer_held
from stagegate.recompute_service import (
    ANY_REPOSITORY,
    RecomputeStore,
    Upstream,
    governed_by,
    recompute,
)
from stagegate.settings import Settings
from stagegate.status_service import PipelineReader, StatusStore, pipelines_of, update_statuses

log = get_logger("webhook")
STATUS_LANE = Lane("stagegate-status", workers=2, limit=16)
"""Where a delivery's status work runs, bounded by what is left of the delivery's deadline."""


@dataclass(frozen=True)
class Scope:
    """What a delivery may touch (namespaces, empty: all; allowed repositories), by when gate writes
    must have started (`time.monotonic()`), and where what is left then goes."""

    namespaces: Sequence[str]
    repositories: RepositoryPolicy = ANY_REPOSITORY
    deadline: float | None = None
    handoff: Transport | None = None
    handoff_batch: int = BATCH
    statuses: bool = False
    protection: Protection | None = None


Handler = Callable[[Delivery, RecomputeStore, Upstream, Scope], dict[str, Any]]


def _pong(delivery: Delivery, *_: object) -> dict[str, Any]:
    return {"status": "pong", "zen": delivery.payload.get("zen")}


def _deployment_status(
    delivery: Delivery, kube: RecomputeStore, upstream: Upstream, scope: Scope
) -> dict[str, Any]:
    event = DeploymentStatusEvent.from_payload(delivery.payload)
    target = kuberik_target(event.environment)
    if target is None:
        return _ignored(f"environment {event.environment!r} is not shaped kuberik/<name>/<environment>")
    listed = kube.list_environments(scope.namespaces)
    environments = governed_by(target, event.repository, listed)
    report = recompute(
        environments,
        kube,
        upstream,
        repositories=scope.repositories,
        deadline=scope.deadline,
        namespaces=scope.namespaces,
    )
    upstream_said = f"{event.repository} {event.environment} ({event.state})"
    summary: dict[str, object] = {
        "status": "recomputed",
        "upstream": upstream_said,
        "environments": [env.key for env in environments],
        "gates": [o.to_json() for o in report.outcomes],
        "errors": report.errors,
    }
    if report.unfinished:
        why = f"deployment_status {upstream_said}"
        summary.update(_hand_on(report.unfinished, scope.handoff, why, scope.handoff_batch))
    if scope.statuses:
        summary["statuses"] = _statuses(
            listed, target, event.repository, kube, upstream, scope.deadline, scope.namespaces
        )
    if scope.protection and event.state in DECIDED:
        summary["protectionRules"] = _held_runs(event, target, upstream, scope)
    if report.retryable:
        raise PartialFailure(f"will retry: {', '.join(report.retryable)}", summary)
    return summary


DECIDED = frozenset({"success", "failure", "error"})
"""Deployment states that can decide a bake, and so release or fail a held Actions job."""


def _held_runs(
    event: DeploymentStatusEvent, target: BakeTarget, upstream: Upstream, scope: Scope
) -> dict[str, Any]:
    """After the gates and statuses: answer the Actions runs held on this bake (bounded on its own)."""
    if scope.protection is None or not isinstance(upstream, ProtectionGitHub):
        return {"skipped": "this reader does not answer protection rules"}
    protection = scope.protection
    if scope.deadline is not None and time.monotonic() >= scope.deadline:
        return {"skipped": "no time left after the gates; the resync answers the held runs"}

    def answer() -> dict[str, Any]:
        return answer_held(protection, event.repository, target, upstream, sha=event.sha)

    if scope.deadline is None:
        return answer()
    try:
        return dict(within(scope.deadline - time.monotonic(), answer, lane=STATUS_LANE))
    except RetryableError as exc:
        log.warning("held runs not answered in time", extra={"fields": {"reason": str(exc)}})
        return {"unfinished": f"{exc}; the resync answers them"}


def _statuses(
    listed: Sequence[Environment],
    target: BakeTarget,
    repository: str,
    kube: RecomputeStore,
    upstream: Upstream,
    deadline: float | None,
    namespaces: Sequence[str],
) -> dict[str, Any]:
    """After the gates: the status of every Environment of the delivery's deployment name."""
    if deadline is not None and time.monotonic() >= deadline:
        return {"skipped": "no time left after the gates; the resync updates the statuses"}
    if not isinstance(kube, StatusStore) or not isinstance(upstream, PipelineReader):
        return {"skipped": "this store or reader does not write statuses"}
    name = f"kuberik/{target.name}"
    groups = pipelines_of(listed, lambda key: key.name == name and key.repository == repository.lower())

    def update() -> dict[str, Any]:
        named = [target.environment]
        return update_statuses(groups, kube, upstream, named, deadline=deadline, scope=namespaces).to_json()

    if deadline is None:
        return update()
    try:  # bounded on its own: a slow read here must not turn the gates' answer into a failure
        return dict(within(deadline - time.monotonic(), update, lane=STATUS_LANE))
    except RetryableError as exc:
        log.warning("Environment statuses not finished in time", extra={"fields": {"reason": str(exc)}})
        return {"unfinished": f"{exc}; the resync updates them"}


def _hand_on(
    unfinished: Sequence[Environment], transport: Transport | None, why: str, batch: int
) -> dict[str, object]:
    """Hand the Environments not reached in time on to the durable transport, or fail retryably."""
    keys = [env.key for env in unfinished]
    if transport is None:
        raise PartialFailure(
            f"{len(keys)} Environments not reached in time and no BRIDGE_TRANSPORT to hand them to; "
            "the scheduled resync recomputes them",
            {"status": "unfinished", "unfinished": keys},
        )
    try:
        handed = hand_off(unfinished, transport, why, batch)
    except RetryableError as exc:
        raise PartialFailure(
            f"{len(keys)} Environments not reached in time, and handing them on failed: {exc}",
            {"status": "unfinished", "unfinished": keys},
        ) from exc
    log.warning(
        "Environments not reached in time were handed on to the audit transport",
        extra={"fields": {"environments": len(keys), "rollouts": handed}},
    )
    return {
        "status": "recomputed, the rest handed on",
        "handedOn": {"environments": keys, "rollouts": handed},
    }


def _ignored(reason: str) -> dict[str, Any]:
    log.info(f"delivery ignored: {reason}")
    return {"status": "ignored", "reason": reason}


HANDLERS: Mapping[str, Handler] = {"ping": _pong, "deployment_status": _deployment_status}


def github_request(
    headers: Mapping[str, str],
    body: bytes,
    settings: Settings,
    kube: RecomputeStore,
    upstream: Upstream,
    handoff: Transport | None = None,
) -> dict[str, Any]:
    """Verify a raw request and handle it within the deadline: the whole job of every webhook entry point."""
    delivery = verify_delivery(headers, body, settings.github_webhook_secrets)
    deadline = settings.github_deadline_seconds
    writes_until = time.monotonic() + deadline - min(RESERVE_SECONDS, deadline / 4)
    return dict(
        within(
            settings.github_deadline_seconds,
            lambda: on_delivery(
                delivery,
                kube,
                upstream,
                settings.namespaces,
                repositories=settings.github_repositories,
                deadline=writes_until,
                handoff=handoff,
                handoff_batch=min(BATCH, settings.audit_max_events),
                statuses=settings.environment_status,
                protection=Protection(settings.protection_rules, settings.protection_max_runs)
                if settings.protection_rules
                else None,
            ),
        )
    )


def on_delivery(
    delivery: Delivery,
    kube: RecomputeStore,
    upstream: Upstream,
    namespaces: Sequence[str],
    repositories: RepositoryPolicy = ANY_REPOSITORY,
    deadline: float | None = None,
    handoff: Transport | None = None,
    handoff_batch: int = BATCH,
    statuses: bool = False,
    protection: Protection | None = None,
) -> dict[str, Any]:
    """Route a verified delivery to its handler; unknown events are ignored, not errors."""
    handler = HANDLERS.get(delivery.event)
    if handler is None:
        return _ignored(f"event {delivery.event!r} does not change bake results")
    scope = Scope(namespaces, repositories, deadline, handoff, handoff_batch, statuses, protection)
    return {"delivery": delivery.delivery_id, **handler(delivery, kube, upstream, scope)}
