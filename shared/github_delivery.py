"""GitHub webhook deliveries: verify once, parse once, no I/O (the gidgethub sans-I/O shape).

`verify_delivery(headers, body, secrets)` is the only way a delivery gets past the edge: the
`X-Hub-Signature-256` HMAC over the raw body is checked in constant time against every configured
secret (several during a rotation), then the body is decoded from either content type GitHub sends.
No secret configured means every delivery is refused.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from shared.errors import BadEvent, Unauthorized
from shared.json_input import decode_json

KUBERIK_PREFIX = "kuberik/"


def signature(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub computes for `body` with `secret`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Delivery:
    """A verified delivery: the event name, GitHub's delivery id, and the decoded payload."""

    event: str
    delivery_id: str | None
    payload: Mapping[str, Any] = field(repr=False)

    @property
    def action(self) -> str | None:
        """The payload's `action`, for events that have one."""
        action = self.payload.get("action")
        return action if isinstance(action, str) else None


def verify_delivery(headers: Mapping[str, str], body: bytes, secrets: Sequence[str]) -> Delivery:
    """Check the signature against every configured secret, then decode; raise `Unauthorized`/`BadEvent`."""
    lower = {k.lower(): v for k, v in headers.items()}
    secrets = [secret for secret in secrets if secret]
    if not secrets:
        raise Unauthorized(
            "GITHUB_WEBHOOK_SECRET is not configured: every delivery is refused until it is set"
        )
    given = lower.get("x-hub-signature-256", "")
    if not given.startswith("sha256="):
        raise Unauthorized("missing X-Hub-Signature-256 header")
    if not given.isascii():  # hex digits only; anything else cannot match (nor be encoded to compare)
        raise Unauthorized("X-Hub-Signature-256 is not a hex digest")
    # Compare against every secret, without stopping early, so timing says nothing about which matched.
    matches = [hmac.compare_digest(given.encode(), signature(secret, body).encode()) for secret in secrets]
    if not any(matches):
        raise Unauthorized("X-Hub-Signature-256 does not match any configured secret")
    event = lower.get("x-github-event")
    if not event:
        raise BadEvent("missing X-GitHub-Event header")
    return Delivery(event=event, delivery_id=lower.get("x-github-delivery"), payload=_decode(lower, body))


def _decode(headers: Mapping[str, str], body: bytes) -> Mapping[str, Any]:
    content_type = headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        document = decode_json(_form_payload(body), "form field payload")
    elif content_type == "application/json":
        document = decode_json(body, "body")
    else:
        raise BadEvent(f"unsupported content type {content_type!r}")
    if not isinstance(document, Mapping):
        raise BadEvent("payload must be a JSON object")
    return document


def _form_payload(body: bytes) -> str:
    """The one `payload` field of a form-encoded delivery, percent-decoded as strict UTF-8."""
    try:
        fields = parse_qs(body.decode("utf-8"), strict_parsing=True, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadEvent(f"body is not a form-encoded payload: {exc}") from exc
    payloads = fields.get("payload", [])
    if len(payloads) != 1:
        raise BadEvent(
            "form-encoded delivery has no payload field"
            if not payloads
            else f"form-encoded delivery has {len(payloads)} payload fields; exactly one is read"
        )
    return payloads[0]


@dataclass(frozen=True, slots=True)
class BakeTarget:
    """A `kuberik/<name>/<environment>` GitHub environment, split into its parts."""

    name: str
    environment: str


def kuberik_target(github_environment: str) -> BakeTarget | None:
    """The deployment name and environment, when the GitHub environment is one kuberik records."""
    if not github_environment.startswith(KUBERIK_PREFIX):
        return None
    parts = github_environment[len(KUBERIK_PREFIX) :].split("/")
    if len(parts) != 2 or not all(parts):
        return None
    return BakeTarget(name=parts[0], environment=parts[1])


@dataclass(frozen=True, slots=True)
class DeploymentStatusEvent:
    """The fields of a `deployment_status` delivery the recompute needs."""

    repository: str
    environment: str
    state: str
    status_created_at: str
    sha: str | None = None
    """The deployment's commit, when the delivery names one."""

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> DeploymentStatusEvent:
        """Read strictly; raise `BadEvent` naming the missing field."""
        status = _object(payload, "deployment_status")
        deployment = _object(payload, "deployment")
        repository = _object(payload, "repository")
        environment = deployment.get("environment") or status.get("environment")
        return cls(
            repository=_text(repository, "full_name", "repository"),
            environment=environment
            if isinstance(environment, str)
            else _text(deployment, "environment", "deployment"),
            state=_text(status, "state", "deployment_status"),
            status_created_at=_text(status, "created_at", "deployment_status"),
            sha=sha.lower() if isinstance(sha := deployment.get("sha"), str) and sha else None,
        )


def _object(parent: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = parent.get(key)
    if not isinstance(value, Mapping):
        raise BadEvent(f"payload.{key} is required and must be an object")
    return value


def _text(parent: Mapping[str, Any], key: str, where: str) -> str:
    value = parent.get(key)
    if not isinstance(value, str) or not value:
        raise BadEvent(f"payload.{where}.{key} is required and must be a non-empty string")
    return value
