"""The gate at admission: an Environment's RolloutGate made before the Environment is stored.

Validating webhooks see the new object's `metadata.uid` on CREATE (mutating ones do not), so the
gate can name its Environment before the Environment exists. It names it as *pending owner*
(`shared.gate.PENDING_OWNER_ANNOTATION`), not in an owner reference: Kubernetes' garbage collector
deletes a dependent whose owner it cannot find, and it may look before the Environment is stored (on
the local stack, which runs it, gates of creates that had returned were already gone). The first
write from the stored Environment (the audit path, the follower, the resync, any recompute) adopts
the gate: owner reference in, annotation out. This works on every cluster, managed ones included,
where no audit webhook can be configured.

The webhook sits *before* the write, so its side effects must be harmless if the write never lands:

* a dry run (`request.dryRun`) writes nothing; the webhook declares `sideEffects: NoneOnDryRun`;
* a CREATE under a name an Environment already has fails with AlreadyExists after admission: the
  shell looks first and then leaves everything alone (without that look, planning would take the
  existing Environment's gate for an "earlier incarnation" of the new one);
* the request's copy is not yet stored and may never be: it is used like a stale event's copy, only
  to create or tighten (`ensure_gates(..., current=False)`). A change that would relax a gate
  (relationship removed, another Rollout, an owner change, a takeover) is not made here at all; the
  audit path or `resync` makes it from the stored Environment once the UPDATE has landed;
* a gate made for a CREATE that another webhook or etcd then refuses names a uid that never exists.
  It blocks its Rollout (it is made blocking) until an Environment of that name appears and takes it
  over from the stored object (`shared.gate.is_earlier_incarnation`), resetting it to block; no
  garbage collector deletes it, since it has no owner. The deploy guard counts only gates of
  Environments that exist.

This webhook never refuses an Environment (the answer is always `allowed: true`, except for a
malformed review): failing to write the gate is logged and answered with a warning, and safety does
not depend on it, since the deploy guard refuses every deploy of a governed Rollout whose Environment
has no gate. That is also why its `failurePolicy` is `Ignore`. This module decides; it does no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from shared.admission import AdmissionRequest, Decision, EventNotice, allow
from shared.errors import BadEvent
from shared.upstream import UNKNOWN_UPSTREAM_REASON, UnknownUpstream
from shared.views import ENVIRONMENT_API_VERSION, ENVIRONMENT_KIND, Environment


class GateResult(Protocol):
    """What the shell reports about one gate it ensured (`stagegate.reconcile.GateOutcome` fits)."""

    @property
    def gate(self) -> str: ...

    @property
    def action(self) -> str: ...

    @property
    def reason(self) -> str: ...


@dataclass(frozen=True, slots=True)
class GateWork:
    """Ensure the gates of this Environment from the request's copy (which may only tighten)."""

    environment: Environment
    creating: bool
    """A CREATE: no gate can be owned yet (one call on the hot path), but look for a same-named one first."""


def _with_namespace(obj: Mapping[str, Any], namespace: str | None) -> Mapping[str, Any]:
    """The object with `metadata.namespace` filled from the request where it is missing."""
    meta = obj.get("metadata")
    if namespace is None or not isinstance(meta, Mapping) or meta.get("namespace"):
        return obj
    return {**obj, "metadata": {**meta, "namespace": namespace}}


def environment_step(request: AdmissionRequest) -> Decision | GateWork:
    """What to do for an Environment CREATE or UPDATE: answer at once, or ensure its gates."""
    if request.dry_run:
        return allow("dry run: nothing written (sideEffects: NoneOnDryRun)")
    obj = _with_namespace(request.object or {}, request.namespace)
    meta = obj.get("metadata")
    if isinstance(meta, Mapping) and meta.get("deletionTimestamp"):
        return allow("the Environment is being deleted: its gate goes with it")
    try:
        env = Environment.from_raw(obj)
    except BadEvent as exc:
        return allow(
            f"cannot read the Environment: {exc}",
            (
                f"stagegate cannot read Environment {request.key} ({exc}): no gate was made, and the deploy "
                "guard refuses deploys of the Rollout it names",
            ),
        )
    return GateWork(env, creating=request.operation == "CREATE")


def duplicate_create(env: Environment, existing_uid: str | None) -> Decision:
    """A CREATE under a taken name: it will fail with AlreadyExists, so nothing is touched."""
    return allow(
        f"an Environment named {env.name} already exists (uid {existing_uid}); this create fails with "
        "AlreadyExists, so its gate is left alone"
    )


def gates_ensured(env: Environment, results: Sequence[GateResult]) -> Decision:
    """The gates are in shape (or a same-named one belongs to someone else: said in a warning)."""
    reason = "; ".join(f"{r.gate} {r.action}: {r.reason}" for r in results) or "no gate to write"
    warnings = tuple(
        f"stagegate: RolloutGate {r.gate} belongs to someone else and was left untouched; "
        f"Environment {env.name} gets a gate under another name"
        for r in results
        if r.action == "refuse"
    )
    return allow(reason, warnings)


def relax_later(env: Environment, wanted: str, *, restricting: bool) -> Decision:
    """The change would relax a gate: only the stored Environment may do that, after this write. The
    user hears of it only when an existing gate keeps restricting meanwhile: an unrestricted gate that
    is not created yet holds nothing back."""
    warnings = (
        f"stagegate: the gate of Environment {env.name} keeps its restriction until stagegate reads the "
        "stored Environment (audit event or resync)",
    )
    return allow(
        f"left for after the write, from the stored Environment: {wanted}", warnings if restricting else ()
    )


def gate_failed(request: AdmissionRequest, why: str) -> Decision:
    """Writing the gate failed: the Environment is still allowed (this webhook never refuses it)."""
    return allow(
        f"gate not ensured: {why}",
        (
            f"stagegate could not make the gate of Environment {request.key} ({why}); deploys of its "
            "Rollout are refused until the gate exists",
        ),
    )


def upstream_notice(decision: Decision, env: Environment, unknown: UnknownUpstream | None) -> Decision:
    """The answer, with a warning and a Warning Event when the relationship names an environment that
    no Environment of the same deployment here is, but one is spelled closely: most likely a typo, and
    a typo blocks the Rollout for good. (One that names no close neighbour may run in another cluster:
    the recompute, which asks GitHub too, says so once GitHub has no record of it either.)"""
    if unknown is None or unknown.likely is None:
        return decision
    sentence = unknown.sentence(env, github=False)
    notice = EventNotice(
        env.namespace,
        ENVIRONMENT_API_VERSION,
        ENVIRONMENT_KIND,
        env.name,
        env.uid,
        UNKNOWN_UPSTREAM_REASON,
        sentence,
    )
    return replace(
        decision, warnings=(*decision.warnings, f"stagegate: {sentence}"), events=(*decision.events, notice)
    )
