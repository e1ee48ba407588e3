"""Fixtures for the function tests: the processes serving functions, a Kubernetes API that hangs, the
Pub/Sub emulator and moto (AWS) with the environment that points clients at them, and the shipped
admission webhooks registered for one module's namespaces."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stagegate_dev import devstack
from tests.functions.admission_support import registered_admission
from tests.hanging_server import hanging_server


@pytest.fixture(scope="module")
def isolation(request: pytest.FixtureRequest) -> dict[str, str]:
    """A label only this module's namespaces carry, so the webhooks it registers select them alone (the
    apiserver is shared by every module)."""
    module = request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")[:40]
    return {"stagegate-test-module": f"{module}-{secrets.token_hex(4)}"}


@pytest.fixture(scope="module")
def registered(
    kube_stack: devstack.KubeStack, procs: devstack.Processes, isolation: dict[str, str]
) -> Iterator[dict[str, Any]]:
    """The shipped admission webhooks (`infra/k8s/admission.yaml`) registered for `isolation`'s namespaces."""
    with registered_admission(kube_stack, procs, isolation) as config:
        yield config


@pytest.fixture(scope="module")
def procs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.Processes]:
    """Function servers started by a test module, stopped when it ends; their logs under `log_dir`."""
    processes = devstack.Processes(tmp_path_factory.mktemp("functions"))
    yield processes
    processes.stop_all()


@pytest.fixture
def black_hole(tmp_path: Path, kube_stack: devstack.KubeStack) -> Iterator[Path]:
    """A kubeconfig whose server accepts connections and never answers: a Kubernetes API that hangs."""
    with hanging_server() as port:
        yield devstack.write_kubeconfig(
            tmp_path / "hang", f"https://127.0.0.1:{port}", kube_stack.tls.ca_file, "t"
        )


@pytest.fixture(scope="module")
def emulator(procs: devstack.Processes) -> devstack.PubSubEmulator:
    return devstack.PubSubEmulator(procs)


@pytest.fixture(scope="module")
def pubsub(emulator: devstack.PubSubEmulator) -> Iterator[Any]:
    """`google.cloud.pubsub_v1`, its clients pointed at the emulator for the module's tests."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PUBSUB_EMULATOR_HOST", emulator.host)
        from google.cloud import pubsub_v1

        yield pubsub_v1


@pytest.fixture(scope="module")
def aws(procs: devstack.Processes) -> Iterator[dict[str, str]]:
    """moto in server mode; its endpoint and fake credentials in the environment for the module's tests."""
    moto = devstack.MotoServer(procs)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in moto.env().items():
            patch.setenv(key, value)
        yield moto.env()
