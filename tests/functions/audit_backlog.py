"""A backlog in front of `k8s_audit_http`, and how long a real Environment create then waits for its gate.

The scenario of issue 10, item 3: many authenticated deliveries full of Environment events (each one a
Kubernetes write) arrive at once and keep coming, Rollout status changes need a GitHub that never
answers, and the Kubernetes API answers 20 ms late (a delaying TCP proxy in front of the real
kube-apiserver). Meanwhile Environments are created for real and their audit event is delivered the way
the apiserver's blocking webhook does (one event per request): how long until the answer, and until the
gate exists?

Used by `test_audit_backlog.py`, and runnable on its own to print the numbers (it starts its own stack):

    .venv/bin/python -m tests.functions.audit_backlog --deliveries 16 --events 7000 --delay-ms 20
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml
from kubernetes import client

from stagegate_dev import devstack
from tests.flaky_proxy import FlakyProxy
from tests.hanging_server import hanging_server
from tests.kube_objects import ENV_ARGS, GATE_ARGS, delivery_bytes, environment

SOURCE = devstack.ROOT / "functions" / "k8s_audit" / "main.py"
TOKEN = "backlog-token-0123456789"
REVISION = "0123456789abcdef0123456789abcdef01234567"


def minimal_event(namespace: str, name: str) -> dict[str, Any]:
    """The smallest Environment create event the function acts on (so a 4 MiB body carries thousands)."""
    env = environment(namespace, name)
    env["metadata"]["uid"] = str(uuid.uuid4())
    return {
        "auditID": str(uuid.uuid4()),
        "stage": "ResponseComplete",
        "verb": "create",
        "objectRef": {
            "resource": "environments",
            "apiGroup": ENV_ARGS[0],
            "namespace": namespace,
            "name": name,
        },
        "responseStatus": {"code": 201},
        "responseObject": env,
    }


def environment_batch(namespace: str, prefix: str, count: int) -> bytes:
    items = [minimal_event(namespace, f"{prefix}-{i:05d}") for i in range(count)]
    return json.dumps({"apiVersion": "audit.k8s.io/v1", "kind": "EventList", "items": items}).encode()


def rollout_status_delivery(namespace: str, name: str) -> bytes:
    """What the blocking webhook posts for a Rollout status patch (Metadata level, one event)."""
    event = {
        "auditID": str(uuid.uuid4()),
        "stage": "ResponseComplete",
        "verb": "patch",
        "level": "Metadata",
        "objectRef": {
            "resource": "rollouts", "subresource": "status", "namespace": namespace, "name": name,
            "apiGroup": "kuberik.com", "apiVersion": "v1alpha1",
        },
        "responseStatus": {"metadata": {}, "code": 200},
    }  # fmt: skip
    return json.dumps({"apiVersion": "audit.k8s.io/v1", "kind": "EventList", "items": [event]}).encode()


@dataclass
class Create:
    """One real Environment create during the backlog."""

    status: int
    answered: float
    gate_after: float | None
    allowed: Any = None

    def line(self, n: int) -> str:
        gate = "no gate" if self.gate_after is None else f"gate after {self.gate_after:.3f} s"
        answered = f"answered {self.status} in {self.answered:.3f} s"
        return f"create {n}: {answered}; {gate} (allowedVersions={self.allowed})"


@dataclass
class Result:
    creates: list[Create] = field(default_factory=list)
    backlog_answers: Counter[int] = field(default_factory=Counter)
    rollout_answers: Counter[int] = field(default_factory=Counter)
    body_bytes: int = 0


class Sender(threading.Thread):
    """Posts one body again and again until stopped, counting the answers."""

    lock = threading.Lock()  # the counters are shared

    def __init__(self, url: str, body: bytes, ca_file: Path, answers: Counter[int], stop: threading.Event):
        super().__init__(daemon=True)
        self.url, self.body, self.ca_file, self.answers, self.stop = url, body, ca_file, answers, stop

    def run(self) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        while not self.stop.is_set():
            try:
                code = session.post(
                    self.url, data=self.body, verify=str(self.ca_file), timeout=120
                ).status_code
            except requests.RequestException:
                code = 0
            with self.lock:
                self.answers[code] += 1


def run(
    kube_stack: devstack.KubeStack,
    procs: devstack.Processes,
    workdir: Path,
    *,
    deliveries: int = 16,
    events: int = 400,
    rollout_senders: int = 8,
    delay: float = 0.02,
    deadline: float = 2.0,
    creates: int = 3,
    warmup: float = 2.0,
    wait: float = 60.0,
    threads: int = 8,
) -> Result:
    """Start the backlog, create Environments for real while it runs, and time each one's gate."""
    custom = client.CustomObjectsApi(kube_stack.api_client())
    core = client.CoreV1Api(kube_stack.api_client())
    backlog_ns, create_ns = f"backlog-{uuid.uuid4().hex[:6]}", f"creates-{uuid.uuid4().hex[:6]}"
    for ns in (backlog_ns, create_ns):
        core.create_namespace({"metadata": {"name": ns}})
    # One governed Rollout whose status changes need GitHub (which hangs): slow recomputes.
    custom.create_namespaced_custom_object(
        *ENV_ARGS, backlog_ns, "environments", environment(backlog_ns, "prod")
    )
    custom.create_namespaced_custom_object(
        *GATE_ARGS, backlog_ns, "rollouts",
        {"apiVersion": "kuberik.com/v1alpha1", "kind": "Rollout", "metadata": {"name": "myapp"}},
    )  # fmt: skip
    custom.patch_namespaced_custom_object_status(
        *GATE_ARGS, backlog_ns, "rollouts", "myapp",
        {"status": {"releaseCandidates": [{"tag": "v1", "revision": REVISION}]}},
    )  # fmt: skip

    proxy = FlakyProxy(kube_stack.port, delay=delay)
    proxy.up.set()
    token = yaml.safe_load(kube_stack.function_kubeconfig.read_text())["users"][0]["user"]["token"]
    kubeconfig = devstack.write_kubeconfig(
        workdir / "slow-kube", f"https://127.0.0.1:{proxy.port}", kube_stack.tls.ca_file, token
    )
    result = Result()
    stop = threading.Event()
    senders: list[Sender] = []
    server: devstack.FunctionServer | None = None
    try:
        with hanging_server() as github_port:
            github = f"http://127.0.0.1:{github_port}"
            env = {
                "KUBECONFIG": str(kubeconfig),
                "AUDIT_WEBHOOK_TOKEN": TOKEN,
                "AUDIT_DEADLINE_SECONDS": f"{deadline:g}",
                "GITHUB_TOKEN": "token-for-a-github-that-hangs",
                "GITHUB_API_URL": github,
            }
            server = devstack.FunctionServer(
                SOURCE, "k8s_audit_http", env, kube_stack.tls, procs, threads=threads
            )
            ca = kube_stack.tls.ca_file
            for i in range(deliveries):
                body = environment_batch(backlog_ns, f"b{i:02d}", events)
                result.body_bytes = len(body)
                senders.append(Sender(server.url, body, ca, result.backlog_answers, stop))
            rollout = rollout_status_delivery(backlog_ns, "myapp")
            senders += [
                Sender(server.url, rollout, ca, result.rollout_answers, stop) for _ in range(rollout_senders)
            ]
            for sender in senders:
                sender.start()
            time.sleep(warmup)
            for n in range(creates):
                result.creates.append(_create(custom, server.url, ca, create_ns, f"prod-{n}", wait))
            stop.set()
    finally:
        stop.set()
        if server is not None:
            _kill_workers(server.proc.pid)  # a worker may be busy with the backlog for minutes
        for sender in senders:
            sender.join(timeout=130)
        proxy.close()
    return result


def _kill_workers(master: int) -> None:
    """Kill the gunicorn workers of `master` (stopping the master alone can leave a busy worker behind)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master:
                os.kill(int(stat.parent.name), signal.SIGKILL)


def _create(
    custom: client.CustomObjectsApi, url: str, ca: Path, namespace: str, name: str, wait: float
) -> Create:
    created = custom.create_namespaced_custom_object(
        *ENV_ARGS, namespace, "environments", environment(namespace, name)
    )
    gate: dict[str, Any] = {}
    found = threading.Event()
    started = time.monotonic()
    seen: list[float] = []

    def poll() -> None:
        while time.monotonic() - started < wait:
            with contextlib.suppress(client.ApiException):
                gate.update(
                    custom.get_namespaced_custom_object(
                        *GATE_ARGS, namespace, "rolloutgates", f"{name}-stagegate"
                    )
                )
                seen.append(time.monotonic() - started)
                found.set()
                return
            time.sleep(0.005)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    response = requests.post(
        url,
        data=delivery_bytes(created),
        headers={"Authorization": f"Bearer {TOKEN}"},
        verify=str(ca),
        timeout=120,
    )
    answered = time.monotonic() - started
    poller.join()
    return Create(
        status=response.status_code,
        answered=answered,
        gate_after=seen[0] if seen else None,
        allowed=gate.get("spec", {}).get("allowedVersions") if found.is_set() else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=16)
    parser.add_argument("--events", type=int, default=400, help="Environment events per backlog delivery")
    parser.add_argument("--rollout-senders", type=int, default=8)
    parser.add_argument("--delay-ms", type=float, default=20)
    parser.add_argument("--deadline", type=float, default=2.0)
    parser.add_argument("--creates", type=int, default=3)
    parser.add_argument("--wait", type=float, default=60, help="longest wait for a create's gate, seconds")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="stagegate-backlog-"))
    procs = devstack.Processes(workdir)
    with devstack.KubeStack() as stack:
        try:
            result = run(
                stack, procs, workdir,
                deliveries=args.deliveries, events=args.events, rollout_senders=args.rollout_senders,
                delay=args.delay_ms / 1000, deadline=args.deadline, creates=args.creates, wait=args.wait,
            )  # fmt: skip
        finally:
            procs.stop_all()
    print(
        f"backlog: {args.deliveries} deliveries x {args.events} Environment events "
        f"({result.body_bytes / 2**20:.2f} MiB each), {args.rollout_senders} senders of Rollout status "
        f"changes (GitHub hangs), Kubernetes API +{args.delay_ms:g} ms per request, "
        f"AUDIT_DEADLINE_SECONDS={args.deadline:g}"
    )
    print(f"backlog answers by status: {dict(result.backlog_answers)}")
    print(f"rollout answers by status: {dict(result.rollout_answers)}")
    for n, create in enumerate(result.creates, 1):
        print(create.line(n))


if __name__ == "__main__":
    main()
