"""GitHub's GraphQL API over the fake's state, executed by graphql-core against GitHub's real schema.

Queries are parsed and validated against the published schema, so a query that GitHub would reject
is rejected here too, and answers are typed by the same schema, so they conform by construction.
The fake adds GitHub's own rules that the schema cannot express: connections page and order as
`connections.py` says, cursors are opaque, a missing repository or node is a `NOT_FOUND` error beside
a null. A field the fake does not implement is an error naming the field, never a silent null. Only
queries are served; mutations are refused. The objects themselves are in `graphql_views.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import graphql
from graphql.language import OperationType

from stagegate_dev.fake_github.connections import MAX_PAGE, GitHubGraphQLError
from stagegate_dev.fake_github.graphql_views import (
    Actor,
    CommitView,
    DeploymentStatusView,
    DeploymentView,
    RepositoryView,
    Source,
)
from stagegate_dev.fake_github.state import NotFound, Repository, User, parse_node_id, timestamp

__all__ = ["MAX_PAGE", "GitHubGraphQLError", "NotImplementedInFake", "QueryRoot", "Source", "execute"]


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


class QueryRoot:
    """The `Query` type: `repository`, `node`, `viewer`, `rateLimit`."""

    def __init__(
        self,
        source: Source,
        viewer: User,
        rate_limit: dict[str, int],
        repos: frozenset[str] | None = None,
    ) -> None:
        self._source = source
        self._repos = repos  # an installation token's repositories (lower case); None: all
        self.viewer = Actor(viewer)
        self._rate_limit = rate_limit
        self._nodes: dict[str, Callable[[str], object | None]] = {
            "Repository": self._repository_node,
            "Deployment": self._deployment_node,
            "DeploymentStatus": self._status_node,
            "Commit": self._commit_node,
        }

    def repository(
        self,
        info: graphql.GraphQLResolveInfo,
        owner: str,
        name: str,
        followRenames: bool | None = None,
    ) -> RepositoryView:
        try:
            repo = self._source.state.repo(f"{owner}/{name}")
        except NotFound:
            repo = None
        if repo is None or not self._may_read(repo):
            raise GitHubGraphQLError(
                "NOT_FOUND", f"Could not resolve to a Repository with the name '{owner}/{name}'."
            )
        return RepositoryView(repo, self._source)

    def node(self, info: graphql.GraphQLResolveInfo, id: str) -> object:
        """The object a global node id names; `NOT_FOUND` beside a null when there is none to see."""
        parsed = parse_node_id(id)
        found = None
        if parsed is not None:
            type_name, ident = parsed
            lookup = self._nodes.get(type_name)
            if lookup is None and isinstance(info.schema.get_type(type_name), graphql.GraphQLObjectType):
                message = f"the fake GitHub does not implement node(id:) for {type_name} ids"
                raise NotImplementedInFake(message)
            found = lookup(ident) if lookup is not None else None
        if found is None:
            raise GitHubGraphQLError("NOT_FOUND", f"Could not resolve to a node with the global id of '{id}'")
        return found

    def rateLimit(self, info: graphql.GraphQLResolveInfo, dryRun: bool = False) -> dict[str, Any]:
        return {
            "cost": 1,
            "limit": self._rate_limit["limit"],
            "nodeCount": 0,
            "remaining": self._rate_limit["remaining"],
            "used": self._rate_limit["used"],
            "resetAt": timestamp(datetime.fromtimestamp(self._rate_limit["reset"], UTC)),
        }

    # node lookups: the id part of a legacy node id -> a view, or None ---------------------------

    def _may_read(self, repo: Repository) -> bool:
        """Whether this token may read the repository (an installation token sees only its own)."""
        return self._repos is None or repo.full_name.lower() in self._repos

    def _repo(self, ident: str | int) -> Repository | None:
        """A repository by database id, unless there is none or this token may not read it."""
        if isinstance(ident, str) and not ident.isdigit():
            return None
        try:
            repo = self._source.state.repo_by_id(int(ident))
        except NotFound:
            return None
        return repo if self._may_read(repo) else None

    def _repository_node(self, ident: str) -> RepositoryView | None:
        repo = self._repo(ident)
        return RepositoryView(repo, self._source) if repo else None

    def _deployment_node(self, ident: str) -> DeploymentView | None:
        deployment = self._source.state.deployments.get(int(ident)) if ident.isdigit() else None
        repo = self._repo(deployment.repository_id) if deployment else None
        if deployment is None or repo is None:
            return None
        return DeploymentView(deployment, RepositoryView(repo, self._source))

    def _status_node(self, ident: str) -> DeploymentStatusView | None:
        state = self._source.state
        with state.locked():
            status = state.statuses.get(int(ident)) if ident.isdigit() else None
            deployment = state.deployments.get(status.deployment_id) if status else None
        repo = self._repo(deployment.repository_id) if deployment else None
        if status is None or deployment is None or repo is None:
            return None
        return DeploymentStatusView(status, DeploymentView(deployment, RepositoryView(repo, self._source)))

    def _commit_node(self, ident: str) -> CommitView | None:
        repo_id, _, sha = ident.partition(":")
        repo = self._repo(repo_id)
        if repo is None or sha not in self._source.state.commits(repo):
            return None
        return CommitView(sha, RepositoryView(repo, self._source))


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
