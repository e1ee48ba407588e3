"""Apply the core's gate plans through the Kubernetes adapter, retrying lost races.

A race (409) is never resolved by overwriting: the gates are read again and the plan recomputed
from what is there now, at most `attempts` times. The first attempt after a create event skips the
read, because a brand-new Environment cannot own a gate yet: that keeps the hot path (blocking audit
webhook) at one API call. An Environment taken from an event (which may be old, or of an earlier
incarnation) may only tighten gates: a plan that would relax one stops with `NeedsCurrentState`, and
the caller plans again from the Environment the API has now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from shared.errors import RetryableError, StagegateError
from shared.gate import GatePlan, plan_gates
from shared.views import Environment, RolloutGate
from stagegate import metrics
from stagegate.kube import KubeConflict
from stagegate.logs import get_logger

log = get_logger("reconcile")


class GateStore(Protocol):
    """What reconciling needs from Kubernetes (the adapter, or a fake in unit tests)."""

    def list_gates(self, namespace: str | None) -> list[RolloutGate]: ...
    def create_gate(self, namespace: str, body: Any) -> RolloutGate: ...
    def patch_gate(self, namespace: str, name: str, patch: Any, resource_version: str) -> RolloutGate: ...
    def warn(self, env: Environment, reason: str, message: str) -> None: ...


class NeedsCurrentState(Exception):
    """An event's copy of the Environment asked for a write that relaxes a gate: read the API first.

    `restricting` says whether an existing gate keeps a restriction meanwhile; when only unrestricted
    gates were to be created, nothing is held back by waiting (no gate restricts nothing either)."""

    def __init__(self, reason: str, *, restricting: bool) -> None:
        super().__init__(reason)
        self.restricting = restricting


@dataclass(frozen=True, slots=True)
class GateOutcome:
    """What happened to one gate, for the answer and the log."""

    environment: str
    gate: str
    action: str
    reason: str
    allowed_before: list[str] | None
    allowed_after: list[str] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "gate": self.gate,
            "action": self.action,
            "reason": self.reason,
            "allowedVersionsBefore": self.allowed_before,
            "allowedVersionsAfter": self.allowed_after,
        }


def _listed(versions: tuple[str, ...] | None) -> list[str] | None:
    return None if versions is None else list(versions)


def ensure_gates(
    env: Environment,
    store: GateStore,
    *,
    fresh: bool,
    attempts: int = 5,
    current: bool = True,
    stored: bool = True,
) -> list[GateOutcome]:
    """Bring the Environment's gates in line with it; `fresh` means it was just created, `current`
    that `env` was read from the API now (an event's copy is not: it may only tighten), `stored` that
    it exists (at admission of a create it does not yet: see `shared.gate.plan_gates`)."""
    for attempt in range(attempts):
        gates = _observe(env, store, fresh=fresh, first=attempt == 0)
        plans = plan_gates(env, gates, stored=stored)
        relaxing = [p for p in plans if p.relaxes]
        if relaxing and not current:
            raise NeedsCurrentState(
                "; ".join(p.reason for p in relaxing), restricting=any(p.action != "create" for p in relaxing)
            )
        try:
            return [apply_plan(env, plan, store) for plan in plans]
        except KubeConflict as exc:
            log.info(
                "gate write raced, reading again",
                extra={"fields": {"environment": env.key, "attempt": attempt + 1, "error": str(exc)}},
            )
    raise RetryableError(f"gates of {env.key} kept changing under {attempts} attempts")


def _warn(env: Environment, reason: str, store: GateStore) -> None:
    """Tell the Environment's owner; losing the Event must not turn a refusal into a retry loop."""
    try:
        store.warn(env, "GateOwnedByOther", reason)
    except StagegateError as exc:
        log.warning(
            "could not record the Event", extra={"fields": {"environment": env.key, "error": str(exc)}}
        )


def _observe(env: Environment, store: GateStore, *, fresh: bool, first: bool) -> list[RolloutGate]:
    """The gates to plan against: none at first for a fresh Environment, otherwise all in the namespace."""
    return [] if fresh and first else store.list_gates(env.namespace)


def apply_plan(
    env: Environment, plan: GatePlan, store: GateStore, extra: dict[str, Any] | None = None
) -> GateOutcome:
    """Carry out one plan and log it with its reason (and `extra` fields, such as per-candidate reasons)."""
    if plan.action == "create" and plan.body is not None:
        store.create_gate(env.namespace, plan.body)
    elif plan.action == "update" and plan.patch is not None and plan.resource_version is not None:
        store.patch_gate(env.namespace, plan.gate, plan.patch, plan.resource_version)
    elif plan.action == "refuse":
        _warn(env, plan.reason, store)
    outcome = GateOutcome(
        environment=env.key,
        gate=plan.gate,
        action=plan.action,
        reason=plan.reason,
        allowed_before=_listed(plan.allowed_before),
        allowed_after=_listed(plan.allowed_after),
    )
    change = plan.change
    if change is not None:
        metrics.gate_change(change)
    level = log.error if plan.action == "refuse" else log.info
    fields = {**outcome.to_json(), **({"change": change} if change else {}), **(extra or {})}
    level(f"gate {plan.action}: {plan.reason}", extra={"fields": fields})
    return outcome
