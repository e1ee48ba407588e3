"""Unit tests of shared/github_delivery.py: a GitHub webhook delivery is verified and parsed once.

Signatures are computed the way GitHub documents them ("Validating webhook deliveries"): HMAC-SHA256
of the raw request body, hex, prefixed with `sha256=`. Where the `@octokit/webhooks-examples` npm
package is installed (`scripts/octokit-assets.sh`), GitHub's published `deployment_status` examples
are parsed too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from shared.errors import BadEvent, Unauthorized
from shared.github_delivery import (
    BakeTarget,
    DeploymentStatusEvent,
    kuberik_target,
    signature,
    verify_delivery,
)
from tests.octokit import require_octokit

SECRET = "webhook-secret-2026"
FORM = "application/x-www-form-urlencoded"


def deployment_status_payload() -> dict[str, Any]:
    """A `deployment_status` delivery for a bake recorded by kuberik's environment controller."""
    return {
        "action": "created",
        "deployment_status": {
            "id": 2,
            "state": "success",
            "description": "Bake succeeded",
            "environment": "kuberik/myapp/staging",
            "created_at": "2026-05-15T10:05:00Z",
        },
        "deployment": {
            "id": 1,
            "sha": "b797408c0ffee",
            "ref": "b797408c0ffee",
            "task": "deploy:kuberik/myapp",
            "environment": "kuberik/myapp/staging",
            "payload": {
                "id": "entry-1",
                "version": {"tag": "main-1779290372-b797408", "revision": "b797408"},
            },
            "created_at": "2026-05-15T10:00:00Z",
        },
        "repository": {"id": 3, "name": "myapp", "full_name": "myorg/myapp"},
    }


def headers_for(
    body: bytes,
    *,
    secret: str = SECRET,
    event: str | None = "deployment_status",
    content_type: str | None = "application/json",
) -> dict[str, str]:
    headers = {"X-Hub-Signature-256": signature(secret, body), "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab"}
    if event is not None:
        headers["X-GitHub-Event"] = event
    if content_type is not None:
        headers["Content-Type"] = content_type
    return headers


def as_json(payload: object) -> bytes:
    return json.dumps(payload).encode()


def as_form(payload: object) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


# signature


def test_signature_matches_githubs_documented_example() -> None:
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert signature("It's a Secret to Everybody", b"Hello, World!") == expected


# verify_delivery: authentication


@pytest.mark.parametrize("secrets", [(), []])
def test_delivery_is_refused_when_no_secret_is_configured_naming_the_variable(secrets: Any) -> None:
    body = as_json(deployment_status_payload())
    with pytest.raises(Unauthorized, match="GITHUB_WEBHOOK_SECRET"):
        verify_delivery(headers_for(body), body, secrets)


def test_delivery_without_signature_is_refused() -> None:
    body = as_json(deployment_status_payload())
    headers = headers_for(body)
    del headers["X-Hub-Signature-256"]
    with pytest.raises(Unauthorized):
        verify_delivery(headers, body, [SECRET])


def test_delivery_signed_with_another_secret_is_refused() -> None:
    body = as_json(deployment_status_payload())
    with pytest.raises(Unauthorized, match="does not match"):
        verify_delivery(headers_for(body, secret="someone-else"), body, [SECRET])


def test_delivery_whose_body_was_changed_after_signing_is_refused() -> None:
    body = as_json(deployment_status_payload())
    tampered = body.replace(b'"success"', b'"failure"')
    assert tampered != body
    with pytest.raises(Unauthorized):
        verify_delivery(headers_for(body), tampered, [SECRET])


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sha256=",
        "sha256=not-hex-at-all",
        "sha256=" + "0" * 64,
        "sha1=0123456789abcdef0123456789abcdef01234567",
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha256 757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    ],
)
def test_delivery_with_a_malformed_signature_is_refused(value: str) -> None:
    body = as_json(deployment_status_payload())
    headers = headers_for(body)
    headers["X-Hub-Signature-256"] = value
    with pytest.raises(Unauthorized):
        verify_delivery(headers, body, [SECRET])


def test_signature_without_its_prefix_is_refused_even_when_the_hex_is_right() -> None:
    body = as_json(deployment_status_payload())
    headers = headers_for(body)
    headers["X-Hub-Signature-256"] = headers["X-Hub-Signature-256"].removeprefix("sha256=")
    with pytest.raises(Unauthorized):
        verify_delivery(headers, body, [SECRET])


def test_legacy_sha1_signature_header_alone_is_not_enough() -> None:
    body = as_json(deployment_status_payload())
    headers = headers_for(body)
    del headers["X-Hub-Signature-256"]
    headers["X-Hub-Signature"] = "sha1=0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(Unauthorized):
        verify_delivery(headers, body, [SECRET])


@pytest.mark.parametrize("signing", ["old-secret", "new-secret"])
def test_any_configured_secret_is_accepted_while_rotating(signing: str) -> None:
    body = as_json(deployment_status_payload())
    delivery = verify_delivery(headers_for(body, secret=signing), body, ["old-secret", "new-secret"])
    assert delivery.event == "deployment_status"


def test_unauthenticated_garbage_is_refused_before_it_is_parsed() -> None:
    body = b"\xff\xfe not json"
    headers = headers_for(body, secret="attacker", event=None, content_type="text/plain")
    with pytest.raises(Unauthorized):
        verify_delivery(headers, body, [SECRET])


@pytest.mark.parametrize(
    ("signature_name", "event_name", "type_name"),
    [
        ("x-hub-signature-256", "x-github-event", "content-type"),
        ("X-HUB-SIGNATURE-256", "X-GITHUB-EVENT", "CONTENT-TYPE"),
        ("X-Hub-Signature-256", "X-Github-Event", "Content-type"),
    ],
)
def test_header_names_are_case_insensitive(signature_name: str, event_name: str, type_name: str) -> None:
    body = as_form(deployment_status_payload())
    headers = {signature_name: signature(SECRET, body), event_name: "deployment_status", type_name: FORM}
    delivery = verify_delivery(headers, body, [SECRET])
    assert delivery.event == "deployment_status"
    assert delivery.payload == deployment_status_payload()


# verify_delivery: decoding


def test_json_delivery_is_decoded_with_event_id_and_action() -> None:
    body = as_json(deployment_status_payload())
    delivery = verify_delivery(headers_for(body), body, [SECRET])
    assert delivery.event == "deployment_status"
    assert delivery.delivery_id == "72d3162e-cc78-11e3-81ab"
    assert delivery.action == "created"
    assert delivery.payload == deployment_status_payload()


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON", None])
def test_json_content_type_variants_are_decoded(content_type: str | None) -> None:
    body = as_json(deployment_status_payload())
    delivery = verify_delivery(headers_for(body, content_type=content_type), body, [SECRET])
    assert delivery.payload["repository"]["full_name"] == "myorg/myapp"


def test_delivery_without_action_or_delivery_id_reads_them_as_none() -> None:
    body = as_json({"zen": "Keep it logically awesome.", "hook_id": 1})
    headers = headers_for(body, event="ping")
    del headers["X-GitHub-Delivery"]
    delivery = verify_delivery(headers, body, [SECRET])
    assert (delivery.event, delivery.delivery_id, delivery.action) == ("ping", None, None)


def test_non_string_action_reads_as_none() -> None:
    body = as_json({"action": 5})
    assert verify_delivery(headers_for(body), body, [SECRET]).action is None


def test_form_encoded_delivery_is_decoded_from_its_payload_field() -> None:
    payload = deployment_status_payload()
    payload["deployment_status"]["description"] = "Bake failed: p99 > 250ms & errors = 3%"
    body = as_form(payload)
    assert b"%26" in body  # the raw body really is URL-encoded
    delivery = verify_delivery(headers_for(body, content_type=FORM), body, [SECRET])
    assert delivery.payload == payload


def test_form_encoded_signature_covers_the_raw_form_body_not_the_json_inside() -> None:
    payload = deployment_status_payload()
    body = as_form(payload)
    headers = headers_for(body, content_type=FORM)
    headers["X-Hub-Signature-256"] = signature(SECRET, as_json(payload))
    with pytest.raises(Unauthorized):
        verify_delivery(headers, body, [SECRET])


def rejected(body: bytes, content_type: str | None = "application/json", **kwargs: Any) -> str:
    """Verify a correctly signed delivery that must be refused as bad input; return the message."""
    with pytest.raises(BadEvent) as caught:
        verify_delivery(headers_for(body, content_type=content_type, **kwargs), body, [SECRET])
    return str(caught.value)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "multipart/form-data", "application"]
)
def test_unsupported_content_type_is_bad_input(content_type: str) -> None:
    assert "unsupported content type" in rejected(as_json(deployment_status_payload()), content_type)


@pytest.mark.parametrize("body", [b"", b"not json", b"{", b"\xff\xfe\xfa", b"{'single': 'quotes'}"])
def test_body_that_is_not_json_is_bad_input(body: bytes) -> None:
    assert "is not JSON" in rejected(body)


@pytest.mark.parametrize("document", [[], [1, 2], "text", 42, None, True])
@pytest.mark.parametrize("encode", [as_json, as_form])
def test_payload_that_is_not_an_object_is_bad_input(document: object, encode: Any) -> None:
    content_type = FORM if encode is as_form else "application/json"
    assert "JSON object" in rejected(encode(document), content_type)


@pytest.mark.parametrize("event", [None, ""])
def test_delivery_without_event_header_is_bad_input(event: str | None) -> None:
    assert "X-GitHub-Event" in rejected(as_json(deployment_status_payload()), event=event)


@pytest.mark.parametrize("body", [b"zen=hello", b"payload=", b"payload", b"", b"a=1&&b"])
def test_form_without_a_payload_field_is_bad_input(body: bytes) -> None:
    rejected(body, FORM)


def test_form_whose_payload_is_not_json_is_bad_input() -> None:
    assert "is not JSON" in rejected(urlencode({"payload": "{oops"}).encode(), FORM)


def test_form_that_is_not_utf8_is_bad_input() -> None:
    rejected(b"payload=\xff\xfe", FORM)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        urlencode({"payload": "[" * 100_000 + "]" * 100_000}).encode(),
    ],
    ids=["array", "object", "form"],
)
def test_deeply_nested_json_is_bad_input(body: bytes) -> None:
    content_type = FORM if body.startswith(b"payload=") else "application/json"
    assert "is not JSON" in rejected(body, content_type)


# kuberik_target


def test_kuberik_environment_splits_into_name_and_environment() -> None:
    assert kuberik_target("kuberik/myapp/production") == BakeTarget(name="myapp", environment="production")


@pytest.mark.parametrize(
    "environment",
    [
        "production",
        "kuberik/myapp",
        "kuberik//x",
        "kuberik/x/",
        "kuberik/a/b/c",
        "kuberik/",
        "",
        "Kuberik/myapp/production",
        "github-pages",
        "other/myapp/production",
    ],
)
def test_environment_kuberik_does_not_record_has_no_target(environment: str) -> None:
    assert kuberik_target(environment) is None


# DeploymentStatusEvent.from_payload


def test_deployment_status_event_reads_repository_environment_state_and_time() -> None:
    event = DeploymentStatusEvent.from_payload(deployment_status_payload())
    assert event == DeploymentStatusEvent(
        repository="myorg/myapp",
        environment="kuberik/myapp/staging",
        state="success",
        status_created_at="2026-05-15T10:05:00Z",
        sha="b797408c0ffee",
    )


@pytest.mark.parametrize(("given", "read"), [("B797408C0FFEE", "b797408c0ffee"), ("", None), (7, None)])
def test_the_deployments_commit_is_read_when_given(given: object, read: str | None) -> None:
    payload = deployment_status_payload()
    payload["deployment"]["sha"] = given
    assert DeploymentStatusEvent.from_payload(payload).sha == read


@pytest.mark.parametrize("missing", [None, ""])
def test_environment_falls_back_to_the_status_environment(missing: str | None) -> None:
    payload = deployment_status_payload()
    payload["deployment_status"]["environment"] = "kuberik/myapp/qa"
    if missing is None:
        del payload["deployment"]["environment"]
    else:
        payload["deployment"]["environment"] = missing
    assert DeploymentStatusEvent.from_payload(payload).environment == "kuberik/myapp/qa"


def test_deployment_environment_wins_over_the_status_environment() -> None:
    payload = deployment_status_payload()
    payload["deployment_status"]["environment"] = "kuberik/myapp/qa"
    assert DeploymentStatusEvent.from_payload(payload).environment == "kuberik/myapp/staging"


def _remove(payload: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    node = payload
    for key in parents:
        node = node[key]
    del node[last]


@pytest.mark.parametrize(
    ("paths", "named"),
    [
        (["deployment_status"], "payload.deployment_status"),
        (["deployment"], "payload.deployment"),
        (["repository"], "payload.repository"),
        (["repository.full_name"], "payload.repository.full_name"),
        (["deployment_status.state"], "payload.deployment_status.state"),
        (["deployment_status.created_at"], "payload.deployment_status.created_at"),
        (["deployment.environment", "deployment_status.environment"], "payload.deployment.environment"),
    ],
)
def test_payload_missing_a_part_is_bad_input_naming_it(paths: list[str], named: str) -> None:
    payload = deployment_status_payload()
    for path in paths:
        _remove(payload, path)
    with pytest.raises(BadEvent, match=re.escape(named)):
        DeploymentStatusEvent.from_payload(payload)


@pytest.mark.parametrize(
    ("part", "value", "named"),
    [
        ("deployment_status", "success", "payload.deployment_status"),
        ("deployment", ["x"], "payload.deployment"),
        ("repository", "myorg/myapp", "payload.repository"),
    ],
)
def test_payload_part_that_is_not_an_object_is_bad_input_naming_it(
    part: str, value: object, named: str
) -> None:
    payload = deployment_status_payload()
    payload[part] = value
    with pytest.raises(BadEvent, match=re.escape(named)):
        DeploymentStatusEvent.from_payload(payload)


@pytest.mark.parametrize(
    ("parent", "key", "value"),
    [
        ("repository", "full_name", 7),
        ("repository", "full_name", ""),
        ("deployment_status", "state", None),
        ("deployment_status", "created_at", 1_747_300_000),
        ("deployment", "environment", 5),
    ],
)
def test_payload_field_of_the_wrong_type_is_bad_input_naming_it(parent: str, key: str, value: object) -> None:
    payload = deployment_status_payload()
    payload[parent][key] = value
    if parent == "deployment":
        del payload["deployment_status"]["environment"]
    with pytest.raises(BadEvent, match=re.escape(f"payload.{parent}.{key}")):
        DeploymentStatusEvent.from_payload(payload)


# GitHub's published examples (@octokit/webhooks-examples)


def octokit_examples_index() -> Path:
    """The examples index from the installed octokit packages (skip, or fail in CI, without them)."""
    return require_octokit() / "@octokit" / "webhooks-examples" / "api.github.com" / "index.json"


def octokit_deployment_status_examples() -> list[dict[str, Any]]:
    index = json.loads(octokit_examples_index().read_text())
    examples = [
        example for entry in index if entry["name"] == "deployment_status" for example in entry["examples"]
    ]
    assert examples, "the octokit index has no deployment_status examples"
    return examples


def test_githubs_published_deployment_status_examples_are_read() -> None:
    for example in octokit_deployment_status_examples():
        event = DeploymentStatusEvent.from_payload(example)
        assert event.repository == example["repository"]["full_name"]
        assert event.environment == example["deployment"]["environment"]
        assert event.state == example["deployment_status"]["state"]
        assert event.status_created_at == example["deployment_status"]["created_at"]
        assert kuberik_target(event.environment) is None  # none of GitHub's examples is a kuberik bake


@pytest.mark.parametrize("encode", [as_json, as_form])
def test_githubs_published_deployment_status_examples_pass_verification(encode: Any) -> None:
    content_type = FORM if encode is as_form else "application/json"
    for example in octokit_deployment_status_examples():
        body = encode(example)
        delivery = verify_delivery(headers_for(body, content_type=content_type), body, [SECRET])
        assert delivery.action == example["action"]
        assert (
            DeploymentStatusEvent.from_payload(delivery.payload).state
            == example["deployment_status"]["state"]
        )


def test_an_empty_configured_secret_counts_as_none_and_refuses_everything() -> None:
    body = b'{"zen": "x"}'
    headers = {"X-Hub-Signature-256": signature("", body), "X-GitHub-Event": "ping"}
    with pytest.raises(Unauthorized, match="GITHUB_WEBHOOK_SECRET"):
        verify_delivery(headers, body, [""])
