"""The admission shell with an in-memory Kubernetes: which reads each decision makes, failure policies,
deadlines, Events. The world is `tests/stagegate/in_memory.py`'s: `prod` (`After staging`, Rollout
`myapp`, gate allowing `["a"]`) and `staging` (Rollout `myapp-staging`, no relationship), plus prod's
OCIRepository `web` (annotated for `myapp`, running `a`) and the namespace `default` (not opted in)."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from shared.admission import AdmissionRequest, EventNotice, parse_admission_review
from shared.errors import PermanentError, RetryableError
from shared.gate import PENDING_OWNER_ANNOTATION
from stagegate.admission_service import AdmissionContext, admit
from tests.shared.admission_builders import (
    changed,
    kustomization,
    namespace_object,
    oci_repository,
    review,
    rollout,
)
from tests.shared.builders import OLD_ENV_UID, environment_raw
from tests.stagegate.in_memory import NAMESPACE, InMemoryKube

LABEL = ("stagegate.kuberik.com/guard", "enabled")
NEW_UID = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


class AdmissionKube(InMemoryKube):
    """The in-memory Kubernetes plus what admission reads, recording every call by name."""

    def reset(self) -> None:
        super().reset()
        self.rollouts[(NAMESPACE, "myapp")] = rollout()
        self.labels: dict[str, dict[str, str]] = {NAMESPACE: {}}
        self.terminating: set[str] = set()
        self.sources: dict[tuple[str, str], dict[str, Any]] = {(NAMESPACE, "web"): oci_repository(tag="a")}
        self.events: list[EventNotice] = []
        self.calls: list[str] = []
        self.fail: dict[str, Exception] = {}
        self.hang: set[str] = set()
        self.release = threading.Event()
        self.hung = 0

    def _called(self, name: str) -> None:
        self.calls.append(name)
        if name in self.hang:
            self.hung += 1
            self.release.wait(10)
            self.hung -= 1
        if name in self.fail:
            raise self.fail[name]

    def __getattribute__(self, name: str) -> Any:
        attribute = super().__getattribute__(name)
        if name in COUNTED:
            called = super().__getattribute__("_called")

            def counted(*args: Any, **kwargs: Any) -> Any:
                called(name)
                return attribute(*args, **kwargs)

            return counted
        return attribute

    def get_environment_object(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        raw = self.environments.get((namespace, name))
        return None if raw is None else copy.deepcopy(raw)

    def list_environment_objects(self, namespace: str) -> list[Mapping[str, Any]]:
        return [copy.deepcopy(raw) for (ns, _), raw in self.environments.items() if ns == namespace]

    def get_namespace(self, name: str) -> Mapping[str, Any] | None:
        if name not in self.labels:
            return None
        raw = namespace_object(name, labels=dict(self.labels[name]))
        if name in self.terminating:
            raw["metadata"]["deletionTimestamp"] = "2026-05-15T10:00:00Z"
            raw["status"]["phase"] = "Terminating"
        return raw

    def get_oci_repository(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        raw = self.sources.get((namespace, name))
        return None if raw is None else copy.deepcopy(raw)

    def record_event(self, notice: EventNotice) -> None:
        self.events.append(notice)


COUNTED = {
    "get_environment_object",
    "list_environment_objects",
    "get_namespace",
    "get_oci_repository",
    "record_event",
    "list_gates",
    "create_gate",
    "patch_gate",
    "get_rollout",
}


@pytest.fixture
def kube() -> Iterator[AdmissionKube]:
    fake = AdmissionKube()
    yield fake
    # Let calls that outlived their deadline finish while this test's output is still captured.
    fake.release.set()
    deadline = time.monotonic() + 5
    while fake.hung and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)


@pytest.fixture
def ctx(kube: AdmissionKube) -> AdmissionContext:
    return AdmissionContext(kube=kube, attempts=3, deadline=1.0, guard_label=LABEL)


def request(*args: Any, **kwargs: Any) -> AdmissionRequest:
    return parse_admission_review(json.dumps(review(*args, **kwargs)))


def deploy(
    tag: str, old_tag: str | None = "a", *, rollout_name: str = "myapp", **kwargs: Any
) -> AdmissionRequest:
    new = oci_repository(rollout=rollout_name, tag=tag)
    return request(
        new, None if old_tag is None else oci_repository(rollout=rollout_name, tag=old_tag), **kwargs
    )


# --- the deploy guard ----------------------------------------------------------------------------


def test_a_write_that_changes_no_version_reads_nothing(ctx: AdmissionContext, kube: AdmissionKube) -> None:
    decision = admit(deploy("a", "a"), ctx)
    assert decision.allowed
    assert kube.calls == []


def test_an_allowed_tag_costs_two_reads(ctx: AdmissionContext, kube: AdmissionKube) -> None:
    decision = admit(deploy("a", None), ctx)
    assert decision.allowed, decision
    assert kube.calls == ["list_environment_objects", "list_gates"]


def test_a_refused_tag_also_reads_the_rollout_for_overrides(
    ctx: AdmissionContext, kube: AdmissionKube
) -> None:
    decision = admit(deploy("b"), ctx)
    assert not decision.allowed
    assert "does not allow it" in decision.message
    assert kube.calls == ["list_environment_objects", "list_gates", "get_rollout"]
    assert kube.events == []


@pytest.mark.parametrize("override", ["wanted_version", "force_deploy", "bypass_gates"])
def test_an_override_lets_it_through_with_a_warning_and_an_event(
    override: str, ctx: AdmissionContext, kube: AdmissionKube
) -> None:
    kube.rollouts[(NAMESPACE, "myapp")] = rollout(**{override: "b"})
    decision = admit(deploy("b"), ctx)
    assert decision.allowed
    assert "human override" in decision.warnings[0]
    [event] = kube.events
    assert (event.kind, event.name, event.reason) == ("Rollout", "myapp", "DeployOverride")


def test_a_dry_run_override_records_no_event(ctx: AdmissionContext, kube: AdmissionKube) -> None:
    kube.rollouts[(NAMESPACE, "myapp")] = rollout(wanted_version="b")
    decision = admit(deploy("b", dry_run=True), ctx)
    assert decision.allowed
    assert decision.warnings
    assert kube.events == []


def test_a_lost_event_does_not_change_the_answer(ctx: AdmissionContext, kube: AdmissionKube) -> None:
    kube.rollouts[(NAMESPACE, "myapp")] = rollout(wanted_version="b")
    kube.fail["record_event"] = RetryableError("events are down")
    assert admit(deploy("b"), ctx).allowed


def test_a_kustomization_is_judged_like_an_oci_repository(ctx: AdmissionContext, kube: AdmissionKube) -> None:
    old = kustomization(substitute={"version": "a"})
    assert admit(request(kustomization(substitute={"version": "a"}), old), ctx).allowed
    assert not admit(request(kustomization(substitute={"version": "b"}), old), ctx).allowed


def test_an_ungoverned_rollout_is_refused_only_in_an_opted_in_namespace(
    ctx: AdmissionContext, kube: AdmissionKube
) -> None:
    assert admit(deploy("b", rollout_name="newapp"), ctx).allowed
    assert kube.calls == ["list_environment_objects", "get_namespace"]
    kube.labels[NAMESPACE] = {LABEL[0]: LABEL[1]}
    decision = admit(deploy("b", rollout_name="newapp"), ctx)
    assert not decision.allowed
    assert "no Environment governs Rollout newapp yet" in decision.message
    # ... and goes through once an Environment governs it
    kube.environments[(NAMESPACE, "newapp")] = environment_raw(
        "newapp", uid=NEW_UID, rollout="newapp", relationship=None
    )
    assert admit(deploy("b", rollout_name="newapp"), ctx).allowed


def test_a_rollout_governed_only_without_relationship_reads_no_gates(
    ctx: AdmissionContext, kube: AdmissionKube
) -> None:
    assert admit(deploy("anything", rollout_name="myapp-staging"), ctx).allowed
    assert kube.calls == ["list_environment_objects"]


FAILURES: dict[str, Exception] = {
    "5xx": RetryableError("list Environments: HTTP 503"),
    "forbidden": PermanentError("list RolloutGates: HTTP 403 Forbidden"),
    "a bug": ZeroDivisionError("oops"),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_the_guard_fails_closed_when_kubernetes_fails(
    failure: str, ctx: AdmissionContext, kube: AdmissionKube
) -> None:
    kube.fail["list_gates"] = FAILURES[failure]
    decision = admit(deploy("a", None), ctx)
    assert not decision.allowed
    assert decision.message.startswith("stagegate could not check whether default/web may change what runs")


def test_the_guard_refuses_within_the_deadline_when_kubernetes_hangs(
    ctx: AdmissionContext, kube: AdmissionKube
) -> None:
    kube.hang.add("list_environment_objects")
    started = time.monotonic()
    decision = admit(deploy("a", None), ctx)
    assert time.monotonic() - started < 2.0
    assert not decision.allowed
    assert "did not answer within 1s" in decision.message


def test_an_unreadable_rollout_fails_closed(ctx: AdmissionContext, kube: AdmissionKube) -> None:
    kube.rollouts[(NAMESPACE, "myapp")] = {**rollout(), "spec": {"wantedVersion": ["b"]}}
    assert not admit(deploy("b"), ctx).allowed


def test_unknown_versions_and_unreadable_objects_are_refused_without_reads(
    ctx: AdmissionContext, kube: AdmissionKube
) -> None:
    v2 = oci_repository(tag="b", api_version="source.toolkit.fluxcd.io/v2")
    assert not admit(request(v2), ctx).allowed
    broken = {**oci_repository(), "spec": {"ref": "b"}}
    assert not admit(request(broken), ctx).allowed
    assert kube.calls == []


def test_writes_stagegate_does_not_check_are_allowed_without_reads(
    ctx: AdmissionContext, kube: AdmissionKube
) -> None:
    status = request(oci_repository(tag="b"), oci_repository(tag="a"), sub_resource="status")
    assert admit(status, ctx).allowed
    assert kube.calls == []


# --- what else decides what runs: sources, deletes ---------------------------------------------

SOURCE_ONLY = kustomization(rollouts={})


def test_a_kustomizations_version_write_reads_no_source(ctx: AdmissionContext, kube: AdmissionKube) -> None:
    old = kustomization(substitute={"version": "z"})
    assert admit(request(kustomization(substitute={"version": "a"}), old), ctx).allowed
    assert kube.calls == ["list_environment_objects", "list_gates"]


def test_a_kustomizations_path_change_reads_its_source_and_is_refused_for_the_sources_rollout(
    ctx: AdmissionContext, kube: AdmissionKube
) -> None:
    decision = admit(request(changed(SOURCE_ONLY, "spec", "path", "./other"), SOURCE_ONLY), ctx)
    assert not decision.allowed
    assert decision.message.startswith("Kustomization default/web may not change spec.path for Rollout myapp")
    # no gate read: gates vouch for tags, not for this; the Rollout is read for its overrides
    assert kube.calls == ["get_oci_repository", "list_environment_objects", "get_rollout"]


def test_a_kustomization_whose_source_is_gone_or_ungoverned_reads_nothing_more(
    ctx: AdmissionContext, kube: AdmissionKube
) -> None:
    moved = changed(SOURCE_ONLY, "spec", "path", "./other")
    kube.sources[(NAMESPACE, "web")] = oci_repository(rollout=None, tag="a")
    assert admit(request(moved, SOURCE_ONLY), ctx).allowed
    del kube.sources[(NAMESPACE, "web")]
    assert admit(request(moved, SOURCE_ONLY), ctx).allowed
    assert kube.calls == ["get_oci_repository", "get_oci_repository"]


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_a_source_that_cannot_be_read_fails_closed(
    failure: str, ctx: AdmissionContext, kube: AdmissionKube
) -> None:
    kube.fail["get_oci_repository"] = FAILURES[failure]
    decision = admit(request(changed(SOURCE_ONLY, "spec", "path", "./other"), SOURCE_ONLY), ctx)
    assert not decision.allowed
    assert decision.message.startswith("stagegate could not check whether default/web may change what runs")


def test_a_malformed_source_fails_closed_with_the_reason(ctx: AdmissionContext, kube: AdmissionKube) -> None:
    kube.sources[(NAMESPACE, "web")] = {**oci_repository(tag="a"), "spec": {"ref": "a"}}
    decision = admit(request(SOURCE_ONLY), ctx)
    assert not decision.allowed
    assert "OCIRepository default/web.spec.ref must be an object" in decision.message


def test_a_source_in_another_namespace_is_judged_by_that_namespaces_environments(
    ctx: AdmissionContext, kube: AdmissionKube
) -> None:
    kube.sources[("apps", "app")] = oci_repository("app", "apps", tag="a")
    old = kustomization(rollouts={}, source="app", source_namespace="apps")
    decision = admit(request(changed(old, "spec", "path", "./x"), old), ctx)
    assert decision.allowed  # no Environment governs apps/myapp, and this namespace did not opt in
    assert kube.calls == ["get_oci_repository", "list_environment_objects", "get_namespace"]
    kube.environments[("apps", "prod")] = environment_raw("prod", namespace="apps", uid=NEW_UID)
    kube.rollouts[("apps", "myapp")] = rollout(namespace="apps", wanted_version="a")
    overridden = admit(request(changed(old, "spec", "path", "./x"), old), ctx)
    assert overridden.allowed
    [event] = kube.events
    assert (event.namespace, event.name, event.reason) == ("apps", "myapp", "DeployOverride")


def delete(obj: dict[str, Any], **kwargs: Any) -> AdmissionRequest:
    return request(None, obj, operation="DELETE", **kwargs)


def test_a_delete_in_a_namespace_being_deleted_is_allowed_after_one_read(
    ctx: AdmissionContext, kube: AdmissionKube
) -> None:
    kube.terminating.add(NAMESPACE)
    decision = admit(delete(oci_repository(tag="a")), ctx)
    assert decision.allowed
    assert "is being deleted" in decision.reason
    assert kube.calls == ["get_namespace"]


def test_deleting_a_governed_object_is_refused_unless_overridden(
    ctx: AdmissionContext, kube: AdmissionKube
) -> None:
    decision = admit(delete(oci_repository(tag="a")), ctx)
    assert not decision.allowed
    assert "may not be deleted while it deploys Rollout myapp (it runs a (spec.ref.tag))" in decision.message
    assert kube.calls == ["get_namespace", "list_environment_objects", "get_rollout"]
    kube.rollouts[(NAMESPACE, "myapp")] = rollout(force_deploy="a")
    assert admit(delete(oci_repository(tag="a")), ctx).allowed
    [event] = kube.events
    assert "was deleted (it ran a)" in event.message


def test_deleting_what_no_environment_with_a_relationship_governs_is_decommissioning(
    ctx: AdmissionContext, kube: AdmissionKube
) -> None:
    kube.labels[NAMESPACE] = {LABEL[0]: LABEL[1]}
    assert admit(delete(oci_repository(rollout="myapp-staging", tag="a")), ctx).allowed
    assert admit(delete(oci_repository(rollout="gone", tag="a")), ctx).allowed
    assert admit(delete(oci_repository(rollout=None, tag="a")), ctx).allowed  # never governed: no read
    assert kube.calls == ["get_namespace", "list_environment_objects"] * 2


# --- the namespace guard -------------------------------------------------------------------------

REASON = {"stagegate.kuberik.com/unguard-reason": "moving the app to another cluster"}


def test_removing_the_opt_in_label_needs_a_reason_and_reads_nothing(
    ctx: AdmissionContext, kube: AdmissionKube
) -> None:
    refused = admit(request(namespace_object(labels={}), namespace_object()), ctx)
    assert not refused.allowed
    allowed = admit(request(namespace_object(labels={}, annotations=REASON), namespace_object()), ctx)
    assert allowed.allowed
    assert kube.calls == ["record_event"]
    [event] = kube.events
    assert (event.namespace, event.kind, event.name, event.reason) == (
        None,
        "Namespace",
        "myapp",
        "GuardRemoved",
    )


def test_a_dry_run_removal_records_no_event(ctx: AdmissionContext, kube: AdmissionKube) -> None:
    new = namespace_object(labels={}, annotations=REASON)
    assert admit(request(new, namespace_object(), dry_run=True), ctx).allowed
    assert kube.events == []


def test_an_unreadable_namespace_update_fails_closed(ctx: AdmissionContext, kube: AdmissionKube) -> None:
    broken = {**namespace_object(), "metadata": {"name": "myapp", "labels": "guard"}}
    decision = admit(request(broken, namespace_object()), ctx)
    assert not decision.allowed
    assert decision.message.startswith("stagegate could not check whether the update of namespace myapp")


# --- the gate at admission -----------------------------------------------------------------------


def env_create(name: str = "canary", **kwargs: Any) -> AdmissionRequest:
    return request(environment_raw(name, uid=NEW_UID, rollout=f"{name}app"), **kwargs)


def test_a_create_makes_the_blocking_gate_in_two_calls_then_looks_for_a_misspelt_upstream(
    ctx: AdmissionContext, kube: AdmissionKube
) -> None:
    decision = admit(env_create(), ctx)
    assert decision.allowed
    assert not decision.warnings
    assert kube.calls == ["get_environment_object", "create_gate", "list_environment_objects"]
    gate = kube.gates[(NAMESPACE, "canary-stagegate")]
    assert gate["spec"]["allowedVersions"] == []
    assert gate["metadata"]["annotations"][PENDING_OWNER_ANNOTATION] == NEW_UID  # owned once stored
    assert "ownerReferences" not in gate["metadata"]


def test_a_create_without_relationship_leaves_its_unrestricted_gate_to_the_stored_object_quietly(
    ctx: AdmissionContext, kube: AdmissionKube
) -> None:
    """No gate restricts nothing either, so the user is not warned of a wait that holds nothing back."""
    raw = environment_raw("qa", uid=NEW_UID, rollout="qaapp", relationship=None)
    decision = admit(request(raw), ctx)
    assert decision.allowed
    assert decision.warnings == ()
    assert "left for after the write" in decision.reason
    assert (NAMESPACE, "qa-stagegate") not in kube.gates


def test_a_dry_run_create_writes_and_reads_nothing(ctx: AdmissionContext, kube: AdmissionKube) -> None:
    assert admit(env_create(dry_run=True), ctx).allowed
    assert kube.calls == []
    assert (NAMESPACE, "canary-stagegate") not in kube.gates


def test_a_create_under_a_taken_name_leaves_the_existing_gate_alone(
    ctx: AdmissionContext, kube: AdmissionKube
) -> None:
    before = kube.snapshot()
    duplicate = request(environment_raw("prod", uid=NEW_UID, relationship=None))
    decision = admit(duplicate, ctx)
    assert decision.allowed
    assert "already exists" in decision.reason
    assert kube.calls == ["get_environment_object"]
    assert kube.snapshot() == before


def test_an_update_that_would_relax_waits_for_the_stored_object(
    ctx: AdmissionContext, kube: AdmissionKube
) -> None:
    before = kube.snapshot()
    old = environment_raw("prod")
    new = environment_raw("prod", relationship=None)
    decision = admit(request(new, old), ctx)
    assert decision.allowed
    assert "keeps its restriction" in decision.warnings[0]
    assert kube.snapshot() == before


def test_an_update_that_tightens_is_written_before_it_is_stored(
    ctx: AdmissionContext, kube: AdmissionKube
) -> None:
    old = environment_raw("staging", uid=kube.environments[(NAMESPACE, "staging")]["metadata"]["uid"])
    old["spec"]["rolloutRef"]["name"] = "myapp-staging"
    old["spec"].pop("relationship")
    new = copy.deepcopy(old)
    new["spec"]["relationship"] = {"type": "After", "environment": "dev"}
    assert admit(request(new, old), ctx).allowed
    assert kube.gates[(NAMESPACE, "staging-stagegate")]["spec"]["allowedVersions"] == []


@pytest.mark.parametrize("hang", [False, True], ids=["fails", "hangs"])
def test_the_environment_is_allowed_with_a_warning_when_the_gate_cannot_be_written(
    hang: bool, ctx: AdmissionContext, kube: AdmissionKube
) -> None:
    if hang:
        kube.hang.add("create_gate")
    else:
        kube.fail["create_gate"] = RetryableError("create RolloutGate: HTTP 500")
    started = time.monotonic()
    decision = admit(env_create(), ctx)
    assert time.monotonic() - started < 2.0
    assert decision.allowed
    assert "could not make the gate of Environment default/canary" in decision.warnings[0]


def test_a_gate_of_a_create_that_never_lands_is_taken_over_by_the_real_environment(
    ctx: AdmissionContext, kube: AdmissionKube
) -> None:
    from shared.views import Environment
    from stagegate.reconcile import ensure_gates

    admit(env_create(), ctx)  # this create is then refused by someone else: uid NEW_UID never exists
    real = environment_raw("canary", uid=OLD_ENV_UID, rollout="canaryapp")
    kube.environments[(NAMESPACE, "canary")] = real
    # the guard counts only gates of Environments that exist: no gate for the real one yet
    decision = admit(deploy("a", None, rollout_name="canaryapp"), ctx)
    assert not decision.allowed
    assert "has no RolloutGate" in decision.message
    # the audit path or resync plans from the stored Environment and takes the orphan over
    [outcome] = ensure_gates(Environment.from_raw(real), kube, fresh=False)
    assert outcome.action == "update"
    owners = kube.gates[(NAMESPACE, "canary-stagegate")]["metadata"]["ownerReferences"]
    assert [o["uid"] for o in owners] == [OLD_ENV_UID]


def test_concurrent_reviews_are_answered_independently(ctx: AdmissionContext, kube: AdmissionKube) -> None:
    results: dict[str, bool] = {}

    def run(tag: str) -> Callable[[], None]:
        return lambda: results.__setitem__(tag, admit(deploy(tag), ctx).allowed)

    threads = [threading.Thread(target=run(tag)) for tag in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {"a": True, "b": False, "c": False}
