"""`make demo` is the README's first command: it must pass, print both acts' timelines (the incident
without the admission function, the fix with it), leave nothing running, and work the same the second
time. The chain from staging's bake to prod's deploy runs on stagegate's functions: the reporter records
the bake on the GitHub stand-in, which delivers the webhook itself; the demo writes no GitHub record and
posts no webhook."""

from __future__ import annotations

import ast
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from stagegate_dev import demo
from stagegate_dev.devstack import ROOT

TAG = "main-1779290372-b797408"


def processes_marked(marker: str) -> list[int]:
    """Processes whose environment carries `marker` (every child of the demo inherits it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker.encode() in (proc / "environ").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


@pytest.mark.usefixtures("octokit")
def test_demo_passes_twice_and_leaves_nothing_running() -> None:
    for attempt in (1, 2):
        run_id = str(uuid.uuid4())
        marker = f"STAGEGATE_DEMO_RUN={run_id}"
        # What a user's shell has, not what earlier tests left in this process (a GitHub token and URL
        # of a stand-in long gone once made the blocking audit webhook wait on it).
        kept = ("PATH", "HOME", "LANG", "KUBEBUILDER_ASSETS", "STAGEGATE_OCTOKIT_ASSETS", "CLOUDSDK_CONFIG")
        env = {k: os.environ[k] for k in kept if k in os.environ} | {"STAGEGATE_DEMO_RUN": run_id}
        run = subprocess.run(
            [sys.executable, "-m", "stagegate_dev.demo"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert run.returncode == 0, f"attempt {attempt}:\n{run.stdout}\n{run.stderr[-3000:]}"
        lines = run.stdout.splitlines()
        act1, act2 = run.stdout.split("\nAct 2: ")
        assert "verdict: INCIDENT REPRODUCED: " in act1, run.stdout  # without admission: prod ran it early
        assert "its gate exists, allowedVersions=[]" in act2, run.stdout
        assert 'admission webhook "deploy-guard.stagegate.kuberik.com" denied the request' in act2, run.stdout
        assert f"prod's gate allows [{TAG}]" in act2, run.stdout
        for act in (act1, act2):  # every hop of staging's bake, carried by the functions
            assert "rollout controller writes history[0].bakeStatus=Succeeded" in act, run.stdout
            assert (
                "reporter records the bake's success on GitHub: status success (Bake succeeded) on "
                "staging's deployment of b797408" in act
            ), run.stdout
            assert (
                "GitHub stand-in delivers the signed deployment_status webhook to github_webhook: "
                "answered 200" in act
            ), run.stdout
        [hops] = [line for line in act2.splitlines() if line.startswith("  hops: ")]
        assert hops.startswith("  hops: Rollout status write sent -> reporter recorded it on GitHub "), hops
        for hop in ("-> webhook delivery answered 200 ", "-> prod's gate opened ", "-> prod deployed "):
            assert hop in hops, hops
        # The Actions job to production: held while staging bakes, released by the bake that opens prod.
        assert "GitHub Actions job migrate-db deploying b797408 to production starts" in act2, run.stdout
        assert "stagegate answers the held job (status report): Waiting for kuberik/app/staging" in act2
        assert "stagegate answers the held job (approved): kuberik/app/staging baked b797408" in act2
        assert "the Actions job was approved " in act2, run.stdout
        assert "verdict: PASS: prod ran nothing staging had not baked" in act2, run.stdout
        assert lines[-1].startswith("verdict: PASS"), run.stdout
        assert processes_marked(marker) == []


@pytest.mark.usefixtures("octokit")
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("when", ["Pub/Sub emulator and GitHub stand-in up", "Stack is up"])
def test_a_signal_stops_the_demo_and_everything_it_started(stop: signal.Signals, when: str) -> None:
    """Wherever it comes from: the demo is started from a script (no terminal), where a background child
    inherits SIGINT ignored, and interrupted while the stack starts and once it is up."""
    run_id = str(uuid.uuid4())
    kept = ("PATH", "HOME", "LANG", "KUBEBUILDER_ASSETS", "STAGEGATE_OCTOKIT_ASSETS", "CLOUDSDK_CONFIG")
    env = {k: os.environ[k] for k in kept if k in os.environ} | {"STAGEGATE_DEMO_RUN": run_id}
    script = f"{shlex.quote(sys.executable)} -m stagegate_dev.demo & wait $!"  # background: SIGINT ignored
    shell = subprocess.Popen(["sh", "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    assert shell.stdout is not None
    try:
        seen = []
        for line in shell.stdout:
            seen.append(line)
            if when in line:
                break
        assert when in seen[-1], seen
        [demo] = [
            pid for pid in processes_marked(run_id) if cmdline(pid)[1:3] == [b"-m", b"stagegate_dev.demo"]
        ]
        os.kill(demo, stop)
        shell.communicate(timeout=60)
        assert shell.returncode == 130
        assert processes_marked(run_id) == []
    finally:
        for pid in processes_marked(run_id):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def cmdline(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def test_the_demo_neither_writes_github_records_nor_posts_webhooks_itself() -> None:
    """Staging's deployment and statuses are the reporter's, the webhook is the stand-in's."""
    nodes = list(ast.walk(ast.parse(Path(demo.__file__).read_text())))
    called = {n.func.attr for n in nodes if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
    imported = {a.name for n in nodes if isinstance(n, ast.Import | ast.ImportFrom) for a in n.names}
    imported |= {n.module for n in nodes if isinstance(n, ast.ImportFrom) and n.module}
    assert not called & {"create_deployment", "create_status", "deployment_status_event", "post"}
    assert not imported & {"requests", "signature", "signature_256", "shared.github_delivery"}
    assert "deliver_webhooks" in called
