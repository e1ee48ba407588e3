"""`infra/k8s/admission.yaml`, `admission-rbac.yaml` and the Dockerfile, checked against the code.

The webhooks must register exactly what `k8s_admission` routes (`shared.admission.ROUTES`), in the
versions the real Flux CRDs serve, main resources only; the deploy guard fails closed and only in
opted-in namespaces (the label the function reads by default); the namespace guard fails closed and
sees the label go (an objectSelector on it); the Environment webhook never blocks. The
Deployment must serve the function that exists, with settings the code reads and accepts, behind the
Service and certificate the webhooks name. Finally the kube-apiserver itself validates the objects it
can (server-side dry run).
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from shared.admission import ROUTES, SERVED_VERSIONS
from stagegate.settings import Settings
from stagegate_dev import devstack

K8S = devstack.ROOT / "infra" / "k8s"
MANIFEST = K8S / "admission.yaml"
ADMISSION_RBAC = K8S / "admission-rbac.yaml"
DOCKERFILE = K8S / "Dockerfile"
GUARD = "deploy-guard.stagegate.kuberik.com"
ENVIRONMENT_GATE = "environment-gate.stagegate.kuberik.com"
NAMESPACE_GUARD = "namespace-guard.stagegate.kuberik.com"
FLUX_CRDS = devstack.KUBERIK_CRDS / "flux"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def one(kind: str, name: str | None = None, path: Path = MANIFEST) -> dict[str, Any]:
    [doc] = [d for d in documents(path) if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    return doc


def webhooks() -> dict[str, dict[str, Any]]:
    return {w["name"]: w for w in one("ValidatingWebhookConfiguration")["webhooks"]}


def registered(webhook: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, operation)
        for rule in webhook["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for operation in rule["operations"]
    }


def container() -> dict[str, Any]:
    [only] = one("Deployment")["spec"]["template"]["spec"]["containers"]
    return only


def container_env() -> dict[str, str]:
    return {e["name"]: e["value"] for e in container().get("env", [])}


def flag(args: list[str], name: str) -> str:
    [value] = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    return value


# --- the webhooks match what the function serves -------------------------------------------------


def test_there_are_exactly_the_three_webhooks() -> None:
    assert set(webhooks()) == {GUARD, ENVIRONMENT_GATE, NAMESPACE_GUARD}


def test_the_webhooks_register_exactly_the_routes_the_function_serves() -> None:
    hooks = webhooks()
    assert set().union(*(registered(hook) for hook in hooks.values())) == set(ROUTES)
    assert {ROUTES[key] for key in registered(hooks[GUARD])} == {"deploy"}
    assert {ROUTES[key] for key in registered(hooks[ENVIRONMENT_GATE])} == {"environment"}
    assert {ROUTES[key] for key in registered(hooks[NAMESPACE_GUARD])} == {"namespace"}


@pytest.mark.parametrize("name", [GUARD, ENVIRONMENT_GATE, NAMESPACE_GUARD])
def test_each_rule_names_main_resources_in_the_versions_the_function_knows(name: str) -> None:
    for rule in webhooks()[name]["rules"]:
        assert rule["scope"] == ("Cluster" if rule["resources"] == ["namespaces"] else "Namespaced")
        for key in ("apiGroups", "apiVersions", "resources", "operations"):
            assert "*" not in rule[key], rule
        for resource in rule["resources"]:
            assert "/" not in resource, f"{resource}: only main resources, no subresources such as /status"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert set(rule["apiVersions"]) == SERVED_VERSIONS[(group, resource)]


@pytest.mark.skipif(not FLUX_CRDS.is_dir(), reason=f"reference Flux CRDs not found at {FLUX_CRDS}")
def test_the_guard_covers_every_version_the_real_flux_crds_serve() -> None:
    served = {}
    for path in FLUX_CRDS.glob("*.yaml"):
        for crd in documents(path):
            key = (crd["spec"]["group"], crd["spec"]["names"]["plural"])
            served[key] = {v["name"] for v in crd["spec"]["versions"] if v.get("served")}
    guarded = {
        (group, resource): set(rule["apiVersions"])
        for rule in webhooks()[GUARD]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert guarded == served


def test_all_speak_admission_v1_and_answer_in_less_time_than_the_apiserver_waits() -> None:
    deadline = float(container_env().get("ADMISSION_DEADLINE_SECONDS", Settings.admission_deadline_seconds))
    for webhook in webhooks().values():
        assert webhook["admissionReviewVersions"] == ["v1"]
        assert webhook["matchPolicy"] == "Equivalent"
        assert deadline + 1 <= webhook["timeoutSeconds"] <= 10


def test_the_guard_fails_closed_in_opted_in_namespaces_only() -> None:
    guard = webhooks()[GUARD]
    assert guard["failurePolicy"] == "Fail"
    # Events for human overrides are its only side effect, and none is written for a dry run.
    assert guard["sideEffects"] == "NoneOnDryRun"
    key, value = Settings.from_env(container_env()).admission_guard_label
    assert guard["namespaceSelector"] == {"matchLabels": {key: value}}
    assert (key, value) == Settings.admission_guard_label


def test_the_namespace_guard_fails_closed_and_sees_the_opt_in_label_removed() -> None:
    guard = webhooks()[NAMESPACE_GUARD]
    assert guard["failurePolicy"] == "Fail"
    # GuardRemoved Events are its only side effect, and none is written for a dry run.
    assert guard["sideEffects"] == "NoneOnDryRun"
    # An objectSelector matches the old object too, so the update removing the label is seen; a
    # namespaceSelector on a Namespace update is matched against the new object only.
    key, value = Settings.from_env(container_env()).admission_guard_label
    assert guard["objectSelector"] == {"matchLabels": {key: value}}
    assert "namespaceSelector" not in guard
    assert [r["operations"] for r in guard["rules"]] == [["UPDATE"]]  # never a namespace's delete


def test_the_environment_webhook_never_blocks_and_writes_nothing_on_dry_runs() -> None:
    gate = webhooks()[ENVIRONMENT_GATE]
    assert gate["failurePolicy"] == "Ignore"
    assert gate["sideEffects"] == "NoneOnDryRun"
    assert "namespaceSelector" not in gate


# --- the webhooks reach the Deployment over TLS --------------------------------------------------


def test_the_webhooks_call_the_service_that_selects_the_deployment() -> None:
    service, deployment = one("Service"), one("Deployment")
    [port] = service["spec"]["ports"]
    for webhook in webhooks().values():
        assert webhook["clientConfig"]["service"] == {
            "name": service["metadata"]["name"],
            "namespace": service["metadata"]["namespace"],
            "path": "/",
            "port": port["port"],
        }
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [container_port, metrics] = container()["ports"]  # the webhook's, and Prometheus' (METRICS_PORT)
    assert port["targetPort"] == container_port["name"]
    env = {e["name"]: e.get("value") for e in container()["env"]}
    assert (metrics["name"], str(metrics["containerPort"])) == ("metrics", env["METRICS_PORT"])
    assert flag(container()["args"], "bind").endswith(f":{container_port['containerPort']}")


def test_the_injected_ca_signs_the_certificate_the_container_serves() -> None:
    annotation = one("ValidatingWebhookConfiguration")["metadata"]["annotations"][
        "cert-manager.io/inject-ca-from"
    ]
    namespace, name = annotation.split("/")
    serving = one("Certificate", name)
    service = one("Service")
    assert namespace == serving["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert f"{service['metadata']['name']}.{namespace}.svc" in serving["spec"]["dnsNames"]
    # serving certificate <- CA issuer <- long-lived CA certificate <- self-signed issuer
    ca_issuer = one("Issuer", serving["spec"]["issuerRef"]["name"])
    ca_certificate = next(
        c
        for c in documents(MANIFEST)
        if c["kind"] == "Certificate" and c["spec"]["secretName"] == ca_issuer["spec"]["ca"]["secretName"]
    )
    assert ca_certificate["spec"]["isCA"] is True
    assert "selfSigned" in one("Issuer", ca_certificate["spec"]["issuerRef"]["name"])["spec"]
    volumes = {v["name"]: v for v in one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container()["volumeMounts"]}
    args = container()["args"]
    for option in ("certfile", "keyfile"):
        path = Path(flag(args, option))
        assert volumes[mounts[str(path.parent)]]["secret"]["secretName"] == serving["spec"]["secretName"]


# --- the Deployment runs the function that exists, as the identity that has the permissions ------


def _target(args: list[str]) -> tuple[str, str]:
    [app] = [a for a in args if a.startswith("functions_framework:create_app(")]
    match = re.fullmatch(r'functions_framework:create_app\(target="(\w+)", source="([\w/.]+)"\)', app)
    assert match, app
    return match.group(1), match.group(2)


def test_the_container_serves_the_decorated_k8s_admission_target() -> None:
    target, source = _target(container()["args"])
    assert target == "k8s_admission"
    tree = ast.parse((devstack.ROOT / source).read_text())
    [function] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == target]
    decorators = [ast.unparse(d) for d in function.decorator_list]
    assert decorators == ["functions_framework.http"]


def test_the_image_and_the_deployment_start_the_same_app() -> None:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    [cmd] = [line for line in text.splitlines() if line.startswith("CMD ")]
    image_args = yaml.safe_load(cmd.removeprefix("CMD "))
    assert _target(image_args) == _target(container()["args"])
    assert container()["command"] == ["gunicorn"]
    assert 'ENTRYPOINT ["gunicorn"]' in text
    for copied in ("shared", "stagegate", "functions", "requirements.lock"):
        assert re.search(rf"^COPY .*\b{re.escape(copied)}\b", text, re.MULTILINE), copied


def test_the_container_sets_only_settings_the_code_reads_and_they_parse() -> None:
    settings_source = (devstack.ROOT / "stagegate" / "settings.py").read_text()
    env = container_env()
    for name in env:
        assert f'"{name}"' in settings_source, f"{name} is not read by stagegate/settings.py"
    settings = Settings.from_env(env)
    assert settings.kubeconfig is None  # in the cluster: the ServiceAccount's own token
    assert settings.admission_deadline_seconds < min(w["timeoutSeconds"] for w in webhooks().values())
    assert shlex.split(" ".join(container()["args"]))  # well-formed


def test_the_deployment_runs_as_the_service_account_of_rbac_yaml() -> None:
    account = one("ServiceAccount", path=devstack.RBAC)["metadata"]
    deployment = one("Deployment")
    assert deployment["metadata"]["namespace"] == account["namespace"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["name"]
    assert deployment["spec"]["replicas"] >= 2  # failurePolicy Fail: one pod restarting must not hold deploys
    security = container()["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False


def test_the_admission_role_adds_only_namespace_and_source_reads_for_the_same_account() -> None:
    role = one("ClusterRole", path=ADMISSION_RBAC)
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
        {"apiGroups": ["source.toolkit.fluxcd.io"], "resources": ["ocirepositories"], "verbs": ["get"]},
    ]
    binding = one("ClusterRoleBinding", path=ADMISSION_RBAC)
    account = one("ServiceAccount", path=devstack.RBAC)["metadata"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    ]


# --- the kube-apiserver accepts them -------------------------------------------------------------


def test_the_apiserver_accepts_the_webhook_configuration_service_and_deployment(
    kube_stack: devstack.KubeStack,
) -> None:
    admin = kube_stack.api_client()
    kube_stack.apply_rbac()  # the stagegate-system namespace and the ServiceAccount
    configuration = one("ValidatingWebhookConfiguration")
    accepted = client.AdmissionregistrationV1Api(admin).create_validating_webhook_configuration(
        configuration, dry_run="All"
    )
    assert [w.name for w in accepted.webhooks] == [GUARD, ENVIRONMENT_GATE, NAMESPACE_GUARD]
    service = one("Service")
    client.CoreV1Api(admin).create_namespaced_service(
        service["metadata"]["namespace"], service, dry_run="All"
    )
    deployment = one("Deployment")
    client.AppsV1Api(admin).create_namespaced_deployment(
        deployment["metadata"]["namespace"], deployment, dry_run="All"
    )
