"""The follower on a cluster with no audit webhook (as GKE, EKS and AKS are): the real kube-apiserver
(which here has none), the GitHub stand-in, and `python -m stagegate.follower` in processes of its own,
with the least-privilege identity of `infra/k8s/rbac.yaml`. No resync runs in these tests: whatever
happens, the follower did it.

Each test confines its followers to its own namespace (`STAGEGATE_NAMESPACES`), where their Lease lives
too, so tests sharing the apiserver never see each other's objects.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client

from shared.follow import RESUME_ANNOTATION
from stagegate.kube import KubeGates
from stagegate.leader import LEASE_NAME
from stagegate_dev import devstack
from stagegate_dev.fake_github import FakeGitHub
from tests.functions.follower_support import Pipeline
from tests.functions.metrics_support import scrape
from tests.functions.reporter_support import ROLLOUT_ARGS, History
from tests.kube_objects import ENV_ARGS

LEASE_SECONDS = 6


def wait_for(check: Callable[[], object], what: str, seconds: float = 40.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {seconds:g}s: {what}")
        time.sleep(0.05)


@pytest.fixture
def pipeline(custom: client.CustomObjectsApi, gates: KubeGates, fake: FakeGitHub, namespace: str) -> Pipeline:
    return Pipeline(History(custom, gates, fake, namespace), custom)


@pytest.fixture
def followers(
    kube_stack: devstack.KubeStack, fake: FakeGitHub, namespace: str
) -> Iterator[Callable[[str], devstack.FollowerProcess]]:
    """Start followers by identity (POD_NAME); all are stopped at the end."""
    started: list[devstack.FollowerProcess] = []

    def start(identity: str, **settings: str) -> devstack.FollowerProcess:
        env = {
            **settings,
            "KUBECONFIG": str(kube_stack.function_kubeconfig),
            "GITHUB_TOKEN": fake.token,
            "GITHUB_API_URL": fake.url,
            "STAGEGATE_NAMESPACES": namespace,
            "FOLLOW_LEASE_NAMESPACE": namespace,
            "FOLLOW_LEASE_SECONDS": str(LEASE_SECONDS),
            "POD_NAME": identity,
        }
        name = f"follower-{namespace}-{identity}-{len(started)}"
        follower = devstack.FollowerProcess(env, kube_stack.procs, name)
        started.append(follower)
        return follower

    yield start
    for follower in started:
        if follower.proc.poll() is None:
            follower.proc.terminate()
            follower.proc.wait(timeout=15)


def test_a_bake_success_is_recorded_on_github_and_opens_prod_without_an_audit_webhook_or_a_resync(
    pipeline: Pipeline, followers: Callable[[str], devstack.FollowerProcess]
) -> None:
    port = devstack.free_port()
    follower = _following(pipeline, followers("a", METRICS_PORT=str(port)))
    pipeline.history.deploy(1, "InProgress")
    pipeline.candidates(1)
    wait_for(lambda: pipeline.recorded_states(1) == [["in_progress"]], "the bake in progress is on GitHub")
    assert pipeline.allowed() == []
    pipeline.history.set_bake(1, "Succeeded", "all checks passed")
    wait_for(lambda: pipeline.allowed() == ["main-1"], "prod's gate opens for main-1")
    assert pipeline.recorded_states(1) == [["in_progress", "success"]]
    assert "Traceback" not in follower.log()
    # What its metrics port shows: GitHub answered, both states were recorded with their lag (seconds
    # here: the follower reacts to the write), prod's gate opened.
    seen = scrape(port)
    assert seen['stagegate_github_requests_total{outcome="ok"}'] > 0, seen
    assert seen["stagegate_report_lag_seconds_count"] == 2, seen
    assert seen['stagegate_report_lag_seconds_bucket{le="30.0"}'] == 2, seen
    assert seen['stagegate_gate_changes_total{change="opened"}'] >= 1, seen


def test_a_change_made_while_the_follower_is_down_is_handled_once_it_is_back(
    pipeline: Pipeline, followers: Callable[[str], devstack.FollowerProcess], gates: KubeGates, namespace: str
) -> None:
    _killed_while_staging_bakes(pipeline, followers, gates, namespace)

    pipeline.history.set_bake(1, "Succeeded")  # nobody follows
    time.sleep(0.5)
    assert pipeline.recorded_states(1) == [["in_progress"]]
    assert pipeline.allowed() == []

    again = followers("a")  # the same pod's container, restarted: it takes its own Lease back at once
    log = _opened_by(again, pipeline)
    assert "follower listed" not in log  # it resumed the watch, nothing was listed again
    assert '"resume": {' in log


def test_a_resume_point_too_old_for_the_apiserver_is_followed_by_a_full_list(
    pipeline: Pipeline, followers: Callable[[str], devstack.FollowerProcess], gates: KubeGates, namespace: str
) -> None:
    _killed_while_staging_bakes(pipeline, followers, gates, namespace)
    # The watch was lost for longer than the apiserver keeps events: its resume point is answered 410.
    lease = gates.read_lease(namespace, LEASE_NAME)
    assert lease is not None
    old = dict.fromkeys(_resume(gates, namespace), "1")
    lease["metadata"]["annotations"][RESUME_ANNOTATION] = json.dumps(old)
    gates.replace_lease(lease)
    pipeline.history.set_bake(1, "Succeeded")

    again = followers("a")
    log = _opened_by(again, pipeline)
    assert "follower watch expired; listing again" in log
    assert "follower listed" in log


def test_removing_prods_relationship_relaxes_its_gate_without_a_resync(
    pipeline: Pipeline, followers: Callable[[str], devstack.FollowerProcess], namespace: str
) -> None:
    _following(pipeline, followers("a"))
    pipeline.custom.patch_namespaced_custom_object(
        *ENV_ARGS, namespace, "environments", "prod", {"spec": {"relationship": None}}
    )
    wait_for(lambda: "allowedVersions" not in (pipeline.prod_gate() or {"spec": {"x": 1}})["spec"], "relaxed")


def test_two_replicas_never_both_report_a_rollout_and_a_standby_takes_over(
    pipeline: Pipeline, followers: Callable[[str], devstack.FollowerProcess], gates: KubeGates, namespace: str
) -> None:
    a, b = followers("a"), followers("b")
    wait_for(lambda: a.following() or b.following(), "one replica takes the Lease")
    time.sleep(LEASE_SECONDS * 1.5)  # long enough for the other to take it, if it wrongly could
    assert a.following() != b.following()
    leader, standby = (a, b) if a.following() else (b, a)
    pipeline.create()
    pipeline.candidates(*range(1, 9))
    for n in range(1, 9):  # a burst of history writes, as a busy rollout controller makes them
        pipeline.history.deploy(n, "Succeeded")
    wait_for(lambda: pipeline.allowed() == [f"main-{n}" for n in range(1, 9)], "every version allowed")
    recorded = [pipeline.recorded_states(n) for n in range(1, 9)]
    assert [len(deployments) for deployments in recorded] == [1] * 8  # one deployment per entry
    assert all(deployments[0][0] == "success" for deployments in recorded)  # older ones made inactive after
    assert "follower handled" not in standby.log()

    leader.proc.send_signal(signal.SIGKILL)  # no release: the standby waits out the Lease on its own clock
    killed = time.monotonic()
    wait_for(standby.following, "the standby takes over", seconds=LEASE_SECONDS * 4 + 10)
    assert time.monotonic() - killed >= LEASE_SECONDS * 0.5
    pipeline.candidates(*range(1, 10))
    pipeline.history.deploy(9, "Succeeded")
    wait_for(lambda: "main-9" in (pipeline.allowed() or []), "main-9 allowed by the new follower")
    assert all(len(pipeline.recorded_states(n)) == 1 for n in range(1, 10))  # one deployment per entry

    lease = gates.read_lease(namespace, LEASE_NAME)
    assert lease is not None
    assert lease["spec"]["holderIdentity"] in ("a", "b")
    standby.proc.send_signal(signal.SIGTERM)  # a clean stop gives the Lease back
    standby.proc.wait(timeout=15)
    lease = gates.read_lease(namespace, LEASE_NAME)
    assert lease is not None
    assert "holderIdentity" not in lease["spec"]
    assert RESUME_ANNOTATION in lease["metadata"]["annotations"]


def test_with_follow_reports_off_the_gates_follow_but_nothing_is_recorded_on_github(
    pipeline: Pipeline, followers: Callable[..., devstack.FollowerProcess], namespace: str
) -> None:
    follower = _following(pipeline, followers("a", FOLLOW_REPORTS="false"))
    pipeline.candidates(1)
    pipeline.history.deploy(1, "Succeeded")
    # One stream carries every Rollout change in order: once a later one is handled, so is the bake.
    marker = {"apiVersion": "kuberik.com/v1alpha1", "kind": "Rollout", "metadata": {"name": "marker"}}
    pipeline.custom.create_namespaced_custom_object(*ROLLOUT_ARGS, namespace, "rollouts", marker)
    wait_for(lambda: f"rollout {namespace}/marker" in follower.log(), "the later change handled")
    assert pipeline.history.recorded() == {}  # the Go controller's job while it still runs
    assert pipeline.allowed() == []
    assert '"reports"' not in follower.log()
    assert f'"environments": ["{namespace}/prod"' in follower.log()  # the gates were recomputed


def _following(pipeline: Pipeline, follower: devstack.FollowerProcess) -> devstack.FollowerProcess:
    """Once `follower` holds its Lease, the pipeline is created: prod's gate, made by the follower
    (`k8s_admission` makes it at admission where it runs), blocks everything."""
    wait_for(follower.following, "the follower takes its Lease")
    pipeline.create()
    wait_for(lambda: pipeline.prod_gate() is not None, "prod's gate exists")
    assert pipeline.allowed() == []
    return follower


def _killed_while_staging_bakes(
    pipeline: Pipeline, followers: Callable[[str], devstack.FollowerProcess], gates: KubeGates, namespace: str
) -> None:
    """A follower has recorded staging's bake in progress and kept a resume point, then is killed."""
    first = followers("a")
    wait_for(first.following, "the follower takes its Lease")
    pipeline.create()
    pipeline.history.deploy(1, "InProgress")
    pipeline.candidates(1)
    wait_for(lambda: pipeline.recorded_states(1) == [["in_progress"]], "the bake in progress is on GitHub")
    wait_for(lambda: len(_resume(gates, namespace)) == 2, "both streams' resume points are on the Lease")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)


def _opened_by(follower: devstack.FollowerProcess, pipeline: Pipeline) -> str:
    """Once `follower` has recorded the bake's success and opened prod's gate: its log."""
    wait_for(lambda: pipeline.allowed() == ["main-1"], "prod's gate opens for main-1")
    assert pipeline.recorded_states(1) == [["in_progress", "success"]]
    return follower.log()


def _resume(gates: KubeGates, namespace: str) -> dict[str, str]:
    lease = gates.read_lease(namespace, LEASE_NAME)
    raw = ((lease or {}).get("metadata") or {}).get("annotations", {}).get(RESUME_ANNOTATION)
    return json.loads(raw) if raw else {}
