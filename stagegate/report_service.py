"""The reporter: make GitHub record a Rollout's history and bake states as kuberik's environment
controller records them (`shared.report`), so its `deployment_status` webhooks reach `github_webhook`.

One report of one Rollout:
1. read the Rollout and the Environments governing it (an event only says "look again");
2. hold the Rollout's report Lease, so concurrent reports (a redelivery, the resync, a second
   instance) never both create a deployment for one entry; then read the Rollout again, since a
   report that held the Lease before may have seen a newer one than step 1 did;
3. per Environment with a GitHub project: one GitHub read for every entry's commit, whatever the
   history's length; when a deployment is missing, one more read of just those commits right before
   creating (the Go controller, during a migration, does not take the Lease);
4. only the missing writes, oldest entry first, each once: a rate-limited or failed write raises
   `RetryableError` at once, so the transport that delivered the report retries it with its backoff
   (no sleeping here); what was written stays written and is found by the retry.
"""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.audit import AuditEvent, Routed, route
from shared.bake import CommitLookup
from shared.errors import InvalidRequest, PartialFailure, RetryableError, StagegateError
from shared.report import NewDeployment, ReportPlan, Target, plan_report, revisions
from shared.trust import RepositoryPolicy
from shared.views import Environment
from stagegate import metrics
from stagegate.logs import get_logger
from stagegate.recompute_service import ANY_REPOSITORY
from stagegate.settings import Settings
from stagegate.status_service import PipelineKey, PipelineReader, StatusStore, pipelines_of, update_statuses

log = get_logger("reporter")


class ReportStore(Protocol):
    """What a report reads in Kubernetes, and the Lease it holds (`stagegate.kube.KubeGates`)."""

    def get_rollout(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...
    def list_environments(self, namespaces: Sequence[str] = ()) -> list[Environment]: ...
    def acquire_lease(
        self, owner: Mapping[str, Any], holder: str, seconds: int, now: datetime.datetime
    ) -> Any | None: ...
    def release_lease(self, lease: Any) -> None: ...


class Recorder(Protocol):
    """Bake records on GitHub, read and written (`stagegate.github.GitHubDeployments`)."""

    calls: int
    writes: int

    def commit_deployments(
        self, repository: str, environment: str, revisions: Iterable[str]
    ) -> dict[str, CommitLookup]: ...
    def create_deployment(self, repository: str, body: Mapping[str, Any]) -> int: ...
    def create_status(self, repository: str, deployment_id: int, body: Mapping[str, Any]) -> None: ...


class Busy(RetryableError):
    """Another report of the same Rollout holds its Lease: this one is retried later."""


@dataclass(frozen=True)
class Limits:
    """How long a report may take and hold its Lease (seconds), and which repositories it may write."""

    deadline: float = 60.0
    lease: int = 120
    repositories: RepositoryPolicy = ANY_REPOSITORY
    environment_url: str | None = None
    """`REPORT_ENVIRONMENT_URL`: the template of the URL each status carries (`shared.report.URL_FIELDS`)."""
    environment_status: bool = False
    """`ENVIRONMENT_STATUS`: after reporting Rollout changes, update their Environments' statuses."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            settings.reporter_deadline_seconds,
            settings.report_lease_seconds,
            settings.github_repositories,
            settings.report_environment_url,
            settings.environment_status,
        )


@dataclass
class RolloutReport:
    """What one report did: the answer's and the log's summary."""

    rollout: str
    outcome: str = "recorded"
    environments: list[str] = field(default_factory=list)
    deployments: int = 0
    statuses: int = 0
    unchanged: int = 0
    skipped: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    reads: int = 0
    writes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "rollout": self.rollout,
            "outcome": self.outcome,
            "environments": self.environments,
            "created": {"deployments": self.deployments, "statuses": self.statuses},
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "refused": self.refused,
            "github": {"reads": self.reads, "writes": self.writes},
        }


def report_rollout(
    namespace: str,
    name: str,
    kube: ReportStore,
    github: Recorder,
    limits: Limits = Limits(),
    clock: Callable[[], float] = time.time,
) -> RolloutReport:
    """Make GitHub record the Rollout's history for every Environment that governs it."""
    started = time.monotonic()
    reads, writes = github.calls, github.writes
    report = RolloutReport(f"{namespace}/{name}")
    rollout = kube.get_rollout(namespace, name)
    governing = _governing(namespace, name, kube, limits.repositories, report) if rollout else []
    if rollout is None or not governing:
        report.outcome = "gone" if rollout is None else "not governed by an Environment with a GitHub project"
        return report
    now = datetime.datetime.fromtimestamp(clock(), datetime.UTC)
    lease = kube.acquire_lease(rollout, f"stagegate-reporter-{uuid.uuid4().hex[:12]}", limits.lease, now)
    if lease is None:
        raise Busy(f"another report of Rollout {namespace}/{name} is running; this one is retried later")
    try:
        rollout = kube.get_rollout(namespace, name)
        if rollout is None:
            report.outcome = "gone"
            return report
        for env, target in governing:
            _report_environment(
                env, target, rollout, github, started + limits.deadline, report, limits.environment_url
            )
    finally:
        kube.release_lease(lease)
        report.reads, report.writes = github.calls - reads, github.writes - writes
    if report.deployments == 0 and report.statuses == 0:
        report.outcome = "unchanged"
    return report


def _governing(
    namespace: str, name: str, kube: ReportStore, repositories: RepositoryPolicy, report: RolloutReport
) -> list[tuple[Environment, Target]]:
    found = []
    for env in kube.list_environments([namespace]):
        target = Target.of(env) if env.rollout_name == name else None
        if target is None:
            continue
        refusal = repositories.refusal(namespace, target.repository)
        if refusal:
            report.refused.append(f"{env.key}: {refusal}")
            log.warning("not reporting to a repository outside GITHUB_REPOSITORIES",
                        extra={"fields": {"environment": env.key, "reason": refusal}})  # fmt: skip
            continue
        report.environments.append(env.key)
        found.append((env, target))
    return found


def _report_environment(
    env: Environment,
    target: Target,
    rollout: Mapping[str, Any],
    github: Recorder,
    deadline: float,
    report: RolloutReport,
    url_template: str | None = None,
) -> None:
    wanted = revisions(rollout)
    lookups = github.commit_deployments(target.repository, target.environment, wanted) if wanted else {}
    plan = plan_report(env, rollout, lookups, url_template)
    if plan is None:
        return
    if plan.creates:
        # Read again just before creating: a deployment written since the first read is adopted.
        again = {w.entry.revision for w in plan.creates}
        fresh = github.commit_deployments(target.repository, target.environment, sorted(again))
        plan = plan_report(env, rollout, {**lookups, **fresh}, url_template) or plan
    report.unchanged += plan.recorded
    report.skipped += [f"{env.key} {s.entry}: {s.reason}" for s in plan.skipped]
    _write(env, plan, github, deadline, report)


def _write(
    env: Environment, plan: ReportPlan, github: Recorder, deadline: float, report: RolloutReport
) -> None:
    target = plan.target
    created: dict[int, int] = {}
    for done, write in enumerate(plan.writes):
        if time.monotonic() > deadline:
            raise RetryableError(
                f"report of {report.rollout} reached its deadline after {done} of {len(plan.writes)} "
                "writes; the rest follow when it is retried"
            )
        entry = write.entry
        where = {
            "rollout": report.rollout,
            "environment": env.key,
            "github_environment": target.environment,
            "entry": entry.id,
            "revision": entry.revision,
        }
        try:
            if isinstance(write, NewDeployment):
                created[entry.id] = github.create_deployment(target.repository, write.body)
                report.deployments += 1
                log.info("recorded a Rollout history entry as a GitHub deployment",
                         extra={"fields": {**where, "deployment": created[entry.id]}})  # fmt: skip
                continue
            deployment = write.deployment_id or created.get(entry.id)
            if deployment is None:
                continue  # its deployment was refused: already reported
            github.create_status(target.repository, deployment, write.body)
            report.statuses += 1
            lag = None if entry.since is None else round(time.time() - entry.since, 3)
            if lag is not None:
                metrics.report_lag(lag)
            log.info(
                f"bake state {write.body['state']} recorded on GitHub",
                extra={"fields": {**where, "deployment": deployment, "description": write.body["description"],
                                  "was": write.replaces or "nothing",
                                  **({"lagSeconds": lag} if lag is not None else {})}},
            )  # fmt: skip
        except InvalidRequest as exc:
            report.skipped.append(f"{env.key} entry {entry.id}: {exc}")


def report_events(
    events: Sequence[AuditEvent],
    kube: ReportStore,
    github: Recorder,
    limits: Limits = Limits(),
) -> dict[str, Any]:
    """Report each Rollout whose status an audit event says changed, once per Rollout, in order; then,
    with `limits.environment_status`, the statuses of their Environments."""
    started = time.monotonic()
    rollouts: dict[tuple[str, str], None] = {}
    for event in events:
        routed = route(event)
        if isinstance(routed, Routed) and routed.route == "rollout":
            rollouts.setdefault((routed.namespace, routed.name), None)
    summary = report_all(list(rollouts), kube, github, limits)
    if limits.environment_status and rollouts:
        summary["statuses"] = rollout_statuses(list(rollouts), kube, github, started + limits.deadline)
    return summary


def rollout_statuses(
    rollouts: Sequence[tuple[str, str]], kube: ReportStore, github: Recorder, deadline: float
) -> dict[str, Any]:
    """The statuses of the pipelines these Rollouts' Environments belong to: a Rollout's history shows
    in its Environment's status (and its siblings') at once, not only after GitHub delivers the report."""
    if not isinstance(kube, StatusStore) or not isinstance(github, PipelineReader):
        return {"skipped": "this store or reader does not write statuses"}
    listed = kube.list_environments(sorted({namespace for namespace, _ in rollouts}))
    changed = {
        key
        for env in listed
        if (env.namespace, env.rollout_name) in rollouts and (key := PipelineKey.of(env))
    }
    return update_statuses(
        pipelines_of(listed, lambda key: key in changed), kube, github, deadline=deadline
    ).to_json()


def report_all(
    rollouts: Sequence[tuple[str, str]],
    kube: ReportStore,
    github: Recorder,
    limits: Limits = Limits(),
    *,
    skip_busy: bool = False,
) -> dict[str, Any]:
    """Report every Rollout; one's failure does not stop the others. Retryable if any was.

    `skip_busy`: a Rollout whose report is running elsewhere is left to it (the resync does that; an
    event is retried instead, since the running report may have read the Rollout before the change).
    """
    reports: list[dict[str, Any]] = []
    errors: list[str] = []
    retry = False
    for namespace, name in rollouts:
        key = f"{namespace}/{name}"
        try:
            reports.append(report_rollout(namespace, name, kube, github, limits).to_json())
        except StagegateError as exc:
            if skip_busy and isinstance(exc, Busy):
                reports.append({"rollout": key, "outcome": "being reported by another run"})
                continue
            errors.append(f"{key}: {exc}")
            retry = retry or isinstance(exc, RetryableError)
            log.warning("a Rollout report failed", extra={"fields": {"rollout": key, "reason": str(exc)}})
    summary = {"rollouts": reports, "errors": errors}
    if retry:
        raise PartialFailure(f"{len(errors)} Rollout reports failed; retry", summary)
    return summary
