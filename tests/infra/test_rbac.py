"""The functions' Kubernetes identity (`infra/k8s/rbac.yaml`) on a real kube-apiserver.

The ServiceAccount's token comes from the TokenRequest API, and every function path runs with it
through `KubeGates`: what the functions do must be allowed, and what they never do must be refused
with 403, so a broader role cannot slip in unnoticed. The reporter's per-Rollout Lease is exercised
with the same token through the plain Kubernetes client (create with an owner reference to the
Rollout, get, update). Runs for both CRD sets.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from shared.errors import PermanentError
from shared.gate import fallback_gate_name, gate_name
from shared.views import Environment
from stagegate.kube import ENVIRONMENTS, ROLLOUTS, KubeConflict, KubeGates, api_client
from stagegate.leader import Leadership
from stagegate.reconcile import ensure_gates
from stagegate_dev import devstack
from tests.kube_objects import (
    ENV_ARGS,
    GATE_ARGS,
    create_environment,
    create_gate,
    environment,
    get_gate,
    list_gates,
    owner_ref,
)

ACCOUNT = "system:serviceaccount:stagegate-system:stagegate"


@pytest.fixture(scope="module")
def sa_kubeconfig(kube_stack: devstack.KubeStack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kube_stack.service_account_kubeconfig(tmp_path_factory.mktemp("sa") / "kubeconfig")


@pytest.fixture
def sa_client(sa_kubeconfig: Path) -> client.ApiClient:
    """The official client with the ServiceAccount's token, for what the functions never call."""
    return config.new_client_from_config(config_file=str(sa_kubeconfig))


@pytest.fixture
def sa_gates(sa_kubeconfig: Path) -> KubeGates:
    return KubeGates(api_client(str(sa_kubeconfig)), timeout=10)


def rollout(custom: client.CustomObjectsApi, namespace: str, name: str = "myapp") -> dict[str, Any]:
    body = {"apiVersion": "kuberik.com/v1alpha1", "kind": "Rollout", "metadata": {"name": name}}
    result: dict[str, Any] = custom.create_namespaced_custom_object(*GATE_ARGS, namespace, "rollouts", body)
    return result


def report_lease(owner: dict[str, Any], holder: str = "reporter-1") -> dict[str, Any]:
    """The reporter's Lease for a Rollout: `stagegate-report-<rollout>`, owned by the Rollout."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": f"stagegate-report-{owner['metadata']['name']}",
            "ownerReferences": [
                {
                    "apiVersion": owner["apiVersion"],
                    "kind": owner["kind"],
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                }
            ],
        },
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 120,
            "acquireTime": "2026-01-01T00:00:00.000000Z",
            "renewTime": "2026-01-01T00:00:00.000000Z",
        },
    }


# --- allowed: every path the functions take -------------------------------------------------------


def test_token_authenticates_as_the_service_account(sa_client: client.ApiClient) -> None:
    review = client.AuthorizationV1Api(sa_client).create_self_subject_access_review(
        {
            "spec": {
                "resourceAttributes": {"group": "kuberik.com", "resource": "rolloutgates", "verb": "create"}
            }
        }
    )
    assert review.status.allowed is True
    with pytest.raises(ApiException) as refused:
        client.CoreV1Api(sa_client).list_namespace()
    assert refused.value.status == 403
    assert ACCOUNT in refused.value.body


def test_new_environment_gets_its_blocking_gate(
    namespace: str, sa_gates: KubeGates, custom: client.CustomObjectsApi
) -> None:
    env = create_environment(custom, environment(namespace, "prod"))
    outcomes = ensure_gates(Environment.from_raw(env), sa_gates, fresh=True)
    assert [(o.gate, o.action) for o in outcomes] == [("prod-stagegate", "create")]
    gate = get_gate(custom, namespace, "prod-stagegate")
    assert gate["spec"]["allowedVersions"] == []
    assert gate["metadata"]["ownerReferences"][0]["uid"] == env["metadata"]["uid"]


def test_gate_owned_by_the_environment_is_adopted(
    namespace: str, sa_gates: KubeGates, custom: client.CustomObjectsApi
) -> None:
    env = create_environment(custom, environment(namespace, "prod"))
    create_gate(custom, namespace, "ghd-x7k2p", owner=owner_ref(env), allowed=None)
    outcomes = ensure_gates(Environment.from_raw(env), sa_gates, fresh=False)
    assert [(o.gate, o.action) for o in outcomes] == [("ghd-x7k2p", "update")]
    [gate] = list_gates(custom, namespace)
    assert gate["spec"]["allowedVersions"] == []
    assert gate["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "stagegate"


def test_refusal_records_an_event_and_makes_the_fallback_gate(
    namespace: str, sa_gates: KubeGates, custom: client.CustomObjectsApi, kube_stack: devstack.KubeStack
) -> None:
    create_gate(custom, namespace, gate_name("prod"), allowed=["hand-picked"])
    raw = create_environment(custom, environment(namespace, "prod"))
    env = Environment.from_raw(raw)
    outcomes = ensure_gates(env, sa_gates, fresh=False)
    assert [(o.gate, o.action) for o in outcomes] == [
        ("prod-stagegate", "refuse"),
        (fallback_gate_name(env), "create"),
    ]
    # The refusal swallows a failed Event write (it only logs), so look for the Event itself.
    events = client.CoreV1Api(kube_stack.api_client()).list_namespaced_event(namespace).items
    assert [(e.reason, e.involved_object.name, e.type) for e in events] == [
        ("GateOwnedByOther", "prod", "Warning")
    ]
    assert get_gate(custom, namespace, "prod-stagegate")["spec"]["allowedVersions"] == ["hand-picked"]


def test_environments_are_read_by_name_and_listed(
    namespace: str, sa_gates: KubeGates, custom: client.CustomObjectsApi
) -> None:
    create_environment(custom, environment(namespace, "prod"))
    env = sa_gates.get_environment(namespace, "prod")
    assert env is not None
    assert env.key == f"{namespace}/prod"
    assert sa_gates.get_environment(namespace, "missing") is None  # 404, not 403
    assert f"{namespace}/prod" in {e.key for e in sa_gates.list_environments()}
    assert [e.key for e in sa_gates.list_environments([namespace])] == [f"{namespace}/prod"]


def test_an_environment_status_is_written_and_nothing_else_of_it(
    namespace: str, sa_gates: KubeGates, custom: client.CustomObjectsApi
) -> None:
    create_environment(custom, environment(namespace, "prod"))
    raw = sa_gates.get_environment_object(namespace, "prod")
    assert raw is not None
    sa_gates.replace_environment_status(raw, {"currentVersion": "abc1234"})
    stored = custom.get_namespaced_custom_object(*ENV_ARGS, namespace, "environments", "prod")
    assert stored["status"] == {"currentVersion": "abc1234"}
    assert stored["spec"] == raw["spec"]
    with pytest.raises(KubeConflict):  # written against the resourceVersion it was read at, not blindly
        sa_gates.replace_environment_status(raw, {"currentVersion": "def5678"})


def test_rollout_is_read(namespace: str, sa_gates: KubeGates, custom: client.CustomObjectsApi) -> None:
    rollout(custom, namespace)
    raw = sa_gates.get_rollout(namespace, "myapp")
    assert raw is not None
    assert raw["metadata"]["name"] == "myapp"
    assert sa_gates.get_rollout(namespace, "missing") is None


def test_the_follower_lists_and_watches_rollouts_and_environments_and_holds_its_lease(
    namespace: str, sa_gates: KubeGates, custom: client.CustomObjectsApi
) -> None:
    rollout(custom, namespace)
    listed, rollouts_at = sa_gates.list_objects(ROLLOUTS, namespace)
    assert [o["metadata"]["name"] for o in listed] == ["myapp"]
    environments_at = sa_gates.list_objects(ENVIRONMENTS, None)[1]  # cluster-wide
    rollout(custom, namespace, "later")
    create_environment(custom, environment(namespace, "prod"))
    seen = [
        (event["type"], event["object"]["metadata"].get("name"))
        for kind, version in ((ROLLOUTS, rollouts_at), (ENVIRONMENTS, environments_at))
        for event in sa_gates.watch(kind, namespace, version, 1)
    ]
    assert ("ADDED", "later") in seen
    assert ("ADDED", "prod") in seen
    leadership = Leadership(sa_gates, namespace, "replica-1")
    assert leadership.step({})  # create
    assert leadership.step({"rollouts": rollouts_at})  # get and update
    leadership.release({})


def test_reporter_lease_is_created_read_and_updated(
    namespace: str,
    sa_client: client.ApiClient,
    custom: client.CustomObjectsApi,
    kube_stack: devstack.KubeStack,
) -> None:
    owner = rollout(custom, namespace)
    leases = client.CoordinationV1Api(sa_client)
    created = leases.create_namespaced_lease(namespace, report_lease(owner))
    name = created.metadata.name
    assert name == "stagegate-report-myapp"
    read = leases.read_namespaced_lease(name, namespace)
    assert read.spec.holder_identity == "reporter-1"
    with pytest.raises(ApiException) as missing:
        leases.read_namespaced_lease("stagegate-report-missing", namespace)
    assert missing.value.status == 404  # not 403

    # released (and taken again) by a conditional update, never deleted
    released = report_lease(owner, holder="")
    released["metadata"]["resourceVersion"] = read.metadata.resource_version
    leases.replace_namespaced_lease(name, namespace, released)
    stale = report_lease(owner, holder="reporter-2")
    stale["metadata"]["resourceVersion"] = read.metadata.resource_version
    with pytest.raises(ApiException) as conflict:
        leases.replace_namespaced_lease(name, namespace, stale)
    assert conflict.value.status == 409

    stored = client.CoordinationV1Api(kube_stack.api_client()).read_namespaced_lease(name, namespace)
    assert stored.spec.holder_identity in (None, "")
    [reference] = stored.metadata.owner_references
    assert (reference.kind, reference.name, reference.uid) == ("Rollout", "myapp", owner["metadata"]["uid"])


def test_reporter_takes_and_releases_the_lease_through_kube_gates(
    namespace: str, sa_gates: KubeGates, custom: client.CustomObjectsApi
) -> None:
    owner = rollout(custom, namespace)
    now = datetime.datetime.now(datetime.UTC)
    lease = sa_gates.acquire_lease(owner, "reporter-1", 120, now)
    assert lease is not None
    assert sa_gates.acquire_lease(owner, "reporter-2", 120, now) is None  # held: read, not taken
    sa_gates.release_lease(lease)
    assert sa_gates.acquire_lease(owner, "reporter-2", 120, now) is not None  # released: updated


# --- refused: everything the functions never do ---------------------------------------------------

Attempt = Callable[[client.CustomObjectsApi, client.CoreV1Api, str], Any]

REFUSED: dict[str, Attempt] = {
    "get secret": lambda _, core, ns: core.read_namespaced_secret("app-secret", ns),
    "list secrets": lambda _, core, ns: core.list_namespaced_secret(ns),
    "list secrets cluster-wide": lambda _, core, ns: core.list_secret_for_all_namespaces(),
    "delete environment": lambda custom, _, ns: custom.delete_namespaced_custom_object(
        *ENV_ARGS, ns, "environments", "prod"
    ),
    "delete rolloutgate": lambda custom, _, ns: custom.delete_namespaced_custom_object(
        *GATE_ARGS, ns, "rolloutgates", "prod-stagegate"
    ),
    "create environment": lambda custom, _, ns: custom.create_namespaced_custom_object(
        *ENV_ARGS, ns, "environments", environment(ns, "intruder")
    ),
    "update environment spec": lambda custom, _, ns: custom.patch_namespaced_custom_object(
        *ENV_ARGS, ns, "environments", "prod", {"spec": {"relationship": None}}
    ),
    "patch environment status": lambda custom, _, ns: custom.patch_namespaced_custom_object_status(
        *ENV_ARGS, ns, "environments", "prod", {"status": {"currentVersion": "x"}}
    ),
    "patch rollout": lambda custom, _, ns: custom.patch_namespaced_custom_object(
        *GATE_ARGS, ns, "rollouts", "myapp", {"metadata": {"labels": {"x": "y"}}}
    ),
    "patch rollout status": lambda custom, _, ns: custom.patch_namespaced_custom_object_status(
        *GATE_ARGS, ns, "rollouts", "myapp", {"status": {"releaseCandidates": [{"tag": "evil"}]}}
    ),
    "list pods": lambda _, core, ns: core.list_namespaced_pod(ns),
    "list pods cluster-wide": lambda _, core, ns: core.list_pod_for_all_namespaces(),
    "delete lease": lambda _, core, ns: client.CoordinationV1Api(core.api_client).delete_namespaced_lease(
        "stagegate-report-myapp", ns
    ),
    "list leases": lambda _, core, ns: client.CoordinationV1Api(core.api_client).list_namespaced_lease(ns),
    "watch leases": lambda _, core, ns: client.CoordinationV1Api(core.api_client).list_namespaced_lease(
        ns, watch=True, timeout_seconds=1
    ),
    "list leases cluster-wide": lambda _, core, ns: client.CoordinationV1Api(
        core.api_client
    ).list_lease_for_all_namespaces(),
}


@pytest.mark.parametrize("attempt", REFUSED.values(), ids=REFUSED.keys())
def test_service_account_is_refused(
    attempt: Attempt,
    namespace: str,
    sa_client: client.ApiClient,
    custom: client.CustomObjectsApi,
    kube_stack: devstack.KubeStack,
) -> None:
    admin_core = client.CoreV1Api(kube_stack.api_client())
    admin_core.create_namespaced_secret(namespace, {"metadata": {"name": "app-secret"}, "data": {}})
    env = create_environment(custom, environment(namespace, "prod"))
    create_gate(custom, namespace, "prod-stagegate", owner=owner_ref(env), allowed=[])
    owner = rollout(custom, namespace)
    admin_leases = client.CoordinationV1Api(kube_stack.api_client())
    admin_leases.create_namespaced_lease(namespace, report_lease(owner))

    with pytest.raises(ApiException) as refused:
        attempt(client.CustomObjectsApi(sa_client), client.CoreV1Api(sa_client), namespace)
    assert refused.value.status == 403
    assert ACCOUNT in refused.value.body

    # and nothing changed
    assert [
        i["metadata"]["name"]
        for i in custom.list_namespaced_custom_object(*ENV_ARGS, namespace, "environments")["items"]
    ] == ["prod"]
    assert [g["metadata"]["name"] for g in list_gates(custom, namespace)] == ["prod-stagegate"]
    assert (
        "labels"
        not in custom.get_namespaced_custom_object(*GATE_ARGS, namespace, "rollouts", "myapp")["metadata"]
    )
    assert [item.metadata.name for item in admin_leases.list_namespaced_lease(namespace).items] == [
        "stagegate-report-myapp"
    ]


# --- the manifest itself --------------------------------------------------------------------------


def manifest() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(devstack.RBAC.read_text()) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs), "one document of each kind"
    return by_kind


def test_cluster_role_is_least_privilege() -> None:
    rules = manifest()["ClusterRole"]["rules"]
    forbidden_verbs = {"delete", "deletecollection", "escalate", "bind", "impersonate", "*"}
    for rule in rules:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], f"wildcard in {key}: {rule}"
        assert "secrets" not in rule["resources"]
        assert not forbidden_verbs & set(rule["verbs"]), rule
        assert "nonResourceURLs" not in rule
        assert "resourceNames" not in rule
    granted = {
        (g, r, tuple(sorted(rule["verbs"])))
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert granted == {
        ("kuberik.com", "rolloutgates", ("create", "list", "patch")),
        ("environments.kuberik.com", "environments", ("get", "list", "watch")),
        ("environments.kuberik.com", "environments/finalizers", ("update",)),
        ("environments.kuberik.com", "environments/status", ("update",)),
        ("kuberik.com", "rollouts", ("get", "list", "watch")),
        ("", "events", ("create", "get", "patch")),
        ("coordination.k8s.io", "leases", ("create", "get", "update")),
    }


def test_binding_gives_the_role_to_the_service_account_only() -> None:
    docs = manifest()
    account = docs["ServiceAccount"]["metadata"]
    assert (account["namespace"], account["name"]) == ("stagegate-system", "stagegate")
    assert docs["Namespace"]["metadata"]["name"] == "stagegate-system"
    binding = docs["ClusterRoleBinding"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": docs["ClusterRole"]["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "stagegate", "namespace": "stagegate-system"}
    ]


# --- bound per namespace (STAGEGATE_NAMESPACES) ----------------------------------------------------


def test_role_bound_per_namespace_reaches_that_namespace_only(
    kube_stack: devstack.KubeStack,
    namespace: str,
    custom: client.CustomObjectsApi,
    tmp_path: Path,
) -> None:
    kube_stack.apply_rbac()  # the ClusterRole; this test binds it for a ServiceAccount of its own
    account = f"stagegate-ns-{namespace}"
    admin = kube_stack.api_client()
    client.CoreV1Api(admin).create_namespaced_service_account(
        "stagegate-system", {"metadata": {"name": account}}
    )
    [binding] = [
        d for d in yaml.safe_load_all((devstack.RBAC.parent / "rbac-namespaced.yaml").read_text()) if d
    ]
    binding["metadata"]["namespace"] = namespace
    binding["subjects"][0]["name"] = account
    client.RbacAuthorizationV1Api(admin).create_namespaced_role_binding(namespace, binding)
    other = f"{namespace}-other"
    client.CoreV1Api(admin).create_namespace({"metadata": {"name": other}})
    try:
        scoped_kubeconfig = str(
            kube_stack.service_account_kubeconfig(tmp_path / "kc", name=account, bound_in=namespace)
        )
        scoped = KubeGates(api_client(scoped_kubeconfig), timeout=10)
        scoped_client = config.new_client_from_config(config_file=scoped_kubeconfig)
        env = create_environment(custom, environment(namespace, "prod"))
        assert [e.name for e in scoped.list_environments([namespace])] == ["prod"]
        ensure_gates(Environment.from_raw(env), scoped, fresh=True)
        assert get_gate(custom, namespace, gate_name("prod"))["spec"]["allowedVersions"] == []
        for outside in (lambda: scoped.list_environments([other]), scoped.list_environments):
            with pytest.raises(PermanentError, match=r"403|[Ff]orbidden|refused"):
                outside()
        # The reporter's Lease: in the bound namespace (next to its Rollout), not elsewhere.
        leases = client.CoordinationV1Api(scoped_client)
        lease = leases.create_namespaced_lease(namespace, report_lease(rollout(custom, namespace)))
        assert (
            leases.read_namespaced_lease(lease.metadata.name, namespace).spec.holder_identity == "reporter-1"
        )
        owner = rollout(custom, other)
        with pytest.raises(ApiException) as refused:
            leases.create_namespaced_lease(other, report_lease(owner))
        assert refused.value.status == 403
    finally:
        client.CoreV1Api(admin).delete_namespace(other)
        client.CoreV1Api(admin).delete_namespaced_service_account(account, "stagegate-system")
