"""Hand-written in-memory stand-ins for Kubernetes, GitHub and the bridge transport, and the entry points
loaded in-process with them (functions-framework `create_app(...).test_client()`, the Lambda module).

The world they start from is one app: `prod` (`After staging`, Rollout `myapp`) with its gate already
allowing `["a"]`, and `staging` (no relationship) with an unrestricted gate. `never_wider` checks what
must hold after any input, good or bad: no gate of a stored Environment with a relationship became
null, gained a tag, moved off its Rollout, lost its owner or disappeared.

GitHub only ever fails (`RetryableError`) and counts how often it was asked: a 503 is then legitimate
exactly when GitHub was asked, so inputs that fail in parsing can never excuse a 5xx. Its interface
is not spelled out (any method name fails the same way), so it keeps working while `Upstream` changes.
"""

from __future__ import annotations

import copy
import dataclasses
import socket
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import functions_framework
import pytest
from flask.testing import FlaskClient

from shared.errors import RetryableError
from shared.gate import (
    DESCRIPTION_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    PRETTY_NAME_ANNOTATION,
    describe,
)
from shared.views import Environment, RolloutGate
from stagegate.kube import KubeConflict, KubeNotFound
from tests.shared.builders import environment_raw, merge_patch

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "default"
STAGING_UID = "5d1e7c2a-3b44-4f0e-9a61-0c2b8f7d9e11"
ALLOWED = ["a"]
AUDIT_TOKEN = "audit-token-for-fuzzing"
RESYNC_TOKEN = "resync-token-for-fuzzing"
WEBHOOK_SECRET = "webhook-secret-for-fuzzing"


class NetworkUsed(AssertionError):
    """A test of the entry points with in-memory fakes tried to reach the network."""


def _refuse(*args: object, **kwargs: object) -> None:
    raise NetworkUsed(f"entry-point tests with fakes must not use the network (attempted with {args!r})")


def forbid_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any connection attempt fail loudly (the fakes must answer everything)."""
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)
    monkeypatch.setattr(socket, "getaddrinfo", _refuse)


def _gate_raw(env_raw: dict[str, Any], allowed: list[str] | None) -> dict[str, Any]:
    env = Environment.from_raw(env_raw)
    pretty, description = describe(env)
    spec: dict[str, Any] = {"rolloutRef": {"name": env.rollout_name}, "passing": True}
    if allowed is not None:
        spec["allowedVersions"] = list(allowed)
    return {
        "apiVersion": "kuberik.com/v1alpha1",
        "kind": "RolloutGate",
        "metadata": {
            "name": f"{env.name}-stagegate",
            "namespace": env.namespace,
            "resourceVersion": "1",
            "labels": {MANAGED_BY_LABEL: MANAGED_BY},
            "annotations": {PRETTY_NAME_ANNOTATION: pretty, DESCRIPTION_ANNOTATION: description},
            "ownerReferences": [
                {
                    "apiVersion": "environments.kuberik.com/v1alpha1",
                    "kind": "Environment",
                    "name": env.name,
                    "uid": env.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }


class InMemoryKube:
    """Gates, Environments and Rollouts in memory, with the API's conditional-write semantics."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Back to the starting world (one app: `staging` -> `prod`)."""
        prod = environment_raw("prod")
        staging = environment_raw("staging", uid=STAGING_UID, rollout="myapp-staging", relationship=None)
        self.environments: dict[tuple[str, str], dict[str, Any]] = {
            (NAMESPACE, "prod"): prod,
            (NAMESPACE, "staging"): staging,
        }
        self.rollouts: dict[tuple[str, str], dict[str, Any]] = {
            (NAMESPACE, "myapp"): {
                "apiVersion": "kuberik.com/v1alpha1",
                "kind": "Rollout",
                "metadata": {"name": "myapp", "namespace": NAMESPACE},
                "status": {"releaseCandidates": [{"tag": "a", "revision": "aaaaaaa"}]},
            }
        }
        self.gates: dict[tuple[str, str], dict[str, Any]] = {
            (NAMESPACE, "prod-stagegate"): _gate_raw(prod, ALLOWED),
            (NAMESPACE, "staging-stagegate"): _gate_raw(staging, None),
        }
        self.writes = 0
        self.warnings: list[str] = []
        self._version = 1

    def snapshot(self) -> dict[tuple[str, str], dict[str, Any]]:
        return copy.deepcopy(self.gates)

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    # GateStore
    def list_gates(self, namespace: str | None) -> list[RolloutGate]:
        return [
            RolloutGate.from_raw(copy.deepcopy(g))
            for (ns, _), g in self.gates.items()
            if namespace is None or ns == namespace
        ]

    def create_gate(self, namespace: str, body: Mapping[str, Any]) -> RolloutGate:
        raw = copy.deepcopy(dict(body))
        name = raw["metadata"]["name"]
        if (namespace, name) in self.gates:
            raise KubeConflict(f"create RolloutGate {namespace}/{name}: HTTP 409 AlreadyExists")
        raw["metadata"].update(namespace=namespace, resourceVersion=self._next_version())
        self.gates[(namespace, name)] = raw
        self.writes += 1
        return RolloutGate.from_raw(copy.deepcopy(raw))

    def patch_gate(
        self, namespace: str, name: str, patch: Mapping[str, Any], resource_version: str
    ) -> RolloutGate:
        current = self.gates.get((namespace, name))
        if current is None:
            raise KubeNotFound(f"patch RolloutGate {namespace}/{name}: HTTP 404")
        if current["metadata"].get("resourceVersion") != resource_version:
            raise KubeConflict(f"patch RolloutGate {namespace}/{name}: HTTP 409 Conflict")
        patched = merge_patch(current, patch)
        patched["metadata"]["resourceVersion"] = self._next_version()
        self.gates[(namespace, name)] = patched
        self.writes += 1
        return RolloutGate.from_raw(copy.deepcopy(patched))

    def warn(self, env: Environment, reason: str, message: str) -> None:
        self.warnings.append(f"{env.key}: {reason}: {message}")

    # RecomputeStore
    def get_environment(self, namespace: str, name: str) -> Environment | None:
        raw = self.environments.get((namespace, name))
        return None if raw is None else Environment.from_raw(copy.deepcopy(raw))

    def list_environments(self, namespaces: Sequence[str] = ()) -> list[Environment]:
        return [
            Environment.from_raw(copy.deepcopy(raw))
            for (ns, _), raw in self.environments.items()
            if not namespaces or ns in namespaces
        ]

    def get_rollout(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        raw = self.rollouts.get((namespace, name))
        return None if raw is None else copy.deepcopy(raw)

    def list_rollouts(self, namespace: str | None) -> list[Mapping[str, Any]]:
        return [
            copy.deepcopy(raw)
            for (ns, _), raw in sorted(self.rollouts.items())
            if namespace is None or ns == namespace
        ]


class FailingGitHub:
    """An upstream that is never reachable: every call raises `RetryableError` and is counted."""

    def __init__(self) -> None:
        self.calls = 0

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):  # not an Upstream method (tools probe `__len__`, `_repr_pretty_`, ...)
            raise AttributeError(name)

        def unavailable(*args: object, **kwargs: object) -> Any:
            self.calls += 1
            raise RetryableError(f"GitHub unavailable (in-memory fake, {name})")

        return unavailable


class RecordingTransport:
    """The bridge's transport: keeps what would have been published."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    def publish(self, events: Sequence[Any]) -> None:
        from stagegate.bridge import messages_of

        self.publish_messages(messages_of(events))

    def publish_messages(self, messages: Sequence[tuple[str, bytes]]) -> None:
        self.messages += [body for _, body in messages]


def never_wider(before: Mapping[tuple[str, str], Mapping[str, Any]], kube: InMemoryKube) -> None:
    """Fail unless every gate of a stored Environment with a relationship is as closed as it was."""
    for env_raw in kube.environments.values():
        env = Environment.from_raw(env_raw)
        if env.relationship is None:
            continue
        for key, old in before.items():
            refs = old["metadata"].get("ownerReferences") or []
            if not any(r.get("uid") == env.uid for r in refs):
                continue
            new = kube.gates.get(key)
            assert new is not None, f"gate {key} of {env.key} disappeared"
            new_refs = new["metadata"].get("ownerReferences") or []
            assert any(r.get("uid") == env.uid for r in new_refs), f"gate {key} lost its owner {env.key}"
            assert new["spec"].get("rolloutRef") == old["spec"].get("rolloutRef"), (
                f"gate {key} moved from {old['spec'].get('rolloutRef')} to {new['spec'].get('rolloutRef')}"
            )
            was, now = old["spec"].get("allowedVersions"), new["spec"].get("allowedVersions")
            assert now is not None, f"gate {key} of {env.key} became unrestricted (was {was})"
            assert set(now) <= set(was or []), f"gate {key} of {env.key} widened from {was} to {now}"
            if old["spec"].get("passing") is False:
                assert new["spec"].get("passing") is False, f"gate {key} of {env.key} started passing"


def write_kubeconfig(path: Path) -> Path:
    """A kubeconfig for a server that is never contacted (the fakes replace the client)."""
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
        "clusters: [{name: fake, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: fake, user: {token: fake}}]\n"
        "contexts: [{name: fake, context: {cluster: fake, user: fake}}]\n"
    )
    return path


def function_env(kubeconfig: Path) -> dict[str, str]:
    """What every function reads at start; generous deadlines so a noisy machine cannot cause a 503."""
    return {
        "KUBECONFIG": str(kubeconfig),
        "AUDIT_WEBHOOK_TOKEN": AUDIT_TOKEN,
        "RESYNC_TOKEN": RESYNC_TOKEN,
        "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GITHUB_TOKEN": "not-a-real-token",
        "GITHUB_API_URL": "http://127.0.0.1:9",
        "AUDIT_DEADLINE_SECONDS": "120",
        "GITHUB_WEBHOOK_DEADLINE_SECONDS": "120",
        "BRIDGE_TRANSPORT": "eventbridge",
        "BRIDGE_EVENT_BUS": "never-contacted",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",  # without credentials boto3 asks the instance metadata service
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@contextmanager
def environment_variables(values: Mapping[str, str]) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in values.items():
            patch.setenv(key, value)
        for key in ("FUNCTION_TARGET", "FUNCTION_SIGNATURE_TYPE", "FUNCTION_SOURCE"):
            patch.delenv(key, raising=False)
        yield


def load_function(function: str, target: str) -> tuple[Any, ModuleType]:
    """`functions/<function>/main.py` served by functions-framework in-process, and its module."""
    source = ROOT / "functions" / function / "main.py"
    app = functions_framework.create_app(target, str(source))
    module = sys.modules["main"]
    assert Path(module.__file__ or "").resolve() == source
    return app, module


@dataclass
class EntryPoints:
    """Every entry point, in-process, wired to one set of fakes."""

    kube: InMemoryKube
    github: FailingGitHub
    transport: RecordingTransport
    audit_http: FlaskClient
    audit_event: FlaskClient
    audit_module: ModuleType
    webhook: FlaskClient
    resync: FlaskClient
    bridge: FlaskClient
    aws: ModuleType

    def reset(self) -> None:
        """The starting world again, nothing asked of GitHub, nothing published."""
        self.kube.reset()
        self.github.calls = 0
        self.transport.messages.clear()


def entry_points(workdir: Path) -> EntryPoints:
    """Load every function with this module's settings and replace its clients with the fakes."""
    kube, github, transport = InMemoryKube(), FailingGitHub(), RecordingTransport()
    with environment_variables(function_env(write_kubeconfig(workdir / "kubeconfig"))):
        audit_http, audit_module = load_function("k8s_audit", "k8s_audit_http")
        audit_module.CONTEXT = dataclasses.replace(audit_module.CONTEXT, kube=kube, upstream=github)
        audit_event, audit_event_module = load_function("k8s_audit", "k8s_audit")
        audit_event_module.CONTEXT = audit_module.CONTEXT
        webhook, webhook_module = load_function("github_webhook", "github_webhook")
        webhook_module.KUBE, webhook_module.UPSTREAM = kube, github
        resync, resync_module = load_function("resync", "resync_http")
        resync_module.KUBE, resync_module.UPSTREAM = kube, github
        bridge, bridge_module = load_function("audit_bridge", "audit_bridge")
        bridge_module.TRANSPORT = transport
        aws = load_lambda_module()
        aws.KUBE, aws.UPSTREAM = kube, github
        aws.CONTEXT = dataclasses.replace(aws.CONTEXT, kube=kube, upstream=github)
    return EntryPoints(
        kube=kube,
        github=github,
        transport=transport,
        audit_http=audit_http.test_client(),
        audit_event=audit_event.test_client(),
        audit_module=audit_event_module,
        webhook=webhook.test_client(),
        resync=resync.test_client(),
        bridge=bridge.test_client(),
        aws=aws,
    )


def load_lambda_module() -> ModuleType:
    """`functions/aws_lambda/main.py` loaded the way Lambda loads it."""
    import importlib.util

    source = ROOT / "functions" / "aws_lambda" / "main.py"
    spec = importlib.util.spec_from_file_location("stagegate_lambda_main_for_tests", source)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
