"""The payload kuberik puts on each GitHub deployment: written as the Go controller writes it, read in
every form GitHub hands back.

kuberik's environment controller (v0.1.5, `syncDeploymentHistory`) stores only what never changes
about a Rollout history entry: `{"id": "<entry id>", "relationship": {...}, "version": {...}}`. Go's
`encoding/json` writes it compact, keys in struct order, with `<`, `>`, `&`, U+2028 and U+2029
escaped; and since go-github's `DeploymentRequest.Payload` is an `interface{}` holding those bytes,
it reaches GitHub as a base64 string. Records made by either side must be found by the other, so
`encode` reproduces those bytes and `decode` accepts a JSON object, a JSON document in a string, or
that base64 string (as the Go controller's own reader does).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from shared.errors import BadEvent
from shared.json_input import decode_json
from shared.views import Relationship

VERSION_FIELDS = ("tag", "digest", "version", "revision", "created")
"""`VersionInfo`'s JSON fields in struct order (rollout-controller api/v1alpha1); all but `tag` omitempty."""

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def go_json(value: object) -> str:
    """`json.Marshal` of `value` as Go writes it (for keys already in struct order)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    # These characters can only occur inside JSON strings, so replacing them everywhere is exact.
    return "".join(_GO_ESCAPES.get(ch, ch) for ch in text)


def payload_document(entry_id: int, relationship: Relationship | None, version: Mapping[str, Any]) -> str:
    """The deployment payload's JSON document for one history entry, byte for byte as Go marshals it."""
    document: dict[str, Any] = {"id": str(entry_id)}
    if relationship is not None:
        document["relationship"] = {"environment": relationship.environment, "type": relationship.type}
    fields = {"tag": version.get("tag") or ""}
    for name in VERSION_FIELDS[1:]:
        value = version.get(name)
        if value is not None and value != "":
            fields[name] = value
    document["version"] = fields
    return go_json(document)


def encode(entry_id: int, relationship: Relationship | None, version: Mapping[str, Any]) -> str:
    """The `payload` value of a create-deployment request: the document, base64-encoded, as Go sends it."""
    return base64.b64encode(payload_document(entry_id, relationship, version).encode()).decode()


def decode(raw: object) -> Mapping[str, Any] | None:
    """The payload as a mapping, whichever form GitHub returned it in; None when it holds no object."""
    if isinstance(raw, Mapping):
        return raw
    if not isinstance(raw, str) or not raw:
        return None
    try:
        decoded = decode_json(raw, "deployment payload")
    except BadEvent:
        decoded = raw
    if isinstance(decoded, Mapping):
        return decoded
    if not isinstance(decoded, str):
        return None
    try:
        inner = base64.b64decode(decoded, validate=True)
        document = decode_json(inner, "deployment payload")
    except (binascii.Error, ValueError, BadEvent):
        return None
    return document if isinstance(document, Mapping) else None


def entry_id(payload: Mapping[str, Any] | None) -> str | None:
    """The Rollout history entry id a deployment was recorded for, if its payload names one."""
    value = payload.get("id") if payload is not None else None
    return value if isinstance(value, str) and value else None
