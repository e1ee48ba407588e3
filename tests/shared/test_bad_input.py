"""Untrusted JSON decodes to a document or fails as `BadEvent`, whatever the bytes (shared/json_input.py),
and both edge parsers (audit bodies, GitHub deliveries) decode through it."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest

from shared.audit import parse_audit_json
from shared.errors import BadEvent, Unauthorized
from shared.github_delivery import signature, verify_delivery
from shared.json_input import MAX_DEPTH, MAX_INTEGER_DIGITS, decode_json
from tests.payloads import payload_bytes

SECRET = "webhook-secret-2026"

REFUSED: dict[str, tuple[bytes, str]] = {
    "integer over the conversion limit": (b"1" * 5000, "integer literal of 5000 digits"),
    "negative integer over the limit": (b"-" + b"9" * 4301, "integer literal of 4301 digits"),
    "integer inside a document": (b'{"code": ' + b"7" * 4400 + b"}", "integer literal of 4400 digits"),
    "NaN": (b"[NaN]", "NaN is not a JSON number"),
    "Infinity": (b'{"a": Infinity}', "Infinity is not a JSON number"),
    "-Infinity": (b"-Infinity", "-Infinity is not a JSON number"),
    "float overflowing to infinity": (b"1e400", "out of the range of a float"),
    "negative float overflowing": (b"[-1.5e309]", "out of the range of a float"),
    "lone high surrogate": (b'{"a": "\\ud800"}', "lone surrogate"),
    "lone low surrogate as a key": (b'{"\\uDC00": 1}', "lone surrogate"),
    "reversed surrogate pair": (b'["\\udc00\\ud800"]', "lone surrogate"),
    "invalid UTF-8": (b'{"a": "\xff"}', "invalid UTF-8"),
    "UTF-8 encoded surrogate": (b'"\xed\xa0\x80"', "invalid UTF-8"),
    "UTF-16": ('{"a": 1}'.encode("utf-16"), "invalid UTF-8"),
    "UTF-8 byte order mark": (b'\xef\xbb\xbf{"a": 1}', "BOM"),
    "nested beyond the recursion limit": (b"[" * 100_000 + b"]" * 100_000, "RecursionError"),
    "nested beyond the depth limit": (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "deeper than"),
    "syntax error": (b'{"a": 1,}', "is not JSON"),
    "empty": (b"", "is not JSON"),
}


@pytest.mark.parametrize(("body", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_undecodable_or_unwritable_json_is_a_bad_event_with_its_reason(body: bytes, reason: str) -> None:
    with pytest.raises(BadEvent, match=r"^body ") as caught:
        decode_json(body)
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"9" * MAX_INTEGER_DIGITS, int("9" * MAX_INTEGER_DIGITS)),
        (b'"\\ud83d\\ude00"', "\N{GRINNING FACE}"),
        (b'"\\\\ud800"', "\\ud800"),  # an escaped backslash, not a surrogate escape
        (b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)),
        (b"[" + b"[]," * 2000 + b"[]]", [[]] * 2001),  # many brackets, shallow
        (b'{"f": 1.5e308, "g": -0.0, "h": 1e-400}', {"f": 1.5e308, "g": -0.0, "h": 0.0}),
        ('{"ü": "€"}'.encode(), {"ü": "€"}),
    ],
    ids=["longest-integer", "surrogate-pair", "escaped-backslash", "deepest", "wide", "floats", "unicode"],
)
def test_what_interoperable_json_allows_is_decoded(body: bytes, expected: Any) -> None:
    assert decode_json(body) == expected


def test_text_with_a_lone_surrogate_character_is_a_bad_event() -> None:
    with pytest.raises(BadEvent, match=r"^SQS body is not JSON: it holds a lone surrogate"):
        decode_json('{"a": "\ud800"}', "SQS body")


def test_every_captured_audit_payload_decodes_as_before() -> None:
    for name in (
        "configmap-create-metadata",
        "environment-create",
        "environment-delete",
        "environment-patch-rollout-ref",
        "environment-update-add-relationship",
    ):
        body = payload_bytes(f"audit/{name}.json")
        assert decode_json(body) == json.loads(body)


# parse_audit_json: the audit entry points' parser


@pytest.mark.parametrize(("body", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_audit_body_that_cannot_be_decoded_is_a_bad_event(body: bytes, reason: str) -> None:
    with pytest.raises(BadEvent, match=r"^body "):
        parse_audit_json(body)


def test_audit_event_list_with_a_huge_integer_is_a_bad_event_not_a_value_error() -> None:
    body = payload_bytes("audit/environment-create.json").replace(b'"code": 201', b'"code": ' + b"2" * 5000)
    assert body != payload_bytes("audit/environment-create.json")
    with pytest.raises(BadEvent, match="integer literal of 5000 digits"):
        parse_audit_json(body)


# verify_delivery: the GitHub webhook's parser


def deliver(body: bytes, content_type: str = "application/json", **headers: str) -> Any:
    return verify_delivery(
        {
            "X-GitHub-Event": "ping",
            "X-Hub-Signature-256": signature(SECRET, body),
            "Content-Type": content_type,
            **headers,
        },
        body,
        [SECRET],
    )


@pytest.mark.parametrize(("body", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_signed_json_delivery_that_cannot_be_decoded_is_bad_input(body: bytes, reason: str) -> None:
    with pytest.raises(BadEvent, match=r"^body ") as caught:
        deliver(body)
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ('{"zen": ' + "1" * 5000 + "}", "integer literal"),
        ('{"zen": NaN}', "NaN"),
        ('{"zen": "\\ud800"}', "lone surrogate"),
        ("[" * 100_000 + "]" * 100_000, "RecursionError"),
    ],
    ids=["huge-integer", "NaN", "lone-surrogate", "deep"],
)
def test_signed_form_delivery_whose_payload_cannot_be_decoded_is_bad_input(payload: str, reason: str) -> None:
    body = f"payload={quote(payload)}".encode()
    with pytest.raises(BadEvent, match=r"^form field payload ") as caught:
        deliver(body, "application/x-www-form-urlencoded")
    assert reason in str(caught.value)


def test_form_payload_percent_decoding_to_invalid_utf8_is_bad_input_not_replaced() -> None:
    body = b"payload=%7B%22zen%22%3A%22%FF%22%7D"
    with pytest.raises(BadEvent, match="not a form-encoded payload"):
        deliver(body, "application/x-www-form-urlencoded")


def test_form_with_more_than_one_payload_field_is_bad_input() -> None:
    body = b"payload=%7B%7D&payload=%7B%7D"
    with pytest.raises(BadEvent, match="2 payload fields"):
        deliver(body, "application/x-www-form-urlencoded")


def test_signature_header_that_is_not_ascii_is_unauthorized_not_an_encoding_error() -> None:
    body = b'{"zen": "z"}'
    for value in ("sha256=\udc00", "sha256=é" + "0" * 63):
        with pytest.raises(Unauthorized, match="not a hex digest"):
            verify_delivery({"X-GitHub-Event": "ping", "X-Hub-Signature-256": value}, body, [SECRET])
