"""`make run`: every function served by functions-framework, with configuration checked at start."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys

import requests

from shared.github_delivery import signature
from stagegate_dev.devstack import ROOT


def serve(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "stagegate_dev.serve"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_missing_github_token_stops_at_start_naming_it(kube_stack) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_TOKEN"} | {
        "KUBECONFIG": str(kube_stack.function_kubeconfig)
    }
    proc = serve(env)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "GITHUB_TOKEN" in err


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
    base = random.randrange(20000, 40000, 10)  # noqa: S311  a port range, not a secret
    env = dict(os.environ) | {
        "KUBECONFIG": str(kube_stack.function_kubeconfig),
        "GITHUB_TOKEN": fake.token, "GITHUB_API_URL": fake.url,
        "GITHUB_WEBHOOK_SECRET": "s", "PORT": str(base),
    }  # fmt: skip
    proc = serve(env)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("serving"):
            break
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
