"""What the admission function tests share: the function's identity on the test apiserver, and the
shipped webhook configuration registered for one test module (kept apart from the other modules
sharing the apiserver by an isolation label on the namespaces it selects)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client, config

from stagegate_dev import devstack
from tests.kube_objects import ENV_ARGS, environment, list_gates

SOURCE = devstack.ROOT / "functions" / "k8s_admission" / "main.py"
GUARD_LABEL = {"stagegate.kuberik.com/guard": "enabled"}

ADMISSION_RBAC = devstack.ROOT / "infra" / "k8s" / "admission-rbac.yaml"


def admission_identity(kube_stack: devstack.KubeStack) -> Path:
    """The functions' ServiceAccount (`rbac.yaml`) with `admission-rbac.yaml` applied too, once the
    authorizer has the new binding."""
    kubeconfig = kube_stack.function_kubeconfig
    kube_stack.apply_rbac(ADMISSION_RBAC)
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    devstack.wait_until(lambda: core.read_namespace("default"), 30, "namespaces get for the ServiceAccount")
    return kubeconfig


@contextmanager
def registered_admission(
    kube_stack: devstack.KubeStack, procs: devstack.Processes, isolation: dict[str, str]
) -> Iterator[dict[str, Any]]:
    """`k8s_admission` served over TLS as its ServiceAccount and registered for namespaces labelled
    `isolation`; returns once the apiserver calls it, removed at the end."""
    settings = {"KUBECONFIG": str(admission_identity(kube_stack)), "ADMISSION_DEADLINE_SECONDS": "3"}
    server = devstack.FunctionServer(SOURCE, "k8s_admission", settings, kube_stack.tls, procs)
    name = "stagegate-test-" + "-".join(isolation.values())
    config = devstack.admission_configuration(server.url, kube_stack.tls.ca_file, name, isolation)
    api = client.AdmissionregistrationV1Api(kube_stack.api_client())
    api.create_validating_webhook_configuration(config)
    try:
        _wait_until_effective(kube_stack, isolation)
        yield config
    finally:
        api.delete_validating_webhook_configuration(name)


def _wait_until_effective(kube_stack: devstack.KubeStack, isolation: dict[str, str]) -> None:
    """The apiserver picks new webhook configurations up asynchronously: create until the gate is there."""
    custom = client.CustomObjectsApi(kube_stack.api_client())
    probe = labelled_namespace(kube_stack, {**isolation, **GUARD_LABEL}, "probe")
    attempt = iter(range(1000))

    def effective() -> bool:
        name = f"probe-{next(attempt)}"
        custom.create_namespaced_custom_object(*ENV_ARGS, probe, "environments", environment(probe, name))
        return any(g["metadata"]["name"] == f"{name}-stagegate" for g in list_gates(custom, probe))

    devstack.wait_until(effective, 30, "the admission webhook")


def labelled_namespace(kube_stack: devstack.KubeStack, labels: dict[str, str], prefix: str) -> str:
    name = f"{prefix}-{secrets.token_hex(4)}"
    client.CoreV1Api(kube_stack.api_client()).create_namespace({"metadata": {"name": name, "labels": labels}})
    return name
