"""What the fake GitHub knows: repositories, deployments and their statuses, and GitHub's rules on them.

Plain data plus the few behaviours of GitHub that stagegate depends on: case-insensitive repository
names, ids and timestamps that only grow, a status's `environment` moving its deployment, the
automatic `inactive` statuses GitHub adds to older deployments of an environment when a newer one
succeeds, and the rule on deleting deployments. GitHub Actions runs held by custom deployment
protection rules live here too, with the deployment each makes; the rules on answering them are
`actions.py`'s. The order of listings belongs to the APIs (REST lists
newest first, GraphQL as `connections.py` says). A `Snapshot` is a frozen copy of everything, to
answer reads from as a lagging replica would. Nothing here knows about HTTP or JSON shapes (see
`rest.py`, `graphql_api.py`); every method is safe to call from several server threads at once.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from stagegate_dev.fake_github import actions
from stagegate_dev.fake_github.actions import WorkflowRun

STATUS_STATES = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")
DESCRIPTION_MAX = 140
_SHA = re.compile(r"^[0-9a-f]{40}$")

AutoInactiveScope = Literal["active", "all"]

StatusListener = Callable[["Repository", "Deployment", "DeploymentStatus"], None]

# The rule is the REST description's ("Delete a deployment"); the wording of the refusal is the fake's.
DELETE_ACTIVE = (
    "We cannot delete an active deployment unless it is the only deployment of the repository: "
    "add a non-successful status to make it inactive first."
)


class NotFound(LookupError):
    """The repository, deployment or status does not exist (HTTP 404)."""


class ValidationFailed(ValueError):
    """GitHub would refuse the input with 422; `errors` are GitHub's per-field error objects."""

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []


def node_id(type_name: str, database_id: int | str) -> str:
    """GitHub's legacy global node id, e.g. `MDEwOkRlcGxveW1lbnQx` for Deployment 1."""
    raw = f"0{len(type_name)}:{type_name}{database_id}"
    return base64.b64encode(raw.encode()).decode()


def commit_node_id(repository_id: int, sha: str) -> str:
    """GitHub's legacy global node id of a commit: `06:Commit<repository id>:<sha>`, base64."""
    return node_id("Commit", f"{repository_id}:{sha}")


def parse_node_id(value: str) -> tuple[str, str] | None:
    """(type name, the rest) of a legacy node id (`MDEwOkRlcGxveW1lbnQx` -> Deployment, 1), or None."""
    try:
        raw = base64.b64decode(value, validate=True).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    length, colon, rest = raw.partition(":")
    if not colon or not length.isdigit() or not length.startswith("0") or int(length) > len(rest):
        return None
    type_name, ident = rest[: int(length)], rest[int(length) :]
    return (type_name, ident) if type_name.isalpha() and ident else None


def timestamp(moment: datetime) -> str:
    """GitHub's timestamp format: UTC, whole seconds, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class User:
    """An account: the owner of a repository or the creator of a deployment or status."""

    login: str
    id: int
    type: str = "User"

    @property
    def node_id(self) -> str:
        """The account's global node id."""
        return node_id(self.type, self.id)


@dataclass
class Repository:
    """A repository; `refs` maps branch and tag names to commit SHAs for ref resolution."""

    id: int
    owner: User
    name: str
    created_at: datetime
    default_branch: str = "main"
    private: bool = True
    refs: dict[str, str] = field(default_factory=dict)
    environments: dict[str, actions.Environment] = field(default_factory=dict)
    """GitHub Actions environments by case-folded name (GitHub's names are not case sensitive)."""
    workflows: dict[str, int] = field(default_factory=dict)
    """Workflow ids by workflow name."""

    @property
    def full_name(self) -> str:
        """`owner/name` as GitHub spells it."""
        return f"{self.owner.login}/{self.name}"


@dataclass
class DeploymentStatus:
    """One status of a deployment; `automatic` marks the `inactive` ones GitHub adds by itself."""

    id: int
    deployment_id: int
    state: str
    description: str
    environment: str
    creator: User
    created_at: datetime
    log_url: str = ""
    environment_url: str = ""
    automatic: bool = False


@dataclass
class Deployment:
    """A deployment with its statuses (oldest first; `newest_statuses()` gives REST's order)."""

    id: int
    repository_id: int
    sha: str
    ref: str
    task: str
    payload: dict[str, Any] | str
    original_environment: str
    environment: str
    description: str | None
    creator: User
    created_at: datetime
    updated_at: datetime
    transient_environment: bool = False
    production_environment: bool = False
    statuses: list[DeploymentStatus] = field(default_factory=list)

    def newest_statuses(self) -> list[DeploymentStatus]:
        """Statuses newest first, as GitHub's REST API lists them."""
        return list(reversed(self.statuses))

    @property
    def latest_status(self) -> DeploymentStatus | None:
        """The newest status, if any."""
        return self.statuses[-1] if self.statuses else None

    @property
    def active(self) -> bool:
        """Whether its latest status is `success`; any other status makes it inactive again."""
        latest = self.latest_status
        return latest is not None and latest.state == "success"


class Clock:
    """Timestamps that strictly increase, by a second per event at least.

    A test's clock (the default) moves only with events and `advance`, from a start it can choose, so a
    run repeats. The local stack's (`wall=True`) also keeps up with this machine's clock, so a record
    says when it was made, as GitHub's do (a burst of events can put it a few seconds ahead; it never
    falls behind).
    """

    def __init__(self, start: datetime | None = None, *, wall: bool = False) -> None:
        self._wall = wall
        self._now = (start or _utc_now()).astimezone(UTC).replace(microsecond=0)

    def now(self) -> datetime:
        """The time of the latest event, or the machine's time when that is later (`wall`)."""
        if self._wall:
            self._now = max(self._now, _utc_now())
        return self._now

    def tick(self) -> datetime:
        """The time of a new event: one second after the previous one, or now when that is later."""
        self._now += timedelta(seconds=1)
        return self.now()

    def advance(self, seconds: float) -> None:
        """Let time pass without an event (whole seconds)."""
        self._now += timedelta(seconds=int(seconds))


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class GitHubState:
    """All repositories, deployments and statuses of one fake, behind one lock."""

    def __init__(
        self,
        *,
        clock: Clock,
        auto_inactive_scope: AutoInactiveScope = "active",
        first_deployment_id: int = 1_000_001,
        first_status_id: int = 2_000_001,
    ) -> None:
        self.clock = clock
        self.auto_inactive_scope = auto_inactive_scope
        self._lock = threading.RLock()
        self._repos: dict[str, Repository] = {}
        self._users: dict[str, User] = {}
        self.deployments: dict[int, Deployment] = {}
        self.statuses: dict[int, DeploymentStatus] = {}
        self._next_repo_id = 500_000_001
        self._next_user_id = 9_000_001
        self._next_deployment_id = first_deployment_id
        self._next_status_id = first_status_id
        self._status_listeners: list[StatusListener] = []
        self.runs: dict[int, WorkflowRun] = {}
        # GitHub Actions' ids (runs, check suites, workflows, environments): one sequence, so distinct,
        # and past 32 bits as GitHub's run ids are.
        self._next_actions_id = 13_000_000_001

    def on_status(self, listener: StatusListener) -> None:
        """Call `listener` for every status recorded from now on (automatic ones included), in
        recording order, while the state's lock is held: it must only note the status, never wait."""
        with self._lock:
            self._status_listeners.append(listener)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the state still while reading several things that must agree."""
        with self._lock:
            yield

    def snapshot(self) -> Snapshot:
        """A deep copy of every repository, account, deployment and status as they are now."""
        with self._lock:
            frozen = GitHubState(clock=self.clock, auto_inactive_scope=self.auto_inactive_scope)
            frozen._repos, frozen._users, frozen.deployments, frozen.statuses, frozen.runs = copy.deepcopy(
                (self._repos, self._users, self.deployments, self.statuses, self.runs)
            )
            frozen._next_repo_id, frozen._next_user_id = self._next_repo_id, self._next_user_id
            frozen._next_deployment_id = self._next_deployment_id
            frozen._next_status_id = self._next_status_id
            frozen._next_actions_id = self._next_actions_id
            return Snapshot(state=frozen, taken_at=self.clock.now())

    # accounts and repositories -----------------------------------------------------------------

    def user(self, login: str, type_: str = "User") -> User:
        """The account with this login, created on first use."""
        with self._lock:
            key = login.lower()
            if key not in self._users:
                self._users[key] = User(login=login, id=self._next_user_id, type=type_)
                self._next_user_id += 1
            return self._users[key]

    def add_repo(
        self, full_name: str, *, default_branch: str = "main", private: bool = True, owner_type: str = "User"
    ) -> Repository:
        """Create a repository (idempotent: an existing one, in any letter case, is returned)."""
        owner_login, _, name = full_name.partition("/")
        if not owner_login or not name or "/" in name:
            raise ValueError(f"repository must be 'owner/name', not {full_name!r}")
        with self._lock:
            key = full_name.lower()
            if key not in self._repos:
                self._repos[key] = Repository(
                    id=self._next_repo_id,
                    owner=self.user(owner_login, owner_type),
                    name=name,
                    created_at=self.clock.tick(),
                    default_branch=default_branch,
                    private=private,
                )
                self._next_repo_id += 1
            return self._repos[key]

    def repo(self, full_name: str) -> Repository:
        """A repository by `owner/name`, letter case ignored as GitHub does."""
        with self._lock:
            try:
                return self._repos[full_name.lower()]
            except KeyError:
                raise NotFound(full_name) from None

    def repo_by_id(self, repository_id: int) -> Repository:
        """A repository by its numeric id (the `/repositories/{id}` URLs GitHub puts in links)."""
        with self._lock:
            for repo in self._repos.values():
                if repo.id == repository_id:
                    return repo
        raise NotFound(str(repository_id))

    def set_ref(self, full_name: str, ref: str, sha: str) -> None:
        """Point a branch or tag at a commit, so deployments can be created by that ref."""
        if not _SHA.match(sha):
            raise ValueError(f"not a 40-character hex SHA: {sha!r}")
        with self._lock:
            self.repo(full_name).refs[ref] = sha

    def resolve_ref(self, repo: Repository, ref: str) -> str:
        """The commit a ref names: a full SHA names itself, branches and tags come from `refs`."""
        if _SHA.match(ref):
            return ref
        names = (ref, ref.removeprefix("refs/heads/"), ref.removeprefix("refs/tags/"))
        for candidate in (*names, f"refs/tags/{ref}", f"refs/heads/{ref}"):  # git rev-parse's order
            if candidate in repo.refs:
                return repo.refs[candidate]
        raise ValidationFailed(f"No ref found for: {ref}")

    # deployments ---------------------------------------------------------------------------------

    def create_deployment(
        self,
        repo: Repository,
        *,
        ref: str,
        creator: User,
        sha: str | None = None,
        task: str = "deploy",
        environment: str = "production",
        payload: Mapping[str, Any] | str | None = None,
        description: str | None = None,
        transient_environment: bool = False,
        production_environment: bool | None = None,
    ) -> Deployment:
        """A new deployment; `sha` defaults to what `ref` resolves to."""
        with self._lock:
            resolved = sha if sha is not None else self.resolve_ref(repo, ref)
            if not _SHA.match(resolved):
                raise ValidationFailed(f"No ref found for: {resolved}")
            now = self.clock.tick()
            deployment = Deployment(
                id=self._next_deployment_id,
                repository_id=repo.id,
                sha=resolved,
                ref=ref,
                task=task,
                payload=_stored_payload(payload),
                original_environment=environment,
                environment=environment,
                description=description,
                creator=creator,
                created_at=now,
                updated_at=now,
                transient_environment=transient_environment,
                production_environment=(
                    environment == "production" if production_environment is None else production_environment
                ),
            )
            self._next_deployment_id += 1
            self.deployments[deployment.id] = deployment
            return deployment

    def commits(self, repo: Repository) -> frozenset[str]:
        """The commits the fake knows in a repository: its deployments' shas and its refs' targets."""
        with self._lock:
            deployed = {d.sha for d in self.deployments.values() if d.repository_id == repo.id}
            return frozenset(deployed | set(repo.refs.values()))

    def delete_deployment(self, repo: Repository, deployment_id: int) -> None:
        """Delete a deployment and its statuses, under GitHub's rule.

        The REST description of "Delete a deployment": the only deployment of a repository can be
        deleted whatever its status; with more than one, only an inactive one (one whose latest
        status is not `success`), so that a repository always keeps an active deployment.
        """
        with self._lock:
            deployment = self.deployment(repo, deployment_id)
            alone = all(
                d.id == deployment.id for d in self.deployments.values() if d.repository_id == repo.id
            )
            if deployment.active and not alone:
                raise ValidationFailed(DELETE_ACTIVE)
            del self.deployments[deployment.id]
            for status in deployment.statuses:
                self.statuses.pop(status.id, None)

    def deployment(self, repo: Repository, deployment_id: int) -> Deployment:
        """One deployment of a repository."""
        with self._lock:
            deployment = self.deployments.get(deployment_id)
            if deployment is None or deployment.repository_id != repo.id:
                raise NotFound(f"deployment {deployment_id}")
            return deployment

    def list_deployments(
        self,
        repo: Repository,
        *,
        environment: str | None = None,
        sha: str | None = None,
        ref: str | None = None,
        task: str | None = None,
    ) -> list[Deployment]:
        """A repository's deployments, newest first, filtered like `GET .../deployments`."""
        with self._lock:
            found = [
                d
                for d in self.deployments.values()
                if d.repository_id == repo.id
                and (environment is None or d.environment == environment)
                and (sha is None or d.sha == sha)
                and (ref is None or d.ref == ref)
                and (task is None or d.task == task)
            ]
        return sorted(found, key=lambda d: d.id, reverse=True)

    # statuses ------------------------------------------------------------------------------------

    def create_status(
        self,
        repo: Repository,
        deployment_id: int,
        *,
        state: str,
        creator: User,
        description: str = "",
        environment: str | None = None,
        log_url: str = "",
        environment_url: str = "",
        auto_inactive: bool = True,
    ) -> DeploymentStatus:
        """A new status; a `success` also makes older deployments of the environment inactive.

        GitHub's rule (REST description of `auto_inactive`, default true): prior deployments of the
        same repository and environment get a new `inactive` status without a description. With
        `auto_inactive_scope="active"` (GitHub's documented behaviour) only those whose latest state
        is `success`; with `"all"`, every one not already inactive. Every new status, automatic ones
        included, is told to the `on_status` listeners (webhooks skip `inactive` ones).
        """
        if state not in STATUS_STATES:
            raise ValidationFailed(
                "Validation Failed",
                [{"resource": "DeploymentStatus", "code": "invalid", "field": "state"}],
            )
        if len(description) > DESCRIPTION_MAX:
            raise ValidationFailed(
                "Validation Failed",
                [
                    {
                        "resource": "DeploymentStatus",
                        "code": "custom",
                        "field": "description",
                        "message": f"description is too long (maximum is {DESCRIPTION_MAX} characters)",
                    }
                ],
            )
        with self._lock:
            deployment = self.deployment(repo, deployment_id)
            previous = deployment.latest_status
            env = environment or (previous.environment if previous else deployment.environment)
            status = self._add_status(
                deployment, state, description, env, creator, log_url, environment_url, automatic=False
            )
            deployment.environment = env
            added = [(deployment, status)]
            if state == "success" and auto_inactive:
                for older in self._auto_inactive_targets(deployment):
                    added.append(
                        (
                            older,
                            self._add_status(
                                older, "inactive", "", older.environment, creator, "", "", automatic=True
                            ),
                        )
                    )
            for changed, new in added:
                for listener in self._status_listeners:
                    listener(repo, changed, new)
            return status

    def _auto_inactive_targets(self, deployment: Deployment) -> list[Deployment]:
        targets = []
        for other in sorted(self.deployments.values(), key=lambda d: d.id):
            if other.id >= deployment.id:
                break
            if other.repository_id != deployment.repository_id or other.environment != deployment.environment:
                continue
            latest = other.latest_status
            latest_state = latest.state if latest else None
            if latest_state == "inactive":
                continue
            if self.auto_inactive_scope == "active" and latest_state != "success":
                continue
            targets.append(other)
        return targets

    def _add_status(
        self,
        deployment: Deployment,
        state: str,
        description: str,
        environment: str,
        creator: User,
        log_url: str,
        environment_url: str,
        *,
        automatic: bool,
    ) -> DeploymentStatus:
        now = self.clock.tick()
        status = DeploymentStatus(
            id=self._next_status_id,
            deployment_id=deployment.id,
            state=state,
            description=description,
            environment=environment,
            creator=creator,
            created_at=now,
            log_url=log_url,
            environment_url=environment_url,
            automatic=automatic,
        )
        self._next_status_id += 1
        deployment.statuses.append(status)
        deployment.updated_at = now
        self.statuses[status.id] = status
        return status

    def status(self, repo: Repository, deployment_id: int, status_id: int) -> DeploymentStatus:
        """One status of one deployment of a repository."""
        with self._lock:
            deployment = self.deployment(repo, deployment_id)
            status = self.statuses.get(status_id)
            if status is None or status.deployment_id != deployment.id:
                raise NotFound(f"status {status_id}")
            return status

    # GitHub Actions ------------------------------------------------------------------------------

    def _actions_id(self) -> int:
        with self._lock:
            self._next_actions_id += 1
            return self._next_actions_id - 1

    def environment(self, repo: Repository, name: str) -> actions.Environment:
        """The repository's environment of this name (any letter case), created on first use as GitHub
        creates one for a workflow job that names it."""
        with self._lock:
            key = name.casefold()
            if key not in repo.environments:
                repo.environments[key] = actions.Environment(self._actions_id(), name, self.clock.tick())
            return repo.environments[key]

    def add_protection_rule(self, repo: Repository, environment: str, app_id: int) -> None:
        """Enable a GitHub App's custom deployment protection rule on an environment."""
        with self._lock:
            self.environment(repo, environment).enable(app_id)

    def start_run(
        self,
        repo: Repository,
        *,
        environment: str,
        sha: str,
        ref: str,
        workflow: str,
        event: str,
        actor: User,
    ) -> WorkflowRun:
        """A workflow run whose job targets `environment`, and the deployment GitHub Actions creates for
        it (by `github-actions[bot]`). It waits on the environment's protection rules; with none it
        deploys at once. No `waiting` deployment status is written: the REST description's
        `deployment-status` states do not include it, so GitHub's REST API would not show one."""
        with self._lock:
            env = self.environment(repo, environment)
            deployment = self.create_deployment(
                repo, ref=ref, sha=sha, creator=self.user(actions.ACTIONS_BOT, "Bot"), environment=env.name
            )
            if workflow not in repo.workflows:
                repo.workflows[workflow] = self._actions_id()
            workflow_id = repo.workflows[workflow]
            now = self.clock.tick()
            run = WorkflowRun(
                id=self._actions_id(),
                repository_id=repo.id,
                workflow_id=workflow_id,
                workflow=workflow,
                run_number=1 + sum(r.workflow_id == workflow_id for r in self.runs.values()),
                check_suite_id=self._actions_id(),
                event=event,
                head_sha=deployment.sha,
                head_branch=ref,
                actor=actor,
                environment=env.name,
                deployment_id=deployment.id,
                rules=tuple(env.rules),
                status="waiting",
                conclusion=None,
                created_at=now,
                updated_at=now,
            )
            self.runs[run.id] = run
            if not run.rules:
                self._end_run(repo, run, "success")
            return run

    def run(self, repo: Repository, run_id: int) -> WorkflowRun:
        """One workflow run of a repository."""
        with self._lock:
            run = self.runs.get(run_id)
            if run is None or run.repository_id != repo.id:
                raise NotFound(f"workflow run {run_id}")
            return run

    def list_runs(
        self, repo: Repository, *, status: str | None = None, head_sha: str | None = None
    ) -> list[WorkflowRun]:
        """A repository's workflow runs, newest first, filtered like `GET .../actions/runs`: `status`
        matches a run's status or its conclusion (the parameter's description)."""
        with self._lock:
            found = [
                r
                for r in self.runs.values()
                if r.repository_id == repo.id
                and (status is None or status in (r.status, r.conclusion))
                and (head_sha is None or r.head_sha == head_sha)
            ]
        return sorted(found, key=lambda r: r.id, reverse=True)

    def pending_environments(self, repo: Repository, run: WorkflowRun) -> list[actions.Environment]:
        """The environments the run still waits on (its one environment, or none)."""
        with self._lock:
            return [repo.environments[run.environment.casefold()]] if run.waiting_on else []

    def review_run(
        self,
        repo: Repository,
        run_id: int,
        *,
        app_id: int | None,
        user: User,
        environment: str,
        state: actions.Decision | None,
        comment: str | None,
    ) -> None:
        """Take one review or status report for a run (`actions.review`: `actions.Refused` if GitHub
        would not); the run ends when it decides it."""
        with self._lock:
            run = self.run(repo, run_id)
            conclusion = actions.review(run, app_id, user, environment, state, comment, self.clock.tick)
            if conclusion is not None:
                self._end_run(repo, run, conclusion)

    def _end_run(self, repo: Repository, run: WorkflowRun, conclusion: actions.Conclusion) -> None:
        """The job deploys (`in_progress`, then `success`) or fails (`failure`), and the run completes."""
        bot = self.user(actions.ACTIONS_BOT, "Bot")
        for state in ("in_progress", "success") if conclusion == "success" else ("failure",):
            self.create_status(repo, run.deployment_id, state=state, creator=bot)
        run.status, run.conclusion, run.updated_at = "completed", conclusion, self.clock.tick()


@dataclass(frozen=True)
class Snapshot:
    """What the fake knew at one moment, for reads to answer from as a lagging replica would."""

    state: GitHubState
    taken_at: datetime


def _stored_payload(payload: Mapping[str, Any] | str | None) -> dict[str, Any] | str:
    """GitHub keeps a JSON object as an object; a missing or empty payload reads back as `{}`."""
    if payload is None or payload == "":
        return {}
    if isinstance(payload, str):
        try:
            decoded = json.loads(payload)
        except ValueError:
            return payload
        return decoded if isinstance(decoded, dict) else payload
    return dict(payload)
