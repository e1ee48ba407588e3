"""Benchmark of the follower path on a cluster with no audit webhook: how long from a Rollout status write
(staging's bake `Succeeded`) to its record on GitHub and to prod's gate opening; prints numbers, asserts
nothing.

What runs: etcd and the kube-apiserver with the project's CRDs and no audit webhook (a managed cluster),
the GitHub stand-in on loopback, and `python -m stagegate.follower` in a process of its own with the
least-privilege identity of `infra/k8s/rbac.yaml`, as the in-cluster install runs it. No resync and no
`github_webhook`: the follower alone does it (the stand-in's `deployment_status` webhooks go nowhere).

BENCH_CHANGES (default 60) times: prod's Rollout lists `main-N` as a candidate (and the follower settles
that), then staging's Rollout gets history entry N with bake `Succeeded` in one status write. The clock
starts at that write's answer; the bench polls the stand-in for entry N's `success` status and the gate
for `main-N` every 5 ms. Per change it also reads the follower's own log line (`calls`): the Kubernetes
requests (the Lease's renewals meanwhile included) and GitHub reads and writes it made. Staging's history
keeps its 10 newest entries, as a rollout controller's history limit would. Then RESTARTS times: the
follower is killed (SIGKILL), a change is made, and the follower is started again as the same pod; the
clock starts when its process starts (Python's start-up included) and stops at the record and the gate.
Last, the worst case of one change: staging and BENCH_FANOUT (default 1,000) Environments `After
staging` in one namespace, each with its Rollout listing `main-1`; a new follower starts (a cold start:
every object is a change) and the bench times it until all gates block and it has settled, then times
staging's bake until every gate allows `main-1`, with that change's calls. That without the Environment
statuses (`ENVIRONMENT_STATUS=false`), then with them for BENCH_FANOUT_STATUS (default 300): each
status lists every Environment of the pipeline, as the Go controller's does, so every list of a wide
pipeline's Environments grows with the square of its width. Run with `make bench`.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from kubernetes import client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stagegate.kube import KubeGates, api_client  # noqa: E402
from stagegate_dev import devstack  # noqa: E402
from stagegate_dev.commandline import no_arguments, stop_cleanly_on_signals  # noqa: E402
from stagegate_dev.fake_github import FakeGitHub  # noqa: E402
from tests.functions.follower_support import Pipeline  # noqa: E402
from tests.functions.reporter_support import ROLLOUT_ARGS, History, rev  # noqa: E402
from tests.kube_objects import ENV_ARGS, GATE_ARGS, environment  # noqa: E402

CHANGES = int(os.environ.get("BENCH_CHANGES", "60"))
RESTARTS = 5
FANOUT = int(os.environ.get("BENCH_FANOUT", "1000"))
FANOUT_WITH_STATUS = int(os.environ.get("BENCH_FANOUT_STATUS", "300"))
POLL = 0.005
NAMESPACE = "bench"


def waited(check: Callable[[], bool], seconds: float = 60.0, poll: float = POLL) -> float:
    """Seconds until `check()` held (polled every `poll`)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > seconds:
            raise TimeoutError(f"not within {seconds:g}s")
        time.sleep(poll)
    return time.monotonic() - started


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def handled_lines(log: Path, skip: int) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if str(line.get("message", "")).startswith("follower handled")][skip:]


def bake(pipeline: Pipeline, n: int) -> None:
    """Entry `n` written with bake `Succeeded`: one status write, the history kept at 10 entries."""
    pipeline.history.entries = pipeline.history.entries[:9]
    pipeline.history.deploy(n, "Succeeded")


def baked(pipeline: Pipeline, n: int, started: float) -> tuple[float, float]:
    """Seconds from `started` until GitHub records entry `n`'s success and prod's gate allows `main-n`."""
    waited(lambda: bool(pipeline.recorded_states(n)) and "success" in pipeline.recorded_states(n)[0])
    recorded = time.monotonic() - started
    waited(lambda: f"main-{n}" in (pipeline.allowed() or []))
    return recorded, time.monotonic() - started


def following(pipeline: Pipeline, follower: devstack.FollowerProcess) -> None:
    """CHANGES changes while the follower runs: latency percentiles and calls per change."""
    times: list[tuple[float, float]] = []
    costs: list[dict[str, int]] = []
    for n in range(1, CHANGES + 1):
        pipeline.candidates(*range(max(1, n - 9), n + 1))
        time.sleep(0.3)  # the follower recomputes prod for its new candidate first
        before = len(handled_lines(follower.log_file, 0))
        bake(pipeline, n)
        times.append(baked(pipeline, n, time.monotonic()))
        time.sleep(0.3)  # its log line, and any trailing work, before the next change
        costs.append(spent_since(follower.log_file, before))
    print(f"follower path, no audit webhook, {CHANGES} changes (status write -> ...)")
    print(f"  {'':26}{'p50':>9}{'p99':>9}{'max':>9}")
    for name, values in (
        ("GitHub record (success)", [r for r, _ in times]),
        ("prod's gate opens", [g for _, g in times]),
    ):
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        print(f"  {name:26}{p50:8.3f}s{p99:8.3f}s{max(values):8.3f}s")
    for key in costs[0]:
        counts = [c[key] for c in costs]
        print(f"  calls per change, {key:13} median {statistics.median(counts):g}, max {max(counts)}")
    print("  (Go environment controller: up to 60 s by its requeue; the 10-minute resync: up to 600 s)")


def restarting(
    pipeline: Pipeline, follower: devstack.FollowerProcess, stack: devstack.KubeStack, env: dict[str, str]
) -> devstack.FollowerProcess:
    """RESTARTS times: the follower killed, a change made, the follower started again as the same pod;
    the last one started."""
    times: list[tuple[float, float]] = []
    for n in range(CHANGES + 1, CHANGES + 1 + RESTARTS):
        follower.proc.kill()  # SIGKILL: no Lease given back, nothing flushed
        follower.proc.wait()
        pipeline.candidates(*range(n - 9, n + 1))
        bake(pipeline, n)  # while no follower runs
        started = time.monotonic()
        follower = devstack.FollowerProcess(env, stack.procs, f"follower-{n}")  # the same pod, restarted
        times.append(baked(pipeline, n, started))
    print(f"a change made while the follower was killed, {RESTARTS} times (process start -> ...)")
    for name, values in (
        ("GitHub record", [r for r, _ in times]),
        ("prod's gate opens", [g for _, g in times]),
    ):
        print(f"  {name:26}median {statistics.median(values):.3f}s, max {max(values):.3f}s")
    return follower


def fanning_out(
    stack: devstack.KubeStack, fake: FakeGitHub, custom: client.CustomObjectsApi, fanout: int, statuses: bool
) -> None:
    """The worst case of one change: staging's bake opening `fanout` downstream gates, all in one cluster,
    after a cold start that handles every object once (what a first start or a 410 relist costs); with
    or without the Environment statuses (`ENVIRONMENT_STATUS`)."""
    namespace = f"fanout-{fanout}-{'status' if statuses else 'nostatus'}"
    client.CoreV1Api(stack.api_client()).create_namespace({"metadata": {"name": namespace}})
    gates = KubeGates(api_client(str(stack.function_kubeconfig)), timeout=30)
    history = History(custom, gates, fake, namespace).create()
    candidates = {"status": {"releaseCandidates": [{"tag": "main-1", "revision": rev(1)}]}}
    for i in range(fanout):
        body = environment(namespace, f"prod-{i}", upstream="staging", rollout=f"myapp-prod-{i}")
        body["spec"]["backend"]["project"] = history.repo
        custom.create_namespaced_custom_object(*ENV_ARGS, namespace, "environments", body)
        rollout = {
            "apiVersion": "kuberik.com/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": f"myapp-prod-{i}"},
        }
        custom.create_namespaced_custom_object(*ROLLOUT_ARGS, namespace, "rollouts", rollout)
        custom.patch_namespaced_custom_object_status(
            *ROLLOUT_ARGS, namespace, "rollouts", f"myapp-prod-{i}", candidates
        )
    env = {
        "KUBECONFIG": str(stack.function_kubeconfig),
        "GITHUB_TOKEN": fake.token,
        "GITHUB_API_URL": fake.url,
        "STAGEGATE_NAMESPACES": namespace,
        "FOLLOW_LEASE_NAMESPACE": namespace,
        "POD_NAME": "fanout",
        "ENVIRONMENT_STATUS": str(statuses).lower(),
    }
    started = time.monotonic()
    follower = devstack.FollowerProcess(env, stack.procs, f"follower-{namespace}")

    def allowing(tags: list[str]) -> int:
        items = custom.list_namespaced_custom_object(*GATE_ARGS, namespace, "rolloutgates")["items"]
        return sum(1 for g in items if g["spec"].get("allowedVersions") == tags)

    waited(lambda: allowing([]) == fanout, seconds=900, poll=0.1)
    gated = time.monotonic() - started
    waited(lambda: caught_up(follower.log_file) == 1, seconds=900, poll=0.1)
    settled = time.monotonic() - started
    before = len(handled_lines(follower.log_file, 0))
    history.deploy(1, "Succeeded")
    started = time.monotonic()
    waited(lambda: allowing(["main-1"]) == fanout, seconds=600, poll=0.1)
    opened = time.monotonic() - started
    waited(lambda: caught_up(follower.log_file) == 2, seconds=600, poll=0.1)
    done = time.monotonic() - started
    cost = spent_since(follower.log_file, before)
    shown = "with" if statuses else "without"
    print(f"fan-out: staging and {fanout} Environments after it, {shown} Environment statuses")
    print(f"  cold start (every object looked at): all gates blocking {gated:.2f}s, caught up {settled:.2f}s")
    print(f"  staging's bake (one status write) -> all gates allow it: {opened:.2f}s, caught up {done:.2f}s")
    spent = ", ".join(f"{key} {value}" for key, value in cost.items())
    print(f"  that change cost: {spent}")


def spent_since(log: Path, before: int) -> dict[str, int]:
    """The calls of the batches the follower logged after its first `before` ones, added up."""
    cost = dict.fromkeys(("kubernetes", "githubReads", "githubWrites"), 0)
    for line in handled_lines(log, before):
        calls = line.get("calls")
        assert isinstance(calls, dict)
        for key in cost:
            cost[key] += int(calls[key])
    return cost


def caught_up(log: Path) -> int:
    """How often the follower has said it caught up (nothing left pending)."""
    return sum(1 for line in log.read_text().splitlines() if '"message": "follower caught up"' in line)


def main() -> int:
    no_arguments("bench/bench_follower.py", __doc__ or "")
    stop_cleanly_on_signals()
    logging.getLogger("stagegate").setLevel(logging.WARNING)
    with devstack.KubeStack() as stack, FakeGitHub() as fake:
        admin = stack.api_client()
        client.CoreV1Api(admin).create_namespace({"metadata": {"name": NAMESPACE}})
        custom = client.CustomObjectsApi(admin)
        gates = KubeGates(api_client(str(stack.function_kubeconfig)), timeout=10)
        pipeline = Pipeline(History(custom, gates, fake, NAMESPACE), custom).create()
        env = {
            "KUBECONFIG": str(stack.function_kubeconfig),
            "GITHUB_TOKEN": fake.token,
            "GITHUB_API_URL": fake.url,
            "STAGEGATE_NAMESPACES": NAMESPACE,
            "FOLLOW_LEASE_NAMESPACE": NAMESPACE,
            "POD_NAME": "bench",
        }
        follower = devstack.FollowerProcess(env, stack.procs)
        waited(follower.following)
        waited(lambda: pipeline.prod_gate() is not None)
        following(pipeline, follower)
        restarting(pipeline, follower, stack, env).proc.terminate()  # idle, but out of the way
        fanning_out(stack, fake, custom, FANOUT, statuses=False)
        fanning_out(stack, fake, custom, FANOUT_WITH_STATUS, statuses=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
