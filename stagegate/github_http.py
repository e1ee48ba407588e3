"""GitHub over HTTP through PyGithub: the client, one POST, and its failures in stagegate's words.

The only runtime module that imports PyGithub and requests (and with them jwt and cryptography): about
150 ms of a cold start. `stagegate.github` imports it when GitHub is first asked, so a function whose
events never reach GitHub never loads it, and one whose events do pays it once, on the first
(`tests/stagegate/test_runtime_imports.py` checks that no function loads it at start).
PyGithub's own sleeping (retries, throttling) is switched off: a webhook answer must stay bounded,
and a missed recompute is healed by the next trigger. It must never let a vendor exception out.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

import requests
from github import Auth, Github, GithubException, GithubIntegration

from shared.errors import InvalidRequest, PermanentError, RetryableError
from stagegate import metrics
from stagegate.logs import get_logger
from stagegate.settings import GitHubApp

log = get_logger("github")


def client(credentials: str | GitHubApp, base_url: str, timeout: float) -> Github:
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


def app_slug(app: GitHubApp, base_url: str, timeout: float) -> str:
    """The App's own slug (`GET /app`, authenticated with its JWT)."""
    integration = GithubIntegration(
        auth=Auth.AppAuth(app.app_id, app.private_key), base_url=base_url, timeout=max(1, round(timeout))
    )
    try:
        return integration.get_app().slug
    except (GithubException, requests.RequestException, OSError) as exc:
        raise _translate(exc, "the GitHub App's own identity") from exc


def _request(
    github: Github,
    url: str,
    body: Mapping[str, Any] | None,
    what: str,
    doing: str,
    parameters: Mapping[str, Any] | None = None,
) -> tuple[Mapping[str, Any], Any]:
    started = time.monotonic()
    method, given = ("GET", None) if body is None else ("POST", dict(body))
    try:
        headers, answer = github.requester.requestJsonAndCheck(
            method, url, parameters=dict(parameters or {}) or None, input=given
        )
    except (GithubException, requests.RequestException, OSError) as exc:
        metrics.github_request(_outcome(exc), time.monotonic() - started)
        raise _translate(exc, what, doing) from exc
    metrics.github_request("ok", time.monotonic() - started)
    return headers or {}, answer


def _outcome(exc: Exception) -> str:
    """The failure's label on `stagegate_github_requests_total`."""
    if not isinstance(exc, GithubException):
        return "transport_error"
    if _rate_limited(exc):
        return "rate_limited"
    return "server_error" if exc.status >= 500 else "client_error"


def post(github: Github, url: str, body: Mapping[str, Any], what: str, doing: str = "reading from") -> Any:
    """One POST (a path under the API), never retried here; GitHub's JSON answer."""
    return _request(github, url, body, what, doing)[1]


def get(github: Github, url: str, parameters: Mapping[str, Any], what: str) -> Any:
    """One GET (a path under the API, with query parameters), never retried here; GitHub's JSON answer."""
    return _request(github, url, None, what, "reading from", parameters)[1]


def graphql(github: Github, query: str, variables: Mapping[str, Any], what: str) -> tuple[Any, float | None]:
    """One GraphQL request: the whole answer (`data` and `errors`), and when GitHub gave it on its own
    clock (the `Date` header, seconds since the epoch; None when absent or unreadable)."""
    headers, answer = _request(
        github, github.requester.graphql_url, {"query": query, "variables": variables}, what, "reading from"
    )
    return answer, _date(headers)


def _date(headers: Mapping[str, Any]) -> float | None:
    """An HTTP `Date` (RFC 9110 IMF-fixdate) as seconds since the epoch."""
    raw = next((v for k, v in headers.items() if str(k).lower() == "date"), None)
    try:
        return email.utils.parsedate_to_datetime(str(raw)).timestamp() if raw else None
    except (TypeError, ValueError):
        return None


def _translate(exc: Exception, what: str, doing: str = "reading from") -> Exception:
    """Map a client failure to stagegate's kinds, in stagegate's words: the message ends up in answers
    (GitHub shows webhook answers to repository admins), while the client's own text may quote the
    request's `Authorization` header and names GitHub's URL. That text goes to the log, redacted."""
    if isinstance(exc, GithubException):
        status = exc.status
        log.warning(
            "a GitHub call failed",
            extra={"fields": {"call": what, "status": status, "detail": _message(exc)}},
        )
        if status == 401:
            return PermanentError(f"{what}: GitHub refused the credentials (HTTP 401)")
        if status == 404:
            return PermanentError(
                f"{what}: GitHub answered HTTP 404 (not found, or not visible to the credentials)"
            )
        if _rate_limited(exc):
            return RetryableError(f"{what}: {doing} GitHub failed (rate limited, HTTP {status})")
        if status == 403:
            return PermanentError(f"{what}: GitHub refused access (HTTP 403)")
        if status == 422:
            return InvalidRequest(f"{what}: GitHub refused the request as invalid (HTTP 422)")
        return RetryableError(f"{what}: {doing} GitHub failed (HTTP {status})")
    log.warning(
        "a GitHub call failed", extra={"fields": {"call": what, "detail": f"{type(exc).__name__}: {exc}"}}
    )
    return RetryableError(f"{what}: {doing} GitHub failed ({_transport_failure(exc)})")


def _transport_failure(exc: Exception) -> str:
    """What kind of failure kept the request from being answered, in a few words of our own."""
    if isinstance(exc, requests.Timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS error"
    if isinstance(exc, requests.ConnectionError | ConnectionError):
        return "connection error"
    return "the request could not be sent"


def _rate_limited(exc: GithubException) -> bool:
    """GitHub's primary and secondary limits: a `Retry-After`, no budget left, or (a secondary limit
    may carry neither header) a 403/429 whose message says so ("Rate limits for the REST API")."""
    headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
    if "retry-after" in headers or headers.get("x-ratelimit-remaining") == "0":
        return True
    return exc.status in (403, 429) and "rate limit" in _message(exc).lower()


def _message(exc: GithubException) -> str:
    """GitHub's own message, for the log."""
    data = exc.data if isinstance(exc.data, Mapping) else {}
    return str(data.get("message") or data.get("errors") or "")
