"""GitHub `deployment_status` webhooks in, recomputed downstream RolloutGates out.

The entry point reads the body and hands it, with the headers, to the service, which verifies the
signature, parses and recomputes within a bounded time (handing what it could not reach in time to the
audit transport, `BRIDGE_TRANSPORT`, when one is configured); `answer` turns the outcome into a
response.
"""

from __future__ import annotations

from typing import Any

import flask
import functions_framework

from stagegate.github import github_reader
from stagegate.handoff import handoff_transport
from stagegate.http import Response, answer, install_middleware, read_body
from stagegate.kube import KubeGates, api_client
from stagegate.settings import Settings
from stagegate.webhook_service import github_request

SETTINGS = Settings.from_env()
install_middleware(SETTINGS.github_max_body_bytes, SETTINGS.metrics_port)
KUBE = KubeGates(api_client(SETTINGS.kubeconfig), timeout=SETTINGS.github_deadline_seconds)
UPSTREAM = github_reader(SETTINGS, SETTINGS.github_deadline_seconds)
HANDOFF = handoff_transport(SETTINGS)


@functions_framework.http
def github_webhook(request: flask.Request) -> Response:
    """GitHub webhook target: signature, bounded body, bounded time, JSON summary."""

    def handle() -> dict[str, Any]:
        body = read_body(request, SETTINGS.github_max_body_bytes)
        return github_request(dict(request.headers), body, SETTINGS, KUBE, UPSTREAM, HANDOFF)

    return answer(handle, "github_webhook")
