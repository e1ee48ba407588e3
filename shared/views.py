"""Read-only typed views of the Kubernetes objects stagegate reads.

Raw dicts become these views at the edge, once: required fields are read strictly (a missing or
mistyped one raises `BadEvent` naming the field), optional ones are `X | None`, and the raw dict is
kept for logs. Nothing past the edge handles untyped dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.errors import BadEvent

ENVIRONMENT_GROUP = "environments.kuberik.com"
ENVIRONMENT_API_VERSION = f"{ENVIRONMENT_GROUP}/v1alpha1"
ENVIRONMENT_KIND = "Environment"
GATE_GROUP = "kuberik.com"
GATE_API_VERSION = f"{GATE_GROUP}/v1alpha1"
GATE_KIND = "RolloutGate"

RelationshipType = Literal["After", "Parallel"]
RELATIONSHIP_TYPES: tuple[RelationshipType, ...] = ("After", "Parallel")


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BadEvent(f"{where} must be an object, got {type(value).__name__}")
    return value


def _optional_mapping(parent: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any] | None:
    value = parent.get(key)
    return None if value is None else _mapping(value, f"{where}.{key}")


def _required_str(parent: Mapping[str, Any], key: str, where: str) -> str:
    value = parent.get(key)
    if not isinstance(value, str) or not value:
        raise BadEvent(f"{where}.{key} is required and must be a non-empty string")
    return value


def _optional_str(parent: Mapping[str, Any], key: str, where: str) -> str | None:
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadEvent(f"{where}.{key} must be a string")
    return value


def _string_map(parent: Mapping[str, Any], key: str, where: str) -> Mapping[str, str]:
    value = _optional_mapping(parent, key, where) or {}
    if not all(isinstance(v, str) for v in value.values()):
        raise BadEvent(f"{where}.{key} must map strings to strings")
    return dict(value)


@dataclass(frozen=True, slots=True)
class Relationship:
    """How an Environment depends on another environment of the same app."""

    type: RelationshipType
    environment: str


@dataclass(frozen=True, slots=True)
class OwnerReference:
    """One entry of `metadata.ownerReferences`."""

    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool
    block_owner_deletion: bool = True

    @classmethod
    def from_raw(cls, raw: object, where: str) -> OwnerReference:
        ref = _mapping(raw, where)
        return cls(
            api_version=_optional_str(ref, "apiVersion", where) or "",
            kind=_optional_str(ref, "kind", where) or "",
            name=_optional_str(ref, "name", where) or "",
            uid=_optional_str(ref, "uid", where) or "",
            controller=ref.get("controller") is True,
            block_owner_deletion=ref.get("blockOwnerDeletion") is True,
        )

    def to_raw(self) -> dict[str, Any]:
        """The dict Kubernetes expects."""
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": self.controller,
            "blockOwnerDeletion": self.block_owner_deletion,
        }


@dataclass(frozen=True, slots=True)
class Environment:
    """An `environments.kuberik.com/v1alpha1` Environment, as far as gates care."""

    name: str
    namespace: str
    uid: str
    rollout_name: str
    deployment_name: str | None
    environment: str | None
    relationship: Relationship | None
    project: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_raw(cls, raw: object) -> Environment:
        """Read an Environment strictly; raise `BadEvent` naming the first bad field."""
        obj = _mapping(raw, "Environment")
        if obj.get("kind") not in (None, ENVIRONMENT_KIND):
            raise BadEvent(f"expected kind {ENVIRONMENT_KIND}, got {obj.get('kind')!r}")
        meta = _mapping(obj.get("metadata"), "metadata")
        spec = _mapping(obj.get("spec"), "spec")
        rollout_ref = _mapping(spec.get("rolloutRef"), "spec.rolloutRef")
        return cls(
            name=_required_str(meta, "name", "metadata"),
            namespace=_required_str(meta, "namespace", "metadata"),
            uid=_required_str(meta, "uid", "metadata"),
            rollout_name=_required_str(rollout_ref, "name", "spec.rolloutRef"),
            deployment_name=_optional_str(spec, "name", "spec"),
            environment=_optional_str(spec, "environment", "spec"),
            relationship=_relationship(_optional_mapping(spec, "relationship", "spec")),
            project=_optional_str(
                _optional_mapping(spec, "backend", "spec") or {}, "project", "spec.backend"
            ),
            raw=obj,
        )

    @property
    def key(self) -> str:
        """`namespace/name`, for logs."""
        return f"{self.namespace}/{self.name}"


def _relationship(raw: Mapping[str, Any] | None) -> Relationship | None:
    if raw is None:
        return None
    kind = _required_str(raw, "type", "spec.relationship")
    if kind not in RELATIONSHIP_TYPES:
        raise BadEvent(f"spec.relationship.type must be one of {', '.join(RELATIONSHIP_TYPES)}, got {kind!r}")
    environment = _required_str(raw, "environment", "spec.relationship")
    return Relationship(type="After" if kind == "After" else "Parallel", environment=environment)


@dataclass(frozen=True, slots=True)
class RolloutGate:
    """A `kuberik.com/v1alpha1` RolloutGate; `allowed_versions` None means no restriction at all."""

    name: str
    namespace: str
    resource_version: str
    rollout_name: str | None
    allowed_versions: tuple[str, ...] | None
    passing: bool | None
    owner_references: tuple[OwnerReference, ...]
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    being_deleted: bool
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_raw(cls, raw: object) -> RolloutGate:
        """Read a RolloutGate strictly; raise `BadEvent` naming the first bad field."""
        obj = _mapping(raw, "RolloutGate")
        if obj.get("kind") not in (None, GATE_KIND):
            raise BadEvent(f"expected kind {GATE_KIND}, got {obj.get('kind')!r}")
        meta = _mapping(obj.get("metadata"), "metadata")
        spec = _optional_mapping(obj, "spec", "RolloutGate") or {}
        rollout_ref = _optional_mapping(spec, "rolloutRef", "spec") or {}
        allowed = spec.get("allowedVersions")
        if allowed is not None and (
            not isinstance(allowed, list) or not all(isinstance(v, str) for v in allowed)
        ):
            raise BadEvent("spec.allowedVersions must be a list of strings or null")
        passing = spec.get("passing")
        if passing is not None and not isinstance(passing, bool):
            raise BadEvent("spec.passing must be a boolean")
        refs = meta.get("ownerReferences") or []
        if not isinstance(refs, list):
            raise BadEvent("metadata.ownerReferences must be a list")
        return cls(
            name=_required_str(meta, "name", "metadata"),
            namespace=_required_str(meta, "namespace", "metadata"),
            resource_version=_optional_str(meta, "resourceVersion", "metadata") or "",
            rollout_name=_optional_str(rollout_ref, "name", "spec.rolloutRef"),
            allowed_versions=None if allowed is None else tuple(allowed),
            passing=passing,
            owner_references=tuple(
                OwnerReference.from_raw(r, f"metadata.ownerReferences[{i}]") for i, r in enumerate(refs)
            ),
            labels=_string_map(meta, "labels", "metadata"),
            annotations=_string_map(meta, "annotations", "metadata"),
            being_deleted=meta.get("deletionTimestamp") is not None,
            raw=obj,
        )


@dataclass(frozen=True, slots=True)
class Namespace:
    """A core `v1` Namespace, as far as the guards care: its labels and annotations, and whether it is
    being deleted (then the namespace controller deletes everything in it, and nothing may hold that up)."""

    name: str
    uid: str | None
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    terminating: bool
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_raw(cls, raw: object, where: str = "Namespace") -> Namespace:
        """Read a Namespace strictly; raise `BadEvent` naming the first bad field."""
        obj = _mapping(raw, where)
        meta = _mapping(obj.get("metadata"), f"{where}.metadata")
        status = _optional_mapping(obj, "status", where) or {}
        return cls(
            name=_required_str(meta, "name", f"{where}.metadata"),
            uid=_optional_str(meta, "uid", f"{where}.metadata") or None,
            labels=_string_map(meta, "labels", f"{where}.metadata"),
            annotations=_string_map(meta, "annotations", f"{where}.metadata"),
            terminating=meta.get("deletionTimestamp") is not None or status.get("phase") == "Terminating",
            raw=obj,
        )
