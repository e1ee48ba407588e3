"""`k8s_admission` served by the real functions-framework (gunicorn, TLS) in its own process, as the
least-privilege ServiceAccount (`infra/k8s/rbac.yaml` + `admission-rbac.yaml`), against the real
kube-apiserver with both CRD sets. AdmissionReviews are posted the way the apiserver posts them; the
registration of the webhook itself is in `test_k8s_admission_webhook.py`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client

from shared.gate import PENDING_OWNER_ANNOTATION
from shared.views import Environment
from stagegate.kube import KubeGates
from stagegate.reconcile import ensure_gates
from stagegate_dev import devstack
from tests.flaky_proxy import FlakyProxy
from tests.functions.admission_support import admission_identity
from tests.functions.metrics_support import scrape
from tests.kube_objects import GATE_ARGS, create_environment, environment, get_gate, list_gates, stored
from tests.shared.admission_builders import kustomization, oci_repository, review, rollout

SOURCE = devstack.ROOT / "functions" / "k8s_admission" / "main.py"
LABEL = {"stagegate.kuberik.com/guard": "enabled"}


def serve(kube_stack: devstack.KubeStack, procs: devstack.Processes, **env: str) -> str:
    settings = {"KUBECONFIG": str(admission_identity(kube_stack)), "ADMISSION_DEADLINE_SECONDS": "3", **env}
    return devstack.FunctionServer(SOURCE, "k8s_admission", settings, kube_stack.tls, procs).url


@pytest.fixture(scope="module")
def url(kube_stack: devstack.KubeStack, procs: devstack.Processes) -> str:
    return serve(kube_stack, procs)


def post(url: str, body: bytes, kube_stack: devstack.KubeStack) -> requests.Response:
    return requests.post(
        url,
        data=body,
        headers={"Content-Type": "application/json"},
        verify=str(kube_stack.tls.ca_file),
        timeout=30,
    )


def answer(url: str, kube_stack: devstack.KubeStack, *args: Any, **kwargs: Any) -> dict[str, Any]:
    body = review(*args, **kwargs)
    response = post(url, json.dumps(body).encode(), kube_stack)
    assert response.status_code == 200, response.text
    review_answer: dict[str, Any] = response.json()
    assert review_answer["apiVersion"] == "admission.k8s.io/v1"
    assert review_answer["kind"] == "AdmissionReview"
    assert review_answer["response"]["uid"] == body["request"]["uid"]
    result: dict[str, Any] = review_answer["response"]
    return result


def prod_with_gate(
    custom: client.CustomObjectsApi, gates: KubeGates, namespace: str, allowed: list[str] | None
) -> dict[str, Any]:
    """`prod` (`After staging`, Rollout myapp) stored, its gate made by stagegate and opened to `allowed`."""
    env = create_environment(custom, environment(namespace, "prod"))
    ensure_gates(Environment.from_raw(env), gates, fresh=True)
    if allowed != []:
        custom.patch_namespaced_custom_object(
            *GATE_ARGS, namespace, "rolloutgates", "prod-stagegate", {"spec": {"allowedVersions": allowed}}
        )
    return env


def oci(namespace: str, tag: str | None, rollout_name: str = "myapp") -> dict[str, Any]:
    return oci_repository(namespace=namespace, rollout=rollout_name, tag=tag)


def create_rollout(custom: client.CustomObjectsApi, namespace: str, **overrides: str) -> dict[str, Any]:
    body = rollout(namespace=namespace, **overrides)
    del body["metadata"]["uid"]
    result: dict[str, Any] = custom.create_namespaced_custom_object(*GATE_ARGS, namespace, "rollouts", body)
    return result


# --- the deploy guard ----------------------------------------------------------------------------


def test_a_tag_the_gate_allows_runs_and_one_it_does_not_is_refused(
    url, kube_stack, namespace, custom, gates
) -> None:
    prod_with_gate(custom, gates, namespace, ["v1"])
    allowed = answer(url, kube_stack, oci(namespace, "v1"), oci(namespace, "v0"))
    assert allowed["allowed"] is True
    assert "warnings" not in allowed
    refused = answer(url, kube_stack, oci(namespace, "v2"), oci(namespace, "v0"))
    assert refused["allowed"] is False
    assert refused["status"]["code"] == 403
    assert refused["status"]["message"] == (
        f"OCIRepository {namespace}/web may not run v2 for Rollout myapp (spec.ref.tag): RolloutGate "
        "prod-stagegate of Environment prod does not allow it (it allows only versions baked in staging: "
        "v1); to deploy it anyway set spec.wantedVersion, or the annotation "
        "rollout.kuberik.com/force-deploy or rollout.kuberik.com/bypass-gates, on Rollout myapp to v2"
    )


def test_a_kustomization_substitute_is_guarded_the_same_way(
    url, kube_stack, namespace, custom, gates
) -> None:
    prod_with_gate(custom, gates, namespace, ["v1"])
    old = kustomization(namespace=namespace, substitute={"version": "v0"})
    for tag, verdict in (("v1", True), ("v2", False)):
        new = kustomization(namespace=namespace, substitute={"version": tag})
        assert answer(url, kube_stack, new, old)["allowed"] is verdict
    # a Kustomization created with the version in it is a deploy too (bootstrap)
    assert (
        answer(url, kube_stack, kustomization(namespace=namespace, substitute={"version": "v2"}))["allowed"]
        is False
    )
    assert answer(url, kube_stack, kustomization(namespace=namespace))["allowed"] is True


@pytest.mark.parametrize(
    ("allowed", "passing", "reason"),
    [
        ([], True, "allows only versions baked in staging: none yet"),
        (["v1"], False, "is not passing"),
    ],
)
def test_a_closed_or_failing_gate_refuses(
    allowed, passing, reason, url, kube_stack, namespace, custom, gates
) -> None:
    prod_with_gate(custom, gates, namespace, allowed)
    custom.patch_namespaced_custom_object(
        *GATE_ARGS, namespace, "rolloutgates", "prod-stagegate", {"spec": {"passing": passing}}
    )
    refused = answer(url, kube_stack, oci(namespace, "v1"))
    assert refused["allowed"] is False
    assert reason in refused["status"]["message"]


def test_a_governed_rollout_without_a_gate_is_refused(url, kube_stack, namespace, custom) -> None:
    create_environment(custom, environment(namespace, "prod"))
    refused = answer(url, kube_stack, oci(namespace, "v1"), oci(namespace, "v0"))
    assert refused["allowed"] is False
    assert "follows staging but has no RolloutGate for Rollout myapp yet" in refused["status"]["message"]


def test_an_unchanged_tag_and_a_rollout_without_relationship_are_allowed(
    url, kube_stack, namespace, custom, gates
) -> None:
    prod_with_gate(custom, gates, namespace, [])
    assert answer(url, kube_stack, oci(namespace, "v0"), oci(namespace, "v0"))["allowed"] is True
    staging = create_environment(custom, environment(namespace, "staging", upstream=None, rollout="web"))
    ensure_gates(Environment.from_raw(staging), gates, fresh=True)
    assert answer(url, kube_stack, oci(namespace, "anything", "web"), oci(namespace, "v0", "web"))["allowed"]


@pytest.mark.parametrize(
    "override",
    [
        {"wanted_version": "v2"},
        {"force_deploy": "v2"},
        {"bypass_gates": "v2"},
    ],
    ids=["wantedVersion", "force-deploy", "bypass-gates"],
)
def test_a_human_override_runs_with_a_warning_a_log_line_and_an_event(
    override, url, kube_stack, procs, namespace, custom, gates
) -> None:
    prod_with_gate(custom, gates, namespace, ["v1"])
    created = create_rollout(custom, namespace, **override)
    result = answer(url, kube_stack, oci(namespace, "v2"), oci(namespace, "v1"), user="alice@example.com")
    assert result["allowed"] is True
    [warning] = result["warnings"]
    assert warning.startswith("stagegate: Rollout myapp runs v2 by human override")
    core = client.CoreV1Api(kube_stack.api_client())
    [event] = core.list_namespaced_event(namespace).items
    assert (event.reason, event.type, event.involved_object.kind, event.involved_object.name) == (
        "DeployOverride",
        "Warning",
        "Rollout",
        "myapp",
    )
    assert event.involved_object.uid == created["metadata"]["uid"]
    assert "alice@example.com" in event.message
    log = (procs.log_dir / "function-k8s_admission.log").read_text()
    assert f"DeployOverride on Rollout {namespace}/myapp" in log


def test_a_dry_run_with_an_override_records_no_event(url, kube_stack, namespace, custom, gates) -> None:
    prod_with_gate(custom, gates, namespace, [])
    create_rollout(custom, namespace, wanted_version="v2")
    result = answer(url, kube_stack, oci(namespace, "v2"), oci(namespace, "v1"), dry_run=True)
    assert result["allowed"] is True
    assert result["warnings"]
    assert client.CoreV1Api(kube_stack.api_client()).list_namespaced_event(namespace).items == []


def test_an_ungoverned_rollout_waits_for_its_environment_where_the_namespace_opted_in(
    url, kube_stack, namespace, custom, gates
) -> None:
    assert answer(url, kube_stack, oci(namespace, "v1"))["allowed"] is True  # not opted in
    client.CoreV1Api(kube_stack.api_client()).patch_namespace(namespace, {"metadata": {"labels": LABEL}})
    refused = answer(url, kube_stack, oci(namespace, "v1"))
    assert refused["allowed"] is False
    assert "no Environment governs Rollout myapp yet" in refused["status"]["message"]
    prod_with_gate(custom, gates, namespace, ["v1"])
    assert answer(url, kube_stack, oci(namespace, "v1"))["allowed"] is True


# --- the gate at admission -----------------------------------------------------------------------


def test_an_environment_create_makes_its_gate_with_the_new_uid(url, kube_stack, namespace, custom) -> None:
    env = stored(environment(namespace, "prod"))
    result = answer(url, kube_stack, env)
    assert result == {"uid": result["uid"], "allowed": True}
    gate = get_gate(custom, namespace, "prod-stagegate")
    assert gate["spec"]["allowedVersions"] == []
    # Not an owner yet (the garbage collector would delete the gate before the Environment is stored).
    assert gate["metadata"]["annotations"][PENDING_OWNER_ANNOTATION] == env["metadata"]["uid"]
    assert "ownerReferences" not in gate["metadata"]


def test_a_dry_run_environment_create_writes_nothing(url, kube_stack, namespace, custom) -> None:
    assert answer(url, kube_stack, stored(environment(namespace, "prod")), dry_run=True)["allowed"] is True
    assert list_gates(custom, namespace) == []


def test_a_duplicate_name_create_leaves_the_existing_gate_alone(
    url, kube_stack, namespace, custom, gates
) -> None:
    prod_with_gate(custom, gates, namespace, ["v1"])
    before = get_gate(custom, namespace, "prod-stagegate")
    duplicate = stored(environment(namespace, "prod", upstream=None))
    assert answer(url, kube_stack, duplicate)["allowed"] is True
    assert list_gates(custom, namespace) == [before]


def test_an_update_that_would_relax_is_allowed_and_left_to_the_stored_object(
    url, kube_stack, namespace, custom, gates
) -> None:
    env = prod_with_gate(custom, gates, namespace, [])
    before = get_gate(custom, namespace, "prod-stagegate")
    relaxed = json.loads(json.dumps(env))
    del relaxed["spec"]["relationship"]
    result = answer(url, kube_stack, relaxed, env)
    assert result["allowed"] is True
    assert "keeps its restriction" in result["warnings"][0]
    assert get_gate(custom, namespace, "prod-stagegate") == before


# --- failures ------------------------------------------------------------------------------------


@pytest.fixture
def flaky(tmp_path: Path, kube_stack: devstack.KubeStack) -> Iterator[tuple[FlakyProxy, Path]]:
    """A kubeconfig (the ServiceAccount's token) through a proxy that can cut the Kubernetes API off."""
    proxy = FlakyProxy(kube_stack.port)
    token = yaml.safe_load(kube_stack.function_kubeconfig.read_text())["users"][0]["user"]["token"]
    yield (
        proxy,
        devstack.write_kubeconfig(
            tmp_path / "flaky", f"https://127.0.0.1:{proxy.port}", kube_stack.tls.ca_file, token
        ),
    )
    proxy.close()


def test_a_hanging_kubernetes_api_refuses_the_deploy_within_the_deadline(
    kube_stack, procs, black_hole, namespace
) -> None:
    url = serve(kube_stack, procs, KUBECONFIG=str(black_hole), ADMISSION_DEADLINE_SECONDS="1")
    started = time.monotonic()
    refused = answer(url, kube_stack, oci(namespace, "v1"), oci(namespace, "v0"))
    elapsed = time.monotonic() - started
    assert refused["allowed"] is False
    assert "Kubernetes did not answer within 1s" in refused["status"]["message"]
    assert elapsed < 3, f"answered after {elapsed:.1f}s; the deadline is 1s"
    # the Environment webhook never refuses: the same outage is a warning there
    started = time.monotonic()
    allowed = answer(url, kube_stack, stored(environment(namespace, "prod")))
    assert time.monotonic() - started < 3
    assert allowed["allowed"] is True
    assert "could not make the gate" in allowed["warnings"][0]


def test_a_failing_kubernetes_api_refuses_until_it_recovers(
    kube_stack, procs, flaky, namespace, custom, gates
) -> None:
    proxy, kubeconfig = flaky
    prod_with_gate(custom, gates, namespace, ["v1"])
    url = serve(kube_stack, procs, KUBECONFIG=str(kubeconfig))
    started = time.monotonic()
    refused = answer(url, kube_stack, oci(namespace, "v1"), oci(namespace, "v0"))
    assert time.monotonic() - started < 3
    assert refused["allowed"] is False
    assert refused["status"]["message"].startswith(f"stagegate could not check whether {namespace}/web")
    assert proxy.refused > 0
    proxy.up.set()
    assert answer(url, kube_stack, oci(namespace, "v1"), oci(namespace, "v0"))["allowed"] is True


# --- bad input and configuration -----------------------------------------------------------------


BAD_BODIES = {
    "not JSON": (b"{nope", 400, "not JSON"),
    "v1beta1 review": (
        json.dumps({**review(oci_repository(tag="v1")), "apiVersion": "admission.k8s.io/v1beta1"}).encode(),
        400,
        "apiVersion",
    ),
    "no request uid": (
        json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}).encode(),
        400,
        "request.uid",
    ),
    "5 MB body": (b"{" + b" " * (5 * 1024 * 1024) + b"}", 413, "limit"),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_a_malformed_review_gets_a_4xx_with_the_reason(case, url, kube_stack, namespace, custom) -> None:
    body, status, reason = BAD_BODIES[case]
    response = post(url, body, kube_stack)
    assert response.status_code == status
    assert reason in response.json()["error"]
    assert list_gates(custom, namespace) == []


def test_an_environment_review_that_is_not_an_object_is_refused_as_malformed(
    url, kube_stack, namespace, custom
) -> None:
    body = review(stored(environment(namespace, "prod")))
    body["request"]["object"] = "prod"
    response = post(url, json.dumps(body).encode(), kube_stack)
    assert response.status_code == 400
    assert list_gates(custom, namespace) == []


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ADMISSION_DEADLINE_SECONDS", "soon"),
        ("ADMISSION_MAX_BODY_BYTES", "-1"),
        ("ADMISSION_GUARD_LABEL", "no equals sign"),
        ("KUBECONFIG", "/nonexistent/kubeconfig"),
    ],
)
def test_bad_configuration_stops_the_function_at_start_naming_the_variable(
    variable, value, kube_stack, procs
) -> None:
    with pytest.raises(RuntimeError, match="exited"):
        serve(kube_stack, procs, **{variable: value})
    assert variable in (procs.log_dir / "function-k8s_admission.log").read_text()


def test_an_unknown_uid_shape_is_still_echoed(url, kube_stack, namespace) -> None:
    body = review(oci(namespace, "v1"))
    body["request"]["uid"] = f"not-a-uuid-{uuid.uuid4().hex}"
    response = post(url, json.dumps(body).encode(), kube_stack)
    assert response.json()["response"]["uid"] == body["request"]["uid"]


# --- metrics ---------------------------------------------------------------------------------------


def test_the_metrics_port_counts_decisions_gate_changes_and_answers(
    kube_stack, procs, namespace, custom, gates
) -> None:
    """What `curl` on the in-cluster container's metrics port shows, on a served k8s_admission."""
    port = devstack.free_port()
    served = serve(kube_stack, procs, METRICS_PORT=str(port))
    prod_with_gate(custom, gates, namespace, ["v1"])
    assert answer(served, kube_stack, oci(namespace, "v1"), oci(namespace, "v0"))["allowed"] is True
    assert answer(served, kube_stack, oci(namespace, "v2"), oci(namespace, "v0"))["allowed"] is False
    assert answer(served, kube_stack, stored(environment(namespace, "qa")))["allowed"] is True
    assert post(served, b"not a review", kube_stack).status_code == 400
    seen = scrape(port)
    assert seen['stagegate_admission_decisions_total{outcome="allowed",webhook="deploy"}'] == 1, seen
    assert seen['stagegate_admission_decisions_total{outcome="refused",webhook="deploy"}'] == 1, seen
    assert seen['stagegate_admission_decisions_total{outcome="allowed",webhook="environment"}'] == 1, seen
    assert seen['stagegate_gate_changes_total{change="created"}'] == 1, seen  # qa's gate, at admission
    assert seen['stagegate_deliveries_total{code="200",function="k8s_admission"}'] == 3, seen
    assert seen['stagegate_deliveries_total{code="400",function="k8s_admission"}'] == 1, seen
