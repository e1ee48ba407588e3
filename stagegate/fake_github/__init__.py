"""A stateful stand-in for the parts of GitHub stagegate uses, speaking real HTTP on loopback.

Why: stagegate's GitHub adapter must be tested against something that behaves like GitHub (pages,
ETags, rate limits, automatic `inactive` statuses, GraphQL's rules) without GitHub. Why it can be
trusted: nothing here restates GitHub's shapes; REST answers and webhook deliveries are checked
against GitHub's published OpenAPI/JSON-schema descriptions, and GraphQL runs on graphql-core against
GitHub's real schema (see `contracts.py`). A mismatch fails loudly and is listed in `schema_errors`.

    with FakeGitHub(repos=["myorg/myapp"]) as fake:
        gh = Github(auth=Auth.Token(fake.token), base_url=fake.url)
        ...

The server listens on 127.0.0.1 only. This package needs the `dev` extra (graphql-core, jsonschema)
and the octokit npm packages (`scripts/octokit-assets.sh`); the functions never import it.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from werkzeug.serving import BaseWSGIServer, make_server

from stagegate.fake_github import apps, rest, webhooks
from stagegate.fake_github.contracts import (
    AssetsUnavailable,
    Contracts,
    ContractViolation,
    load_contracts,
    octokit_assets,
)
from stagegate.fake_github.faults import Api, Fault, Faults
from stagegate.fake_github.server import App, Quiet
from stagegate.fake_github.state import (
    AutoInactiveScope,
    Clock,
    GitHubState,
    NotFound,
    User,
    ValidationFailed,
)
from stagegate.fake_github.webhooks import NoDelivery, signature_256

__all__ = [
    "AssetsUnavailable",
    "ContractViolation",
    "FakeGitHub",
    "NoDelivery",
    "NotFound",
    "ValidationFailed",
    "signature_256",
]

RATE_LIMIT = 5000


class FakeGitHub:
    """GitHub's deployments REST API, its GraphQL API and `deployment_status` webhooks, faked."""

    def __init__(
        self,
        *,
        token: str | None = None,
        login: str = "stagegate-bot",
        repos: Iterable[str] = (),
        assets: Path | None = None,
        hook_id: int = 480_000_001,
        auto_inactive_scope: AutoInactiveScope = "active",
        start_time: datetime | None = None,
    ) -> None:
        self.contracts: Contracts = load_contracts(assets or octokit_assets())
        self.state = GitHubState(clock=Clock(start_time), auto_inactive_scope=auto_inactive_scope)
        self.token = token or f"ghp_{secrets.token_urlsafe(27)}"
        self.user = self.state.user(login)
        self._tokens: dict[str, User] = {self.token: self.user}
        self._apps: dict[int, apps.GitHubAppRecord] = {}
        self._installations: dict[int, apps.Installation] = {}
        self._issued: dict[str, apps.IssuedToken] = {}
        self.hook_id = hook_id
        self.faults = Faults()
        self.calls: list[tuple[str, str]] = []
        self.schema_errors: list[str] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._limits = {
            name: {"limit": limit, "used": 0, "remaining": limit, "reset": int(time.time()) + 3600}
            for name, limit in (("core", RATE_LIMIT), ("graphql", RATE_LIMIT), ("search", 30))
        }
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        for name in repos:
            self.add_repo(name)

    # lifecycle -----------------------------------------------------------------------------------

    def start(self) -> FakeGitHub:
        """Listen on a free loopback port; `url` is the REST base URL (GraphQL at `url + "/graphql"`)."""
        if self._server is not None:
            return self
        # Parse and compile once here, not in the first request's thread.
        _ = self.contracts.rest, self.contracts.webhooks, self.contracts.graphql_schema
        self._closing.clear()
        server = make_server("127.0.0.1", 0, App(self), threaded=True, request_handler=Quiet)
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_port}"
        # A short poll interval keeps close() (which waits for the loop to notice) fast.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-github", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; requests still hanging on a `hang_next` fault are released."""
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def graphql_url(self) -> str:
        """Where GraphQL is served (PyGithub derives `<base_url>/graphql` itself)."""
        return f"{self.url}/graphql"

    # accounts and repositories -------------------------------------------------------------------

    def add_token(self, token: str, login: str) -> User:
        """Accept another token, acting as another account."""
        user = self.state.user(login)
        self._tokens[token] = user
        return user

    def user_for_token(self, token: str) -> User | None:
        """The account a token authenticates, if any (constant-time comparison)."""
        for known, user in self._tokens.items():
            if secrets.compare_digest(known.encode(), token.encode()):
                return user
        issued = self._installation_token(token)
        return issued.user if issued is not None else None

    def token_repos(self, token: str) -> frozenset[str] | None:
        """The repositories (lower-case full names) a token may read; None: every repository."""
        issued = self._installation_token(token)
        return issued.repos if issued is not None else None

    def _installation_token(self, token: str) -> apps.IssuedToken | None:
        with self._lock:
            candidates = list(self._issued.items())
        for known, issued in candidates:
            if secrets.compare_digest(known.encode(), token.encode()):
                return issued if issued.expires_at > time.time() else None
        return None

    # GitHub Apps ---------------------------------------------------------------------------------

    def add_app(
        self,
        app_id: int,
        public_key_pem: str | bytes,
        installation_id: int,
        repos: Iterable[str] | None = None,
        *,
        slug: str = "stagegate",
        permissions: Mapping[str, str] | None = None,
    ) -> apps.Installation:
        """Register a GitHub App (its RSA public key) and one installation of it.

        `repos` are the repositories the installation may read (None: all of them). Its access
        tokens act as the App's bot account `<slug>[bot]`. Call again to add more installations.
        """
        record = apps.GitHubAppRecord(
            app_id=app_id,
            public_key=apps.load_public_key(public_key_pem),
            bot=self.state.user(f"{slug}[bot]", "Bot"),
        )
        installation = apps.Installation(
            id=installation_id,
            app_id=app_id,
            repos=None if repos is None else frozenset(r.lower() for r in repos),
            permissions=dict(permissions or apps.DEFAULT_PERMISSIONS),
        )
        with self._lock:
            self._apps[app_id] = record
            self._installations[installation_id] = installation
        return installation

    def authenticate_app(self, jwt_token: str) -> apps.GitHubAppRecord:
        """The App whose JWT this is; `apps.JwtRejected` carries GitHub's 401 message."""
        with self._lock:
            known = dict(self._apps)
        return apps.verify_app_jwt(jwt_token, known)

    def installation(self, installation_id: int) -> apps.Installation | None:
        """A registered installation, if any."""
        with self._lock:
            return self._installations.get(installation_id)

    def issue_installation_token(self, installation: apps.Installation) -> tuple[str, float]:
        """A new access token of `installation` and when it expires (one hour from now)."""
        token, expires_at = apps.new_token(), time.time() + apps.TOKEN_SECONDS
        with self._lock:
            bot = self._apps[installation.app_id].bot
            self._issued[token] = apps.IssuedToken(bot, expires_at, installation.repos)
        return token, expires_at

    def add_repo(
        self, full_name: str, *, default_branch: str = "main", private: bool = True
    ) -> dict[str, Any]:
        """Create a repository; returns its REST representation."""
        owner = full_name.partition("/")[0]
        owner_type = "User" if owner.lower() == self.user.login.lower() else "Organization"
        repo = self.state.add_repo(
            full_name, default_branch=default_branch, private=private, owner_type=owner_type
        )
        return self._checked("GET", "/repos/{owner}/{repo}", 200, rest.full_repository_json(repo, self.url))

    def set_ref(self, repo: str, ref: str, sha: str) -> None:
        """Point a branch or tag at a commit (REST `POST .../deployments` resolves `ref` with it)."""
        self.state.set_ref(repo, ref, sha)

    # deployments (Python API, no HTTP) -----------------------------------------------------------

    def create_deployment(
        self,
        repo: str,
        *,
        sha: str,
        ref: str,
        environment: str,
        task: str = "deploy",
        payload: Mapping[str, Any] | None = None,
        description: str | None = None,
        creator: str | None = None,
        transient_environment: bool = False,
        production_environment: bool | None = None,
    ) -> dict[str, Any]:
        """Create a deployment as `creator` (default: the token's account); returns its REST JSON."""
        repository = self.state.repo(repo)
        deployment = self.state.create_deployment(
            repository,
            ref=ref,
            sha=sha,
            task=task,
            environment=environment,
            payload=payload or {},
            description=description,
            creator=self.state.user(creator) if creator else self.user,
            transient_environment=transient_environment,
            production_environment=production_environment,
        )
        body = rest.deployment_json(deployment, repository, self.url)
        return self._checked("POST", "/repos/{owner}/{repo}/deployments", 201, body)

    def create_status(
        self,
        repo: str,
        deployment_id: int,
        state: str,
        description: str = "",
        *,
        environment: str | None = None,
        log_url: str = "",
        environment_url: str = "",
        auto_inactive: bool = True,
        creator: str | None = None,
    ) -> dict[str, Any]:
        """Add a status to a deployment (GitHub's auto-inactive rule applies); returns its REST JSON."""
        repository = self.state.repo(repo)
        status = self.state.create_status(
            repository,
            deployment_id,
            state=state,
            description=description,
            environment=environment,
            log_url=log_url,
            environment_url=environment_url,
            auto_inactive=auto_inactive,
            creator=self.state.user(creator) if creator else self.user,
        )
        body = rest.status_json(status, repository, self.url)
        return self._checked("POST", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses", 201, body)

    def statuses(self, repo: str, deployment_id: int) -> list[dict[str, Any]]:
        """A deployment's statuses, newest first, as REST JSON."""
        repository = self.state.repo(repo)
        with self.state.locked():
            found = self.state.deployment(repository, deployment_id).newest_statuses()
            return [rest.status_json(s, repository, self.url) for s in found]

    def advance(self, seconds: float) -> None:
        """Let time pass on the fake's clock (timestamps only ever increase)."""
        self.state.clock.advance(seconds)

    # webhooks ------------------------------------------------------------------------------------

    def deployment_status_event(self, repo: str, status_id: int) -> tuple[dict[str, str], bytes]:
        """The `deployment_status` delivery GitHub would POST for a status: (headers, raw body).

        The headers lack `X-Hub-Signature-256` (see `signature_256`). Raises `NoDelivery` for an
        `inactive` status: GitHub sends no webhook for those.
        """
        repository = self.state.repo(repo)
        with self.state.locked():
            status = self.state.statuses.get(status_id)
            if status is None:
                raise NotFound(f"status {status_id}")
            deployment = self.state.deployment(repository, status.deployment_id)
            payload = webhooks.deployment_status_payload(
                status, deployment, repository, status.creator, self.url
            )
        headers = webhooks.delivery_headers("deployment_status", self.hook_id, repository)
        problems = self.contracts.webhook_errors("deployment_status", "created", headers, payload)
        if problems:
            self._record(f"webhook deployment_status.created: {problems}")
            raise ContractViolation("deployment_status webhook", problems)
        return headers, webhooks.encode(payload)

    # faults and observation ----------------------------------------------------------------------

    def fail_next(
        self, n: int = 1, status: int = 502, *, api: Api = "any", after_effect: bool = False
    ) -> None:
        """The next `n` requests answer `status` (5xx). With `after_effect` the request is carried
        out first (a write lands) and only the answer is lost, as when GitHub times out late."""
        if not 500 <= status < 600:
            raise ValueError("fail_next is for 5xx answers")
        self.faults.arm(Fault("fail", n, api=api, status=status, after_effect=after_effect))

    def hang_next(self, n: int = 1, seconds: float = 30.0, *, api: Api = "any") -> None:
        """The next `n` requests wait `seconds` before being answered normally (client timeouts)."""
        self.faults.arm(Fault("hang", n, api=api, seconds=seconds))

    def rate_limit_next(
        self,
        n: int = 1,
        kind: Literal["secondary", "primary"] = "secondary",
        *,
        api: Api = "any",
        status: int = 403,
        reset_in: int = 3600,
    ) -> None:
        """The next `n` requests hit a rate limit, answered as GitHub does.

        secondary: 403, `Retry-After: 60`, the "secondary rate limit" message (REST and GraphQL).
        primary: REST answers `status` (403 or 429) with `X-RateLimit-Remaining: 0` and
        `X-RateLimit-Reset` `reset_in` seconds ahead; GraphQL answers 200 with an error of type
        `RATE_LIMIT` and the same headers.
        """
        if status not in (403, 429):
            raise ValueError("GitHub answers rate limits with 403 or 429")
        self.faults.arm(Fault(kind, n, api=api, status=status, reset_in=reset_in))

    def sleep(self, seconds: float) -> None:
        """Wait, but wake up when the fake closes."""
        self._closing.wait(seconds)

    def record_call(self, method: str, path: str) -> None:
        """Note one request (method, path without query)."""
        with self._lock:
            self.calls.append((method, path))

    def call_counts(self) -> Counter[tuple[str, str]]:
        """How often each (method, path) was requested."""
        with self._lock:
            return Counter(self.calls)

    def reset_calls(self) -> None:
        """Forget the recorded calls."""
        with self._lock:
            self.calls.clear()

    def check_rest(self, method: str, template: str | None, status: int, body: Any) -> list[str]:
        """Validate one REST answer; problems are recorded in `schema_errors` and returned."""
        if template is None:
            problems = self.contracts.error_errors(body) if status >= 400 else [f"unrouted answer {status}"]
        else:
            problems = self.contracts.rest_response_errors(method, template, status, body)
        if problems:
            self._record(f"{method} {template or '(unrouted)'} {status}: {problems}")
        return problems

    def _checked(self, method: str, template: str, status: int, body: dict[str, Any]) -> dict[str, Any]:
        problems = self.check_rest(method, template, status, body)
        if problems:
            raise ContractViolation(f"{method} {template} {status}", problems)
        return body

    def _record(self, problem: str) -> None:
        with self._lock:
            self.schema_errors.append(problem)

    def rate_limit_overview(self) -> dict[str, dict[str, int]]:
        """The current budgets per resource (`core`, `graphql`, `search`)."""
        with self._lock:
            return {name: dict(limits) for name, limits in self._limits.items()}

    def spend_rate_limit(self, resource: str, spend: bool) -> dict[str, int]:
        """Count one request against a resource (when `spend`); the budget after it."""
        with self._lock:
            limits = self._limits[resource]
            if spend and limits["remaining"] > 0:
                limits["used"] += 1
                limits["remaining"] -= 1
            return dict(limits)
