"""Fixtures for the function tests: the processes serving functions, and the GitHub stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stagegate import devstack
from stagegate.fake_github import FakeGitHub


@pytest.fixture(scope="module")
def procs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.Processes]:
    """Function servers started by a test module, stopped when it ends; their logs under `log_dir`."""
    processes = devstack.Processes(tmp_path_factory.mktemp("functions"))
    yield processes
    processes.stop_all()


@pytest.fixture(scope="module")
def fake(octokit: Path) -> Iterator[FakeGitHub]:
    """The GitHub stand-in; every answer it gave must have matched GitHub's published descriptions."""
    with FakeGitHub(assets=octokit) as server:
        yield server
        assert server.schema_errors == []
