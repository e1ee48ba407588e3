"""The GitHub adapter: an upstream environment's deployments and statuses, through PyGithub.

One GraphQL query per page of 100 deployments, newest first, statuses nested, so the calls per
recompute grow with paging, not with the number of deployments; paging stops as soon as every
revision the Rollout offers has a bake result (older deployments cannot change a decided one).
PyGithub's own sleeping (retries, write throttling) is switched off: a webhook answer must stay
bounded, and a missed recompute is healed by the next trigger. Vendor errors become stagegate's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

import requests
from github import Auth, Github, GithubException

from shared.bake import DeploymentRecord, StatusRecord, bake_result
from shared.errors import PermanentError, RetryableError
from stagegate.settings import GitHubApp

PAGE_SIZE = 100
STATUSES_PER_DEPLOYMENT = 20
DEPLOYMENTS_QUERY = """
query($owner: String!, $name: String!, $environment: String!, $after: String, $first: Int!, $statuses: Int!) {
  repository(owner: $owner, name: $name) {
    deployments(environments: [$environment], first: $first, after: $after,
                orderBy: {field: CREATED_AT, direction: DESC}) {
      pageInfo { hasNextPage endCursor }
      nodes {
        databaseId
        commitOid
        payload
        createdAt
        statuses(first: $statuses) { nodes { state description createdAt } }
      }
    }
  }
}
"""


def github_client(credentials: str | GitHubApp, base_url: str, timeout: float) -> Github:
    """A PyGithub client that never sleeps on its own (no retries, no throttling).

    `credentials` is a token or a GitHub App installation: PyGithub then signs a JWT with the App's
    key, trades it for an installation token at `base_url` and renews that token before it expires.
    """
    auth: Auth.Auth
    if isinstance(credentials, GitHubApp):
        app = Auth.AppAuth(credentials.app_id, credentials.private_key)
        auth = app.get_installation_auth(credentials.installation_id)
    else:
        auth = Auth.Token(credentials)
    return Github(
        auth=auth,
        base_url=base_url,
        timeout=max(1, round(timeout)),
        retry=None,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )


def _translate(exc: Exception, what: str) -> Exception:
    if isinstance(exc, GithubException):
        status = exc.status
        if status in (401, 404) or (status == 403 and not _rate_limited(exc)):
            return PermanentError(f"{what}: GitHub answered {status}: {_message(exc)}")
        return RetryableError(f"{what}: GitHub answered {status}: {_message(exc)}")
    return RetryableError(f"{what}: {type(exc).__name__}: {exc}")


def _rate_limited(exc: GithubException) -> bool:
    headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
    return "retry-after" in headers or headers.get("x-ratelimit-remaining") == "0"


def _message(exc: GithubException) -> str:
    data = exc.data if isinstance(exc.data, Mapping) else {}
    return str(data.get("message") or data.get("errors") or "")


def _payload(raw: object) -> Mapping[str, Any] | None:
    if isinstance(raw, Mapping):
        return raw
    if isinstance(raw, str) and raw:
        try:
            decoded = json.loads(raw)
        except ValueError:
            return None
        return decoded if isinstance(decoded, Mapping) else None
    return None


def _record(node: Mapping[str, Any]) -> DeploymentRecord:
    statuses = tuple(
        StatusRecord(state=s["state"].lower(), description=s.get("description"), created_at=s["createdAt"])
        for s in node["statuses"]["nodes"]
    )
    return DeploymentRecord(
        id=node.get("databaseId") or 0,
        sha=node["commitOid"],
        payload=_payload(node.get("payload")),
        created_at=node["createdAt"],
        statuses=statuses,
    )


class GitHubDeployments:
    """Reads deployments of one GitHub environment; counts the HTTP calls it makes."""

    def __init__(self, github: Github) -> None:
        self.github = github
        self._lock = threading.Lock()
        self.calls = 0

    def _query(self, variables: dict[str, Any], what: str) -> Mapping[str, Any]:
        with self._lock:
            self.calls += 1
        try:
            _, data = self.github.requester.graphql_query(DEPLOYMENTS_QUERY, variables)
        except (GithubException, requests.RequestException, OSError) as exc:
            raise _translate(exc, what) from exc
        return data

    def deployments(
        self, repository: str, environment: str, revisions: frozenset[str]
    ) -> list[DeploymentRecord]:
        """Newest-first deployments of `environment`, paging until `revisions` are all decided."""
        if not revisions:
            return []  # nothing to match: the allowed set is empty whatever GitHub says
        owner, _, name = repository.partition("/")
        what = f"deployments of {repository} in {environment}"
        records: list[DeploymentRecord] = []
        undecided = set(revisions)
        after: str | None = None
        while True:
            variables = {
                "owner": owner, "name": name, "environment": environment, "after": after,
                "first": PAGE_SIZE, "statuses": STATUSES_PER_DEPLOYMENT,
            }  # fmt: skip
            data = self._query(variables, what)
            repo = (data.get("data") or {}).get("repository")
            if repo is None:
                raise PermanentError(f"{what}: repository not found or not visible to the token")
            page = repo["deployments"]
            for node in page["nodes"]:
                record = _record(node)
                records.append(record)
                if bake_result(record) is not None:
                    undecided.discard(record.revision)
            if not page["pageInfo"]["hasNextPage"] or not undecided:
                return records
            after = page["pageInfo"]["endCursor"]
