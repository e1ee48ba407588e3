"""`make demo`: the kuberik-demo incident, replayed end to end on a local stack, with a verdict.

What runs, all on loopback and all stopped at the end: etcd and a real kube-apiserver whose audit
webhook (blocking mode) is `k8s_audit_http`, `github_webhook`, both served by functions-framework in
their own processes, and a local stand-in for GitHub (the fake used by the tests; not github.com).

The story: staging and prod Environments and their Rollouts are created at the same moment (prod
`After staging`), the Rollouts list a release candidate, staging deploys and bakes it (recorded on
the GitHub stand-in the way kuberik's environment controller records it, then delivered as a signed
`deployment_status` webhook). A sampler reads prod's gate all along. The run fails (exit 1) if prod's
gate ever allowed a version staging had not baked, or never opened for the baked one.
"""

from __future__ import annotations

import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from kubernetes import client

from shared.gate import gate_name
from shared.github_delivery import signature
from stagegate import devstack
from stagegate.fake_github import FakeGitHub

NAMESPACE = "kuberik-demo"
REPO = "kuberik-demo/app"
TAG = "main-1779290372-b797408"
REVISION = "b797408" + "0" * 33
OLD_TAG = "main-1779280000-a1b2c3d"
OLD_REVISION = "a1b2c3d" + "0" * 33
ENV_ARGS = ("environments.kuberik.com", "v1alpha1", NAMESPACE, "environments")
ROLLOUT_ARGS = ("kuberik.com", "v1alpha1", NAMESPACE, "rollouts")
GATE_ARGS = ("kuberik.com", "v1alpha1", NAMESPACE, "rolloutgates")


@dataclass
class Timeline:
    """Events with times relative to the start, printed as they happen."""

    start: float = field(default_factory=time.perf_counter)
    lines: list[str] = field(default_factory=list)

    def now(self) -> float:
        return (time.perf_counter() - self.start) * 1000

    def mark(self, text: str, at: float | None = None) -> None:
        line = f"  +{self.now() if at is None else at:8.1f} ms  {text}"
        self.lines.append(line)
        print(line, flush=True)


@dataclass
class Sampler:
    """Reads prod's gate every few milliseconds and checks it against what staging has baked."""

    custom: client.CustomObjectsApi
    timeline: Timeline
    baked: set[str] = field(default_factory=set)
    violations: list[str] = field(default_factory=list)
    samples: int = 0
    opened_at: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                gate = self.custom.get_namespaced_custom_object(*GATE_ARGS, gate_name("prod"))
            except client.exceptions.ApiException:
                gate = None
            at = self.timeline.now()
            self.samples += 1
            allowed = None if gate is None else gate["spec"].get("allowedVersions")
            if gate is not None and allowed is None:
                self.violations.append(f"+{at:.1f} ms: prod gate has no restriction (null)")
            for tag in allowed or []:
                if tag not in self.baked:
                    self.violations.append(f"+{at:.1f} ms: prod gate allowed {tag}, not baked in staging")
            if allowed and TAG in allowed and self.opened_at is None:
                self.opened_at = at
            time.sleep(0.005)


def _environment(name: str, upstream: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "app",
        "environment": name,
        "rolloutRef": {"name": f"app-{name}"},
        "backend": {"type": "github", "project": REPO},
    }
    if upstream:
        spec["relationship"] = {"type": "After", "environment": upstream}
    return {"apiVersion": "environments.kuberik.com/v1alpha1", "kind": "Environment",
            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}  # fmt: skip


def _rollout_status(bake_status: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": 1,
        "timestamp": "2026-05-20T15:19:48Z",
        "version": {"tag": TAG, "revision": REVISION},
    }
    if bake_status:
        entry["bakeStatus"] = bake_status
    candidates = [{"tag": TAG, "revision": REVISION}, {"tag": OLD_TAG, "revision": OLD_REVISION}]
    return {"status": {"releaseCandidates": candidates, "history": [entry]}}


def _in_parallel(*calls: Callable[[], Any]) -> list[float]:
    """Run the calls at the same moment; return when each returned (perf_counter)."""
    done = [0.0] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(i: int) -> None:
        barrier.wait()
        calls[i]()
        done[i] = time.perf_counter()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done


STACK = (
    "etcd, kube-apiserver (audit webhook in blocking mode), k8s_audit_http and github_webhook "
    "(functions-framework), GitHub stand-in (a local fake, not github.com)"
)


@dataclass
class Demo:
    """The running stack and the handles the story needs."""

    fake: FakeGitHub
    stack: devstack.KubeStack
    webhook: devstack.FunctionServer
    secret: str
    custom: client.CustomObjectsApi
    timeline: Timeline = field(default_factory=Timeline)

    def create_all_at_once(self) -> bool:
        """Both Environments and both Rollouts in one instant; True if prod's gate blocked in time."""
        self.timeline.mark("create staging + prod Environments and their Rollouts, all at once")
        create = self.custom.create_namespaced_custom_object
        returned = _in_parallel(
            lambda: create(*ENV_ARGS, _environment("staging", None)),
            lambda: create(*ENV_ARGS, _environment("prod", "staging")),
            lambda: create(*ROLLOUT_ARGS, _rollout("staging")),
            lambda: create(*ROLLOUT_ARGS, _rollout("prod")),
        )
        allowed = self.prod_allowed()
        self.timeline.mark(
            f"prod Environment create returned; its gate already exists, allowedVersions={allowed} (one GET)",
            at=(returned[1] - self.timeline.start) * 1000,
        )
        return allowed == []

    def rollout_status(self, env: str, bake_status: str | None) -> None:
        self.custom.patch_namespaced_custom_object_status(
            *ROLLOUT_ARGS, f"app-{env}", _rollout_status(bake_status)
        )

    def bake_staging(self, sampler: Sampler) -> None:
        """Staging deploys the tag, bakes it, and GitHub tells stagegate each time (signed webhooks)."""
        self.rollout_status("staging", "InProgress")
        deployment = self.fake.create_deployment(
            REPO, sha=REVISION, ref=REVISION, environment="kuberik/app/staging", task="deploy:kuberik/app",
            payload={"id": "1", "relationship": None, "version": {"tag": TAG, "revision": REVISION}},
        )  # fmt: skip
        in_progress = self.fake.create_status(REPO, deployment["id"], "in_progress", "Baking in progress")
        code = self.deliver(in_progress)
        self.timeline.mark(
            f"staging deploys {TAG}, bake in progress: webhook answered {code}; prod stays closed"
        )
        self.rollout_status("staging", "Succeeded")
        success = self.fake.create_status(REPO, deployment["id"], "success", "Bake succeeded")
        sampler.baked.add(TAG)
        self.timeline.mark(f"staging bake of {TAG} succeeded: GitHub records status success")
        arrived = self.timeline.now()
        code = self.deliver(success)
        self.timeline.mark(
            f"signed deployment_status webhook arrives at github_webhook (answered {code})", at=arrived
        )

    def deliver(self, status: dict[str, Any]) -> int:
        headers, body = self.fake.deployment_status_event(REPO, status["id"])
        headers["X-Hub-Signature-256"] = signature(self.secret, body)
        ca = str(self.stack.tls.ca_file)
        return requests.post(self.webhook.url, data=body, headers=headers, verify=ca, timeout=30).status_code

    def prod_allowed(self) -> list[str] | None:
        allowed: list[str] | None = self.custom.get_namespaced_custom_object(*GATE_ARGS, gate_name("prod"))[
            "spec"
        ].get("allowedVersions")
        return allowed


def run(demo: Demo) -> list[str]:
    """Play the story against a running stack; return the problems found (none means PASS)."""
    sampler = Sampler(demo.custom, demo.timeline)
    print("\nTimeline (milliseconds from the first create call):", flush=True)
    sampler.start()
    problems = (
        [] if demo.create_all_at_once() else ["prod's gate was not blocking when its creation returned"]
    )
    for env in ("staging", "prod"):
        demo.rollout_status(env, None)
    demo.timeline.mark(f"rollout controller lists release candidates {TAG} and {OLD_TAG}")
    demo.bake_staging(sampler)
    deadline = time.monotonic() + 10
    while sampler.opened_at is None and time.monotonic() < deadline:
        time.sleep(0.01)
    sampler.stop()
    if sampler.opened_at is not None:
        demo.timeline.mark(f"prod gate allows [{TAG}]", at=sampler.opened_at)
    final = demo.prod_allowed()
    print(f"\nprod gate sampled {sampler.samples} times; final allowedVersions={final}")
    problems += sampler.violations
    if sampler.opened_at is None:
        problems.append(f"prod's gate never allowed {TAG}")
    if final != [TAG]:
        problems.append(f"prod's gate ended as {final}, expected [{TAG}]")
    return problems


def play() -> bool:
    """Start everything, run the story, stop everything; print the verdict; True when it passed."""
    secret = secrets.token_urlsafe(16)
    print(f"Starting the local stack: {STACK} ...", flush=True)
    with FakeGitHub(repos=[REPO]) as fake:
        extra = {"GITHUB_TOKEN": fake.token, "GITHUB_API_URL": fake.url, "GITHUB_WEBHOOK_SECRET": secret}
        with devstack.audit_webhook_stack(function_env=extra) as (stack, _audit):
            source = devstack.ROOT / "functions" / "github_webhook" / "main.py"
            env = {"KUBECONFIG": str(stack.kubeconfig), **extra}
            webhook = devstack.FunctionServer(source, "github_webhook", env, stack.tls, stack.procs)
            custom = client.CustomObjectsApi(stack.api_client())
            client.CoreV1Api(stack.api_client()).create_namespace({"metadata": {"name": NAMESPACE}})
            problems = run(Demo(fake, stack, webhook, secret, custom))
    for problem in problems:
        print(f"  problem: {problem}")
    if problems:
        print("verdict: FAIL: prod was not gated correctly")
        return False
    print(
        f"verdict: PASS: prod never allowed a version staging had not baked, and opened for {TAG} once it was"
    )
    return True


def _rollout(env: str) -> dict[str, Any]:
    return {"apiVersion": "kuberik.com/v1alpha1", "kind": "Rollout", "metadata": {"name": f"app-{env}"},
            "spec": {"releasesImagePolicy": {"name": f"app-{env}"}}}  # fmt: skip


def main() -> None:
    sys.exit(0 if play() else 1)


if __name__ == "__main__":
    main()
