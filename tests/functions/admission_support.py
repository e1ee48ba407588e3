"""What the admission function tests share: the function's identity on the test apiserver."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client, config

from stagegate import devstack

ADMISSION_RBAC = devstack.ROOT / "infra" / "k8s" / "admission-rbac.yaml"


def admission_identity(kube_stack: devstack.KubeStack) -> Path:
    """The functions' ServiceAccount (`rbac.yaml`) with `admission-rbac.yaml` applied too, once the
    authorizer has the new binding."""
    kubeconfig = kube_stack.function_kubeconfig
    kube_stack.apply_rbac(ADMISSION_RBAC)
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    devstack.wait_until(lambda: core.read_namespace("default"), 30, "namespaces get for the ServiceAccount")
    return kubeconfig
