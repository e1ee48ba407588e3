"""Which versions an environment may deploy, from its upstream's bake results on GitHub.

Pure and total: GitHub deployments and statuses, already read, become bake results per revision;
the relationship type turns those into allowed revisions; the governed Rollout's release
candidates turn revisions into tags. Every event only says "look again": the whole allowed set is
recomputed from these inputs each time, so duplicate, reordered or lost events change only timing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.errors import BadEvent
from shared.views import RelationshipType

CANCELLED_PREFIX = "Bake cancelled"
SUCCESS = "success"
FAILED_STATES = frozenset({"failure", "error"})


@dataclass(frozen=True, slots=True)
class StatusRecord:
    """One deployment status; `created_at` is GitHub's ISO 8601 timestamp (sorts as text)."""

    state: str
    description: str | None
    created_at: str


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    """One GitHub deployment of the upstream environment with its statuses, newest first."""

    id: int
    sha: str
    payload: Mapping[str, Any] | None
    created_at: str
    statuses: tuple[StatusRecord, ...] = ()

    @property
    def revision(self) -> str:
        """`payload.version.revision` when the environment controller recorded one, else the commit sha."""
        version = self.payload.get("version") if isinstance(self.payload, Mapping) else None
        revision = version.get("revision") if isinstance(version, Mapping) else None
        return revision if isinstance(revision, str) and revision else self.sha


def carries_bake_result(status: StatusRecord) -> bool:
    """GitHub's own `inactive` marks (no description) say nothing about the bake; cancellations do."""
    if status.state.lower() != "inactive":
        return True
    return (status.description or "").startswith(CANCELLED_PREFIX)


def bake_result(deployment: DeploymentRecord) -> str | None:
    """The newest status that carries a bake result, lower-cased; None when none does."""
    for status in sorted(deployment.statuses, key=lambda s: s.created_at, reverse=True):
        if carries_bake_result(status):
            return status.state.lower()
    return None


@dataclass(frozen=True, slots=True)
class RevisionResult:
    """What the upstream says about one revision: its newest deployment's bake result."""

    revision: str
    result: str | None
    deployment_id: int


def results_by_revision(deployments: Iterable[DeploymentRecord]) -> dict[str, RevisionResult]:
    """Per revision, the newest deployment that has a bake result decides; one without any result
    counts only when no deployment of that revision has one (it says "deployed, not yet baked")."""
    results: dict[str, RevisionResult] = {}
    for deployment in sorted(deployments, key=lambda d: (d.created_at, d.id)):
        result = bake_result(deployment)
        known = results.get(deployment.revision)
        if result is not None or known is None or known.result is None:
            results[deployment.revision] = RevisionResult(deployment.revision, result, deployment.id)
    return results


def allowed_revisions(kind: RelationshipType, results: Mapping[str, RevisionResult]) -> frozenset[str]:
    """`After`: baked successfully upstream. `Parallel`: deployed upstream and not failed there."""
    if kind == "After":
        return frozenset(r for r, res in results.items() if res.result == SUCCESS)
    return frozenset(r for r, res in results.items() if res.result not in FAILED_STATES)


@dataclass(frozen=True, slots=True)
class ReleaseCandidate:
    """One entry of the Rollout's `status.releaseCandidates`."""

    tag: str
    revision: str | None


def release_candidates(rollout: Mapping[str, Any]) -> tuple[ReleaseCandidate, ...]:
    """The Rollout's release candidates, read strictly (a candidate needs a tag)."""
    status = rollout.get("status") or {}
    if not isinstance(status, Mapping):
        raise BadEvent("Rollout status must be an object")
    raw = status.get("releaseCandidates") or []
    if not isinstance(raw, list):
        raise BadEvent("Rollout status.releaseCandidates must be a list")
    candidates = []
    for i, item in enumerate(raw):
        tag = item.get("tag") if isinstance(item, Mapping) else None
        if not isinstance(tag, str) or not tag:
            raise BadEvent(f"Rollout status.releaseCandidates[{i}].tag is required")
        revision = item.get("revision")
        candidates.append(ReleaseCandidate(tag, revision if isinstance(revision, str) and revision else None))
    return tuple(candidates)


@dataclass(frozen=True, slots=True)
class AllowedTags:
    """The recomputed allowed set and, for the log, why each candidate is in or out."""

    tags: tuple[str, ...]
    reasons: Mapping[str, str] = field(default_factory=dict)


def allowed_tags(
    kind: RelationshipType,
    upstream: str,
    candidates: Sequence[ReleaseCandidate],
    results: Mapping[str, RevisionResult],
) -> AllowedTags:
    """Tags of candidates whose revision the upstream allows: sorted, without duplicates."""
    allowed = allowed_revisions(kind, results)
    reasons: dict[str, str] = {}
    tags: set[str] = set()
    for candidate in candidates:
        if candidate.revision is None:
            reasons[candidate.tag] = "blocked: the candidate has no revision to match on GitHub"
        elif candidate.revision in allowed:
            tags.add(candidate.tag)
            reasons[candidate.tag] = f"allowed: revision {candidate.revision} {_verdict(kind, upstream)}"
        else:
            known = results.get(candidate.revision)
            state = "no deployment" if known is None else f"bake result {known.result or 'none yet'}"
            reasons[candidate.tag] = f"blocked: revision {candidate.revision} has {state} in {upstream}"
    return AllowedTags(tags=tuple(sorted(tags)), reasons=reasons)


def _verdict(kind: RelationshipType, upstream: str) -> str:
    return (
        f"baked successfully in {upstream}" if kind == "After" else f"deployed in {upstream} without failing"
    )


def newest_status_time(deployments: Iterable[DeploymentRecord]) -> str:
    """The newest status timestamp observed: the watermark that keeps older observations from winning."""
    return max((s.created_at for d in deployments for s in d.statuses), default="")
