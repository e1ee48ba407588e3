"""The kube-apiserver's batch-mode audit webhook in, durable messages out (Pub/Sub or EventBridge).

Authenticates like `k8s_audit_http` (bearer token), keeps only what the functions act on, publishes
each event, and Rollout status changes also to the reporter's transport when `REPORT_TRANSPORT` is
set; answers 5xx when publishing failed so the apiserver sends the batch again.
"""

from __future__ import annotations

from typing import Any

import flask
import functions_framework

from shared.audit import parse_audit_json
from stagegate.bridge import bridge, report_transport_from, transport_from
from stagegate.http import Response, answer, install_middleware, read_body, require_bearer
from stagegate.settings import Settings

SETTINGS = Settings.from_env()
install_middleware(SETTINGS.audit_max_body_bytes, SETTINGS.metrics_port)
TRANSPORT = transport_from(SETTINGS)
REPORTS = report_transport_from(SETTINGS)


@functions_framework.http
def audit_bridge(request: flask.Request) -> Response:
    """Bearer token, bounded body, publish the relevant events, JSON summary."""

    def handle() -> dict[str, Any]:
        require_bearer(
            request.headers.get("Authorization"), SETTINGS.audit_webhook_token, "AUDIT_WEBHOOK_TOKEN"
        )
        events = parse_audit_json(read_body(request, SETTINGS.audit_max_body_bytes))
        return bridge(events, TRANSPORT, REPORTS).to_json()

    return answer(handle, "audit_bridge")
