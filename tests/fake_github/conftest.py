"""Fixtures of the fake GitHub's tests: a fake serving `REPO` per test, and a PyGithub client for it.

Every fake must end with no schema errors: whatever it answered matched GitHub's published
descriptions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from github import Github

from stagegate_dev.fake_github import FakeGitHub
from tests.fake_github.support import REPO, client


@pytest.fixture(scope="session")
def assets(octokit: Path) -> Path:
    return octokit


@pytest.fixture
def fake(assets: Path) -> Iterator[FakeGitHub]:
    with FakeGitHub(repos=[REPO], assets=assets) as server:
        yield server
        assert server.schema_errors == []


@pytest.fixture
def make_fake(assets: Path) -> Iterator[Callable[..., FakeGitHub]]:
    """Started fakes with other settings (e.g. `listing=`), each checked for schema errors at the end."""
    made: list[FakeGitHub] = []
    with ExitStack() as stack:

        def make(**settings: Any) -> FakeGitHub:
            server = stack.enter_context(FakeGitHub(repos=[REPO], assets=assets, **settings))
            made.append(server)
            return server

        yield make
    assert [error for server in made for error in server.schema_errors] == []


@pytest.fixture
def gh(fake: FakeGitHub) -> Github:
    return client(fake)
