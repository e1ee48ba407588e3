"""HTTP plumbing shared by every HTTP target: body limits, bearer tokens, deadlines, error answers.

Handlers only raise; `answer` is the one place that turns stagegate's error kinds into responses
(4xx for bad input, 503 for retryable trouble, 200 for permanent failures that must not loop) and
logs each with its reason.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
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
from stagegate.logs import get_logger

log = get_logger("http")

_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="stagegate-deadline")


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
    body: bytes = request.stream.read(limit + 1)
    if len(body) > limit:
        raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
    return body


def require_bearer(authorization: str | None, expected: str | None, setting: str) -> None:
    """Accept only an `Authorization: Bearer <expected>` header value, compared in constant time."""
    if not expected:
        raise Unauthorized(f"{setting} is not configured: every request is refused until it is set")
    scheme, _, token = (authorization or "").partition(" ")
    # surrogatepass: a header value that is not valid Unicode must still compare (unequal), not raise.
    given = token.strip().encode("utf-8", "surrogatepass")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given, expected.encode()):
        raise Unauthorized("missing or wrong bearer token")


def within(seconds: float, work: Callable[[], Any]) -> Any:
    """Run `work` but give up waiting after `seconds`, so a slow dependency cannot hold the caller.

    The work itself goes on to completion in the background: it only ever creates or narrows gates,
    so finishing late is still correct.
    """
    future = _pool.submit(work)
    try:
        return future.result(timeout=seconds)
    except FutureTimeout as exc:
        raise RetryableError(f"not finished within {seconds:g}s; the work goes on in the background") from exc


Response = tuple[str, int, dict[str, str]]


def _json(body: Mapping[str, Any], status: int) -> Response:
    return json.dumps(body), status, {"Content-Type": "application/json"}


def answer(handler: Callable[[], Mapping[str, Any]], target: str) -> Response:
    """Call the handler and turn its result or error into an HTTP answer, logging what went wrong."""
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
