"""AWS Lambda entry points: the audit consumer behind EventBridge (and SQS), the audit consumer behind a
CloudWatch Logs subscription (EKS, where the apiserver's audit webhook cannot be configured), the GitHub
webhook behind a function URL or API Gateway, and the reporter behind an SQS FIFO queue (one message
group per Rollout). The handlers are the Functions Framework ones; only the envelope is AWS's. With
`REPORT_TRANSPORT` set, the CloudWatch Logs consumer also hands Rollout status changes to the reporter's
transport; with `BRIDGE_TRANSPORT` set, the GitHub webhook hands the Environments a revocation could not
reach in time to the EventBridge bus the audit consumer reads. Secrets are not in the function's
configuration: `load_secrets` reads them at cold start from where `*_SECRET_ARN` point (Secrets Manager
or SSM), before the settings are read."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from shared.audit import AuditEvent, parse_audit_document, parse_audit_json
from shared.errors import RetryableError
from stagegate.audit_service import AuditContext, handle_audit_events
from stagegate.aws_secrets import load_secrets
from stagegate.bridge import hand_off, report_transport_from
from stagegate.cloudwatch_logs import consume_cloudwatch_logs
from stagegate.github import GitHubDeployments, github_reader
from stagegate.handoff import handoff_transport
from stagegate.http import answer
from stagegate.kube import KubeGates, api_client
from stagegate.lambda_adapter import consume_eventbridge, consume_sqs_fifo, http_request, http_response
from stagegate.protection_service import Protection, protection_request
from stagegate.recompute_service import upstream_from
from stagegate.report_service import Limits, report_events
from stagegate.settings import CREDENTIALS, ConfigError, Settings
from stagegate.webhook_service import github_request

load_secrets()
SETTINGS = Settings.from_env()
KUBE = KubeGates(api_client(SETTINGS.kubeconfig), timeout=SETTINGS.audit_deadline_seconds)
UPSTREAM = upstream_from(SETTINGS, SETTINGS.github_deadline_seconds)
CONTEXT = AuditContext(
    KUBE, UPSTREAM, SETTINGS.kube_conflict_retries, repositories=SETTINGS.github_repositories
)
REPORTS = report_transport_from(SETTINGS)
HANDOFF = handoff_transport(SETTINGS)


def k8s_audit_eventbridge(event: Mapping[str, Any], context: object) -> dict[str, Any]:
    """EventBridge rule target (or SQS event source): ensure/recompute gates for each audit event."""
    return consume_eventbridge(
        event,
        lambda detail: handle_audit_events(parse_audit_document(detail, SETTINGS.audit_max_events), CONTEXT),
    )


def k8s_audit_cloudwatch(event: Mapping[str, Any], context: object) -> dict[str, Any]:
    """CloudWatch Logs subscription target (EKS audit log streams, invoked asynchronously): ensure and
    recompute gates for the audit events, hand Rollout status changes to the reporter; raises when a retry
    may help (see `stagegate.cloudwatch_logs`)."""
    return consume_cloudwatch_logs(
        event, SETTINGS.audit_max_body_bytes, SETTINGS.audit_max_events, _gates_and_reports
    )


def _gates_and_reports(events: Sequence[AuditEvent]) -> dict[str, Any]:
    """Hand Rollout status changes to the reporter's transport, then ensure and recompute the gates.
    Unlike the blocking webhook, which only logs a failed hand-off, this fails the delivery so Lambda runs
    it again: nothing waits for this answer, the gate work is idempotent, and SQS FIFO deduplication drops
    a copy sent within the last five minutes (the retries come after one and three minutes)."""
    handed = hand_off(events, REPORTS)
    summary = handle_audit_events(events, CONTEXT).to_json()
    if "hand_off_error" in handed:
        raise RetryableError(f"Rollout changes were not handed to the reporter: {handed['hand_off_error']}")
    return {**summary, **handed}


def github_webhook(event: Mapping[str, Any], context: object) -> dict[str, Any]:
    """Function URL / HTTP API target for GitHub webhooks."""

    def handle() -> dict[str, Any]:
        if UPSTREAM is None:
            raise ConfigError(f"{CREDENTIALS} is required to read bake results from GitHub")
        headers, body = http_request(event, SETTINGS.github_max_body_bytes)
        return github_request(headers, body, SETTINGS, KUBE, UPSTREAM, HANDOFF)

    return http_response(answer(handle, "github_webhook"))


def github_protection_rule(event: Mapping[str, Any], context: object) -> dict[str, Any]:
    """Function URL / HTTP API target for the GitHub App's `deployment_protection_rule` webhooks."""

    def handle() -> dict[str, Any]:
        headers, body = http_request(event, SETTINGS.github_max_body_bytes)
        protection = Protection(SETTINGS.protection_rules, SETTINGS.protection_max_runs)
        return protection_request(headers, body, SETTINGS, _recorder(), protection)

    return http_response(answer(handle, "github_protection_rule"))


def reporter_sqs(event: Mapping[str, Any], context: object) -> dict[str, Any]:
    """SQS FIFO event source (ReportBatchItemFailures): record each Rollout's history on GitHub."""
    github = _recorder()
    limits = Limits.from_settings(SETTINGS)
    return consume_sqs_fifo(
        event,
        lambda body: report_events(parse_audit_json(body, SETTINGS.audit_max_events), KUBE, github, limits),
    )


@functools.cache
def _recorder() -> GitHubDeployments:
    """The reporter's GitHub client, made on first use: the other handlers of this package may run
    without GitHub credentials, the reporter cannot (`ConfigError` names what is missing)."""
    return github_reader(SETTINGS, SETTINGS.github_deadline_seconds)
