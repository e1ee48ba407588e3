"""A real, local control plane for tests, benchmarks and the demo: etcd, kube-apiserver, the CRDs.

Everything listens on loopback only, with TLS and bearer-token authentication like a real cluster,
and everything started here is stopped by `close()`. The binaries come from
`scripts/kube-assets.sh` (envtest's `KUBEBUILDER_ASSETS`, or a cached build from Debian's source).
Optionally the apiserver sends audit events to a webhook in blocking mode, which is how the
no-window guarantee is proven. This module needs the `dev` extra (trustme); the functions never
import it.

`python -m stagegate_dev.devstack` runs the bare stack (etcd, kube-apiserver, the project's CRDs) until
SIGTERM or SIGINT; `make dev` (`stagegate_dev.dev`) runs the whole system on top of it.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import secrets
import socket
import ssl
import string
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import trustme
import yaml
from kubernetes import client, config

from stagegate.http import HEALTH_PATH
from stagegate_dev.commandline import no_arguments, signals_held, stop_cleanly_on_signals
from stagegate_dev.polling import ProcessExited, wait_until

ROOT = Path(__file__).resolve().parent.parent
PROJECT_CRDS = ROOT / "infra" / "k8s" / "crds"
KUBERIK_CRDS = ROOT.parent / "shared" / "reference" / "crds"
# The real Flux CRDs the rollout controller builds against (OCIRepository, Kustomization): installed
# with the kuberik set, so the rollout model deploys onto the real schemas there.
FLUX_CRDS = KUBERIK_CRDS / "flux"
AUDIT_POLICY = ROOT / "infra" / "k8s" / "audit-policy.yaml"
AUDIT_WEBHOOK_TEMPLATE = ROOT / "infra" / "k8s" / "audit-webhook.kubeconfig.template"
RBAC = ROOT / "infra" / "k8s" / "rbac.yaml"
ADMISSION = ROOT / "infra" / "k8s" / "admission.yaml"
ADMIN_USER = "stagegate-admin"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def kube_assets() -> Path:
    """The directory with `kube-apiserver`, `kube-controller-manager` and `etcd`, building them once if
    needed."""
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "kube-assets.sh")], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(out.stdout.strip())


def load_crds(directory: Path) -> list[dict[str, Any]]:
    """CRD documents from a folder, minus what kube-apiserver 1.20 rejects (`default: ""`)."""
    docs: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return [_strip_empty_defaults(d) for d in docs]


def crd_folders(crd_dir: Path) -> list[Path]:
    """The folders a stack installs CRDs from: `crd_dir`, plus the real Flux CRDs with the kuberik set."""
    folders = [crd_dir]
    if crd_dir.resolve() == KUBERIK_CRDS.resolve() and FLUX_CRDS.is_dir():
        folders.append(FLUX_CRDS)
    return folders


def _strip_empty_defaults(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_empty_defaults(v) for k, v in node.items() if not (k == "default" and v == "")}
    if isinstance(node, list):
        return [_strip_empty_defaults(v) for v in node]
    return node


@dataclass
class Tls:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost."""

    directory: Path
    ca_file: Path = field(init=False)
    cert_file: Path = field(init=False)
    key_file: Path = field(init=False)

    def __post_init__(self) -> None:
        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = self.directory / "ca.pem"
        self.cert_file = self.directory / "server.pem"
        self.key_file = self.directory / "server-key.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        server.cert_chain_pems[0].write_to_path(str(self.cert_file))
        server.private_key_pem.write_to_path(str(self.key_file))


def write_kubeconfig(path: Path, server: str, ca_file: Path, token: str) -> Path:
    """A kubeconfig with one cluster, one token user and one context (also the audit webhook format)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": "user", "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "user"}}],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def render_audit_webhook_config(path: Path, url: str, token: str, ca_file: Path) -> Path:
    """`infra/k8s/audit-webhook.kubeconfig.template` filled in: the file users deploy is the one tested."""
    text = string.Template(AUDIT_WEBHOOK_TEMPLATE.read_text()).substitute(
        STAGEGATE_URL=url, AUDIT_WEBHOOK_TOKEN=token
    )
    config = yaml.safe_load(text)
    config["clusters"][0]["cluster"]["certificate-authority"] = str(ca_file)
    path.write_text(yaml.safe_dump(config))
    return path


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Processes:
    """Child processes with their logs, stopped in reverse order of start."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._children: list[tuple[subprocess.Popen[bytes], TextIO]] = []

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with signals_held():
            log = open(self.log_dir / f"{name}.log", "w")  # noqa: SIM115  closed in stop_all
            proc = subprocess.Popen(
                list(argv), stdout=log, stderr=subprocess.STDOUT, env=dict(env) if env is not None else None
            )
            self._children.append((proc, log))
        return proc

    def stop_all(self) -> None:
        """Stop every child, newest first. A signal meanwhile (SIGTERM or Ctrl-C arriving while a stack
        that lost a child is already stopping) does not cut this short, or the rest would be left
        running, re-parented: stopping is what it asks for anyway, and each stop is bounded."""
        for proc, log in reversed(self._children):
            while True:
                try:
                    _stop(proc)
                    break
                except KeyboardInterrupt:
                    continue
            log.close()
        self._children.clear()

    def exited(self) -> list[str]:
        """The names of the children that have exited (by themselves, or killed by someone else)."""
        return [Path(log.name).stem for proc, log in self._children if proc.poll() is not None]

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


@dataclass
class AuditWebhook:
    """Where the apiserver sends audit events, and how: blocking mode, bearer token, TLS."""

    url: str
    token: str
    ca_file: Path
    mode: str = "blocking"
    policy_file: Path = AUDIT_POLICY


class KubeStack:
    """etcd + kube-apiserver on loopback with TLS, token auth, RBAC and a set of CRDs, and the garbage
    collector of kube-controller-manager."""

    def __init__(
        self, crd_dir: Path = PROJECT_CRDS, audit: AuditWebhook | None = None, extra_args: Sequence[str] = ()
    ) -> None:
        self.crd_dir = crd_dir
        self.audit = audit
        self.extra_args = list(extra_args)
        self.dir = Path(tempfile.mkdtemp(prefix="stagegate-kube-"))
        self.procs = Processes(self.dir)
        self.tls = Tls(self.dir)
        self.port = free_port()
        self.server = f"https://127.0.0.1:{self.port}"
        self.admin_token = secrets.token_urlsafe(24)
        self.kubeconfig = write_kubeconfig(
            self.dir / "kubeconfig", self.server, self.tls.ca_file, self.admin_token
        )

    def __enter__(self) -> KubeStack:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        assets = kube_assets()
        etcd_port, peer_port = free_port(), free_port()
        self.procs.start(
            "etcd",
            [
                str(assets / "etcd"),
                "--data-dir", str(self.dir / "etcd"),
                "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
                "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-cluster", f"default=http://127.0.0.1:{peer_port}",
                "--log-level", "warn",
            ],
        )  # fmt: skip
        sa_key = self.dir / "sa.key"
        subprocess.run(["openssl", "genrsa", "-out", str(sa_key), "2048"], check=True, capture_output=True)
        (self.dir / "tokens.csv").write_text(f'{self.admin_token},{ADMIN_USER},1000,"system:masters"\n')
        argv = [
            str(assets / "kube-apiserver"),
            "--etcd-servers", f"http://127.0.0.1:{etcd_port}",
            "--bind-address", "127.0.0.1",
            "--advertise-address", "127.0.0.1",
            "--secure-port", str(self.port),
            "--insecure-port", "0",
            "--cert-dir", str(self.dir / "certs"),
            "--tls-cert-file", str(self.tls.cert_file),
            "--tls-private-key-file", str(self.tls.key_file),
            "--token-auth-file", str(self.dir / "tokens.csv"),
            "--authorization-mode", "RBAC",
            "--service-account-issuer", "https://kubernetes.default.svc",
            "--service-account-key-file", str(sa_key),
            "--service-account-signing-key-file", str(sa_key),
            "--service-cluster-ip-range", "10.96.0.0/24",
            "--enable-priority-and-fairness=false",
            "--disable-admission-plugins", "ServiceAccount",
        ]  # fmt: skip
        if self.audit is not None:
            webhook_config = render_audit_webhook_config(
                self.dir / "audit-webhook.kubeconfig", self.audit.url, self.audit.token, self.audit.ca_file
            )
            argv += [
                "--audit-policy-file", str(self.audit.policy_file),
                "--audit-webhook-config-file", str(webhook_config),
                "--audit-webhook-mode", self.audit.mode,
            ]  # fmt: skip
        self.procs.start("kube-apiserver", argv + self.extra_args)
        wait_until(self._ready, 90, "kube-apiserver", lambda: self.procs.tail("kube-apiserver"))
        self.install_crds()
        # The garbage collector alone, after the CRDs exist (it finds them at its first discovery): an
        # object whose owners are all gone is deleted, as on a cluster. It serves no port.
        self.procs.start(
            "kube-controller-manager",
            [
                str(assets / "kube-controller-manager"),
                "--kubeconfig", str(self.kubeconfig),
                "--controllers", "garbagecollector",
                "--leader-elect=false",
                "--secure-port", "0",
                "--port", "0",
            ],
        )  # fmt: skip

    def _ready(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.tls.ca_file))
        request = urllib.request.Request(  # noqa: S310  (our own https URL)
            f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.admin_token}"}
        )
        with urllib.request.urlopen(request, timeout=2, context=context) as response:  # noqa: S310
            return bool(response.status == 200)

    def api_client(self) -> Any:
        """A `kubernetes.client.ApiClient` authenticated as cluster admin."""
        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def install_crds(self) -> None:
        api = client.ApiextensionsV1Api(self.api_client())
        crds = [crd for folder in crd_folders(self.crd_dir) for crd in load_crds(folder)]
        names = []
        for crd in crds:
            api.create_custom_resource_definition(crd)
            names.append(crd["metadata"]["name"])

        def established() -> bool:
            for name in names:
                conditions = api.read_custom_resource_definition(name).status.conditions or []
                if not any(c.type == "Established" and c.status == "True" for c in conditions):
                    return False
            return True

        wait_until(established, 30, "CRDs")
        # Discovery of the new groups lags establishment slightly; wait until every new API serves.
        custom = client.CustomObjectsApi(self.api_client())
        for crd in crds:
            group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
            version = next(v["name"] for v in crd["spec"]["versions"] if v.get("storage"))
            wait_until(
                functools.partial(custom.list_cluster_custom_object, group, version, plural, limit=1),
                30,
                f"{plural}.{group} API",
            )

    @functools.cached_property
    def function_kubeconfig(self) -> Path:
        """The functions' own identity: the least-privilege ServiceAccount of `infra/k8s/rbac.yaml`."""
        return self.service_account_kubeconfig(self.dir / "stagegate-sa.kubeconfig")

    def apply_rbac(self, manifest: Path = RBAC) -> None:
        """Create each document of `manifest` as admin; one that already exists (409) is left as it is."""
        admin = self.api_client()
        core, rbac = client.CoreV1Api(admin), client.RbacAuthorizationV1Api(admin)
        create: dict[str, Any] = {
            "Namespace": core.create_namespace,
            "ServiceAccount": lambda d: core.create_namespaced_service_account(d["metadata"]["namespace"], d),
            "ClusterRole": rbac.create_cluster_role,
            "ClusterRoleBinding": rbac.create_cluster_role_binding,
        }
        for doc in yaml.safe_load_all(manifest.read_text()):
            if not doc:
                continue
            try:
                create[doc["kind"]](doc)
            except client.exceptions.ApiException as exc:
                if exc.status != 409:
                    raise

    def service_account_kubeconfig(
        self,
        path: Path,
        namespace: str = "stagegate-system",
        name: str = "stagegate",
        bound_in: str | None = None,
    ) -> Path:
        """A kubeconfig for the ServiceAccount of `infra/k8s/rbac.yaml`, with a TokenRequest token.

        No controller-manager runs here, so no token Secret is ever made; the TokenRequest API signs one
        with `--service-account-signing-key-file` (audience: the issuer, valid for an hour). Returns once
        the token authenticates and the role binding has reached the RBAC authorizer's cache (checked
        by listing Environments cluster-wide, or in `bound_in` for an account bound in one namespace).
        """
        self.apply_rbac()
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
        )
        core = client.CoreV1Api(self.api_client())
        token = core.create_namespaced_service_account_token(name, namespace, request).status.token
        write_kubeconfig(path, self.server, self.tls.ca_file, token)
        as_account = client.CustomObjectsApi(config.new_client_from_config(config_file=str(path)))
        environments = ("environments.kuberik.com", "v1alpha1")
        wait_until(
            lambda: (
                as_account.list_namespaced_custom_object(*environments, bound_in, "environments", limit=1)
                if bound_in
                else as_account.list_cluster_custom_object(*environments, "environments", limit=1)
            ),
            30,
            f"ServiceAccount {namespace}/{name}",
            lambda: self.procs.tail("kube-apiserver"),
        )
        return path

    def close(self) -> None:
        self.procs.stop_all()
        if os.environ.get("STAGEGATE_KEEP_STACK") != "1":
            subprocess.run(["rm", "-rf", str(self.dir)], check=False)


class FunctionServer:
    """One function target served by functions-framework under gunicorn, in its own process; over TLS
    unless `tls` is None (the Pub/Sub emulator pushes over plain http)."""

    def __init__(
        self,
        source: Path,
        target: str,
        env: Mapping[str, str],
        tls: Tls | None,
        procs: Processes,
        threads: int = 8,
    ) -> None:
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/"
        self.tls = tls
        self.name = f"function-{target}"
        app = f'functions_framework:create_app(target="{target}", source="{source}")'
        argv = [
            sys.executable, "-m", "gunicorn",
            "--bind", f"127.0.0.1:{self.port}",
            *(["--certfile", str(tls.cert_file), "--keyfile", str(tls.key_file)] if tls else []),
            "--workers", "1",
            "--threads", str(threads),
            "--timeout", "0",
            "--no-control-socket",
            app,
        ]  # fmt: skip
        self.proc = procs.start(self.name, argv, env={**os.environ, **env})
        wait_until(self._ready, 30, self.name, lambda: procs.tail(self.name))

    def _ready(self) -> bool:
        """The health path answers once a worker has loaded the function (the master binds before
        that), as the install's probes ask it; the function itself sees no probe."""
        if self.proc.poll() is not None:
            raise ProcessExited(f"{self.name} exited with {self.proc.returncode}")
        context = ssl.create_default_context(cafile=str(self.tls.ca_file)) if self.tls else None
        url = self.url.rstrip("/") + HEALTH_PATH
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310
            return bool(response.status == 200)


class FollowerProcess:
    """`python -m stagegate.follower` in a process of its own, as a container of the in-cluster install
    runs it; `env` is its whole configuration (KUBECONFIG, GitHub, POD_NAME, FOLLOW_LEASE_NAMESPACE)."""

    def __init__(self, env: Mapping[str, str], procs: Processes, name: str = "follower") -> None:
        self.name = name
        self.log_file = procs.log_dir / f"{name}.log"
        self.proc = procs.start(name, [sys.executable, "-m", "stagegate.follower"], env={**os.environ, **env})

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def following(self) -> bool:
        """Whether it has taken the Lease (its log says so)."""
        if self.proc.poll() is not None:
            raise ProcessExited(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-2000:]}")
        return "this replica follows changes now" in self.log()


@contextlib.contextmanager
def audit_webhook_stack(
    crd_dir: Path = PROJECT_CRDS,
    mode: str = "blocking",
    threads: int = 8,
    function_env: Mapping[str, str] | None = None,
) -> Iterator[tuple[KubeStack, FunctionServer]]:
    """A KubeStack whose audit webhook is `k8s_audit_http`, served over TLS, in `mode`.

    In `blocking` mode the apiserver waits for the webhook before answering the client; in `batch`
    mode it buffers events (here for at most a second) and the client's call returns first. The
    function authenticates to the apiserver with the admin kubeconfig and requires the same bearer
    token the apiserver's webhook kubeconfig carries.
    """
    token = secrets.token_urlsafe(24)
    extra = ["--audit-webhook-batch-max-wait", "1s"] if mode == "batch" else []
    stack = KubeStack(crd_dir, extra_args=extra)
    try:
        server = FunctionServer(
            ROOT / "functions" / "k8s_audit" / "main.py",
            "k8s_audit_http",
            {"KUBECONFIG": str(stack.kubeconfig), "AUDIT_WEBHOOK_TOKEN": token, **(function_env or {})},
            stack.tls,
            stack.procs,
            threads=threads,
        )
        stack.audit = AuditWebhook(url=server.url, token=token, ca_file=stack.tls.ca_file, mode=mode)
        stack.start()
        yield stack, server
    finally:
        stack.close()


def admission_configuration(
    url: str, ca_file: Path, name: str, match_labels: Mapping[str, str]
) -> dict[str, Any]:
    """The shipped ValidatingWebhookConfiguration (`infra/k8s/admission.yaml`) pointed at `url`.

    As its header documents for clusters without cert-manager: `clientConfig` is the URL plus the CA
    as `caBundle`. Every webhook also selects only namespaces carrying `match_labels`, so a stack shared
    by several users of the webhook keeps them apart: in its `objectSelector` for the webhook that
    selects Namespaces by their own labels (the namespace guard), in its `namespaceSelector` otherwise.
    """
    [shipped] = [
        d
        for d in yaml.safe_load_all(ADMISSION.read_text())
        if d and d["kind"] == "ValidatingWebhookConfiguration"
    ]
    config: dict[str, Any] = json.loads(json.dumps(shipped))
    config["metadata"] = {"name": name}
    ca_bundle = base64.b64encode(ca_file.read_bytes()).decode()
    for webhook in config["webhooks"]:
        webhook["clientConfig"] = {"url": url, "caBundle": ca_bundle}
        by = "objectSelector" if "objectSelector" in webhook else "namespaceSelector"
        selector = webhook.setdefault(by, {})
        selector["matchLabels"] = {**selector.get("matchLabels", {}), **match_labels}
    return config


def wait_for_port(procs: Processes, name: str, argv: Sequence[str], port: int) -> None:
    """Start a server and return once it accepts connections on `port`; fail early if it exits."""
    proc = procs.start(name, argv)

    def ready() -> bool:
        if proc.poll() is not None:
            raise ProcessExited(f"{name} exited with {proc.returncode}")
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    wait_until(ready, 60, name, lambda: procs.tail(name))


class PubSubEmulator:
    """The Pub/Sub emulator from the Google Cloud CLI (package google-cloud-cli-pubsub-emulator)."""

    def __init__(self, procs: Processes) -> None:
        sdk = subprocess.run(
            ["gcloud", "info", "--format=value(installation.sdk_root)"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        launcher = Path(sdk) / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
        if not launcher.exists():
            raise FileNotFoundError(f"{launcher} missing: install google-cloud-cli-pubsub-emulator")
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        data = procs.log_dir / f"pubsub-{self.port}"
        argv = [str(launcher), "--host=127.0.0.1", f"--port={self.port}", f"--data-dir={data}"]
        wait_for_port(procs, "pubsub-emulator", argv, self.port)


class MotoServer:
    """moto in server mode: AWS APIs (EventBridge, SQS, ...) on loopback."""

    def __init__(self, procs: Processes) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        wait_for_port(procs, "moto", argv, self.port)

    def env(self) -> dict[str, str]:
        """What boto3 needs to talk to this server instead of AWS."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }


def wait_for_children(procs: Processes, essential: Collection[str] | None = None) -> int:
    """Block until a signal interrupts (`stagegate_dev.commandline`), or return 1 once an `essential`
    child (default: any) has exited by itself, printing its log's tail: a stack with a dead apiserver is
    worth nothing to its user. Another child that exits is reported the same way and the stack goes on
    without it, as a cluster goes on without a crashed webhook pod (the break-glass runbook stops
    `k8s_admission` on purpose)."""
    told: set[str] = set()
    while True:
        for name in [n for n in procs.exited() if n not in told]:
            told.add(name)
            going_on = essential is not None and name not in essential
            then = "; the stack goes on without it" if going_on else ""
            print(f"{name} exited{then}; the last lines of its log:\n{procs.tail(name)}", file=sys.stderr,
                  flush=True)  # fmt: skip
            if not going_on:
                return 1
        time.sleep(0.5)


def main() -> int:
    """Run the bare stack until SIGTERM or SIGINT (exit 0: that is how it is meant to end)."""
    no_arguments(
        "python -m stagegate_dev.devstack",
        "etcd and a kube-apiserver with the project's CRDs on loopback, until SIGTERM or Ctrl-C; prints "
        "{kubeconfig, server} as one JSON line once it serves. Both are stopped and their data folder "
        "removed however it stops (STAGEGATE_KEEP_STACK=1 keeps the folder). For the whole system "
        "(functions, webhooks, a GitHub stand-in) use `make dev`.",
    )
    stop_cleanly_on_signals()
    try:
        with KubeStack() as stack:
            print(json.dumps({"kubeconfig": str(stack.kubeconfig), "server": stack.server}), flush=True)
            return wait_for_children(stack.procs)
    except KeyboardInterrupt:
        print("stopped: etcd and kube-apiserver are gone", flush=True)
        return 0


if __name__ == "__main__":
    sys.exit(main())
