"""GitHub's published descriptions and examples, as installed by scripts/octokit-assets.sh."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stagegate_dev.fake_github import AssetsUnavailable
from stagegate_dev.fake_github.contracts import octokit_assets


def require_octokit() -> Path:
    """The octokit node_modules; skip without them, except in CI where their absence fails the run."""
    try:
        return octokit_assets()
    except AssetsUnavailable as exc:
        message = f"octokit npm assets unavailable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
