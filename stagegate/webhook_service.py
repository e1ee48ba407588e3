"""What `github_webhook` does with a verified delivery, dispatched on the event name.

`ping` answers, `deployment_status` recomputes the gates of the Environments downstream of the
environment the status is about (each on its own: one that cannot be recomputed is reported in the
answer and does not stop the others, and only a retryable failure makes the answer a 503), anything
else is acknowledged as ignored with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.errors import PartialFailure
from shared.github_delivery import Delivery, DeploymentStatusEvent, kuberik_target, verify_delivery
from shared.trust import RepositoryPolicy
from stagegate.http import within
from stagegate.logs import get_logger
from stagegate.recompute_service import (
    ANY_REPOSITORY,
    RecomputeStore,
    Upstream,
    governed_by,
    recompute,
)
from stagegate.settings import Settings

log = get_logger("webhook")


@dataclass(frozen=True)
class Scope:
    """What a delivery may touch: namespaces (empty: all), allowed repositories."""

    namespaces: Sequence[str]
    repositories: RepositoryPolicy = ANY_REPOSITORY


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
    environments = governed_by(target, event.repository, kube.list_environments(scope.namespaces))
    report = recompute(environments, kube, upstream, repositories=scope.repositories)
    summary: dict[str, object] = {
        "status": "recomputed",
        "upstream": f"{event.repository} {event.environment} ({event.state})",
        "environments": [env.key for env in environments],
        "gates": [o.to_json() for o in report.outcomes],
        "errors": report.errors,
    }
    if report.retryable:
        raise PartialFailure(f"will retry: {', '.join(report.retryable)}", summary)
    return summary


def _ignored(reason: str) -> dict[str, Any]:
    log.info(f"delivery ignored: {reason}")
    return {"status": "ignored", "reason": reason}


HANDLERS: Mapping[str, Handler] = {"ping": _pong, "deployment_status": _deployment_status}


def github_request(
    headers: Mapping[str, str], body: bytes, settings: Settings, kube: RecomputeStore, upstream: Upstream
) -> dict[str, Any]:
    """Verify a raw request and handle it within the deadline: the whole job of every webhook entry point."""
    delivery = verify_delivery(headers, body, settings.github_webhook_secrets)
    return dict(
        within(
            settings.github_deadline_seconds,
            lambda: on_delivery(
                delivery, kube, upstream, settings.namespaces, repositories=settings.github_repositories
            ),
        )
    )


def on_delivery(
    delivery: Delivery,
    kube: RecomputeStore,
    upstream: Upstream,
    namespaces: Sequence[str],
    repositories: RepositoryPolicy = ANY_REPOSITORY,
) -> dict[str, Any]:
    """Route a verified delivery to its handler; unknown events are ignored, not errors."""
    handler = HANDLERS.get(delivery.event)
    if handler is None:
        return _ignored(f"event {delivery.event!r} does not change bake results")
    scope = Scope(namespaces, repositories)
    return {"delivery": delivery.delivery_id, **handler(delivery, kube, upstream, scope)}
