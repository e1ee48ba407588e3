"""The fake's HTTP face: a WSGI app that answers REST and GraphQL requests like api.github.com.

Per request, in GitHub's order: record the call, apply an armed fault, authenticate the token, route,
answer. Every REST JSON answer is validated against the OpenAPI description of its operation and
status before it is sent; a mismatch is recorded in `fake.schema_errors` and answered with a 500 that
names it, so a drifting fake fails the test that used it. GET answers carry a weak ETag and a
matching `If-None-Match` gets 304, as on GitHub. Rate-limit headers count down per resource.
Reads (REST GETs and every GraphQL query) answer from `fake.read_state`, which is a stale snapshot
while a test holds `fake.stale(...)`; writes always change the live state.

Under `/_stand-in/` are the stand-in's own endpoints, for what happens on GitHub without an API call
(a push starting a workflow job): they are not GitHub's, so they take the fake's tokens but no faults,
rate limits or contract checks, and nothing that talks to GitHub should call them.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

from werkzeug.exceptions import HTTPException
from werkzeug.http import http_date
from werkzeug.routing import Map, Rule
from werkzeug.serving import WSGIRequestHandler
from werkzeug.wrappers import Request, Response

from stagegate_dev.fake_github import actions, apps, graphql_api, rest
from stagegate_dev.fake_github.actions import WorkflowRun
from stagegate_dev.fake_github.faults import Fault
from stagegate_dev.fake_github.state import GitHubState, NotFound, Repository, User, ValidationFailed, node_id

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from stagegate_dev.fake_github import FakeGitHub

DOCS = {
    "repo": "https://docs.github.com/rest/repos/repos#get-a-repository",
    "deployments": "https://docs.github.com/rest/deployments/deployments#list-deployments",
    "deployment": "https://docs.github.com/rest/deployments/deployments#get-a-deployment",
    "delete_deployment": "https://docs.github.com/rest/deployments/deployments#delete-a-deployment",
    "statuses": "https://docs.github.com/rest/deployments/statuses#list-deployment-statuses",
    "status": "https://docs.github.com/rest/deployments/statuses#get-a-deployment-status",
    "rate_limit": "https://docs.github.com/rest/rate-limit/rate-limit#get-rate-limit-status-for-the-authenticated-user",
    "access_tokens": "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app",
    "refs": "https://docs.github.com/rest/git/refs#create-a-reference",
    "runs": "https://docs.github.com/rest/actions/workflow-runs#list-workflow-runs-for-a-repository",
    "run": "https://docs.github.com/rest/actions/workflow-runs#get-a-workflow-run",
    "pending_deployments": (
        "https://docs.github.com/rest/actions/workflow-runs#get-pending-deployments-for-a-workflow-run"
    ),
    "approvals": "https://docs.github.com/rest/actions/workflow-runs#get-the-review-history-for-a-workflow-run",
    "protection_rule": (
        "https://docs.github.com/rest/actions/workflow-runs"
        "#review-custom-deployment-protection-rules-for-a-workflow-run"
    ),
}
GRAPHQL_AUTH_DOCS = (
    "https://docs.github.com/graphql/guides/forming-calls-with-graphql#authenticating-with-graphql"
)
PRIMARY_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-primary-rate-limits"
SECONDARY_DOCS = (
    "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
)
API_VERSION = "2022-11-28"
GHES_PREFIX = "/api/v3"

_DEPLOYMENTS = "/repos/{owner}/{repo}/deployments"
_RUNS = "/repos/{owner}/{repo}/actions/runs"
TEMPLATES = {
    "repo": "/repos/{owner}/{repo}",
    "deployments": _DEPLOYMENTS,
    "deployment": _DEPLOYMENTS + "/{deployment_id}",
    "statuses": _DEPLOYMENTS + "/{deployment_id}/statuses",
    "status": _DEPLOYMENTS + "/{deployment_id}/statuses/{status_id}",
    "refs": "/repos/{owner}/{repo}/git/refs",
    "runs": _RUNS,
    "run": _RUNS + "/{run_id}",
    "pending_deployments": _RUNS + "/{run_id}/pending_deployments",
    "approvals": _RUNS + "/{run_id}/approvals",
    "protection_rule": _RUNS + "/{run_id}/deployment_protection_rule",
    "rate_limit": "/rate_limit",
    "access_tokens": "/app/installations/{installation_id}/access_tokens",
    "app": "/app",
}
# Where the Authorization header must carry the App's JWT instead of a token.
APP_PREFIX = "/app/"
# What `_authenticate` leaves in the WSGI environ for the handlers.
APP_KEY = "stagegate_dev.fake_github.app"
REPOS_KEY = "stagegate_dev.fake_github.repos"
INSTALLED_APP_KEY = "stagegate_dev.fake_github.installed_app"
"""The id of the App whose installation token authenticated the request (None: not one)."""
STAND_IN_PREFIX = "/_stand-in/"
_LEVELS = {"read": 1, "write": 2, "admin": 3}

_by_name = "/repos/<owner>/<repo>"
_by_id = "/repositories/<int:repository_id>"
URLS = Map(
    [
        *(
            rule
            for base in (_by_name, _by_id)
            for rule in (
                Rule(base, endpoint="repo", methods=["GET"]),
                Rule(f"{base}/deployments", endpoint="deployments", methods=["GET", "POST"]),
                Rule(f"{base}/git/refs", endpoint="refs", methods=["POST"]),
                Rule(
                    f"{base}/deployments/<int:deployment_id>",
                    endpoint="deployment",
                    methods=["GET", "DELETE"],
                ),
                Rule(
                    f"{base}/deployments/<int:deployment_id>/statuses",
                    endpoint="statuses",
                    methods=["GET", "POST"],
                ),
                Rule(
                    f"{base}/deployments/<int:deployment_id>/statuses/<int:status_id>",
                    endpoint="status",
                    methods=["GET"],
                ),
                Rule(f"{base}/actions/runs", endpoint="runs", methods=["GET"]),
                Rule(f"{base}/actions/runs/<int:run_id>", endpoint="run", methods=["GET"]),
                *(
                    Rule(f"{base}/actions/runs/<int:run_id>/{name}", endpoint=endpoint, methods=[method])
                    for name, endpoint, method in (
                        ("pending_deployments", "pending_deployments", "GET"),
                        ("approvals", "approvals", "GET"),
                        ("deployment_protection_rule", "protection_rule", "POST"),
                    )
                ),
            )
        ),
        Rule("/rate_limit", endpoint="rate_limit", methods=["GET"]),
        Rule("/app", endpoint="app", methods=["GET"]),
        Rule(
            "/app/installations/<int:installation_id>/access_tokens",
            endpoint="access_tokens",
            methods=["POST"],
        ),
        Rule("/graphql", endpoint="graphql", methods=["POST"]),
        Rule("/api/graphql", endpoint="graphql", methods=["POST"]),
    ],
    strict_slashes=False,
)
STAND_IN_URLS = Map(
    [Rule(f"{STAND_IN_PREFIX}repos/<owner>/<repo>/jobs", endpoint="jobs", methods=["POST"])],
    strict_slashes=False,
)


@dataclass
class Answer:
    """What a handler decided: status, JSON body (None for none), extra headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class Quiet(WSGIRequestHandler):
    """No access log on stderr (tests make thousands of requests), and no `Date` of the machine's own:
    every answer carries the fake's (`App._send`), which is GitHub's clock here."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def send_response(self, code: int, message: str | None = None) -> None:
        self.send_response_only(code, message)
        self.send_header("Server", self.version_string())


class BadRequest(Exception):
    """The request cannot be served; carries GitHub's answer."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


class App:
    """The WSGI application of one `FakeGitHub`."""

    def __init__(self, fake: FakeGitHub) -> None:
        self.fake = fake

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        response = self.respond(request)
        return response(environ, start_response)

    # the pipeline --------------------------------------------------------------------------------

    def respond(self, request: Request) -> Response:
        path = request.path
        prefix = GHES_PREFIX if path.startswith(GHES_PREFIX + "/") else ""
        path = path[len(prefix) :]
        api = f"{request.scheme}://{request.host}{prefix}"
        self.fake.record_call(request.method, request.path)
        if path.startswith(STAND_IN_PREFIX):
            return self._stand_in(request, path, api)
        is_graphql = path.rstrip("/") in ("/graphql", "/api/graphql")
        kind: Literal["rest", "graphql"] = "graphql" if is_graphql else "rest"

        fault = self.fake.faults.take(kind)
        if fault is not None and fault.kind == "hang":
            self.fake.sleep(fault.seconds)
            fault = None
        if fault is not None and fault.kind in ("primary", "secondary"):
            return self._send(self._rate_limited(fault, kind), kind, None, request, counted=False)
        if fault is not None and not fault.after_effect:
            return self._send(self._failure(fault), kind, None, request, counted=False)

        endpoint: str | None = None
        try:
            if path.startswith(APP_PREFIX) or path == APP_PREFIX.rstrip("/"):
                user = self._authenticate_app(request)
            else:
                user = self._authenticate(request, kind)
            try:
                rule, args = URLS.bind("fake", path_info=path).match(path, method=request.method)
            except HTTPException:  # GitHub answers unknown paths and methods alike with 404
                raise BadRequest(Answer(404, rest.error_json(404, "Not Found"))) from None
            endpoint = str(rule)
            handler: Callable[..., Answer] = getattr(self, f"do_{endpoint}_{request.method.lower()}")
            answer = handler(request, api, user, **args)
        except BadRequest as exc:
            answer = exc.answer
        # Errors of a routed request are checked against that operation's own error schemas.
        template = TEMPLATES.get(endpoint) if endpoint else None
        if fault is not None:  # after_effect: the work is done, the client still sees the failure
            return self._send(self._failure(fault), kind, None, request, counted=True)
        return self._send(answer, kind, template, request, counted=True)

    def _authenticate(self, request: Request, kind: Literal["rest", "graphql"]) -> User:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            if kind == "graphql":
                message, docs = "This endpoint requires you to be authenticated.", GRAPHQL_AUTH_DOCS
            else:
                message, docs = "Requires authentication", rest.DOCS
            raise BadRequest(Answer(401, rest.error_json(401, message, docs)))
        user = self.fake.user_for_token(token.strip()) if scheme.lower() in ("token", "bearer") else None
        if user is None:
            raise BadRequest(Answer(401, rest.error_json(401, "Bad credentials", rest.DOCS)))
        request.environ[REPOS_KEY] = self.fake.token_repos(token.strip())
        request.environ[INSTALLED_APP_KEY] = self.fake.token_app(token.strip())
        return user

    def _authenticate_app(self, request: Request) -> User:
        """`/app/...` takes the App's JWT (`Authorization: Bearer <JWT>`), never a token."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise BadRequest(Answer(401, rest.error_json(401, "Requires authentication", rest.DOCS)))
        try:
            if scheme.lower() != "bearer":
                raise apps.JwtRejected(apps.NOT_DECODED)
            app = self.fake.authenticate_app(token.strip())
        except apps.JwtRejected as exc:
            raise BadRequest(Answer(401, rest.error_json(401, str(exc), rest.DOCS))) from None
        request.environ[APP_KEY] = app
        return app.bot

    def _send(
        self,
        answer: Answer,
        kind: Literal["rest", "graphql"],
        template: str | None,
        request: Request,
        *,
        counted: bool,
        checked: bool = True,
    ) -> Response:
        """Send `answer` as GitHub would; `checked`: against GitHub's description (REST)."""
        resource = "graphql" if kind == "graphql" else "core"
        if kind == "rest" and answer.body is not None and checked:
            problems = self.fake.check_rest(request.method, template, answer.status, answer.body)
            if problems:
                answer = Answer(
                    500,
                    {
                        "message": "fake GitHub: this answer does not match GitHub's OpenAPI description",
                        "errors": problems,
                    },
                )
        payload = b"" if answer.body is None else json.dumps(answer.body).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            # GitHub's own time of the answer. The fake's clock stands for GitHub's (every createdAt
            # comes from it), so `Date` does too; a stale read (a lagging replica) still answers at the
            # live time, as a replica would.
            "Date": http_date(self.fake.state.clock.now().timestamp()),
            "X-GitHub-Media-Type": "github.v3; format=json",
            "X-GitHub-Api-Version-Selected": API_VERSION,
            "X-GitHub-Request-Id": secrets.token_hex(8).upper(),
            "Vary": "Accept, Authorization, Cookie, X-GitHub-OTP",
        }
        not_modified = False
        if request.method == "GET" and answer.status == 200:
            etag = 'W/"' + hashlib.sha256(payload).hexdigest() + '"'
            headers["ETag"] = etag
            not_modified = _matches(request.headers.get("If-None-Match"), etag)
        limits = self.fake.spend_rate_limit(
            resource, counted and not not_modified and template != "/rate_limit"
        )
        headers.update(
            {
                "X-RateLimit-Limit": str(limits["limit"]),
                "X-RateLimit-Remaining": str(limits["remaining"]),
                "X-RateLimit-Reset": str(limits["reset"]),
                "X-RateLimit-Used": str(limits["used"]),
                "X-RateLimit-Resource": resource,
            }
        )
        headers.update(answer.headers)
        if not_modified:
            return Response(
                b"", status=304, headers={k: v for k, v in headers.items() if k != "Content-Type"}
            )
        return Response(payload, status=answer.status, headers=headers)

    # faults --------------------------------------------------------------------------------------

    def _failure(self, fault: Fault) -> Answer:
        message = {500: "Server Error", 502: "Server Error", 503: "Service Unavailable"}.get(
            fault.status, "Error"
        )
        return Answer(fault.status, {"message": message})

    def _rate_limited(self, fault: Fault, kind: Literal["rest", "graphql"]) -> Answer:
        user = self.fake.user
        if fault.kind == "secondary":
            message = (
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
                "If you reach out to GitHub Support for help, please include the request ID "
                f"{secrets.token_hex(4).upper()}:{secrets.token_hex(6).upper()}."
            )
            return Answer(403, rest.error_json(403, message, SECONDARY_DOCS), {"Retry-After": "60"})
        reset = str(int(time.time()) + fault.reset_in)
        headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset, "X-RateLimit-Used": "5000"}
        if kind == "graphql":
            # GitHub's GraphQL answers an exhausted primary budget with HTTP 200 and a typed error.
            error = {
                "type": "RATE_LIMIT",
                "code": "graphql_rate_limit",
                "message": f"API rate limit already exceeded for user ID {user.id}.",
            }
            return Answer(200, {"errors": [error]}, headers)
        message = f"API rate limit exceeded for user ID {user.id}."
        return Answer(fault.status, rest.error_json(fault.status, message, PRIMARY_DOCS), headers)

    # REST handlers -------------------------------------------------------------------------------

    def _state(self, request: Request) -> GitHubState:
        """What this request sees: reads may lag (a stale snapshot), writes change the live state."""
        return self.fake.read_state if request.method == "GET" else self.fake.state

    def _repo(
        self,
        request: Request,
        endpoint: str,
        owner: str = "",
        repo: str = "",
        repository_id: int | None = None,
    ) -> Repository:
        state = self._state(request)
        try:
            if repository_id is not None:
                found = state.repo_by_id(repository_id)
            else:
                found = state.repo(f"{owner}/{repo}")
        except NotFound:
            found = None
        visible: frozenset[str] | None = request.environ.get(REPOS_KEY)
        if found is None or (visible is not None and found.full_name.lower() not in visible):
            # An installation token sees only its installation's repositories: the others are 404.
            raise BadRequest(Answer(404, rest.error_json(404, "Not Found", DOCS[endpoint])))
        return found

    def do_rate_limit_get(self, request: Request, api: str, user: User) -> Answer:
        return Answer(200, rest.rate_limit_json(self.fake.rate_limit_overview()))

    def do_repo_get(self, request: Request, api: str, user: User, **where: Any) -> Answer:
        return Answer(200, rest.full_repository_json(self._repo(request, "repo", **where), api))

    def do_deployments_get(self, request: Request, api: str, user: User, **where: Any) -> Answer:
        repo = self._repo(request, "deployments", **where)
        args = request.args
        found = self._state(request).list_deployments(
            repo,
            environment=args.get("environment"),
            sha=args.get("sha"),
            ref=args.get("ref"),
            task=args.get("task"),
        )
        page, headers = _paginate(found, request, f"{api}/repositories/{repo.id}/deployments")
        return Answer(200, [rest.deployment_json(d, repo, api) for d in page], headers)

    def do_deployments_post(self, request: Request, api: str, user: User, **where: Any) -> Answer:
        repo = self._repo(request, "deployments", **where)
        body = self._json_body(request, "POST", TEMPLATES["deployments"])
        try:
            deployment = self._state(request).create_deployment(
                repo,
                ref=body["ref"],
                creator=user,
                task=body.get("task", "deploy"),
                environment=body.get("environment", "production"),
                payload=body.get("payload"),
                description=body.get("description"),
                transient_environment=body.get("transient_environment", False),
                production_environment=body.get("production_environment"),
            )
        except ValidationFailed as exc:
            return _unprocessable(
                exc, "https://docs.github.com/rest/deployments/deployments#create-a-deployment"
            )
        return Answer(201, rest.deployment_json(deployment, repo, api))

    def do_refs_post(self, request: Request, api: str, user: User, **where: Any) -> Answer:
        """Create a reference: here it stands in for a push too (the fake has no git objects, so any
        40-hex sha is taken as a commit), which is how `make dev` makes a commit known."""
        repo = self._repo(request, "refs", **where)
        body = self._json_body(request, "POST", TEMPLATES["refs"])
        ref, sha = str(body["ref"]), str(body["sha"])
        # GitHub: "If it doesn't start with 'refs' and have at least two slashes, it will be rejected."
        if not ref.startswith("refs/") or ref.count("/") < 2:
            return Answer(422, rest.error_json(422, "Reference name is invalid", DOCS["refs"]))
        if ref in repo.refs:
            return Answer(422, rest.error_json(422, "Reference already exists", DOCS["refs"]))
        try:
            self.fake.state.set_ref(repo.full_name, ref, sha)
        except ValueError:
            return Answer(422, rest.error_json(422, "Object does not exist", DOCS["refs"]))
        url = f"{api}/repos/{repo.full_name}/git"
        return Answer(
            201,
            {
                "ref": ref,
                "node_id": node_id("Ref", f"{repo.id}:{ref}"),
                "url": f"{url}/{ref}",
                "object": {"type": "commit", "sha": sha, "url": f"{url}/commits/{sha}"},
            },
            {"Location": f"{url}/{ref}"},
        )

    def do_deployment_get(
        self, request: Request, api: str, user: User, deployment_id: int, **where: Any
    ) -> Answer:
        repo = self._repo(request, "deployment", **where)
        try:
            deployment = self._state(request).deployment(repo, deployment_id)
        except NotFound:
            return Answer(404, rest.error_json(404, "Not Found", DOCS["deployment"]))
        return Answer(200, rest.deployment_json(deployment, repo, api))

    def do_deployment_delete(
        self, request: Request, api: str, user: User, deployment_id: int, **where: Any
    ) -> Answer:
        repo = self._repo(request, "delete_deployment", **where)
        try:
            self._state(request).delete_deployment(repo, deployment_id)
        except NotFound:
            return Answer(404, rest.error_json(404, "Not Found", DOCS["delete_deployment"]))
        except ValidationFailed as exc:
            return Answer(422, rest.error_json(422, exc.message, DOCS["delete_deployment"]))
        return Answer(204)

    def do_statuses_get(
        self, request: Request, api: str, user: User, deployment_id: int, **where: Any
    ) -> Answer:
        repo = self._repo(request, "statuses", **where)
        state = self._state(request)
        try:
            deployment = state.deployment(repo, deployment_id)
        except NotFound:
            return Answer(404, rest.error_json(404, "Not Found", DOCS["statuses"]))
        with state.locked():
            statuses = deployment.newest_statuses()
        link_base = f"{api}/repositories/{repo.id}/deployments/{deployment_id}/statuses"
        page, headers = _paginate(statuses, request, link_base)
        return Answer(200, [rest.status_json(s, repo, api) for s in page], headers)

    def do_statuses_post(
        self, request: Request, api: str, user: User, deployment_id: int, **where: Any
    ) -> Answer:
        repo = self._repo(request, "statuses", **where)
        body = self._json_body(request, "POST", TEMPLATES["statuses"])
        log_url = body.get("log_url") or body.get("target_url") or ""
        try:
            status = self._state(request).create_status(
                repo,
                deployment_id,
                state=body["state"],
                creator=user,
                description=body.get("description", ""),
                environment=body.get("environment"),
                log_url=log_url,
                environment_url=body.get("environment_url", ""),
                auto_inactive=body.get("auto_inactive", True),
            )
        except NotFound:
            return Answer(404, rest.error_json(404, "Not Found", DOCS["statuses"]))
        except ValidationFailed as exc:
            return _unprocessable(
                exc, "https://docs.github.com/rest/deployments/statuses#create-a-deployment-status"
            )
        body_out = rest.status_json(status, repo, api)
        return Answer(201, body_out, {"Location": body_out["url"]})

    def do_status_get(
        self, request: Request, api: str, user: User, deployment_id: int, status_id: int, **where: Any
    ) -> Answer:
        repo = self._repo(request, "status", **where)
        try:
            status = self._state(request).status(repo, deployment_id, status_id)
        except NotFound:
            return Answer(404, rest.error_json(404, "Not Found", DOCS["status"]))
        return Answer(200, rest.status_json(status, repo, api))

    def _run(
        self, request: Request, endpoint: str, run_id: int, **where: Any
    ) -> tuple[Repository, WorkflowRun]:
        repo = self._repo(request, endpoint, **where)
        try:
            return repo, self._state(request).run(repo, run_id)
        except NotFound:
            raise BadRequest(Answer(404, rest.error_json(404, "Not Found", DOCS[endpoint]))) from None

    def do_runs_get(self, request: Request, api: str, user: User, **where: Any) -> Answer:
        repo = self._repo(request, "runs", **where)
        found = self._state(request).list_runs(
            repo, status=request.args.get("status"), head_sha=request.args.get("head_sha")
        )
        page, headers = _paginate(found, request, f"{api}/repositories/{repo.id}/actions/runs")
        runs = [rest.workflow_run_json(r, repo, api) for r in page]
        return Answer(200, {"total_count": len(found), "workflow_runs": runs}, headers)

    def do_run_get(self, request: Request, api: str, user: User, run_id: int, **where: Any) -> Answer:
        repo, run = self._run(request, "run", run_id, **where)
        return Answer(200, rest.workflow_run_json(run, repo, api))

    def do_pending_deployments_get(
        self, request: Request, api: str, user: User, run_id: int, **where: Any
    ) -> Answer:
        repo, run = self._run(request, "pending_deployments", run_id, **where)
        state = self._state(request)
        with state.locked():
            pending = state.pending_environments(repo, run)
            return Answer(200, [rest.pending_deployment_json(e, run, repo, api) for e in pending])

    def do_approvals_get(self, request: Request, api: str, user: User, run_id: int, **where: Any) -> Answer:
        repo, run = self._run(request, "approvals", run_id, **where)
        with self._state(request).locked():
            environment = repo.environments[run.environment.casefold()]
            return Answer(200, [rest.approval_json(a, environment, repo, api) for a in run.answers])

    def do_protection_rule_post(
        self, request: Request, api: str, user: User, run_id: int, **where: Any
    ) -> Answer:
        repo = self._repo(request, "protection_rule", **where)
        body = self._json_body(request, "POST", TEMPLATES["protection_rule"])
        try:
            self.fake.state.review_run(
                repo,
                run_id,
                app_id=request.environ.get(INSTALLED_APP_KEY),
                user=user,
                environment=body["environment_name"],
                state=body.get("state"),
                comment=body.get("comment"),
            )
        except NotFound:
            return Answer(404, rest.error_json(404, "Not Found", DOCS["protection_rule"]))
        except actions.Refused as exc:
            return Answer(exc.status, rest.error_json(exc.status, exc.message, DOCS["protection_rule"]))
        return Answer(204)

    def do_app_get(self, request: Request, api: str, user: User) -> Answer:
        app: apps.GitHubAppRecord = request.environ[APP_KEY]
        return Answer(200, apps.app_json(app, api))

    def do_access_tokens_post(self, request: Request, api: str, user: User, installation_id: int) -> Answer:
        app: apps.GitHubAppRecord = request.environ[APP_KEY]
        installation = self.fake.installation(installation_id)
        if installation is None or installation.app_id != app.app_id:
            return Answer(404, rest.error_json(404, "Not Found", DOCS["access_tokens"]))
        body = self._json_body(request, "POST", TEMPLATES["access_tokens"]) if request.get_data() else {}
        requested: dict[str, str] = body.get("permissions") or dict(installation.permissions)
        granted = installation.permissions
        if any(
            _LEVELS.get(level, 9) > _LEVELS.get(granted.get(name, ""), 0) for name, level in requested.items()
        ):
            message = "The permissions requested are not granted to this installation."
            return Answer(422, rest.error_json(422, message, DOCS["access_tokens"]))
        if body.get("repositories") or body.get("repository_ids"):
            message = "fake GitHub: tokens limited to some repositories are not supported"
            return Answer(422, rest.error_json(422, message, DOCS["access_tokens"]))
        token, expires_at = self.fake.issue_installation_token(installation)
        return Answer(201, apps.installation_token_json(token, expires_at, installation, requested))

    def _json_body(self, request: Request, method: str, template: str) -> dict[str, Any]:
        try:
            body = json.loads(request.get_data() or b"null")
        except ValueError:
            raise BadRequest(Answer(400, rest.error_json(400, "Problems parsing JSON"))) from None
        problems = self.fake.contracts.rest_request_errors(method, template, body)
        if problems:
            message = "Invalid request.\n\n" + "\n".join(problems)
            raise BadRequest(Answer(422, rest.error_json(422, message)))
        result: dict[str, Any] = body
        return result

    # the stand-in's own endpoints -----------------------------------------------------------------

    def _stand_in(self, request: Request, path: str, api: str) -> Response:
        """Serve a `/_stand-in/` endpoint: authenticated like the API, otherwise none of GitHub's ways."""
        try:
            user = self._authenticate(request, "rest")
            try:
                endpoint, args = STAND_IN_URLS.bind("fake", path_info=path).match(path, method=request.method)
            except HTTPException:
                raise BadRequest(Answer(404, rest.error_json(404, "Not Found"))) from None
            handler: Callable[..., Answer] = getattr(self, f"stand_in_{endpoint}_{request.method.lower()}")
            answer = handler(request, api, user, **args)
        except BadRequest as exc:
            answer = exc.answer
        return self._send(answer, "rest", None, request, counted=False, checked=False)

    def stand_in_jobs_post(self, request: Request, api: str, user: User, owner: str, repo: str) -> Answer:
        """Start a workflow job that targets an environment, as a push does (`FakeGitHub.start_job`):
        `{"environment", "sha", "ref"?, "workflow"?, "event"?}`, acting as the token's account;
        answers 201 with the run's id and API URL."""
        repository = self._repo(request, "repo", owner=owner, repo=repo)
        try:
            body = json.loads(request.get_data() or b"null")
            names = ("environment", "sha", "ref", "workflow", "event")
            fields = {name: str(body[name]) for name in names if name in body}
            run_id = self.fake.start_job(
                repository.full_name, fields.pop("environment"), fields.pop("sha"), actor=user.login, **fields
            )
        except (ValueError, TypeError, KeyError) as exc:
            message = f"fake GitHub: a job needs an environment and a 40-hex sha ({exc})"
            return Answer(422, rest.error_json(422, message))
        url = f"{api}/repos/{repository.full_name}/actions/runs/{run_id}"
        return Answer(201, {"id": run_id, "url": url}, {"Location": url})

    # GraphQL -------------------------------------------------------------------------------------

    def do_graphql_post(self, request: Request, api: str, user: User) -> Answer:
        try:
            body = json.loads(request.get_data() or b"null")
        except ValueError:
            return Answer(
                400, rest.error_json(400, "Problems parsing JSON", "https://docs.github.com/graphql")
            )
        root = graphql_api.QueryRoot(
            graphql_api.Source(self.fake.read_state, api, self.fake.listing, self.fake.listing_seed),
            user,
            self.fake.rate_limit_overview()["graphql"],
            request.environ.get(REPOS_KEY),
        )
        return Answer(200, graphql_api.execute(self.fake.contracts.graphql_schema, root, body))


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    wanted = etag.removeprefix("W/")
    return any(
        tag.strip().removeprefix("W/") == wanted or tag.strip() == "*" for tag in if_none_match.split(",")
    )


def _unprocessable(exc: ValidationFailed, docs: str) -> Answer:
    return Answer(422, rest.error_json(422, exc.message, docs, exc.errors))


def _paginate(items: list[Any], request: Request, link_base: str) -> tuple[list[Any], dict[str, str]]:
    """One page of `items` and GitHub's `Link` header (`prev`, `next`, `last`, `first`)."""
    per_page = min(max(_int(request.args.get("per_page"), 30), 1), 100)
    page = max(_int(request.args.get("page"), 1), 1)
    last = max((len(items) + per_page - 1) // per_page, 1)
    params = [(k, v) for k, v in request.args.items(multi=True) if k != "page"]

    def url(number: int) -> str:
        return f"{link_base}?{urlencode([*params, ('page', str(number))])}"

    links = []
    if page > 1:
        links.append(f'<{url(min(page - 1, last))}>; rel="prev"')
    if page < last:
        links.append(f'<{url(page + 1)}>; rel="next"')
        links.append(f'<{url(last)}>; rel="last"')
    if page > 1:
        links.append(f'<{url(1)}>; rel="first"')
    headers = {"Link": ", ".join(links)} if links else {}
    return items[(page - 1) * per_page : page * per_page], headers


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default
