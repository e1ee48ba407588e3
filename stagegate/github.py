"""The GitHub adapter: each candidate revision's commit and its deployments, through PyGithub's GraphQL.

One request asks for every candidate revision at once (one alias per revision:
`repository.object(oid:)`, or `object(expression:)` for an abbreviation, then that commit's
`deployments(environments: [...])` with their statuses), so a recompute costs one request whatever
the length of the upstream's history and whichever candidates it never deployed. Only a commit with
more than `PAGE` deployments in the environment, or a deployment with more than `PAGE` statuses,
costs one more request per extra page (all such pages of a round go in one request).

GitHub's connections list in an order the code must not rely on (`Commit.deployments` oldest first
by default, `Deployment.statuses` with no `orderBy` at all), so every connection is read whole,
paging backwards with `last`/`before` while `hasPreviousPage`, and `shared.bake` orders what it got.
Requests go through `stagegate.github_http` (PyGithub, never sleeping on its own; vendor errors become
stagegate's). This module must not import PyGithub or requests at its top: a function builds its
reader at start, and PyGithub is imported with the client, when GitHub is first asked (`OnFirstUse`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shared import payload
from shared.bake import CommitLookup, DeploymentRecord, StatusRecord, lookup_kind
from shared.errors import PermanentError, RetryableError
from shared.trust import Dropped, trusted_lookup, trusted_records
from stagegate.abandon import check
from stagegate.logs import get_logger
from stagegate.settings import GitHubApp, Settings

if TYPE_CHECKING:
    from github import Github

log = get_logger("github")

PAGE = 10
"""Deployments per commit and statuses per deployment asked for at once (most have a handful)."""
FOLLOW_UP_PAGE = 100
MAX_ALIASES = 1000
"""Revisions per request. GitHub counts at most 1,000 x (10 deployments + 10 x 10 statuses) = 110,000
nodes for it, below its 500,000-node limit, so a Rollout history of 1,000 entries is one request."""

_STATUSES = (
    "pageInfo { hasPreviousPage startCursor } "
    "nodes { state description createdAt environmentUrl creator { login } }"
)
_DEPLOYMENT = (
    "id databaseId commitOid task payload createdAt creator { login } "
    f"statuses(last: {PAGE}) {{ {_STATUSES} }}"
)
_NEWEST = "{field: CREATED_AT, direction: DESC}"
_DEPLOYMENTS = f"pageInfo {{ hasPreviousPage startCursor }} nodes {{ {_DEPLOYMENT} }}"


def github_client(credentials: str | GitHubApp, base_url: str, timeout: float) -> Github:
    """A PyGithub client that never sleeps on its own (no retries, no throttling); imports PyGithub.

    `credentials` is a token or a GitHub App installation: PyGithub then signs a JWT with the App's
    key, trades it for an installation token at `base_url` and renews that token before it expires.
    """
    from stagegate import github_http

    return github_http.client(credentials, base_url, timeout)


@dataclass(frozen=True)
class OnFirstUse:
    """The PyGithub client to make when GitHub is first asked, not before: importing PyGithub costs a
    cold start ~150 ms, and most events a function handles never ask GitHub."""

    credentials: str | GitHubApp = field(repr=False)
    base_url: str
    timeout: float

    def connect(self) -> Github:
        """The client (importing PyGithub)."""
        return github_client(self.credentials, self.base_url, self.timeout)


def repo_path(repository: str, what: str) -> str:
    """`/repos/{owner}/{repo}`, each part escaped: a project is configuration, not a path to follow."""
    owner, _, name = repository.partition("/")
    if not owner or not name or "/" in name:
        raise PermanentError(f"{what}: {repository!r} is not an owner/name repository")
    return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"


def _creator(node: Mapping[str, Any]) -> str | None:
    login = (node.get("creator") or {}).get("login")
    return login if isinstance(login, str) else None


def _status(node: Mapping[str, Any]) -> StatusRecord:
    return StatusRecord(
        state=node["state"].lower(),
        description=node.get("description"),
        created_at=node["createdAt"],
        creator=_creator(node),
        environment_url=node.get("environmentUrl") or None,
    )


@dataclass
class _Deployment:
    """A deployment being read; `before` is the cursor of statuses still to fetch, if any."""

    node_id: str
    record: DeploymentRecord
    statuses: list[StatusRecord]
    before: str | None

    @classmethod
    def from_node(cls, node: Mapping[str, Any]) -> _Deployment:
        page = node["statuses"]
        record = DeploymentRecord(
            id=int(node["databaseId"]),
            sha=node["commitOid"],
            payload=payload.decode(node.get("payload")),
            task=node.get("task"),
            created_at=node["createdAt"],
            creator=_creator(node),
        )
        return cls(node["id"], record, [_status(s) for s in page["nodes"]], _earlier(page))

    def done(self) -> DeploymentRecord:
        return replace(self.record, statuses=tuple(self.statuses))


@dataclass
class _Commit:
    """One candidate revision being read: its commit, its deployments, the cursor of the rest."""

    revision: str
    oid: str | None = None
    deployments: list[_Deployment] = field(default_factory=list)
    before: str | None = None
    held: int | None = None

    def lookup(self) -> CommitLookup:
        return CommitLookup(
            self.revision, self.oid, tuple(d.done() for d in self.deployments), environment_records=self.held
        )


def _earlier(page: Mapping[str, Any]) -> str | None:
    info = page["pageInfo"]
    return info["startCursor"] if info["hasPreviousPage"] and info["startCursor"] else None


def app_login(app: GitHubApp, base_url: str, timeout: float) -> Callable[[], str]:
    """How to learn the login a GitHub App's installation tokens act as: `<slug>[bot]` (`GET /app`)."""

    def resolve() -> str:
        from stagegate import github_http

        return f"{github_http.app_slug(app, base_url, timeout)}[bot]"

    return resolve


@dataclass(frozen=True, slots=True)
class PipelineRecords:
    """GitHub's trusted records per environment asked for, and environments of the name not asked for."""

    records: Mapping[str, tuple[DeploymentRecord, ...]]
    discovered: frozenset[str]


def _log_dropped(repository: str, environment: str, dropped: Iterable[Dropped]) -> None:
    for item in dropped:
        where = {"repository": repository, "environment": environment, "about": item.about}
        log.warning(
            "ignored a bake record not created by a trusted identity",
            extra={"fields": {**where, "record": item.what, "creator": item.creator}},
        )


def github_reader(settings: Settings, timeout: float) -> GitHubDeployments:
    """The reader for the configured credentials, trusting their identity and `GITHUB_TRUSTED_CREATORS`."""
    credentials = settings.github_credentials()
    identity = (
        app_login(credentials, settings.github_api_url, timeout)
        if isinstance(credentials, GitHubApp)
        else None
    )
    return GitHubDeployments(
        OnFirstUse(credentials, settings.github_api_url, timeout),
        settings.github_trusted_creators,
        identity,
    )


class GitHubDeployments:
    """Reads bake records of one GitHub environment per candidate revision, and writes them for the
    reporter; counts its reads (`calls`) and writes (`writes`).

    Only deployments and statuses created by a trusted identity are returned (`shared.trust`): the
    identity of these credentials (the token's user via GraphQL `viewer`, or `identity` when given,
    e.g. `app_login`) plus `trusted`, resolved once on first use.

    `github` is the PyGithub client, or `OnFirstUse`: how to make it when GitHub is first asked.
    """

    def __init__(
        self,
        github: Github | OnFirstUse,
        trusted: Iterable[str] = (),
        identity: Callable[[], str] | None = None,
    ) -> None:
        self._github = github
        self._connecting = threading.Lock()
        self._lock = threading.Lock()
        self.calls = 0
        self.writes = 0
        self._configured = frozenset(login.lower() for login in trusted)
        self._identity = identity or self._viewer_login
        self._trusted: frozenset[str] | None = None

    @property
    def github(self) -> Github:
        """The PyGithub client, made (and PyGithub imported) on first use when given as `OnFirstUse`."""
        with self._connecting:
            if isinstance(self._github, OnFirstUse):
                self._github = self._github.connect()
            return self._github

    def trusted_creators(self) -> frozenset[str]:
        """Whose deployments and statuses count: these credentials' own identity and the configured ones."""
        if self._trusted is None:
            own = self._identity().lower()
            self._trusted = self._configured | {own}
            log.info(
                "bake results count only when created by these GitHub identities",
                extra={"fields": {"trusted": sorted(self._trusted)}},
            )
        return self._trusted

    def _viewer_login(self) -> str:
        data, _ = self._query("query { viewer { login } }", {}, "the credentials' own identity")
        login = (data.get("viewer") or {}).get("login")
        if not isinstance(login, str) or not login:
            raise RetryableError("GitHub did not say whose credentials these are (viewer.login)")
        return login

    def _query(
        self, query: str, variables: dict[str, Any], what: str
    ) -> tuple[Mapping[str, Any], float | None]:
        """`data` of one GraphQL request and GitHub's time of it (`Date`); errors at `repository` are
        permanent, any other retryable."""
        check(what)
        with self._lock:
            self.calls += 1
        from stagegate import github_http

        answer, date = github_http.graphql(self.github, query, variables, what)
        data = answer.get("data") or {}
        errors = answer.get("errors") or []
        for error in errors:
            path = error.get("path") or []
            if error.get("type") == "NOT_FOUND" and path == ["repository"]:
                raise PermanentError(f"{what}: repository not found or not visible to the credentials")
            if error.get("type") == "NOT_FOUND" and len(path) >= 2 and path[1].startswith("r"):
                continue  # a revision that names no commit: its alias is null, which says so
            log.warning("GitHub answered a GraphQL error", extra={"fields": {"what": what, "error": error}})
            raise RetryableError(
                f"{what}: GitHub answered a GraphQL error ({error.get('type') or 'untyped'})"
            )
        if not isinstance(data, Mapping):
            raise RetryableError(f"{what}: GitHub answered no data")
        return data, date

    def _in_repository(
        self, declared: list[str], variables: dict[str, Any], selections: list[str], what: str
    ) -> tuple[Mapping[str, Any], float | None]:
        """The `repository` of one query made of `selections` (`$owner`, `$name` declared), and its date."""
        inner = " ".join(selections)
        query = f"query({', '.join(declared)}) {{ repository(owner: $owner, name: $name) {{ {inner} }} }}"
        data, date = self._query(query, variables, what)
        repo = data.get("repository")
        if not isinstance(repo, Mapping):
            raise PermanentError(f"{what}: repository not found or not visible to the credentials")
        return repo, date

    def create_deployment(self, repository: str, body: Mapping[str, Any]) -> int:
        """`POST /repos/{owner}/{repo}/deployments` (REST: GraphQL has no mutation for it); the new id."""
        what = f"create a deployment in {repository}"
        created = self._write(f"{repo_path(repository, what)}/deployments", body, what)
        deployment_id = created.get("id")
        if not isinstance(deployment_id, int):
            raise RetryableError(f"create a deployment in {repository}: GitHub's answer has no deployment id")
        return deployment_id

    def create_status(self, repository: str, deployment_id: int, body: Mapping[str, Any]) -> None:
        """`POST /repos/{owner}/{repo}/deployments/{id}/statuses`."""
        what = f"post a status on deployment {deployment_id} in {repository}"
        self._write(f"{repo_path(repository, what)}/deployments/{deployment_id}/statuses", body, what)

    def rest_get(self, path: str, parameters: Mapping[str, Any], what: str) -> Any:
        """One REST GET (a path under the API), counted as a read; never retried here."""
        check(what)
        with self._lock:
            self.calls += 1
        from stagegate import github_http

        return github_http.get(self.github, path, parameters, what)

    def rest_post(self, path: str, body: Mapping[str, Any], what: str) -> Mapping[str, Any]:
        """One REST POST (a path under the API), counted as a write."""
        return self._write(path, body, what)

    def _write(self, path: str, body: Mapping[str, Any], what: str) -> Mapping[str, Any]:
        """One POST, never retried here: a rate-limited or failed write raises `RetryableError` and the
        transport that delivered the report retries it later, with its own backoff."""
        check(what)
        with self._lock:
            self.writes += 1
        from stagegate import github_http

        answer = github_http.post(self.github, path, body, what, "writing to")
        return answer if isinstance(answer, Mapping) else {}

    def commit_deployments(
        self, repository: str, environment: str, revisions: Iterable[str]
    ) -> dict[str, CommitLookup]:
        """For each revision: its commit and every deployment of it to `environment`, in any order."""
        owner, _, name = repository.partition("/")
        what = f"deployments of {repository} in {environment}"
        commits = {revision: _Commit(revision) for revision in sorted(set(revisions))}
        asked = [c for c in commits.values() if lookup_kind(c.revision) is not None]
        dates: list[float | None] = []
        try:
            for start in range(0, len(asked), MAX_ALIASES):
                chunk = asked[start : start + MAX_ALIASES]
                dates.append(self._first_round(owner, name, environment, chunk, what))
            dates += self._remaining_pages(owner, name, environment, asked, what)
        except (KeyError, TypeError, AttributeError) as exc:
            raise RetryableError(f"{what}: GitHub's answer lacks {type(exc).__name__}: {exc}") from exc
        creators = self.trusted_creators()
        answered_at = min((d for d in dates if d is not None), default=None)
        lookups = {}
        for revision, commit in commits.items():
            lookups[revision], dropped = trusted_lookup(
                replace(commit.lookup(), answered_at=answered_at), creators
            )
            _log_dropped(repository, environment, dropped)
        return lookups

    def pipeline_records(
        self, repository: str, deployment_name: str, environments: Iterable[str], per_environment: int
    ) -> PipelineRecords:
        """The newest `per_environment` records of each of `environments` (`staging`, under
        `kuberik/<name>/`) with their newest statuses, and the environments of the name among the
        repository's newest deployments: one request.

        Bounded on purpose (the status shows the newest entries only), so unlike `commit_deployments`
        nothing is paged: a deployment's statuses beyond its newest `PAGE` say nothing newer.
        """
        owner, _, name = repository.partition("/")
        task = f"deploy:{deployment_name}"
        asked = sorted(set(environments))
        what = f"deployments of {repository} {deployment_name}"
        declared = ["$owner: String!", "$name: String!"]
        variables: dict[str, Any] = {"owner": owner, "name": name}
        selections = [
            f"recent: deployments(first: {FOLLOW_UP_PAGE}, orderBy: {_NEWEST}) "
            "{ nodes { environment task } }"
        ]
        for i, environment in enumerate(asked):
            declared.append(f"$e{i}: [String!]")
            variables[f"e{i}"] = [f"{deployment_name}/{environment}"]
            selections.append(
                f"e{i}: deployments(environments: $e{i}, first: {per_environment}, orderBy: {_NEWEST}) "
                f"{{ nodes {{ {_DEPLOYMENT} }} }}"
            )
        repo, _ = self._in_repository(declared, variables, selections, what)
        creators = self.trusted_creators()
        records: dict[str, tuple[DeploymentRecord, ...]] = {}
        try:
            for i, environment in enumerate(asked):
                found = [_Deployment.from_node(n).done() for n in repo[f"e{i}"]["nodes"]]
                ours = [d for d in found if d.task == task]
                records[environment], dropped = trusted_records(ours, creators, environment)
                _log_dropped(repository, f"{deployment_name}/{environment}", dropped)
            prefix = f"{deployment_name}/"
            seen = {
                n["environment"][len(prefix) :]
                for n in repo["recent"]["nodes"]
                if n.get("task") == task
                and isinstance(n.get("environment"), str)
                and n["environment"].startswith(prefix)
            }
        except (KeyError, TypeError, AttributeError) as exc:
            raise RetryableError(f"{what}: GitHub's answer lacks {type(exc).__name__}: {exc}") from exc
        return PipelineRecords(records, frozenset(e for e in seen if e and "/" not in e) - set(asked))

    def _first_round(
        self, owner: str, name: str, environment: str, commits: list[_Commit], what: str
    ) -> float | None:
        """Each commit and its newest page of deployments; GitHub's time of the answer."""
        declared, selections = ["$owner: String!", "$name: String!", "$environments: [String!]"], []
        variables: dict[str, Any] = {"owner": owner, "name": name, "environments": [environment]}
        for i, commit in enumerate(commits):
            by_oid = lookup_kind(commit.revision) == "oid"
            declared.append(f"$v{i}: {'GitObjectID' if by_oid else 'String'}!")
            variables[f"v{i}"] = commit.revision.lower()
            selections.append(
                f"r{i}: object({'oid' if by_oid else 'expression'}: $v{i}) {{ ... on Commit {{ oid "
                f"deployments(environments: $environments, last: {PAGE}) {{ {_DEPLOYMENTS} }} }} }}"
            )
        # How many deployments the environment holds at all: none means nothing was ever recorded there
        # (a misspelt upstream, most likely), which `explain` and the recompute say.
        selections.append("held: deployments(environments: $environments, last: 1) { totalCount }")
        repo, date = self._in_repository(declared, variables, selections, what)
        held = (repo.get("held") or {}).get("totalCount")
        for commit in commits:
            commit.held = held if isinstance(held, int) else None
        for i, commit in enumerate(commits):
            found = repo.get(f"r{i}") or {}
            oid = found.get("oid")
            if not isinstance(oid, str) or not oid.lower().startswith(commit.revision.lower()):
                continue  # no such commit, an ambiguous abbreviation, or a ref of that name: blocked
            commit.oid = oid.lower()
            page = found["deployments"]
            commit.deployments = [_Deployment.from_node(n) for n in page["nodes"]]
            commit.before = _earlier(page)
        return date

    def _remaining_pages(
        self, owner: str, name: str, environment: str, commits: list[_Commit], what: str
    ) -> list[float | None]:
        """Page backwards through every connection that has more, one request per round; GitHub's time
        of each answer."""
        dates: list[float | None] = []
        while True:
            pending_commits = [c for c in commits if c.before is not None]
            pending_statuses = [d for c in commits for d in c.deployments if d.before is not None]
            if not pending_commits and not pending_statuses:
                return dates
            declared: list[str] = []
            variables: dict[str, Any] = {}
            parts, in_repo = [], []
            for i, commit in enumerate(pending_commits):
                declared += [f"$o{i}: GitObjectID!", f"$c{i}: String!"]
                variables.update({f"o{i}": commit.oid, f"c{i}": commit.before})
                in_repo.append(
                    f"r{i}: object(oid: $o{i}) {{ ... on Commit {{ deployments(environments: $environments, "
                    f"last: {FOLLOW_UP_PAGE}, before: $c{i}) {{ {_DEPLOYMENTS} }} }} }}"
                )
            if in_repo:
                declared += ["$owner: String!", "$name: String!", "$environments: [String!]"]
                variables.update(owner=owner, name=name, environments=[environment])
                parts.append(f"repository(owner: $owner, name: $name) {{ {' '.join(in_repo)} }}")
            for j, deployment in enumerate(pending_statuses):
                declared += [f"$n{j}: ID!", f"$s{j}: String!"]
                variables.update({f"n{j}": deployment.node_id, f"s{j}": deployment.before})
                parts.append(
                    f"d{j}: node(id: $n{j}) {{ ... on Deployment {{ statuses(last: {FOLLOW_UP_PAGE}, "
                    f"before: $s{j}) {{ {_STATUSES} }} }} }}"
                )
            data, date = self._query(f"query({', '.join(declared)}) {{ {' '.join(parts)} }}", variables, what)
            dates.append(date)
            for i, commit in enumerate(pending_commits):
                found = ((data.get("repository") or {}).get(f"r{i}") or {}).get("deployments")
                if not isinstance(found, Mapping):
                    raise RetryableError(f"{what}: commit {commit.oid} vanished while paging its deployments")
                commit.deployments += [_Deployment.from_node(n) for n in found["nodes"]]
                commit.before = _earlier(found)
            for j, deployment in enumerate(pending_statuses):
                statuses = (data.get(f"d{j}") or {}).get("statuses")
                if not isinstance(statuses, Mapping):
                    raise RetryableError(f"{what}: deployment {deployment.record.id} vanished while paging")
                deployment.statuses += [_status(s) for s in statuses["nodes"]]
                deployment.before = _earlier(statuses)
