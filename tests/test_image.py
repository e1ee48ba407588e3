"""The install's image, built here as `make image` builds it (buildah, no daemon; the base made by
debootstrap, since no registry can be pulled from), then run: every function the install serves answers
its health probe and refuses a request without credentials, as the non-root user; the follower starts;
the image holds the project and its pinned dependencies, and no tests, no `stagegate_dev` (the local
stack and the GitHub stand-in), no credentials and not the CA the build trusted.

Needs root (buildah's chroot isolation), as `.ci/run` has; the script installs buildah and debootstrap.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stagegate_dev import devstack
from stagegate_dev.devstack import ROOT

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
SERVED = {  # target -> source, as infra/k8s serves them (the install's containers and admission.yaml)
    "k8s_admission": "functions/k8s_admission/main.py",
    "k8s_audit_http": "functions/k8s_audit/main.py",
    "github_webhook": "functions/github_webhook/main.py",
    "github_protection_rule": "functions/github_protection_rule/main.py",
    "resync_http": "functions/resync/main.py",
    "reporter_http": "functions/reporter/main.py",
}
APP = {"LICENSE", "README.md", "functions", "pyproject.toml", "requirements.lock", "shared", "stagegate"}
ENV = {"BUILDAH_ISOLATION": "chroot"}


def buildah(*args: str, timeout: float = 120) -> str:
    run = subprocess.run(["buildah", *args], capture_output=True, text=True, timeout=timeout, check=False,
                         env={**os.environ, **ENV})  # fmt: skip
    assert run.returncode == 0, f"buildah {' '.join(args)}: {run.stderr}"
    return run.stdout.strip()


@pytest.fixture(scope="module")
def image() -> str:
    if os.geteuid() != 0 and os.environ.get("CI") != "true":
        pytest.skip("building the image needs root (buildah's chroot isolation); CI runs as root")
    built = subprocess.run(["bash", "scripts/image.sh"], cwd=ROOT, capture_output=True, text=True,
                           timeout=1200, check=False)  # fmt: skip
    assert built.returncode == 0, built.stderr[-4000:]
    return built.stdout.strip()


@pytest.fixture(scope="module")
def container(image: str) -> Iterator[str]:
    name = buildah("from", image)
    yield name
    buildah("rm", name)


@pytest.fixture(scope="module")
def root_fs(container: str) -> Iterator[Path]:
    yield Path(buildah("mount", container))
    buildah("umount", container)


def test_the_image_runs_as_a_non_root_user_and_carries_its_version(image: str, container: str) -> None:
    config: dict[str, Any] = json.loads(buildah("inspect", "--type", "image", image))["OCIv1"]["config"]
    assert config["User"] == "65532:65532"
    assert config["Labels"]["org.opencontainers.image.version"] == VERSION
    assert not any(e.startswith("PIP_CERT=") for e in config["Env"])  # the build's CA stays outside
    assert buildah("run", container, "--", "id", "-u") == "65532"
    assert buildah("run", container, "--", "python", "-m", "stagegate", "--version") == f"stagegate {VERSION}"


def test_the_image_holds_the_project_and_nothing_of_the_tests_or_the_local_stack(root_fs: Path) -> None:
    assert {p.name for p in (root_fs / "app").iterdir()} == APP
    site = next((root_fs / "opt" / "stagegate" / "lib").glob("python3*/site-packages"))
    installed = {p.name for p in site.iterdir()}
    assert {"stagegate", "shared", "functions_framework", "prometheus_client"} <= installed
    assert not {"stagegate_dev", "tests", "pytest", "moto", "kubernetes"} & installed
    for folder in (root_fs / "app", site / "stagegate", site / "shared"):
        for path in folder.rglob("*"):
            assert path.suffix not in {".pem", ".key", ".crt"}, path
            assert path.name not in {"kubeconfig", ".env", "build-ca"}, path
    assert not (root_fs / "run" / "secrets" / "build-ca").exists()  # the build's CA stays outside


@pytest.fixture(scope="module")
def configuration(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Enough for every function to start (nothing is reached): a kubeconfig to nowhere, tokens."""
    folder = tmp_path_factory.mktemp("image-config")
    tls = devstack.Tls(folder)
    kubeconfig = devstack.write_kubeconfig(folder / "kubeconfig", "https://127.0.0.1:9", tls.ca_file, "t")
    for path in folder.iterdir():
        path.chmod(0o644)  # read by the image's user
    folder.chmod(0o755)
    return {
        "KUBECONFIG": str(kubeconfig),
        "AUDIT_WEBHOOK_TOKEN": "image-audit-token",
        "RESYNC_TOKEN": "image-resync-token",
        "GITHUB_WEBHOOK_SECRET": "image-webhook-secret",
        "GITHUB_TOKEN": "ghp_imageimageimageimageimage00000000",
        "GITHUB_API_URL": "http://127.0.0.1:9",
    }


def status(url: str, method: str = "GET") -> int:
    request = urllib.request.Request(url, data=b"{}" if method == "POST" else None, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310  (our own http URL)
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return int(refused.code)


@pytest.mark.parametrize("target", sorted(SERVED))
def test_each_function_the_install_serves_answers_from_the_image(
    container: str, configuration: dict[str, str], target: str
) -> None:
    port, metrics = devstack.free_port(), devstack.free_port()
    folder = str(Path(configuration["KUBECONFIG"]).parent)
    settings = [f"--env={k}={v}" for k, v in {**configuration, "METRICS_PORT": str(metrics)}.items()]
    app = f'functions_framework:create_app(target="{target}", source="{SERVED[target]}")'
    argv = ["buildah", "run", "--network=host", f"--volume={folder}:{folder}:ro", *settings, container, "--",
            "gunicorn", f"--bind=127.0.0.1:{port}", "--workers=1", "--threads=2", "--no-control-socket",
            "--worker-tmp-dir=/tmp", app]  # fmt: skip
    served = subprocess.Popen(
        argv, env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while status_or_none(f"http://127.0.0.1:{port}/healthz") != 200:
            assert served.poll() is None, (served.stdout.read() if served.stdout else b"").decode()
            assert time.monotonic() < deadline, f"{target} never became healthy"
            time.sleep(0.2)
        assert status(f"http://127.0.0.1:{port}/", "POST") in (400, 401)  # the function itself answers
        assert status(f"http://127.0.0.1:{metrics}/metrics") == 200
    finally:
        served.terminate()
        served.wait(timeout=30)


def status_or_none(url: str) -> int | None:
    try:
        return status(url)
    except OSError:
        return None


def test_the_follower_starts_from_the_image(container: str) -> None:
    assert "usage: python -m stagegate.follower" in buildah("run", container, "--", "python", "-m",
                                                           "stagegate.follower", "--help")  # fmt: skip
