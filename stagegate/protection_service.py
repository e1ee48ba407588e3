"""Answer the GitHub Actions jobs that stagegate's deployment protection rule holds.

Two ways in, no state kept between them:
- `on_protection_rule`: GitHub's `deployment_protection_rule` delivery when a job starts. The job is
  approved or rejected at once when the upstream's bake already decided, otherwise a status report
  says what it waits for and the job stays held.
- `answer_held`: when a bake result arrives (`github_webhook`'s `deployment_status`) and on every
  resync, the held runs are found through GitHub's API (`stagegate.actions_runs`) and answered once
  the bake decided. This is what answers a job whose delivery was lost: GitHub never redelivers it.

Status reports go only with the delivery (GitHub keeps at most 10 per deployment; a resync every few
minutes would use them up). A 422 on answering means the run no longer waits on this rule (a duplicate
delivery or another replica answered first): nothing to do, and said so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from shared.bake import CommitLookup
from shared.errors import InvalidRequest, PermanentError, RetryableError
from shared.github_delivery import BakeTarget, Delivery, verify_delivery
from shared.protection import (
    Decision,
    ProtectionRequest,
    ProtectionRule,
    ProtectionRules,
    decide,
    unconfigured,
)
from stagegate import metrics
from stagegate.actions_runs import RestClient, answer_run, waiting_runs
from stagegate.http import within
from stagegate.logs import get_logger
from stagegate.settings import Settings

log = get_logger("protection")

MAX_RUNS = 50
"""Held runs looked at per rule and call by default (`PROTECTION_MAX_RUNS`): each costs one read and
at most one write; the rest are answered by the next bake result or resync."""


@runtime_checkable
class ProtectionGitHub(RestClient, Protocol):
    """What the answers read and write on GitHub (`stagegate.github.GitHubDeployments`)."""

    def commit_deployments(
        self, repository: str, environment: str, revisions: Iterable[str]
    ) -> dict[str, CommitLookup]:
        """Each revision's commit and its trusted deployments to `environment`."""


@dataclass(frozen=True)
class Protection:
    """The configured rules and how many held runs one call answers at most."""

    rules: ProtectionRules
    max_runs: int = MAX_RUNS


def protection_request(
    headers: Mapping[str, str],
    body: bytes,
    settings: Settings,
    github: ProtectionGitHub,
    protection: Protection,
) -> dict[str, Any]:
    """Verify a raw delivery and answer it within the deadline: the whole job of the entry point."""
    delivery = verify_delivery(headers, body, settings.github_webhook_secrets)
    if delivery.event == "ping":
        return {"delivery": delivery.delivery_id, "status": "pong", "zen": delivery.payload.get("zen")}
    if delivery.event != "deployment_protection_rule":
        reason = f"event {delivery.event!r} is not a deployment_protection_rule"
        log.info(f"delivery ignored: {reason}")
        return {"delivery": delivery.delivery_id, "status": "ignored", "reason": reason}
    answered = within(
        settings.github_deadline_seconds, lambda: on_protection_rule(delivery, github, protection)
    )
    return {"delivery": delivery.delivery_id, **answered}


def on_protection_rule(
    delivery: Delivery, github: ProtectionGitHub, protection: Protection
) -> dict[str, Any]:
    """Answer one `deployment_protection_rule` delivery: a review, or a status report while waiting."""
    if delivery.action != "requested":
        return {"status": "ignored", "reason": f"action {delivery.action!r} asks for no answer"}
    request = ProtectionRequest.from_payload(delivery.payload)
    rule = protection.rules.rule_for(request.repository, request.environment)
    if rule is None:
        decision = unconfigured(request.repository, request.environment)
    else:
        lookup = github.commit_deployments(request.repository, rule.upstream_environment, [request.sha])
        decision = decide(rule, request.sha, lookup[request.sha])
    answered = _answer(github, request.repository, request.environment, request.run_id, request.sha, decision)
    return {"run": request.run_id, "environment": request.environment, **answered}


def answer_held(
    protection: Protection,
    repository: str,
    upstream: BakeTarget,
    github: ProtectionGitHub,
    sha: str | None = None,
) -> dict[str, Any]:
    """Answer the runs held by every rule waiting on `upstream` of `repository` (of commit `sha`, when
    given) whose bake has decided; one failing rule does not stop the others."""
    answered: list[dict[str, Any]] = []
    errors: list[str] = []
    more: list[str] = []
    for rule in protection.rules.waiting_on(repository, upstream):
        try:
            answered += _answer_rule(rule, github, sha, protection.max_runs, more)
        except (RetryableError, PermanentError) as exc:
            log.warning("held runs not answered", extra={"fields": {"rule": str(rule), "reason": str(exc)}})
            errors.append(f"{rule}: {exc}")
    summary: dict[str, Any] = {"answered": answered, "errors": errors}
    if more:
        summary["more"] = (
            f"more runs wait on {', '.join(more)} than {protection.max_runs}; the next call answers them"
        )
    return summary


def answer_all(protection: Protection, github: ProtectionGitHub) -> dict[str, Any]:
    """The resync's part: every held run of every rule (a lost delivery is answered here)."""
    answered: list[dict[str, Any]] = []
    errors: list[str] = []
    upstreams = sorted(
        {(r.repository, r.upstream.name, r.upstream.environment) for r in protection.rules.rules}
    )
    for repository, name, environment in upstreams:
        done = answer_held(protection, repository, BakeTarget(name, environment), github)
        answered += done["answered"]
        errors += done["errors"]
    return {"answered": answered, "errors": errors}


def _answer_rule(
    rule: ProtectionRule, github: ProtectionGitHub, sha: str | None, limit: int, more: list[str]
) -> list[dict[str, Any]]:
    runs, truncated = waiting_runs(github, rule.repository, rule.environment, sha, limit)
    if truncated:
        more.append(rule.environment)
    if not runs:
        return []
    lookups = github.commit_deployments(rule.repository, rule.upstream_environment, {r.sha for r in runs})
    answered = []
    for run in runs:
        decision = decide(rule, run.sha, lookups[run.sha])
        if decision.verdict != "waiting":
            said = _answer(github, rule.repository, rule.environment, run.run_id, run.sha, decision)
            answered.append({"run": run.run_id, **said})
    return answered


def _answer(
    github: ProtectionGitHub, repository: str, environment: str, run_id: int, sha: str, decision: Decision
) -> Mapping[str, Any]:
    fields = {"repository": repository, "environment": environment, "run": run_id, "sha": sha}
    try:
        answer_run(github, repository, run_id, decision.body(environment))
    except InvalidRequest as exc:
        metrics.protection_answer("not_waiting")
        log.info(
            "protection rule not answered: GitHub says the run does not wait on it (already answered?)",
            extra={"fields": {**fields, "verdict": decision.verdict, "reason": str(exc)}},
        )
        return {"status": "not waiting", "verdict": decision.verdict, "comment": decision.comment}
    metrics.protection_answer(decision.verdict)
    said = "status report" if decision.verdict == "waiting" else decision.verdict
    log.info(
        f"protection rule {said}: {decision.comment}",
        extra={"fields": {**fields, "verdict": decision.verdict}},
    )
    return {"status": decision.verdict, "comment": decision.comment}
