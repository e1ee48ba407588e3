"""The RolloutGate an Environment should have, and the smallest change that gets it there.

This is where the blocking-by-default rule lives: a gate for an Environment with a relationship
starts as `allowedVersions: []` and is never null; widening it is the recompute's job (upstream bake
results), not this module's. Every plan here either creates a blocking gate, narrows, or keeps what
is there. The module never does I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from shared.errors import RetryableError
from shared.evidence import read_evidence
from shared.upstream import upstream_key
from shared.views import (
    ENVIRONMENT_API_VERSION,
    ENVIRONMENT_GROUP,
    ENVIRONMENT_KIND,
    GATE_API_VERSION,
    GATE_KIND,
    Environment,
    OwnerReference,
    RolloutGate,
)

GATE_NAME_SUFFIX = "-stagegate"
MAX_NAME_LENGTH = 253
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "stagegate"
PRETTY_NAME_ANNOTATION = "gate.kuberik.com/pretty-name"
DESCRIPTION_ANNOTATION = "gate.kuberik.com/description"
PENDING_OWNER_ANNOTATION = "stagegate.kuberik.com/pending-owner-uid"
"""On a gate made at admission, before its Environment is stored: the uid the Environment will have.

Such a gate carries no owner reference yet. Kubernetes' garbage collector deletes a dependent whose
owner it cannot find, and it may look before the Environment is stored (measured on the local stack:
the gate of an Environment whose create had returned was already gone). The first write from the
stored Environment adds the owner reference and drops this annotation."""

Action = Literal["create", "update", "unchanged", "refuse"]


def gate_name(environment_name: str) -> str:
    """`<environment>-stagegate`; past 253 characters, `<prefix>-stagegate-<hash of the name>`.

    Environment names are DNS subdomains (at most 253 characters of `[a-z0-9.-]`, starting and
    ending alphanumeric), so the result is one too. A shortened name ends in hex digits, never in
    `-stagegate`, so no Environment name can be crafted to produce another's shortened gate name.
    """
    name = environment_name + GATE_NAME_SUFFIX
    if len(name) <= MAX_NAME_LENGTH:
        return name
    return _hashed_name(environment_name, environment_name)


def fallback_gate_name(env: Environment) -> str:
    """The name used when `gate_name` is taken by a gate that is not ours: unique to this Environment."""
    return _hashed_name(env.name, env.uid)


def _hashed_name(environment_name: str, identity: str) -> str:
    digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
    keep = MAX_NAME_LENGTH - len(GATE_NAME_SUFFIX) - len(digest) - 1
    stem = environment_name[:keep].rstrip(".-")
    return f"{stem}{GATE_NAME_SUFFIX}-{digest}"


def owner_reference(env: Environment) -> OwnerReference:
    """The controller reference that makes Kubernetes garbage-collect the gate with its Environment."""
    return OwnerReference(
        api_version=ENVIRONMENT_API_VERSION,
        kind=ENVIRONMENT_KIND,
        name=env.name,
        uid=env.uid,
        controller=True,
    )


def describe(env: Environment) -> tuple[str, str]:
    """The pretty name and description kuberik's dashboard shows for the gate."""
    rel = env.relationship
    if rel is None:
        return (
            "No upstream environment",
            f"Environment {env.name} has no relationship: this gate does not restrict versions.",
        )
    if rel.type == "After":
        return (
            f"Baked in {rel.environment}",
            f"Allows only versions that have been deployed and baked successfully in {rel.environment}; "
            "blocks everything until the first such bake.",
        )
    return (
        f"Deployed in {rel.environment}",
        f"Allows only versions that have been deployed to {rel.environment} without failing; "
        "blocks everything until the first such deployment.",
    )


def initial_allowed_versions(env: Environment) -> list[str] | None:
    """Block everything when there is an upstream to wait for; no restriction otherwise."""
    return [] if env.relationship is not None else None


def new_gate(env: Environment, *, stored: bool = True) -> dict[str, Any]:
    """The full object to create for an Environment that has no gate yet; owned by it once it is
    `stored`, otherwise naming it as the pending owner (`PENDING_OWNER_ANNOTATION`)."""
    pretty, description = describe(env)
    spec: dict[str, Any] = {"rolloutRef": {"name": env.rollout_name}, "passing": True}
    allowed = initial_allowed_versions(env)
    if allowed is not None:
        spec["allowedVersions"] = allowed
    annotations = {PRETTY_NAME_ANNOTATION: pretty, DESCRIPTION_ANNOTATION: description}
    metadata: dict[str, Any] = {
        "name": gate_name(env.name),
        "namespace": env.namespace,
        "labels": {MANAGED_BY_LABEL: MANAGED_BY},
        "annotations": annotations,
    }
    if stored:
        metadata["ownerReferences"] = [owner_reference(env).to_raw()]
    else:
        annotations[PENDING_OWNER_ANNOTATION] = env.uid
    return {"apiVersion": GATE_API_VERSION, "kind": GATE_KIND, "metadata": metadata, "spec": spec}


def _environment_ref(ref: OwnerReference) -> bool:
    return ref.kind == ENVIRONMENT_KIND and ref.api_version.split("/")[0] == ENVIRONMENT_GROUP


def is_owned_by(gate: RolloutGate, env: Environment) -> bool:
    """True when an owner reference names this Environment (by uid; by name where uid is empty), or,
    with no Environment owner yet, the gate was made at admission for this Environment's uid."""
    if (pending := _pending_owner(gate)) is not None:
        return pending == env.uid
    return any(
        _environment_ref(ref) and (ref.uid == env.uid or (not ref.uid and ref.name == env.name))
        for ref in gate.owner_references
    )


def _pending_owner(gate: RolloutGate) -> str | None:
    """The uid a gate made at admission waits for, while no Environment owns it; else None."""
    if any(_environment_ref(ref) for ref in gate.owner_references):
        return None
    if gate.labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
        return None
    return gate.annotations.get(PENDING_OWNER_ANNOTATION) or None


def is_earlier_incarnation(gate: RolloutGate, env: Environment) -> bool:
    """True when the gate belongs to a deleted Environment of the same name, awaiting garbage collection.

    Only such a gate may be taken over: its owner no longer exists, the name is ours by construction,
    and the takeover resets it to the blocking state anyway. A gate made at admission for a create
    that never landed (or an Environment deleted before it was adopted) counts too: no garbage
    collector deletes it, since it has no owner.
    """
    if gate.name != gate_name(env.name):
        return False
    pending = _pending_owner(gate)
    if pending is not None:
        return not gate.owner_references and pending != env.uid
    refs = gate.owner_references
    return (
        len(refs) == 1 and _environment_ref(refs[0]) and refs[0].name == env.name and refs[0].uid != env.uid
    )


@dataclass(frozen=True, slots=True)
class GatePlan:
    """What to do with one gate, and why in words (the reason goes to the log and the answer)."""

    action: Action
    gate: str
    reason: str
    body: Mapping[str, Any] | None = None
    patch: Mapping[str, Any] | None = None
    allowed_before: tuple[str, ...] | None = None
    allowed_after: tuple[str, ...] | None = None
    resource_version: str | None = None

    @property
    def change(self) -> str | None:
        """What the write does to the gate in one word: `created`, `opened` (a version allowed that was
        not, or the restriction lifted), `narrowed` (a version no longer allowed, or a restriction
        set), `other` (owner, Rollout, annotations); None when nothing is written."""
        if self.action == "create":
            return "created"
        if self.action != "update":
            return None
        before, after = self.allowed_before, self.allowed_after
        if before != after and (after is None or (before is not None and not set(after) <= set(before))):
            return "opened"
        if before != after:
            return "narrowed"
        return "other"

    @property
    def relaxes(self) -> bool:
        """True when the write could let the governed Rollout deploy something it could not before.

        That is: the allowed list widens or disappears, the gate moves to another Rollout, or its
        owners change (an owner change decides whether garbage collection deletes the gate); or a gate
        without restriction is created (the copy may be of an incarnation that had no relationship,
        while the current one has). Such a plan may only come from the Environment as the API has it
        now, never from an event's copy.
        """
        if self.action == "create":
            return self.allowed_after is None
        if self.action != "update" or self.patch is None:
            return False
        before, after = self.allowed_before, self.allowed_after
        widens = before is not None and (after is None or not set(after) <= set(before))
        spec, metadata = self.patch.get("spec") or {}, self.patch.get("metadata") or {}
        return widens or "rolloutRef" in spec or "ownerReferences" in metadata


def unchanged(gate: RolloutGate, reason: str) -> GatePlan:
    """The plan that writes nothing, with the reason for the log."""
    return GatePlan(
        action="unchanged",
        gate=gate.name,
        reason=reason,
        allowed_before=gate.allowed_versions,
        allowed_after=gate.allowed_versions,
        resource_version=gate.resource_version,
    )


def plan_gates(env: Environment, gates: Sequence[RolloutGate], *, stored: bool = True) -> list[GatePlan]:
    """Decide, for an Environment and the gates visible in its namespace, what to write.

    Gates the Environment owns (whatever their name: the Go controller made `ghd-*` ones) are adopted
    and kept in shape. With none, a blocking gate is created under the deterministic name, unless a
    same-named gate belongs to something else: that one is never touched, and the blocking gate is
    created under `fallback_gate_name` instead, so a relationship is never left without a gate.
    `stored` is False at admission of a create: the Environment does not exist yet, so a gate made now
    names it as pending owner (`new_gate`) and is adopted by the first plan from the stored object.
    """
    owned = sorted((g for g in gates if is_owned_by(g, env) and not g.being_deleted), key=lambda g: g.name)
    if owned:
        return [_conform(env, gate, takeover=False, stored=stored) for gate in owned]
    name = gate_name(env.name)
    same_named = next((g for g in gates if g.name == name), None)
    if same_named is None:
        return [_create(env, name, "new gate", stored=stored)]
    if same_named.being_deleted:
        raise RetryableError(f"RolloutGate {name} is being deleted; its successor is created on retry")
    if is_earlier_incarnation(same_named, env):
        return [_conform(env, same_named, takeover=True, stored=stored)]
    owners = ", ".join(f"{r.kind}/{r.name}" for r in same_named.owner_references) or "nobody"
    refusal = GatePlan(
        action="refuse",
        gate=name,
        reason=f"RolloutGate {name} exists and is owned by {owners}, not by Environment {env.name}; "
        "leaving it untouched",
        allowed_before=same_named.allowed_versions,
        allowed_after=same_named.allowed_versions,
    )
    fallback = fallback_gate_name(env)
    taken = next((g for g in gates if g.name == fallback), None)
    if taken is not None and taken.being_deleted:
        raise RetryableError(f"RolloutGate {fallback} is being deleted; its successor is created on retry")
    if taken is not None:
        return [refusal]
    return [refusal, _create(env, fallback, f"{name} is taken: new gate under {fallback}", stored=stored)]


def _create(env: Environment, name: str, why: str, *, stored: bool) -> GatePlan:
    allowed = initial_allowed_versions(env)
    body = new_gate(env, stored=stored)
    body["metadata"]["name"] = name
    return GatePlan(
        action="create",
        gate=name,
        reason=f"{why}, blocking until the upstream bakes a version"
        if allowed is not None
        else f"{why} without restriction (no relationship)",
        body=body,
        allowed_after=None if allowed is None else tuple(allowed),
    )


def _conform(env: Environment, gate: RolloutGate, *, takeover: bool, stored: bool) -> GatePlan:
    """The merge patch that brings an owned gate in line with its Environment, never widening it."""
    before = gate.allowed_versions
    after, why = _allowed_after(env, gate, takeover=takeover)
    pretty, description = describe(env)
    spec: dict[str, Any] = {}
    if gate.rollout_name != env.rollout_name:
        spec["rolloutRef"] = {"name": env.rollout_name}
    if gate.passing is None:
        spec["passing"] = True
    if after != before:
        spec["allowedVersions"] = None if after is None else list(after)
    metadata: dict[str, Any] = {}
    if gate.labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
        metadata["labels"] = {MANAGED_BY_LABEL: MANAGED_BY}
    wanted_annotations: dict[str, str | None] = {
        PRETTY_NAME_ANNOTATION: pretty,
        DESCRIPTION_ANNOTATION: description,
    }
    adopting = stored or takeover  # an Environment not yet stored can own nothing: its gate waits
    if adopting and PENDING_OWNER_ANNOTATION in gate.annotations:  # the owner reference says it now
        wanted_annotations[PENDING_OWNER_ANNOTATION] = None
    if any(gate.annotations.get(k) != v for k, v in wanted_annotations.items()):
        metadata["annotations"] = wanted_annotations
    refs = _owner_references(env, gate.owner_references, takeover=takeover)
    if adopting and refs != gate.owner_references:
        metadata["ownerReferences"] = [r.to_raw() for r in refs]
    patch: dict[str, Any] = {}
    if spec:
        patch["spec"] = spec
    if metadata:
        patch["metadata"] = metadata
    if not patch:
        return unchanged(gate, "gate already in shape")
    changed = sorted(f"{part}.{key}" for part, keys in patch.items() for key in keys)
    return GatePlan(
        action="update",
        gate=gate.name,
        reason=f"{why}; setting {', '.join(changed)}",
        patch=patch,
        allowed_before=before,
        allowed_after=after,
        resource_version=gate.resource_version,
    )


def _allowed_after(
    env: Environment, gate: RolloutGate, *, takeover: bool
) -> tuple[tuple[str, ...] | None, str]:
    before = gate.allowed_versions
    if env.relationship is None:
        return None, "no relationship: the gate does not restrict versions"
    if takeover:
        return (), "taking over the gate of a deleted Environment of the same name: blocking again"
    if before is None:
        return (), "relationship set but the gate allowed everything: blocking until the upstream bakes"
    if gate.rollout_name is not None and gate.rollout_name != env.rollout_name:
        return (
            (),
            f"the governed Rollout changed from {gate.rollout_name} to {env.rollout_name}: blocking again",
        )
    computed_for, now_for = read_evidence(gate).upstream, upstream_key(env)
    if before and computed_for != now_for:
        return (
            (),
            f"the allowed versions were computed for upstream {computed_for or 'unknown'}, the Environment "
            f"now follows {now_for}: blocking until recomputed",
        )
    return before, "keeping the allowed versions the recompute set"


def _owner_references(
    env: Environment, refs: Sequence[OwnerReference], *, takeover: bool
) -> tuple[OwnerReference, ...]:
    """Keep unrelated owners; make ours the canonical controller reference unless another controls."""
    ours = owner_reference(env)
    others = tuple(r for r in refs if not (_environment_ref(r) and (r.name == env.name or r.uid == env.uid)))
    if takeover:
        return (ours,)
    if any(r.controller for r in others):
        ours = OwnerReference(ours.api_version, ours.kind, ours.name, ours.uid, controller=False)
    existing = next((r for r in refs if r not in others), None)
    if existing is not None and existing == ours:
        return tuple(refs)
    return (*others, ours)
