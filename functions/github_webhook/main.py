"""GitHub `deployment_status` webhooks in, recomputed downstream RolloutGates out.

The entry point verifies the signature, parses, hands the delivery to the service within a bounded
time and answers; everything else lives in `stagegate`.
"""

from __future__ import annotations

from typing import Any

import flask
import functions_framework

from shared.github_delivery import verify_delivery
from stagegate.github import GitHubDeployments, github_client
from stagegate.http import Response, answer, read_body, within
from stagegate.kube import KubeGates, api_client
from stagegate.settings import Settings
from stagegate.webhook_service import on_delivery

SETTINGS = Settings.from_env()
KUBE = KubeGates(api_client(SETTINGS.kubeconfig), timeout=SETTINGS.github_deadline_seconds)
UPSTREAM = GitHubDeployments(
    github_client(SETTINGS.require_github_token(), SETTINGS.github_api_url, SETTINGS.github_deadline_seconds)
)


@functions_framework.http
def github_webhook(request: flask.Request) -> Response:
    """GitHub webhook target: signature, bounded body, bounded time, JSON summary."""

    def handle() -> dict[str, Any]:
        body = read_body(request, SETTINGS.github_max_body_bytes)
        delivery = verify_delivery(dict(request.headers), body, SETTINGS.github_webhook_secrets)
        return dict(
            within(
                SETTINGS.github_deadline_seconds,
                lambda: on_delivery(delivery, KUBE, UPSTREAM, SETTINGS.namespaces),
            )
        )

    return answer(handle, "github_webhook")
