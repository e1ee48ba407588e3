"""The README's *Break-glass* runbook, run as written on `make dev`'s stack: a stuck gate passed by
kuberik's override (a `DeployOverride` Event), the guard switched off for a namespace with a reason (a
`GuardRemoved` Event) and back, then `k8s_admission` stopped: deploys are refused until the deploy guard
fails open, and it is closed again at the end."""

from __future__ import annotations

import os
import shlex
import signal
import time
import uuid
from pathlib import Path

import pytest

from stagegate_dev.polling import wait_until
from tests.test_demo import processes_marked
from tests.test_dev_walkthrough import TAG, Running, outputs, run_commands, run_walkthrough, user_env

pytestmark = pytest.mark.usefixtures("octokit")


def stop_admission(marker: str) -> None:
    """Kill `k8s_admission`'s gunicorn (master and worker) as a crash or an outage would."""
    pids = [pid for pid in processes_marked(marker) if 'target="k8s_admission"' in cmdline(pid)]
    assert pids, "k8s_admission is not running"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() and "zombie" not in state(pid) for pid in pids):
        assert time.monotonic() < deadline, "k8s_admission did not stop"
        time.sleep(0.1)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0]
    except (OSError, IndexError):
        return "zombie"


def test_the_break_glass_runbook_with_stagegate_up_then_with_k8s_admission_stopped(tmp_path: Path) -> None:
    marker = str(uuid.uuid4())
    dev = Running("stagegate_dev.dev", marker)
    exports = dict(pair.split("=", 1) for pair in shlex.split(dev.until("export "))[1:])
    env = user_env(marker) | exports
    done: list[tuple[str, str]] = []
    try:
        run_commands(env, done, ["kubectl apply -f examples/myapp.yaml"])
        run_walkthrough(env, done, "runbook-stuck")
        run_walkthrough(env, done, "runbook-namespace")
        stop_admission(marker)
        run_walkthrough(env, done, "runbook-down")
        dev.until("function-k8s_admission exited; the stack goes on without it")
        assert dev.proc.poll() is None, "make dev stopped when k8s_admission did"
    finally:
        transcript = "".join(f"$ {command}\n{output}" for command, output in done)
        (tmp_path / "break-glass.txt").write_text(transcript)
        print(transcript)
        dev.stop(signal.SIGTERM)
    left = lambda: [cmdline(pid) for pid in processes_marked(marker)]  # noqa: E731
    wait_until(lambda: left() == [], 20, "every process of the stack to end", lambda: "\n".join(left()))
    # A stuck gate: the override lets exactly that tag through, and says so in an Event.
    stuck, down_refused, down_allowed = outputs(done, "kubectl patch ocirepository myapp-prod")
    assert "patched" in stuck, stuck
    [override] = outputs(done, "kubectl get events -n myapp --field-selector reason=DeployOverride")
    assert TAG in override, override
    # The namespace's guard off with a reason, and back on.
    [removed] = outputs(done, "kubectl get events -n default --field-selector reason=GuardRemoved")
    assert "INC-1234: deploy by hand" in removed, removed
    assert outputs(done, "kubectl get namespace myapp")[-1].strip() == "enabled"
    # stagegate down: refused (fail closed) until the deploy guard fails open, then closed again.
    assert 'failed calling webhook "deploy-guard.stagegate.kuberik.com"' in down_refused, down_refused
    assert "(refused: nobody can judge it)" in down_refused, down_refused
    assert "patched" in down_allowed, down_allowed
    [policies] = outputs(done, "kubectl get validatingwebhookconfiguration stagegate")
    assert policies.split() == [
        "deploy-guard.stagegate.kuberik.com:", "Fail",
        "environment-gate.stagegate.kuberik.com:", "Ignore",
        "namespace-guard.stagegate.kuberik.com:", "Fail",
    ], policies  # fmt: skip
