"""Every entry point answers undecodable input as bad input: 400 over HTTP, acknowledged (dropped as
poison) on Pub/Sub and SQS, never a 5xx or a redelivery, and nothing changes.

Each entry point runs in-process with in-memory Kubernetes and GitHub (`tests/stagegate/in_memory.py`).
The payloads are the captured audit event of `prod` and a `ping`, with one literal replaced by what a
careless or hostile sender can put there: an integer over Python's 4,300-digit conversion limit (a
plain `ValueError`, not a `JSONDecodeError`), `NaN`, a float overflowing to infinity, a lone surrogate.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from shared.github_delivery import signature
from tests.kube_objects import delivery
from tests.shared.builders import environment_raw
from tests.stagegate.in_memory import (
    AUDIT_TOKEN,
    WEBHOOK_SECRET,
    EntryPoints,
    entry_points,
    forbid_network,
)

HUGE_INTEGER = b"1" * 5000
# Literals that decode (or used to) into values stagegate cannot read or write back as JSON.
UNREADABLE = {
    "huge integer": HUGE_INTEGER,
    "negative huge integer": b"-" + HUGE_INTEGER,
    "NaN": b"NaN",
    "Infinity": b"Infinity",
    "float overflowing to infinity": b"1e400",
    "lone surrogate": b'"\\ud800"',
}


@pytest.fixture(scope="module")
def eps(tmp_path_factory: pytest.TempPathFactory) -> EntryPoints:
    return entry_points(tmp_path_factory.mktemp("functions"))


@pytest.fixture(autouse=True)
def world(eps: EntryPoints, monkeypatch: pytest.MonkeyPatch) -> Iterator[EntryPoints]:
    """The starting world before each test; after it, no gate changed and GitHub was not asked."""
    forbid_network(monkeypatch)
    eps.reset()
    before = eps.kube.snapshot()
    yield eps
    assert eps.kube.snapshot() == before
    assert eps.github.calls == 0


def audit_body(literal: bytes) -> bytes:
    """The captured create of `prod` (with its relationship) carrying `literal` in a field nothing reads."""
    document = delivery(environment_raw("prod"))
    document["items"][0]["annotations"] = {"example.com/note": "@@LITERAL@@"}
    return json.dumps(document).encode().replace(b'"@@LITERAL@@"', literal)


def audit_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {AUDIT_TOKEN}", "Content-Type": "application/json"}


def signed(body: bytes, event: str = "ping", content_type: str = "application/json") -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": "d-1",
        "X-Hub-Signature-256": signature(WEBHOOK_SECRET, body),
        "Content-Type": content_type,
    }


def ping_body(literal: bytes) -> bytes:
    return b'{"zen": ' + literal + b', "hook_id": 1}'


# k8s_audit_http


@pytest.mark.parametrize("literal", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_audit_webhook_answers_400_to_an_unreadable_literal(eps: EntryPoints, literal: bytes) -> None:
    answer = eps.audit_http.post("/", data=audit_body(literal), headers=audit_headers())
    assert answer.status_code == 400, answer.data
    assert "body" in answer.get_json()["error"]


def test_audit_webhook_answers_400_to_a_body_nested_beyond_the_recursion_limit(eps: EntryPoints) -> None:
    body = audit_body(b"[" * 100_000 + b"]" * 100_000)
    answer = eps.audit_http.post("/", data=body, headers=audit_headers())
    assert answer.status_code == 400, answer.data


# k8s_audit (Pub/Sub push, a CloudEvent)


def pubsub_cloud_event(data: bytes) -> tuple[bytes, dict[str, str]]:
    """A Pub/Sub message as Eventarc pushes it: a binary-mode CloudEvent around the push body."""
    envelope = {
        "message": {"data": base64.b64encode(data).decode(), "messageId": "m-1"},
        "subscription": "projects/p/subscriptions/s",
    }
    headers = {
        "ce-specversion": "1.0",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-source": "//pubsub.googleapis.com/projects/p/topics/t",
        "ce-id": "m-1",
        "Content-Type": "application/json",
    }
    return json.dumps(envelope).encode(), headers


@pytest.mark.parametrize("literal", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_pubsub_message_with_an_unreadable_literal_is_acknowledged_not_redelivered(
    eps: EntryPoints, literal: bytes
) -> None:
    body, headers = pubsub_cloud_event(audit_body(literal))
    answer = eps.audit_event.post("/", data=body, headers=headers)
    assert answer.status_code == 200, answer.data  # anything else makes Pub/Sub redeliver


# audit_bridge


@pytest.mark.parametrize("literal", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_bridge_answers_400_and_publishes_nothing_for_an_unreadable_literal(
    eps: EntryPoints, literal: bytes
) -> None:
    answer = eps.bridge.post("/", data=audit_body(literal), headers=audit_headers())
    assert answer.status_code == 400, answer.data
    assert eps.transport.messages == []


# github_webhook (Functions Framework)


@pytest.mark.parametrize(
    "literal",
    [UNREADABLE["NaN"], UNREADABLE["Infinity"], UNREADABLE["float overflowing to infinity"]],
    ids=["NaN", "Infinity", "overflow"],
)
def test_webhook_answers_400_to_a_non_finite_number_instead_of_echoing_non_json(
    eps: EntryPoints, literal: bytes
) -> None:
    body = ping_body(literal)
    answer = eps.webhook.post("/", data=body, headers=signed(body))
    assert answer.status_code == 400, answer.data
    json.loads(answer.data, parse_constant=_refuse_constant)


def _refuse_constant(literal: str) -> Any:
    raise AssertionError(f"the answer is not JSON: it holds {literal}")


def test_webhook_answers_400_to_a_form_payload_that_is_not_utf8_once_percent_decoded(
    eps: EntryPoints,
) -> None:
    body = b"payload=%7B%22zen%22%3A%22%FF%22%7D"  # {"zen":"\xff"}: decoding used to replace the byte
    answer = eps.webhook.post(
        "/", data=body, headers=signed(body, content_type="application/x-www-form-urlencoded")
    )
    assert answer.status_code == 400, answer.data


def test_webhook_answers_400_to_a_form_with_two_payload_fields(eps: EntryPoints) -> None:
    body = b"payload=%7B%22zen%22%3A%22a%22%7D&payload=%7B%22zen%22%3A%22b%22%7D"
    answer = eps.webhook.post(
        "/", data=body, headers=signed(body, content_type="application/x-www-form-urlencoded")
    )
    assert answer.status_code == 400, answer.data
    assert "2 payload fields" in answer.get_json()["error"]


# AWS Lambda: github_webhook behind a function URL


def function_url_event(body: Any, headers: Any, *, base64_encoded: bool = False) -> dict[str, Any]:
    return {
        "version": "2.0",
        "rawPath": "/",
        "headers": headers,
        "body": body,
        "isBase64Encoded": base64_encoded,
        "requestContext": {"http": {"method": "POST"}},
    }


def test_lambda_webhook_answers_400_to_a_body_with_a_lone_surrogate(eps: EntryPoints) -> None:
    # The runtime decodes the invocation JSON, so a `\ud800` escape in it arrives as a lone surrogate.
    event = function_url_event(
        '{"zen": "\ud800"}', {"x-github-event": "ping", "x-hub-signature-256": "sha256=00"}
    )
    answer = eps.aws.github_webhook(event, None)
    assert answer["statusCode"] == 400, answer
    assert "not valid Unicode" in json.loads(answer["body"])["error"]  # it used to blame base64


def test_lambda_webhook_answers_401_to_a_signature_header_with_a_lone_surrogate(eps: EntryPoints) -> None:
    body = '{"zen": "z"}'
    event = function_url_event(body, {"x-github-event": "ping", "x-hub-signature-256": "sha256=\udc00"})
    answer = eps.aws.github_webhook(event, None)
    assert answer["statusCode"] == 401, answer


@pytest.mark.parametrize(
    ("body", "headers"),
    [({"zen": "z"}, {"x-github-event": "ping"}), (12, {}), ("{}", ["x-github-event", "ping"])],
    ids=["body-object", "body-number", "headers-list"],
)
def test_lambda_webhook_answers_400_to_a_malformed_envelope(
    eps: EntryPoints, body: Any, headers: Any
) -> None:
    answer = eps.aws.github_webhook(function_url_event(body, headers), None)
    assert answer["statusCode"] == 400, answer


# AWS Lambda: the audit consumer behind SQS (EventBridge rule -> queue -> Lambda)


def sqs_batch(*records: Any) -> dict[str, Any]:
    return {"Records": list(records)}


@pytest.mark.parametrize(
    "record",
    [
        {"messageId": "deep", "body": "[" * 100_000 + "]" * 100_000},
        {"messageId": "huge", "body": '{"detail": ' + "1" * 5000 + "}"},
        {"messageId": "surrogate", "body": '{"detail": {"kind": "\ud800"}}'},
        {"messageId": "number", "body": 12},
        "not-a-record",
    ],
    ids=["nested-beyond-recursion-limit", "huge-integer", "lone-surrogate", "body-number", "record-string"],
)
def test_sqs_poison_message_is_dropped_not_retried(eps: EntryPoints, record: Any) -> None:
    assert eps.aws.k8s_audit_eventbridge(sqs_batch(record), None) == {"batchItemFailures": []}


def test_sqs_event_whose_records_are_not_a_list_is_dropped(eps: EntryPoints) -> None:
    assert eps.aws.k8s_audit_eventbridge({"Records": {"messageId": "x"}}, None) == {"batchItemFailures": []}


def test_sqs_message_with_an_unreadable_literal_in_its_audit_event_is_dropped(eps: EntryPoints) -> None:
    body = b'{"detail": ' + audit_body(HUGE_INTEGER) + b"}"
    record = {"messageId": "m", "body": body.decode()}
    assert eps.aws.k8s_audit_eventbridge(sqs_batch(record), None) == {"batchItemFailures": []}
