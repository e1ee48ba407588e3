"""Recompute every gate: the healer for whatever the event paths missed.

GitHub does not redeliver a failed webhook, and a Rollout may list a baked revision only later, so
a scheduled run (Cloud Scheduler) recomputes every Environment's gate from the sources of truth.
One Environment's failure does not stop the others; it is reported and makes the run retryable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.errors import BadEvent, PartialFailure, PermanentError, RetryableError
from stagegate.logs import get_logger
from stagegate.recompute_service import RecomputeStore, Upstream, recompute

log = get_logger("resync")


def resync(
    kube: RecomputeStore, upstream: Upstream, namespaces: Sequence[str], attempts: int
) -> dict[str, Any]:
    """Recompute the gates of every Environment (in `namespaces`, or everywhere)."""
    environments = kube.list_environments(namespaces)
    gates: list[dict[str, Any]] = []
    errors: list[str] = []
    retryable = False
    for env in environments:
        try:
            gates += [o.to_json() for o in recompute(env, kube, upstream, attempts)]
        except (BadEvent, PermanentError) as exc:
            errors.append(f"{env.key}: {exc}")
            log.error(
                "cannot recompute this Environment",
                extra={"fields": {"environment": env.key, "reason": str(exc)}},
            )
        except RetryableError as exc:
            errors.append(f"{env.key}: {exc}")
            retryable = True
    summary = {"environments": len(environments), "gates": gates, "errors": errors}
    changed = sum(1 for g in gates if g["action"] != "unchanged")
    log.info(
        f"resync done: {changed} gates changed, {len(errors)} errors", extra={"fields": {"changed": changed}}
    )
    if retryable:
        raise PartialFailure(f"{len(errors)} Environments failed; retry", summary)
    return summary
