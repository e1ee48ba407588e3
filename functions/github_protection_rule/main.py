"""GitHub `deployment_protection_rule` deliveries in, an answer to the held Actions job out.

stagegate's GitHub App is a custom deployment protection rule on the environments `PROTECTION_RULES`
names; GitHub posts here when a workflow job deploying to one starts. The delivery is verified and
bounded as `github_webhook`'s (`GITHUB_WEBHOOK_SECRET`, `GITHUB_WEBHOOK_MAX_BODY_BYTES`,
`GITHUB_WEBHOOK_DEADLINE_SECONDS`); the service answers the job (`stagegate.protection_service`).
"""

from __future__ import annotations

from typing import Any

import flask
import functions_framework

from stagegate.github import github_reader
from stagegate.http import Response, answer, install_middleware, read_body
from stagegate.protection_service import Protection, protection_request
from stagegate.settings import Settings

SETTINGS = Settings.from_env()
install_middleware(SETTINGS.github_max_body_bytes, SETTINGS.metrics_port)
GITHUB = github_reader(SETTINGS, SETTINGS.github_deadline_seconds)
PROTECTION = Protection(SETTINGS.protection_rules, SETTINGS.protection_max_runs)


@functions_framework.http
def github_protection_rule(request: flask.Request) -> Response:
    """GitHub App webhook target: signature, bounded body, bounded time, JSON summary."""

    def handle() -> dict[str, Any]:
        body = read_body(request, SETTINGS.github_max_body_bytes)
        return protection_request(dict(request.headers), body, SETTINGS, GITHUB, PROTECTION)

    return answer(handle, "github_protection_rule")
