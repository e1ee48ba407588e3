"""The runtime never imports the `kubernetes` package, and no function imports PyGithub at start.

`kubernetes` alone costs every cold start ~330 ms; PyGithub (with requests, jwt and cryptography)
~150 ms, and most events never ask GitHub, so it is imported when GitHub is first asked.
Each function's `main.py` is loaded in a fresh interpreter the way functions-framework loads it
(`functions_framework._function_registry.load_function_module`), with configuration pointing at
nothing that answers and GitHub credentials set (so every function that can ask GitHub builds its
reader), as `bench/bench_cold_start.py` starts them; for `kubernetes`, every other runtime module is
imported too. Dev tooling (devstack, demo, fake_github, devtools) and the tests may use it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/main.py"))
DEV_ONLY = {"devstack", "demo", "fake_github", "devtools"}
RUNTIME_MODULES = sorted(
    f"stagegate.{p.stem}"
    for p in (ROOT / "stagegate").glob("*.py")
    if p.stem not in DEV_ONLY and p.stem != "__main__"
) + sorted(f"shared.{p.stem}" for p in (ROOT / "shared").glob("*.py"))
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:9", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: import-test-token}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""
LOADED = "import json, sys; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {top!r})))"
READERS = {
    "github_webhook": "module.UPSTREAM",
    "k8s_audit": "module.CONTEXT.upstream",
    "reporter": "module.GITHUB",
    "resync": "module.UPSTREAM",
    "aws_lambda": "module.UPSTREAM",
}
"""Each function that asks GitHub, and where its GitHub reader is."""
PYGITHUB = frozenset({"github", "jwt"})
"""PyGithub, and the JWT library it imports for GitHub App authentication (with cryptography)."""


def loaded_after(
    code: str,
    tmp_path: Path,
    top: frozenset[str] = frozenset({"kubernetes"}),
    extra: dict[str, str] | None = None,
) -> list[str]:
    """The modules of the packages `top` a fresh interpreter has loaded after running `code`, with the
    configuration below and `extra`."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "KUBECONFIG": str(kubeconfig),
        "GITHUB_TOKEN": "ghp_import0000000000000000000000000000",
        "GITHUB_API_URL": "http://127.0.0.1:9",
        "GITHUB_WEBHOOK_SECRET": "import-secret",
        "AUDIT_WEBHOOK_TOKEN": "import-audit-token",
        "RESYNC_TOKEN": "import-resync-token",
        "BRIDGE_TRANSPORT": "pubsub",
        "BRIDGE_PUBSUB_TOPIC": "projects/p/topics/t",
        "PUBSUB_EMULATOR_HOST": "127.0.0.1:9",
        "AWS_DEFAULT_REGION": "us-east-1",
    } | (extra or {})
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{LOADED.format(top=set(top))}"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.splitlines()[-1])
    return loaded


def load_as_functions_framework(function: str) -> str:
    """Code that loads `functions/<function>/main.py` as `module`, the way functions-framework does."""
    source = ROOT / "functions" / function / "main.py"
    return (
        "from functions_framework._function_registry import load_function_module\n"
        f"module, spec = load_function_module({str(source)!r})\n"
        "spec.loader.exec_module(module)\n"
    )


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_function_loaded_as_functions_framework_does_imports_no_kubernetes(
    function: str, tmp_path: Path
) -> None:
    code = load_as_functions_framework(function) + (
        "import stagegate.kube; stagegate.kube.KubeGates  # the client is built at import\n"
    )
    assert loaded_after(code, tmp_path) == []


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_function_loaded_as_functions_framework_does_imports_no_pygithub(
    function: str, tmp_path: Path
) -> None:
    assert loaded_after(load_as_functions_framework(function), tmp_path, PYGITHUB) == []


def test_every_function_that_asks_github_is_checked() -> None:
    assert set(READERS) <= set(FUNCTIONS)
    assert {"github_webhook", "reporter", "resync"} <= set(READERS)


@pytest.mark.parametrize("function", sorted(READERS))
def test_a_function_imports_pygithub_when_its_reader_first_asks_github(function: str, tmp_path: Path) -> None:
    code = load_as_functions_framework(function) + (
        f"reader = {READERS[function]}\n"
        "import sys; assert 'github' not in sys.modules, 'PyGithub was imported at start'\n"
        "reader.github  # what the first GitHub call does first\n"
    )
    assert "github" in loaded_after(code, tmp_path, PYGITHUB)


AS_DEPLOYED_ON_GCP = {"REPORT_TRANSPORT": "pubsub", "REPORT_PUBSUB_TOPIC": "projects/p/topics/reports"}
"""`k8s_audit_http` as `infra/gcp` configures it: Rollout changes go on to the reporter through Pub/Sub."""


def test_k8s_audit_makes_its_pubsub_client_on_the_first_hand_off_not_at_start(tmp_path: Path) -> None:
    """A cold instance's first Environment create must not wait for the Pub/Sub SDK (~270 ms)."""
    code = load_as_functions_framework("k8s_audit") + (
        "import sys; assert 'google.cloud.pubsub_v1' not in sys.modules, 'Pub/Sub SDK imported at start'\n"
        "module.REPORTS.publish([])  # the first hand-off\n"
    )
    assert "google.cloud.pubsub_v1" in loaded_after(code, tmp_path, frozenset({"google"}), AS_DEPLOYED_ON_GCP)


def test_no_runtime_module_imports_kubernetes(tmp_path: Path) -> None:
    assert "stagegate.kube_http" in RUNTIME_MODULES
    code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in RUNTIME_MODULES)
    assert loaded_after(code, tmp_path) == []


def test_the_check_would_see_kubernetes(tmp_path: Path) -> None:
    assert loaded_after("import stagegate_dev.devstack", tmp_path) != []


def test_the_check_would_see_pygithub(tmp_path: Path) -> None:
    assert "github" in loaded_after("import stagegate.github_http", tmp_path, PYGITHUB)
