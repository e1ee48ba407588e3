"""Kubernetes audit events in, blocking RolloutGates out.

`k8s_audit_http` is the kube-apiserver's audit webhook backend (in blocking mode the gate exists
before the Environment's creation is acknowledged); `k8s_audit` takes the same events from Pub/Sub,
and on GKE the Cloud Audit Logs entries a Logging sink publishes (`shared.cloud_audit_log`).
Each entry point only authenticates, parses, calls the service and answers. With `REPORT_TRANSPORT`
set, `k8s_audit_http` also hands Rollout status changes to the reporter's transport (the reporter
talks to GitHub, which the apiserver must not wait for). A delivery of more than
`AUDIT_MAX_EVENTS` events is refused whole; the webhook's work runs in `LANES` (see
`stagegate.audit_service.handle_audit_delivery`), so a backlog cannot delay a create's gate.
"""

from __future__ import annotations

import time
from typing import Any

import flask
import functions_framework

from shared.audit import parse_audit_json
from stagegate.audit_service import AuditContext, AuditLanes, handle_audit_delivery, handle_audit_events
from stagegate.bridge import hand_off, report_transport_from
from stagegate.http import Response, answer, install_middleware, read_body, require_bearer
from stagegate.kube import KubeGates, api_client
from stagegate.pubsub import consume, push_body_limit
from stagegate.recompute_service import upstream_from
from stagegate.settings import Settings

SETTINGS = Settings.from_env()
# A Pub/Sub push carries the message base64-encoded: `k8s_audit` needs a little more room than
# `k8s_audit_http`, which `read_body` holds to AUDIT_MAX_BODY_BYTES exactly.
install_middleware(push_body_limit(SETTINGS.audit_max_body_bytes), SETTINGS.metrics_port)
CONTEXT = AuditContext(
    kube=KubeGates(api_client(SETTINGS.kubeconfig), timeout=SETTINGS.audit_deadline_seconds),
    upstream=upstream_from(SETTINGS, SETTINGS.audit_deadline_seconds),
    attempts=SETTINGS.kube_conflict_retries,
    repositories=SETTINGS.github_repositories,
)
LANES = AuditLanes.default()
REPORTS = report_transport_from(SETTINGS)


def _ensure_gates(body: bytes) -> dict[str, Any]:
    return handle_audit_events(parse_audit_json(body, SETTINGS.audit_max_events), CONTEXT).to_json()


@functions_framework.http
def k8s_audit_http(request: flask.Request) -> Response:
    """Audit webhook target: bearer token, bounded body, bounded time, JSON summary."""

    def handle() -> dict[str, Any]:
        started = time.monotonic()
        require_bearer(
            request.headers.get("Authorization"), SETTINGS.audit_webhook_token, "AUDIT_WEBHOOK_TOKEN"
        )
        with LANES.admission(request.content_length) as admission:
            body = read_body(request, SETTINGS.audit_max_body_bytes)
            events = parse_audit_json(body, SETTINGS.audit_max_events)
            handed = hand_off(events, REPORTS)
            summary = handle_audit_delivery(
                events, CONTEXT, LANES, SETTINGS.audit_deadline_seconds, started, admission
            ).to_json()
            return {**summary, **handed}

    return answer(handle, "k8s_audit_http")


@functions_framework.cloud_event
def k8s_audit(event: Any) -> None:
    """Pub/Sub target: redelivered on retryable failures, acknowledged otherwise."""
    consume(event, _ensure_gates, "k8s_audit")
