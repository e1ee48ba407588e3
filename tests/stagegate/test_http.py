from __future__ import annotations

import io
import json
import threading

import pytest

from shared.errors import BadEvent, PayloadTooLarge, PermanentError, RetryableError, Unauthorized
from stagegate.http import answer, read_body, require_bearer, within


class FakeRequest:
    def __init__(self, body: bytes, declared: int | None) -> None:
        self.content_length = declared
        self.stream = io.BytesIO(body)


def test_body_within_the_limit_is_read_whole() -> None:
    assert read_body(FakeRequest(b"abc", 3), limit=3) == b"abc"


def test_declared_oversized_body_is_refused_before_reading() -> None:
    request = FakeRequest(b"x" * 10, 10)
    with pytest.raises(PayloadTooLarge, match="10 bytes"):
        read_body(request, limit=5)
    assert request.stream.tell() == 0


def test_undeclared_oversized_body_is_refused_after_limit_plus_one_bytes() -> None:
    request = FakeRequest(b"x" * 100, None)
    with pytest.raises(PayloadTooLarge):
        read_body(request, limit=5)
    assert request.stream.tell() == 6


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer wrong", "Basic right", "right"])
def test_anything_but_the_right_bearer_token_is_unauthorized(header: str | None) -> None:
    with pytest.raises(Unauthorized):
        require_bearer(header, "right", "TOKEN")


def test_right_bearer_token_passes_in_any_scheme_case() -> None:
    require_bearer("Bearer right", "right", "TOKEN")
    require_bearer("bearer right", "right", "TOKEN")


def test_no_configured_token_refuses_even_a_matching_empty_header() -> None:
    with pytest.raises(Unauthorized, match="TOKEN is not configured"):
        require_bearer("Bearer ", None, "TOKEN")


def test_work_slower_than_the_deadline_is_retryable_and_still_finishes() -> None:
    release, done = threading.Event(), threading.Event()

    def slow() -> None:
        release.wait(5)
        done.set()

    with pytest.raises(RetryableError, match=r"within 0\.05s"):
        within(0.05, slow)
    release.set()
    assert done.wait(5)


def test_work_within_the_deadline_returns_its_result() -> None:
    assert within(5, lambda: 42) == 42


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (BadEvent("bad"), 400),
        (PayloadTooLarge("big"), 413),
        (Unauthorized("who"), 401),
        (RetryableError("later"), 503),
        (PermanentError("never"), 200),
        (ZeroDivisionError("boom"), 500),
    ],
)
def test_each_error_kind_maps_to_its_status_with_a_reason(error: Exception, status: int) -> None:
    def fail() -> dict:
        raise error

    body, code, headers = answer(fail, "test")
    assert code == status
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]


def test_unexpected_errors_do_not_leak_their_message() -> None:
    def fail() -> dict:
        raise ValueError("secret detail")

    body, _, _ = answer(fail, "test")
    assert "secret detail" not in body
