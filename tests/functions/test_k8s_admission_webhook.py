"""The shipped ValidatingWebhookConfiguration (`infra/k8s/admission.yaml`) registered on the real
kube-apiserver, which calls `k8s_admission` over TLS: what a client sees.

The configuration is the file's, with two changes a test stack needs: `clientConfig` is the function
server's `url` plus the stack's CA as `caBundle` (the documented alternative to cert-manager), and
every webhook's selector (the namespace guard's objectSelector, the others' namespaceSelector) also
requires a label only this module's namespaces carry, so that the other test modules sharing this
apiserver are not affected. It is removed when the module ends.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from shared.gate import PENDING_OWNER_ANNOTATION
from stagegate.kube import KubeGates
from stagegate.reconcile import ensure_gates
from stagegate_dev import devstack
from tests.functions.admission_support import GUARD_LABEL, labelled_namespace
from tests.kube_objects import ENV_ARGS, GATE_ARGS, environment, get_gate, list_gates
from tests.shared.admission_builders import kustomization, oci_repository, rollout

OCI_ARGS = ("source.toolkit.fluxcd.io", "v1")
KS_ARGS = ("kustomize.toolkit.fluxcd.io", "v1")


def _namespace(kube_stack: devstack.KubeStack, labels: dict[str, str], prefix: str = "w") -> str:
    return labelled_namespace(kube_stack, labels, prefix)


@pytest.fixture
def guarded(registered: dict[str, Any], kube_stack: devstack.KubeStack, isolation: dict[str, str]) -> str:
    """A namespace that opted in to the guard (and carries this module's isolation label)."""
    return _namespace(kube_stack, {**isolation, **GUARD_LABEL})


# --- the gate at admission -----------------------------------------------------------------------


def test_an_environment_created_through_the_api_has_its_gate_before_the_create_returns(
    guarded: str, custom: client.CustomObjectsApi, gates: KubeGates
) -> None:
    """Made at admission, the gate names its Environment as pending owner, not as owner: the garbage
    collector (which this stack runs) deleted a gate owned by a uid not yet stored, although the
    create then landed. The first write from the stored Environment adopts it, and from then on it
    goes with the Environment."""
    created = custom.create_namespaced_custom_object(
        *ENV_ARGS, guarded, "environments", environment(guarded, "prod")
    )
    uid = created["metadata"]["uid"]
    gate = get_gate(custom, guarded, "prod-stagegate")  # the first call after the create returned
    assert gate["spec"]["allowedVersions"] == []
    assert gate["metadata"]["annotations"][PENDING_OWNER_ANNOTATION] == uid
    assert "ownerReferences" not in gate["metadata"]
    time.sleep(2)  # the garbage collector has seen the gate
    assert get_gate(custom, guarded, "prod-stagegate")["spec"]["allowedVersions"] == []
    env = gates.get_environment(guarded, "prod")
    assert env is not None
    [adopted] = ensure_gates(env, gates, fresh=False)
    assert adopted.action == "update", adopted
    gate = get_gate(custom, guarded, "prod-stagegate")
    assert [r["uid"] for r in gate["metadata"]["ownerReferences"]] == [uid]
    assert PENDING_OWNER_ANNOTATION not in gate["metadata"]["annotations"]
    assert gate["spec"]["allowedVersions"] == []
    custom.delete_namespaced_custom_object(*ENV_ARGS, guarded, "environments", "prod")
    devstack.wait_until(lambda: list_gates(custom, guarded) == [], 30, "the garbage collector")


def test_a_dry_run_create_through_the_api_makes_no_gate(
    guarded: str, custom: client.CustomObjectsApi
) -> None:
    answered = custom.create_namespaced_custom_object(
        *ENV_ARGS, guarded, "environments", environment(guarded, "prod"), dry_run="All"
    )
    assert answered["metadata"]["name"] == "prod"
    assert list_gates(custom, guarded) == []
    assert custom.list_namespaced_custom_object(*ENV_ARGS, guarded, "environments")["items"] == []


def test_a_duplicate_create_through_the_api_fails_and_leaves_the_gate_alone(
    guarded: str, custom: client.CustomObjectsApi
) -> None:
    custom.create_namespaced_custom_object(*ENV_ARGS, guarded, "environments", environment(guarded, "prod"))
    custom.patch_namespaced_custom_object(
        *GATE_ARGS, guarded, "rolloutgates", "prod-stagegate", {"spec": {"allowedVersions": ["v1"]}}
    )
    before = get_gate(custom, guarded, "prod-stagegate")
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(
            *ENV_ARGS, guarded, "environments", environment(guarded, "prod", upstream=None)
        )
    assert refused.value.status == 409
    assert list_gates(custom, guarded) == [before]


# --- the deploy guard ----------------------------------------------------------------------------


def _flux_installed(kube_stack: devstack.KubeStack) -> bool:
    api = client.ApiextensionsV1Api(kube_stack.api_client())
    names = {c.metadata.name for c in api.list_custom_resource_definition().items}
    return {"ocirepositories.source.toolkit.fluxcd.io", "kustomizations.kustomize.toolkit.fluxcd.io"} <= names


@pytest.fixture
def flux(kube_stack: devstack.KubeStack) -> None:
    if not _flux_installed(kube_stack):
        pytest.skip("this stack has no Flux CRDs (OCIRepository, Kustomization) installed")


def apply_tag(custom: client.CustomObjectsApi, namespace: str, tag: str) -> Any:
    """What the rollout controller does: server-side apply of spec.ref.tag, forcing ownership."""
    body = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "OCIRepository",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"ref": {"tag": tag}},
    }
    return custom.patch_namespaced_custom_object_with_http_info(
        *OCI_ARGS,
        namespace,
        "ocirepositories",
        "web",
        body,
        field_manager="rollout-controller",
        force=True,
        _content_type="application/apply-patch+yaml",
    )


def refusal(call: Any) -> str:
    with pytest.raises(ApiException) as refused:
        call()
    assert refused.value.status == 403
    return str(refused.value.body)


def test_the_rollout_controllers_apply_runs_only_what_the_gate_allows(
    flux: None, guarded: str, custom: client.CustomObjectsApi
) -> None:
    namespace = guarded
    custom.create_namespaced_custom_object(*GATE_ARGS, namespace, "rollouts", _rollout(namespace))
    # Rollout first, no Environment yet: an OCIRepository naming a tag must wait ...
    message = refusal(
        lambda: custom.create_namespaced_custom_object(
            *OCI_ARGS, namespace, "ocirepositories", oci_repository(namespace=namespace, tag="v1")
        )
    )
    assert 'admission webhook \\"deploy-guard.stagegate.kuberik.com\\" denied the request' in message
    assert "no Environment governs Rollout myapp yet" in message
    # ... one without a tag (bootstrap) is fine
    custom.create_namespaced_custom_object(
        *OCI_ARGS, namespace, "ocirepositories", oci_repository(namespace=namespace)
    )
    # the Environment arrives, and with it its closed gate
    custom.create_namespaced_custom_object(
        *ENV_ARGS, namespace, "environments", environment(namespace, "prod")
    )
    assert "does not allow it" in refusal(lambda: apply_tag(custom, namespace, "v1"))
    # staging baked v1
    custom.patch_namespaced_custom_object(
        *GATE_ARGS, namespace, "rolloutgates", "prod-stagegate", {"spec": {"allowedVersions": ["v1"]}}
    )
    applied, status, _ = apply_tag(custom, namespace, "v1")
    assert (status, applied["spec"]["ref"]["tag"]) == (200, "v1")
    apply_tag(custom, namespace, "v1")  # the same tag again: no change
    assert "may not run v2" in refusal(lambda: apply_tag(custom, namespace, "v2"))
    # a human override lets v2 through, and the client sees the warning
    custom.patch_namespaced_custom_object(
        *GATE_ARGS,
        namespace,
        "rollouts",
        "myapp",
        {"metadata": {"annotations": {"rollout.kuberik.com/force-deploy": "v2"}}},
    )
    applied, _, headers = apply_tag(custom, namespace, "v2")
    assert applied["spec"]["ref"]["tag"] == "v2"
    assert "human override" in headers.get("Warning", "")


def test_a_kustomization_substitute_is_guarded_through_the_api(
    flux: None, guarded: str, custom: client.CustomObjectsApi
) -> None:
    namespace = guarded
    custom.create_namespaced_custom_object(
        *ENV_ARGS, namespace, "environments", environment(namespace, "prod")
    )
    body = kustomization(namespace=namespace, substitute={"version": "v1"})
    assert "does not allow it" in refusal(
        lambda: custom.create_namespaced_custom_object(*KS_ARGS, namespace, "kustomizations", body)
    )
    custom.patch_namespaced_custom_object(
        *GATE_ARGS, namespace, "rolloutgates", "prod-stagegate", {"spec": {"allowedVersions": ["v1"]}}
    )
    created = custom.create_namespaced_custom_object(*KS_ARGS, namespace, "kustomizations", body)
    assert created["spec"]["postBuild"]["substitute"] == {"version": "v1"}


def test_namespaces_that_did_not_opt_in_are_not_guarded(
    flux: None, registered: dict[str, Any], kube_stack: devstack.KubeStack, isolation: dict[str, str]
) -> None:
    custom = client.CustomObjectsApi(kube_stack.api_client())
    namespace = _namespace(kube_stack, isolation)  # the webhook's isolation label, not the opt-in label
    custom.create_namespaced_custom_object(
        *ENV_ARGS, namespace, "environments", environment(namespace, "prod")
    )
    created = custom.create_namespaced_custom_object(
        *OCI_ARGS, namespace, "ocirepositories", oci_repository(namespace=namespace, tag="unbaked")
    )
    assert created["spec"]["ref"]["tag"] == "unbaked"


def _rollout(namespace: str) -> dict[str, Any]:
    body = rollout(namespace=namespace)
    del body["metadata"]["uid"]
    return body
