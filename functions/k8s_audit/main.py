"""Kubernetes audit events in, blocking RolloutGates out.

`k8s_audit_http` is the kube-apiserver's audit webhook backend (in blocking mode the gate exists
before the Environment's creation is acknowledged); `k8s_audit` takes the same events from Pub/Sub.
Each entry point only authenticates, parses, calls the service and answers.
"""

from __future__ import annotations

from typing import Any

import flask
import functions_framework

from shared.audit import parse_audit_json
from stagegate.audit_service import AuditContext, handle_audit_events
from stagegate.http import Response, answer, read_body, require_bearer, within
from stagegate.kube import KubeGates, api_client
from stagegate.pubsub import consume
from stagegate.recompute_service import upstream_from
from stagegate.settings import Settings

SETTINGS = Settings.from_env()
CONTEXT = AuditContext(
    kube=KubeGates(api_client(SETTINGS.kubeconfig), timeout=SETTINGS.audit_deadline_seconds),
    upstream=upstream_from(SETTINGS, SETTINGS.audit_deadline_seconds),
    attempts=SETTINGS.kube_conflict_retries,
    repositories=SETTINGS.github_repositories,
)


def _ensure_gates(body: bytes) -> dict[str, Any]:
    return handle_audit_events(parse_audit_json(body), CONTEXT).to_json()


@functions_framework.http
def k8s_audit_http(request: flask.Request) -> Response:
    """Audit webhook target: bearer token, bounded body, bounded time, JSON summary."""

    def handle() -> dict[str, Any]:
        require_bearer(
            request.headers.get("Authorization"), SETTINGS.audit_webhook_token, "AUDIT_WEBHOOK_TOKEN"
        )
        body = read_body(request, SETTINGS.audit_max_body_bytes)
        return dict(within(SETTINGS.audit_deadline_seconds, lambda: _ensure_gates(body)))

    return answer(handle, "k8s_audit_http")


@functions_framework.cloud_event
def k8s_audit(event: Any) -> None:
    """Pub/Sub target: redelivered on retryable failures, acknowledged otherwise."""
    consume(event, _ensure_gates, "k8s_audit")
