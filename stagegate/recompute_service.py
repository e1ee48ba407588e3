"""Recompute the gates of Environments from their upstream's bake results.

Every trigger (a GitHub webhook, a Rollout status change, the scheduled resync) lands here and
only says "look again". Environments that follow the same upstream (one project and GitHub
environment) are recomputed together: their gates and Rollouts are read, then GitHub is asked once
for the union of their candidates' revisions, so the GitHub calls grow with the number of upstream
environments, not with the number of Environments or the length of the history.

The order of reads is what keeps writes from going stale: the gates (and their `resourceVersion`)
are read before GitHub is asked, and every write is conditional on that version. So a write can only
succeed when no other write happened since the gate was read, which means no other computation used
a newer GitHub answer than this one. A conflict re-reads that Environment's gates and asks GitHub
again. Each Environment succeeds or fails on its own: one bad Rollout never stops the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.bake import CommitLookup, ReleaseCandidate, candidate_revisions, release_candidates, results_for
from shared.errors import BadEvent, PermanentError, RetryableError, StagegateError
from shared.evidence import github_now
from shared.gate import is_owned_by
from shared.github_delivery import BakeTarget
from shared.recompute import plan_recompute
from shared.trust import RepositoryPolicy
from shared.upstream import deployment_name, github_environment
from shared.views import Environment, RolloutGate
from stagegate.github import github_reader
from stagegate.kube import KubeConflict, KubeNotFound
from stagegate.logs import get_logger
from stagegate.reconcile import GateOutcome, GateStore, apply_plan, ensure_gates
from stagegate.settings import Settings

log = get_logger("recompute")
ANY_REPOSITORY = RepositoryPolicy()


class Upstream(Protocol):
    """Where bake results come from (the GitHub adapter, or a fake in unit tests)."""

    def commit_deployments(
        self, repository: str, environment: str, revisions: Iterable[str]
    ) -> Mapping[str, CommitLookup]: ...


class RecomputeStore(GateStore, Protocol):
    """The Kubernetes reads the recompute and the audit path need on top of the gate store."""

    def get_environment(self, namespace: str, name: str) -> Environment | None: ...
    def list_environments(self, namespaces: Sequence[str] = ()) -> list[Environment]: ...
    def get_rollout(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...


def upstream_from(settings: Settings, timeout: float) -> Upstream | None:
    """The GitHub reader when a token or App credentials are set; None where bake results are optional.

    It connects (and PyGithub is imported) when it is first asked: most audit events never need GitHub."""
    return github_reader(settings, timeout) if settings.has_github_credentials else None


def governed_by(
    target: BakeTarget, repository: str, environments: Iterable[Environment]
) -> list[Environment]:
    """Environments whose relationship points at the environment a bake was recorded for."""
    return [
        env
        for env in environments
        if env.relationship is not None
        and env.relationship.environment == target.environment
        and (env.project or "").lower() == repository.lower()
        and deployment_name(env) == f"kuberik/{target.name}"
    ]


@dataclass
class Recompute:
    """What a recompute of several Environments did: outcomes, and per-Environment failures."""

    outcomes: list[GateOutcome] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    retryable: list[str] = field(default_factory=list)

    def fail(self, env: Environment, exc: Exception, *, retry: bool) -> None:
        self.errors[env.key] = str(exc)
        if retry:
            self.retryable.append(env.key)
        level = log.warning if retry else log.error
        level(
            "cannot recompute this Environment" + ("; it will be retried" if retry else ""),
            extra={"fields": {"environment": env.key, "reason": str(exc)}},
        )


@dataclass(frozen=True)
class _Observed:
    env: Environment
    gates: list[RolloutGate]
    candidates: tuple[ReleaseCandidate, ...]


def recompute(
    environments: Sequence[Environment],
    kube: RecomputeStore,
    upstream: Upstream,
    attempts: int = 5,
    repositories: RepositoryPolicy = ANY_REPOSITORY,
) -> Recompute:
    """Set the gates of every Environment to exactly what its upstream justifies now.

    An Environment naming a repository outside `repositories` is refused (logged, a Warning Event),
    and its gate left as it is: it can only have been narrowed so far.
    """
    report = Recompute()
    groups: dict[tuple[str, str], list[Environment]] = {}
    for env in environments:
        rel = env.relationship
        try:
            if rel is None:
                report.outcomes += ensure_gates(env, kube, fresh=False, attempts=attempts)
            elif not env.project:
                raise PermanentError(
                    f"Environment {env.key} has no spec.backend.project to read bake results from"
                )
            elif refusal := repositories.refusal(env.namespace, env.project):
                _warn(kube, env, "RepositoryNotAllowed", refusal)
                raise PermanentError(refusal)
            else:
                where = github_environment(env, rel.environment)
                groups.setdefault((env.project.lower(), where), []).append(env)
        except (BadEvent, PermanentError) as exc:
            report.fail(env, exc, retry=False)
        except RetryableError as exc:
            report.fail(env, exc, retry=True)
    for (project, where), members in groups.items():
        _recompute_group(project, where, members, kube, upstream, attempts, repositories, report)
    return report


def _warn(kube: RecomputeStore, env: Environment, reason: str, message: str) -> None:
    """Tell the Environment's owner; losing the Event must not change the outcome."""
    try:
        kube.warn(env, reason, message)
    except StagegateError as exc:
        log.warning(
            "could not record the Event", extra={"fields": {"environment": env.key, "error": str(exc)}}
        )


def _recompute_group(
    project: str,
    where: str,
    members: list[Environment],
    kube: RecomputeStore,
    upstream: Upstream,
    attempts: int,
    repositories: RepositoryPolicy,
    report: Recompute,
) -> None:
    """One upstream: read every member's gates and candidates, ask GitHub once, write; retry races.

    A race may have been an Environment change: a retry reads each Environment again, and one that now
    follows another upstream is recomputed with that upstream instead. Vetoes are recorded from the
    whole answer, so each gate of the upstream remembers what any of its candidates' results showed.
    """
    pending = members
    for attempt in range(attempts):
        if attempt:
            retry = Retry(kube, upstream, attempts, repositories)
            pending = _current(pending, (project, where), retry, report)
        observed = _observe(pending, kube, attempts, report)
        revisions = frozenset().union(*(candidate_revisions(o.candidates) for o in observed))
        try:
            lookups = upstream.commit_deployments(project, where, revisions) if revisions else {}
        except (PermanentError, RetryableError) as exc:
            for o in observed:
                report.fail(o.env, exc, retry=isinstance(exc, RetryableError))
            return
        now = github_now(lookups.values())
        pending = []
        for o in observed:
            try:
                if _changed(o.env, kube):  # an Environment change need not touch the gate: look
                    raise KubeConflict(f"Environment {o.env.key} changed while GitHub was asked")
                for gate in o.gates:
                    recomputed = plan_recompute(
                        o.env, gate, o.candidates, results_for(o.candidates, lookups), now
                    )
                    report.outcomes.append(
                        apply_plan(
                            o.env, recomputed.plan, kube, extra={"candidates": recomputed.allowed.reasons}
                        )
                    )
            except (KubeConflict, KubeNotFound) as exc:
                log.info(
                    "gate changed while recomputing, reading again",
                    extra={"fields": {"environment": o.env.key, "attempt": attempt + 1, "error": str(exc)}},
                )
                pending.append(o.env)
            except (BadEvent, PermanentError) as exc:
                report.fail(o.env, exc, retry=False)
            except RetryableError as exc:
                report.fail(o.env, exc, retry=True)
        if not pending:
            return
    for env in pending:
        report.fail(
            env, RetryableError(f"gates of {env.key} kept changing under {attempts} attempts"), retry=True
        )


def _changed(env: Environment, kube: RecomputeStore) -> bool:
    """Whether the Environment now has another incarnation, upstream or Rollout than the one planned for."""
    fresh = kube.get_environment(env.namespace, env.name)
    return fresh is None or (fresh.uid, _group(fresh), fresh.rollout_name) != (
        env.uid,
        _group(env),
        env.rollout_name,
    )


def _group(env: Environment) -> tuple[str, str] | None:
    rel = env.relationship
    return (
        None
        if rel is None or not env.project
        else (env.project.lower(), github_environment(env, rel.environment))
    )


@dataclass(frozen=True)
class Retry:
    """What recomputing an Environment again needs."""

    kube: RecomputeStore
    upstream: Upstream
    attempts: int
    repositories: RepositoryPolicy


def _current(
    environments: list[Environment], group: tuple[str, str], retry: Retry, report: Recompute
) -> list[Environment]:
    """The Environments as the API has them now; those that left this upstream are recomputed on their own."""
    still: list[Environment] = []
    for env in environments:
        try:
            fresh = retry.kube.get_environment(env.namespace, env.name)
        except (BadEvent, PermanentError) as exc:
            report.fail(env, exc, retry=False)
            continue
        except RetryableError as exc:
            report.fail(env, exc, retry=True)
            continue
        if fresh is None or fresh.uid != env.uid:
            log.info("Environment deleted while recomputing", extra={"fields": {"environment": env.key}})
        elif _group(fresh) == group:
            still.append(fresh)
        else:
            moved = recompute([fresh], retry.kube, retry.upstream, retry.attempts, retry.repositories)
            report.outcomes += moved.outcomes
            report.errors.update(moved.errors)
            report.retryable += moved.retryable
    return still


def _observe(
    members: Sequence[Environment], kube: RecomputeStore, attempts: int, report: Recompute
) -> list[_Observed]:
    """Each member's owned gates (created blocking first if missing) and its Rollout's candidates."""
    listed: dict[str, list[RolloutGate]] = {}

    def gates_of(env: Environment) -> list[RolloutGate]:
        if env.namespace not in listed:
            listed[env.namespace] = kube.list_gates(env.namespace)
        return [g for g in listed[env.namespace] if is_owned_by(g, env) and not g.being_deleted]

    observed = []
    for env in members:
        try:
            gates = gates_of(env)
            if not gates:
                report.outcomes += ensure_gates(env, kube, fresh=False, attempts=attempts)
                listed.pop(env.namespace)
                gates = gates_of(env)
            rollout = kube.get_rollout(env.namespace, env.rollout_name)
            observed.append(_Observed(env, gates, release_candidates(rollout) if rollout is not None else ()))
        except (BadEvent, PermanentError) as exc:
            report.fail(env, exc, retry=False)
        except RetryableError as exc:
            report.fail(env, exc, retry=True)
    return observed
