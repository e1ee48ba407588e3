"""What the fake GitHub's tests share: names, a PyGithub client without retries, raw HTTP, GraphQL,
a GitHub App's installation token."""

from __future__ import annotations

import time
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from github import Auth, Github

from stagegate_dev.fake_github import FakeGitHub

REPO = "myorg/myapp"
STAGING = "kuberik/myapp/staging"
PRODUCTION = "kuberik/myapp/production"
TASK = "deploy:kuberik/myapp"

DEPLOYMENTS_QUERY = """
query($owner: String!, $name: String!, $envs: [String!], $first: Int!, $after: String,
      $direction: OrderDirection!) {
  repository(owner: $owner, name: $name) {
    deployments(environments: $envs, first: $first, after: $after,
                orderBy: {field: CREATED_AT, direction: $direction}) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes {
        id databaseId commitOid payload task environment createdAt state
        statuses(first: 10) { nodes { id state description createdAt } }
        latestStatus { state description createdAt }
      }
    }
  }
}
"""


def sha(n: int) -> str:
    return f"{n:040x}"


def client(fake: FakeGitHub, base_url: str | None = None, **kwargs: Any) -> Github:
    # No retries, no throttling (PyGithub waits 0.25 s between requests and 1 s between writes by
    # default), so that faults reach the test as the client sees them.
    return Github(
        auth=Auth.Token(fake.token),
        base_url=base_url or fake.url,
        retry=None,
        timeout=5,
        seconds_between_requests=None,
        seconds_between_writes=None,
        **kwargs,
    )


def http(
    fake: FakeGitHub, method: str, path: str, token: str | None = "", **kwargs: Any
) -> requests.Response:
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"token {token or fake.token}"
    return requests.request(method, fake.url + path, headers=headers, timeout=5, **kwargs)


def graphql(gh: Github, variables: dict[str, Any], query: str = DEPLOYMENTS_QUERY) -> dict[str, Any]:
    _, data = gh.requester.graphql_query(query, variables)
    return data


def post_graphql(fake: FakeGitHub, query: str, **variables: Any) -> dict[str, Any]:
    """The whole GraphQL answer (data and errors), as GitHub sends it with HTTP 200."""
    answer = http(fake, "POST", "/graphql", json={"query": query, "variables": variables})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def deploy(fake: FakeGitHub, n: int, environment: str = STAGING, state: str | None = None) -> dict[str, Any]:
    deployment = fake.create_deployment(
        REPO,
        sha=sha(n),
        ref=sha(n),
        environment=environment,
        task=TASK,
        payload={"id": f"d{n}", "version": {"tag": f"v{n}", "revision": sha(n)}},
    )
    if state:
        fake.create_status(REPO, deployment["id"], state, f"status of {n}")
    return deployment


def installed_app(fake: FakeGitHub, app_id: int, installation_id: int, repos: list[str] | None) -> str:
    """Register a GitHub App with one installation, then trade the App's JWT for an installation
    access token over HTTP, as an App does; returns the token."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fake.add_app(app_id, pem, installation_id, repos, slug=f"app-{app_id}")
    now = int(time.time())
    signed = jwt.encode({"iat": now - 60, "exp": now + 300, "iss": str(app_id)}, key, algorithm="RS256")
    answer = requests.post(
        f"{fake.url}/app/installations/{installation_id}/access_tokens",
        headers={"Authorization": f"Bearer {signed}", "Accept": "application/vnd.github+json"},
        timeout=5,
    )
    assert answer.status_code == 201, answer.text
    token: str = answer.json()["token"]
    return token
