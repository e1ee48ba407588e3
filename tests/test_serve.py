"""`make run`: every function served by functions-framework, with configuration checked at start."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from shared.github_delivery import signature
from stagegate_dev.devstack import ROOT
from stagegate_dev.serve import FUNCTIONS


def serve(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "stagegate_dev.serve"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def free_base(count: int) -> int:
    """A base port whose `count` consecutive ports are free now (other tests hold random ports too)."""
    while True:
        base = random.randrange(20000, 40000, 10)  # noqa: S311  a port range, not a secret
        with contextlib.ExitStack() as probes:
            try:
                for port in range(base, base + count):
                    probes.enter_context(socket.socket()).bind(("127.0.0.1", port))
            except OSError:
                continue
        return base


def until_serving(proc: subprocess.Popen[str], timeout: float = 90) -> list[str]:
    """The lines printed up to "serving"; fails with stderr if that line does not come in time."""
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in proc.stdout or ()] + [lines.put(None)]
    ).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while (line := lines.get(timeout=max(0.1, deadline - time.monotonic()))) is not None:
        seen.append(line)
        if line.startswith("serving"):
            return seen
    proc.kill()
    pytest.fail(f"make run stopped before serving: {seen} {proc.communicate(timeout=30)[1]}")


def test_without_github_credentials_only_the_audit_functions_are_served(kube_stack) -> None:
    base = free_base(len(FUNCTIONS))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")} | {
        "KUBECONFIG": str(kube_stack.function_kubeconfig), "PORT": str(base),
        "AUDIT_WEBHOOK_TOKEN": "t",
    }  # fmt: skip
    proc = serve(env)
    try:
        lines = until_serving(proc)
        assert [line.split()[0] for line in lines[:-1]] == ["k8s_audit_http", "k8s_audit"]
        assert requests.post(f"http://127.0.0.1:{base}/", data=b"{}", timeout=10).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "GITHUB_TOKEN" in err
    assert "not serving github_webhook, resync_http, reporter_http" in err


def test_a_port_in_use_stops_at_start_naming_it(kube_stack, fake) -> None:
    base = free_base(len(FUNCTIONS))
    env = dict(os.environ) | {
        "KUBECONFIG": str(kube_stack.function_kubeconfig), "GITHUB_TOKEN": fake.token,
        "GITHUB_API_URL": fake.url, "PORT": str(base),
    }  # fmt: skip
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 2))
        taken.listen()
        proc = serve(env)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert f"port {base + 2} (for github_webhook" in err
    assert out == ""


def test_malformed_setting_stops_at_start_naming_it(kube_stack) -> None:
    env = dict(os.environ) | {
        "KUBECONFIG": str(kube_stack.function_kubeconfig),
        "GITHUB_TOKEN": "t",
        "AUDIT_DEADLINE_SECONDS": "x",
    }
    proc = serve(env)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "AUDIT_DEADLINE_SECONDS" in err


def test_every_function_is_served_and_stops_together(kube_stack, fake) -> None:
    base = free_base(len(FUNCTIONS))
    env = dict(os.environ) | {
        "KUBECONFIG": str(kube_stack.function_kubeconfig),
        "GITHUB_TOKEN": fake.token, "GITHUB_API_URL": fake.url,
        "GITHUB_WEBHOOK_SECRET": "s", "PORT": str(base),
    }  # fmt: skip
    proc = serve(env)
    lines = until_serving(proc)
    assert [line.split()[0] for line in lines[:5]] == [
        "k8s_audit_http",
        "k8s_audit",
        "github_webhook",
        "resync_http",
        "reporter_http",
    ]
    body = json.dumps({"zen": "Keep it logically awesome."}).encode()
    headers = {
        "X-GitHub-Event": "ping",
        "X-Hub-Signature-256": signature("s", body),
        "Content-Type": "application/json",
    }
    assert (
        requests.post(f"http://127.0.0.1:{base + 2}/", data=body, headers=headers, timeout=10).json()[
            "status"
        ]
        == "pong"
    )
    assert requests.post(f"http://127.0.0.1:{base}/", data=b"{}", timeout=10).status_code == 401
    assert requests.post(f"http://127.0.0.1:{base + 4}/", data=b"{}", timeout=10).status_code == 401
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "AUDIT_WEBHOOK_TOKEN is not set" in err
