"""Recompute every gate: the healer for whatever the event paths missed.

GitHub does not redeliver a failed webhook, and a Rollout may list a baked revision only later, so
a scheduled run (Cloud Scheduler) recomputes every Environment's gate from the sources of truth,
asking GitHub once per upstream environment. One Environment's failure does not stop the others; it
is reported and, when retryable, makes the run retryable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from shared.errors import PartialFailure
from shared.trust import RepositoryPolicy
from stagegate.logs import get_logger
from stagegate.protection_service import Protection, ProtectionGitHub, answer_all
from stagegate.recompute_service import ANY_REPOSITORY, RecomputeStore, Upstream, recompute
from stagegate.status_service import PipelineReader, StatusStore, pipelines_of, update_statuses

log = get_logger("resync")


Reporter = Callable[[Sequence[tuple[str, str]]], dict[str, Any]]
"""Reports the history of the Rollouts named (namespace, name) on GitHub (`report_service.report_all`)."""


def resync(
    kube: RecomputeStore,
    upstream: Upstream,
    namespaces: Sequence[str],
    attempts: int,
    repositories: RepositoryPolicy = ANY_REPOSITORY,
    reporter: Reporter | None = None,
    statuses: bool = False,
    protection: Protection | None = None,
) -> dict[str, Any]:
    """Recompute the gates of every Environment (in `namespaces`, or everywhere); with a `reporter`
    (`RESYNC_REPORTS`), first record the history of every Rollout an Environment with a GitHub project
    governs, so a Rollout change the event path missed is recorded, and its bake can open gates now;
    with `statuses` (`ENVIRONMENT_STATUS`), every Environment's status; with `protection`
    (`PROTECTION_RULES`), last, every Actions run held on a bake that has decided."""
    environments = kube.list_environments(namespaces)
    summary: dict[str, Any] = {"environments": len(environments)}
    errors: list[str] = []
    retry = 0
    if reporter is not None:
        rollouts = sorted({(env.namespace, env.rollout_name) for env in environments if env.project})
        try:
            reported = reporter(rollouts)
        except PartialFailure as exc:
            reported, retry = dict(exc.summary), retry + 1
        summary["reports"] = reported["rollouts"]
        errors += reported["errors"]
    report = recompute(environments, kube, upstream, attempts, repositories)
    errors += [f"{key}: {reason}" for key, reason in report.errors.items()]
    gates = [o.to_json() for o in report.outcomes]
    if statuses and isinstance(kube, StatusStore) and isinstance(upstream, PipelineReader):
        written = update_statuses(pipelines_of(environments), kube, upstream, scope=namespaces)
        summary["statuses"] = written.to_json()
        errors += [f"{key}: status: {reason}" for key, reason in written.errors.items()]
    if protection and isinstance(upstream, ProtectionGitHub):
        held = answer_all(protection, upstream)
        summary["protectionRules"] = held["answered"]
        errors += held["errors"]
    summary.update(gates=gates, errors=errors)
    changed = sum(1 for g in gates if g["action"] != "unchanged")
    log.info(
        f"resync done: {changed} gates changed, {len(errors)} errors", extra={"fields": {"changed": changed}}
    )
    if report.retryable or retry:
        raise PartialFailure(f"{len(errors)} Environments or Rollouts failed; retry", summary)
    return summary
