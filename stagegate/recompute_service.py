"""Recompute the gates of Environments from their upstream's bake results.

Every trigger (a GitHub webhook, a Rollout status change, the scheduled resync) lands here and
only says "look again". The order of reads is what keeps writes from going stale: the gate (and its
`resourceVersion`) is read before GitHub is asked, and the write is conditional on that version.
So a write can only succeed when no other write happened since the gate was read, which means no
other computation used a newer GitHub answer than this one. A conflict re-reads and recomputes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from shared.bake import DeploymentRecord, newest_status_time, release_candidates, results_by_revision
from shared.errors import PermanentError, RetryableError
from shared.gate import is_owned_by
from shared.github_delivery import BakeTarget
from shared.recompute import deployment_name, github_environment, plan_recompute
from shared.views import Environment, RolloutGate
from stagegate.kube import KubeConflict
from stagegate.logs import get_logger
from stagegate.reconcile import GateOutcome, GateStore, apply_plan, ensure_gates
from stagegate.settings import Settings

log = get_logger("recompute")


class Upstream(Protocol):
    """Where bake results come from (the GitHub adapter, or a fake in unit tests)."""

    def deployments(
        self, repository: str, environment: str, revisions: frozenset[str]
    ) -> list[DeploymentRecord]: ...


class RecomputeStore(GateStore, Protocol):
    """The Kubernetes reads the recompute and the audit path need on top of the gate store."""

    def get_environment(self, namespace: str, name: str) -> Environment | None: ...
    def list_environments(self, namespaces: Sequence[str] = ()) -> list[Environment]: ...
    def get_rollout(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...


def upstream_from(settings: Settings, timeout: float) -> Upstream | None:
    """The GitHub reader when a token or App credentials are set; None where bake results are optional."""
    if not settings.has_github_credentials:
        return None
    from stagegate.github import GitHubDeployments, github_client  # PyGithub: ~160 ms, loaded only when used

    return GitHubDeployments(github_client(settings.github_credentials(), settings.github_api_url, timeout))


def governed_by(
    target: BakeTarget, repository: str, environments: Iterable[Environment]
) -> list[Environment]:
    """Environments whose relationship points at the environment a bake was recorded for."""
    return [
        env
        for env in environments
        if env.relationship is not None
        and env.relationship.environment == target.environment
        and (env.project or "").lower() == repository.lower()
        and deployment_name(env) == f"kuberik/{target.name}"
    ]


def _owned(env: Environment, gates: Sequence[RolloutGate]) -> list[RolloutGate]:
    return [g for g in gates if is_owned_by(g, env) and not g.being_deleted]


def recompute(
    env: Environment, kube: RecomputeStore, upstream: Upstream, attempts: int = 5
) -> list[GateOutcome]:
    """Set the Environment's gates to exactly what its upstream justifies now."""
    rel = env.relationship
    if rel is None:
        return ensure_gates(env, kube, fresh=False, attempts=attempts)
    if not env.project:
        raise PermanentError(f"Environment {env.key} has no spec.backend.project to read bake results from")
    for attempt in range(attempts):
        gates = _owned(env, kube.list_gates(env.namespace))
        if not gates:
            ensure_gates(env, kube, fresh=False, attempts=attempts)
            continue
        rollout = kube.get_rollout(env.namespace, env.rollout_name)
        candidates = release_candidates(rollout) if rollout is not None else ()
        revisions = frozenset(c.revision for c in candidates if c.revision)
        deployments = upstream.deployments(env.project, github_environment(env, rel.environment), revisions)
        results, observed = results_by_revision(deployments), newest_status_time(deployments)
        try:
            outcomes = []
            for gate in gates:
                recomputed = plan_recompute(env, gate, candidates, results, observed)
                outcomes.append(
                    apply_plan(env, recomputed.plan, kube, extra={"candidates": recomputed.allowed.reasons})
                )
            return outcomes
        except KubeConflict as exc:
            log.info(
                "gate changed while recomputing, reading again",
                extra={"fields": {"environment": env.key, "attempt": attempt + 1, "error": str(exc)}},
            )
    raise RetryableError(f"gates of {env.key} kept changing under {attempts} attempts")
