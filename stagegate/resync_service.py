"""Recompute every gate: the healer for whatever the event paths missed.

GitHub does not redeliver a failed webhook, and a Rollout may list a baked revision only later, so
a scheduled run (Cloud Scheduler) recomputes every Environment's gate from the sources of truth,
asking GitHub once per upstream environment. One Environment's failure does not stop the others; it
is reported and, when retryable, makes the run retryable.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from shared.errors import PartialFailure
from shared.trust import RepositoryPolicy
from stagegate.logs import get_logger
from stagegate.recompute_service import ANY_REPOSITORY, Clock, RecomputeStore, Upstream, recompute

log = get_logger("resync")


def resync(
    kube: RecomputeStore,
    upstream: Upstream,
    namespaces: Sequence[str],
    attempts: int,
    clock: Clock = time.time,
    repositories: RepositoryPolicy = ANY_REPOSITORY,
) -> dict[str, Any]:
    """Recompute the gates of every Environment (in `namespaces`, or everywhere)."""
    environments = kube.list_environments(namespaces)
    report = recompute(environments, kube, upstream, attempts, clock, repositories)
    errors = [f"{key}: {reason}" for key, reason in report.errors.items()]
    gates = [o.to_json() for o in report.outcomes]
    summary = {"environments": len(environments), "gates": gates, "errors": errors}
    changed = sum(1 for g in gates if g["action"] != "unchanged")
    log.info(
        f"resync done: {changed} gates changed, {len(errors)} errors", extra={"fields": {"changed": changed}}
    )
    if report.retryable:
        raise PartialFailure(f"{len(report.retryable)} Environments failed; retry", summary)
    return summary
