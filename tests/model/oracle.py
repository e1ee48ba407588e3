"""The model's own reading of bake results, written from DESIGN.md and the module docstrings, not
from `shared.bake`: which tags an Environment may deploy, given what is known about its upstream.

Known is either everything the reader ever answered for one (repository, GitHub environment) (the
union of all answers: a deployment seen twice keeps every status either answer showed) or the fake
GitHub's live state. The rules:

- a deployment counts for a candidate revision (a full commit id) when it is of that commit and its
  payload's `version.revision`, if any, is a hex prefix of at least 7 digits of it;
- a status carries a bake result unless it is `inactive` without a `Bake cancelled` description
  (GitHub's own marks on older deployments);
- the newest counted deployment by (createdAt, id) that has a result-carrying status decides; its
  deciding statuses are those with the newest createdAt: one state, or several (a tie within
  GitHub's one-second resolution, read as ambiguous);
- `After`: exactly `{success}`; `Parallel`: at least one counted deployment, and no failure or error
  among the deciding states;
- a tag is allowed when it has candidate entries and every one of them has a justified revision.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
FAILED = frozenset({"failure", "error"})

StatusKey = tuple[str, str, str]
"""(state, description, createdAt) of one status; GraphQL gives statuses no id."""


@dataclass
class Seen:
    """One deployment as far as anything showed it."""

    id: int
    sha: str
    claimed: str | None
    created_at: str
    statuses: set[StatusKey] = field(default_factory=set)


@dataclass(frozen=True)
class Verdict:
    """Whether a revision was deployed upstream, and the deciding states (empty: no result yet)."""

    deployed: bool
    states: frozenset[str]

    @property
    def word(self) -> str:
        if not self.states:
            return "deployed, no result" if self.deployed else "not deployed"
        return "/".join(sorted(self.states))


def claimed_revision(payload: Any) -> str | None:
    """`payload.version.revision`, when the payload has a non-empty one."""
    version = payload.get("version") if isinstance(payload, Mapping) else None
    revision = version.get("revision") if isinstance(version, Mapping) else None
    return revision if isinstance(revision, str) and revision else None


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _counts(deployment: Seen, revision: str) -> bool:
    if deployment.sha.lower() != revision:
        return False
    claimed = deployment.claimed
    return claimed is None or (len(claimed) >= 7 and revision.startswith(claimed.lower()))


def _carries(status: StatusKey) -> bool:
    state, description, _ = status
    return state != "inactive" or description.startswith("Bake cancelled")


def verdict(deployments: Iterable[Seen], revision: str | None) -> Verdict:
    """What the known deployments say about one candidate revision."""
    if revision is None or not FULL_SHA.match(revision):
        return Verdict(False, frozenset())
    counted = sorted((d for d in deployments if _counts(d, revision)), key=lambda d: (d.created_at, d.id))
    for deployment in reversed(counted):
        carrying = [s for s in deployment.statuses if _carries(s)]
        if carrying:
            newest = max(s[2] for s in carrying)
            return Verdict(True, frozenset(s[0] for s in carrying if s[2] == newest))
    return Verdict(bool(counted), frozenset())


def justified(kind: str, found: Verdict) -> bool:
    if kind == "After":
        return found.states == {"success"}
    return found.deployed and not (found.states & FAILED)


def allowed(
    kind: str, candidates: Sequence[tuple[str, str | None]], verdict_of: Callable[[str | None], Verdict]
) -> list[str]:
    """The sorted tags every candidate entry of which has a justified revision."""
    tags: dict[str, bool] = {}
    for tag, revision in candidates:
        tags[tag] = tags.get(tag, True) and justified(kind, verdict_of(revision))
    return sorted(tag for tag, ok in tags.items() if ok)


class Knowledge:
    """Everything the reader answered, per (repository, GitHub environment), merged."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], dict[int, Seen]] = {}

    def add(
        self,
        repository: str,
        environment: str,
        lookups: Mapping[str, Any],
        revisions: Collection[str | None] | None = None,
    ) -> None:
        """Merge one answer of `commit_deployments` (revision -> `CommitLookup`), or its `revisions`."""
        known = self._seen.setdefault((repository.lower(), environment), {})
        for revision, lookup in lookups.items():
            if revisions is not None and revision not in revisions:
                continue
            for record in lookup.deployments:
                seen = known.get(record.id)
                if seen is None:
                    seen = known[record.id] = Seen(
                        record.id, record.sha.lower(), claimed_revision(record.payload), record.created_at
                    )
                seen.statuses |= {
                    (s.state.lower(), s.description or "", s.created_at) for s in record.statuses
                }

    def deployments(self, repository: str, environment: str) -> list[Seen]:
        return list(self._seen.get((repository.lower(), environment), {}).values())

    def copy(self) -> Knowledge:
        twin = Knowledge()
        twin._seen = {
            where: {i: Seen(d.id, d.sha, d.claimed, d.created_at, set(d.statuses)) for i, d in known.items()}
            for where, known in self._seen.items()
        }
        return twin


def live_deployments(state: Any, repository: str, environment: str) -> list[Seen]:
    """The fake GitHub's live deployments of one GitHub environment, as `Seen` records."""
    repo = state.repo(repository)
    with state.locked():
        return [
            Seen(
                d.id,
                d.sha.lower(),
                claimed_revision(d.payload),
                iso(d.created_at),
                {(s.state, s.description or "", iso(s.created_at)) for s in d.statuses},
            )
            for d in state.deployments.values()
            if d.repository_id == repo.id and d.environment == environment
        ]
