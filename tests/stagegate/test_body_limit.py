"""`BodyLimit` at the WSGI level: what it reads, what it hands on, what it refuses (the served behaviour
is in `tests/functions/test_body_limits.py`)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from shared.errors import PayloadTooLarge
from stagegate import http
from stagegate.http import BodyLimit, install_middleware, read_body

LIMIT = 100


class Counting(io.BytesIO):
    """A request body that counts what was read from it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.taken = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.taken += len(data)
        return data


class Recorder:
    """The application behind the limit: records the environ it got and the body it could read."""

    def __init__(self) -> None:
        self.environ: dict[str, Any] | None = None
        self.body = b""

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.environ = environ
        length = environ.get("CONTENT_LENGTH")
        self.body = environ["wsgi.input"].read(int(length)) if length else b""
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


class Answer:
    """What the server got back, before it closes the answer (which a server always does)."""

    def __init__(self, app: Recorder, environ: dict[str, Any]) -> None:
        self.app = app
        statuses: list[str] = []
        self.iterable = BodyLimit(app, LIMIT, "test")(environ, lambda s, h: statuses.append(s))
        self.body = b"".join(self.iterable)
        self.status = statuses[0]

    def close(self) -> None:
        close = getattr(self.iterable, "close", None)
        if close is not None:
            close()


def call(environ: dict[str, Any]) -> tuple[Recorder, str, bytes]:
    answer = Answer(Recorder(), environ)
    answer.close()
    return answer.app, answer.status, answer.body


def environ(body: Counting, *, declared: int | None = None, terminated: bool = False) -> dict[str, Any]:
    env: dict[str, Any] = {"REQUEST_METHOD": "POST", "wsgi.input": body}
    if declared is not None:
        env["CONTENT_LENGTH"] = str(declared)
    else:
        env["HTTP_TRANSFER_ENCODING"] = "chunked"
    if terminated:
        env["wsgi.input_terminated"] = True
    return env


def test_a_declared_length_over_the_limit_is_refused_unread_before_the_function_runs() -> None:
    body = Counting(b"x" * 10_000 + b"the next request")
    answer = Answer(Recorder(), environ(body, declared=10_000))
    assert answer.status.startswith("413")
    assert json.loads(answer.body) == {"error": "body of 10000 bytes exceeds the limit of 100"}
    assert (answer.app.environ, body.taken) == (None, 0)
    answer.close()  # sent: the rest of the body is read and dropped, never past its declared length
    assert body.taken == 10_000


def test_what_is_drained_after_a_refusal_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "DRAIN_BYTES", 1000)
    body = Counting(b"x" * 100_000)
    call(environ(body, terminated=True))
    assert body.taken == LIMIT + 1 + 1000


def test_a_declared_length_within_the_limit_passes_untouched() -> None:
    body = Counting(b"x" * LIMIT)
    app, status, _ = call(environ(body, declared=LIMIT, terminated=True))
    assert status.startswith("200")
    assert app.environ is not None
    assert app.environ["wsgi.input"] is body
    assert app.body == b"x" * LIMIT


def test_an_undeclared_body_over_the_limit_is_refused_after_one_byte_past_it() -> None:
    body = Counting(b"x" * 10_000)
    answer = Answer(Recorder(), environ(body, terminated=True))
    assert answer.status.startswith("413")
    assert "exceeds the limit of 100 bytes" in json.loads(answer.body)["error"]
    assert answer.app.environ is None
    assert body.taken == LIMIT + 1


def test_an_undeclared_body_within_the_limit_is_handed_on_with_its_length() -> None:
    body = Counting(b"y" * LIMIT)
    app, status, _ = call(environ(body, terminated=True))
    assert status.startswith("200")
    assert app.environ is not None
    assert app.environ["CONTENT_LENGTH"] == str(LIMIT)
    assert "HTTP_TRANSFER_ENCODING" not in app.environ
    assert app.body == b"y" * LIMIT


def test_a_stream_the_server_does_not_terminate_is_not_read() -> None:
    body = Counting(b"z" * 10_000)
    app, status, _ = call(environ(body))
    assert status.startswith("200")
    assert app.environ is not None
    assert body.taken == 0  # Werkzeug reads nothing from it either


def test_outside_functions_framework_nothing_is_installed() -> None:
    install_middleware(LIMIT)  # no Flask app is being loaded: a no-op, not an error


class Trickle(io.BytesIO):
    """A body stream that answers every read with at most 7 bytes."""

    def read(self, size: int | None = -1) -> bytes:
        return super().read(7 if size is None or size < 0 else min(size, 7))


class TrickleRequest:
    def __init__(self, data: bytes) -> None:
        self.content_length = None
        self.stream = Trickle(data)


def test_read_body_gathers_a_body_read_in_pieces() -> None:
    assert read_body(TrickleRequest(b"a" * LIMIT), LIMIT) == b"a" * LIMIT


def test_read_body_refuses_a_body_read_in_pieces_past_the_limit() -> None:
    with pytest.raises(PayloadTooLarge):
        read_body(TrickleRequest(b"a" * (LIMIT + 50)), LIMIT)
