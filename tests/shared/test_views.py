"""Unit tests of shared/views.py: raw Kubernetes objects become typed views once, strictly."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from shared.errors import BadEvent
from shared.gate import plan_gates
from shared.views import Environment, OwnerReference, Relationship, RolloutGate
from tests.payloads import load_payload
from tests.shared.builders import ENV_UID, deployment_owner, env_owner, environment_raw, gate_raw


def captured_environment() -> dict[str, Any]:
    """The Environment the kube-apiserver answered after a relationship was added."""
    body = load_payload("audit/environment-update-add-relationship.json")
    return body["items"][0]["responseObject"]


def without(raw: dict[str, Any], path: str) -> dict[str, Any]:
    *parents, last = path.split(".")
    node = raw
    for key in parents:
        node = node[key]
    del node[last]
    return raw


def with_value(raw: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    *parents, last = path.split(".")
    node = raw
    for key in parents:
        node = node[key]
    node[last] = value
    return raw


# Environment


def test_environment_reads_every_field_of_a_captured_object() -> None:
    raw = captured_environment()
    env = Environment.from_raw(raw)
    assert (env.name, env.namespace, env.uid) == ("prod", "default", ENV_UID)
    assert env.rollout_name == "myapp"
    assert (env.deployment_name, env.environment) == ("myapp", "production")
    assert env.relationship == Relationship(type="After", environment="staging")
    assert env.raw is raw
    assert env.key == "default/prod"


def test_environment_without_optional_fields_reads_them_as_none() -> None:
    raw = environment_raw(relationship=None)
    for key in ("name", "environment", "backend"):
        del raw["spec"][key]
    env = Environment.from_raw(raw)
    assert (env.deployment_name, env.environment, env.relationship) == (None, None, None)


def test_environment_with_null_relationship_has_none() -> None:
    raw = with_value(environment_raw(), "spec.relationship", None)
    assert Environment.from_raw(raw).relationship is None


def test_environment_with_parallel_relationship_reads_it() -> None:
    env = Environment.from_raw(environment_raw(relationship=("Parallel", "qa")))
    assert env.relationship == Relationship(type="Parallel", environment="qa")


def test_environment_without_kind_is_accepted_as_an_environment() -> None:
    raw = environment_raw()
    del raw["kind"]
    assert Environment.from_raw(raw).name == "prod"


@pytest.mark.parametrize("kind", ["RolloutGate", "Rollout", "Status", "environment"])
def test_object_of_another_kind_is_not_read_as_an_environment(kind: str) -> None:
    raw = with_value(environment_raw(), "kind", kind)
    with pytest.raises(BadEvent, match=f"expected kind Environment, got '{kind}'"):
        Environment.from_raw(raw)


@pytest.mark.parametrize("raw", [None, [], "prod", 3])
def test_environment_that_is_not_an_object_is_rejected(raw: object) -> None:
    with pytest.raises(BadEvent, match="Environment must be an object"):
        Environment.from_raw(raw)


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("metadata", "metadata"),
        ("metadata.name", "metadata.name"),
        ("metadata.namespace", "metadata.namespace"),
        ("metadata.uid", "metadata.uid"),
        ("spec", "spec"),
        ("spec.rolloutRef", "spec.rolloutRef"),
        ("spec.rolloutRef.name", "spec.rolloutRef.name"),
        ("spec.relationship.type", "spec.relationship.type"),
        ("spec.relationship.environment", "spec.relationship.environment"),
    ],
)
def test_environment_missing_a_required_field_is_rejected_naming_it(path: str, named: str) -> None:
    with pytest.raises(BadEvent, match=rf"^{re.escape(named)} "):
        Environment.from_raw(without(environment_raw(), path))


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("metadata", "prod", "metadata"),
        ("metadata.name", 7, "metadata.name"),
        ("metadata.name", "", "metadata.name"),
        ("metadata.namespace", ["default"], "metadata.namespace"),
        ("metadata.uid", "", "metadata.uid"),
        ("spec", [], "spec"),
        ("spec.rolloutRef", "myapp", "spec.rolloutRef"),
        ("spec.rolloutRef.name", {"name": "myapp"}, "spec.rolloutRef.name"),
        ("spec.name", 3, "spec.name"),
        ("spec.environment", ["production"], "spec.environment"),
        ("spec.relationship", "After staging", "spec.relationship"),
        ("spec.relationship.type", 1, "spec.relationship.type"),
        ("spec.relationship.environment", "", "spec.relationship.environment"),
    ],
)
def test_environment_with_a_mistyped_field_is_rejected_naming_it(
    path: str, value: object, named: str
) -> None:
    with pytest.raises(BadEvent, match=rf"^{re.escape(named)} "):
        Environment.from_raw(with_value(environment_raw(), path, value))


@pytest.mark.parametrize("kind", ["Before", "after", "AFTER", "Sequential"])
def test_unknown_relationship_type_is_rejected(kind: str) -> None:
    raw = environment_raw(relationship=(kind, "staging"))
    with pytest.raises(
        BadEvent, match=rf"spec\.relationship\.type must be one of After, Parallel, got '{kind}'"
    ):
        Environment.from_raw(raw)


# RolloutGate


def test_rollout_gate_reads_every_field() -> None:
    raw = gate_raw(
        "ghd-abc12",
        allowed=["v1", "v2"],
        passing=False,
        owners=[env_owner(), deployment_owner()],
        labels={"team": "a"},
        annotations={"note": "x"},
        resource_version="42",
        rollout="myapp",
    )
    view = RolloutGate.from_raw(raw)
    assert (view.name, view.namespace, view.resource_version) == ("ghd-abc12", "default", "42")
    assert view.rollout_name == "myapp"
    assert view.allowed_versions == ("v1", "v2")
    assert view.passing is False
    assert view.owner_references == (
        OwnerReference("environments.kuberik.com/v1alpha1", "Environment", "prod", ENV_UID, True, True),
        OwnerReference("apps/v1", "Deployment", "web", "5d1e9a7c-0000-4000-8000-000000000001", True, True),
    )
    assert (dict(view.labels), dict(view.annotations)) == ({"team": "a"}, {"note": "x"})
    assert view.being_deleted is False
    assert view.raw is raw


def test_minimal_rollout_gate_reads_optional_fields_as_none_or_empty() -> None:
    view = RolloutGate.from_raw({"metadata": {"name": "g", "namespace": "default"}})
    assert view.resource_version == ""
    assert (view.rollout_name, view.allowed_versions, view.passing) == (None, None, None)
    assert view.owner_references == ()
    assert (dict(view.labels), dict(view.annotations)) == ({}, {})
    assert view.being_deleted is False


def test_empty_allowed_versions_stay_distinct_from_null() -> None:
    assert RolloutGate.from_raw(gate_raw(allowed=[])).allowed_versions == ()
    assert RolloutGate.from_raw(gate_raw(allowed=None)).allowed_versions is None


def test_gate_with_deletion_timestamp_is_being_deleted() -> None:
    assert RolloutGate.from_raw(gate_raw(deleting=True)).being_deleted is True


def test_owner_reference_flags_count_only_when_literally_true() -> None:
    owner = {**env_owner(), "controller": "true", "blockOwnerDeletion": 1}
    [ref] = RolloutGate.from_raw(gate_raw(owners=[owner])).owner_references
    assert (ref.controller, ref.block_owner_deletion) == (False, False)


def test_owner_reference_missing_fields_read_as_empty_strings() -> None:
    [ref] = RolloutGate.from_raw(gate_raw(owners=[{"kind": "Environment", "name": "prod"}])).owner_references
    assert (ref.api_version, ref.kind, ref.name, ref.uid) == ("", "Environment", "prod", "")


def test_owner_reference_round_trips_through_to_raw() -> None:
    [ref] = RolloutGate.from_raw(gate_raw(owners=[env_owner(controller=False)])).owner_references
    assert ref.to_raw() == env_owner(controller=False)


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("metadata", "metadata"),
        ("metadata.name", "metadata.name"),
        ("metadata.namespace", "metadata.namespace"),
    ],
)
def test_rollout_gate_missing_a_required_field_is_rejected_naming_it(path: str, named: str) -> None:
    with pytest.raises(BadEvent, match=rf"^{re.escape(named)} "):
        RolloutGate.from_raw(without(gate_raw(), path))


def _owner(value: object) -> Callable[[dict[str, Any]], None]:
    def change(raw: dict[str, Any]) -> None:
        raw["metadata"]["ownerReferences"] = value

    return change


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("metadata.name", "", "metadata.name"),
        ("metadata.resourceVersion", 42, "metadata.resourceVersion"),
        ("spec", "open", "RolloutGate.spec"),
        ("spec.rolloutRef", "myapp", "spec.rolloutRef"),
        ("spec.rolloutRef.name", 5, "spec.rolloutRef.name"),
        ("spec.allowedVersions", "v1", "spec.allowedVersions"),
        ("spec.allowedVersions", ["v1", 2], "spec.allowedVersions"),
        ("spec.allowedVersions", {"v1": True}, "spec.allowedVersions"),
        ("metadata.ownerReferences", {"kind": "Environment"}, "metadata.ownerReferences"),
        ("metadata.ownerReferences", ["prod"], "metadata.ownerReferences[0]"),
        ("metadata.labels", {"team": 1}, "metadata.labels"),
        ("metadata.labels", ["team"], "metadata.labels"),
        ("metadata.annotations", {"note": None}, "metadata.annotations"),
    ],
)
def test_rollout_gate_with_a_mistyped_field_is_rejected_naming_it(
    path: str, value: object, named: str
) -> None:
    with pytest.raises(BadEvent, match=rf"^{re.escape(named)} "):
        RolloutGate.from_raw(with_value(gate_raw(allowed=[]), path, value))


def test_owner_reference_with_a_mistyped_uid_is_rejected_naming_its_index() -> None:
    raw = gate_raw(owners=[deployment_owner(), {**env_owner(), "uid": 7}])
    with pytest.raises(BadEvent, match=r"^metadata\.ownerReferences\[1\]\.uid "):
        RolloutGate.from_raw(raw)


@pytest.mark.parametrize("raw", [None, [], "prod-stagegate"])
def test_rollout_gate_that_is_not_an_object_is_rejected(raw: object) -> None:
    with pytest.raises(BadEvent, match="RolloutGate must be an object"):
        RolloutGate.from_raw(raw)


@pytest.mark.parametrize("kind", ["Environment", "Rollout", "rolloutgate", "Status", 7])
def test_object_of_another_kind_is_not_read_as_a_rollout_gate(kind: object) -> None:
    with pytest.raises(BadEvent, match=rf"^expected kind RolloutGate, got {re.escape(repr(kind))}$"):
        RolloutGate.from_raw(with_value(gate_raw(allowed=[]), "kind", kind))


@pytest.mark.parametrize("kind", [None, "absent"])
def test_rollout_gate_without_kind_is_accepted_as_a_rollout_gate(kind: object) -> None:
    raw = gate_raw(allowed=[])
    if kind == "absent":
        del raw["kind"]
    else:
        raw["kind"] = kind
    assert RolloutGate.from_raw(raw).name == "prod-stagegate"


def _read_and_plan(raw: dict[str, Any]) -> str:
    """What becomes of a gate: rejected with the reason, or what the plan does to its passing."""
    try:
        view = RolloutGate.from_raw(raw)
    except BadEvent as exc:
        return f"rejected: {exc}"
    [plan] = plan_gates(Environment.from_raw(environment_raw()), [view])
    spec = (plan.patch or {}).get("spec", {})
    return f"passing set to {spec['passing']!r}" if "passing" in spec else "passing kept"


@pytest.mark.parametrize("passing", ["false", 0, "False", 1, "true", [], {}])
def test_rollout_gate_with_a_mistyped_passing_is_rejected_not_opened(passing: object) -> None:
    outcome = _read_and_plan(with_value(gate_raw(allowed=[]), "spec.passing", passing))
    assert outcome == "rejected: spec.passing must be a boolean"


@pytest.mark.parametrize(("passing", "outcome"), [(True, "passing kept"), (False, "passing kept")])
def test_rollout_gate_with_a_boolean_passing_is_read_and_kept(passing: bool, outcome: str) -> None:
    raw = with_value(gate_raw(allowed=[]), "spec.passing", passing)
    assert RolloutGate.from_raw(raw).passing is passing
    assert _read_and_plan(raw) == outcome


def test_rollout_gate_with_null_passing_gets_the_crd_default_written_out() -> None:
    assert _read_and_plan(with_value(gate_raw(allowed=[]), "spec.passing", None)) == "passing set to True"
