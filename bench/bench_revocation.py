"""Benchmark of a revocation's fan-out: one upstream, N downstream Environments, one `failure` delivery.

`github_webhook` is served by functions-framework (gunicorn, TLS) as deployed, against the real local
kube-apiserver and the fake GitHub on loopback. staging baked `v1`; N prod Environments (each with its
own Rollout listing `v1`) allow it. Then staging's bake of `v1` fails and the signed `deployment_status`
delivery is posted as GitHub posts it (GitHub waits 10 s for the answer and never redelivers). Printed
per N and layout (all in one namespace, or one namespace each): the answer (status, time), how many
gates still allowed `v1` when it was given, when the last gate narrowed (by the delivery's own work, or
by `k8s_audit` taking what it handed on), and the GitHub requests the delivery made. The last row runs
the webhook with a short deadline and `BRIDGE_TRANSPORT` on the Pub/Sub emulator, pushed to a served
`k8s_audit`: the hand-off of what the deadline cut off.
Run with `make bench` (BENCH_REVOCATION_N: comma-separated sizes, default 100,1000).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import sys
import time
from dataclasses import dataclass
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
from tests.functions.handoff_support import GITHUB_TIMEOUT, audit_route, deliver, serve  # noqa: E402
from tests.kube_objects import ENV_ARGS, GATE_ARGS, environment  # noqa: E402

SIZES = [int(n) for n in os.environ.get("BENCH_REVOCATION_N", "100,1000").split(",")]
WEBHOOK = ("github_webhook", "github_webhook")
REV = f"{1:040x}"
TAG = "v1"
HANDOFF_DEADLINE = 4.0
"""The hand-off row's GITHUB_WEBHOOK_DEADLINE_SECONDS: writes stop after 2 s, the rest is handed on."""


class App:
    """staging and N prod Environments following it, spread over `namespaces` namespaces."""

    def __init__(
        self, stack: devstack.KubeStack, fake: FakeGitHub, label: str, n: int, namespaces: int
    ) -> None:
        self.custom = client.CustomObjectsApi(stack.api_client())
        self.core = client.CoreV1Api(stack.api_client())
        self.kube = KubeGates(api_client(str(stack.kubeconfig)), timeout=10)
        self.fake = fake
        self.repo = f"org-{label}/myapp"
        self.namespaces = [f"{label}-{i}" for i in range(namespaces)]
        self.own = frozenset(self.namespaces)
        self.n = n
        fake.add_repo(self.repo)
        for ns in self.namespaces:
            self.core.create_namespace({"metadata": {"name": ns}})
        self._environment(self.namespaces[0], "staging", None)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: self._environment(self.namespace(i), f"prod-{i}", "staging"), range(n)))

    def namespace(self, i: int) -> str:
        return self.namespaces[i % len(self.namespaces)]

    def _environment(self, ns: str, name: str, upstream: str | None) -> None:
        body = environment(ns, name, upstream=upstream, rollout=f"myapp-{name}")
        body["spec"]["backend"]["project"] = self.repo
        created = self.custom.create_namespaced_custom_object(*ENV_ARGS, ns, "environments", body)
        ensure_gates(Environment.from_raw(created), self.kube, fresh=True)  # what the audit webhook does
        rollout = {
            "apiVersion": "kuberik.com/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": f"myapp-{name}"},
        }
        self.custom.create_namespaced_custom_object("kuberik.com", "v1alpha1", ns, "rollouts", rollout)
        status = {"status": {"releaseCandidates": [{"tag": TAG, "revision": REV}]}}
        self.custom.patch_namespaced_custom_object_status(
            "kuberik.com", "v1alpha1", ns, "rollouts", f"myapp-{name}", status
        )

    def allowing(self) -> int:
        """How many of this app's prod gates allow `v1` now (one cluster-wide read)."""
        listed = self.custom.list_cluster_custom_object(GATE_ARGS[0], GATE_ARGS[1], "rolloutgates")["items"]
        return sum(
            1
            for gate in listed
            if gate["metadata"]["namespace"] in self.own
            and gate["metadata"]["name"].startswith("prod-")
            and TAG in (gate["spec"].get("allowedVersions") or [])
        )


def wait_for(predicate: Any, seconds: float) -> float | None:
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        if predicate():
            return time.perf_counter() - started
        time.sleep(0.05)
    return None


@dataclass(frozen=True)
class Case:
    """One row: N Environments, laid out in one namespace or one each, and how the webhook is run."""

    n: int
    spread: bool
    deadline: float | None = None
    """GITHUB_WEBHOOK_DEADLINE_SECONDS when set (a short one, to see the hand-off), else the default."""

    @property
    def label(self) -> str:
        layout = "one namespace each" if self.spread else "one namespace"
        return layout + ("" if self.deadline is None else f", deadline {self.deadline:g} s, hand-off")


def run(
    stack: devstack.KubeStack, procs: devstack.Processes, fake: FakeGitHub, emulator: str, case: Case
) -> None:
    n = case.n
    app = App(
        stack,
        fake,
        f"r{n}{'s' if case.spread else 'o'}{'h' if case.deadline else ''}",
        n,
        n if case.spread else 1,
    )
    ca = str(stack.tls.ca_file)
    opener = serve(stack, procs, fake, WEBHOOK, True)
    url = opener
    if case.deadline is not None:
        os.environ["PUBSUB_EMULATOR_HOST"] = emulator  # the bench's own Pub/Sub clients
        topic = audit_route(stack, procs, fake, emulator)
        url = serve(
            stack, procs, fake, WEBHOOK, True,
            GITHUB_WEBHOOK_DEADLINE_SECONDS=str(case.deadline), BRIDGE_TRANSPORT="pubsub",
            BRIDGE_PUBSUB_TOPIC=topic, PUBSUB_EMULATOR_HOST=emulator,
        )  # fmt: skip
    deployment = fake.create_deployment(
        app.repo, sha=REV, ref=REV, environment="kuberik/myapp/staging", task="deploy:kuberik/myapp",
        payload={"id": "1", "version": {"tag": TAG, "revision": REV}},
    )  # fmt: skip
    opened = fake.create_status(app.repo, deployment["id"], "success", "Bake succeeded")["id"]
    deliver(opener, fake, app.repo, opened, ca)
    wait_for(lambda: app.allowing() == n, 120)  # the widening, not measured
    failed = fake.create_status(app.repo, deployment["id"], "failure", "Bake failed: error rate above 5%")[
        "id"
    ]
    fake.reset_calls()
    started = time.perf_counter()
    code, seconds = deliver(url, fake, app.repo, failed, ca)
    still = app.allowing()
    if still == 0:
        last = f"by the answer ({seconds:.2f} s)"
    else:
        done = wait_for(lambda: app.allowing() == 0, 180)
        last = "never (within 180 s)" if done is None else f"{time.perf_counter() - started:.2f} s"
    github = sum(1 for method, _ in fake.calls if method == "POST")
    print(
        f"  N={n:<5} {case.label:<46} answer {code or 'timeout'} after {seconds:5.2f} s, "
        f"{still:4d} of {n} still allowing v1 then; all narrowed {last}; GitHub requests {github}"
    )


def main() -> None:
    logging.getLogger("stagegate").setLevel(logging.WARNING)
    print(f"revocation fan-out through github_webhook as served (GitHub waits {GITHUB_TIMEOUT:g} s):")
    cases = [Case(n, spread) for n in SIZES for spread in (False, True)]
    cases += [Case(max(SIZES), False, HANDOFF_DEADLINE)]
    with devstack.KubeStack() as stack, FakeGitHub() as fake:
        procs = devstack.Processes(stack.dir)
        try:
            emulator = devstack.PubSubEmulator(procs).host
            for case in cases:
                run(stack, procs, fake, emulator, case)
        finally:
            procs.stop_all()


if __name__ == "__main__":
    no_arguments("bench/bench_revocation.py (make bench)", __doc__ or "")
    stop_cleanly_on_signals()
    main()
