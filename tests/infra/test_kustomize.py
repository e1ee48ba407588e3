"""The in-cluster install (`kubectl apply -k infra/k8s`), rendered and checked against the code.

The kustomization is rendered with `kubectl kustomize`, exactly what `kubectl apply -k` applies (`.ci/run`
installs kubectl; without it these tests skip, and fail in CI). Checked: every HTTP target in
`functions/` is served (from its own source file) except `audit_bridge`, which needs a cloud bus; each
container's port is behind the Service and probed; every pod runs as the ServiceAccount `rbac.yaml`
binds (the shipped manifests are reused unchanged, not copied), non-root with a read-only root
filesystem, no capabilities and the RuntimeDefault seccomp profile; each function gets only the
credentials it reads, from the user's Secret and never as a value; the settings parse; TLS comes from a
certificate for the Service; the CronJob posts to the resync port (and its script, run here against a
local https server, sends the bearer token and fails on an error). Finally the kube-apiserver of the test
stack accepts every rendered object (server-side apply, dry run), with stand-ins for cert-manager's CRDs.
"""

from __future__ import annotations

import ast
import copy
import http.server
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import tomllib
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from kubernetes import client
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from stagegate.http import HEALTH_PATH
from stagegate.logs import redact
from stagegate.settings import APP_VARIABLES, ConfigError, Settings
from stagegate_dev import devstack

ROOT = devstack.ROOT
K8S = ROOT / "infra" / "k8s"
SHIPPED = ("rbac.yaml", "admission-rbac.yaml", "admission.yaml")
SECRET = "stagegate"
"""The Secret the user creates (infra/README.md); the manifests only name it."""
WORKER_TMP = "/tmp"  # noqa: S108 (a path inside the container: an emptyDir)

NOT_SERVED = {
    "audit_bridge": "it only publishes to Pub/Sub or EventBridge (BRIDGE_TRANSPORT), not in a cluster",
}
GITHUB = {"GITHUB_TOKEN", *APP_VARIABLES}
READS = {
    "k8s_audit_http": {"AUDIT_WEBHOOK_TOKEN"},  # no GitHub: the resync recomputes Rollout changes
    "github_webhook": {"GITHUB_WEBHOOK_SECRET", *GITHUB},
    "resync_http": {"RESYNC_TOKEN", *GITHUB},
    "reporter_http": {"AUDIT_WEBHOOK_TOKEN", *GITHUB},
    # The App answers; the token only lets it start while PROTECTION_RULES is unset, as the others do.
    "github_protection_rule": {"GITHUB_WEBHOOK_SECRET", *GITHUB},
    "k8s_admission": set(),
}
"""The credentials each served function reads; a container gets these and no others."""
CREDENTIALS = {"AUDIT_WEBHOOK_TOKEN", "GITHUB_WEBHOOK_SECRET", "RESYNC_TOKEN", *GITHUB}
PORT_NAMES = {"github_protection_rule": "protection-rule"}
"""A function port named other than its container: a container port's name has at most 15 characters."""

FALLBACK_VERSIONS = {
    ("batch/v1", "CronJob"): "batch/v1beta1",
    ("policy/v1", "PodDisruptionBudget"): "policy/v1beta1",
}
"""Same schema, older group version: the test stack's kube-apiserver (1.20) serves only these."""


# --- rendering -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        message = "kubectl not found: `kubectl kustomize` renders the install (.ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S)], check=True, capture_output=True, text=True, timeout=120
    )
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    return found


def pod_specs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`Kind/name` -> pod spec, for every workload in `objects`."""
    specs = {
        f"Deployment/{d['metadata']['name']}": d["spec"]["template"]["spec"]
        for d in of_kind(objects, "Deployment")
    }
    for job in of_kind(objects, "CronJob"):
        specs[f"CronJob/{job['metadata']['name']}"] = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return specs


def containers(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for workload, spec in pod_specs(objects).items():
        for container in spec["containers"]:
            yield workload, spec, container


def served_target(container: dict[str, Any]) -> tuple[str, str] | None:
    """(target, source) of a functions-framework app under gunicorn, as admission.yaml serves one."""
    apps = [a for a in container.get("args", []) if a.startswith("functions_framework:create_app(")]
    if not apps:
        return None
    [app] = apps
    match = re.fullmatch(r'functions_framework:create_app\(target="(\w+)", source="([\w/.]+)"\)', app)
    assert match, app
    return match.group(1), match.group(2)


def function_containers(
    objects: list[dict[str, Any]],
) -> dict[str, tuple[str, dict[str, Any], dict[str, Any]]]:
    """target -> (workload, pod spec, container) for every container that serves a function."""
    found: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {}
    for workload, spec, container in containers(objects):
        served = served_target(container)
        if served:
            assert served[0] not in found, f"{served[0]} is served twice"
            found[served[0]] = (workload, spec, container)
    return found


def flag(args: list[str], name: str) -> str:
    [value] = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    return value


def http_targets() -> dict[str, str]:
    """target -> source file, for every function in functions/ decorated `functions_framework.http`."""
    targets = {}
    for path in sorted((ROOT / "functions").glob("*/main.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and any(
                ast.unparse(d) == "functions_framework.http" for d in node.decorator_list
            ):
                targets[node.name] = str(path.relative_to(ROOT))
    return targets


def secret_refs(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def plain_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def config_map(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [found] = [
        c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"].startswith("stagegate-config-")
    ]
    return found


# --- what is served, and how it is reached -------------------------------------------------------


def test_every_http_target_in_functions_is_served_from_its_own_source(rendered: list[dict[str, Any]]) -> None:
    targets = http_targets()
    assert set(NOT_SERVED) <= set(targets), "an exemption names a target that no longer exists"
    served = function_containers(rendered)
    assert set(served) == set(targets) - set(NOT_SERVED)
    assert set(served) == set(READS)
    for target, (_, _, container) in served.items():
        assert served_target(container) == (target, targets[target])
        assert container["command"] == ["gunicorn"]


def test_the_install_reuses_the_shipped_manifests_unchanged(rendered: list[dict[str, Any]]) -> None:
    for name in SHIPPED:
        for doc in documents(K8S / name):
            assert doc in rendered, f"{name}: {doc['kind']}/{doc['metadata']['name']} is changed or missing"
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert set(SHIPPED) <= set(kustomization["resources"])
    # The ServiceAccount exists once, from rbac.yaml.
    assert [a["metadata"]["name"] for a in of_kind(rendered, "ServiceAccount")] == ["stagegate"]


def test_every_function_port_is_behind_a_service_and_probed(rendered: list[dict[str, Any]]) -> None:
    deployments = of_kind(rendered, "Deployment")
    for target, (workload, _, container) in function_containers(rendered).items():
        [port] = [p for p in container["ports"] if not p["name"].startswith("metrics")]
        assert flag(container["args"], "bind") == f"0.0.0.0:{port['containerPort']}"
        # The health path, which only a worker that has loaded the function answers.
        probe = {"path": HEALTH_PATH, "port": port["name"], "scheme": "HTTPS"}
        assert container["readinessProbe"]["httpGet"] == probe
        assert container["livenessProbe"]["httpGet"] == probe
        [deployment] = [d for d in deployments if workload == f"Deployment/{d['metadata']['name']}"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        services = [
            s for s in of_kind(rendered, "Service") if s["spec"]["selector"].items() <= labels.items()
        ]
        assert len(services) == 1, f"{target}: one Service selects its pods"
        ports = [p for p in services[0]["spec"]["ports"] if p["targetPort"] == port["name"]]
        assert len(ports) == 1, f"{target}: the Service has one port for it"
        assert len(port["name"]) <= 15, f"{target}: the apiserver refuses port name {port['name']}"
        if target != "k8s_admission":  # admission.yaml: the webhooks call port 443
            assert container["name"] == target.replace("_", "-")
            assert ports[0]["name"] == port["name"] == PORT_NAMES.get(target, container["name"])
            assert ports[0]["port"] == port["containerPort"]
    for workload, spec in pod_specs(rendered).items():  # each function on a port of its own
        ports = [p for c in spec["containers"] for p in c.get("ports", [])]
        for key in ("name", "containerPort"):
            assert len({p[key] for p in ports}) == len(ports), f"{workload}: two ports share a {key}"
    for service in of_kind(rendered, "Service"):
        names = [p["name"] for p in service["spec"]["ports"]]
        assert len(set(names)) == len(names)
        selected = [
            c
            for d in deployments
            if service["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
            for c in d["spec"]["template"]["spec"]["containers"]
        ]
        offered = {p["name"] for c in selected for p in c.get("ports", [])}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= offered


def test_one_deployment_serves_every_function_but_admission(rendered: list[dict[str, Any]]) -> None:
    workloads = {t: w for t, (w, _, _) in function_containers(rendered).items()}
    assert workloads.pop("k8s_admission") == "Deployment/stagegate-admission"
    assert set(workloads.values()) == {"Deployment/stagegate"}
    for name in ("stagegate", "stagegate-admission"):
        deployment = one(rendered, "Deployment", name)
        assert deployment["spec"]["replicas"] >= 2
        budget = one(rendered, "PodDisruptionBudget", name)
        assert budget["spec"]["minAvailable"] == 1
        assert budget["spec"]["selector"] == deployment["spec"]["selector"]


# --- identity and lock-down ----------------------------------------------------------------------


def test_the_functions_run_as_the_service_account_rbac_yaml_binds(rendered: list[dict[str, Any]]) -> None:
    [account] = of_kind(documents(K8S / "rbac.yaml"), "ServiceAccount")
    subject = {"kind": "ServiceAccount", **{k: account["metadata"][k] for k in ("name", "namespace")}}
    binding = one(rendered, "ClusterRoleBinding", "stagegate")
    assert binding["subjects"] == [subject]
    for workload, spec in pod_specs(rendered).items():
        namespace = one(rendered, *workload.split("/"))["metadata"]["namespace"]
        assert namespace == account["metadata"]["namespace"], workload
        if workload.startswith("Deployment/"):
            assert spec["serviceAccountName"] == account["metadata"]["name"], workload
        else:  # the resync CronJob only calls the Service: no Kubernetes credentials at all
            assert spec["automountServiceAccountToken"] is False
            assert "serviceAccountName" not in spec


def test_every_pod_is_locked_down(rendered: list[dict[str, Any]]) -> None:
    for workload, spec, container in containers(rendered):
        where = f"{workload} {container['name']}"
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, where
        assert (container["securityContext"].get("seccompProfile") or pod["seccompProfile"]) == {
            "type": "RuntimeDefault"
        }, where
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, where
        assert security["allowPrivilegeEscalation"] is False, where
        assert security["capabilities"] == {"drop": ["ALL"]}, where
        assert not security.get("privileged"), where
        assert not spec.get("hostNetwork"), where
        assert not spec.get("hostPID"), where
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), where
        assert "memory" in resources["limits"], where
        # gunicorn's heartbeat files go to a writable emptyDir, not the read-only root.
        if served_target(container):
            volumes = {v["name"]: v for v in spec["volumes"]}
            [tmp] = [m for m in container["volumeMounts"] if m["mountPath"] == WORKER_TMP]
            assert "emptyDir" in volumes[tmp["name"]]
            assert flag(container["args"], "worker-tmp-dir") == WORKER_TMP


def test_every_container_runs_the_image_of_this_version(rendered: list[dict[str, Any]]) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    [image] = kustomization["images"]
    assert image == {"name": "stagegate", "newTag": version}
    assert {c["image"] for _, _, c in containers(rendered)} == {f"stagegate:{version}"}


# --- configuration and credentials ---------------------------------------------------------------


def test_no_secret_value_is_in_the_install(rendered: list[dict[str, Any]]) -> None:
    assert of_kind(rendered, "Secret") == [], "the user creates the Secret; the install only names it"
    text = yaml.safe_dump_all(rendered)
    assert redact(text) == text, "something shaped like a credential is in the manifests"
    assert not CREDENTIALS & set(config_map(rendered)["data"])
    for workload, _, container in containers(rendered):
        assert not CREDENTIALS & set(plain_env(container)), f"{workload} {container['name']}"
        for name, ref in secret_refs(container).items():
            assert (ref["name"], ref["key"]) == (SECRET, name), f"{workload} {container['name']}: {name}"
        for source in container.get("envFrom", []):
            assert "secretRef" not in source, "envFrom a Secret would hand every credential to every function"


def test_each_function_gets_only_the_credentials_it_reads(rendered: list[dict[str, Any]]) -> None:
    for target, (_, _, container) in function_containers(rendered).items():
        refs = secret_refs(container)
        assert set(refs) == READS[target], target
        # Each function starts without any one of them: it refuses requests while its token or
        # secret is unset, and takes either a token or App credentials for GitHub (with neither it
        # stops at start, naming them).
        assert all(ref.get("optional") is True for ref in refs.values()), target


def test_the_settings_come_from_one_configmap_the_code_reads_and_accepts(
    rendered: list[dict[str, Any]],
) -> None:
    configuration = config_map(rendered)
    data = configuration["data"]
    settings_source = (ROOT / "stagegate" / "settings.py").read_text()
    for name in data:
        assert f'"{name}"' in settings_source, f"{name} is not read by stagegate/settings.py"
    settings = Settings.from_env(data)
    assert settings.kubeconfig is None  # in the cluster: the ServiceAccount's own token
    assert settings.resync_auth == "bearer"  # the CronJob sends RESYNC_TOKEN
    assert settings.report_transport is None  # no Pub/Sub or SQS in a cluster
    for target, (workload, _, container) in function_containers(rendered).items():
        if workload != "Deployment/stagegate":
            continue
        assert container["envFrom"] == [{"configMapRef": {"name": configuration["metadata"]["name"]}}], target
        env = {**data, **plain_env(container), **dict.fromkeys(secret_refs(container), "x" * 40)}
        env = {k: v for k, v in env.items() if k not in APP_VARIABLES}  # a token, not both
        Settings.from_env(env)


PROTECTED = ("github_webhook", "resync_http", "github_protection_rule")
"""The functions that read PROTECTION_RULES: each answers held GitHub Actions jobs."""


def app_credentials() -> dict[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {
        "GITHUB_APP_ID": "12345",
        "GITHUB_APP_PRIVATE_KEY": pem.decode(),
        "GITHUB_APP_INSTALLATION_ID": "678",
    }


def test_the_protection_rules_example_works_with_the_app_credentials_each_protected_function_gets(
    rendered: list[dict[str, Any]],
) -> None:
    """config.env's commented PROTECTION_RULES parses, and with it each function that reads it starts on
    the App credentials of the Secret, and stops at start on a token (functions.yaml's header)."""
    [example] = re.findall(r"^# (PROTECTION_RULES=.+)$", (K8S / "install" / "config.env").read_text(), re.M)
    name, value = example.split("=", 1)
    data = {**config_map(rendered)["data"], name: value}
    app = app_credentials()
    for target in PROTECTED:
        _, _, container = function_containers(rendered)[target]
        refs = secret_refs(container)
        assert set(APP_VARIABLES) <= set(refs), target
        env = {**data, **plain_env(container), **dict.fromkeys(refs, "x" * 40)}
        with_app = {k: v for k, v in env.items() if k != "GITHUB_TOKEN"} | app
        assert Settings.from_env(with_app).protection_rules, target
        with_token = {k: v for k, v in env.items() if k not in APP_VARIABLES}
        with pytest.raises(ConfigError, match="GITHUB_APP_ID"):
            Settings.from_env(with_token)


def test_the_follower_runs_beside_the_functions_with_its_identity_and_only_github_credentials(
    rendered: list[dict[str, Any]],
) -> None:
    [(workload, spec, follower)] = [(w, s, c) for w, s, c in containers(rendered) if c["name"] == "follower"]
    assert workload == "Deployment/stagegate"
    assert pod_specs(rendered)[workload] is spec
    assert follower["command"] == ["python", "-m", "stagegate.follower"]
    assert (ROOT / "stagegate" / "follower.py").is_file()
    assert [p["name"] for p in follower["ports"]] == ["metrics-follow"]  # it serves only its metrics
    fields = {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
        for e in follower["env"]
        if "fieldRef" in e.get("valueFrom", {})
    }
    assert fields == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    refs = secret_refs(follower)
    assert set(refs) == set(GITHUB)
    assert all(ref.get("optional") is True for ref in refs.values())
    configuration = config_map(rendered)
    assert follower["envFrom"] == [{"configMapRef": {"name": configuration["metadata"]["name"]}}]
    env = {**configuration["data"], "POD_NAMESPACE": "stagegate-system", "GITHUB_TOKEN": "x" * 40}
    settings = Settings.from_env(env)
    assert settings.follow_namespace == "stagegate-system"  # the Lease beside the install
    settings.github_credentials()  # it starts


def test_the_functions_serve_tls_with_a_certificate_for_their_service(rendered: list[dict[str, Any]]) -> None:
    service = one(rendered, "Service", "stagegate")
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    for target, (workload, spec, container) in function_containers(rendered).items():
        if workload != "Deployment/stagegate":
            continue
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        for option in ("certfile", "keyfile"):
            secret_name = volumes[mounts[str(Path(flag(container["args"], option)).parent)]]["secret"][
                "secretName"
            ]
            [certificate] = [
                c for c in of_kind(rendered, "Certificate") if c["spec"]["secretName"] == secret_name
            ]
            assert host in certificate["spec"]["dnsNames"], target
            issuer = one(
                rendered, certificate["spec"]["issuerRef"]["kind"], certificate["spec"]["issuerRef"]["name"]
            )
            assert "ca" in issuer["spec"], "signed by the CA whose certificate the callers trust"


# --- the scheduled resync ------------------------------------------------------------------------


def resync_job(rendered: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    [cronjob] = of_kind(rendered, "CronJob")
    spec = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [container] = spec["containers"]
    return cronjob, spec, container


def test_the_cronjob_posts_to_the_resync_port_every_ten_minutes(rendered: list[dict[str, Any]]) -> None:
    cronjob, spec, container = resync_job(rendered)
    assert cronjob["spec"]["schedule"] == "*/10 * * * *"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert container["command"] == ["python", "-c"]
    env = plain_env(container)
    url = urllib.parse.urlsplit(env["RESYNC_URL"])
    service = one(rendered, "Service", "stagegate")
    _, _, resync = function_containers(rendered)["resync_http"]
    [port] = [p for p in service["spec"]["ports"] if p["targetPort"] == resync["ports"][0]["name"]]
    assert url.scheme == "https"
    assert url.hostname == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    assert url.port == port["port"]
    # The token from the Secret (required: the Job cannot work without it); the CA from the serving
    # certificate's secret, and only that key.
    assert secret_refs(container) == {"RESYNC_TOKEN": {"name": SECRET, "key": "RESYNC_TOKEN"}}
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    ca = Path(env["RESYNC_CA_FILE"])
    volume = volumes[mounts[str(ca.parent)]]["secret"]
    resync_tls = flag(resync["args"], "certfile")
    resync_volumes = {v["name"]: v for v in function_containers(rendered)["resync_http"][1]["volumes"]}
    resync_mounts = {m["mountPath"]: m["name"] for m in resync["volumeMounts"]}
    assert (
        volume["secretName"]
        == resync_volumes[resync_mounts[str(Path(resync_tls).parent)]]["secret"]["secretName"]
    )
    assert volume["items"] == [{"key": "ca.crt", "path": ca.name}]


class _Recorder(http.server.BaseHTTPRequestHandler):
    status = 200
    seen: list[tuple[str, str, str | None]] = []  # noqa: RUF012

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).seen.append((self.command, self.path, self.headers.get("Authorization")))
        body = b'{"gates": []}'
        self.send_response(type(self).status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("status", "exit_code"), [(200, 0), (503, 1)])
def test_the_cronjob_script_posts_the_bearer_token_over_https_and_fails_on_an_error(
    rendered: list[dict[str, Any]], tmp_path: Path, status: int, exit_code: int
) -> None:
    _, _, container = resync_job(rendered)
    [script] = container["args"]
    tls = devstack.Tls(tmp_path)
    handler = type("Handler", (_Recorder,), {"status": status, "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert_file, tls.key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "RESYNC_URL": f"https://127.0.0.1:{server.server_address[1]}/",
            "RESYNC_CA_FILE": str(tls.ca_file),
            "RESYNC_TOKEN": "resync-token-0123456789\n",  # as `echo` leaves it in a Secret
        }
        done = subprocess.run(
            [sys.executable, "-c", script], check=False, env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == exit_code, done.stderr
    assert handler.seen == [("POST", "/", "Bearer resync-token-0123456789")]
    assert done.stdout.startswith(f"{status} ")


# --- the kube-apiserver accepts it ---------------------------------------------------------------

_STRING = {"type": "string"}
_ISSUER_REF = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": _STRING, "kind": _STRING, "group": _STRING},
}
CERT_MANAGER_SPECS = {
    ("Certificate", "certificates"): {
        "type": "object",
        "required": ["issuerRef", "secretName"],
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": {
            "secretName": _STRING,
            "commonName": _STRING,
            "dnsNames": {"type": "array", "items": _STRING},
            "duration": _STRING,
            "isCA": {"type": "boolean"},
            "privateKey": {
                "type": "object",
                "properties": {
                    "algorithm": {"type": "string", "enum": ["RSA", "ECDSA", "Ed25519"]},
                    "size": {"type": "integer"},
                },
            },
            "issuerRef": _ISSUER_REF,
        },
    },
    ("Issuer", "issuers"): {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": {
            "selfSigned": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "ca": {"type": "object", "required": ["secretName"], "properties": {"secretName": _STRING}},
        },
    },
}
"""cert-manager.io/v1 as far as the install uses it (required fields and types from cert-manager's API
reference); a stand-in, so that a real apiserver checks group, version, kind, scope and those fields."""


def install_cert_manager_stand_ins(admin: Any) -> None:
    extensions = client.ApiextensionsV1Api(admin)
    custom = client.CustomObjectsApi(admin)
    for (kind, plural), spec in CERT_MANAGER_SPECS.items():
        crd = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.cert-manager.io"},
            "spec": {
                "group": "cert-manager.io",
                "scope": "Namespaced",
                "names": {
                    "kind": kind,
                    "listKind": f"{kind}List",
                    "plural": plural,
                    "singular": kind.lower(),
                },
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec}}},
                    }
                ],
            },
        }
        try:
            extensions.create_custom_resource_definition(crd)
        except client.exceptions.ApiException as exc:
            if exc.status != 409:
                raise
        devstack.wait_until(
            lambda p=plural: custom.list_cluster_custom_object("cert-manager.io", "v1", p, limit=1),
            30,
            f"{plural}.cert-manager.io API",
        )


def resource_for(dynamic: DynamicClient, doc: dict[str, Any]) -> Any:
    try:
        return dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    except ResourceNotFoundError:
        older = FALLBACK_VERSIONS.get((doc["apiVersion"], doc["kind"]))
        if older is None:
            raise
        return dynamic.resources.get(api_version=older, kind=doc["kind"])


def for_apply(doc: dict[str, Any], api_version: str) -> dict[str, Any]:
    """`doc` as the test stack's server-side apply takes it: in `api_version`, and a Service's ports with
    `protocol` spelt out. kube-apiserver 1.20 refuses an applied port list whose key field `protocol` is
    omitted instead of defaulting it to TCP, as the API does for every other request and later versions do
    for apply too."""
    body = copy.deepcopy(doc)
    body["apiVersion"] = api_version
    if body["kind"] == "Service":
        for port in body["spec"]["ports"]:
            port.setdefault("protocol", "TCP")
    return body


def test_the_apiserver_accepts_every_rendered_object(
    kube_stack: devstack.KubeStack, rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    admin = kube_stack.api_client()
    install_cert_manager_stand_ins(admin)
    kube_stack.apply_rbac()  # the namespace must exist for the namespaced objects' dry runs
    dynamic = DynamicClient(admin, cache_file=str(tmp_path / "discovery.json"))
    refused = []
    for doc in rendered:
        resource = resource_for(dynamic, doc)
        body = for_apply(doc, resource.group_version)
        try:
            # Server-side apply refuses fields the schema does not declare, so a misspelt field
            # fails here instead of being dropped.
            accepted = dynamic.server_side_apply(
                resource,
                body=body,
                field_manager="stagegate-install-test",
                force_conflicts=True,
                dry_run="All",
            )
        except client.exceptions.ApiException as exc:
            refused.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.status} {exc.body}")
            continue
        assert (accepted.kind, accepted.metadata.name) == (doc["kind"], doc["metadata"]["name"])
    assert refused == []
