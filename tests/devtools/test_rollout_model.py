"""The rollout model on a real kube-apiserver, with both CRD sets and both controller semantics.

Refused writes are real refusals: the model runs as a user whose RBAC role lacks `patch` on a Flux
kind, so the kube-apiserver answers 403 as it does when a validating admission webhook denies a write.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from stagegate_dev import devstack
from stagegate_dev.rollout_model import Decision, RolloutModel

SEMANTICS = ["current", "before-7cd0117"]
KUBERIK = ("kuberik.com", "v1alpha1")
OCI = ("source.toolkit.fluxcd.io", "v1")
KS = ("kustomize.toolkit.fluxcd.io", "v1")
NOW = datetime(2026, 7, 20, 12, 0, 0, tzinfo=UTC)
STAMP = "2026-07-20T12:00:00Z"
SEEDED = "2026-07-19T10:00:00Z"
MODEL_USER = "rollout-model"


def revision(tag: str) -> str:
    return (tag.encode().hex() + "0" * 40)[:40]


def release(tag: str) -> dict[str, Any]:
    return {"tag": tag, "revision": revision(tag)}


def entry(tag: str, entry_id: int = 1, bake: str = "Succeeded") -> dict[str, Any]:
    return {"id": entry_id, "version": release(tag), "timestamp": SEEDED, "bakeStatus": bake}


class Cluster:
    """What a test sets up in its namespace and reads back, as cluster admin."""

    def __init__(self, custom: client.CustomObjectsApi, namespace: str) -> None:
        self.custom, self.ns = custom, namespace

    def rollout(
        self,
        releases: list[str],
        *,
        history: list[dict[str, Any]] | None = None,
        annotations: dict[str, str] | None = None,
        spec: dict[str, Any] | None = None,
        name: str = "app",
    ) -> None:
        body = {
            "apiVersion": "kuberik.com/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": name, "namespace": self.ns, "annotations": annotations or {}},
            "spec": {"releasesImagePolicy": {"name": name}, **(spec or {})},
        }
        self.custom.create_namespaced_custom_object(*KUBERIK, self.ns, "rollouts", body)
        status: dict[str, Any] = {"availableReleases": [release(t) for t in releases]}
        if history:
            status["history"] = history
        self.custom.patch_namespaced_custom_object_status(
            *KUBERIK, self.ns, "rollouts", name, {"status": status}
        )

    def gate(
        self, name: str, allowed: list[str] | None, *, passing: bool = True, rollout: str = "app"
    ) -> None:
        spec: dict[str, Any] = {"rolloutRef": {"name": rollout}, "passing": passing}
        if allowed is not None:
            spec["allowedVersions"] = allowed
        body = {
            "apiVersion": "kuberik.com/v1alpha1",
            "kind": "RolloutGate",
            "metadata": {"name": name},
            "spec": spec,
        }
        self.custom.create_namespaced_custom_object(*KUBERIK, self.ns, "rolloutgates", body)

    def set_gate(self, name: str, allowed: list[str]) -> None:
        patch = {"spec": {"allowedVersions": allowed, "passing": True}}
        self.custom.patch_namespaced_custom_object(*KUBERIK, self.ns, "rolloutgates", name, patch)

    def annotate(self, notes: dict[str, str | None], name: str = "app") -> None:
        patch = {"metadata": {"annotations": notes}}
        self.custom.patch_namespaced_custom_object(*KUBERIK, self.ns, "rollouts", name, patch)

    def oci(self, name: str, tag: str, rollout: str | None = None, **ref: str) -> None:
        notes = {"rollout.kuberik.com/rollout": rollout} if rollout else {}
        body = {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "OCIRepository",
            "metadata": {"name": name, "annotations": notes},
            "spec": {"url": f"oci://registry.example/{name}", "interval": "5m", "ref": {"tag": tag, **ref}},
        }
        self.custom.create_namespaced_custom_object(*OCI, self.ns, "ocirepositories", body)

    def kustomization(
        self, name: str, substitute: dict[str, str], notes: dict[str, str] | None = None
    ) -> None:
        body = {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": name, "annotations": notes or {}},
            "spec": {
                "interval": "10m",
                "prune": True,
                "path": "./deploy",
                "sourceRef": {"kind": "OCIRepository", "name": name},
                "postBuild": {"substitute": substitute},
            },
        }
        self.custom.create_namespaced_custom_object(*KS, self.ns, "kustomizations", body)

    def flux_app(self, tag: str = "v0") -> None:
        """The usual pair: OCIRepository `app` and Kustomization `app` (APP_VERSION) for Rollout `app`."""
        self.oci("app", tag, rollout="app")
        notes = {"rollout.kuberik.com/substitute.APP_VERSION.from": "app"}
        self.kustomization("app", {"APP_VERSION": tag, "REGION": "eu"}, notes)

    def get_rollout(self, name: str = "app") -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(*KUBERIK, self.ns, "rollouts", name)
        return obj

    def history(self, name: str = "app") -> list[dict[str, Any]]:
        return list(self.get_rollout(name).get("status", {}).get("history") or [])

    def deployed_tags(self, name: str = "app") -> list[str]:
        return [e["version"]["tag"] for e in self.history(name)]

    def condition(self, kind: str, name: str = "app") -> dict[str, Any]:
        conditions = self.get_rollout(name)["status"].get("conditions") or []
        return next(c for c in conditions if c["type"] == kind)

    def get_oci(self, name: str = "app") -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(*OCI, self.ns, "ocirepositories", name)
        return obj

    def get_ks(self, name: str = "app") -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(*KS, self.ns, "kustomizations", name)
        return obj

    def tag(self, name: str = "app") -> str:
        return str(self.get_oci(name)["spec"]["ref"]["tag"])

    def substitute(self, name: str = "app") -> dict[str, str]:
        return dict(self.get_ks(name)["spec"]["postBuild"]["substitute"])


@pytest.fixture
def cluster(custom: client.CustomObjectsApi, namespace: str) -> Cluster:
    return Cluster(custom, namespace)


@pytest.fixture
def model_for(kube_stack: devstack.KubeStack, namespace: str) -> Callable[..., RolloutModel]:
    def make(semantics: str = "current", bake: str = "Succeeded", api: Any = None) -> RolloutModel:
        return RolloutModel(
            api or kube_stack.api_client(), namespace, semantics=semantics, bake=bake, clock=lambda: NOW
        )  # type: ignore[arg-type]

    return make


@pytest.mark.parametrize("semantics", SEMANTICS)
@pytest.mark.parametrize(
    "closed_gate", [{"allowed": []}, {"allowed": None, "passing": False}], ids=["empty", "failing"]
)
def test_first_deploy_behind_a_closed_gate(
    cluster: Cluster, model_for: Callable[..., RolloutModel], semantics: str, closed_gate: dict[str, Any]
) -> None:
    cluster.rollout(["v1", "v2"])
    cluster.gate("prod-gate", **closed_gate)
    cluster.flux_app()

    decision = model_for(semantics).reconcile("app")

    assert decision is not None
    assert decision.candidates == ("v2", "v1")
    if semantics == "current":
        assert (decision.outcome, decision.version) == ("deployed", "v2")
        assert "first deploy" in decision.reason
        assert "7cd0117" in decision.reason
        assert decision.applied == ("OCIRepository/app", "Kustomization/app")
        assert (cluster.tag(), cluster.substitute()["APP_VERSION"]) == ("v2", "v2")
        assert cluster.deployed_tags() == ["v2"]
    else:
        assert (decision.outcome, decision.version, decision.applied) == ("blocked", None, ())
        assert (cluster.tag(), cluster.substitute()["APP_VERSION"]) == ("v0", "v0")
        assert cluster.history() == []
        status = cluster.get_rollout()["status"]
        assert [c["tag"] for c in status["releaseCandidates"]] == ["v2", "v1"]
        assert cluster.condition("GatesPassing")["status"] == "False"


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_allowed_v1_is_applied_to_annotated_flux_objects_only(
    cluster: Cluster, model_for: Callable[..., RolloutModel], semantics: str
) -> None:
    cluster.rollout(["v1", "v2"])
    cluster.gate("prod-gate", ["v1"])
    cluster.oci("app", "v0", rollout="app", semverFilter=".*")
    cluster.oci("other", "v0", rollout="other-app")
    cluster.oci("plain", "v0")
    cluster.kustomization(
        "app",
        {"APP_VERSION": "v0", "REGION": "eu"},
        {"rollout.kuberik.com/substitute.APP_VERSION.from": "app"},
    )
    cluster.kustomization(
        "other", {"APP_VERSION": "v0"}, {"rollout.kuberik.com/substitute.APP_VERSION.from": "other-app"}
    )
    cluster.kustomization("plain", {"APP_VERSION": "v0"})
    untouched = {
        n: v["metadata"]["resourceVersion"]
        for n, v in [("oci/other", cluster.get_oci("other")), ("oci/plain", cluster.get_oci("plain")),
                     ("ks/other", cluster.get_ks("other")), ("ks/plain", cluster.get_ks("plain"))]
    }  # fmt: skip

    decision = model_for(semantics).reconcile("app")

    assert decision == Decision(
        "app", "deployed", "newest candidate the gates allow (gatedReleaseCandidates[0])", "v1",
        candidates=("v2", "v1"), gated=("v1",), applied=("OCIRepository/app", "Kustomization/app"),
        history_id=1,
    )  # fmt: skip
    oci = cluster.get_oci("app")
    assert oci["spec"]["ref"] == {"tag": "v1", "semverFilter": ".*"}
    [applied] = [m for m in oci["metadata"]["managedFields"] if m["manager"] == "rollout-controller"]
    assert applied["operation"] == "Apply"
    assert "f:tag" in applied["fieldsV1"]["f:spec"]["f:ref"]
    assert cluster.substitute("app") == {"APP_VERSION": "v1", "REGION": "eu"}
    ks_managers = {m["manager"]: m["operation"] for m in cluster.get_ks("app")["metadata"]["managedFields"]}
    assert ks_managers["rollout-controller"] == "Apply"
    assert {
        n: v["metadata"]["resourceVersion"]
        for n, v in [("oci/other", cluster.get_oci("other")), ("oci/plain", cluster.get_oci("plain")),
                     ("ks/other", cluster.get_ks("other")), ("ks/plain", cluster.get_ks("plain"))]
    } == untouched  # fmt: skip
    status = cluster.get_rollout()["status"]
    assert status["history"] == [
        {
            "id": 1,
            "version": {"tag": "v1", "revision": revision("v1")},
            "timestamp": STAMP,
            "message": "Automatic deployment",
            "triggeredBy": {"kind": "System", "name": "rollout-controller"},
            "bakeStatus": "Succeeded",
            "bakeStatusMessage": "No bake time configured, deployment completed immediately.",
        }
    ]
    assert [c["tag"] for c in status["releaseCandidates"]] == ["v2"]
    assert status["gates"] == [
        {"name": "prod-gate", "passing": True, "allowedVersions": ["v1"], "message": "Gate is passing"}
    ]
    ready = cluster.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("True", "RolloutSucceeded")
    assert ready["message"] == "Release deployed successfully. Bake completed successfully"


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_second_deploy_waits_for_the_gates_in_both_semantics(
    cluster: Cluster, model_for: Callable[..., RolloutModel], semantics: str
) -> None:
    cluster.rollout(["v1", "v2", "v3"], history=[entry("v1")])
    cluster.gate("prod-gate", [])
    cluster.gate("unrestricted", None)
    cluster.flux_app("v1")
    model = model_for(semantics)

    blocked = model.reconcile("app")
    assert blocked is not None
    assert (blocked.outcome, blocked.reason, blocked.candidates) == (
        "blocked", "the gates allow none of the candidates", ("v3", "v2"),
    )  # fmt: skip
    cluster.set_gate("prod-gate", ["v1", "v2"])
    deployed = model.reconcile("app")

    assert deployed is not None
    assert (deployed.outcome, deployed.version, deployed.history_id) == ("deployed", "v2", 2)
    assert cluster.deployed_tags() == ["v2", "v1"]
    assert (cluster.tag(), cluster.substitute()["APP_VERSION"]) == ("v2", "v2")
    again = model.reconcile("app")
    assert again is not None
    assert (again.outcome, again.candidates) == ("blocked", ("v3",))


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_a_gate_that_is_not_passing_blocks_once_history_exists(
    cluster: Cluster, model_for: Callable[..., RolloutModel], semantics: str
) -> None:
    cluster.rollout(["v1", "v2"], history=[entry("v1")])
    cluster.gate("prod-gate", None, passing=False)
    cluster.flux_app("v1")

    decision = model_for(semantics).reconcile("app")

    assert decision is not None
    assert (decision.outcome, decision.reason) == ("blocked", "a gate is not passing")
    assert cluster.tag() == "v1"


@pytest.mark.parametrize("semantics", SEMANTICS)
@pytest.mark.parametrize("history", [[], [entry("v1")]], ids=["first", "second"])
def test_wanted_version_deploys_any_tag_past_closed_gates_and_stays_set(
    cluster: Cluster, model_for: Callable[..., RolloutModel], semantics: str, history: list[dict[str, Any]]
) -> None:
    cluster.rollout(["v1", "v2"], history=history, spec={"wantedVersion": "v9"})
    cluster.gate("prod-gate", [], passing=False)
    cluster.flux_app()
    model = model_for(semantics)

    decision = model.reconcile("app")

    assert decision is not None
    assert (decision.outcome, decision.version) == ("deployed", "v9")
    assert "wantedVersion" in decision.reason
    newest = cluster.history()[0]
    assert newest["version"] == {"tag": "v9"}
    assert (newest["message"], newest["triggeredBy"]["kind"]) == ("Manual deployment", "System")
    assert (cluster.tag(), cluster.substitute()["APP_VERSION"]) == ("v9", "v9")
    assert cluster.get_rollout()["spec"]["wantedVersion"] == "v9"
    again = model.reconcile("app")
    assert again is not None
    assert again.outcome == "unchanged"


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_force_deploy_rolls_back_past_closed_gates_and_is_cleared(
    cluster: Cluster, model_for: Callable[..., RolloutModel], semantics: str
) -> None:
    notes = {
        "rollout.kuberik.com/force-deploy": "v1",
        "rollout.kuberik.com/deploy-user": "alice",
        "rollout.kuberik.com/deploy-message": "roll back",
        "keep.example/me": "yes",
    }
    cluster.rollout(["v1", "v2"], history=[entry("v2")], annotations=notes)
    cluster.gate("prod-gate", [])
    cluster.flux_app("v2")

    decision = model_for(semantics).reconcile("app")

    assert decision is not None
    assert (decision.outcome, decision.version, decision.candidates) == ("deployed", "v1", ())
    newest = cluster.history()[0]
    assert (newest["message"], newest["triggeredBy"]) == ("roll back", {"kind": "User", "name": "alice"})
    assert newest["version"] == release("v1")
    assert cluster.tag() == "v1"
    assert cluster.get_rollout()["metadata"]["annotations"] == {"keep.example/me": "yes"}


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_force_deploy_of_a_tag_that_is_no_release_fails_and_is_kept(
    cluster: Cluster, model_for: Callable[..., RolloutModel], semantics: str
) -> None:
    cluster.rollout(["v1"], history=[entry("v1")], annotations={"rollout.kuberik.com/force-deploy": "v9"})
    cluster.flux_app("v1")

    decision = model_for(semantics).reconcile("app")

    assert decision is not None
    assert (decision.outcome, decision.requeue) == ("failed", True)
    assert decision.error == "force deploy version v9 is not in available releases"
    assert cluster.deployed_tags() == ["v1"]
    ready = cluster.condition("Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "RolloutFailed", decision.error)
    assert cluster.get_rollout()["metadata"]["annotations"] == {"rollout.kuberik.com/force-deploy": "v9"}


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_bypass_gates_deploys_that_candidate_and_is_cleared(
    cluster: Cluster, model_for: Callable[..., RolloutModel], semantics: str
) -> None:
    cluster.rollout(
        ["v1", "v2", "v3"], history=[entry("v1")], annotations={"rollout.kuberik.com/bypass-gates": "v2"}
    )
    cluster.gate("prod-gate", [])
    cluster.flux_app("v1")

    decision = model_for(semantics).reconcile("app")

    assert decision is not None
    assert (decision.outcome, decision.version, decision.gated) == ("deployed", "v2", ("v2",))
    status = cluster.get_rollout()["status"]
    assert status["history"][0]["message"] == "Automatic deployment, with gate bypass"
    assert status["gates"][0]["bypassGates"] is True
    assert cluster.condition("Ready")["message"].startswith("Release deployed successfully with gate bypass.")
    assert cluster.get_rollout()["metadata"].get("annotations") in (None, {})


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_bypass_of_a_tag_that_is_no_candidate_is_ignored(
    cluster: Cluster, model_for: Callable[..., RolloutModel], semantics: str
) -> None:
    notes = {"rollout.kuberik.com/bypass-gates": "v1"}
    cluster.rollout(["v1", "v2"], history=[entry("v1")], annotations=notes)
    cluster.gate("prod-gate", [])

    decision = model_for(semantics).reconcile("app")

    assert decision is not None
    assert decision.outcome == "blocked"
    assert cluster.get_rollout()["metadata"]["annotations"] == notes


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_a_deploying_bake_blocks_the_next_automatic_deploy_until_it_succeeds(
    cluster: Cluster, model_for: Callable[..., RolloutModel], semantics: str
) -> None:
    cluster.rollout(["v1"])
    cluster.flux_app()
    model = model_for(semantics, bake="Deploying")
    first = model.reconcile("app")
    assert first is not None
    assert first.outcome == "deployed"
    assert cluster.history()[0]["bakeStatus"] == "Deploying"

    model.publish("app", "v2", revision("v2"))
    waiting = model.reconcile("app")
    model.finish_bake("app", "Succeeded")
    after = model.reconcile("app")

    assert waiting is not None
    assert (waiting.outcome, waiting.reason) == ("blocked", "bake of v1 is Deploying")
    assert after is not None
    assert (after.outcome, after.version) == ("deployed", "v2")
    assert [(e["version"]["tag"], e["bakeStatus"]) for e in cluster.history()] == [
        ("v2", "Deploying"), ("v1", "Succeeded"),
    ]  # fmt: skip


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_a_failed_bake_blocks_until_unblock_failed_which_is_then_cleared(
    cluster: Cluster, model_for: Callable[..., RolloutModel], semantics: str
) -> None:
    cluster.rollout(["v1", "v2"], history=[entry("v1", bake="Failed")])
    cluster.flux_app("v1")
    model = model_for(semantics)

    blocked = model.reconcile("app")
    cluster.annotate({"rollout.kuberik.com/unblock-failed": "true"})
    unblocked = model.reconcile("app")

    assert blocked is not None
    assert (blocked.outcome, blocked.reason, blocked.version) == ("blocked", "bake of v1 failed", "v2")
    assert unblocked is not None
    assert (unblocked.outcome, unblocked.version) == ("deployed", "v2")
    assert cluster.history()[0]["message"] == "Automatic deployment, with failed bake unblock"
    assert cluster.get_rollout()["metadata"].get("annotations") in (None, {})


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_a_manual_deploy_cancels_the_running_bake(
    cluster: Cluster, model_for: Callable[..., RolloutModel], semantics: str
) -> None:
    cluster.rollout(["v1", "v2"], history=[entry("v1", bake="InProgress")], spec={"wantedVersion": "v2"})
    cluster.flux_app("v1")

    decision = model_for(semantics).reconcile("app")

    assert decision is not None
    assert decision.outcome == "deployed"
    previous = cluster.history()[1]
    assert (previous["bakeStatus"], previous["bakeEndTime"]) == ("Cancelled", STAMP)
    assert previous["message"] == "Deployment cancelled due to new deployment of version v2"


# Refused writes: the model acts as MODEL_USER, whose Role decides which Flux kinds it may patch.


@pytest.fixture
def restricted(kube_stack: devstack.KubeStack, namespace: str) -> Callable[..., Any]:
    """Grant MODEL_USER what the rollout controller's ClusterRole grants, minus `patch` where told;
    returns a function that (re)grants and answers an ApiClient impersonating MODEL_USER."""
    rbac = client.RbacAuthorizationV1Api(kube_stack.api_client())
    api = kube_stack.api_client()
    api.set_default_header("Impersonate-User", MODEL_USER)
    review = client.AuthorizationV1Api(api)
    binding = {
        "metadata": {"name": "rollout-model"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rollout-model"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": MODEL_USER}],
    }
    rbac.create_namespaced_role_binding(namespace, binding)

    def allowed(group: str, resource: str, verb: str, subresource: str = "") -> bool:
        attributes = {"namespace": namespace, "group": group, "resource": resource, "verb": verb}
        body = {"spec": {"resourceAttributes": attributes | {"subresource": subresource}}}
        return bool(review.create_self_subject_access_review(body).status.allowed)

    def grant(*, patch_oci: bool, patch_kustomizations: bool) -> Any:
        read = ["get", "list", "watch"]
        rules = [
            {"apiGroups": ["kuberik.com"], "resources": ["rollouts"], "verbs": [*read, "update", "patch"]},
            {
                "apiGroups": ["kuberik.com"],
                "resources": ["rollouts/status"],
                "verbs": ["get", "update", "patch"],
            },
            {"apiGroups": ["kuberik.com"], "resources": ["rolloutgates"], "verbs": read},
            {"apiGroups": [OCI[0]], "resources": ["ocirepositories"], "verbs": read + ["patch"] * patch_oci},
            {
                "apiGroups": [KS[0]],
                "resources": ["kustomizations"],
                "verbs": read + ["patch"] * patch_kustomizations,
            },
        ]
        role = {"metadata": {"name": "rollout-model"}, "rules": rules}
        try:
            rbac.replace_namespaced_role("rollout-model", namespace, role)
        except client.exceptions.ApiException as exc:
            if exc.status != 404:
                raise
            rbac.create_namespaced_role(namespace, role)
        expected = [
            (("kuberik.com", "rollouts", "update", "status"), True),
            (("kuberik.com", "rolloutgates", "list"), True),
            ((OCI[0], "ocirepositories", "patch"), patch_oci),
            ((KS[0], "kustomizations", "patch"), patch_kustomizations),
        ]
        deadline = time.monotonic() + 30
        while not all(allowed(*check) is ok for check, ok in expected):
            assert time.monotonic() < deadline, "RBAC for the model's user never took effect"
            time.sleep(0.1)
        return api

    return grant


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_a_refused_oci_repository_apply_records_nothing_and_is_retried(
    cluster: Cluster, model_for: Callable[..., RolloutModel], restricted: Callable[..., Any], semantics: str
) -> None:
    cluster.rollout(["v1", "v2"])
    cluster.gate("prod-gate", ["v1"])
    cluster.flux_app()
    model = model_for(semantics, api=restricted(patch_oci=False, patch_kustomizations=True))

    refused = model.reconcile("app")

    assert refused is not None
    assert (refused.outcome, refused.version, refused.requeue) == ("failed", "v1", True)
    assert (refused.status_code, refused.applied) == (403, ())
    assert refused.error is not None
    assert refused.error.startswith("failed to apply OCIRepository app: ")
    assert "forbidden" in refused.error
    assert cluster.history() == []
    assert (cluster.tag(), cluster.substitute()["APP_VERSION"]) == ("v0", "v0")
    ready = cluster.condition("Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "RolloutFailed", refused.error)

    restricted(patch_oci=True, patch_kustomizations=True)
    retried = model.reconcile("app")

    assert retried is not None
    assert (retried.outcome, retried.version, retried.history_id) == ("deployed", "v1", 1)
    assert cluster.deployed_tags() == ["v1"]
    assert cluster.condition("Ready")["status"] == "True"


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_a_refused_kustomization_apply_keeps_the_earlier_write_but_records_no_entry(
    cluster: Cluster, model_for: Callable[..., RolloutModel], restricted: Callable[..., Any], semantics: str
) -> None:
    cluster.rollout(["v1", "v2"], history=[entry("v1", bake="InProgress")], spec={"wantedVersion": "v2"})
    cluster.flux_app("v1")
    model = model_for(semantics, api=restricted(patch_oci=True, patch_kustomizations=False))

    refused = model.reconcile("app")
    again = model.reconcile("app")

    assert refused is not None
    assert (refused.outcome, refused.applied, refused.status_code) == ("failed", ("OCIRepository/app",), 403)
    assert refused.error is not None
    assert refused.error.startswith("failed to apply Kustomization app: ")
    assert (cluster.tag(), cluster.substitute()["APP_VERSION"]) == ("v2", "v1")
    # As in Go, the failed deploy's status write keeps the cancelled bake, but no entry for v2.
    assert [(e["version"]["tag"], e["bakeStatus"]) for e in cluster.history()] == [("v1", "Cancelled")]
    assert again is not None
    assert (again.outcome, again.applied) == ("failed", ())


@pytest.mark.parametrize("code", [400, 403, 422])
def test_a_webhook_style_denial_carries_the_apiserver_message(
    cluster: Cluster, model_for: Callable[..., RolloutModel], monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    cluster.rollout(["v1"])
    cluster.flux_app()
    model = model_for("current")
    real_patch = model.custom.patch_namespaced_custom_object
    denial = 'admission webhook "deploy-guard.example" denied the request: v1 has not baked in staging'

    def deny_applies(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("_content_type") == "application/apply-patch+yaml":
            exc = client.exceptions.ApiException(status=code, reason="Denied")
            exc.body = json.dumps({"kind": "Status", "status": "Failure", "message": denial, "code": code})
            raise exc
        return real_patch(*args, **kwargs)

    monkeypatch.setattr(model.custom, "patch_namespaced_custom_object", deny_applies)
    decision = model.reconcile("app")

    assert decision is not None
    assert (decision.outcome, decision.status_code, decision.requeue) == ("failed", code, True)
    assert decision.error == f"failed to apply OCIRepository app: {denial}"
    assert cluster.history() == []
    assert cluster.condition("Ready")["message"] == decision.error


def test_run_reconciles_on_gate_changes_and_stops_promptly(
    cluster: Cluster, model_for: Callable[..., RolloutModel]
) -> None:
    cluster.rollout(["v1"])
    cluster.gate("prod-gate", [])
    cluster.flux_app()
    model, stop, decisions = model_for("current"), threading.Event(), []
    thread = threading.Thread(target=model.run, args=(stop, 0.05, decisions.append), daemon=True)
    thread.start()
    try:
        wait_for(lambda: cluster.deployed_tags() == ["v1"])
        model.publish("app", "v2", revision("v2"))
        wait_for(lambda: any(d.outcome == "blocked" for d in decisions))
        cluster.set_gate("prod-gate", ["v2"])
        wait_for(lambda: cluster.deployed_tags() == ["v2", "v1"])
    finally:
        stop.set()
        thread.join(timeout=2)
    assert not thread.is_alive()
    assert cluster.tag() == "v2"
    deployed = [(d.version, d.history_id) for d in decisions if d.outcome == "deployed"]
    assert deployed == [("v1", 1), ("v2", 2)]


def wait_for(condition: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)
