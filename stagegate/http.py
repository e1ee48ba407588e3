"""HTTP plumbing shared by every HTTP target: body limits, health probes, bearer tokens, deadlines,
error answers.

Handlers only raise; `answer` is the one place that turns stagegate's error kinds into responses
(4xx for bad input, 503 for retryable trouble, 200 for permanent failures that must not loop) and
logs each with its reason. Error texts are stagegate's own words (the adapters translate client
errors so), never a client library's message: that can quote a header with a token in it.

Body limits hold below the framework: functions-framework reads the whole request body after every
answer (an `after_request` hook, so the connection can be reused), which a check in the handler
cannot stop. `install_middleware` puts `BodyLimit` in front of the Flask app, so no request makes a
worker hold more than the limit, whether its length is declared or it comes chunked; and `Health` in
front of that, so a probe is answered without reaching the function or its log.
"""

from __future__ import annotations

import hmac
import io
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Protocol

from shared.errors import (
    BadEvent,
    PartialFailure,
    PayloadTooLarge,
    PermanentError,
    RetryableError,
    Unauthorized,
)
from stagegate import metrics
from stagegate.abandon import abandonable
from stagegate.lanes import Lane, Priority
from stagegate.logs import get_logger

log = get_logger("http")

# Work run under a deadline by callers that name no lane of their own (github_webhook, resync,
# admission): bounded, so a backlog is refused (503) instead of growing.
_pool = Lane("stagegate-deadline", workers=16, limit=256)


class Body(Protocol):
    """The part of a WSGI request object reading a body needs (Flask's `Request` fits)."""

    @property
    def content_length(self) -> int | None: ...

    @property
    def stream(self) -> Any: ...


def read_body(request: Body, limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes whether or not a length was declared."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body of {request.content_length} bytes exceeds the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    while size <= limit:  # a stream may answer in pieces; never ask for more than one byte past the limit
        chunk: bytes = request.stream.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
    return b"".join(chunks)


StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class BodyLimit:
    """WSGI middleware: a request body over `limit` bytes is refused (413) without being held.

    A declared `Content-Length` over the limit is answered at once, before the function (and its
    authentication) runs, and the body is never held; one within it bounds every read. A body of
    undeclared length (chunked) is read here, up to one byte past the limit: more is answered 413
    at once too, and what fits is handed on as a body of that length.

    After a refusal has been sent, the rest of the body is read and thrown away, a chunk at a time, up
    to `DRAIN_BYTES` and `DRAIN_SECONDS`: a client that only reads the answer once it has sent its
    body (most do) then gets the 413 instead of a reset connection. Past that the server drops the
    connection with the rest unread.
    """

    def __init__(self, app: WsgiApp, limit: int, target: str) -> None:
        self.app = app
        self.limit = limit
        self.target = target

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        declared = _declared_length(environ)
        stream = environ["wsgi.input"]
        if declared is not None:
            if declared > self.limit:
                reason = f"body of {declared} bytes exceeds the limit of {self.limit}"
                # Never read past the declared length: a development server hands on the raw socket.
                return self._refuse(reason, start_response, stream, declared)
        elif environ.get("wsgi.input_terminated"):
            # Werkzeug reads such a stream to its end; unterminated ones it does not read at all.
            body = _read_at_most(stream, self.limit + 1)
            if len(body) > self.limit:
                reason = f"body exceeds the limit of {self.limit} bytes"
                return self._refuse(reason, start_response, stream, None)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        return self.app(environ, start_response)

    def _refuse(
        self, reason: str, start_response: StartResponse, stream: Any, left: int | None
    ) -> Iterable[bytes]:
        error = PayloadTooLarge(reason)
        metrics.delivery(self.target, error.status)
        log.warning(
            f"{self.target}: rejected: {error}",
            extra={"fields": {"target": self.target, "status": error.status}},
        )
        body = json.dumps({"error": str(error)}).encode()
        start_response(
            "413 Request Entity Too Large",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return _Refusal(body, stream, DRAIN_BYTES if left is None else min(left, DRAIN_BYTES))


DRAIN_BYTES = 64 * 1024 * 1024
"""How much of a refused body is read (and thrown away) after the answer, at most."""
DRAIN_SECONDS = 10.0
"""How long reading a refused body after the answer may take, at most."""


class _Refusal:
    """The 413 answer; once the server has sent it (and calls `close`), the body is drained, bounded."""

    def __init__(self, body: bytes, stream: Any, limit: int) -> None:
        self._body = body
        self._stream = stream
        self._limit = limit

    def __iter__(self) -> Iterator[bytes]:
        yield self._body

    def close(self) -> None:
        deadline = time.monotonic() + DRAIN_SECONDS
        left = self._limit
        try:
            while left > 0 and time.monotonic() < deadline:
                chunk = self._stream.read(min(left, 64 * 1024))
                if not chunk:
                    return
                left -= len(chunk)
        except (OSError, ValueError):  # the client went away: nothing left to be polite to
            return


def _declared_length(environ: Mapping[str, Any]) -> int | None:
    try:
        return int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


def _read_at_most(stream: Any, size: int) -> bytes:
    chunks: list[bytes] = []
    while size > 0 and (chunk := stream.read(min(size, 64 * 1024))):
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


HEALTH_PATH = "/healthz"


class Health:
    """WSGI middleware: `GET /healthz` is answered 200 before the function runs, and logs nothing.

    A worker answers only once it has imported the function, which reads (and refuses) its settings
    at import: this probe says the function can serve, where a TCP probe says only that gunicorn's
    master has bound the port. Every other request, a GET of another path included, goes on to the
    function.
    """

    BODY = b'{"status": "ok"}'

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "GET" and environ.get("PATH_INFO") == HEALTH_PATH:
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(self.BODY)))]
            start_response("200 OK", headers)
            return [self.BODY]
        return self.app(environ, start_response)


def install_middleware(limit: int, metrics_port: int | None = None) -> None:
    """Bound request bodies of the function functions-framework is loading and answer its health
    probes (call it at import); serve its metrics on `metrics_port` when one is set.

    Outside functions-framework (Lambda, a plain import) there is no app and nothing to do: nothing
    there reads a body the function did not ask for.
    """
    import flask  # only where functions-framework serves: Lambda never imports Flask

    if not flask.has_app_context():
        return
    app = flask.current_app._get_current_object()  # type: ignore[attr-defined]
    app.wsgi_app = Health(BodyLimit(app.wsgi_app, limit, app.name))
    metrics.serve(metrics_port)


def require_bearer(authorization: str | None, expected: str | None, setting: str) -> None:
    """Accept only an `Authorization: Bearer <expected>` header value, compared in constant time."""
    if not expected:
        raise Unauthorized(f"{setting} is not configured: every request is refused until it is set")
    scheme, _, token = (authorization or "").partition(" ")
    # surrogatepass: a header value that is not valid Unicode must still compare (unequal), not raise.
    given = token.strip().encode("utf-8", "surrogatepass")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given, expected.encode()):
        raise Unauthorized("missing or wrong bearer token")


def within(seconds: float, work: Callable[[], Any], lane: Lane | None = None, priority: Priority = ()) -> Any:
    """Run `work` on a worker of `lane` but give up waiting after `seconds`, so a slow dependency or a
    backlog cannot hold the caller; a full lane refuses at once (`LaneFull`, retryable).

    Past the deadline, work that has not started is withdrawn and never runs, and work already running is
    abandoned (`stagegate.abandon`): it makes no further Kubernetes or GitHub call, so nothing is written
    after the answer (only a call already in flight ends, within its own timeout). Every write is a
    recompute from the sources of truth, conditional on the `resourceVersion` it read, so work cut short
    leaves each gate as it was or as one complete write made it; the caller's 503 says it must be redone
    (Pub/Sub and the apiserver's batch mode resend; GitHub does not, and the scheduled resync heals that).
    """
    run, abandoned = abandonable(work)
    future = (lane or _pool).submit(run, priority)
    try:
        return future.result(timeout=seconds)
    except FutureTimeout as exc:
        abandoned.set()
        if future.cancel():
            raise RetryableError(
                f"not finished within {seconds:g}s; it had not started and never will (busy)"
            ) from exc
        if future.done():  # finished right at the deadline
            abandoned.clear()
            return future.result()
        raise RetryableError(
            f"not finished within {seconds:g}s; what it had not done by then is left undone"
        ) from exc


Response = tuple[str, int, dict[str, str]]


def _json(body: Mapping[str, Any], status: int) -> Response:
    return json.dumps(body), status, {"Content-Type": "application/json"}


def answer(handler: Callable[[], Mapping[str, Any]], target: str) -> Response:
    """Call the handler and turn its result or error into an HTTP answer, logging what went wrong
    (and counting the answer: `stagegate_deliveries_total`)."""
    response = _answer(handler, target)
    metrics.delivery(target, response[1])
    return response


def _answer(handler: Callable[[], Mapping[str, Any]], target: str) -> Response:
    try:
        return _json(handler(), 200)
    except (BadEvent, Unauthorized) as exc:
        log.warning(f"{target}: rejected: {exc}", extra={"fields": {"target": target, "status": exc.status}})
        return _json({"error": str(exc)}, exc.status)
    except RetryableError as exc:
        log.warning(f"{target}: retryable failure: {exc}", extra={"fields": {"target": target}})
        return _json({"error": str(exc), "retryable": True, **_summary(exc)}, exc.status)
    except PermanentError as exc:
        log.error(f"{target}: permanent failure: {exc}", extra={"fields": {"target": target}})
        return _json({"error": str(exc), "retryable": False}, exc.status)
    except Exception as exc:
        log.exception(f"{target}: unexpected failure", extra={"fields": {"target": target}})
        return _json({"error": f"internal error: {type(exc).__name__}"}, 500)


def _summary(exc: Exception) -> dict[str, Any]:
    return {"summary": exc.summary} if isinstance(exc, PartialFailure) else {}
