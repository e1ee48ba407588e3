"""Which versions an environment may deploy, from its upstream's bake results on GitHub.

Pure and total: the deployments GitHub recorded for each candidate revision's commit become one bake
result per revision; the relationship type turns those into allowed revisions; the governed
Rollout's release candidates turn revisions into tags. Every event only says "look again": the whole
allowed set is recomputed from these inputs each time, so duplicate, reordered or lost events change
only timing.

Nothing here trusts the order in which GitHub listed anything: deployments are ordered by
(`createdAt`, database id), statuses by `createdAt`. GitHub's GraphQL API gives statuses no id to
break a tie within one second, so a tie between statuses that say different things is read as
"ambiguous": not a success, and a failure if any of them failed.

How a candidate's revision is matched (the reader asks GitHub for the commit, then its deployments):
- a revision must be a commit id: 40 hex digits, or an abbreviation of 7 to 39 (letter case ignored);
  anything else (a branch, a tag, `main@sha1:...`) stays blocked, since it names no fixed commit;
- an abbreviation is resolved by GitHub; one that names no commit, or more than one, stays blocked;
- a deployment counts for the revision when its commit is that commit and its payload's
  `version.revision`, if it has one, names that same commit (a hex prefix of it, 7 digits or more).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.errors import BadEvent
from shared.views import RelationshipType

CANCELLED_PREFIX = "Bake cancelled"
SUCCESS = "success"
AMBIGUOUS = "ambiguous"
FAILED_STATES = frozenset({"failure", "error"})
MIN_ABBREVIATION = 7
_HEX = re.compile(r"[0-9a-f]+")

LookupKind = Literal["oid", "abbreviation"]
Position = tuple[str, int, str]
"""Where a decision sits in the upstream's history: deployment createdAt, deployment id, status createdAt."""


@dataclass(frozen=True, slots=True)
class StatusRecord:
    """One deployment status; `created_at` is GitHub's ISO 8601 timestamp (sorts as text)."""

    state: str
    description: str | None
    created_at: str
    creator: str | None = None


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    """One GitHub deployment of the upstream environment with its statuses, in any order."""

    id: int
    sha: str
    payload: Mapping[str, Any] | None
    created_at: str
    statuses: tuple[StatusRecord, ...] = ()
    creator: str | None = None
    task: str | None = None

    @property
    def payload_revision(self) -> str | None:
        """`payload.version.revision` when the environment controller recorded one."""
        version = self.payload.get("version") if isinstance(self.payload, Mapping) else None
        revision = version.get("revision") if isinstance(version, Mapping) else None
        return revision if isinstance(revision, str) and revision else None


@dataclass(frozen=True, slots=True)
class CommitLookup:
    """GitHub's answer for one candidate revision: the commit it names and that commit's deployments.

    `oid` is None when GitHub knows no such commit, the abbreviation is ambiguous, or the revision is
    not a commit id at all (then GitHub was not asked).
    """

    revision: str
    oid: str | None
    deployments: tuple[DeploymentRecord, ...] = ()


def lookup_kind(revision: str) -> LookupKind | None:
    """How GitHub is asked for a revision's commit: by full id, by abbreviation, or not at all."""
    normal = revision.lower()
    if not _HEX.fullmatch(normal) or len(normal) < MIN_ABBREVIATION or len(normal) > 40:
        return None
    return "oid" if len(normal) == 40 else "abbreviation"


def counts_for(revision: str, oid: str, deployment: DeploymentRecord) -> bool:
    """True when the deployment is of the commit `revision` names and does not claim another one."""
    oid = oid.lower()
    if deployment.sha.lower() != oid or not oid.startswith(revision.lower()):
        return False
    claimed = deployment.payload_revision
    if claimed is None:
        return True
    claimed = claimed.lower()
    return len(claimed) >= MIN_ABBREVIATION and oid.startswith(claimed)


def carries_bake_result(status: StatusRecord) -> bool:
    """GitHub's own `inactive` marks (no description) say nothing about the bake; cancellations do."""
    if status.state.lower() != "inactive":
        return True
    return (status.description or "").startswith(CANCELLED_PREFIX)


def bake_states(deployment: DeploymentRecord) -> tuple[frozenset[str], str] | None:
    """The states of the newest statuses that carry a bake result (several only on a tie), and when."""
    carrying = [s for s in deployment.statuses if carries_bake_result(s)]
    if not carrying:
        return None
    newest = max(s.created_at for s in carrying)
    return frozenset(s.state.lower() for s in carrying if s.created_at == newest), newest


@dataclass(frozen=True, slots=True)
class RevisionResult:
    """What the upstream says about one revision.

    `states` are those of the deciding status (one, unless statuses tied within a second); empty
    when nothing carries a result. `deployed` says whether any deployment of the revision counts.
    """

    revision: str
    states: frozenset[str]
    deployed: bool
    position: Position | None = None
    note: str = ""

    @property
    def result(self) -> str | None:
        """The bake result in one word: a state, `ambiguous` for a tie of different states, or None."""
        if not self.states:
            return None
        return next(iter(self.states)) if len(self.states) == 1 else AMBIGUOUS


def revision_result(lookup: CommitLookup) -> RevisionResult:
    """The newest deployment of the revision that has a bake result decides; one without a result
    counts only when none has one (it says "deployed, not yet baked")."""
    if lookup.oid is None:
        note = (
            "is not a commit id (7 to 40 hex digits)"
            if lookup_kind(lookup.revision) is None
            else "names no single commit on GitHub"
        )
        return RevisionResult(lookup.revision, frozenset(), deployed=False, note=note)
    oid = lookup.oid
    counted = sorted(
        (d for d in lookup.deployments if counts_for(lookup.revision, oid, d)),
        key=lambda d: (d.created_at, d.id),
    )
    for deployment in reversed(counted):
        decided = bake_states(deployment)
        if decided is not None:
            states, at = decided
            position = (deployment.created_at, deployment.id, at)
            return RevisionResult(lookup.revision, states, deployed=True, position=position)
    return RevisionResult(lookup.revision, frozenset(), deployed=bool(counted))


def results_for(lookups: Iterable[CommitLookup]) -> dict[str, RevisionResult]:
    """One result per looked-up revision."""
    return {lookup.revision: revision_result(lookup) for lookup in lookups}


def is_justified(kind: RelationshipType, result: RevisionResult) -> bool:
    """`After`: baked successfully upstream. `Parallel`: deployed upstream and not failed there."""
    if kind == "After":
        return result.states == {SUCCESS}
    return result.deployed and not (result.states & FAILED_STATES)


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


def candidate_revisions(candidates: Iterable[ReleaseCandidate]) -> frozenset[str]:
    """The revisions worth asking GitHub about."""
    return frozenset(c.revision for c in candidates if c.revision)


@dataclass(frozen=True, slots=True)
class AllowedTags:
    """The recomputed allowed set and, for the log, why each candidate tag is in or out."""

    tags: tuple[str, ...]
    reasons: Mapping[str, str] = field(default_factory=dict)


def allowed_tags(
    kind: RelationshipType,
    upstream: str,
    candidates: Sequence[ReleaseCandidate],
    results: Mapping[str, RevisionResult],
    vetoed: Mapping[str, str] | None = None,
) -> AllowedTags:
    """Tags every one of whose candidate entries has a justified revision: sorted, without duplicates.

    `vetoed` maps revisions to why an earlier, newer answer still forbids them (see `shared.evidence`).
    """
    vetoed = vetoed or {}
    verdicts: dict[str, list[str]] = {}
    blocked: set[str] = set()
    for candidate in candidates:
        ok, why = _judge(kind, upstream, candidate.revision, results, vetoed)
        verdicts.setdefault(candidate.tag, []).append(why)
        if not ok:
            blocked.add(candidate.tag)
    reasons = {
        tag: ("blocked: " if tag in blocked else "allowed: ") + "; ".join(dict.fromkeys(whys))
        for tag, whys in verdicts.items()
    }
    return AllowedTags(tags=tuple(sorted(set(verdicts) - blocked)), reasons=reasons)


def _judge(
    kind: RelationshipType,
    upstream: str,
    revision: str | None,
    results: Mapping[str, RevisionResult],
    vetoed: Mapping[str, str],
) -> tuple[bool, str]:
    if revision is None:
        return False, "the candidate has no revision to match on GitHub"
    result = results.get(revision)
    if result is None:
        return False, f"revision {revision} was not looked up on GitHub"
    if result.note:
        return False, f"revision {revision} {result.note}"
    if not is_justified(kind, result):
        state = "no deployment" if not result.deployed else f"bake result {result.result or 'none yet'}"
        return False, f"revision {revision} has {state} in {upstream}"
    if revision in vetoed:
        return False, f"revision {revision}: {vetoed[revision]}"
    verdict = (
        f"baked successfully in {upstream}" if kind == "After" else f"deployed in {upstream} without failing"
    )
    return True, f"revision {revision} {verdict}"
