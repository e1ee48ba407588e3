"""Write the Environment `.status` kuberik's rollout-dashboard reads (`shared.env_status`).

Work is grouped by pipeline: the Environments of one deployment name in one namespace and repository.
GitHub is asked once per repository and deployment name, whatever the namespaces (the newest records
of every environment of the name, with their statuses, and the environments of the name among the
repository's newest deployments; a second request only when that finds one not asked for); Rollouts
and gates are listed once per namespace (or for the cluster). Each status is written whole to the
`status` subresource only when something shown changed, conditional on the Environment's
`resourceVersion`; on a conflict the Environment is read again and its status computed again. Gates
never wait on this: callers update statuses after their gate writes, writes fan out and stop at the
caller's deadline, and a failure here is reported and logged, never raised past the caller's gates.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from shared.bake import DeploymentRecord
from shared.env_status import (
    Observation,
    Pipeline,
    compute_status,
    environments_to_ask,
    history_limit,
    observe,
    shown_environments,
    updated_status,
)
from shared.errors import PermanentError, RetryableError
from shared.upstream import deployment_name
from shared.views import Environment, RolloutGate
from stagegate.fanout import fan_out
from stagegate.github import PipelineRecords
from stagegate.kube import KubeConflict
from stagegate.logs import get_logger
from stagegate.recompute_service import listing_scopes

log = get_logger("status")

MAX_PER_ENVIRONMENT = 100
"""Records read per environment at most (twice the longest history kept, for duplicates of an entry)."""
ATTEMPTS = 3


@runtime_checkable
class StatusStore(Protocol):
    def list_rollouts(self, namespace: str | None) -> list[Mapping[str, Any]]: ...
    def list_gates(self, namespace: str | None) -> list[RolloutGate]: ...
    def get_environment(self, namespace: str, name: str) -> Environment | None: ...
    def replace_environment_status(self, raw: Mapping[str, Any], status: Mapping[str, Any]) -> None: ...


@runtime_checkable
class PipelineReader(Protocol):
    def pipeline_records(
        self, repository: str, deployment_name: str, environments: Iterable[str], per_environment: int
    ) -> PipelineRecords: ...


@dataclass(frozen=True, slots=True, order=True)
class PipelineKey:
    """One pipeline in one namespace: repository (lower case), deployment name (`kuberik/<name>`)."""

    namespace: str
    repository: str
    name: str

    @classmethod
    def of(cls, env: Environment) -> PipelineKey | None:
        if not env.project or not env.environment:
            return None
        return cls(env.namespace, env.project.lower(), deployment_name(env))


@dataclass
class StatusReport:
    """What an update did: Environments whose status was written, left as it was, or failed."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    github_requests: int = 0
    discovered: set[str] = field(default_factory=set)
    """Environments of a name found among GitHub's newest deployments that nothing here named."""
    left: list[str] = field(default_factory=list)
    """Environments not reached before the deadline."""

    def to_json(self) -> dict[str, Any]:
        return {
            "written": self.written,
            "unchanged": len(self.unchanged),
            "errors": self.errors,
            "githubRequests": self.github_requests,
            "discovered": sorted(self.discovered),
            "left": self.left,
        }


def now_rfc3339() -> str:
    """This process's time, for `lastStatusChangeTime` (a record of when, never a decision)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pipelines_of(
    environments: Iterable[Environment], wanted: Callable[[PipelineKey], bool] = lambda _: True
) -> dict[PipelineKey, list[Environment]]:
    """The Environments grouped by pipeline, only the pipelines `wanted`."""
    groups: dict[PipelineKey, list[Environment]] = {}
    for env in environments:
        key = PipelineKey.of(env)
        if key is not None and wanted(key):
            groups.setdefault(key, []).append(env)
    return dict(sorted(groups.items()))


def update_statuses(
    groups: Mapping[PipelineKey, Sequence[Environment]],
    kube: StatusStore,
    github: PipelineReader,
    named: Iterable[str] = (),
    now: Callable[[], str] = now_rfc3339,
    deadline: float | None = None,
    scope: Sequence[str] = (),
) -> StatusReport:
    """Update the status of every Environment of `groups`; `named`: environments a delivery named,
    which may be known only to GitHub (another cluster's). GitHub is asked once per repository and
    deployment name, whatever the namespaces; Rollouts and gates are listed per namespace, or once for
    the cluster when many namespaces are involved and `scope` (stagegate's namespaces) is empty. No
    write starts after `deadline` (`time.monotonic()`): those are left to the next update or the resync."""
    report = StatusReport()
    named = tuple(named)
    namespaces = {key.namespace for key in groups}
    try:
        rollouts, gates = _listed(namespaces, scope, kube)
    except (RetryableError, PermanentError) as exc:
        _failed([env.key for members in groups.values() for env in members], exc, report)
        return report
    by_name: dict[tuple[str, str], dict[PipelineKey, Sequence[Environment]]] = {}
    for key, members in groups.items():
        by_name.setdefault((key.repository, key.name), {})[key] = members
    writes: list[tuple[Environment, Observation]] = []
    for (repository, name), pipelines in by_name.items():
        try:
            records = _read(repository, name, pipelines, rollouts, github, named, report)
        except (RetryableError, PermanentError) as exc:
            _failed([env.key for members in pipelines.values() for env in members], exc, report)
            continue
        for key, members in pipelines.items():
            seen = observe(Pipeline(name, tuple(members), rollouts.get(key.namespace, {}), records))
            writes += [(env, seen) for env in members]
    done = fan_out(
        writes, lambda w: _write(w[0], w[1], gates.get(w[0].namespace, []), kube, now, report), deadline
    )
    for item in done:
        env = item.item[0]
        if not item.started:
            report.left.append(env.key)
        elif isinstance(item.error, RetryableError | PermanentError):
            _failed([env.key], item.error, report)
        elif item.error is not None:
            raise item.error
    if report.left:
        log.warning(
            "Environment statuses left to the next update: no time left",
            extra={"fields": {"environments": len(report.left)}},
        )
    return report


def _listed(
    namespaces: set[str], scope: Sequence[str], kube: StatusStore
) -> tuple[dict[str, dict[str, Mapping[str, Any]]], dict[str, list[RolloutGate]]]:
    """Rollouts by namespace and name, and gates by namespace, listed as `update_statuses` says."""
    where = listing_scopes(namespaces, scope)
    rollouts: dict[str, dict[str, Mapping[str, Any]]] = {}
    gates: dict[str, list[RolloutGate]] = {}
    for namespace in where:
        for rollout in kube.list_rollouts(namespace):
            meta = rollout.get("metadata") or {}
            rollouts.setdefault(meta.get("namespace") or namespace or "", {})[meta.get("name", "")] = rollout
        for gate in kube.list_gates(namespace):
            gates.setdefault(gate.namespace, []).append(gate)
    return rollouts, gates


def _failed(keys: Sequence[str], exc: Exception, report: StatusReport) -> None:
    for key in keys:
        report.errors[key] = str(exc)
    log.warning(
        "Environment status not updated", extra={"fields": {"environments": keys, "reason": str(exc)}}
    )


def _read(
    repository: str,
    name: str,
    pipelines: Mapping[PipelineKey, Sequence[Environment]],
    rollouts: Mapping[str, Mapping[str, Mapping[str, Any]]],
    github: PipelineReader,
    named: Iterable[str],
    report: StatusReport,
) -> dict[str, tuple[DeploymentRecord, ...]]:
    """GitHub's records of every environment any of these pipelines needs: one request (two when the
    repository's newest deployments show an environment of the name nothing here named)."""
    members = [env for group in pipelines.values() for env in group]
    known = set(named).union(*(shown_environments(env) for env in members))
    ask = environments_to_ask(name, members, known)
    own = [rollouts.get(env.namespace, {}).get(env.rollout_name) for env in members]
    per_environment = min(MAX_PER_ENVIRONMENT, 2 * max((history_limit(r) for r in own), default=10))
    answer = github.pipeline_records(repository, name, ask, per_environment)
    report.github_requests += 1
    records = dict(answer.records)
    if answer.discovered:
        report.discovered |= {f"{name}/{e}" for e in answer.discovered}
        more = github.pipeline_records(repository, name, answer.discovered, per_environment)
        report.github_requests += 1
        records.update(more.records)
    return records


def _write(
    env: Environment,
    seen: Observation,
    gates: Sequence[RolloutGate],
    kube: StatusStore,
    now: Callable[[], str],
    report: StatusReport,
) -> None:
    current: Environment | None = env
    for _ in range(ATTEMPTS):
        if current is None:
            return  # deleted meanwhile: nothing to show
        computed = compute_status(current, seen, _gate_of(current, gates))
        status = updated_status(current.raw.get("status"), computed, now())
        if status is None:
            report.unchanged.append(env.key)
            return
        try:
            kube.replace_environment_status(current.raw, status)
        except KubeConflict:
            current = kube.get_environment(env.namespace, env.name)
            continue
        report.written.append(env.key)
        log.info(
            "Environment status updated",
            extra={
                "fields": {
                    "environment": env.key,
                    "currentVersion": status.get("currentVersion"),
                    "environments": [i["environment"] for i in status.get("environmentInfos") or []],
                }
            },
        )
        return
    raise RetryableError(f"status of {env.key} kept changing under {ATTEMPTS} attempts")


def _gate_of(env: Environment, gates: Sequence[RolloutGate]) -> str | None:
    """The gate this Environment owns (its name may be the fallback one)."""
    owned = [
        g.name for g in gates if any(ref.uid == env.uid for ref in g.owner_references) and not g.being_deleted
    ]
    return min(owned) if owned else None
