"""The deploy guard: may this write of a Flux object make a Rollout run that version?

Why it exists: a RolloutGate is advice to kuberik's rollout controller, and the controller does not
always take it (since 7cd0117 it ignores gates on a Rollout's first deploy; a Rollout created before
its Environment is reconciled while no gate exists). What actually makes a version run is a write of
one field, and that write passes admission whoever makes it:

* `spec.ref.tag` of a Flux `OCIRepository` annotated `rollout.kuberik.com/rollout: <rollout>`;
* `spec.postBuild.substitute.<var>` of a Flux `Kustomization` annotated
  `rollout.kuberik.com/substitute.<var>.from: <rollout>` (`<var>` has no dots: the controller matches
  `^rollout\\.kuberik\\.com/substitute\\.([^.]+)\\.from$`).

The controller writes the release's *tag* into both (`wantedRelease` is `VersionInfo.Tag`), and the
gate lists tags, so the guard compares tags.

**What counts as a deploy.** A write changes what a Rollout runs when, for a Rollout named by the
annotation (on the new object or the old one: dropping the annotation in the same write does not
escape the check), the field's value differs from the old object's (UPDATE) or is set at all
(CREATE). Anything else (status, metadata, labels, the same tag written again, by Flux or anyone)
is no change and is allowed without reading anything. A version stagegate cannot name is refused
where a gate applies: `spec.ref.digest` or `spec.ref.semver` on the OCIRepository (Flux lets them
take precedence over the tag), or removing the tag or the substitute (Flux then pulls `latest`, or
leaves the variable to `substituteFrom`).

**Who may run it.** The Environments governing the Rollout (`spec.rolloutRef.name`, same namespace):
every one with a relationship must have a gate of its own (`shared.gate.is_owned_by`, naming that
Rollout) that is not `passing: false`, has an `allowedVersions` list (a null list on an Environment
with a relationship is the incident's state, never stagegate's) and lists the tag. An Environment
stagegate cannot read, but that may govern the Rollout, refuses too. Environments without a
relationship restrict nothing. A Rollout no Environment governs is refused only in a namespace that
opted in (its Environment may be a moment behind it) and goes through once the Environment exists.

**Human overrides** are kuberik's own: `spec.wantedVersion`, or the annotation
`rollout.kuberik.com/force-deploy` or `rollout.kuberik.com/bypass-gates`, on the Rollout, naming
exactly that tag (the controller reads all three as a tag). They let a refused deploy through with a
warning, a log line and an Event on the Rollout. The rule is about what runs, not who writes: there
is no exemption for any user or service account.

**Bootstrap and Flux re-applies.** A CREATE that names a tag runs it at once, so it is a deploy like
any other: for a governed Rollout it goes through only when the gate allows the tag (or an override
names it). A CREATE that names no tag is allowed (nothing to check; the rollout controller sets the
tag later and that write is checked). Flux's kustomize-controller re-applying a manifest is a write
like any other: the same tag again is no change, and a manifest that names another tag than the
running one is a deploy of that tag (and would fight the rollout controller anyway). So keep
`spec.ref.tag` and the substitute out of git, or mark the object
`kustomize.toolkit.fluxcd.io/ssa: IfNotPresent` so Flux creates it once and never re-applies it.

Everything here is pure: the shell reads the Environments, the gates, the namespace's labels and the
Rollout (each only when needed) and passes them in. This module never does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.admission import (
    KUSTOMIZE_GROUP,
    OCI_GROUP,
    AdmissionRequest,
    Decision,
    EventNotice,
    allow,
    deny,
)
from shared.errors import BadEvent
from shared.gate import is_owned_by
from shared.views import GATE_API_VERSION, Environment, RolloutGate

ROLLOUT_ANNOTATION = "rollout.kuberik.com/rollout"
SUBSTITUTE_ANNOTATION = re.compile(r"^rollout\.kuberik\.com/substitute\.([^.]+)\.from$")
FORCE_DEPLOY_ANNOTATION = "rollout.kuberik.com/force-deploy"
BYPASS_GATES_ANNOTATION = "rollout.kuberik.com/bypass-gates"
OVERRIDE_EVENT_REASON = "DeployOverride"
OVERRIDE_HOW = (
    f"spec.wantedVersion, or the annotation {FORCE_DEPLOY_ANNOTATION} or {BYPASS_GATES_ANNOTATION},"
)


@dataclass(frozen=True, slots=True)
class Deploy:
    """One version a write would make a Rollout run."""

    rollout: str
    target: str
    """`OCIRepository ns/name` or `Kustomization ns/name`."""
    field: str
    """The field that carries the version, e.g. `spec.ref.tag`."""
    version: str | None
    """The tag that would run; None when the write names none stagegate can check."""
    unverifiable: str | None = None
    """Why no tag can be checked (and what to do instead), when `version` is None."""


@dataclass(frozen=True, slots=True)
class _Selection:
    """What an object says should run: the field, its value, and why it cannot be checked (if so)."""

    field: str
    value: str
    unverifiable: str | None = None


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadEvent(f"{where} must be an object")
    return value


def _string(parent: Mapping[str, Any], key: str, where: str) -> str | None:
    """A string field; absent, null and empty all mean "not set" (Flux treats "" as unset too)."""
    value = parent.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadEvent(f"{where}.{key} must be a string")
    return value


def _annotations(obj: Mapping[str, Any] | None, where: str) -> Mapping[str, str]:
    meta = _mapping((obj or {}).get("metadata"), f"{where}.metadata")
    annotations = _mapping(meta.get("annotations"), f"{where}.metadata.annotations")
    if not all(isinstance(v, str) for v in annotations.values()):
        raise BadEvent(f"{where}.metadata.annotations must map strings to strings")
    return annotations


def _oci_selection(obj: Mapping[str, Any] | None, where: str) -> _Selection | None:
    """What an OCIRepository pulls, or None when it names nothing (Flux then pulls `latest`)."""
    spec = _mapping((obj or {}).get("spec"), f"{where}.spec")
    ref = _mapping(spec.get("ref"), f"{where}.spec.ref")
    digest = _string(ref, "digest", f"{where}.spec.ref")
    semver = _string(ref, "semver", f"{where}.spec.ref")
    tag = _string(ref, "tag", f"{where}.spec.ref")
    if digest is not None:
        return _Selection(
            "spec.ref.digest",
            digest,
            "spec.ref.digest takes precedence over spec.ref.tag, so no tag can be checked; "
            "remove it and let the rollout controller set spec.ref.tag",
        )
    if semver is not None:
        semver_filter = _string(ref, "semverFilter", f"{where}.spec.ref")
        return _Selection(
            "spec.ref.semver",
            semver if semver_filter is None else f"{semver} (filter {semver_filter})",
            "spec.ref.semver picks a tag by itself and takes precedence over spec.ref.tag, so no tag can "
            "be checked; remove it and let the rollout controller set spec.ref.tag",
        )
    return None if tag is None else _Selection("spec.ref.tag", tag)


def _substitutes(obj: Mapping[str, Any] | None, where: str) -> Mapping[str, Any]:
    spec = _mapping((obj or {}).get("spec"), f"{where}.spec")
    post_build = _mapping(spec.get("postBuild"), f"{where}.spec.postBuild")
    return _mapping(post_build.get("substitute"), f"{where}.spec.postBuild.substitute")


def _substitute_rollouts(annotations: Mapping[str, str]) -> set[tuple[str, str]]:
    """(variable, rollout) for every `rollout.kuberik.com/substitute.<var>.from: <rollout>`."""
    pairs = set()
    for key, rollout in annotations.items():
        match = SUBSTITUTE_ANNOTATION.match(key)
        if match and rollout:
            pairs.add((match.group(1), rollout))
    return pairs


def _changed(
    rollout: str,
    target: str,
    new: _Selection | None,
    old: _Selection | None,
    *,
    creating: bool,
    removed: tuple[str, str],
) -> Deploy | None:
    """The deploy a change from `old` to `new` makes, or None when nothing new would run.

    A CREATE naming nothing is no deploy (bootstrap: the rollout controller sets the version later).
    """
    if new == old or (creating and new is None):
        return None
    if new is None:
        field_name, why = removed
        return Deploy(rollout, target, field_name, None, why)
    if new.unverifiable is not None:
        return Deploy(rollout, target, new.field, None, new.unverifiable)
    return Deploy(rollout, target, new.field, new.value)


def deploy_changes(request: AdmissionRequest) -> list[Deploy]:
    """Every version the write would make a Rollout run; empty when it changes none.

    Raises `BadEvent` when the object cannot be read (the guard then refuses: fail closed).
    """
    creating = request.operation == "CREATE"
    new, old = request.object, None if creating else request.old_object
    namespace = request.namespace or _string(
        _mapping((new or {}).get("metadata"), "object.metadata"), "namespace", "object.metadata"
    )
    name = request.name or _string(_mapping((new or {}).get("metadata"), "object.metadata"), "name", "object")
    group = request.resource.group
    if group == OCI_GROUP:
        target = f"OCIRepository {namespace}/{name}"
        names = sorted(
            {
                annotations[ROLLOUT_ANNOTATION]
                for annotations in (_annotations(new, "object"), _annotations(old, "oldObject"))
                if annotations.get(ROLLOUT_ANNOTATION)
            }
        )
        if not names:
            return []
        new_selection, old_selection = _oci_selection(new, "object"), _oci_selection(old, "oldObject")
        removed = (
            "spec.ref.tag",
            "without spec.ref.tag Flux pulls the `latest` tag, which no gate can vouch for; "
            "set spec.ref.tag to a version the gate allows",
        )
        changes = [
            _changed(r, target, new_selection, old_selection, creating=creating, removed=removed)
            for r in names
        ]
        return [c for c in changes if c is not None]
    if group == KUSTOMIZE_GROUP:
        target = f"Kustomization {namespace}/{name}"
        pairs = sorted(
            _substitute_rollouts(_annotations(new, "object"))
            | _substitute_rollouts(_annotations(old, "oldObject"))
        )
        if not pairs:
            return []
        new_subs, old_subs = _substitutes(new, "object"), _substitutes(old, "oldObject")
        changes = []
        for variable, rollout in pairs:
            where = f"spec.postBuild.substitute.{variable}"
            new_value = _string(new_subs, variable, "object.spec.postBuild.substitute")
            old_value = _string(old_subs, variable, "oldObject.spec.postBuild.substitute")
            removed = (
                where,
                f"removing {where} leaves the variable to substituteFrom or unset, which no gate can vouch "
                f"for; set it to a version the gate allows",
            )
            changes.append(
                _changed(
                    rollout,
                    target,
                    None if new_value is None else _Selection(where, new_value),
                    None if old_value is None else _Selection(where, old_value),
                    creating=creating,
                    removed=removed,
                )
            )
        return [c for c in changes if c is not None]
    return []


@dataclass(frozen=True, slots=True)
class Governance:
    """The Environments in a Rollout's namespace that govern it (`spec.rolloutRef.name`)."""

    rollout: str
    restricting: tuple[Environment, ...] = ()
    """Those with a relationship: each needs a gate that allows the tag."""
    unrestricting: tuple[Environment, ...] = ()
    """Those without: they restrict nothing."""
    unreadable: tuple[str, ...] = ()
    """`name: why` of Environments that may govern it but cannot be read (they refuse: fail closed)."""

    @property
    def governed(self) -> bool:
        """Whether any Environment (readable or not) governs the Rollout."""
        return bool(self.restricting or self.unrestricting or self.unreadable)


def _rollout_ref(raw: object) -> str | None:
    """`spec.rolloutRef.name` of a raw Environment if it can be read at all, else None."""
    if not isinstance(raw, Mapping):
        return None
    spec = raw.get("spec")
    ref = spec.get("rolloutRef") if isinstance(spec, Mapping) else None
    name = ref.get("name") if isinstance(ref, Mapping) else None
    return name if isinstance(name, str) and name else None


def governance(raw_environments: Sequence[object], rollouts: Iterable[str]) -> dict[str, Governance]:
    """Sort the namespace's Environments (as the API listed them) by the Rollouts in question."""
    wanted = set(rollouts)
    restricting: dict[str, list[Environment]] = {r: [] for r in wanted}
    unrestricting: dict[str, list[Environment]] = {r: [] for r in wanted}
    unreadable: dict[str, list[str]] = {r: [] for r in wanted}
    for raw in raw_environments:
        try:
            env = Environment.from_raw(raw)
        except BadEvent as exc:
            ref = _rollout_ref(raw)
            meta = raw.get("metadata") if isinstance(raw, Mapping) else None
            name = meta.get("name") if isinstance(meta, Mapping) else None
            for rollout in wanted if ref is None else wanted & {ref}:
                unreadable[rollout].append(f"{name or '?'}: {exc}")
            continue
        if env.rollout_name in wanted:
            (restricting if env.relationship is not None else unrestricting)[env.rollout_name].append(env)
    return {
        r: Governance(r, tuple(restricting[r]), tuple(unrestricting[r]), tuple(unreadable[r])) for r in wanted
    }


def opted_in(labels: Mapping[str, str] | None, label: tuple[str, str]) -> bool:
    """Whether the namespace carries the opt-in label (`key=value`)."""
    key, value = label
    return labels is not None and labels.get(key) == value


@dataclass(frozen=True, slots=True)
class Needs:
    """Which reads the decision needs beyond the Environments."""

    gates: bool
    namespace: bool


def needs(changes: Sequence[Deploy], governed: Mapping[str, Governance]) -> Needs:
    """Gates only when an Environment with a relationship is involved; labels only for ungoverned Rollouts."""
    involved = [governed[c.rollout] for c in changes]
    return Needs(gates=any(g.restricting for g in involved), namespace=any(not g.governed for g in involved))


@dataclass(frozen=True, slots=True)
class Finding:
    """What the gates say about one deploy."""

    deploy: Deploy
    allowed: bool
    reason: str
    """Allowed: why, for the log. Refused: what is missing, a clause of the denial sentence."""
    overridable: bool = True

    @property
    def needs_override(self) -> bool:
        """Refused, and a human override on the Rollout could still let it through."""
        return not self.allowed and self.overridable and self.deploy.version is not None


def _gate_verdict(deploy: Deploy, gate: RolloutGate, env: Environment) -> str | None:
    """Why this gate refuses the deploy, or None when it allows it."""
    upstream = env.relationship.environment if env.relationship is not None else "its upstream"
    if gate.passing is False:
        return f"RolloutGate {gate.name} of Environment {env.name} is not passing"
    if gate.allowed_versions is None:
        return (
            f"RolloutGate {gate.name} of Environment {env.name} has no allowedVersions list although the "
            f"Environment follows {upstream} (stagegate closes it to [] at the Environment's next change)"
        )
    if deploy.version not in gate.allowed_versions:
        return (
            f"RolloutGate {gate.name} of Environment {env.name} does not allow it "
            f"(it allows only versions baked in {upstream}: {_listed(gate.allowed_versions)})"
        )
    return None


def _listed(versions: Sequence[str]) -> str:
    if not versions:
        return "none yet"
    shown = ", ".join(versions[:5])
    return shown if len(versions) <= 5 else f"{shown} and {len(versions) - 5} more"


def judge(
    deploy: Deploy, governed: Governance, gates: Sequence[RolloutGate], namespace_opted_in: bool
) -> Finding:
    """Whether stagegate's gates let this deploy run, before any override is considered."""
    rollout = deploy.rollout
    if not governed.governed:
        if namespace_opted_in:
            return Finding(
                deploy,
                False,
                f"no Environment governs Rollout {rollout} yet in this namespace, which opted in to the "
                "deploy guard (the deploy goes through once its Environment exists)",
            )
        return Finding(deploy, True, f"no Environment governs Rollout {rollout} (namespace not opted in)")
    if deploy.version is None and (governed.restricting or governed.unreadable):
        return Finding(deploy, False, deploy.unverifiable or "no version to check", overridable=False)
    if governed.unreadable:
        return Finding(
            deploy,
            False,
            f"Environment {governed.unreadable[0]} may govern Rollout {rollout} but cannot be read",
        )
    if not governed.restricting:
        names = ", ".join(e.name for e in governed.unrestricting)
        return Finding(
            deploy,
            True,
            f"Rollout {rollout} is governed only by Environments without a relationship ({names})",
        )
    allowed_by: list[str] = []
    for env in governed.restricting:
        own = [g for g in gates if is_owned_by(g, env) and g.rollout_name == rollout and not g.being_deleted]
        if not own:
            return Finding(
                deploy,
                False,
                f"Environment {env.name} follows {env.relationship.environment if env.relationship else '?'} "
                f"but has no RolloutGate for Rollout {rollout} yet",
            )
        for gate in own:
            refusal = _gate_verdict(deploy, gate, env)
            if refusal is not None:
                return Finding(deploy, False, refusal)
            allowed_by.append(gate.name)
    return Finding(deploy, True, f"allowed by RolloutGate {', '.join(allowed_by)}")


@dataclass(frozen=True, slots=True)
class RolloutOverrides:
    """The human overrides on a Rollout, as kuberik's rollout controller reads them (each is a tag)."""

    name: str
    uid: str | None
    wanted_version: str | None
    force_deploy: str | None
    bypass_gates: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_raw(cls, raw: object) -> RolloutOverrides:
        """Read the override fields of a Rollout; raise `BadEvent` when they are malformed."""
        obj = _mapping(raw, "Rollout")
        meta = _mapping(obj.get("metadata"), "Rollout.metadata")
        spec = _mapping(obj.get("spec"), "Rollout.spec")
        annotations = _annotations(obj, "Rollout")
        name = _string(meta, "name", "Rollout.metadata")
        if name is None:
            raise BadEvent("Rollout.metadata.name is required")
        return cls(
            name=name,
            uid=_string(meta, "uid", "Rollout.metadata"),
            wanted_version=_string(spec, "wantedVersion", "Rollout.spec"),
            force_deploy=annotations.get(FORCE_DEPLOY_ANNOTATION) or None,
            bypass_gates=annotations.get(BYPASS_GATES_ANNOTATION) or None,
            raw=obj,
        )

    def naming(self, tag: str) -> str | None:
        """Which override names exactly this tag, or None."""
        if self.wanted_version == tag:
            return "spec.wantedVersion"
        if self.force_deploy == tag:
            return f"annotation {FORCE_DEPLOY_ANNOTATION}"
        if self.bypass_gates == tag:
            return f"annotation {BYPASS_GATES_ANNOTATION}"
        return None


def refused_rollouts(findings: Sequence[Finding]) -> list[str]:
    """The Rollouts whose overrides must be read: those with a refused, overridable deploy."""
    return sorted({f.deploy.rollout for f in findings if f.needs_override})


def _sentence(finding: Finding) -> str:
    deploy = finding.deploy
    what = deploy.version if deploy.version is not None else f"what {deploy.field} names"
    head = (
        f"{deploy.target} may not run {what} for Rollout {deploy.rollout} ({deploy.field}): {finding.reason}"
    )
    if not finding.needs_override:
        return head
    return f"{head}; to deploy it anyway set {OVERRIDE_HOW} on Rollout {deploy.rollout} to {deploy.version}"


def guard_decision(
    findings: Sequence[Finding],
    rollouts: Mapping[str, RolloutOverrides | None],
    namespace: str,
    writer: str | None = None,
) -> Decision:
    """Combine the findings with the overrides: refuse if any deploy stays refused, else allow.

    `rollouts` holds the Rollouts read for `refused_rollouts(findings)` (None: it does not exist).
    """
    reasons: list[str] = []
    refusals: list[Finding] = []
    warnings: list[str] = []
    events: list[EventNotice] = []
    for finding in findings:
        deploy = finding.deploy
        if finding.allowed:
            reasons.append(f"{deploy.rollout} {deploy.version}: {finding.reason}")
            continue
        rollout = rollouts.get(deploy.rollout) if finding.needs_override else None
        override = rollout.naming(deploy.version) if rollout is not None and deploy.version else None
        if rollout is None or override is None or deploy.version is None:
            refusals.append(finding)
            continue
        reasons.append(f"{deploy.rollout} {deploy.version}: human override {override} ({finding.reason})")
        warnings.append(
            f"stagegate: Rollout {deploy.rollout} runs {deploy.version} by human override ({override}), "
            "not because its upstream baked it"
        )
        events.append(
            EventNotice(
                namespace=namespace,
                api_version=GATE_API_VERSION,
                kind="Rollout",
                name=rollout.name,
                uid=rollout.uid,
                reason=OVERRIDE_EVENT_REASON,
                message=f"{deploy.target} set {deploy.field} to {deploy.version}"
                f"{f' ({writer})' if writer else ''} by human override {override}, although {finding.reason}",
            )
        )
    if refusals:
        more = f" ({len(refusals) - 1} more refused)" if len(refusals) > 1 else ""
        return deny(
            _sentence(refusals[0]) + more,
            "; ".join(f"{f.deploy.rollout} {f.deploy.version}: {f.reason}" for f in refusals),
        )
    return allow("; ".join(reasons) or "no version changed", tuple(warnings), tuple(events))


def unchanged() -> Decision:
    """The answer to a write that changes no version: allowed, nothing read."""
    return allow("no version changed (status, metadata or the same version)")


def unreadable_object(request: AdmissionRequest, why: str) -> Decision:
    """Fail closed on a Flux object the guard cannot read."""
    return deny(
        f"stagegate cannot read {request.resource.resource} {request.key} to check the version: {why}"
    )


def unknown_version(request: AdmissionRequest) -> Decision:
    """Fail closed on a Flux API version whose fields the guard does not know."""
    res = request.resource
    return deny(
        f"stagegate does not know {res.resource}.{res.group}/{res.version}, so it cannot check which version "
        f"{request.key} would run; register the deploy guard for the versions it knows"
    )


def unavailable(request: AdmissionRequest, why: str) -> Decision:
    """Fail closed when the check itself failed (Kubernetes failed or did not answer in time)."""
    return deny(
        f"stagegate could not check whether {request.key} may run its new version ({why}); nothing was "
        "deployed, try again (the rollout controller retries by itself)"
    )
