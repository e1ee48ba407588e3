"""Every local tool behaves as a command: `--help` prints usage and starts nothing, an unknown argument
is refused (exit 2), before any process is started."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from stagegate_dev.devstack import ROOT
from tests.test_demo import processes_marked

COMMANDS = [
    ["-m", "stagegate_dev.demo"],
    ["-m", "stagegate_dev.dev"],
    ["-m", "stagegate_dev.devstack"],
    ["-m", "stagegate_dev.github_cli"],
    ["-m", "stagegate_dev.serve"],
    ["-m", "stagegate"],
    ["-m", "stagegate.follower"],
    *[[str(path.relative_to(ROOT))] for path in sorted((ROOT / "bench").glob("bench_*.py"))],
    *[[str(path.relative_to(ROOT))] for path in sorted((ROOT / "scripts").glob("*.py"))],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize("argument", ["--help", "--no-such-flag"])
def test_help_prints_usage_and_starts_nothing(command: list[str], argument: str) -> None:
    marker = str(uuid.uuid4())
    env = dict(os.environ) | {"STAGEGATE_COMMAND_TEST": marker}
    run = subprocess.run([sys.executable, *command, argument], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60, check=False)  # fmt: skip
    if argument == "--help":
        assert run.returncode == 0, run.stderr
        assert run.stdout.startswith("usage: "), run.stdout
    else:
        assert run.returncode == 2, run.stdout + run.stderr
        assert run.stderr.startswith("usage: "), run.stderr
        assert ": error: " in run.stderr, run.stderr
    assert processes_marked(marker) == []


def test_the_follower_without_github_credentials_stops_at_start_naming_them() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")} | {
        "KUBECONFIG": "/nonexistent"
    }
    run = subprocess.run([sys.executable, "-m", "stagegate.follower"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60, check=False)  # fmt: skip
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.startswith("stagegate follower: "), run.stderr
    assert "GITHUB_TOKEN" in run.stderr, run.stderr
