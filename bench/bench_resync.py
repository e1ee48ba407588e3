"""Benchmark of a scheduled resync at a platform team's scale; prints numbers, asserts nothing.

1,000 downstream Environments (`After staging`) follow 100 upstream environments (100 apps, ten
downstream Environments each, in ten namespaces), each app's staging with 20 baked deployments and
each downstream Rollout with three candidates (two baked, one never deployed). The resync runs
in-process against the real local kube-apiserver and the fake GitHub on loopback, first on fresh
gates (every gate opens), then again with nothing changed. It prints GitHub requests (the target:
at most one per upstream environment), Kubernetes calls and wall time for each run.
Run with `make bench`; BENCH_APPS and BENCH_FOLLOWERS change the shape.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.views import Environment  # noqa: E402
from stagegate.github import GitHubDeployments, github_client  # noqa: E402
from stagegate.kube import KubeGates, api_client  # noqa: E402
from stagegate.reconcile import ensure_gates  # noqa: E402
from stagegate.resync_service import resync  # noqa: E402
from stagegate_dev import devstack  # noqa: E402
from stagegate_dev.commandline import no_arguments, stop_cleanly_on_signals  # noqa: E402
from stagegate_dev.fake_github import FakeGitHub  # noqa: E402
from tests.kube_objects import ENV_ARGS, environment  # noqa: E402

APPS = int(os.environ.get("BENCH_APPS", "100"))
FOLLOWERS = int(os.environ.get("BENCH_FOLLOWERS", "10"))
NAMESPACES = 10
HISTORY = 20
REPO = "bench-org/mono"


def rev(app: int, n: int) -> str:
    return f"{app:08x}{n:032x}"


def create_app(custom: client.CustomObjectsApi, kube: KubeGates, fake: FakeGitHub, app: int) -> None:
    """One app: its staging history on GitHub, its staging Environment and its followers."""
    ns = f"resync-{app % NAMESPACES}"
    for n in range(HISTORY):
        payload = {"id": str(n + 1), "version": {"tag": f"t{n}", "revision": rev(app, n)}}
        deployment = fake.create_deployment(
            REPO, sha=rev(app, n), ref=rev(app, n), environment=f"kuberik/app{app}/staging",
            task=f"deploy:kuberik/app{app}", payload=payload,
        )  # fmt: skip
        fake.create_status(REPO, deployment["id"], "success", "Bake succeeded")
    names = [(f"a{app}-staging", None)] + [(f"a{app}-p{j}", "staging") for j in range(FOLLOWERS)]
    for name, upstream in names:
        body = environment(ns, name, upstream=upstream, rollout=name)
        body["spec"].update(name=f"app{app}", backend={"type": "github", "project": REPO})
        created = custom.create_namespaced_custom_object(*ENV_ARGS, ns, "environments", body)
        ensure_gates(Environment.from_raw(created), kube, fresh=True)
        rollout = {"apiVersion": "kuberik.com/v1alpha1", "kind": "Rollout", "metadata": {"name": name}}
        custom.create_namespaced_custom_object("kuberik.com", "v1alpha1", ns, "rollouts", rollout)
        candidates = [
            {"tag": f"t{HISTORY - 1}", "revision": rev(app, HISTORY - 1)},
            {"tag": "t0", "revision": rev(app, 0)},
            {"tag": "new", "revision": rev(app, 10**6)},
        ]
        custom.patch_namespaced_custom_object_status(
            "kuberik.com", "v1alpha1", ns, "rollouts", name, {"status": {"releaseCandidates": candidates}}
        )


def run(label: str, kube: KubeGates, upstream: GitHubDeployments) -> None:
    gh_before, kube_before = upstream.calls, kube.api.calls
    started = time.perf_counter()
    summary = resync(kube, upstream, [], attempts=5)
    seconds = time.perf_counter() - started
    changed = sum(1 for g in summary["gates"] if g["action"] != "unchanged")
    print(
        f"  {label:<28} {summary['environments']} Environments, {changed} gates changed, "
        f"{len(summary['errors'])} errors: GitHub requests={upstream.calls - gh_before} "
        f"(upstream environments: {APPS}), Kubernetes calls={kube.api.calls - kube_before}, "
        f"wall time={seconds:.1f} s"
    )


def main() -> None:
    logging.getLogger("stagegate").setLevel(logging.WARNING)
    with devstack.KubeStack() as stack, FakeGitHub() as fake:
        kube = KubeGates(api_client(str(stack.kubeconfig)), timeout=30)
        custom = client.CustomObjectsApi(stack.api_client())
        core = client.CoreV1Api(stack.api_client())
        for k in range(NAMESPACES):
            core.create_namespace({"metadata": {"name": f"resync-{k}"}})
        fake.add_repo(REPO)
        started = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda app: create_app(custom, kube, fake, app), range(APPS)))
        print(f"resync at scale (setup: {time.perf_counter() - started:.0f} s):")
        upstream = GitHubDeployments(github_client(fake.token, fake.url, 30))
        upstream.trusted_creators()  # once per process, not per recompute
        run("first run (gates open)", kube, upstream)
        run("second run (nothing new)", kube, upstream)


if __name__ == "__main__":
    no_arguments("bench/bench_resync.py (make bench)", __doc__ or "")
    stop_cleanly_on_signals()
    main()
