"""The runtime never imports the `kubernetes` package: its import alone costs every cold start ~330 ms.

Each function's `main.py` is loaded in a fresh interpreter the way functions-framework loads it
(`functions_framework._function_registry.load_function_module`), with configuration pointing at
nothing that answers, as `bench/bench_cold_start.py` starts them; then every other runtime module is
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
LOADED = (
    "import json, sys; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'kubernetes')))"
)


def loaded_after(code: str, tmp_path: Path) -> list[str]:
    """The `kubernetes` modules a fresh interpreter has loaded after running `code`."""
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
    }
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{LOADED}"],
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


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_function_loaded_as_functions_framework_does_imports_no_kubernetes(
    function: str, tmp_path: Path
) -> None:
    source = ROOT / "functions" / function / "main.py"
    code = (
        "from functions_framework._function_registry import load_function_module\n"
        f"module, spec = load_function_module({str(source)!r})\n"
        "spec.loader.exec_module(module)\n"
        "import stagegate.kube; stagegate.kube.KubeGates  # the client is built at import\n"
    )
    assert loaded_after(code, tmp_path) == []


def test_no_runtime_module_imports_kubernetes(tmp_path: Path) -> None:
    assert "stagegate.kube_http" in RUNTIME_MODULES
    code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in RUNTIME_MODULES)
    assert loaded_after(code, tmp_path) == []


def test_the_check_would_see_kubernetes(tmp_path: Path) -> None:
    assert loaded_after("import stagegate_dev.devstack", tmp_path) != []
