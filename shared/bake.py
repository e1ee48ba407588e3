"""Which versions an environment may deploy, from its upstream's bake records on GitHub.

Pure and total: the deployments GitHub recorded for each candidate revision's commit become one bake
result per release candidate; the relationship type turns those into allowed tags. Every event only
says "look again": the whole allowed set is recomputed from these inputs each time, so duplicate,
reordered or lost events change only timing.

**A version is the image the upstream ran**, not its commit. A record vouches for a candidate only when
it is a record of that same build: kuberik's payload names the same tag (`payload.version.tag`) and
commit (`sha`, and `payload.version.revision` when given), and the same digest where both the record
and the candidate carry one (kuberik's `VersionInfo.digest`). A rebuild of a baked commit has another
tag (or digest) and must bake on its own. A record without a tag, or without kuberik's history entry
id (`payload.id`, an integer), vouches for nothing: only kuberik's environment controller and
stagegate's reporter write records this reader believes.

**A bake result is read as kuberik writes it** (the environment controller's
`extractBakeStatusFromDescription`): a status carries a result only when its description starts with
one of kuberik's prefixes (`Bake succeeded`, `Bake failed`, `Baking in progress`, `Deploying`,
`Bake cancelled`; what follows `:` is the message). Other statuses (GitHub's own description-less
`inactive` marks, a deploy tool's "Deployment successful") are skipped, as kuberik skips them. A
status whose state contradicts its prefix (a `failure` saying `Bake succeeded`, a `success` saying
`Deploying`) is read as `contradictory`: never a success, and a failure to `Parallel`.

**Which record decides: history, not creation time.** A version's result is that of its newest Rollout
history entry (the highest payload id among its records); within that entry (several records of one
entry are duplicates of a race) the newest status by GitHub's `createdAt` decides, and statuses tied
within GitHub's one-second resolution that say different things are "ambiguous". A late duplicate of
an older entry therefore cannot replace the result of a newer one. Because history ids restart at 1
when a Rollout is created again, a record of an *older* entry that GitHub created after the newest
entry's first record (a higher deployment id: GitHub's own sequence, not a clock) may only narrow:
unless it too says `success`, the version is not baked (`VersionResult.late`).

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

SUCCESS = "success"
AMBIGUOUS = "ambiguous"
CONTRADICTORY = "contradictory"
FAILED_STATES = frozenset({"failure", "error", CONTRADICTORY})
MIN_ABBREVIATION = 7
_HEX = re.compile(r"[0-9a-f]+")

PREFIX_STATES: Mapping[str, frozenset[str]] = {
    "Bake succeeded": frozenset({"success"}),
    "Bake failed": frozenset({"failure"}),
    "Baking in progress": frozenset({"in_progress"}),
    "Deploying": frozenset({"in_progress", "pending"}),
    "Bake cancelled": frozenset({"inactive"}),
}
"""kuberik's description prefixes and the states it writes them with (`shared.report.BAKE_STATES`)."""
CANCELLED_PREFIX = "Bake cancelled"

LookupKind = Literal["oid", "abbreviation"]
Position = tuple[int, str, int]
"""Where a decision sits in the upstream's history: history entry id, status createdAt, deployment id."""


@dataclass(frozen=True, slots=True)
class StatusRecord:
    """One deployment status; `created_at` is GitHub's ISO 8601 timestamp (sorts as text)."""

    state: str
    description: str | None
    created_at: str
    creator: str | None = None
    environment_url: str | None = None


def _version_field(payload: Mapping[str, Any] | None, name: str) -> str | None:
    version = payload.get("version") if isinstance(payload, Mapping) else None
    value = version.get(name) if isinstance(version, Mapping) else None
    return value if isinstance(value, str) and value else None


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
        return _version_field(self.payload, "revision")

    @property
    def payload_tag(self) -> str | None:
        """`payload.version.tag`: the image tag the upstream ran."""
        return _version_field(self.payload, "tag")

    @property
    def payload_digest(self) -> str | None:
        """`payload.version.digest`, when the release had one."""
        return _version_field(self.payload, "digest")

    @property
    def entry(self) -> int | None:
        """The Rollout history entry id the record is for (`payload.id`), when it is an integer."""
        raw = self.payload.get("id") if isinstance(self.payload, Mapping) else None
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            return None
        text = str(raw)
        return int(text) if text.isascii() and text.isdigit() else None


@dataclass(frozen=True, slots=True)
class CommitLookup:
    """GitHub's answer for one candidate revision: the commit it names and that commit's deployments.

    `oid` is None when GitHub knows no such commit, the abbreviation is ambiguous, or the revision is
    not a commit id at all (then GitHub was not asked). `answered_at` is when GitHub answered, on
    GitHub's own clock (its `Date` header, seconds since the epoch), where known.
    """

    revision: str
    oid: str | None
    deployments: tuple[DeploymentRecord, ...] = ()
    answered_at: float | None = None
    environment_records: int | None = None
    """How many deployments GitHub holds in the environment at all, for any commit (None: not asked)."""


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


def bake_result(status: StatusRecord) -> str | None:
    """The bake result a status carries, read as kuberik reads it; None when it carries none."""
    description = status.description or ""
    prefix = description.split(":", 1)[0].strip()
    expected = PREFIX_STATES.get(prefix)
    state = status.state.lower()
    if expected is None or (state == "inactive" and prefix != CANCELLED_PREFIX):
        return None
    return state if state in expected else CONTRADICTORY


def carries_bake_result(status: StatusRecord) -> bool:
    """Whether kuberik would read a bake result from this status at all."""
    return bake_result(status) is not None


def newest_result(deployments: Iterable[DeploymentRecord]) -> tuple[frozenset[str], str, int] | None:
    """The results of the newest result-carrying statuses across these deployments (several only on a
    tie within one second), when they were created, and the deployment that holds them."""
    carrying = [(s.created_at, d.id, r) for d in deployments for s in d.statuses if (r := bake_result(s))]
    if not carrying:
        return None
    newest = max(at for at, _, _ in carrying)
    tied = [(deployment, result) for at, deployment, result in carrying if at == newest]
    return frozenset(result for _, result in tied), newest, max(deployment for deployment, _ in tied)


@dataclass(frozen=True, slots=True)
class ReleaseCandidate:
    """One entry of the Rollout's `status.releaseCandidates` (kuberik's `VersionInfo`)."""

    tag: str
    revision: str | None
    digest: str | None = None


def vouches_for(candidate: ReleaseCandidate, oid: str, deployment: DeploymentRecord) -> bool:
    """True when the record is of this very build: its commit, tag, digest (where both have one), and
    kuberik's history entry id."""
    if candidate.revision is None or not counts_for(candidate.revision, oid, deployment):
        return False
    if deployment.entry is None or deployment.payload_tag != candidate.tag:
        return False
    recorded = deployment.payload_digest
    return candidate.digest is None or recorded is None or recorded.lower() == candidate.digest.lower()


@dataclass(frozen=True, slots=True)
class VersionResult:
    """What the upstream says about one release candidate.

    `states` are the results of the deciding status of the newest history entry (one, unless statuses
    tied within a second); empty when nothing carries a result yet. `late` are the results of records of
    older entries that GitHub created after the newest entry's first record: they can only narrow.
    `deployed` says whether any record vouches for the candidate; `note` says why none could.
    """

    candidate: ReleaseCandidate
    states: frozenset[str]
    deployed: bool
    position: Position | None = None
    late: frozenset[str] = frozenset()
    note: str = ""

    @property
    def result(self) -> str | None:
        """The bake result in one word: a state, `ambiguous` for a tie of different states, or None."""
        if not self.states:
            return None
        return next(iter(self.states)) if len(self.states) == 1 else AMBIGUOUS


def version_result(candidate: ReleaseCandidate, lookup: CommitLookup) -> VersionResult:
    """The candidate's result: its newest history entry decides, later-created older records narrow."""
    if lookup.oid is None:
        note = (
            "is not a commit id (7 to 40 hex digits)"
            if lookup_kind(lookup.revision) is None
            else "names no commit GitHub knows (not pushed, or an ambiguous short id)"
        )
        return VersionResult(
            candidate, frozenset(), deployed=False, note=f"revision {lookup.revision} {note}"
        )
    oid = lookup.oid
    records = [d for d in lookup.deployments if vouches_for(candidate, oid, d)]
    if not records:
        return VersionResult(candidate, frozenset(), deployed=False, note=_other_builds(candidate, lookup))
    newest = max(d.entry or 0 for d in records)
    latest = [d for d in records if d.entry == newest]
    first = min(d.id for d in latest)
    late: frozenset[str] = frozenset()
    for record in records:
        if record.entry != newest and record.id > first and (said := newest_result([record])) is not None:
            late |= said[0]
    decided = newest_result(latest)
    if decided is None:
        return VersionResult(candidate, frozenset(), deployed=True, late=late)
    states, at, deployment = decided
    return VersionResult(candidate, states, deployed=True, position=(newest, at, deployment), late=late)


def _other_builds(candidate: ReleaseCandidate, lookup: CommitLookup) -> str:
    """Why no record vouches for the candidate, naming the builds of its commit that were recorded."""
    oid = lookup.oid or ""
    commit = [d for d in lookup.deployments if candidate.revision and counts_for(candidate.revision, oid, d)]
    if not commit:
        return ""
    tags = sorted({d.payload_tag or "no tag" for d in commit if d.payload_tag != candidate.tag})
    if tags:
        return (
            f"commit {oid[:7]} ran there only as other builds ({', '.join(tags[:3])}"
            f"{', ...' if len(tags) > 3 else ''}), not as {candidate.tag}"
        )
    if any(d.entry is None for d in commit):
        return f"the records of {candidate.tag} there carry no kuberik history entry id"
    return f"its records there are of another digest than {candidate.digest}"


def results_for(
    candidates: Iterable[ReleaseCandidate], lookups: Mapping[str, CommitLookup]
) -> dict[ReleaseCandidate, VersionResult]:
    """One result per candidate whose revision was looked up."""
    return {
        candidate: version_result(candidate, lookups[candidate.revision])
        for candidate in candidates
        if candidate.revision is not None and candidate.revision in lookups
    }


def is_justified(kind: RelationshipType, result: VersionResult) -> bool:
    """`After`: baked successfully upstream. `Parallel`: deployed upstream and not failed there.
    Records created later for older history entries may only narrow either."""
    if kind == "After":
        return result.states == {SUCCESS} and result.late <= {SUCCESS}
    return result.deployed and not ((result.states | result.late) & FAILED_STATES)


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
        revision, digest = item.get("revision"), item.get("digest")
        candidates.append(
            ReleaseCandidate(
                tag,
                revision if isinstance(revision, str) and revision else None,
                digest if isinstance(digest, str) and digest else None,
            )
        )
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
    results: Mapping[ReleaseCandidate, VersionResult],
    vetoed: Mapping[str, str] | None = None,
) -> AllowedTags:
    """Tags every one of whose candidate entries is justified: sorted, without duplicates.

    `vetoed` maps tags to why an earlier, newer answer still forbids them (see `shared.evidence`).
    """
    vetoed = vetoed or {}
    verdicts: dict[str, list[str]] = {}
    blocked: set[str] = set()
    for candidate in candidates:
        ok, why = _judge(kind, upstream, candidate, results.get(candidate), vetoed)
        verdicts.setdefault(candidate.tag, []).append(why)
        if not ok:
            blocked.add(candidate.tag)
    reasons = {
        tag: ("blocked: " if tag in blocked else "allowed: ") + "; ".join(dict.fromkeys(whys))
        for tag, whys in verdicts.items()
    }
    return AllowedTags(tags=tuple(sorted(set(verdicts) - blocked)), reasons=reasons)


def describe_result(result: VersionResult) -> str:
    """The result in words, for logs and `explain`: "bake result failure (entry 7)" and the like."""
    if not result.deployed:
        return "no record of this build"
    said = f"bake result {result.result or 'none yet'}"
    if result.position is not None:
        said += f" (history entry {result.position[0]}, deployment {result.position[2]})"
    narrowing = sorted(result.late - {SUCCESS})
    if narrowing:
        said += f", and a record of an older entry created after it says {'/'.join(narrowing)}"
    return said


def _judge(
    kind: RelationshipType,
    upstream: str,
    candidate: ReleaseCandidate,
    result: VersionResult | None,
    vetoed: Mapping[str, str],
) -> tuple[bool, str]:
    revision = candidate.revision
    if revision is None:
        return False, "the candidate has no revision to match on GitHub"
    if result is None:
        return False, f"revision {revision} was not looked up on GitHub"
    if result.note and not result.deployed:
        return False, result.note if result.note.startswith("revision") else f"{result.note} in {upstream}"
    if not is_justified(kind, result):
        return False, f"{candidate.tag} ({revision}) has {describe_result(result)} in {upstream}"
    if candidate.tag in vetoed:
        return False, f"{candidate.tag}: {vetoed[candidate.tag]}"
    verdict = (
        f"baked successfully in {upstream}" if kind == "After" else f"deployed in {upstream} without failing"
    )
    return True, f"{candidate.tag} ({revision}) {verdict}"
