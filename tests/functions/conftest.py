"""Fixtures for the function tests: the processes serving functions."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stagegate_dev import devstack


@pytest.fixture(scope="module")
def procs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.Processes]:
    """Function servers started by a test module, stopped when it ends; their logs under `log_dir`."""
    processes = devstack.Processes(tmp_path_factory.mktemp("functions"))
    yield processes
    processes.stop_all()
