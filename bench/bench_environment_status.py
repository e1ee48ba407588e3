"""Benchmark of the Environment status: from a `deployment_status` delivery to the updated status.

`github_webhook` is served by functions-framework (gunicorn, TLS) as deployed, against the real local
kube-apiserver and the fake GitHub on loopback. The app has staging and prod (`After staging`) and N
deployments of its name on GitHub already (half to each environment, one status each). Each run
records a new bake of staging, posts the signed delivery and times the answer and the moment prod's
status shows the new entry; GitHub requests are counted per delivery (one of them is the gate
recompute's, the rest the status's). Printed per N: median and worst of the runs.
Run with `make bench` (BENCH_STATUS_N: comma-separated sizes, default 10,100,1000; BENCH_RUNS, default 5).
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from kubernetes import client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.views import Environment  # noqa: E402
from stagegate.kube import KubeGates, api_client  # noqa: E402
from stagegate.reconcile import ensure_gates  # noqa: E402
from stagegate_dev import devstack  # noqa: E402
from stagegate_dev.commandline import no_arguments, stop_cleanly_on_signals  # noqa: E402
from stagegate_dev.fake_github import FakeGitHub  # noqa: E402
from tests.functions.handoff_support import deliver, serve  # noqa: E402
from tests.kube_objects import ENV_ARGS, environment  # noqa: E402

SIZES = [int(n) for n in os.environ.get("BENCH_STATUS_N", "10,100,1000").split(",")]
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
WEBHOOK = ("github_webhook", "github_webhook")


def rev(n: int) -> str:
    return f"{n:040x}"


def record(fake: FakeGitHub, repo: str, env: str, entry: int) -> int:
    """A deployment of history entry `entry` to `env` and its success, as the reporter writes them."""
    deployment = fake.create_deployment(
        repo, sha=rev(entry), ref=rev(entry), environment=f"kuberik/myapp/{env}", task="deploy:kuberik/myapp",
        payload={"id": str(entry), "version": {"tag": f"v{entry}", "revision": rev(entry)}},
    )  # fmt: skip
    return int(fake.create_status(repo, deployment["id"], "success", "Bake succeeded")["id"])


def shown(custom: client.CustomObjectsApi, namespace: str) -> int:
    """The newest staging entry prod's status shows (0: none)."""
    status: dict[str, Any] = custom.get_namespaced_custom_object(*ENV_ARGS, namespace, "environments", "prod")
    infos = (status.get("status") or {}).get("environmentInfos") or []
    staging = next((i for i in infos if i["environment"] == "staging"), {})
    return max((e["id"] for e in staging.get("history") or []), default=0)


def run(stack: devstack.KubeStack, procs: devstack.Processes, fake: FakeGitHub, url: str, n: int) -> None:
    custom = client.CustomObjectsApi(stack.api_client())
    kube = KubeGates(api_client(str(stack.kubeconfig)), timeout=10)
    namespace = f"status-{n}"
    client.CoreV1Api(stack.api_client()).create_namespace({"metadata": {"name": namespace}})
    repo = f"org-{namespace}/myapp"
    fake.add_repo(repo)
    for name, upstream in (("staging", None), ("prod", "staging")):
        body = environment(namespace, name, upstream=upstream, rollout=f"myapp-{name}")
        body["spec"]["backend"]["project"] = repo
        created = custom.create_namespaced_custom_object(*ENV_ARGS, namespace, "environments", body)
        ensure_gates(Environment.from_raw(created), kube, fresh=True)
        rollout = {
            "apiVersion": "kuberik.com/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": f"myapp-{name}"},
        }
        custom.create_namespaced_custom_object("kuberik.com", "v1alpha1", namespace, "rollouts", rollout)
    for entry in range(1, n + 1):
        record(fake, repo, "staging" if entry % 2 else "prod", entry)
    ca = str(stack.tls.ca_file)
    # Warm up: whose records count is asked once per process.
    deliver(url, fake, repo, record(fake, repo, "staging", n + 1), ca)
    answers, shows, requests = [], [], []
    for k in range(1, RUNS + 1):
        entry = n + 1 + 2 * k
        status_id = record(fake, repo, "staging", entry)
        candidates = [{"tag": f"v{entry}", "revision": rev(entry)}]  # what prod's gate is recomputed for
        custom.patch_namespaced_custom_object_status(
            "kuberik.com",
            "v1alpha1",
            namespace,
            "rollouts",
            "myapp-prod",
            {"status": {"releaseCandidates": candidates}},
        )
        fake.reset_calls()
        started = time.perf_counter()
        code, seconds = deliver(url, fake, repo, status_id, ca)
        while shown(custom, namespace) < entry:
            if time.perf_counter() - started > 60:
                raise SystemExit(f"N={n}: prod's status did not show entry {entry} within 60 s")
            time.sleep(0.01)
        shows.append(time.perf_counter() - started)
        answers.append(seconds)
        requests.append(sum(1 for method, _ in fake.calls if method == "POST"))
        if code != 200:
            raise SystemExit(f"N={n}: the delivery was answered {code}")
    answer, show = statistics.median(answers) * 1000, statistics.median(shows) * 1000
    print(
        f"  N={n:<5} answer median {answer:6.0f} ms (worst {max(answers) * 1000:6.0f}), "
        f"status shown median {show:6.0f} ms (worst {max(shows) * 1000:6.0f}), "
        f"GitHub requests per delivery {sorted(set(requests))} (1 of them the gate recompute's)"
    )


def main() -> None:
    logging.getLogger("stagegate").setLevel(logging.WARNING)
    print(f"Environment status after a delivery, github_webhook as served, {RUNS} runs per size:")
    with devstack.KubeStack() as stack, FakeGitHub() as fake:
        procs = devstack.Processes(stack.dir)
        try:
            url = serve(stack, procs, fake, WEBHOOK, True)
            for n in SIZES:
                run(stack, procs, fake, url, n)
        finally:
            procs.stop_all()


if __name__ == "__main__":
    no_arguments("bench/bench_environment_status.py (make bench)", __doc__ or "")
    stop_cleanly_on_signals()
    main()
