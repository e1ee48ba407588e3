"""What `k8s_admission` does with a parsed AdmissionReview: dispatch, read only what is needed, in time.

The route comes from the core's table (`shared.admission.ROUTES`); each route has a handler and a
failure policy. The deploy guard fails closed: when Kubernetes fails, an object cannot be read or
nothing is decided within `ADMISSION_DEADLINE_SECONDS`, the write is refused with a sentence that
says so. The gate at admission never refuses an Environment: a failure becomes a warning. Reads are
lazy, so the common cases stay cheap: a write that changes no version reads nothing, a governed
deploy reads the namespace's Environments and gates, the namespace's labels are read only for a
Rollout no Environment governs, and the Rollout only when its overrides could still let a refused
deploy through. Override Events are written within what is left of the deadline and never change
the answer; dry runs write none.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from shared.admission import AdmissionRequest, Decision, EventNotice, Route, allow
from shared.deploy_guard import (
    RolloutOverrides,
    deploy_changes,
    governance,
    guard_decision,
    judge,
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
from shared.upstream import UnknownUpstream, unknown_upstream
from shared.views import Environment
from stagegate.http import within
from stagegate.logs import get_logger
from stagegate.reconcile import GateStore, NeedsCurrentState, ensure_gates

log = get_logger("admission")


class AdmissionStore(GateStore, Protocol):
    """What admission needs from Kubernetes (the adapter, or a fake in unit tests)."""

    def get_environment_object(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...
    def list_environment_objects(self, namespace: str) -> list[Mapping[str, Any]]: ...
    def get_rollout(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...
    def namespace_labels(self, name: str) -> Mapping[str, str] | None: ...
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
        changes = deploy_changes(request)
    except BadEvent as exc:
        return unreadable_object(request, str(exc))
    if not changes:
        return unchanged()
    namespace = request.namespace
    if not namespace:
        return unreadable_object(request, "the request names no namespace")
    governed = governance(ctx.kube.list_environment_objects(namespace), {c.rollout for c in changes})
    need = needs(changes, governed)
    gates = ctx.kube.list_gates(namespace) if need.gates else []
    in_scope = need.namespace and opted_in(ctx.kube.namespace_labels(namespace), ctx.guard_label)
    findings = [judge(c, governed[c.rollout], gates, in_scope) for c in changes]
    rollouts: dict[str, RolloutOverrides | None] = {}
    for name in refused_rollouts(findings):
        raw = ctx.kube.get_rollout(namespace, name)
        rollouts[name] = None if raw is None else RolloutOverrides.from_raw(raw)
    return guard_decision(findings, rollouts, namespace, request.username)


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
        results = ensure_gates(env, ctx.kube, fresh=step.creating, attempts=ctx.attempts, current=False)
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
}


def _failure(exc: Exception, deadline: float) -> str:
    if isinstance(exc.__cause__, TimeoutError):
        return f"Kubernetes did not answer within {deadline:g}s"
    return str(exc)


def admit(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
    """Decide on one request within the deadline; record the Events the decision asks for."""
    started = time.monotonic()
    route = request.route
    if route is None:
        decision = allow("not a write stagegate checks")
    else:
        handler = HANDLERS[route]
        try:
            decision = within(ctx.deadline, lambda: handler.decide(request, ctx))
        except StagegateError as exc:
            decision = handler.on_failure(request, _failure(exc, ctx.deadline))
        except Exception as exc:
            log.exception("admission: unexpected failure", extra={"fields": {"uid": request.uid}})
            decision = handler.on_failure(request, f"internal error: {type(exc).__name__}")
    _log(request, route, decision, time.monotonic() - started)
    if decision.events and not request.dry_run:
        _record(decision.events, ctx, ctx.deadline - (time.monotonic() - started))
    return decision


def _log(request: AdmissionRequest, route: Route | None, decision: Decision, seconds: float) -> None:
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
            f"{notice.reason} on {notice.kind} {notice.namespace}/{notice.name}: {notice.message}",
            extra={"fields": {"rollout": f"{notice.namespace}/{notice.name}", "event": notice.reason}},
        )

    def write() -> None:
        for notice in events:
            ctx.kube.record_event(notice)

    try:
        within(max(budget, 0.1), write)
    except Exception as exc:
        log.warning("could not record the Event in time", extra={"fields": {"error": str(exc)}})
