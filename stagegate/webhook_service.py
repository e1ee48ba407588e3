"""What `github_webhook` does with a verified delivery, dispatched on the event name.

`ping` answers, `deployment_status` recomputes the gates of the Environments downstream of the
environment the status is about, anything else is acknowledged as ignored with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from shared.errors import RetryableError
from shared.github_delivery import Delivery, DeploymentStatusEvent, kuberik_target, verify_delivery
from stagegate.http import within
from stagegate.logs import get_logger
from stagegate.recompute_service import RecomputeStore, Upstream, governed_by, recompute
from stagegate.settings import Settings

log = get_logger("webhook")

Handler = Callable[[Delivery, RecomputeStore, Upstream, Sequence[str]], dict[str, Any]]


def _pong(delivery: Delivery, *_: object) -> dict[str, Any]:
    return {"status": "pong", "zen": delivery.payload.get("zen")}


def _deployment_status(
    delivery: Delivery, kube: RecomputeStore, upstream: Upstream, namespaces: Sequence[str]
) -> dict[str, Any]:
    event = DeploymentStatusEvent.from_payload(delivery.payload)
    target = kuberik_target(event.environment)
    if target is None:
        return _ignored(f"environment {event.environment!r} is not shaped kuberik/<name>/<environment>")
    environments = governed_by(target, event.repository, kube.list_environments(namespaces))
    gates: list[dict[str, Any]] = []
    failed: list[str] = []
    for env in environments:
        try:
            gates += [o.to_json() for o in recompute(env, kube, upstream)]
        except RetryableError as exc:
            failed.append(f"{env.key}: {exc}")
    if failed:
        raise RetryableError("; ".join(failed))
    return {
        "status": "recomputed",
        "upstream": f"{event.repository} {event.environment} ({event.state})",
        "environments": [env.key for env in environments],
        "gates": gates,
    }


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
            lambda: on_delivery(delivery, kube, upstream, settings.namespaces),
        )
    )


def on_delivery(
    delivery: Delivery, kube: RecomputeStore, upstream: Upstream, namespaces: Sequence[str]
) -> dict[str, Any]:
    """Route a verified delivery to its handler; unknown events are ignored, not errors."""
    handler = HANDLERS.get(delivery.event)
    if handler is None:
        return _ignored(f"event {delivery.event!r} does not change bake results")
    return {"delivery": delivery.delivery_id, **handler(delivery, kube, upstream, namespaces)}
