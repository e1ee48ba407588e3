"""Benchmark of the reporter's work (`stagegate.report_service.report_rollout`, in-process) on the real
local kube-apiserver and the fake GitHub on loopback; prints numbers, asserts nothing.

For Rollout histories of 10 and 1,000 entries (each entry its own commit, which the fake knows, bake
`Succeeded`) it measures three reports: the first one of a fresh history (every deployment and status
written), one when everything is already recorded (the steady state: what each of the many Rollout
status writes costs), and one after a single new entry was added. Per case: GitHub reads (GraphQL
requests), GitHub writes, Kubernetes API calls, and latency (the median of BENCH_RUNS runs, default 5;
the first report of 1,000 entries runs once, since it makes 2,000 writes). The GitHub identity is
resolved once beforehand, as a running reporter does once per process. Run with `make bench`.
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stagegate.github import GitHubDeployments, github_client  # noqa: E402
from stagegate.kube import KubeGates, api_client  # noqa: E402
from stagegate_dev import devstack  # noqa: E402
from stagegate_dev.commandline import no_arguments, stop_cleanly_on_signals  # noqa: E402
from stagegate_dev.fake_github import FakeGitHub  # noqa: E402
from tests.functions.reporter_support import History, rev  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
SIZES = (10, 1000)
FIRST_RUNS = {10: RUNS, 1000: 1}


@dataclass
class Sample:
    """What one report cost."""

    reads: int
    writes: int
    kube: int
    ms: float
    github_ms: float


def entry(n: int) -> dict[str, Any]:
    """History entry `n` as the rollout controller writes it, its bake over."""
    return {
        "id": n,
        "version": {"tag": f"main-{n}", "revision": rev(n)},
        "timestamp": "2026-11-26T12:00:00Z",
        "message": "Automatic deployment",
        "bakeStatus": "Succeeded",
        "bakeStatusMessage": "Bake time completed successfully (no errors within bake time).",
    }


def fresh(custom: client.CustomObjectsApi, kube: KubeGates, fake: FakeGitHub, ns: str, size: int) -> History:
    """A governed Rollout in its own namespace and repository whose history has `size` entries, newest
    first, written in one status update; GitHub knows every entry's commit and records none yet."""
    client.CoreV1Api(custom.api_client).create_namespace({"metadata": {"name": ns}})
    history = History(custom, kube, fake, ns).create()
    for n in range(1, size + 1):
        fake.set_ref(history.repo, f"refs/tags/build-{n}", rev(n))
    history.entries = [entry(n) for n in range(size, 0, -1)]
    history.write()
    return history


class TimedGitHub(GitHubDeployments):
    """The reporter's GitHub adapter, adding up the time spent waiting for GitHub."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waited = 0.0

    def _query(self, query: str, variables: dict[str, Any], what: str) -> Mapping[str, Any]:
        started = time.perf_counter()
        try:
            return super()._query(query, variables, what)
        finally:
            self.waited += time.perf_counter() - started

    def create_deployment(self, repository: str, body: Mapping[str, Any]) -> int:
        started = time.perf_counter()
        try:
            return super().create_deployment(repository, body)
        finally:
            self.waited += time.perf_counter() - started

    def create_status(self, repository: str, deployment_id: int, body: Mapping[str, Any]) -> None:
        started = time.perf_counter()
        try:
            super().create_status(repository, deployment_id, body)
        finally:
            self.waited += time.perf_counter() - started


def reader(fake: FakeGitHub) -> TimedGitHub:
    """As a running reporter: its identity resolved once, then only the report's requests count. The
    timeout is generous: the fake answers a 1,000-commit GraphQL read far slower than GitHub."""
    github = TimedGitHub(github_client(fake.token, fake.url, 120))
    github.trusted_creators()
    github.calls, github.waited = 0, 0.0
    return github


def report(history: History, kube: KubeGates) -> Sample:
    github = reader(history.fake)
    before = kube.api.calls
    started = time.perf_counter()
    done = history.report(github)
    elapsed = (time.perf_counter() - started) * 1000
    return Sample(done.reads, done.writes, kube.api.calls - before, elapsed, github.waited * 1000)


def add_entry(history: History) -> None:
    """One more deploy: a new entry on top, its commit known to GitHub, and the oldest one dropped, as
    the rollout controller cuts its history to `versionHistoryLimit` (the length stays the same)."""
    n = int(history.entries[0]["id"]) + 1
    history.fake.set_ref(history.repo, f"refs/tags/build-{n}", rev(n))
    history.entries = [entry(n), *history.entries[:-1]]
    history.write()


def row(label: str, samples: list[Sample]) -> None:
    def middle(values: list[int]) -> str:
        low, high = min(values), max(values)
        return f"{low}" if low == high else f"{low}-{high}"

    latency = statistics.median(s.ms for s in samples)
    waited = statistics.median(s.github_ms for s in samples)
    print(
        f"  {label:<44} GitHub reads={middle([s.reads for s in samples]):>5}"
        f"  GitHub writes={middle([s.writes for s in samples]):>5}"
        f"  Kubernetes calls={middle([s.kube for s in samples]):>3}"
        f"  latency={latency:9.1f} ms (in GitHub {waited:9.1f} ms; median of {len(samples)})"
    )


def main() -> None:
    logging.getLogger("stagegate").setLevel(logging.WARNING)  # numbers only, not one line per write
    with devstack.KubeStack() as stack, FakeGitHub() as fake:
        kube = KubeGates(api_client(str(stack.kubeconfig)), timeout=30)
        custom = client.CustomObjectsApi(stack.api_client())
        print("reporter in-process, fake GitHub and kube-apiserver on loopback (bake Succeeded everywhere);")
        print(
            "'in GitHub': the part of the latency spent waiting for the fake GitHub (Python, graphql-core):"
        )
        for size in SIZES:
            histories = [fresh(custom, kube, fake, f"r{size}-{i}", size) for i in range(FIRST_RUNS[size])]
            row(f"{size} entries, first report (all missing)", [report(h, kube) for h in histories])
            history = histories[0]
            row(f"{size} entries, all recorded (steady state)", [report(history, kube) for _ in range(RUNS)])
            after_one = []
            for _ in range(RUNS):
                add_entry(history)
                after_one.append(report(history, kube))
            row(f"{size} entries, one new entry", after_one)


if __name__ == "__main__":
    no_arguments("bench/bench_reporter.py (make bench)", __doc__ or "")
    stop_cleanly_on_signals()
    main()
