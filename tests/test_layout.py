"""What a deploy runs imports only the runtime: never the dev tools (`stagegate_dev`: the local stack,
the GitHub stand-in, the demo) or the tests, and only what its trigger needs (no PyGithub where GitHub
is not asked, no cloud SDK that is not the configured transport)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:9", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: layout-token-0123456789}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""
GITHUB = {"GITHUB_TOKEN": "ghp_layout000000000000000000000000000", "GITHUB_API_URL": "http://127.0.0.1:9"}
PUBSUB = {"BRIDGE_TRANSPORT": "pubsub", "BRIDGE_PUBSUB_TOPIC": "projects/p/topics/t"}
NEVER = ("stagegate_dev", "tests", "pytest")

# folder, configuration as deployed, modules it must not load
CASES = [
    ("k8s_audit", {}, ("github", "google.cloud.pubsub_v1", "boto3")),
    ("k8s_admission", {}, ("github", "google.cloud.pubsub_v1", "boto3")),
    ("github_webhook", {**GITHUB, "GITHUB_WEBHOOK_SECRET": "s"}, ("google.cloud.pubsub_v1", "boto3")),
    ("resync", {**GITHUB, "RESYNC_TOKEN": "t"}, ("google.cloud.pubsub_v1", "boto3")),
    # It answers GitHub only: no Kubernetes client, and PyGithub only once a delivery asks GitHub.
    ("github_protection_rule", {**GITHUB, "GITHUB_WEBHOOK_SECRET": "s"}, ("kubernetes", "github", "boto3")),
    ("reporter", GITHUB, ("google.cloud.pubsub_v1", "boto3")),
    ("audit_bridge", PUBSUB, ("github", "boto3")),
    ("aws_lambda", GITHUB, ("google.cloud.pubsub_v1",)),
]

LOAD = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("main", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize(("folder", "env", "absent"), CASES, ids=[c[0] for c in CASES])
def test_a_function_loads_only_the_runtime_and_what_its_trigger_needs(
    tmp_path: Path, folder: str, env: dict[str, str], absent: tuple[str, ...]
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    run = subprocess.run(
        [sys.executable, "-c", LOAD, str(ROOT / "functions" / folder / "main.py")],
        env={
            "PATH": os.environ.get("PATH", ""),
            "KUBECONFIG": str(kubeconfig),
            "PUBSUB_EMULATOR_HOST": "127.0.0.1:9",
            "AWS_REGION": "eu-west-1",
            **env,
        },
        cwd=tmp_path,  # not the repository root: what is importable is what a deploy installs
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    loaded = json.loads(run.stdout.splitlines()[-1])
    for name in (*NEVER, *absent):
        assert not [m for m in loaded if m == name or m.startswith(f"{name}.")], f"{folder} loaded {name}"


def test_the_distribution_ships_the_runtime_only() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    assert "stagegate_dev" not in include
    assert not any(pattern.endswith("*") and "stagegate_dev".startswith(pattern[:-1]) for pattern in include)
    runtime = {p.stem for p in (ROOT / "stagegate").glob("*.py")} | {
        p.name for p in (ROOT / "stagegate").iterdir() if p.is_dir() and p.name != "__pycache__"
    }
    assert not runtime & {"devstack", "fake_github", "demo", "serve", "devtools", "rollout_model"}
    for source in [*(ROOT / "stagegate").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]:
        assert "stagegate_dev" not in source.read_text(), f"{source} refers to the dev tools"


def test_the_license_file_states_the_license_pyproject_declares() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    text = (ROOT / "LICENSE").read_text()
    assert text.splitlines()[0] == f"SPDX-License-Identifier: {declared}"
    assert "https://www.apache.org/licenses/LICENSE-2.0" in text  # where the full text is published


def test_stagegate_version_is_the_one_pyproject_declares() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    run = subprocess.run([sys.executable, "-m", "stagegate", "--version"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    assert run.stdout.strip() == f"stagegate {declared}"


def test_the_changelogs_newest_version_is_the_one_pyproject_declares() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    versions = re.findall(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), flags=re.MULTILINE)
    assert versions, "CHANGELOG.md names no version"
    assert versions[0] == declared, f"CHANGELOG.md's newest is {versions[0]}, pyproject.toml says {declared}"
    assert len(set(versions)) == len(versions), "a version is listed twice"
