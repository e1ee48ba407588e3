"""What the follower does with a batch of changes: what the audit paths and the reporter do, in one go.

The same services, in the order the audit path keeps (Environment changes first):
1. Environment changes: `handle_audit_events` on "look again" events, as `k8s_audit` handles them (the
   gates ensured from the Environment read from the API; recomputed when a change withdrew what they
   allowed, e.g. a relationship removed or moved).
2. Rollout changes: the reporter (`report_events`: GitHub records the history), once per Rollout,
   unless `FOLLOW_REPORTS` is off;
3. then one recompute (one GitHub read per upstream) of the Environments governing those Rollouts (a
   candidate may now be allowed) and of those downstream of them in this cluster: a bake just recorded
   opens the downstream gates here at once, without waiting for GitHub's `deployment_status` webhook
   (which still reaches `github_webhook` and other clusters, and may arrive late or never);
4. last, with `ENVIRONMENT_STATUS`, the statuses of those Rollouts' pipelines (for the dashboard: after
   the gates, which a fan-out of many downstream Environments would otherwise wait for).
Each step that fails in a way that may pass names its changes for a retry; nothing is kept otherwise.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.audit import AuditEvent, look_again
from shared.errors import PartialFailure, StagegateError
from shared.follow import Change
from shared.github_delivery import kuberik_target
from shared.report import Target
from shared.views import Environment, RolloutGate
from stagegate.audit_service import AuditContext, handle_audit_events
from stagegate.kube import KubeConflict
from stagegate.logs import get_logger
from stagegate.recompute_service import RecomputeStore, Teller, governed_by, recompute
from stagegate.report_service import Limits, Recorder, ReportStore, report_events, rollout_statuses

log = get_logger("follower")

WHY = "stagegate follower: watched change"


@dataclass(frozen=True)
class FollowContext:
    """What a batch is handled with: the audit path's context, the reporter's GitHub and limits, and
    the namespaces stagegate may touch (empty: all)."""

    audit: AuditContext
    reports: ReportStore
    github: Recorder
    limits: Limits
    namespaces: Sequence[str] = ()
    report: bool = True
    """`FOLLOW_REPORTS`: run the reporter (off while kuberik's Go controller still records bakes)."""


@dataclass
class Handled:
    """One batch's outcome: a summary for the log, and the changes to try again later."""

    summary: dict[str, Any] = field(default_factory=dict)
    retry: set[Change] = field(default_factory=set)


def handle_changes(changes: Sequence[Change], ctx: FollowContext) -> Handled:
    """Act on a batch of changes (each object once); never raises: what failed is in `retry`."""
    handled = Handled()
    environments = [c for c in changes if c.route == "environment"]
    rollouts = [c for c in changes if c.route == "rollout"]
    if environments:
        _step(handled, "environments", environments, lambda: _environments(environments, ctx))
    if rollouts and ctx.report:
        _step(handled, "reports", rollouts, lambda: _reports(rollouts, ctx))
    if rollouts:
        _step(handled, "gates", rollouts, lambda: _gates(rollouts, ctx))
    if rollouts and ctx.limits.environment_status:
        _step(handled, "statuses", [], lambda: _statuses(rollouts, ctx))
    return handled


def _step(handled: Handled, name: str, changes: Sequence[Change], work: Callable[[], dict[str, Any]]) -> None:
    try:
        handled.summary[name] = work()
    except PartialFailure as exc:
        handled.summary[name] = {**exc.summary, "retry": str(exc)}
        handled.retry.update(changes)
    except StagegateError as exc:
        handled.summary[name] = {"error": str(exc)}
        handled.retry.update(changes)
        log.warning(f"follower: {name} failed; retried", extra={"fields": {"reason": str(exc)}})
    except Exception as exc:  # a defect must not stop the follower: logged whole, retried with backoff
        handled.summary[name] = {"error": f"unexpected {type(exc).__name__}"}
        handled.retry.update(changes)
        log.exception(f"follower: {name} failed unexpectedly; retried")


def _events(changes: Sequence[Change]) -> list[AuditEvent]:
    batch = uuid.uuid4().hex[:12]
    return [
        look_again(c.namespace, c.name, WHY, f"stagegate-follow-{batch}-{i}", c.route).event
        for i, c in enumerate(changes)
    ]


def _reports(rollouts: Sequence[Change], ctx: FollowContext) -> dict[str, Any]:
    limits = dataclasses.replace(ctx.limits, environment_status=False)  # written last, after the gates
    return report_events(_events(rollouts), _ListedOnce(ctx.reports), ctx.github, limits)


class _ListedOnce:
    """The report store for one batch: each namespace's Environments are listed once for all its Rollouts
    (after a list, a batch of a hundred Rollouts of one namespace costs one list, not a hundred). Rollouts
    and Leases are read as they are now, each time."""

    def __init__(self, store: ReportStore) -> None:
        self._store = store
        self._listed: dict[tuple[str, ...], list[Environment]] = {}

    def get_rollout(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._store.get_rollout(namespace, name)

    def list_environments(self, namespaces: Sequence[str] = ()) -> list[Environment]:
        key = tuple(namespaces)
        if key not in self._listed:
            self._listed[key] = self._store.list_environments(namespaces)
        return self._listed[key]

    def acquire_lease(
        self, owner: Mapping[str, Any], holder: str, seconds: int, now: datetime.datetime
    ) -> Any | None:
        return self._store.acquire_lease(owner, holder, seconds, now)

    def release_lease(self, lease: Any) -> None:
        self._store.release_lease(lease)


def _statuses(rollouts: Sequence[Change], ctx: FollowContext) -> dict[str, Any]:
    """Not retried: the resync and the next change write them again."""
    deadline = time.monotonic() + ctx.limits.deadline
    return rollout_statuses([(c.namespace, c.name) for c in rollouts], ctx.reports, ctx.github, deadline)


def _environments(changes: Sequence[Change], ctx: FollowContext) -> dict[str, Any]:
    audit = dataclasses.replace(ctx.audit, kube=_GatesListedOnce(ctx.audit.kube))
    return handle_audit_events(_events(changes), audit).to_json()


class _GatesListedOnce:
    """The store for one batch's Environment changes: each namespace's gates are listed once and kept up
    to date with this batch's own writes, so a batch of a hundred Environments of one namespace (after a
    list, when their gates are missing) costs one list of gates, not a hundred. Every write stays
    conditional; a conflict drops the namespace's list, so the retry reads it again. Anything else is
    read from the API as it is now."""

    def __init__(self, store: RecomputeStore) -> None:
        self._store = store
        self._gates: dict[str | None, list[RolloutGate]] = {}

    def list_gates(self, namespace: str | None) -> list[RolloutGate]:
        if namespace not in self._gates:
            self._gates[namespace] = self._store.list_gates(namespace)
        return list(self._gates[namespace])

    def create_gate(self, namespace: str, body: Any) -> RolloutGate:
        return self._written(namespace, lambda: self._store.create_gate(namespace, body))

    def patch_gate(self, namespace: str, name: str, patch: Any, resource_version: str) -> RolloutGate:
        return self._written(
            namespace, lambda: self._store.patch_gate(namespace, name, patch, resource_version)
        )

    def _written(self, namespace: str, write: Callable[[], RolloutGate]) -> RolloutGate:
        try:
            gate = write()
        except KubeConflict:
            self._gates.pop(namespace, None)
            raise
        if namespace in self._gates:
            self._gates[namespace] = [g for g in self._gates[namespace] if g.name != gate.name] + [gate]
        return gate

    def warn(self, env: Environment, reason: str, message: str) -> None:
        self._store.warn(env, reason, message)

    def tell(self, env: Environment, kind: str, reason: str, message: str) -> None:
        if isinstance(self._store, Teller):
            self._store.tell(env, kind, reason, message)

    def get_environment(self, namespace: str, name: str) -> Environment | None:
        return self._store.get_environment(namespace, name)

    def list_environments(self, namespaces: Sequence[str] = ()) -> list[Environment]:
        return self._store.list_environments(namespaces)

    def get_rollout(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._store.get_rollout(namespace, name)

    def list_rollouts(self, namespace: str | None) -> list[Mapping[str, Any]]:
        return self._store.list_rollouts(namespace)


def _gates(rollouts: Sequence[Change], ctx: FollowContext) -> dict[str, Any]:
    """Recompute, together, the Environments governing these Rollouts and those downstream of them."""
    upstream = ctx.audit.upstream
    if upstream is None:
        return {"skipped": "no GitHub credentials"}
    listed = ctx.audit.kube.list_environments(ctx.namespaces)
    keys = {(c.namespace, c.name) for c in rollouts}
    mine = [env for env in listed if (env.namespace, env.rollout_name) in keys]
    chosen: dict[str, Environment] = {env.key: env for env in mine if env.relationship is not None}
    for env in mine:
        target = Target.of(env)
        bake = kuberik_target(target.environment) if target is not None else None
        if target is not None and bake is not None:
            chosen.update((down.key, down) for down in governed_by(bake, target.repository, listed))
    report = recompute(
        list(chosen.values()),
        ctx.audit.kube,
        upstream,
        ctx.audit.attempts,
        ctx.audit.repositories,
        namespaces=ctx.namespaces,
    )
    summary = {
        "environments": sorted(chosen),
        "gates": [o.to_json() for o in report.outcomes],
        "errors": report.errors,
    }
    if report.retryable:
        raise PartialFailure(f"will retry: {', '.join(report.retryable)}", summary)
    return summary
