"""The recomputed gate: the whole allowed set, derived again from the sources of truth.

Given an Environment with a relationship, the gate as read (before GitHub was asked), the governed
Rollout's candidates and the upstream's bake results, decide the one write to make. The result is
never null and only ever the set this answer justifies, minus tags an earlier answer acted on
showed in a newer state (`shared.evidence`): nothing from the old set survives on its own, so a
refused widening still narrows, and a change of upstream starts from the new upstream's answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.bake import AllowedTags, ReleaseCandidate, VersionResult, allowed_tags
from shared.evidence import (
    EVIDENCE_ANNOTATION,
    LEGACY_WATERMARK_ANNOTATION,
    next_evidence,
    read_evidence,
    vetoed,
    vetoes_in_force,
)
from shared.gate import GatePlan, unchanged
from shared.upstream import upstream_key
from shared.views import Environment, RolloutGate


@dataclass(frozen=True, slots=True)
class Recomputed:
    """The plan for one gate and the per-candidate reasons behind it."""

    plan: GatePlan
    allowed: AllowedTags


def plan_recompute(
    env: Environment,
    gate: RolloutGate,
    candidates: tuple[ReleaseCandidate, ...],
    results: Mapping[ReleaseCandidate, VersionResult],
    now: float | None,
) -> Recomputed:
    """The write that makes the gate allow exactly what the upstream justifies now.

    `now` is GitHub's time of the answer (`shared.evidence.github_now`), which is what vetoes expire by.
    """
    rel, key = env.relationship, upstream_key(env)
    if rel is None or key is None:
        raise ValueError("only an Environment with a relationship has a recomputed gate")
    held = vetoes_in_force(read_evidence(gate), key, now)
    allowed = allowed_tags(rel.type, rel.environment, candidates, results, vetoed(held, results, rel.type))
    before, after = gate.allowed_versions, allowed.tags
    evidence = next_evidence(key, held, results, rel.type, now).to_annotation()
    patch: dict[str, object] = {}
    spec: dict[str, object] = {}
    if before != after:
        spec["allowedVersions"] = list(after)
    if gate.rollout_name != env.rollout_name:  # the set was computed for the Environment's Rollout
        spec["rolloutRef"] = {"name": env.rollout_name}
    if spec:
        patch["spec"] = spec
    annotations: dict[str, str | None] = {}
    if gate.annotations.get(EVIDENCE_ANNOTATION) != evidence:
        annotations[EVIDENCE_ANNOTATION] = evidence
    if LEGACY_WATERMARK_ANNOTATION in gate.annotations:
        annotations[LEGACY_WATERMARK_ANNOTATION] = None
    if annotations:
        patch["metadata"] = {"annotations": annotations}
    if not patch:
        return Recomputed(unchanged(gate, f"allowed versions already {list(after)}"), allowed)
    plan = GatePlan(
        action="update",
        gate=gate.name,
        reason=_reason(rel.environment, rel.type, before, after, gate.rollout_name, env.rollout_name),
        patch=patch,
        allowed_before=before,
        allowed_after=after,
        resource_version=gate.resource_version,
    )
    return Recomputed(plan, allowed)


def _reason(
    upstream: str, kind: str, before: object, after: tuple[str, ...], rollout_before: str | None, rollout: str
) -> str:
    moved = (
        f"; the gate now governs Rollout {rollout} (was {rollout_before})"
        if rollout_before != rollout
        else ""
    )
    if before != after:
        return f"set to {list(after)} from the bake results of {upstream} ({kind}){moved}"
    return f"allowed versions stay {list(after)}; recorded what GitHub answered{moved}"
