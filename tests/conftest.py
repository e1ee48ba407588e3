"""Shared fixtures: the real kube-apiserver stack, per CRD set, and a fresh namespace per test.

Every test that needs Kubernetes runs twice: against the project's own CRDs (`infra/k8s/crds`) and,
for compatibility, against the real kuberik CRDs in `../shared/reference/crds`. Outside CI a missing
reference folder skips the compatibility half with a reason; in CI it is a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from stagegate.kube import KubeGates, api_client
from stagegate.kube_http import KubeClient
from stagegate_dev import devstack
from stagegate_dev.fake_github import FakeGitHub
from tests.octokit import require_octokit

CRD_SETS = {"project": devstack.PROJECT_CRDS, "kuberik": devstack.KUBERIK_CRDS}


@pytest.fixture(scope="session", params=sorted(CRD_SETS))
def crd_dir(request: pytest.FixtureRequest) -> Path:
    path = CRD_SETS[request.param]
    if not path.is_dir():
        message = f"reference CRDs not found at {path}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def kube_stack(crd_dir: Path) -> Iterator[devstack.KubeStack]:
    with devstack.KubeStack(crd_dir) as stack:
        yield stack


@pytest.fixture
def namespace(kube_stack: devstack.KubeStack) -> Iterator[str]:
    name = f"t-{secrets.token_hex(4)}"
    core = client.CoreV1Api(kube_stack.api_client())
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


@pytest.fixture
def counting_client(kube_stack: devstack.KubeStack) -> KubeClient:
    return api_client(str(kube_stack.function_kubeconfig))


@pytest.fixture
def gates(counting_client: KubeClient) -> KubeGates:
    return KubeGates(counting_client, timeout=10)


@pytest.fixture
def custom(kube_stack: devstack.KubeStack) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_stack.api_client())


@pytest.fixture(scope="session")
def octokit() -> Path:
    """GitHub's published descriptions and examples (npm); skipped without them, except in CI."""
    return require_octokit()


@pytest.fixture(scope="module")
def fake(octokit: Path) -> Iterator[FakeGitHub]:
    """The GitHub stand-in; every answer it gave must have matched GitHub's published descriptions."""
    with FakeGitHub(assets=octokit) as server:
        yield server
        assert server.schema_errors == []
