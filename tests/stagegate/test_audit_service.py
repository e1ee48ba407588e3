"""The audit path on a real kube-apiserver, in-process: what `k8s_audit_http` does after parsing."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from kubernetes import client

from shared.audit import parse_audit_document, parse_audit_json
from shared.errors import PartialFailure, RetryableError
from shared.evidence import EVIDENCE_ANNOTATION, Evidence
from shared.gate import fallback_gate_name, gate_name
from shared.upstream import upstream_key
from shared.views import Environment
from stagegate.audit_service import AuditContext, handle_audit_events
from stagegate.kube import KubeConflict, KubeGates
from stagegate.kube_http import KubeClient, KubeConfig
from tests.kube_objects import (
    ENV_ARGS,
    GATE_ARGS,
    create_environment,
    create_gate,
    delivery,
    delivery_bytes,
    environment,
    get_gate,
    list_gates,
    owner_ref,
    stored,
)


def handle(gates: KubeGates, body: dict | bytes) -> dict:
    events = parse_audit_json(body) if isinstance(body, bytes) else parse_audit_document(body)
    return handle_audit_events(events, AuditContext(gates, None, attempts=5)).to_json()


def test_create_event_makes_one_blocking_gate_with_one_api_call(
    namespace: str, gates: KubeGates, counting_client: KubeClient, custom: client.CustomObjectsApi
) -> None:
    env = create_environment(custom, environment(namespace, "prod"))
    before = counting_client.calls
    summary = handle(gates, delivery_bytes(env))
    assert counting_client.calls - before == 1
    assert [g["action"] for g in summary["gates"]] == ["create"]
    [gate] = list_gates(custom, namespace)
    assert gate["metadata"]["name"] == "prod-stagegate"
    assert gate["spec"]["allowedVersions"] == []
    assert gate["spec"]["passing"] is True
    assert gate["spec"]["rolloutRef"] == {"name": "myapp"}
    assert gate["metadata"]["ownerReferences"][0]["uid"] == env["metadata"]["uid"]
    assert gate["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "stagegate"


def test_environment_without_relationship_gets_unrestricted_gate(
    namespace: str, gates: KubeGates, custom: client.CustomObjectsApi
) -> None:
    env = create_environment(custom, environment(namespace, "staging", upstream=None))
    handle(gates, delivery_bytes(env))
    [gate] = list_gates(custom, namespace)
    assert "allowedVersions" not in gate["spec"]


def test_an_unrestricted_gate_is_made_only_for_the_environment_the_api_has(
    namespace: str, gates: KubeGates, custom: client.CustomObjectsApi
) -> None:
    """A late create event of an incarnation without a relationship must not give today's one a null gate."""
    old = stored(environment(namespace, "prod", upstream=None))  # deleted since; today's has a relationship
    create_environment(custom, environment(namespace, "prod"))
    summary = handle(gates, delivery_bytes(old))
    assert list_gates(custom, namespace) == []
    assert summary["ignored"] == {
        "the Environment no longer exists (deleted, or recreated since the event)": 1
    }


def test_redelivery_keeps_a_single_gate_and_changes_nothing(
    namespace: str, gates: KubeGates, custom: client.CustomObjectsApi
) -> None:
    body = delivery_bytes(create_environment(custom, environment(namespace, "prod")))
    handle(gates, body)
    version = list_gates(custom, namespace)[0]["metadata"]["resourceVersion"]
    summary = handle(gates, body)
    assert [g["action"] for g in summary["gates"]] == ["unchanged"]
    [gate] = list_gates(custom, namespace)
    assert gate["metadata"]["resourceVersion"] == version


def test_twenty_concurrent_deliveries_of_one_create_make_exactly_one_gate(
    namespace: str, gates: KubeGates, custom: client.CustomObjectsApi
) -> None:
    body = delivery_bytes(create_environment(custom, environment(namespace, "prod")))
    with ThreadPoolExecutor(max_workers=20) as pool:
        summaries = list(pool.map(lambda _: handle(gates, body), range(20)))
    actions = sorted(s["gates"][0]["action"] for s in summaries)
    assert actions.count("create") == 1
    assert set(actions) == {"create", "unchanged"}
    [gate] = list_gates(custom, namespace)
    assert gate["spec"]["allowedVersions"] == []


def test_relationship_added_by_update_blocks_and_removed_unrestricts(
    namespace: str, gates: KubeGates, custom: client.CustomObjectsApi
) -> None:
    env = create_environment(custom, environment(namespace, "prod", upstream=None))
    handle(gates, delivery(env))
    assert "allowedVersions" not in get_gate(custom, namespace, "prod-stagegate")["spec"]

    env["spec"]["relationship"] = {"type": "After", "environment": "staging"}
    summary = handle(gates, delivery(env, "update"))
    assert summary["gates"][0]["allowedVersionsAfter"] == []
    assert get_gate(custom, namespace, "prod-stagegate")["spec"]["allowedVersions"] == []

    del env["spec"]["relationship"]
    env = replace_environment(custom, env)
    handle(gates, delivery(env, "patch"))
    assert "allowedVersions" not in get_gate(custom, namespace, "prod-stagegate")["spec"]
    assert len(list_gates(custom, namespace)) == 1


def test_existing_allowed_versions_survive_an_unrelated_update(
    namespace: str, gates: KubeGates, custom: client.CustomObjectsApi
) -> None:
    env = create_environment(custom, environment(namespace, "prod"))
    handle(gates, delivery(env))
    recomputed(custom, env, ["v1"])
    env["spec"]["environment"] = "production-eu"
    handle(gates, delivery(env, "update"))
    assert get_gate(custom, namespace, "prod-stagegate")["spec"]["allowedVersions"] == ["v1"]


def recomputed(custom: client.CustomObjectsApi, env: dict, allowed: list[str]) -> None:
    """Set the gate as a recompute for the Environment's current upstream leaves it."""
    evidence = Evidence(upstream_key(Environment.from_raw(env))).to_annotation()
    patch = {
        "spec": {"allowedVersions": allowed},
        "metadata": {"annotations": {EVIDENCE_ANNOTATION: evidence}},
    }
    gate = gate_name(env["metadata"]["name"])
    custom.patch_namespaced_custom_object(
        *GATE_ARGS, env["metadata"]["namespace"], "rolloutgates", gate, patch
    )


def replace_environment(custom: client.CustomObjectsApi, env: dict) -> dict:
    ns, name = env["metadata"]["namespace"], env["metadata"]["name"]
    result: dict = custom.replace_namespaced_custom_object(*ENV_ARGS, ns, "environments", name, env)
    return result


def test_upstream_change_withdraws_what_the_old_upstream_allowed_at_once(
    namespace: str, gates: KubeGates, custom: client.CustomObjectsApi
) -> None:
    env = create_environment(custom, environment(namespace, "prod"))
    handle(gates, delivery(env))
    recomputed(custom, env, ["v1"])
    for field, value in (
        ("relationship", {"type": "After", "environment": "canary"}),
        ("relationship", {"type": "Parallel", "environment": "canary"}),
        ("name", "otherapp"),
        ("backend", {"type": "github", "project": "myorg/elsewhere"}),
    ):
        env["spec"][field] = value
        env = replace_environment(custom, env)
        summary = handle(gates, delivery(env, "update"))
        assert summary["gates"][0]["allowedVersionsAfter"] == [], field
        assert get_gate(custom, namespace, "prod-stagegate")["spec"]["allowedVersions"] == []
        recomputed(custom, env, ["v1"])


def test_stale_event_without_the_relationship_does_not_lift_the_gate(
    namespace: str, gates: KubeGates, counting_client: KubeClient, custom: client.CustomObjectsApi
) -> None:
    old = create_environment(custom, environment(namespace, "prod", upstream=None))
    handle(gates, delivery(old))
    current = dict(old, spec={**old["spec"], "relationship": {"type": "After", "environment": "staging"}})
    current = replace_environment(custom, current)
    handle(gates, delivery(current, "update"))
    assert get_gate(custom, namespace, "prod-stagegate")["spec"]["allowedVersions"] == []

    for verb in ("create", "update"):  # the old copy, delivered late or replayed
        summary = handle(gates, delivery(old, verb))
        assert get_gate(custom, namespace, "prod-stagegate")["spec"]["allowedVersions"] == [], verb
        assert summary["gates"][-1]["action"] == "unchanged"


def test_late_create_event_of_a_deleted_environment_does_not_take_the_new_gate(
    namespace: str, gates: KubeGates, custom: client.CustomObjectsApi
) -> None:
    first = create_environment(custom, environment(namespace, "prod"))
    custom.delete_namespaced_custom_object(*ENV_ARGS, namespace, "environments", "prod")
    second = create_environment(custom, environment(namespace, "prod"))
    handle(gates, delivery(second))
    summary = handle(gates, delivery(first))  # the first incarnation's create, arriving late
    [gate] = list_gates(custom, namespace)
    assert [r["uid"] for r in gate["metadata"]["ownerReferences"]] == [second["metadata"]["uid"]]
    assert gate["spec"]["allowedVersions"] == []
    assert summary["ignored"] == {
        "the Environment no longer exists (deleted, or recreated since the event)": 1
    }


def test_stale_event_naming_another_rollout_does_not_move_the_gate(
    namespace: str, gates: KubeGates, custom: client.CustomObjectsApi
) -> None:
    env = create_environment(custom, environment(namespace, "prod", rollout="myapp"))
    handle(gates, delivery(env))
    stale = dict(env, spec={**env["spec"], "rolloutRef": {"name": "other"}})
    handle(gates, delivery(stale, "update"))
    assert get_gate(custom, namespace, "prod-stagegate")["spec"]["rolloutRef"] == {"name": "myapp"}


def test_gate_owned_by_environment_under_another_name_is_adopted(
    namespace: str, gates: KubeGates, custom: client.CustomObjectsApi
) -> None:
    env = create_environment(custom, environment(namespace, "prod"))
    create_gate(custom, namespace, "ghd-x7k2p", owner=owner_ref(env), allowed=None)
    summary = handle(gates, delivery(env, "update"))
    assert [(g["gate"], g["action"]) for g in summary["gates"]] == [("ghd-x7k2p", "update")]
    [gate] = list_gates(custom, namespace)
    assert gate["metadata"]["name"] == "ghd-x7k2p"
    assert gate["spec"]["allowedVersions"] == []
    assert gate["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "stagegate"


def test_same_named_gate_of_someone_else_is_left_alone_and_a_blocking_gate_made_beside_it(
    namespace: str, gates: KubeGates, custom: client.CustomObjectsApi, kube_stack
) -> None:
    foreign = create_gate(custom, namespace, gate_name("prod"), allowed=["hand-picked"])
    env = create_environment(custom, environment(namespace, "prod"))
    summary = handle(gates, delivery(env))
    fallback = fallback_gate_name(Environment.from_raw(env))
    assert [(g["gate"], g["action"]) for g in summary["gates"]] == [
        ("prod-stagegate", "refuse"),
        (fallback, "create"),
    ]
    by_name = {g["metadata"]["name"]: g for g in list_gates(custom, namespace)}
    assert by_name["prod-stagegate"]["metadata"]["resourceVersion"] == foreign["metadata"]["resourceVersion"]
    assert by_name["prod-stagegate"]["spec"]["allowedVersions"] == ["hand-picked"]
    assert by_name[fallback]["spec"]["allowedVersions"] == []
    assert by_name[fallback]["metadata"]["ownerReferences"][0]["uid"] == env["metadata"]["uid"]
    events = client.CoreV1Api(kube_stack.api_client()).list_namespaced_event(namespace).items
    assert [(e.reason, e.involved_object.name, e.type) for e in events] == [
        ("GateOwnedByOther", "prod", "Warning")
    ]
    again = handle(gates, delivery(env, "update"))
    assert [(g["gate"], g["action"]) for g in again["gates"]] == [(fallback, "unchanged")]


def test_event_without_the_object_reads_the_environment(
    namespace: str, gates: KubeGates, counting_client: KubeClient, custom: client.CustomObjectsApi
) -> None:
    env = create_environment(custom, environment(namespace, "prod"))
    before = counting_client.calls
    handle(gates, delivery(env, with_object=False))
    assert counting_client.calls - before == 2  # get Environment, create (a new one owns no gate yet)
    assert get_gate(custom, namespace, "prod-stagegate")["spec"]["allowedVersions"] == []


def test_event_for_an_environment_deleted_since_is_ignored(namespace: str, gates: KubeGates, custom) -> None:
    env = stored(environment(namespace, "gone"))
    summary = handle(gates, delivery(env, "update", with_object=False))
    assert summary["ignored"] == {
        "the Environment no longer exists (deleted, or recreated since the event)": 1
    }
    assert list_gates(custom, namespace) == []


def test_write_based_on_an_old_resource_version_is_refused(
    namespace: str, gates: KubeGates, custom: client.CustomObjectsApi
) -> None:
    env = create_environment(custom, environment(namespace, "prod"))
    handle(gates, delivery(env))
    old = gates.list_gates(namespace)[0]
    custom.patch_namespaced_custom_object(
        "kuberik.com", "v1alpha1", namespace, "rolloutgates", old.name, {"spec": {"allowedVersions": ["v2"]}}
    )
    with pytest.raises(KubeConflict):
        gates.patch_gate(namespace, old.name, {"spec": {"allowedVersions": None}}, old.resource_version)
    assert get_gate(custom, namespace, old.name)["spec"]["allowedVersions"] == ["v2"]


class RacingGates(KubeGates):
    """Changes the gate behind the planner's back before its first write, like a concurrent writer."""

    def __init__(self, inner: KubeGates, custom: client.CustomObjectsApi) -> None:
        super().__init__(inner.api, inner.timeout)
        self.custom_api = custom
        self.raced = False

    def patch_gate(self, namespace: str, name: str, patch, resource_version: str):  # type: ignore[no-untyped-def]
        if not self.raced:
            self.raced = True
            self.custom_api.patch_namespaced_custom_object(
                "kuberik.com",
                "v1alpha1",
                namespace,
                "rolloutgates",
                name,
                {"metadata": {"labels": {"x": "y"}}},
            )
        return super().patch_gate(namespace, name, patch, resource_version)


def test_lost_race_is_recomputed_from_fresh_state(namespace: str, gates: KubeGates, custom) -> None:
    env = create_environment(custom, environment(namespace, "prod"))
    create_gate(custom, namespace, "ghd-racy", owner=owner_ref(env), allowed=None)
    racing = RacingGates(gates, custom)
    summary = handle(racing, delivery(env, "update"))
    assert racing.raced
    [gate] = list_gates(custom, namespace)
    assert gate["spec"]["allowedVersions"] == []
    assert gate["metadata"]["labels"]["x"] == "y"
    assert summary["gates"][0]["action"] == "update"


def test_kubernetes_unreachable_is_retryable_and_writes_nothing(namespace: str, custom) -> None:
    # nothing listens on the discard port here
    unreachable = KubeGates(KubeClient(KubeConfig(server="https://127.0.0.1:9")), timeout=1)
    env = stored(environment(namespace, "prod"))
    with pytest.raises(PartialFailure) as caught:
        handle(unreachable, json.loads(delivery_bytes(env)))
    assert isinstance(caught.value, RetryableError)
    assert caught.value.summary["errors"]
    assert list_gates(custom, namespace) == []
