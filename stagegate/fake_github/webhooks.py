"""`deployment_status` webhook deliveries exactly as GitHub sends them, minus the signature.

A delivery is headers plus the raw body bytes. The signature (`X-Hub-Signature-256`) belongs to
whoever holds the secret, so it is left to the caller (`signature_256` computes it the way GitHub
does). GitHub sends no webhook for `inactive` deployment statuses (its webhook description says so),
so none is built for one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

from stagegate.fake_github import rest
from stagegate.fake_github.state import Deployment, DeploymentStatus, Repository, User

HOOKSHOT_VERSION = "a4f1e0b"


class NoDelivery(ValueError):
    """GitHub would not deliver this event at all."""


def signature_256(secret: str | bytes, body: bytes) -> str:
    """The `X-Hub-Signature-256` value: `sha256=` and the hex HMAC-SHA256 of the raw body."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def deployment_status_payload(
    status: DeploymentStatus, deployment: Deployment, repo: Repository, sender: User, api: str
) -> dict[str, Any]:
    """The JSON payload of a `deployment_status` `created` delivery."""
    if status.state == "inactive":
        raise NoDelivery("GitHub sends no deployment_status webhook for inactive statuses")
    return {
        "action": "created",
        "deployment_status": rest.status_json(status, repo, api),
        "deployment": rest.deployment_json(deployment, repo, api),
        "repository": rest.repository_json(repo, api),
        "sender": rest.user_json(sender, api),
    }


def delivery_headers(event: str, hook_id: int, repo: Repository) -> dict[str, str]:
    """The headers GitHub's Hookshot sends with every repository webhook delivery."""
    return {
        "Accept": "*/*",
        "Content-Type": "application/json",
        "User-Agent": f"GitHub-Hookshot/{HOOKSHOT_VERSION}",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-GitHub-Event": event,
        "X-GitHub-Hook-ID": str(hook_id),
        "X-GitHub-Hook-Installation-Target-ID": str(repo.id),
        "X-GitHub-Hook-Installation-Target-Type": "repository",
    }


def encode(payload: dict[str, Any]) -> bytes:
    """The raw body: compact JSON, as GitHub sends it."""
    return json.dumps(payload, separators=(",", ":")).encode()
