"""The GraphQL objects the fake serves: read-only views of its state, one class per GitHub type.

graphql-core resolves a field by reading the view's attribute of the same name
(`graphql_api.resolve_field`); an attribute that is a method is called with the field's arguments.
A field with no attribute is an error naming it, never a silent null, so the fake cannot answer a
query it does not understand. Views that can stand for an interface (`Node`, `GitObject`, `Actor`)
carry a `__typename`, which graphql-core reads to pick the concrete type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import graphql

from stagegate_dev.fake_github import rest, revparse
from stagegate_dev.fake_github.connections import Listing, Order, Position, connection
from stagegate_dev.fake_github.state import (
    Deployment,
    DeploymentStatus,
    GitHubState,
    Repository,
    User,
    commit_node_id,
    node_id,
    timestamp,
)

_STATE_OF_STATUS = {
    "error": "ERROR",
    "failure": "FAILURE",
    "inactive": "INACTIVE",
    "in_progress": "IN_PROGRESS",
    "pending": "PENDING",
    "queued": "QUEUED",
    "success": "ACTIVE",
    "waiting": "WAITING",
}


@dataclass(frozen=True)
class Source:
    """What one GraphQL request reads: a state (live, or a stale snapshot), and how to list it."""

    state: GitHubState
    api: str
    listing: Listing = "github"
    seed: int = 0

    def order(self, *, newest_first: bool) -> Order:
        """A connection's order: GitHub's (`newest_first`) unless the fake's listing overrides it."""
        return Order(newest_first=newest_first, listing=self.listing, seed=self.seed)


def position(item: Deployment | DeploymentStatus) -> Position:
    """Where a deployment or status sorts: creation second, then database id."""
    return Position(int(item.created_at.timestamp()), item.id)


class Actor:
    """A `User` (or `Bot`) as an `Actor`."""

    def __init__(self, user: User) -> None:
        # graphql-core reads the (name-mangled) `__typename` to pick the concrete type of `Actor`.
        self.__typename = user.type
        self.id = user.node_id
        self.databaseId = user.id
        self.login = user.login
        self.url = f"{rest.HTML_BASE}/{user.login}"
        self.resourcePath = f"/{user.login}"

    def avatarUrl(self, info: graphql.GraphQLResolveInfo, size: int | None = None) -> str:
        suffix = f"&s={size}" if size else ""
        return f"https://avatars.githubusercontent.com/u/{self.databaseId}?v=4{suffix}"


class RepositoryView:
    """A `Repository`: the fields stagegate reads, its deployments, and the commits the fake knows."""

    def __init__(self, repo: Repository, source: Source) -> None:
        self.__typename = "Repository"
        self._repo = repo
        self._source = source
        self.id = node_id("Repository", repo.id)
        self.databaseId = repo.id
        self.name = repo.name
        self.nameWithOwner = repo.full_name
        self.isPrivate = repo.private
        self.url = f"{rest.HTML_BASE}/{repo.full_name}"
        self.createdAt = timestamp(repo.created_at)

    def deployments(
        self,
        info: graphql.GraphQLResolveInfo,
        environments: list[str] | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        orderBy: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        found = self._source.state.list_deployments(self._repo)
        return deployments_connection(self, found, environments, orderBy, first, after, last, before)

    def object(
        self, info: graphql.GraphQLResolveInfo, expression: str | None = None, oid: str | None = None
    ) -> CommitView | None:
        """The commit `oid` (a full sha) or `expression` (rev-parse) names; null when none does."""
        state = self._source.state
        with state.locked():
            commits = state.commits(self._repo)
            refs = dict(self._repo.refs)
        if oid is not None:
            sha = revparse.full_sha(oid, commits)
        elif expression is not None:
            sha = revparse.rev_parse(
                expression, refs=refs, commits=commits, default_branch=self._repo.default_branch
            )
        else:
            sha = None
        return CommitView(sha, self) if sha else None


def deployments_connection(
    repository: RepositoryView,
    deployments: Sequence[Deployment],
    environments: list[str] | None,
    order_by: dict[str, str] | None,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> dict[str, Any]:
    """`Repository.deployments` and `Commit.deployments`: by CREATED_AT, ASC unless `orderBy` says DESC.

    Without `orderBy` the schema's default (`{field: CREATED_AT, direction: ASC}`) arrives here.
    """
    if environments is not None:
        deployments = [d for d in deployments if d.environment in environments]
    newest_first = (order_by or {}).get("direction", "ASC") == "DESC"
    return connection(
        deployments,
        position=position,
        order=repository._source.order(newest_first=newest_first),
        name="deployments",
        wrap=lambda d: DeploymentView(d, repository),
        first=first,
        after=after,
        last=last,
        before=before,
    )


class CommitView:
    """A `Commit` the fake knows: its names, its URLs and its deployments."""

    def __init__(self, sha: str, repository: RepositoryView) -> None:
        self.__typename = "Commit"
        self._source = repository._source
        self._repo = repository._repo
        path = f"/{repository.nameWithOwner}/commit/{sha}"
        self.id = commit_node_id(repository.databaseId, sha)
        self.oid = sha
        self.abbreviatedOid = sha[:7]
        self.commitResourcePath = self.resourcePath = path
        self.commitUrl = self.url = f"{rest.HTML_BASE}{path}"
        self.repository = repository

    def deployments(
        self,
        info: graphql.GraphQLResolveInfo,
        environments: list[str] | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        orderBy: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        found = self._source.state.list_deployments(self._repo, sha=self.oid)
        return deployments_connection(
            self.repository, found, environments, orderBy, first, after, last, before
        )


class DeploymentView:
    """A `Deployment`."""

    def __init__(self, deployment: Deployment, repository: RepositoryView) -> None:
        self.__typename = "Deployment"
        self._deployment = deployment
        self._source = repository._source
        latest = deployment.latest_status
        self.id = node_id("Deployment", deployment.id)
        self.databaseId = deployment.id
        self.commitOid = deployment.sha
        self.createdAt = timestamp(deployment.created_at)
        self.updatedAt = timestamp(deployment.updated_at)
        self.creator = Actor(deployment.creator)
        self.description = deployment.description
        self.environment = deployment.environment
        self.latestEnvironment = deployment.environment
        self.originalEnvironment = deployment.original_environment
        self.payload = rest.graphql_payload(deployment)
        self.task = deployment.task
        self.repository = repository
        self.state = _deployment_state(deployment)
        self.latestStatus = DeploymentStatusView(latest, self) if latest else None

    def commit(self, info: graphql.GraphQLResolveInfo) -> CommitView:
        return CommitView(self._deployment.sha, self.repository)

    def statuses(
        self,
        info: graphql.GraphQLResolveInfo,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> dict[str, Any]:
        """Oldest first (no `orderBy` in the schema): the newest status is `statuses(last: 1)`."""
        with self._source.state.locked():
            statuses = list(self._deployment.statuses)
        return connection(
            statuses,
            position=position,
            order=self._source.order(newest_first=False),
            name="statuses",
            wrap=lambda s: DeploymentStatusView(s, self),
            first=first,
            after=after,
            last=last,
            before=before,
        )


class DeploymentStatusView:
    """A `DeploymentStatus`."""

    def __init__(self, status: DeploymentStatus, parent: DeploymentView) -> None:
        self.__typename = "DeploymentStatus"
        self.id = node_id("DeploymentStatus", status.id)
        self.state = status.state.upper()
        self.description = status.description
        self.environment = status.environment
        self.environmentUrl = status.environment_url or None
        self.logUrl = status.log_url or None
        self.createdAt = timestamp(status.created_at)
        self.updatedAt = timestamp(status.created_at)
        self.creator = Actor(status.creator)
        self.deployment = parent


def _deployment_state(deployment: Deployment) -> str:
    latest = deployment.latest_status
    if latest is None:
        return "PENDING"
    if latest.state == "inactive" and deployment.transient_environment:
        return "DESTROYED"
    return _STATE_OF_STATUS[latest.state]
