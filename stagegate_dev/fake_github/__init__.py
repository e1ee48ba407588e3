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

GitHub behaviours modelled that no schema can show, and where each is documented
--------------------------------------------------------------------------------

Orderings, per connection or list:

- GraphQL `Repository.deployments` and `Commit.deployments`: by creation, oldest first, unless
  `orderBy: {field: CREATED_AT, direction: DESC}`; ties by database id. Source: the argument's
  default `orderBy: DeploymentOrder = {field: CREATED_AT, direction: ASC}` on both fields in
  GitHub's public schema (`@octokit/graphql-schema`, schema.graphql).
- GraphQL `Deployment.statuses`: oldest first, with no `orderBy` to change it. Source: none beyond
  the schema (which offers no `orderBy`); it is what GitHub serves, and why public clients read the
  newest status with `statuses(last: 1)`. `Deployment.latestStatus` is the newest.
- REST `GET /repos/{owner}/{repo}/deployments` and `GET .../deployments/{id}/statuses`: newest
  first, paged with `Link` headers. Source: the REST reference pages ("Deployments": "List
  deployments"; "Deployment statuses": "List deployment statuses") show no order parameter and do not
  state the order; newest first is what api.github.com serves.
- `FakeGitHub(listing=...)` overrides every GraphQL connection's order (`"oldest"`, `"newest"`,
  `"shuffled"` by `listing_seed`), whatever `orderBy` says, so a test can prove that a reader's
  answer does not depend on the order (`connections.py`). REST keeps GitHub's order.

Paging (`connections.py`):

- Every connection needs `first` or `last`, each at most 100 (`MISSING_PAGINATION_BOUNDARIES`,
  `EXCESSIVE_PAGINATION`); cursors are opaque. Source: docs.github.com, GraphQL guide "Using
  pagination in the GraphQL API" (/graphql/guides/using-pagination-in-the-graphql-api) and
  "Rate limits and node limits for the GraphQL API" (node limits).
- `first`/`after`/`last`/`before` and `pageInfo` follow the Relay "GraphQL Cursor Connections
  Specification" (relay.dev/graphql/connections.htm), which the pagination guide builds on: `last: n`
  is the final n items of the (possibly `before`-bounded) list.

Deployment statuses and webhooks (`state.py`, `webhooks.py`):

- A `success` status adds an `inactive` status, without description, to older deployments of the
  same repository and environment whose latest status is `success` (`auto_inactive`, default true;
  `auto_inactive_scope="all"` widens it). Source: REST "Deployment statuses", "Create a deployment
  status", `auto_inactive` parameter (/rest/deployments/statuses#create-a-deployment-status).
- No `deployment_status` webhook for `inactive` statuses. Source: the `deployment_status` event
  in "Webhook events and payloads" (/webhooks/webhook-events-and-payloads#deployment_status): "A
  webhook event is not fired for deployment statuses with an `inactive` state."
- Delivery (`deliver_webhooks`): one POST per status, automatic ones included, in the order they
  were recorded, after the API has answered the request that recorded it; signed with
  `X-Hub-Signature-256` only when the hook has a secret; a receiver that does not answer 2xx within
  10 seconds has failed the delivery, and a failed delivery is never retried. Source: "Handling
  failed webhook deliveries" (/webhooks/using-webhooks/handling-failed-webhook-deliveries): "if your
  server is down or takes longer than 10 seconds to respond, GitHub will record the delivery as a
  failure. GitHub does not automatically redeliver failed deliveries." and "Validating webhook
  deliveries" (/webhooks/using-webhooks/validating-webhook-deliveries). The one worker thread
  (hence the strict order) is the fake's simplification: GitHub promises no order.
- Deleting a deployment: 204; 422 while it is active (latest status `success`) unless it is the
  repository's only deployment. Source: REST "Deployments", "Delete a deployment"
  (/rest/deployments/deployments#delete-a-deployment). The 422's wording is the fake's own.

GitHub Actions' custom deployment protection rules (`actions.py`, `state.py`, `webhooks.py`):

- What holds a run, who may answer, the limits on answers, and the 403 and 422 refusals: listed with
  their sources in `actions.py`'s docstring.
- `deployment_protection_rule` deliveries go to the App's webhook (`app_webhook`), not the
  repository's, with `X-GitHub-Hook-Installation-Target-Type: integration` and the App's id as the
  target id, signed with the App's webhook secret; one per rule when the job starts, delivered as
  repository webhooks are (one attempt, 10 s, never retried, in order). Source: "Creating custom
  deployment protection rules" (GitHub "sends a POST request to a URL you configure containing the
  `deployment_protection_rule` payload") and the delivery headers of "Webhook events and payloads";
  the `integration` target type is what GitHub sends for an App's webhook (observed; the webhook
  description requires the header, not its value).
- The deployment a job makes is `github-actions[bot]`'s (a Bot), of the run's head sha, ref its
  branch, environment the environment's name as configured. Its statuses (`in_progress` and
  `success` when the rules pass, `failure` on a rejection; none while it waits, as the REST
  `deployment-status` states have no `waiting`) are statuses like any other: they make older
  deployments inactive and go to the repository's webhook as `deployment_status` deliveries (GitHub
  sends these for Actions deployments too: the event's description makes no exception).
- REST `GET .../actions/runs`: newest first (by id), paged with `Link` headers; `status` matches a
  run's status or its conclusion, as the parameter's description says. Newest first is what
  api.github.com serves; the reference page states no order.
- REST `GET .../actions/runs/{run_id}/approvals`: every review and status report of the run, oldest
  first (assumed: the reference states no order); a status report is an entry of state `pending`
  with its comment, after the schema's "approved or rejected or pending (with comments)".
- REST `GET .../actions/runs/{run_id}/pending_deployments`: the run's environment while it waits,
  with no reviewers (only custom rules exist here) and `wait_timer` 0, `wait_timer_started_at` when
  the job started (assumed: GitHub documents the field, not its value without a timer); `[]` once it
  no longer waits (the operation's description: environments "waiting for protection rules to pass").

Rate limits (`server.py`, `faults.py`):

- `X-RateLimit-Limit/-Remaining/-Used/-Reset/-Resource` on every answer, counted per resource
  (`core`, `graphql`), not for 304s; primary limits answer 403 or 429 with `X-RateLimit-Remaining:
  0` (GraphQL: 200 with an error of type `RATE_LIMIT`); secondary limits answer 403 with
  `Retry-After`. Source: "Rate limits for the REST API" (/rest/using-the-rest-api/rate-limits-for-
  the-rest-api), "Rate limits and node limits for the GraphQL API"
  (/graphql/overview/rate-limits-and-node-limits-for-the-graphql-api), and "Best practices for
  using the REST API", "Use conditional requests if appropriate" (a 304 does not count).

Git objects (`revparse.py`):

- `Repository.object(oid:)` takes a full sha; `object(expression:)` resolves as `git rev-parse`:
  full sha, then a ref (`refs/heads/`, `refs/tags/`, `HEAD`), then an abbreviation of at least 4 hex
  digits that names exactly one commit; ambiguous or unknown is `null` without an error. Source:
  the schema's "A Git revision expression suitable for rev-parse" and git's `gitrevisions(7)`
  ("Specifying revisions"). The fake knows only its deployments' shas and `set_ref` targets.
- `Query.node(id:)` with an unknown id: `null` and an error of type `NOT_FOUND`. Source: "Using
  global node IDs" (/graphql/guides/using-global-node-ids) and GitHub's answers.

Replication lag (`FakeGitHub.stale`): reads answer from a snapshot while writes land live, as when
GitHub serves a read from a replica that has not caught up. Not a documented behaviour: GitHub
promises no read-after-write consistency, so a reader must survive an answer older than its writes.
"""

from __future__ import annotations

import copy
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal

from werkzeug.serving import BaseWSGIServer, make_server

from stagegate_dev.fake_github import apps, rest, webhooks
from stagegate_dev.fake_github.actions import WorkflowRun
from stagegate_dev.fake_github.connections import Listing, check_listing
from stagegate_dev.fake_github.contracts import (
    AssetsUnavailable,
    Contracts,
    ContractViolation,
    load_contracts,
    octokit_assets,
)
from stagegate_dev.fake_github.faults import Api, Fault, Faults
from stagegate_dev.fake_github.server import App, Quiet
from stagegate_dev.fake_github.state import (
    AutoInactiveScope,
    Clock,
    Deployment,
    DeploymentStatus,
    GitHubState,
    NotFound,
    Repository,
    Snapshot,
    User,
    ValidationFailed,
)
from stagegate_dev.fake_github.webhooks import (
    AppDelivery,
    Delivery,
    Hook,
    Hookshot,
    HookTarget,
    NoDelivery,
    signature_256,
)

__all__ = [
    "AppDelivery",
    "AssetsUnavailable",
    "ContractViolation",
    "Delivery",
    "FakeGitHub",
    "Listing",
    "NoDelivery",
    "NotFound",
    "Snapshot",
    "ValidationFailed",
    "WorkflowRun",
    "signature_256",
]

RATE_LIMIT = 5000


class FakeGitHub:
    """GitHub's deployments REST API, its GraphQL API and `deployment_status` webhooks, faked; and the
    workflow runs GitHub Actions holds on custom deployment protection rules."""

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
        wall_clock: bool = False,
        listing: Listing = "github",
        listing_seed: int = 0,
    ) -> None:
        """`listing`: the order of every GraphQL connection (`"github"`: GitHub's own; `"oldest"`,
        `"newest"`, or `"shuffled"` by `listing_seed`, whatever `orderBy` asks). `wall_clock`: records
        carry the time they are made (the local stack's), not a clock that moves only with events (a
        test's, which repeats)."""
        self.listing: Listing = check_listing(listing)
        self.listing_seed = listing_seed
        self.contracts: Contracts = load_contracts(assets or octokit_assets())
        self.state = GitHubState(
            clock=Clock(start_time, wall=wall_clock), auto_inactive_scope=auto_inactive_scope
        )
        self._stale: list[GitHubState] = []
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
        self._hookshot: Hookshot[Delivery] = Hookshot("fake-github-hookshot")
        self._app_hookshot: Hookshot[AppDelivery] = Hookshot("fake-github-app-hookshot")
        self.state.on_status(self._status_recorded)
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
        """Stop serving and delivering webhooks; requests still hanging on a `hang_next` fault are
        released, queued deliveries are dropped, one under way ends within its 10-second timeout."""
        self._closing.set()
        self._hookshot.close()
        self._app_hookshot.close()
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

    def token_app(self, token: str) -> int | None:
        """The id of the App whose installation token this is; None for any other token."""
        issued = self._installation_token(token)
        return issued.app_id if issued is not None else None

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
        The App's webhook (`app_webhook`) has an id of its own, kept across calls.
        """
        installation = apps.Installation(
            id=installation_id,
            app_id=app_id,
            repos=None if repos is None else frozenset(r.lower() for r in repos),
            permissions=dict(permissions or apps.DEFAULT_PERMISSIONS),
        )
        public_key, bot = apps.load_public_key(public_key_pem), self.state.user(f"{slug}[bot]", "Bot")
        with self._lock:
            known = self._apps.get(app_id)
            self._apps[app_id] = apps.GitHubAppRecord(
                app_id=app_id,
                public_key=public_key,
                bot=bot,
                owner=self.user,
                hook_id=known.hook_id if known else self.hook_id + 1 + len(self._apps),
            )
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
            self._issued[token] = apps.IssuedToken(installation.app_id, bot, expires_at, installation.repos)
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

    def delete_deployment(self, repo: str, deployment_id: int) -> None:
        """Delete a deployment as `DELETE .../deployments/{id}` does (`ValidationFailed` while it
        is active and not the repository's only one, `NotFound` if there is none)."""
        self.state.delete_deployment(self.state.repo(repo), deployment_id)

    def statuses(self, repo: str, deployment_id: int) -> list[dict[str, Any]]:
        """A deployment's statuses, newest first, as REST JSON (always the live state)."""
        repository = self.state.repo(repo)
        with self.state.locked():
            found = self.state.deployment(repository, deployment_id).newest_statuses()
            return [rest.status_json(s, repository, self.url) for s in found]

    def advance(self, seconds: float) -> None:
        """Let time pass on the fake's clock (timestamps only ever increase)."""
        self.state.clock.advance(seconds)

    # a lagging read replica ----------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Everything the fake knows now (repositories, deployments, statuses), deep-copied."""
        return self.state.snapshot()

    @contextmanager
    def stale(self, snapshot: Snapshot | None = None) -> Iterator[Snapshot]:
        """While inside, every read over HTTP (REST GETs, GraphQL) answers from `snapshot` (default:
        one taken now), as a read replica that lags would; writes still change the live state. The
        Python helpers (`statuses`, `deployment_status_event`) keep reading the live state."""
        taken = snapshot or self.snapshot()
        with self._lock:
            self._stale.append(taken.state)
        try:
            yield taken
        finally:
            with self._lock:
                self._stale.remove(taken.state)

    @property
    def read_state(self) -> GitHubState:
        """What reads over HTTP answer from: the innermost `stale` snapshot, else the live state."""
        with self._lock:
            return self._stale[-1] if self._stale else self.state

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
        return self._status_delivery(repository, payload)

    def _status_delivery(
        self, repository: Repository, payload: dict[str, Any]
    ) -> tuple[dict[str, str], bytes]:
        return self._webhook_delivery("deployment_status", self.hook_id, "repository", repository.id, payload)

    def _webhook_delivery(
        self, event: str, hook_id: int, target: HookTarget, target_id: int, payload: dict[str, Any]
    ) -> tuple[dict[str, str], bytes]:
        """Headers and body of a delivery, checked against GitHub's schemas."""
        headers = webhooks.delivery_headers(event, hook_id, target, target_id)
        action = payload["action"]
        problems = self.contracts.webhook_errors(event, action, headers, payload)
        if problems:
            self._record(f"webhook {event}.{action}: {problems}")
            raise ContractViolation(f"{event} webhook", problems)
        return headers, webhooks.encode(payload)

    def _status_recorded(self, repo: Repository, deployment: Deployment, status: DeploymentStatus) -> None:
        """Queue the repository webhook's delivery of a new status (none for `inactive`)."""
        if status.state == "inactive":
            return

        def prepare() -> tuple[webhooks.Build, Callable[..., Delivery]]:
            payload = webhooks.deployment_status_payload(status, deployment, repo, status.creator, self.url)
            record = partial(
                Delivery,
                repo=repo.full_name,
                status_id=status.id,
                deployment_id=status.deployment_id,
                state=status.state,
            )
            return partial(self._status_delivery, repo, payload), record

        self._hookshot.send(repo, prepare)

    def deliver_webhooks(self, url: str, secret: str, *, repos: Iterable[str] | None = None) -> None:
        """Configure a repository webhook: from now on every status recorded in `repos` (None: every
        repository), over REST or with `create_status`, is POSTed to `url` as GitHub would, signed
        with `secret` ("": unsigned), from a background thread. Calling again replaces the hook."""
        covered = None if repos is None else frozenset(r.lower() for r in repos)
        self._hookshot.configure(Hook(url=url, secret=secret, repos=covered))

    def stop_webhooks(self) -> None:
        """Remove the hook: nothing more is delivered, deliveries still queued are dropped."""
        self._hookshot.stop()

    @property
    def deliveries(self) -> list[Delivery]:
        """Every webhook delivery attempt so far (a copy), in the order they were made."""
        return self._hookshot.deliveries

    def wait_for_deliveries(self, n: int, timeout: float = 5.0) -> list[Delivery]:
        """Block until at least `n` delivery attempts have ended (then all of them);
        `TimeoutError` if fewer have by `timeout` seconds."""
        return self._hookshot.wait(n, timeout)

    # GitHub Actions: custom deployment protection rules ------------------------------------------

    def add_protection_rule(self, repo: str, environment: str, app_id: int) -> None:
        """Enable the App's custom deployment protection rule on an environment of `repo` (created if
        new). The App must have been added (`add_app`) with an installation on `repo`; ValueError
        otherwise, or when the environment already has 6 rules."""
        repository = self.state.repo(repo)
        self._installation_id(app_id, repository)
        self.state.add_protection_rule(repository, environment, app_id)

    def app_webhook(self, app_id: int, url: str, secret: str) -> None:
        """Set the App's webhook: from now on its `deployment_protection_rule` events are POSTed to
        `url`, signed with `secret` ("": unsigned), from a background thread. Again: replaces it."""
        self._app(app_id)
        self._app_hookshot.configure(Hook(url=url, secret=secret), key=app_id)

    def stop_app_webhooks(self) -> None:
        """Remove every App's webhook: nothing more is delivered to Apps, queued deliveries are dropped."""
        self._app_hookshot.stop()

    @property
    def app_deliveries(self) -> list[AppDelivery]:
        """Every delivery attempt to an App's webhook so far (a copy), in the order they were made;
        the repository webhook's are in `deliveries`."""
        return self._app_hookshot.deliveries

    def wait_for_app_deliveries(self, n: int, timeout: float = 5.0) -> list[AppDelivery]:
        """Block until at least `n` attempts to deliver to Apps have ended (then all of them);
        `TimeoutError` if fewer have by `timeout` seconds."""
        return self._app_hookshot.wait(n, timeout)

    def start_job(
        self,
        repo: str,
        environment: str,
        sha: str,
        *,
        ref: str = "main",
        workflow: str = "deploy",
        event: str = "push",
        actor: str | None = None,
    ) -> int:
        """Start a workflow run whose job targets `environment`, as `event` on `ref` at `sha` would, by
        `actor` (default: the token's account); returns the run's id.

        GitHub Actions creates the job's deployment; the run waits on the environment's protection
        rules, and each rule's App gets a `deployment_protection_rule` delivery (if its webhook is
        set). Without rules the job deploys and the run completes with `success` at once.
        `ValidationFailed` for a sha that is not 40 hex digits.
        """
        repository = self.state.repo(repo)
        run = self.state.start_run(
            repository,
            environment=environment,
            sha=sha,
            ref=ref,
            workflow=workflow,
            event=event,
            actor=self.state.user(actor) if actor else self.user,
        )
        for app_id in run.rules:
            prepare = partial(self._prepare_rule_delivery, repository, run, app_id)
            self._app_hookshot.send(repository, prepare, app_id)
        return run.id

    def protection_rule_event(
        self, repo: str, run_id: int, environment: str, app_id: int
    ) -> tuple[dict[str, str], bytes]:
        """The `deployment_protection_rule` delivery GitHub sends the App for the run: (headers, raw
        body), without `X-Hub-Signature-256` (see `signature_256`). `NotFound` for an unknown run,
        `NoDelivery` when the App has no rule on that environment of the run."""
        repository = self.state.repo(repo)
        run = self.state.run(repository, run_id)
        if app_id not in run.rules or environment.casefold() != run.environment.casefold():
            raise NoDelivery(f"App {app_id} has no protection rule on {environment} in run {run_id}")
        build, _ = self._prepare_rule_delivery(repository, run, app_id)
        return build()

    def workflow_run(self, repo: str, run_id: int) -> WorkflowRun:
        """A copy of a workflow run as it is now (`status`, `conclusion`, `reviews`, `reports`, ...);
        changing it changes nothing. `NotFound` for an unknown run."""
        repository = self.state.repo(repo)
        with self.state.locked():
            return copy.deepcopy(self.state.run(repository, run_id))

    def _prepare_rule_delivery(
        self, repo: Repository, run: WorkflowRun, app_id: int
    ) -> tuple[webhooks.Build, Callable[..., AppDelivery]]:
        """The delivery of the run's event to the App (its payload as things are now), and its record."""
        # The App's records first: the state's lock is never held while waiting for the fake's own.
        installation_id, hook_id = self._installation_id(app_id, repo), self._app(app_id).hook_id
        with self.state.locked():
            deployment = self.state.deployment(repo, run.deployment_id)
            payload = webhooks.protection_rule_payload(run, deployment, repo, installation_id, self.url)
        build = partial(
            self._webhook_delivery, "deployment_protection_rule", hook_id, "integration", app_id, payload
        )
        record = partial(
            AppDelivery,
            app_id=app_id,
            repo=repo.full_name,
            run_id=run.id,
            environment=run.environment,
            deployment_id=run.deployment_id,
        )
        return build, record

    def _app(self, app_id: int) -> apps.GitHubAppRecord:
        with self._lock:
            if app_id not in self._apps:
                raise ValueError(f"no GitHub App {app_id}: add_app first")
            return self._apps[app_id]

    def _installation_id(self, app_id: int, repo: Repository) -> int:
        """The id of the App's installation on `repo` (ValueError if it has none)."""
        self._app(app_id)
        with self._lock:
            for installation in self._installations.values():
                if installation.app_id == app_id and (
                    installation.repos is None or repo.full_name.lower() in installation.repos
                ):
                    return installation.id
        raise ValueError(f"GitHub App {app_id} is not installed on {repo.full_name}")

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
