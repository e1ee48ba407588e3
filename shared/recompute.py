"""The recomputed gate: the whole allowed set, derived again from the sources of truth.

Given an Environment with a relationship, the gate as read (before GitHub was asked), the governed
Rollout's candidates and the upstream's bake results, decide the one write to make. The result is
never null, only ever the set the upstream justifies, and never widened from an observation older
than the one the gate was last computed from (the watermark annotation); narrowing is always safe.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.bake import AllowedTags, ReleaseCandidate, RevisionResult, allowed_tags
from shared.gate import GatePlan, unchanged
from shared.views import Environment, RolloutGate

WATERMARK_ANNOTATION = "stagegate.kuberik.com/observed-status-time"


def deployment_name(env: Environment) -> str:
    """The GitHub deployment name: `spec.name` with the `kuberik/` prefix the controller adds."""
    name = env.deployment_name or env.name
    return name if name.startswith("kuberik/") else f"kuberik/{name}"


def github_environment(env: Environment, environment: str) -> str:
    """The GitHub environment kuberik records a bake of `environment` under: `kuberik/<name>/<env>`."""
    return f"{deployment_name(env)}/{environment}"


@dataclass(frozen=True, slots=True)
class Recomputed:
    """The plan for one gate and the per-candidate reasons behind it."""

    plan: GatePlan
    allowed: AllowedTags


def plan_recompute(
    env: Environment,
    gate: RolloutGate,
    candidates: tuple[ReleaseCandidate, ...],
    results: dict[str, RevisionResult],
    observed: str,
) -> Recomputed:
    """The write that makes the gate allow exactly what the upstream justifies now."""
    rel = env.relationship
    if rel is None:
        raise ValueError("only an Environment with a relationship has a recomputed gate")
    allowed = allowed_tags(rel.type, rel.environment, candidates, results)
    before, after = gate.allowed_versions, allowed.tags
    watermark = gate.annotations.get(WATERMARK_ANNOTATION, "")
    narrowing = before is None or set(after) <= set(before)
    if observed < watermark and not narrowing:
        reason = f"GitHub's answer (statuses up to {observed or 'none'}) predates {watermark}: gate kept"
        return Recomputed(unchanged(gate, reason), allowed)
    patch: dict[str, object] = {}
    if before != after:
        patch["spec"] = {"allowedVersions": list(after)}
    if observed > watermark:
        patch["metadata"] = {"annotations": {WATERMARK_ANNOTATION: observed}}
    if not patch:
        return Recomputed(unchanged(gate, f"allowed versions already {list(after)}"), allowed)
    plan = GatePlan(
        action="update",
        gate=gate.name,
        reason=f"set to {list(after)} from the bake results of {rel.environment} ({rel.type})",
        patch=patch,
        allowed_before=before,
        allowed_after=after,
        resource_version=gate.resource_version,
    )
    return Recomputed(plan, allowed)
