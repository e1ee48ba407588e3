"""The model's own reading of bake records, written from DESIGN.md and the module docstrings, not
from `shared.bake`: which tags an Environment may deploy, given what is known about its upstream.

Known is either everything the reader ever answered for one (repository, GitHub environment) (the
union of all answers: a deployment seen twice keeps every status either answer showed) or the fake
GitHub's live state. The rules:

- a record is of a candidate (tag, full commit id) when it is a deployment of that commit, its
  payload's `version.revision`, if any, is a hex prefix of at least 7 digits of it, its payload's
  `version.tag` is the candidate's tag, and its payload's `id` (the Rollout history entry) is a
  number: a rebuild of the same commit under another tag has no record until it bakes itself;
- a status says something about the bake only when its description starts with one of kuberik's
  words (`Bake succeeded`, `Bake failed`, `Baking in progress`, `Deploying`, `Bake cancelled`, the
  part before a colon) and, for `inactive`, only `Bake cancelled`; it says its state if the state is
  one kuberik writes with those words, otherwise it says "contradicts";
- the candidate's records with the highest history entry decide: their newest saying statuses (several
  only when created in the same second) give the states; records of lower entries that GitHub created
  after the first record of that highest entry (a higher deployment id) may only hold it back;
- `After`: the states are exactly `{success}` and the held-back ones say nothing but success;
  `Parallel`: at least one record, and nothing failed (failure, error, or contradicts) among either;
- a tag is allowed when it has candidate entries and every one of them is justified.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
FAILED = frozenset({"failure", "error", "contradicts"})
WORDS = {
    "Bake succeeded": {"success"},
    "Bake failed": {"failure"},
    "Baking in progress": {"in_progress"},
    "Deploying": {"in_progress", "pending"},
    "Bake cancelled": {"inactive"},
}

StatusKey = tuple[str, str, str]
"""(state, description, createdAt) of one status; GraphQL gives statuses no id."""


@dataclass
class Seen:
    """One deployment as far as anything showed it."""

    id: int
    sha: str
    claimed: str | None
    created_at: str
    tag: str | None = None
    entry: str | None = None
    statuses: set[StatusKey] = field(default_factory=set)


@dataclass(frozen=True)
class Verdict:
    """Whether the candidate has a record upstream, the deciding states (empty: no result yet), and
    what records of older entries created later say."""

    deployed: bool
    states: frozenset[str]
    late: frozenset[str] = frozenset()

    @property
    def word(self) -> str:
        if not self.states:
            said = "deployed, no result" if self.deployed else "not deployed"
        else:
            said = "/".join(sorted(self.states))
        return f"{said} (later, older: {'/'.join(sorted(self.late))})" if self.late else said


def payload_field(payload: Any, *path: str) -> str | None:
    """A non-empty string at `path` in the payload, or None."""
    for key in path:
        payload = payload.get(key) if isinstance(payload, Mapping) else None
    return payload if isinstance(payload, str) and payload else None


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _of_commit(deployment: Seen, revision: str) -> bool:
    if deployment.sha.lower() != revision:
        return False
    claimed = deployment.claimed
    return claimed is None or (len(claimed) >= 7 and revision.startswith(claimed.lower()))


def _says(status: StatusKey) -> str | None:
    state, description, _ = status
    words = description.split(":")[0]
    if words not in WORDS or (state == "inactive" and words != "Bake cancelled"):
        return None
    return state if state in WORDS[words] else "contradicts"


def _newest(deployments: Iterable[Seen]) -> frozenset[str]:
    said = [(s[2], word) for d in deployments for s in d.statuses if (word := _says(s)) is not None]
    if not said:
        return frozenset()
    last = max(at for at, _ in said)
    return frozenset(word for at, word in said if at == last)


def verdict(deployments: Iterable[Seen], candidate: tuple[str, str | None]) -> Verdict:
    """What the known deployments say about one candidate (tag, revision)."""
    tag, revision = candidate
    if revision is None or not FULL_SHA.match(revision):
        return Verdict(False, frozenset())
    mine = [
        d
        for d in deployments
        if _of_commit(d, revision) and d.tag == tag and d.entry is not None and d.entry.isdigit()
    ]
    if not mine:
        return Verdict(False, frozenset())
    top = max(int(d.entry or 0) for d in mine)
    deciding = [d for d in mine if int(d.entry or 0) == top]
    first = min(d.id for d in deciding)
    late: frozenset[str] = frozenset()
    for d in mine:
        if int(d.entry or 0) != top and d.id > first:
            late |= _newest([d])
    return Verdict(True, _newest(deciding), late)


def justified(kind: str, found: Verdict) -> bool:
    if kind == "After":
        return found.states == {"success"} and found.late <= {"success"}
    return found.deployed and not ((found.states | found.late) & FAILED)


def allowed(
    kind: str,
    candidates: Sequence[tuple[str, str | None]],
    verdict_of: Callable[[tuple[str, str | None]], Verdict],
) -> list[str]:
    """The sorted tags every candidate entry of which is justified."""
    tags: dict[str, bool] = {}
    for candidate in candidates:
        tags[candidate[0]] = tags.get(candidate[0], True) and justified(kind, verdict_of(candidate))
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
                        record.id,
                        record.sha.lower(),
                        payload_field(record.payload, "version", "revision"),
                        record.created_at,
                        payload_field(record.payload, "version", "tag"),
                        payload_field(record.payload, "id"),
                    )
                seen.statuses |= {
                    (s.state.lower(), s.description or "", s.created_at) for s in record.statuses
                }

    def deployments(self, repository: str, environment: str) -> list[Seen]:
        return list(self._seen.get((repository.lower(), environment), {}).values())

    def copy(self) -> Knowledge:
        twin = Knowledge()
        twin._seen = {
            where: {
                i: Seen(d.id, d.sha, d.claimed, d.created_at, d.tag, d.entry, set(d.statuses))
                for i, d in known.items()
            }
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
                payload_field(d.payload, "version", "revision"),
                iso(d.created_at),
                payload_field(d.payload, "version", "tag"),
                payload_field(d.payload, "id"),
                {(s.state, s.description or "", iso(s.created_at)) for s in d.statuses},
            )
            for d in state.deployments.values()
            if d.repository_id == repo.id and d.environment == environment
        ]
