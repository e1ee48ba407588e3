"""GitHub's GraphQL API over the fake's state, executed by graphql-core against GitHub's real schema.

Queries are parsed and validated against the published schema, so a query that GitHub would reject
is rejected here too, and answers are typed by the same schema, so they conform by construction.
The fake adds GitHub's own rules that the schema cannot express: every connection needs `first` or
`last` (at most 100), cursors are opaque, a missing repository is a `NOT_FOUND` error beside
`"repository": null`. A field the fake does not implement is an error naming the field, never a
silent null. Only queries are served; mutations are refused.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import graphql
from graphql.language import OperationType

from stagegate.fake_github import rest
from stagegate.fake_github.state import (
    Deployment,
    DeploymentStatus,
    GitHubState,
    NotFound,
    Repository,
    User,
    node_id,
    timestamp,
)

MAX_PAGE = 100
T = TypeVar("T")

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


class GitHubGraphQLError(Exception):
    """An error GitHub reports with a `type` (`NOT_FOUND`, `EXCESSIVE_PAGINATION`, ...)."""

    def __init__(self, type_: str, message: str) -> None:
        super().__init__(message)
        self.type = type_


class NotImplementedInFake(Exception):
    """The query asked for a field the fake has no resolver for."""


_MISSING = object()


def resolve_field(source: Any, info: graphql.GraphQLResolveInfo, **args: Any) -> Any:
    """Read the field from a view (attribute or key); call it with the arguments if it is a method."""
    name = info.field_name
    if isinstance(source, dict):
        if name not in source:
            raise NotImplementedInFake(f"the fake GitHub does not implement {info.parent_type.name}.{name}")
        value = source[name]
    else:
        value = getattr(source, name, _MISSING)
        if value is _MISSING:
            raise NotImplementedInFake(f"the fake GitHub does not implement {info.parent_type.name}.{name}")
    return value(info, **args) if callable(value) else value


def cursor(database_id: int) -> str:
    """An opaque cursor that names an item (so it survives items added before it)."""
    return base64.b64encode(f"cursor:v2:{database_id}".encode()).decode()


def _cursor_id(value: str) -> int:
    try:
        kind, _, number = base64.b64decode(value, validate=True).decode().rpartition(":")
        if kind != "cursor:v2":
            raise ValueError(value)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise GitHubGraphQLError(
            "INVALID_CURSOR_ARGUMENTS", f"`{value}` does not appear to be a valid cursor."
        ) from None


def connection(
    items: Sequence[T],
    *,
    key: Callable[[T], int],
    name: str,
    wrap: Callable[[T], Any],
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> dict[str, Any]:
    """A Relay connection over `items` (already in the requested order) with GitHub's limits."""
    if first is None and last is None:
        raise GitHubGraphQLError(
            "MISSING_PAGINATION_BOUNDARIES",
            f"You must provide a `first` or `last` value to properly paginate the `{name}` connection.",
        )
    for arg, value in (("first", first), ("last", last)):
        if value is not None and value > MAX_PAGE:
            raise GitHubGraphQLError(
                "EXCESSIVE_PAGINATION",
                f"Requesting {value} records on the `{name}` connection exceeds the `{arg}` limit of "
                f"{MAX_PAGE} records.",
            )
        if value is not None and value < 0:
            raise GitHubGraphQLError(
                "INVALID_PAGINATION", f"`{arg}` on the `{name}` connection cannot be negative."
            )
    positions = {key(item): index for index, item in enumerate(items)}
    start, stop = 0, len(items)
    if after is not None:
        start = _position_after(items, key, positions, _cursor_id(after))
    if before is not None:
        stop = min(stop, _position_before(items, key, positions, _cursor_id(before)))
    stop = max(start, stop)
    if first is not None:
        stop = min(stop, start + first)
    if last is not None:
        start = max(start, stop - last)
    page = items[start:stop]
    edges = [{"cursor": cursor(key(item)), "node": wrap(item)} for item in page]
    return {
        "totalCount": len(items),
        "nodes": [edge["node"] for edge in edges],
        "edges": edges,
        "pageInfo": {
            "hasNextPage": stop < len(items),
            "hasPreviousPage": start > 0,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


def _position_after(
    items: Sequence[T], key: Callable[[T], int], positions: dict[int, int], ident: int
) -> int:
    if ident in positions:
        return positions[ident] + 1
    # The named item is gone from this view: continue after where it would sort.
    descending = len(items) > 1 and key(items[0]) > key(items[-1])
    for index, item in enumerate(items):
        if (key(item) < ident) if descending else (key(item) > ident):
            return index
    return len(items)


def _position_before(
    items: Sequence[T], key: Callable[[T], int], positions: dict[int, int], ident: int
) -> int:
    if ident in positions:
        return positions[ident]
    return _position_after(items, key, positions, ident)


class Actor:
    """A `User` (or `Bot`) as an `Actor`."""

    def __init__(self, user: User, api: str) -> None:
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


class DeploymentStatusView:
    """A `DeploymentStatus`."""

    def __init__(self, status: DeploymentStatus, parent: DeploymentView) -> None:
        self.id = node_id("DeploymentStatus", status.id)
        self.state = status.state.upper()
        self.description = status.description
        self.environment = status.environment
        self.environmentUrl = status.environment_url or None
        self.logUrl = status.log_url or None
        self.createdAt = timestamp(status.created_at)
        self.updatedAt = timestamp(status.created_at)
        self.creator = Actor(status.creator, parent.api)
        self.deployment = parent


class DeploymentView:
    """A `Deployment`."""

    def __init__(self, deployment: Deployment, repository: RepositoryView, state: GitHubState) -> None:
        self._deployment = deployment
        self._state = state
        self.api = repository.api
        latest = deployment.latest_status
        self.id = node_id("Deployment", deployment.id)
        self.databaseId = deployment.id
        self.commitOid = deployment.sha
        self.createdAt = timestamp(deployment.created_at)
        self.updatedAt = timestamp(deployment.updated_at)
        self.creator = Actor(deployment.creator, self.api)
        self.description = deployment.description
        self.environment = deployment.environment
        self.latestEnvironment = deployment.environment
        self.originalEnvironment = deployment.original_environment
        self.payload = rest.graphql_payload(deployment)
        self.task = deployment.task
        self.repository = repository
        self.state = _deployment_state(deployment)
        self.latestStatus = DeploymentStatusView(latest, self) if latest else None

    def statuses(
        self,
        info: graphql.GraphQLResolveInfo,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> dict[str, Any]:
        with self._state.locked():
            statuses = self._deployment.newest_statuses()
        return connection(
            statuses,
            key=lambda s: s.id,
            name="statuses",
            wrap=lambda s: DeploymentStatusView(s, self),
            first=first,
            after=after,
            last=last,
            before=before,
        )


def _deployment_state(deployment: Deployment) -> str:
    latest = deployment.latest_status
    if latest is None:
        return "PENDING"
    if latest.state == "inactive" and deployment.transient_environment:
        return "DESTROYED"
    return _STATE_OF_STATUS[latest.state]


class RepositoryView:
    """A `Repository` (the fields stagegate reads, and its deployments)."""

    def __init__(self, repo: Repository, state: GitHubState, api: str) -> None:
        self._repo = repo
        self._state = state
        self.api = api
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
        with self._state.locked():
            found = self._state.list_deployments(self._repo)  # newest first
            if environments is not None:
                found = [d for d in found if d.environment in environments]
            if (orderBy or {}).get("direction", "ASC") == "ASC":
                found.reverse()
            return connection(
                found,
                key=lambda d: d.id,
                name="deployments",
                wrap=lambda d: DeploymentView(d, self, self._state),
                first=first,
                after=after,
                last=last,
                before=before,
            )


class QueryRoot:
    """The `Query` type: `repository`, `viewer`, `rateLimit`."""

    def __init__(
        self,
        state: GitHubState,
        api: str,
        viewer: User,
        rate_limit: dict[str, int],
        repos: frozenset[str] | None = None,
    ) -> None:
        self._state = state
        self._repos = repos  # an installation token's repositories (lower case); None: all
        self._api = api
        self.viewer = Actor(viewer, api)
        self._rate_limit = rate_limit

    def repository(
        self,
        info: graphql.GraphQLResolveInfo,
        owner: str,
        name: str,
        followRenames: bool | None = None,
    ) -> RepositoryView:
        try:
            repo = self._state.repo(f"{owner}/{name}")
            if self._repos is not None and repo.full_name.lower() not in self._repos:
                raise NotFound(repo.full_name)
        except NotFound:
            raise GitHubGraphQLError(
                "NOT_FOUND", f"Could not resolve to a Repository with the name '{owner}/{name}'."
            ) from None
        return RepositoryView(repo, self._state, self._api)

    def rateLimit(self, info: graphql.GraphQLResolveInfo, dryRun: bool = False) -> dict[str, Any]:
        return {
            "cost": 1,
            "limit": self._rate_limit["limit"],
            "nodeCount": 0,
            "remaining": self._rate_limit["remaining"],
            "used": self._rate_limit["used"],
            "resetAt": timestamp(datetime.fromtimestamp(self._rate_limit["reset"], UTC)),
        }


def _formatted(error: graphql.GraphQLError) -> dict[str, Any]:
    out: dict[str, Any] = {}
    original = error.original_error
    if isinstance(original, GitHubGraphQLError):
        out["type"] = original.type
    out.update(error.formatted)
    return out


def execute(schema: graphql.GraphQLSchema, root: QueryRoot, body: Any) -> dict[str, Any]:
    """The JSON answer to one GraphQL request body, as GitHub shapes it (always HTTP 200)."""
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return {"errors": [{"message": "A query attribute must be specified and must be a string."}]}
    variables = body.get("variables") or {}
    if not isinstance(variables, dict):
        return {"errors": [{"message": "Variables are invalid JSON."}]}
    try:
        document = graphql.parse(body["query"])
    except graphql.GraphQLError as exc:
        return {"errors": [_formatted(exc)]}
    problems = graphql.validate(schema, document)
    if problems:
        return {"errors": [_formatted(p) for p in problems]}
    operation_name = body.get("operationName")
    operation = graphql.get_operation_ast(document, operation_name)
    if operation is not None and operation.operation != OperationType.QUERY:
        message = f"the fake GitHub serves queries only, not a {operation.operation.value}"
        return {"errors": [{"message": message}]}
    result = graphql.execute(
        schema,
        document,
        root_value=root,
        variable_values=variables,
        operation_name=operation_name,
        field_resolver=resolve_field,
    )
    if not isinstance(result, graphql.ExecutionResult):  # pragma: no cover  (no async resolvers here)
        raise TypeError("asynchronous GraphQL execution is not supported")
    answer: dict[str, Any] = {"data": result.data}
    if result.errors:
        answer["errors"] = [_formatted(e) for e in result.errors]
    return answer
