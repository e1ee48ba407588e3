"""Benchmark of `github_webhook`'s work, on the real local kube-apiserver and the fake GitHub on
loopback; prints numbers, asserts nothing.

For upstream histories of 10, 100, 1,000 and 5,000 deployments it measures, per delivery: handling
latency (verify + parse + recompute + conditional write, in-process; p50/p99), GitHub requests and
Kubernetes calls. Two shapes of Rollout: three candidates baked recently, and the worst case for a
reader that pages through history: those three plus the oldest deployment's revision and one
revision never deployed upstream. The fake lists every connection in GitHub's own order.
Run with `make bench` (BENCH_N sets deliveries per case, default 30).
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import time
from pathlib import Path

from kubernetes import client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.github_delivery import signature, verify_delivery  # noqa: E402
from shared.views import Environment  # noqa: E402
from stagegate.github import GitHubDeployments, github_client  # noqa: E402
from stagegate.kube import KubeGates, api_client  # noqa: E402
from stagegate.reconcile import ensure_gates  # noqa: E402
from stagegate.webhook_service import on_delivery  # noqa: E402
from stagegate_dev import devstack  # noqa: E402
from stagegate_dev.commandline import no_arguments, stop_cleanly_on_signals  # noqa: E402
from stagegate_dev.fake_github import FakeGitHub  # noqa: E402
from tests.kube_objects import ENV_ARGS, environment  # noqa: E402

N = int(os.environ.get("BENCH_N", "30"))
SECRET = "bench"  # noqa: S105  a throwaway webhook secret


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def rev(n: int) -> str:
    return f"{n:040x}"


def setup(custom: client.CustomObjectsApi, gates: KubeGates, fake: FakeGitHub, ns: str, history: int) -> int:
    """An app whose staging has `history` deployments, all baked; returns the newest status id."""
    repo = f"org-{ns}/myapp"
    fake.add_repo(repo)
    client.CoreV1Api(custom.api_client).create_namespace({"metadata": {"name": ns}})
    for name, upstream in (("staging", None), ("prod", "staging")):
        body = environment(ns, name, upstream=upstream, rollout=f"myapp-{name}")
        body["spec"]["backend"]["project"] = repo
        created = custom.create_namespaced_custom_object(*ENV_ARGS, ns, "environments", body)
        ensure_gates(Environment.from_raw(created), gates, fresh=True)
        rollout = {
            "apiVersion": "kuberik.com/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": f"myapp-{name}"},
        }
        custom.create_namespaced_custom_object("kuberik.com", "v1alpha1", ns, "rollouts", rollout)
    status_id = 0
    for i in range(history):
        deployment = fake.create_deployment(
            repo, sha=rev(i), ref=rev(i), environment="kuberik/myapp/staging", task="deploy:kuberik/myapp",
            payload={"id": str(i + 1), "version": {"tag": f"v{i}", "revision": rev(i)}},
        )  # fmt: skip
        status_id = fake.create_status(repo, deployment["id"], "success", "Bake succeeded")["id"]
    return status_id


def candidates(custom: client.CustomObjectsApi, ns: str, items: list[dict[str, str]]) -> None:
    custom.patch_namespaced_custom_object_status(
        "kuberik.com", "v1alpha1", ns, "rollouts", "myapp-prod", {"status": {"releaseCandidates": items}}
    )


def measure(
    label: str, fake: FakeGitHub, kube: KubeGates, upstream: GitHubDeployments, ns: str, status: int
) -> None:
    headers, body = fake.deployment_status_event(f"org-{ns}/myapp", status)
    headers["X-Hub-Signature-256"] = signature(SECRET, body)
    latencies, github_calls, kube_calls = [], [], []
    for _ in range(N):
        gh_before, kube_before = upstream.calls, kube.api.calls
        started = time.perf_counter()
        on_delivery(verify_delivery(headers, body, [SECRET]), kube, upstream, [ns])
        latencies.append((time.perf_counter() - started) * 1000)
        github_calls.append(upstream.calls - gh_before)
        kube_calls.append(kube.api.calls - kube_before)
    print(
        f"  {label:<52} p50={percentile(latencies, 50):7.1f} ms  p99={percentile(latencies, 99):7.1f} ms"
        f"  GitHub requests={statistics.fmean(github_calls):5.1f}"
        f"  Kubernetes calls={statistics.fmean(kube_calls):4.1f}"
    )


def main() -> None:
    logging.getLogger("stagegate").setLevel(logging.WARNING)  # numbers only, not one log line per event
    with devstack.KubeStack() as stack, FakeGitHub() as fake:
        counting = api_client(str(stack.kubeconfig))
        kube = KubeGates(counting, timeout=10)
        custom = client.CustomObjectsApi(stack.api_client())
        upstream = GitHubDeployments(github_client(fake.token, fake.url, 10))
        upstream.trusted_creators()  # once per process, not per recompute
        print(
            f"github_webhook in-process, fake GitHub and kube-apiserver on loopback ({N} deliveries a row):"
        )
        for history in (10, 100, 1000, 5000):
            ns = f"h{history}"
            status = setup(custom, kube, fake, ns, history)
            recent = [{"tag": f"v{i}", "revision": rev(i)} for i in range(history - 3, history)]
            candidates(custom, ns, recent)
            measure(f"{history} deployments, 3 recent candidates", fake, kube, upstream, ns, status)
            worst = [*recent, {"tag": "v0", "revision": rev(0)}, {"tag": "never", "revision": rev(10**6)}]
            candidates(custom, ns, worst)
            measure(f"{history} deployments, + oldest + never-deployed", fake, kube, upstream, ns, status)


if __name__ == "__main__":
    no_arguments("bench/bench_github_webhook.py (make bench)", __doc__ or "")
    stop_cleanly_on_signals()
    main()
