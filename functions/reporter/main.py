"""Rollout history in, GitHub deployments and bake statuses out, as kuberik's environment controller
records them (`stagegate.report_service`); GitHub then sends `deployment_status` to `github_webhook`.

`reporter` is the CloudEvent target of the reporter's Pub/Sub push subscription, ordered by Rollout: a
message is one audit Event about a Rollout status write (from `audit_bridge` or `k8s_audit_http`, with
`REPORT_TRANSPORT=pubsub`). On GKE it also serves the Logging sink's unordered subscription, whose
messages are Cloud Audit Logs entries (Environment writes among them, which it ignores). A retryable
failure (a GitHub rate limit or outage, another report of the Rollout running) is raised, so Pub/Sub
delivers the message again with the subscription's backoff.
`reporter_http` takes an audit EventList over HTTP (bearer `AUDIT_WEBHOOK_TOKEN`) for local use and
answers 503 when something must be retried. It needs GitHub credentials with "Deployments: write".
"""

from __future__ import annotations

from typing import Any

import flask
import functions_framework

from shared.audit import parse_audit_json
from stagegate.github import github_reader
from stagegate.http import Response, answer, install_middleware, read_body, require_bearer
from stagegate.kube import KubeGates, api_client
from stagegate.pubsub import consume, push_body_limit
from stagegate.report_service import Limits, report_events
from stagegate.settings import Settings

SETTINGS = Settings.from_env()
install_middleware(push_body_limit(SETTINGS.audit_max_body_bytes), SETTINGS.metrics_port)
KUBE = KubeGates(api_client(SETTINGS.kubeconfig), timeout=SETTINGS.github_deadline_seconds)
GITHUB = github_reader(SETTINGS, SETTINGS.github_deadline_seconds)
LIMITS = Limits.from_settings(SETTINGS)


def _report(body: bytes) -> dict[str, Any]:
    return report_events(parse_audit_json(body, SETTINGS.audit_max_events), KUBE, GITHUB, LIMITS)


@functions_framework.http
def reporter_http(request: flask.Request) -> Response:
    """Bearer token, bounded body, one report per Rollout named, JSON summary."""

    def handle() -> dict[str, Any]:
        require_bearer(
            request.headers.get("Authorization"), SETTINGS.audit_webhook_token, "AUDIT_WEBHOOK_TOKEN"
        )
        return _report(read_body(request, SETTINGS.audit_max_body_bytes))

    return answer(handle, "reporter_http")


@functions_framework.cloud_event
def reporter(event: Any) -> None:
    """Pub/Sub target: redelivered on retryable failures, acknowledged otherwise."""
    consume(event, _report, "reporter")
