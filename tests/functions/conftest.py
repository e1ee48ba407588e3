"""Fixtures for the function tests: the processes serving functions, a Kubernetes API that hangs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stagegate_dev import devstack
from tests.hanging_server import hanging_server


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
