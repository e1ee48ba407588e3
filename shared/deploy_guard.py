"""The deploy guard: may this write of a Flux object change what a Rollout runs?

Why it exists: a RolloutGate is advice to kuberik's rollout controller, and the controller does not
always take it (since 7cd0117 it ignores gates on a Rollout's first deploy; a Rollout created before
its Environment is reconciled while no gate exists). What makes a version run is a write of a Flux
object, and that write passes admission whoever makes it. The rollout controller deploys by writing
one field:

* `spec.ref.tag` of a Flux `OCIRepository` annotated `rollout.kuberik.com/rollout: <rollout>`;
* `spec.postBuild.substitute.<var>` of a Flux `Kustomization` annotated
  `rollout.kuberik.com/substitute.<var>.from: <rollout>` (`<var>` has no dots: the controller matches
  `^rollout\\.kuberik\\.com/substitute\\.([^.]+)\\.from$`).

It writes the release's *tag* into both (`wantedRelease` is `VersionInfo.Tag`), and the gate lists
tags, so the guard compares tags. But a guard that judged only that field could be walked around one
field at a time (drop the annotation and put it back, point the Kustomization at staging's source,
set `spec.images`, change `spec.path` or `spec.url`, delete and recreate, `substituteFrom`), so it
judges what the object makes run instead.

**Governed objects.** An OCIRepository is governed by the Rollout its `rollout.kuberik.com/rollout`
annotation names, on the old object or the new one. A Kustomization is governed by the Rollouts of its
substitute annotations (old or new), and by the Rollout of any OCIRepository its old or new
`spec.sourceRef` names (kind OCIRepository; the namespace defaults to the Kustomization's) when that
OCIRepository, as the API has it now, carries the rollout annotation; that Rollout lives in the
source's namespace. Reading those sources is the shell's job: `FluxWrite.sources` says which ones the
decision needs (none when nothing that decides what runs changed), and `deploy_changes` takes them.
A source that does not exist governs nothing.

**The artifact view.** What an object makes run is its governing annotations plus its `spec` minus the
fields that cannot change content (`HARMLESS_FIELDS`). Everything else in `spec`, including any field
unknown today, decides what runs: default-deny, so no field is left to walk around. Values are
compared normalized (null, "", absent, {} and [] are the same, and so are a Kustomization's
`sourceRef.namespace` naming its own namespace and none), so Flux re-applying an unchanged manifest is
no change.

**Classifying a write** of a governed object:

* UPDATE, artifact views equal: no change, allowed without any read (status, metadata, labels,
  annotations that govern nothing, harmless fields, the same tag again).
* UPDATE whose views differ only in governed version fields (`spec.ref` of an OCIRepository whose
  rollout annotation is the same on both; `postBuild.substitute.<var>` of a variable annotated with
  the same Rollout on both): a deploy of the new tag, judged by the gates (`judge`). A version
  stagegate cannot name is refused where a gate applies and no override helps: `spec.ref.digest` or
  `spec.ref.semver` (Flux lets them take precedence over the tag), or removing the tag or the
  substitute (Flux then pulls `latest`, or leaves the variable to `substituteFrom`).
* UPDATE that only adds governing annotations: a deploy of what the object runs, judged like a
  CREATE (so putting the annotation back on an object running an unbaked tag is refused).
* Any other difference: an *unvouched change* for every governing Rollout, old and new. Gates vouch
  for tags, not for what a tag means, so it is refused for a Rollout governed by an Environment with a
  relationship (or by Environments that cannot be read; or by none at all in an opted-in namespace),
  unless a human override on that Rollout names exactly the tag the new object would run. Refinement:
  when the governing Rollouts are the same before and after and the object names no version on either
  side (nothing deployed through it yet: as at bootstrap), the change is judged like creating the new
  object, which names nothing to check either.
* CREATE: an annotated object naming a tag or substitute is a deploy of it; naming none is no deploy
  (bootstrap: the rollout controller sets the version later, and that write is checked). A
  Kustomization governed through its source is a deploy of the source's current tag. A Kustomization
  whose `spec.images` sets `newName`, `newTag` or `digest` is an unvouched change.
* DELETE: an unvouched change (deleting it and creating it again without the annotation would escape
  every check), overridable by an override naming the tag it ran; allowed when its namespace is being
  deleted (the shell checks first: namespace deletion must never hang), when no Environment with a
  relationship governs its Rollouts (decommissioning: delete the Environments first), and when the
  object is already being deleted (its delete was judged when it began; Flux's finalizers hold it).

**Who may run it.** The Environments governing the Rollout (`spec.rolloutRef.name`, in the Rollout's
namespace): every one with a relationship must have a gate of its own (`shared.gate.is_owned_by`,
naming that Rollout) that is not `passing: false`, has an `allowedVersions` list (a null list on an
Environment with a relationship is the incident's state, never stagegate's) and lists the tag. An
Environment stagegate cannot read, but that may govern the Rollout, refuses too. Environments without
a relationship restrict nothing. A Rollout no Environment governs is refused only in a namespace that
opted in (its Environment may be a moment behind it) and goes through once the Environment exists.

**Human overrides** are kuberik's own: `spec.wantedVersion`, or the annotation
`rollout.kuberik.com/force-deploy` or `rollout.kuberik.com/bypass-gates`, on the Rollout, naming
exactly that tag (the controller reads all three as a tag). They let a refused deploy, change or
delete through with a warning, a log line and a `DeployOverride` Event on the Rollout naming what
changed. The rule is about what runs, not who writes: there is no exemption for any user or service
account.

Everything here is pure: the shell reads the sources, the namespace, the Environments, the gates and
the Rollout (each only when needed) and passes them in. This module never does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

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

Kind = Literal["OCIRepository", "Kustomization"]
KINDS: Mapping[str, Kind] = {OCI_GROUP: "OCIRepository", KUSTOMIZE_GROUP: "Kustomization"}

HARMLESS_FIELDS: Mapping[Kind, frozenset[str]] = {
    "OCIRepository": frozenset(
        {
            "interval",
            "timeout",
            "suspend",
            "secretRef",
            "serviceAccountName",
            "certSecretRef",
            "proxySecretRef",
            "provider",
            "verify",
        }
    ),
    "Kustomization": frozenset(
        {
            "interval",
            "retryInterval",
            "timeout",
            "suspend",
            "prune",
            "wait",
            "force",
            "healthChecks",
            "healthCheckExprs",
            "dependsOn",
            "serviceAccountName",
            "decryption",
            "deletionPolicy",
        }
    ),
}
"""Top-level `spec` fields that say when, how often or with which credentials Flux works, not what it
makes run. Only these are left out of the artifact view; every other field, known or not, is in it."""

OCI_SELECTION_FIELDS = ("tag", "digest", "semver", "semverFilter")
"""`spec.ref` fields that pick the artifact's version: the OCIRepository's governed version fields."""

IMAGE_OVERRIDE_FIELDS = ("newName", "newTag", "digest")
"""`spec.images[]` fields that replace an image the manifests name, so the object runs something else."""

Change = Literal["version", "unvouched", "delete"]
Shape = Literal["ungoverned", "unchanged", "versions", "annotated", "changed", "create", "delete"]


@dataclass(frozen=True, slots=True)
class Deploy:
    """What a write would change about what one Rollout runs."""

    rollout: str
    target: str
    """`OCIRepository ns/name` or `Kustomization ns/name`."""
    field: str
    """Where the version comes from, e.g. `spec.ref.tag` (a change or a delete: of what the object runs)."""
    version: str | None
    """The tag that would run (a delete: that ran); None when there is none stagegate can check."""
    unverifiable: str | None = None
    """Why no tag can be checked (and what to do instead), when `version` is None."""
    change: Change = "version"
    """`version`: a new value of a governed version field, judged by the gates. `unvouched`: anything else
    that decides what runs (`changed` says what), which no gate vouches for. `delete`: the object goes."""
    changed: tuple[str, ...] = ()
    """The fields an unvouched change changes, for the refusal and the override Event."""
    rollout_namespace: str | None = None
    """The Rollout's namespace when it is not the object's (a cross-namespace `spec.sourceRef`)."""

    @property
    def rollout_label(self) -> str:
        """The Rollout as messages name it: `name`, or `namespace/name` when it lives elsewhere."""
        return f"{self.rollout_namespace}/{self.rollout}" if self.rollout_namespace else self.rollout

    def rollout_key(self, namespace: str) -> tuple[str, str]:
        """(namespace, name) of the Rollout; `namespace` is the written object's."""
        return (self.rollout_namespace or namespace, self.rollout)


@dataclass(frozen=True, slots=True)
class SourceKey:
    """An OCIRepository a Kustomization's `spec.sourceRef` names."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"OCIRepository {self.namespace}/{self.name}"


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


def _substitute_rollouts(annotations: Mapping[str, str]) -> set[tuple[str, str]]:
    """(variable, rollout) for every `rollout.kuberik.com/substitute.<var>.from: <rollout>`."""
    pairs = set()
    for key, rollout in annotations.items():
        match = SUBSTITUTE_ANNOTATION.match(key)
        if match and rollout:
            pairs.add((match.group(1), rollout))
    return pairs


def _is_empty(value: object) -> bool:
    return value is None or (isinstance(value, str | Mapping | list) and len(value) == 0)


def _normalized(value: Any) -> Any:
    """`value` with null, "", {} and [] dropped from every mapping, so that they all equal absent."""
    if isinstance(value, Mapping):
        kept = ((k, _normalized(v)) for k, v in value.items())
        return {k: v for k, v in kept if not _is_empty(v)}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    return value


def _differences(old: Any, new: Any, path: str) -> list[str]:
    """The paths at which two normalized values differ (a list is compared whole; absent is {} to a map)."""
    if isinstance(old, Mapping) or isinstance(new, Mapping):
        before = old if isinstance(old, Mapping) else {} if old is None else None
        after = new if isinstance(new, Mapping) else {} if new is None else None
        if before is not None and after is not None:
            return [
                difference
                for key in sorted(set(before) | set(after), key=str)
                for difference in _differences(before.get(key), after.get(key), f"{path}.{key}")
            ]
    return [] if old == new else [path]


@dataclass(frozen=True, slots=True)
class _Side:
    """One side of a write (the old or the new object) as the guard sees it."""

    governors: frozenset[tuple[str, str]]
    """(variable, rollout) of the governing annotations; an OCIRepository's variable is ""."""
    spec: Mapping[str, Any]
    """The artifact-defining part of `spec`, normalized."""
    selection: _Selection | None
    """An OCIRepository's `spec.ref` selection."""
    substitutes: Mapping[str, Any]
    """A Kustomization's `spec.postBuild.substitute`, as written."""
    source: SourceKey | None
    """A Kustomization's `spec.sourceRef`, when it names an OCIRepository."""
    overrides_images: bool
    """A Kustomization's `spec.images` replaces an image (`IMAGE_OVERRIDE_FIELDS`)."""
    where: str

    def substitute(self, variable: str) -> str | None:
        """The value the object substitutes for `variable`, or None when it sets none."""
        return _string(self.substitutes, variable, f"{self.where}.spec.postBuild.substitute")


def _side(obj: Mapping[str, Any] | None, kind: Kind, namespace: str, where: str) -> _Side:
    """Read one side of a write; raise `BadEvent` when a field the guard reads is malformed."""
    annotations = _annotations(obj, where)
    spec = _mapping((obj or {}).get("spec"), f"{where}.spec")
    view = {k: v for k, v in _normalized(spec).items() if k not in HARMLESS_FIELDS[kind]}
    if kind == "OCIRepository":
        rollout = annotations.get(ROLLOUT_ANNOTATION)
        governors = frozenset({("", rollout)}) if rollout else frozenset()
        return _Side(governors, view, _oci_selection(obj, where), {}, None, False, where)
    post_build = _mapping(spec.get("postBuild"), f"{where}.spec.postBuild")
    source_ref = view.get("sourceRef")
    if isinstance(source_ref, Mapping) and source_ref.get("namespace") == namespace:
        # the default spelled out names the same source
        view["sourceRef"] = {k: v for k, v in source_ref.items() if k != "namespace"}
    return _Side(
        governors=frozenset(_substitute_rollouts(annotations)),
        spec=view,
        selection=None,
        substitutes=_mapping(post_build.get("substitute"), f"{where}.spec.postBuild.substitute"),
        source=_source_key(spec, namespace, where),
        overrides_images=_overrides_images(spec, where),
        where=where,
    )


def _source_key(spec: Mapping[str, Any], namespace: str, where: str) -> SourceKey | None:
    ref = _mapping(spec.get("sourceRef"), f"{where}.spec.sourceRef")
    name = _string(ref, "name", f"{where}.spec.sourceRef")
    if _string(ref, "kind", f"{where}.spec.sourceRef") != "OCIRepository" or name is None:
        return None
    return SourceKey(_string(ref, "namespace", f"{where}.spec.sourceRef") or namespace, name)


def _overrides_images(spec: Mapping[str, Any], where: str) -> bool:
    images = spec.get("images")
    if _is_empty(images):
        return False
    if not isinstance(images, list):
        raise BadEvent(f"{where}.spec.images must be a list")
    return any(
        _string(_mapping(image, f"{where}.spec.images[{i}]"), key, f"{where}.spec.images[{i}]") is not None
        for i, image in enumerate(images)
        for key in IMAGE_OVERRIDE_FIELDS
    )


def _version_fields(side: _Side, kind: Kind) -> set[str]:
    """The governed version fields of a side whose governing annotations the other side shares."""
    if kind == "OCIRepository":
        return {f"spec.ref.{k}" for k in OCI_SELECTION_FIELDS} if side.governors else set()
    return {f"spec.postBuild.substitute.{variable}" for variable, _ in side.governors}


def _annotation_changes(old: _Side, new: _Side, kind: Kind) -> list[str]:
    if kind == "OCIRepository":
        return [] if old.governors == new.governors else [f"annotation {ROLLOUT_ANNOTATION}"]
    before, after = dict(old.governors), dict(new.governors)
    return [
        f"annotation rollout.kuberik.com/substitute.{variable}.from"
        for variable in sorted(set(before) | set(after))
        if before.get(variable) != after.get(variable)
    ]


def _classify(old: _Side, new: _Side, kind: Kind) -> tuple[Shape, tuple[str, ...]]:
    """The shape of an UPDATE of a possibly governed object, and the fields it changes."""
    if old.governors == new.governors and old.spec == new.spec:
        return "unchanged", ()
    changed = _differences(old.spec, new.spec, "spec")
    annotations = _annotation_changes(old, new, kind)
    if old.governors == new.governors and set(changed) <= _version_fields(old, kind):
        return "versions", tuple(changed)
    if not changed and old.governors < new.governors:
        return "annotated", tuple(annotations)
    return "changed", (*annotations, *changed)


@dataclass(frozen=True, slots=True)
class FluxWrite:
    """A write of a Flux object, read once: its old and new artifact views and how they differ."""

    kind: Kind
    namespace: str
    name: str
    shape: Shape
    """`ungoverned`: nothing governs either side. `unchanged`: the artifact views are equal. `versions`:
    only governed version fields changed. `annotated`: only governing annotations were added.
    `changed`: anything else changed. `create` / `delete`: the object comes or goes."""
    old: _Side | None
    new: _Side | None
    changed: tuple[str, ...] = ()
    """What differs: field paths (`spec.url`) and annotations (`annotation rollout.kuberik.com/rollout`)."""

    @property
    def target(self) -> str:
        """`Kind namespace/name`, for messages."""
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def judged(self) -> bool:
        """Whether the write may change what a Rollout runs (otherwise it is allowed without any read)."""
        return self.shape not in ("ungoverned", "unchanged")

    @property
    def sources(self) -> tuple[SourceKey, ...]:
        """The OCIRepositories (named by `spec.sourceRef`) whose annotation and tag the decision needs.

        None when nothing artifact-defining changed, or only version fields and annotations did: the
        source then governs as it did, and its own writes are judged where they happen.
        """
        if self.shape not in ("changed", "create", "delete"):
            return ()
        keys = {side.source for side in (self.old, self.new) if side is not None and side.source is not None}
        return tuple(sorted(keys, key=lambda k: (k.namespace, k.name)))


def flux_write(request: AdmissionRequest) -> FluxWrite | None:
    """Read a write of an OCIRepository or a Kustomization; None for any other resource.

    Raises `BadEvent` when the object cannot be read (the guard then refuses: fail closed).
    """
    kind = KINDS.get(request.resource.group)
    if kind is None:
        return None
    subject = request.object if request.object is not None else request.old_object
    meta = _mapping((subject or {}).get("metadata"), "object.metadata")
    namespace = request.namespace or _string(meta, "namespace", "object.metadata")
    name = request.name or _string(meta, "name", "object.metadata") or "?"
    if namespace is None:
        raise BadEvent("the request names no namespace")
    new = None if request.operation == "DELETE" else _side(request.object, kind, namespace, "object")
    old = None if request.operation == "CREATE" else _side(request.old_object, kind, namespace, "oldObject")
    sides = [side for side in (old, new) if side is not None]
    shape: Shape
    changed: tuple[str, ...] = ()
    if not any(side.governors or side.source for side in sides):
        shape = "ungoverned"
    elif new is None and meta.get("deletionTimestamp") is not None:
        shape = "unchanged"  # its delete was judged when it began; this one only asks again
    elif old is None:
        shape = "create"
    elif new is None:
        shape = "delete"
    else:
        shape, changed = _classify(old, new, kind)
    return FluxWrite(kind, namespace, name, shape, old, new, changed)


@dataclass(frozen=True, slots=True)
class _SourceView:
    """A source OCIRepository as the API has it now: whom it deploys for and what it pulls."""

    key: SourceKey
    rollout: str | None
    selection: _Selection | None

    @property
    def runs(self) -> _Selection | None:
        """What a Kustomization consuming this source runs, naming the source."""
        if self.selection is None:
            return None
        where = f"{self.selection.field} of {self.key}, its spec.sourceRef"
        return _Selection(where, self.selection.value, self.selection.unverifiable)


def _source_view(raw: Mapping[str, Any], key: SourceKey) -> _SourceView:
    where = str(key)
    rollout = _annotations(raw, where).get(ROLLOUT_ANNOTATION) or None
    return _SourceView(key, rollout, _oci_selection(raw, where))


_REMOVED_TAG = (
    "spec.ref.tag",
    "without spec.ref.tag Flux pulls the `latest` tag, which no gate can vouch for; "
    "set spec.ref.tag to a version the gate allows",
)


def _removed_substitute(where: str) -> tuple[str, str]:
    return (
        where,
        f"removing {where} leaves the variable to substituteFrom or unset, which no gate can vouch "
        f"for; set it to a version the gate allows",
    )


def _changed(
    rollout: str,
    target: str,
    new: _Selection | None,
    old: _Selection | None,
    *,
    creating: bool,
    removed: tuple[str, str],
    rollout_namespace: str | None = None,
) -> Deploy | None:
    """The deploy a change from `old` to `new` makes, or None when nothing new would run.

    A CREATE naming nothing is no deploy (bootstrap: the rollout controller sets the version later).
    """
    if new == old or (creating and new is None):
        return None
    if new is None:
        field_name, why = removed
        return Deploy(rollout, target, field_name, None, why, rollout_namespace=rollout_namespace)
    if new.unverifiable is not None:
        return Deploy(rollout, target, new.field, None, new.unverifiable, rollout_namespace=rollout_namespace)
    return Deploy(rollout, target, new.field, new.value, rollout_namespace=rollout_namespace)


def _variable_selection(side: _Side, variable: str) -> _Selection | None:
    value = side.substitute(variable)
    return None if value is None else _Selection(f"spec.postBuild.substitute.{variable}", value)


def _governor_deploys(
    write: FluxWrite, new: _Side, old: _Side | None, pairs: Iterable[tuple[str, str]], *, creating: bool
) -> list[Deploy]:
    """The deploys of the version fields of these governing annotations, from `old` to `new`."""
    deploys = []
    for variable, rollout in sorted(pairs):
        if write.kind == "OCIRepository":
            before = None if old is None else old.selection
            deploy = _changed(
                rollout, write.target, new.selection, before, creating=creating, removed=_REMOVED_TAG
            )
        else:
            where = f"spec.postBuild.substitute.{variable}"
            deploy = _changed(
                rollout,
                write.target,
                _variable_selection(new, variable),
                None if old is None else _variable_selection(old, variable),
                creating=creating,
                removed=_removed_substitute(where),
            )
        if deploy is not None:
            deploys.append(deploy)
    return deploys


def _governing(
    write: FluxWrite, side: _Side | None, views: Mapping[SourceKey, _SourceView]
) -> set[tuple[str, str]]:
    """(namespace, name) of the Rollouts that govern one side of the write."""
    if side is None:
        return set()
    keys = {(write.namespace, rollout) for _, rollout in side.governors}
    view = views.get(side.source) if side.source is not None else None
    if view is not None and view.rollout:
        keys.add((view.key.namespace, view.rollout))
    return keys


def _runs(
    write: FluxWrite, side: _Side, rollout: tuple[str, str], views: Mapping[SourceKey, _SourceView]
) -> _Selection | None:
    """What one side of the write runs for a Rollout: its tag (or why none can be checked), or None.

    An OCIRepository runs its `spec.ref`; a Kustomization the substitute of the Rollout's variable,
    else its source's `spec.ref`.
    """
    if write.kind == "OCIRepository":
        return side.selection
    variables = sorted(
        {
            variable
            for each in (write.old, write.new)
            if each is not None
            for variable, name in each.governors
            if (write.namespace, name) == rollout
        }
    )
    named = [(v, s) for v in variables if (s := _variable_selection(side, v)) is not None]
    values = sorted({s.value for _, s in named})
    if len(values) == 1:
        return named[0][1]
    if values:
        fields = ", ".join(s.field for _, s in named)
        return _Selection(
            fields,
            " / ".join(values),
            f"the variables of Rollout {rollout[1]} name different versions ({fields}), so no single tag can "
            "be checked; make them name the same tag",
        )
    view = views.get(side.source) if side.source is not None else None
    return None if view is None else view.runs


def _unvouched(
    write: FluxWrite, views: Mapping[SourceKey, _SourceView], changed: tuple[str, ...]
) -> list[Deploy]:
    """An unvouched change (or a delete) for every Rollout that governs either side."""
    deleting = write.shape == "delete"
    side = write.old if deleting else write.new
    assert side is not None
    before, after = _governing(write, write.old, views), _governing(write, write.new, views)
    same_governance = write.old is not None and write.new is not None and before == after
    deploys = []
    for key in sorted(before | after):
        runs = _runs(write, side, key, views)
        if (
            same_governance
            and runs is None
            and write.old is not None
            and _runs(write, write.old, key, views) is None
        ):
            continue  # names no version before or after: judged like creating it (bootstrap)
        deploys.append(
            Deploy(
                rollout=key[1],
                target=write.target,
                field=runs.field if runs is not None else "no version",
                version=runs.value if runs is not None and runs.unverifiable is None else None,
                unverifiable=None if runs is None else runs.unverifiable,
                change="delete" if deleting else "unvouched",
                changed=changed,
                rollout_namespace=None if key[0] == write.namespace else key[0],
            )
        )
    return deploys


def _create_deploys(write: FluxWrite, views: Mapping[SourceKey, _SourceView]) -> list[Deploy]:
    new = write.new
    assert new is not None
    if new.overrides_images:
        return _unvouched(write, views, ("spec.images",))
    deploys = _governor_deploys(write, new, None, new.governors, creating=True)
    view = views.get(new.source) if new.source is not None else None
    if view is not None and view.rollout:
        deploy = _changed(
            view.rollout,
            write.target,
            view.runs,
            None,
            creating=True,
            removed=_REMOVED_TAG,
            rollout_namespace=None if view.key.namespace == write.namespace else view.key.namespace,
        )
        if deploy is not None:
            deploys.append(deploy)
    return deploys


def deploy_changes(write: FluxWrite, sources: Mapping[SourceKey, Mapping[str, Any] | None]) -> list[Deploy]:
    """What the write would change about what each governing Rollout runs; empty when nothing.

    `sources` holds the OCIRepositories `write.sources` names, as the API has them now (None: it does
    not exist, so it governs nothing). Raises `BadEvent` when a source cannot be read.
    """
    views = {key: _source_view(raw, key) for key, raw in sources.items() if raw is not None}
    old, new = write.old, write.new
    if write.shape == "versions" and old is not None and new is not None:
        return _governor_deploys(write, new, old, old.governors, creating=False)
    if write.shape == "annotated" and old is not None and new is not None:
        return _governor_deploys(write, new, None, new.governors - old.governors, creating=True)
    if write.shape == "create":
        return _create_deploys(write, views)
    if write.shape in ("changed", "delete"):
        return _unvouched(write, views, write.changed)
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
    """Sort one namespace's Environments (as the API listed them) by the Rollouts in question."""
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

    gates: tuple[str, ...]
    """The namespaces whose RolloutGates decide (only version deploys are judged by gates)."""
    namespace: bool
    """Whether the opt-in label decides (a Rollout no Environment governs, other than for a delete)."""


def needs(changes: Sequence[Deploy], governed: Mapping[tuple[str, str], Governance], namespace: str) -> Needs:
    """Gates only where a version deploy meets an Environment with a relationship; labels only for
    ungoverned Rollouts (a delete of an ungoverned object is decommissioning, whatever the label)."""
    gates = {
        c.rollout_key(namespace)[0]
        for c in changes
        if c.change == "version" and governed[c.rollout_key(namespace)].restricting
    }
    labels = any(not governed[c.rollout_key(namespace)].governed and c.change != "delete" for c in changes)
    return Needs(gates=tuple(sorted(gates)), namespace=labels)


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


def _upstream(env: Environment) -> str:
    return env.relationship.environment if env.relationship is not None else "?"


def _judge_unvouched(deploy: Deploy, governed: Governance, namespace_opted_in: bool) -> Finding:
    """An unvouched change or a delete: no gate vouches for it, only a human override can."""
    rollout = deploy.rollout_label
    deleting = deploy.change == "delete"
    if not governed.governed:
        if deleting:
            return Finding(deploy, True, f"no Environment governs Rollout {rollout} (decommissioning)")
        if namespace_opted_in:
            return Finding(
                deploy,
                False,
                f"no Environment governs Rollout {rollout} yet in this namespace, which opted in to the "
                "deploy guard, so nothing vouches for the change",
            )
        return Finding(deploy, True, f"no Environment governs Rollout {rollout} (namespace not opted in)")
    if not governed.restricting and not governed.unreadable:
        names = ", ".join(e.name for e in governed.unrestricting)
        return Finding(
            deploy,
            True,
            f"Rollout {rollout} is governed only by Environments without a relationship ({names})",
        )
    if deploy.version is None:
        later = "delete its Environments first (decommissioning)" if deleting else "set a version first"
        return Finding(
            deploy,
            False,
            deploy.unverifiable or f"it runs no tag, so no override can name one; {later}",
            overridable=False,
        )
    if governed.unreadable:
        return Finding(
            deploy,
            False,
            f"Environment {governed.unreadable[0]} may govern Rollout {rollout} but cannot be read",
        )
    env = governed.restricting[0]
    if deleting:
        return Finding(
            deploy,
            False,
            f"Environment {env.name} follows {_upstream(env)}, and a delete is not a version any gate "
            "vouches for (created again without the annotation, the object would escape the gate)",
        )
    return Finding(
        deploy,
        False,
        f"Environment {env.name} follows {_upstream(env)}, and its RolloutGate vouches only for the tag the "
        "rollout controller writes, not for changes to what that tag makes run",
    )


def judge(
    deploy: Deploy, governed: Governance, gates: Sequence[RolloutGate], namespace_opted_in: bool
) -> Finding:
    """Whether stagegate's gates let this deploy run, before any override is considered.

    `gates` are the RolloutGates of the Rollout's namespace.
    """
    if deploy.change != "version":
        return _judge_unvouched(deploy, governed, namespace_opted_in)
    rollout = deploy.rollout_label
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
        own = [
            g
            for g in gates
            if is_owned_by(g, env) and g.rollout_name == deploy.rollout and not g.being_deleted
        ]
        if not own:
            return Finding(
                deploy,
                False,
                f"Environment {env.name} follows {_upstream(env)} but has no RolloutGate for Rollout "
                f"{rollout} yet",
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


def refused_rollouts(findings: Sequence[Finding], namespace: str) -> list[tuple[str, str]]:
    """(namespace, name) of the Rollouts whose overrides must be read: those with a refused,
    overridable deploy. `namespace` is the written object's."""
    return sorted({f.deploy.rollout_key(namespace) for f in findings if f.needs_override})


def _fields(changed: Sequence[str]) -> str:
    shown = ", ".join(changed[:4])
    return shown if len(changed) <= 4 else f"{shown} and {len(changed) - 4} more"


def _sentence(finding: Finding) -> str:
    deploy = finding.deploy
    rollout = deploy.rollout_label
    if deploy.change == "version":
        what = deploy.version if deploy.version is not None else f"what {deploy.field} names"
        head = f"{deploy.target} may not run {what} for Rollout {rollout} ({deploy.field}): {finding.reason}"
        advice = f"to deploy it anyway set {OVERRIDE_HOW} on Rollout {rollout} to {deploy.version}"
    elif deploy.change == "unvouched":
        changed = _fields(deploy.changed)
        head = f"{deploy.target} may not change {changed} for Rollout {rollout}: {finding.reason}"
        advice = (
            f"to make this change anyway set {OVERRIDE_HOW} on Rollout {rollout} to {deploy.version}, the "
            f"tag it would run ({deploy.field})"
        )
    else:
        runs = (
            f"it runs {deploy.version} ({deploy.field})" if deploy.version else "it runs no checked version"
        )
        head = f"{deploy.target} may not be deleted while it deploys Rollout {rollout} ({runs}): "
        head += finding.reason
        advice = (
            f"to delete it anyway set {OVERRIDE_HOW} on Rollout {rollout} to {deploy.version}, or delete the "
            "Rollout's Environments first (decommissioning)"
        )
    return head if not finding.needs_override else f"{head}; {advice}"


def _overridden(deploy: Deploy, override: str, reason: str, writer: str | None) -> tuple[str, str]:
    """The warning the writer sees and the Event message, for a deploy a human override let through."""
    by = f" ({writer})" if writer else ""
    rollout = deploy.rollout_label
    if deploy.change == "version":
        return (
            f"stagegate: Rollout {rollout} runs {deploy.version} by human override ({override}), not because "
            "its upstream baked it",
            f"{deploy.target} set {deploy.field} to {deploy.version}{by} by human override {override}, "
            f"although {reason}",
        )
    if deploy.change == "unvouched":
        return (
            f"stagegate: {deploy.target} changed {_fields(deploy.changed)} for Rollout {rollout} by human "
            f"override ({override}); no gate vouched for it",
            f"{deploy.target} changed {_fields(deploy.changed)} (it runs {deploy.version}){by} by human "
            f"override {override}, although {reason}",
        )
    return (
        f"stagegate: {deploy.target} was deleted for Rollout {rollout} by human override ({override})",
        f"{deploy.target} was deleted (it ran {deploy.version}){by} by human override {override}, "
        f"although {reason}",
    )


def guard_decision(
    findings: Sequence[Finding],
    rollouts: Mapping[tuple[str, str], RolloutOverrides | None],
    namespace: str,
    writer: str | None = None,
) -> Decision:
    """Combine the findings with the overrides: refuse if any deploy stays refused, else allow.

    `rollouts` holds the Rollouts read for `refused_rollouts(findings, namespace)` (None: it does not
    exist); `namespace` is the written object's.
    """
    reasons: list[str] = []
    refusals: list[Finding] = []
    warnings: list[str] = []
    events: list[EventNotice] = []
    for finding in findings:
        deploy = finding.deploy
        key = deploy.rollout_key(namespace)
        if finding.allowed:
            reasons.append(f"{deploy.rollout_label} {deploy.version}: {finding.reason}")
            continue
        rollout = rollouts.get(key) if finding.needs_override else None
        override = rollout.naming(deploy.version) if rollout is not None and deploy.version else None
        if rollout is None or override is None or deploy.version is None:
            refusals.append(finding)
            continue
        reasons.append(
            f"{deploy.rollout_label} {deploy.version}: human override {override} ({finding.reason})"
        )
        warning, message = _overridden(deploy, override, finding.reason, writer)
        warnings.append(warning)
        events.append(
            EventNotice(
                namespace=key[0],
                api_version=GATE_API_VERSION,
                kind="Rollout",
                name=rollout.name,
                uid=rollout.uid,
                reason=OVERRIDE_EVENT_REASON,
                message=message,
            )
        )
    if refusals:
        more = f" ({len(refusals) - 1} more refused)" if len(refusals) > 1 else ""
        return deny(
            _sentence(refusals[0]) + more,
            "; ".join(f"{f.deploy.rollout_label} {f.deploy.version}: {f.reason}" for f in refusals),
        )
    return allow("; ".join(reasons) or "no version changed", tuple(warnings), tuple(events))


def unchanged() -> Decision:
    """The answer to a write that changes nothing that decides what runs: allowed, nothing read."""
    return allow(
        "nothing that decides what runs changed (status, metadata, harmless fields or the same version)"
    )


def namespace_terminating(namespace: str) -> Decision:
    """A delete in a namespace being deleted: allowed, so that namespace deletion never hangs."""
    return allow(f"namespace {namespace} is being deleted, and everything in it with it")


def unreadable_object(request: AdmissionRequest, why: str) -> Decision:
    """Fail closed on a Flux object the guard cannot read."""
    return deny(
        f"stagegate cannot read {request.resource.resource} {request.key} to check what it runs: {why}"
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
        f"stagegate could not check whether {request.key} may change what runs ({why}); nothing was "
        "changed, try again (the rollout controller and Flux retry by themselves)"
    )
