"""Scheduled recompute of every gate (Cloud Scheduler over HTTP or Pub/Sub).

`resync_http` requires `Authorization: Bearer $RESYNC_TOKEN`, unless `RESYNC_AUTH=platform` says the
platform lets only authorized callers through (Cloud Run IAM: Cloud Scheduler's OIDC token, checked
before the request arrives); `resync` is the CloudEvent target for a Pub/Sub topic the scheduler
publishes to (its message content is not read). With `RESYNC_REPORTS=true` it also records every
governed Rollout's history on GitHub first (the reporter's healer, as resync is the gates').
"""

from __future__ import annotations

from functools import partial
from typing import Any

import flask
import functions_framework

from stagegate.github import github_reader
from stagegate.http import Response, answer, install_middleware, require_bearer
from stagegate.kube import KubeGates, api_client
from stagegate.logs import get_logger
from stagegate.protection_service import Protection
from stagegate.report_service import Limits, report_all
from stagegate.resync_service import Reporter, resync
from stagegate.settings import Settings

MAX_BODY_BYTES = 1024 * 1024
"""Resync reads no body; Cloud Scheduler sends a few bytes, directly or in a Pub/Sub push."""

SETTINGS = Settings.from_env()
install_middleware(MAX_BODY_BYTES, SETTINGS.metrics_port)
KUBE = KubeGates(api_client(SETTINGS.kubeconfig), timeout=SETTINGS.github_deadline_seconds)
UPSTREAM = github_reader(SETTINGS, SETTINGS.github_deadline_seconds)
REPORTER: Reporter | None = (
    partial(report_all, kube=KUBE, github=UPSTREAM, limits=Limits.from_settings(SETTINGS), skip_busy=True)
    if SETTINGS.resync_reports
    else None
)
PROTECTION = (
    Protection(SETTINGS.protection_rules, SETTINGS.protection_max_runs) if SETTINGS.protection_rules else None
)
log = get_logger("resync")
if SETTINGS.resync_auth == "platform":
    log.info("RESYNC_AUTH=platform: resync_http checks no token; only the platform's invoker check guards it")


def _resync() -> dict[str, Any]:
    return resync(
        KUBE, UPSTREAM, SETTINGS.namespaces, SETTINGS.kube_conflict_retries,
        repositories=SETTINGS.github_repositories, reporter=REPORTER,
        statuses=SETTINGS.environment_status, protection=PROTECTION,
    )  # fmt: skip


@functions_framework.http
def resync_http(request: flask.Request) -> Response:
    """HTTP target: bearer token, then a full recompute; 503 when some Environment must be retried."""

    def handle() -> dict[str, Any]:
        if SETTINGS.resync_auth != "platform":
            require_bearer(request.headers.get("Authorization"), SETTINGS.resync_token, "RESYNC_TOKEN")
        return _resync()

    return answer(handle, "resync_http")


@functions_framework.cloud_event
def resync_event(event: Any) -> None:
    """CloudEvent target: raising on a retryable failure makes Pub/Sub deliver the tick again."""
    summary = _resync()
    log.info(
        "resync via CloudEvent",
        extra={"fields": {"cloudEventId": event["id"], "gates": len(summary["gates"])}},
    )
