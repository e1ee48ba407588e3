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

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from shared.bake import (
    CommitLookup,
    ReleaseCandidate,
    VersionResult,
    candidate_revisions,
    describe_result,
    release_candidates,
    results_for,
)
from shared.errors import BadEvent, PermanentError, RetryableError, StagegateError
from shared.evidence import github_now
from shared.gate import GatePlan, is_owned_by
from shared.gate_events import NOT_COMPUTED, gate_events
from shared.github_delivery import BakeTarget
from shared.recompute import plan_recompute
from shared.trust import RepositoryPolicy
from shared.upstream import UNKNOWN_UPSTREAM_REASON, deployment_name, github_environment, unknown_upstream
from shared.views import Environment, RolloutGate
from stagegate import metrics
from stagegate.fanout import fan_out
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
    def list_rollouts(self, namespace: str | None) -> list[Mapping[str, Any]]: ...


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


class AlreadyTold(PermanentError):
    """A failure whose own Warning Event is already recorded on the Environment."""


@dataclass
class Recompute:
    """What a recompute of several Environments did: outcomes, per-Environment failures, and the
    Environments it did not get to before its deadline (to be handed on, not dropped)."""

    outcomes: list[GateOutcome] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    retryable: list[str] = field(default_factory=list)
    unfinished: list[Environment] = field(default_factory=list)
    told: list[tuple[Environment, str, str, str]] = field(default_factory=list)
    """Events to record once the gates are written: (Environment, type, reason, message)."""

    def fail(self, env: Environment, exc: Exception, *, retry: bool) -> None:
        self.errors[env.key] = str(exc)
        metrics.recompute_failure()
        if not isinstance(exc, AlreadyTold):
            self.told.append((env, "Warning", NOT_COMPUTED, f"its gate could not be computed: {exc}"))
        if retry:
            self.retryable.append(env.key)
        level = log.warning if retry else log.error
        level(
            "cannot recompute this Environment" + ("; it will be retried" if retry else ""),
            extra={"fields": {"environment": env.key, "reason": str(exc)}},
        )

    def merge(self, other: Recompute) -> None:
        self.outcomes += other.outcomes
        self.errors.update(other.errors)
        self.retryable += other.retryable
        self.unfinished += other.unfinished
        self.told += other.told


@dataclass(frozen=True)
class _Observed:
    env: Environment
    gates: list[RolloutGate]
    candidates: tuple[ReleaseCandidate, ...]


@dataclass(frozen=True)
class _Run:
    """What every part of one recompute works with."""

    kube: RecomputeStore
    upstream: Upstream
    attempts: int
    repositories: RepositoryPolicy
    deadline: float | None
    namespaces: Sequence[str]


def recompute(
    environments: Sequence[Environment],
    kube: RecomputeStore,
    upstream: Upstream,
    attempts: int = 5,
    repositories: RepositoryPolicy = ANY_REPOSITORY,
    deadline: float | None = None,
    namespaces: Sequence[str] = (),
) -> Recompute:
    """Set the gates of every Environment to exactly what its upstream justifies now.

    An Environment naming a repository outside `repositories` is refused (logged, a Warning Event),
    and its gate left as it is: it can only have been narrowed so far. With a `deadline`
    (`time.monotonic()`), no gate write starts after it: the Environments not reached come back in
    `unfinished`, their gates as they were. `namespaces` is stagegate's scope (empty: every namespace),
    which says where a cluster-wide list may stand in for many per-namespace ones.
    """
    run = _Run(kube, upstream, attempts, repositories, deadline, namespaces)
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
                raise AlreadyTold(refusal)
            else:
                where = github_environment(env, rel.environment)
                groups.setdefault((env.project.lower(), where), []).append(env)
        except (BadEvent, PermanentError) as exc:
            report.fail(env, exc, retry=False)
        except RetryableError as exc:
            report.fail(env, exc, retry=True)
    for (project, where), members in groups.items():
        _recompute_group(project, where, members, run, report)
    _tell(report, run)
    return report


@runtime_checkable
class Teller(Protocol):
    def tell(self, env: Environment, kind: str, reason: str, message: str) -> None: ...


def _tell(report: Recompute, run: _Run) -> None:
    """Record the Events of this recompute, after every gate write and only before the deadline: an
    Event never delays a gate, and one lost is only a story not told (the log has it)."""
    kube = run.kube
    if not report.told or not isinstance(kube, Teller):
        return
    missed: dict[str, int] = {}
    for item in fan_out(report.told, lambda t: kube.tell(*t), run.deadline):
        if item.error is not None and not isinstance(item.error, StagegateError):
            raise item.error
        if item.error is not None or not item.started:
            why = str(item.error) if item.error is not None else "no time left after the gates"
            missed[why] = missed.get(why, 0) + 1
    for why, count in missed.items():
        log.warning("Events not recorded", extra={"fields": {"events": count, "why": why}})


def _warn(kube: RecomputeStore, env: Environment, reason: str, message: str) -> None:
    """Tell the Environment's owner; losing the Event must not change the outcome."""
    try:
        kube.warn(env, reason, message)
    except StagegateError as exc:
        log.warning(
            "could not record the Event", extra={"fields": {"environment": env.key, "error": str(exc)}}
        )


@dataclass(frozen=True)
class _Write:
    """One planned gate write of one Environment."""

    observed: _Observed
    plan: GatePlan
    reasons: Mapping[str, str]

    @property
    def narrows(self) -> bool:
        """Whether the write takes a tag away (or closes a gate that had no list): these go first."""
        before, after = self.plan.allowed_before, self.plan.allowed_after
        return self.plan.action == "update" and (before is None or not set(before) <= set(after or ()))


def _recompute_group(
    project: str, where: str, members: list[Environment], run: _Run, report: Recompute
) -> None:
    """One upstream: read every member's gates and candidates, ask GitHub once, write; retry races.

    Reads and writes run `fanout.WORKERS` at a time, narrowing writes first, so a revocation reaches
    every gate before anything is widened. A race may have been an Environment change: a retry reads
    each Environment again, and one that now follows another upstream is recomputed with that upstream
    instead. Vetoes are recorded from the whole answer, so each gate of the upstream remembers what any
    of its candidates' results showed.
    """
    pending = members
    for attempt in range(run.attempts):
        if attempt:
            pending = _current(pending, (project, where), run, report)
        if _past(run.deadline):
            report.unfinished += pending
            return
        observed = _observe(pending, run, report)
        revisions = frozenset().union(*(candidate_revisions(o.candidates) for o in observed))
        try:
            lookups = run.upstream.commit_deployments(project, where, revisions) if revisions else {}
        except (PermanentError, RetryableError) as exc:
            for o in observed:
                report.fail(o.env, exc, retry=isinstance(exc, RetryableError))
            return
        now = github_now(lookups.values())
        pending = []
        writes: list[_Write] = []
        current, listed = _environments_now([o.env for o in observed], run)
        # Every gate of the upstream records vetoes from the whole answer: a lagging answer later must
        # not reopen, for one Environment, what this answer showed failing for another's candidate.
        results = results_for([c for o in observed for c in o.candidates], lookups)
        for o in observed:
            if _moved(o.env, current):  # an Environment change need not touch the gate: look again
                log.info(
                    "Environment changed while GitHub was asked, reading again",
                    extra={"fields": {"environment": o.env.key, "attempt": attempt + 1}},
                )
                pending.append(o.env)
                continue
            for gate in o.gates:
                recomputed = plan_recompute(o.env, gate, o.candidates, results, now)
                writes.append(
                    _Write(o, recomputed.plan, _with_records(recomputed.allowed.reasons, results, where))
                )
        writes.sort(key=lambda w: not w.narrows)
        if {lookup.environment_records for lookup in lookups.values()} == {0}:
            _warn_unknown_upstream(writes, listed, run.kube)
        pending += _apply(writes, run, report, attempt)
        if not pending:
            return
    for env in pending:
        report.fail(
            env, RetryableError(f"gates of {env.key} kept changing under {run.attempts} attempts"), retry=True
        )


def _with_records(
    reasons: Mapping[str, str], results: Mapping[ReleaseCandidate, VersionResult], where: str
) -> dict[str, str]:
    """Each candidate's reason, and the upstream record it rests on (history entry, deployment)."""
    records = {c.tag: describe_result(r) for c, r in results.items() if r.deployed}
    return {
        tag: f"{why}; {records[tag]} in {where}" if tag in records else why for tag, why in reasons.items()
    }


def _apply(writes: list[_Write], run: _Run, report: Recompute, attempt: int) -> list[Environment]:
    """Make the writes (narrowing first); the Environments whose gate changed meanwhile, to redo."""
    done = fan_out(
        writes,
        lambda w: apply_plan(w.observed.env, w.plan, run.kube, extra={"candidates": w.reasons}),
        run.deadline,
    )
    redo: dict[str, Environment] = {}
    left: dict[str, Environment] = {}
    for item in done:
        env = item.item.observed.env
        if not item.started:
            left[env.key] = env
        elif item.error is None and item.result is not None:
            report.outcomes.append(item.result)
            outcome, reasons = item.result, item.item.reasons
            for why, message in gate_events(
                outcome.gate, outcome.allowed_before, outcome.allowed_after, reasons
            ):
                report.told.append((env, "Normal", why, message))
        elif isinstance(item.error, KubeConflict | KubeNotFound):
            log.info(
                "gate changed while recomputing, reading again",
                extra={"fields": {"environment": env.key, "attempt": attempt + 1, "error": str(item.error)}},
            )
            redo[env.key] = env
        elif isinstance(item.error, BadEvent | PermanentError):
            report.fail(env, item.error, retry=False)
        elif isinstance(item.error, RetryableError):
            report.fail(env, item.error, retry=True)
        elif item.error is not None:
            raise item.error
    report.unfinished += [env for key, env in left.items() if key not in redo]
    return list(redo.values())


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() > deadline


def _environments_now(
    environments: Sequence[Environment], run: _Run
) -> tuple[dict[str, Environment | None], list[Environment]]:
    """The Environments as the API has them now, read the way `_where` says; and all that was listed."""
    where = listing_scopes({env.namespace for env in environments}, run.namespaces)
    found: dict[str, Environment] = {}
    for item in fan_out(where, lambda w: run.kube.list_environments(() if w is None else [w])):
        if item.error is not None:
            raise item.error
        found.update((env.key, env) for env in item.result or [])
    return {env.key: found.get(env.key) for env in environments}, list(found.values())


def _warn_unknown_upstream(
    writes: Sequence[_Write], listed: Sequence[Environment], kube: RecomputeStore
) -> None:
    """GitHub holds no record at all where these Environments look for bakes: warn those whose upstream
    no Environment of their deployment in their namespace is either (a misspelt relationship blocks its
    Rollout for good). Only when their gate is written, so a quiet upstream is not told again and again."""
    told: set[str] = set()
    for write in writes:
        env = write.observed.env
        if env.key in told or write.plan.action != "update":
            continue
        told.add(env.key)
        unknown = unknown_upstream(env, [e for e in listed if e.namespace == env.namespace])
        if unknown is not None:
            _warn(kube, env, UNKNOWN_UPSTREAM_REASON, unknown.sentence(env, github=True))


def _moved(env: Environment, current: Mapping[str, Environment | None]) -> bool:
    """Whether the Environment now has another incarnation, upstream, relationship type or Rollout than
    the one planned for (`Parallel` to `After` keeps the upstream but asks more of it)."""
    fresh = current.get(env.key)
    return fresh is None or (fresh.uid, _group(fresh), fresh.relationship, fresh.rollout_name) != (
        env.uid,
        _group(env),
        env.relationship,
        env.rollout_name,
    )


def _group(env: Environment) -> tuple[str, str] | None:
    rel = env.relationship
    return (
        None
        if rel is None or not env.project
        else (env.project.lower(), github_environment(env, rel.environment))
    )


def _current(
    environments: list[Environment], group: tuple[str, str], run: _Run, report: Recompute
) -> list[Environment]:
    """The Environments as the API has them now; those that left this upstream are recomputed on their own."""
    still: list[Environment] = []
    for env in environments:
        try:
            fresh = run.kube.get_environment(env.namespace, env.name)
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
            report.merge(
                recompute(
                    [fresh],
                    run.kube,
                    run.upstream,
                    run.attempts,
                    run.repositories,
                    run.deadline,
                    run.namespaces,
                )
            )
    return still


CLUSTER_WIDE_FROM = 8
"""From this many namespaces holding an upstream's Environments on, one cluster-wide list replaces a
list per namespace (where stagegate watches every namespace; its ClusterRole grants that list)."""


def listing_scopes(namespaces: set[str], scope: Sequence[str]) -> list[str | None]:
    """Where to list what a group needs: each namespace, or the whole cluster (None)."""
    if not scope and len(namespaces) >= CLUSTER_WIDE_FROM:
        return [None]
    return [*sorted(namespaces)]


def _observe(members: Sequence[Environment], run: _Run, report: Recompute) -> list[_Observed]:
    """Each member's owned gates (created blocking first if missing) and its Rollout's candidates, from
    one list of gates and one of Rollouts per namespace (or for the cluster), `fanout.WORKERS` at a time:
    a thousand Environments cost a few reads, not a thousand."""
    by_namespace: dict[str, list[Environment]] = {}
    for env in members:
        by_namespace.setdefault(env.namespace, []).append(env)
    gates: dict[str, list[RolloutGate]] = {}
    rollouts: dict[tuple[str, str], Mapping[str, Any]] = {}
    unread: dict[str, Exception] = {}
    where = listing_scopes(set(by_namespace), run.namespaces)
    for item in fan_out(where, lambda w: (run.kube.list_gates(w), run.kube.list_rollouts(w))):
        if item.error is not None:
            for ns in by_namespace if item.item is None else [item.item]:
                unread[ns] = item.error
            continue
        listed_gates, listed_rollouts = item.result or ([], [])
        for gate in listed_gates:
            gates.setdefault(gate.namespace, []).append(gate)
        for raw in listed_rollouts:
            meta = raw.get("metadata") or {}
            rollouts[(str(meta.get("namespace") or item.item), str(meta.get("name")))] = raw
    observed: list[_Observed] = []
    for env in members:
        try:
            if env.namespace in unread:
                raise unread[env.namespace]
            own = _owned(gates.get(env.namespace, []), env)
            if not own:
                ensure_gates(env, run.kube, fresh=False, attempts=run.attempts)
                gates[env.namespace] = run.kube.list_gates(env.namespace)
                own = _owned(gates[env.namespace], env)
            rollout = rollouts.get((env.namespace, env.rollout_name))
            observed.append(_Observed(env, own, release_candidates(rollout) if rollout is not None else ()))
        except Exception as exc:
            _fail(report, env, exc)
    return observed


def _owned(gates: Sequence[RolloutGate], env: Environment) -> list[RolloutGate]:
    return [g for g in gates if is_owned_by(g, env) and not g.being_deleted]


def _fail(report: Recompute, env: Environment, exc: Exception) -> None:
    if isinstance(exc, BadEvent | PermanentError):
        report.fail(env, exc, retry=False)
    elif isinstance(exc, RetryableError):
        report.fail(env, exc, retry=True)
    else:
        raise exc
