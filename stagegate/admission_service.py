"""What `k8s_admission` does with a parsed AdmissionReview: dispatch, read only what is needed, in time.

The route comes from the core's table (`shared.admission.ROUTES`); each route has a handler and a
failure policy. The deploy guard and the namespace guard fail closed: when Kubernetes fails, an object
cannot be read or nothing is decided within `ADMISSION_DEADLINE_SECONDS`, the write is refused with a
sentence that says so. The gate at admission never refuses an Environment: a failure becomes a warning.
Reads are lazy, so the common cases stay cheap: a write that changes nothing that decides what runs
reads nothing (nor does any namespace update that keeps the opt-in label); a Kustomization's source
OCIRepositories are read only when its artifact view changed beyond version fields, or it is created or
deleted; a delete reads the Namespace first (a namespace being deleted takes everything with it, and
its deletion must never hang); a governed change reads the Environments of each Rollout's namespace, the
gates only for a version deploy of a Rollout an Environment with a relationship governs, the opt-in
label only for a Rollout no Environment governs, and the Rollout only when its overrides could still
let a refused change through. An Environment write with a relationship lists its namespace's
Environments once, to warn of a misspelt upstream. Events are written within what is left of the
deadline and never change the answer; dry runs write none.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from shared.admission import AdmissionRequest, Decision, EventNotice, Route, allow
from shared.deploy_guard import (
    OVERRIDE_EVENT_REASON,
    Deploy,
    Governance,
    RolloutOverrides,
    deploy_changes,
    flux_write,
    governance,
    guard_decision,
    judge,
    namespace_terminating,
    needs,
    opted_in,
    refused_rollouts,
    unavailable,
    unchanged,
    unknown_version,
    unreadable_object,
)
from shared.errors import BadEvent, StagegateError
from shared.gate_admission import (
    GateWork,
    duplicate_create,
    environment_step,
    gate_failed,
    gates_ensured,
    relax_later,
    upstream_notice,
)
from shared.namespace_guard import GUARD_REMOVED_REASON, namespace_decision, namespace_unavailable
from shared.upstream import UnknownUpstream, unknown_upstream
from shared.views import Environment, Namespace
from stagegate import metrics
from stagegate.http import within
from stagegate.logs import get_logger
from stagegate.reconcile import GateStore, NeedsCurrentState, ensure_gates

log = get_logger("admission")


class AdmissionStore(GateStore, Protocol):
    """What admission needs from Kubernetes (the adapter, or a fake in unit tests)."""

    def get_environment_object(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...
    def list_environment_objects(self, namespace: str) -> list[Mapping[str, Any]]: ...
    def get_rollout(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...
    def get_oci_repository(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...
    def get_namespace(self, name: str) -> Mapping[str, Any] | None: ...
    def record_event(self, notice: EventNotice) -> None: ...


@dataclass(frozen=True)
class AdmissionContext:
    """Kubernetes, the retry budget, the deadline and the opt-in label."""

    kube: AdmissionStore
    attempts: int
    deadline: float
    guard_label: tuple[str, str]


def _deploy(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
    if not request.version_known:
        return unknown_version(request)
    try:
        write = flux_write(request)
    except BadEvent as exc:
        return unreadable_object(request, str(exc))
    if write is None or not write.judged:
        return unchanged()
    sources = {key: ctx.kube.get_oci_repository(key.namespace, key.name) for key in write.sources}
    try:
        changes = deploy_changes(write, sources)
    except BadEvent as exc:
        return unreadable_object(request, str(exc))
    if not changes:
        return unchanged()
    namespace: Namespace | None = None
    if write.shape == "delete":
        namespace = _namespace(ctx, write.namespace)
        if namespace is not None and namespace.terminating:
            return namespace_terminating(write.namespace)
    governed = _governance(ctx, changes, write.namespace)
    need = needs(changes, governed, write.namespace)
    gates = {ns: ctx.kube.list_gates(ns) for ns in need.gates}
    if need.namespace and namespace is None:
        namespace = _namespace(ctx, write.namespace)
    in_scope = namespace is not None and opted_in(namespace.labels, ctx.guard_label)
    findings = [
        judge(c, governed[key], gates.get(key[0], []), in_scope)
        for c in changes
        for key in [c.rollout_key(write.namespace)]
    ]
    rollouts: dict[tuple[str, str], RolloutOverrides | None] = {}
    for key in refused_rollouts(findings, write.namespace):
        raw = ctx.kube.get_rollout(*key)
        rollouts[key] = None if raw is None else RolloutOverrides.from_raw(raw)
    return guard_decision(findings, rollouts, write.namespace, request.username)


def _namespace(ctx: AdmissionContext, name: str) -> Namespace | None:
    raw = ctx.kube.get_namespace(name)
    return None if raw is None else Namespace.from_raw(raw)


def _governance(
    ctx: AdmissionContext, changes: list[Deploy], namespace: str
) -> dict[tuple[str, str], Governance]:
    """The Environments governing each Rollout in question, listed once per namespace they live in."""
    wanted: dict[str, set[str]] = {}
    for change in changes:
        ns, name = change.rollout_key(namespace)
        wanted.setdefault(ns, set()).add(name)
    return {
        (ns, name): governed
        for ns, names in sorted(wanted.items())
        for name, governed in governance(ctx.kube.list_environment_objects(ns), names).items()
    }


def _namespace_guard(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
    return namespace_decision(request, ctx.guard_label)


def _environment(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
    step = environment_step(request)
    if not isinstance(step, GateWork):
        return step
    env = step.environment
    if step.creating:
        existing = ctx.kube.get_environment_object(env.namespace, env.name)
        existing_uid = ((existing or {}).get("metadata") or {}).get("uid")
        if existing is not None and existing_uid != env.uid:
            return duplicate_create(env, existing_uid)
    try:
        results = ensure_gates(
            env, ctx.kube, fresh=step.creating, attempts=ctx.attempts, current=False, stored=not step.creating
        )
    except NeedsCurrentState as exc:
        decision = relax_later(env, str(exc), restricting=exc.restricting)
    else:
        decision = gates_ensured(env, results)
    return upstream_notice(decision, env, _unknown_upstream(env, ctx))


def _unknown_upstream(env: Environment, ctx: AdmissionContext) -> UnknownUpstream | None:
    """Whether the relationship names an environment none of the namespace's Environments is."""
    if env.relationship is None:
        return None
    others = []
    for raw in ctx.kube.list_environment_objects(env.namespace):
        try:
            others.append(Environment.from_raw(raw))
        except BadEvent:
            continue  # one that cannot be read names nothing
    return unknown_upstream(env, others)


@dataclass(frozen=True)
class Handler:
    """How one route decides, and what it answers when deciding failed."""

    decide: Callable[[AdmissionRequest, AdmissionContext], Decision]
    on_failure: Callable[[AdmissionRequest, str], Decision]


HANDLERS: Mapping[Route, Handler] = {
    "deploy": Handler(_deploy, unavailable),
    "environment": Handler(_environment, gate_failed),
    "namespace": Handler(_namespace_guard, namespace_unavailable),
}


def _failure(exc: Exception, deadline: float) -> str:
    if isinstance(exc.__cause__, TimeoutError):
        return f"Kubernetes did not answer within {deadline:g}s"
    return str(exc)


def admit(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
    """Decide on one request within the deadline; record the Events the decision asks for."""
    started = time.monotonic()
    route = request.route
    failed = False
    if route is None:
        decision = allow("not a write stagegate checks")
    else:
        handler = HANDLERS[route]
        try:
            decision = within(ctx.deadline, lambda: handler.decide(request, ctx))
        except StagegateError as exc:
            decision, failed = handler.on_failure(request, _failure(exc, ctx.deadline)), True
        except Exception as exc:
            log.exception("admission: unexpected failure", extra={"fields": {"uid": request.uid}})
            decision, failed = handler.on_failure(request, f"internal error: {type(exc).__name__}"), True
    outcome = _outcome(decision, failed)
    metrics.decision(route or "ignored", outcome)
    _log(request, route, decision, outcome, time.monotonic() - started)
    if decision.events and not request.dry_run:
        _record(decision.events, ctx, ctx.deadline - (time.monotonic() - started))
    return decision


OVERRIDES = frozenset({OVERRIDE_EVENT_REASON, GUARD_REMOVED_REASON})
"""The Events that mark a write let through by a human override."""


def _outcome(decision: Decision, failed: bool) -> str:
    """The decision in one word, for the log line and `stagegate_admission_decisions_total`."""
    if failed:
        return "error"
    if not decision.allowed:
        return "refused"
    return "override" if any(e.reason in OVERRIDES for e in decision.events) else "allowed"


def _log(
    request: AdmissionRequest, route: Route | None, decision: Decision, outcome: str, seconds: float
) -> None:
    level = log.info if decision.allowed and not decision.warnings else log.warning
    verdict = "allowed" if decision.allowed else "denied"
    level(
        f"admission {route or 'ignored'} {verdict}: {decision.reason}",
        extra={
            "fields": {
                "uid": request.uid,
                "route": route,
                "operation": request.operation,
                "resource": _resource(request),
                "object": request.key,
                "user": request.username,
                "dryRun": request.dry_run,
                "milliseconds": round(seconds * 1000, 1),
                "outcome": outcome,
                **decision.to_log(),
            }
        },
    )


def _resource(request: AdmissionRequest) -> str:
    res = request.resource
    return f"{res.resource}.{res.group}/{res.version}"


def _record(events: tuple[EventNotice, ...], ctx: AdmissionContext, budget: float) -> None:
    """Write the Events in what is left of the deadline; a lost Event never changes the answer."""
    for notice in events:
        log.warning(
            f"{notice.reason} on {notice.about}: {notice.message}",
            extra={"fields": {"involvedObject": notice.about, "event": notice.reason}},
        )

    def write() -> None:
        for notice in events:
            ctx.kube.record_event(notice)

    try:
        within(max(budget, 0.1), write)
    except Exception as exc:
        log.warning("could not record the Event in time", extra={"fields": {"error": str(exc)}})
