"""The reporter on the real kube-apiserver and the GitHub stand-in: a fresh history, one left by the Go
controller (adopted, not duplicated), every bake state, truncation, concurrent reports, the Lease, a
rate-limited write and an outage retried (in-process here; through Pub/Sub in test_reporter_pubsub)."""

from __future__ import annotations

import base64
import datetime
import json
import threading

import pytest
from kubernetes import client

from shared.errors import RetryableError
from stagegate.kube import KubeGates, report_lease_name
from stagegate.lease_watch import LeaseWatch
from stagegate.report_service import Busy, Limits, report_all, report_rollout
from stagegate_dev.fake_github import FakeGitHub
from tests.functions.reporter_support import History, rev

GO_CONTROLLER = "kuberik-environment-controller"


@pytest.fixture
def history(custom: client.CustomObjectsApi, gates: KubeGates, fake: FakeGitHub, namespace: str) -> History:
    return History(custom, gates, fake, namespace).create()


def test_a_fresh_history_is_recorded_in_the_go_controllers_format(history: History) -> None:
    history.deploy(1, "Succeeded", "all 3 checks passed")
    history.deploy(2, "InProgress")
    history.deploy(3)
    report = history.report()
    assert (report.deployments, report.statuses, report.reads) == (3, 3, 2)  # read, re-read before creating
    recorded = history.recorded()
    assert sorted(recorded) == ["1", "2", "3"]
    first = recorded["1"][0]
    deployment = first["deployment"]
    assert (deployment.ref, deployment.sha, deployment.task) == (rev(1), rev(1), "deploy:kuberik/myapp")
    assert deployment.environment == "kuberik/myapp/staging"
    assert deployment.description == "deploy main-1"
    assert deployment.production_environment is False
    # The payload is the base64 of Go's json.Marshal of {id, version} (no relationship on staging).
    assert base64.b64decode(deployment.payload) == (
        b'{"id":"1","version":{"tag":"main-1","revision":"' + rev(1).encode() + b'"}}'
    )
    assert first["statuses"] == [("success", "Bake succeeded: all 3 checks passed")]
    assert recorded["2"][0]["statuses"] == [("in_progress", "Baking in progress")]
    assert recorded["3"][0]["statuses"] == [("pending", "Deploying")]
    # Deployments were created oldest entry first, as the Go controller walks the history.
    assert [recorded[k][0]["deployment"].id for k in ("1", "2", "3")] == sorted(
        recorded[k][0]["deployment"].id for k in ("1", "2", "3")
    )

    again = history.report()
    assert (again.outcome, again.deployments, again.statuses, again.reads, again.writes) == (
        "unchanged",
        0,
        0,
        1,
        0,
    )


def test_a_history_the_go_controller_left_is_adopted_not_duplicated(history: History) -> None:
    history.deploy(1, "Succeeded")
    history.deploy(2, "Succeeded")
    history.deploy(3, "InProgress")
    repo = history.repo
    env = history.github_environment
    # Entry 1 as v0.1.5 wrote it: base64 payload, statuses pending -> in_progress -> success.
    doc = json.dumps({"id": "1", "version": {"tag": "main-1", "revision": rev(1)}}, separators=(",", ":"))
    d1 = history.fake.create_deployment(
        repo, sha=rev(1), ref=rev(1), environment=env, task="deploy:kuberik/myapp",
        payload=base64.b64encode(doc.encode()).decode(), creator=GO_CONTROLLER,
    )  # type: ignore[arg-type]  # fmt: skip
    for state, text in (
        ("pending", "Deploying"),
        ("in_progress", "Baking in progress"),
        ("success", "Bake succeeded"),
    ):
        history.fake.create_status(repo, d1["id"], state, text, environment=env, creator=GO_CONTROLLER)
    # Entry 2 with a JSON object payload, its bake not yet recorded.
    d2 = history.fake.create_deployment(
        repo, sha=rev(2), ref=rev(2), environment=env, task="deploy:kuberik/myapp",
        payload={"id": "2", "version": {"tag": "main-2", "revision": rev(2)}}, creator=GO_CONTROLLER,
    )  # fmt: skip
    history.fake.create_status(
        repo, d2["id"], "in_progress", "Baking in progress", environment=env, creator=GO_CONTROLLER
    )

    report = history.report(history.reader(trusted=[GO_CONTROLLER]))
    recorded = history.recorded()
    assert [len(recorded[k]) for k in ("1", "2", "3")] == [1, 1, 1]
    assert recorded["1"][0]["deployment"].id == d1["id"]
    # Nothing added by the reporter; the last mark is GitHub's own, for entry 2's success.
    assert recorded["1"][0]["statuses"] == [
        ("pending", "Deploying"),
        ("in_progress", "Baking in progress"),
        ("success", "Bake succeeded"),
        ("inactive", ""),
    ]
    assert recorded["2"][0]["statuses"][-1] == ("success", "Bake succeeded")
    assert (report.deployments, report.statuses, report.unchanged) == (1, 2, 2)


def test_records_of_an_untrusted_creator_are_not_adopted(history: History) -> None:
    """Adopting them would leave the gate reader (which ignores them) without a bake result."""
    history.deploy(1, "Succeeded")
    history.fake.create_deployment(
        history.repo, sha=rev(1), ref=rev(1), environment=history.github_environment,
        task="deploy:kuberik/myapp", payload={"id": "1", "version": {"tag": "main-1", "revision": rev(1)}},
        creator="someone-else",
    )  # fmt: skip
    report = history.report()
    assert report.deployments == 1
    assert len(history.recorded()["1"]) == 2


@pytest.mark.parametrize(
    ("bake", "state", "description"),
    [
        ("Succeeded", "success", "Bake succeeded: 5m quiet"),
        ("Failed", "failure", "Bake failed: 5m quiet"),
        ("InProgress", "in_progress", "Baking in progress: 5m quiet"),
        ("Deploying", "in_progress", "Deploying: 5m quiet"),
        ("Cancelled", "inactive", "Bake cancelled: 5m quiet"),
        (None, "pending", "Deploying: 5m quiet"),
        ("SomethingNew", "pending", "Deploying: 5m quiet"),
    ],
)
def test_every_bake_state_of_the_mapping_table(
    history: History, bake: str | None, state: str, description: str
) -> None:
    history.deploy(1, bake, "5m quiet")
    history.report()
    assert history.recorded()["1"][0]["statuses"] == [(state, description)]


def test_descriptions_are_cut_to_140_characters(history: History) -> None:
    history.deploy(1, "Failed", "é" * 300)
    history.report()
    ((state, description),) = history.recorded()["1"][0]["statuses"]
    assert state == "failure"
    assert description == ("Bake failed: " + "é" * 300)[:140]
    assert len(description) == 140


def test_a_bake_moving_on_adds_one_status_each_time_and_a_retried_failure_goes_back(history: History) -> None:
    history.deploy(1, "Deploying")
    history.report()
    for bake in ("InProgress", "Failed", "InProgress", "Succeeded"):
        history.set_bake(1, bake)
        assert history.report().statuses == 1
    assert history.report().outcome == "unchanged"
    assert history.recorded()["1"][0]["statuses"] == [
        ("in_progress", "Deploying"),
        ("in_progress", "Baking in progress"),
        ("failure", "Bake failed"),
        ("in_progress", "Baking in progress"),
        ("success", "Bake succeeded"),
    ]


def test_githubs_own_inactive_marks_do_not_make_the_reporter_write_again(history: History) -> None:
    history.deploy(1, "Succeeded")
    history.report()
    history.deploy(2, "Succeeded")  # its success makes GitHub mark deployment 1 inactive
    history.report()
    assert history.recorded()["1"][0]["statuses"] == [("success", "Bake succeeded"), ("inactive", "")]
    assert history.report().outcome == "unchanged"


def test_entries_without_id_revision_commit_or_known_commit_are_skipped(history: History) -> None:
    history.deploy(1, "Succeeded")
    history.deploy(2, "Succeeded", known=False)
    history.entries.insert(
        0, {"version": {"tag": "no-id", "revision": rev(3)}, "timestamp": "2026-11-26T12:00:00Z"}
    )
    history.entries.insert(0, {"id": 4, "version": {"tag": "no-rev"}, "timestamp": "2026-11-26T12:00:00Z"})
    history.entries.insert(
        0, {"id": 5, "version": {"tag": "branch", "revision": "main"}, "timestamp": "2026-11-26T12:00:00Z"}
    )
    history.write()
    report = history.report()
    assert sorted(history.recorded()) == ["1"]
    reasons = " | ".join(report.skipped)
    assert "GitHub knows no commit " + rev(2) in reasons
    assert "no id" in reasons
    assert "no revision" in reasons
    assert "'main' is not a commit id" in reasons


def test_concurrent_reports_never_create_a_second_deployment_for_an_entry(history: History) -> None:
    for n in range(1, 6):
        history.deploy(n, "Succeeded")
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def run() -> None:
        start.wait()
        try:
            report = history.report()
            result = report.outcome
        except Busy:
            result = "busy"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(outcomes) == 8
    assert "recorded" in outcomes
    assert set(outcomes) <= {"recorded", "unchanged", "busy"}
    recorded = history.recorded()
    assert {k: len(v) for k, v in recorded.items()} == {str(n): 1 for n in range(1, 6)}
    for v in recorded.values():  # one success each; GitHub's own inactive marks aside
        assert [s for s in v[0]["statuses"] if s != ("inactive", "")] == [("success", "Bake succeeded")]


def test_the_lease_is_held_then_released_and_one_seen_unchanged_for_its_duration_is_taken_over(
    history: History, gates: KubeGates
) -> None:
    history.deploy(1, "Succeeded")
    rollout = gates.get_rollout(history.namespace, history.rollout)
    assert rollout is not None
    now = datetime.datetime.now(datetime.UTC)
    held = gates.acquire_lease(rollout, "someone", 120, now)
    assert held is not None
    assert held["metadata"]["name"] == report_lease_name(history.rollout)
    assert held["metadata"]["ownerReferences"][0]["uid"] == rollout["metadata"]["uid"]
    assert held["spec"]["holderIdentity"] == "someone"
    with pytest.raises(Busy):
        history.report()
    assert history.recorded() == {}
    gates.release_lease(held)
    assert history.report().deployments == 1
    # A holder that crashed: another instance takes the Lease over once it has watched the same
    # record for the claim's duration on its own clock.
    assert gates.acquire_lease(rollout, "crashed", 30, now) is not None
    ticks = iter([0.0, 29.0, 30.0])
    taker = KubeGates(gates.api, gates.timeout, LeaseWatch(monotonic=lambda: next(ticks)))
    assert taker.acquire_lease(rollout, "taker", 30, now) is None  # first sight: the count starts
    assert taker.acquire_lease(rollout, "taker", 30, now) is None  # 29 s: still the holder's
    taken = taker.acquire_lease(rollout, "taker", 30, now)  # 30 s unchanged: ran out
    assert taken is not None
    assert taken["spec"]["holderIdentity"] == "taker"
    taker.release_lease(taken)
    history.set_bake(1, "Failed")
    assert history.report().statuses == 1


@pytest.mark.parametrize("ahead", [datetime.timedelta(minutes=10), datetime.timedelta(days=3)])
def test_a_reporter_whose_clock_runs_ahead_never_takes_a_held_lease(
    history: History, gates: KubeGates, ahead: datetime.timedelta
) -> None:
    # Two instances whose clocks differ by more than the Lease's duration: the one ahead would have
    # read the holder's renewTime as long past and taken the Lease, and both would have reported.
    history.deploy(1, "Succeeded")
    rollout = gates.get_rollout(history.namespace, history.rollout)
    assert rollout is not None
    now = datetime.datetime.now(datetime.UTC)
    held = gates.acquire_lease(rollout, "reporter-a", 120, now)
    assert held is not None
    other = KubeGates(gates.api, gates.timeout)  # another instance, its clock `ahead`
    for _ in range(3):
        assert other.acquire_lease(rollout, "reporter-b", 120, now + ahead) is None
    with pytest.raises(Busy):
        report_rollout(
            history.namespace,
            history.rollout,
            other,
            history.reader(),
            Limits(),
            clock=(now + ahead).timestamp,
        )
    assert history.recorded() == {}
    gates.release_lease(held)


def test_a_rate_limited_write_fails_retryably_and_the_retry_completes_it(history: History) -> None:
    for n in (1, 2, 3):
        history.deploy(n, "Succeeded")
    github = history.reader()
    # Entry 1's deployment and status go through; entry 2's deployment hits the secondary limit.
    _arm_after_rest_writes(history.fake, 2)
    with pytest.raises(RetryableError, match="rate limited"):
        history.report(github)
    partial = history.recorded()
    assert sorted(partial) == ["1"]
    assert partial["1"][0]["statuses"] == [("success", "Bake succeeded")]
    done = history.report(github)
    assert (done.deployments, done.statuses) == (2, 2)
    assert {k: len(v) for k, v in history.recorded().items()} == {"1": 1, "2": 1, "3": 1}


def test_a_github_outage_records_nothing_and_the_retry_records_everything(history: History) -> None:
    history.deploy(1, "Succeeded")
    history.deploy(2, "InProgress")
    history.fake.fail_next(50, 502)
    with pytest.raises(RetryableError):
        history.report()
    history.fake.faults.clear()
    assert history.recorded() == {}
    assert (history.report().deployments, len(history.recorded())) == (2, 2)


def test_a_rollout_without_a_github_environment_or_gone_is_not_an_error(
    history: History, gates: KubeGates
) -> None:
    summary = report_all(
        [(history.namespace, "nobody-governs-this"), (history.namespace, history.rollout)],
        gates,
        history.reader(),
    )
    outcomes = [r["outcome"] for r in summary["rollouts"]]
    assert outcomes == ["gone", "unchanged"]


def _arm_after_rest_writes(fake: FakeGitHub, writes: int) -> None:
    """Let `writes` REST POSTs through, then rate-limit the next one (GraphQL reads are not counted)."""
    original = fake.record_call
    seen = {"posts": 0}

    def record(method: str, path: str) -> None:
        original(method, path)
        if method == "POST" and "/graphql" not in path:
            seen["posts"] += 1
            if seen["posts"] == writes + 1:
                fake.rate_limit_next(1, "secondary", api="rest")
                fake.record_call = original  # type: ignore[method-assign]

    fake.record_call = record  # type: ignore[method-assign]


def test_the_resync_reports_every_governed_rollout_before_recomputing_gates(
    history: History, gates: KubeGates
) -> None:
    """The healer for a Rollout change no transport carried (managed clusters without an audit webhook)."""
    from functools import partial

    from stagegate.resync_service import resync

    history.deploy(1, "Succeeded")
    github = history.reader()
    reporter = partial(report_all, kube=gates, github=github, skip_busy=True)
    summary = resync(gates, github, [history.namespace], 3, reporter=reporter)
    assert [r["outcome"] for r in summary["reports"]] == ["recorded"]
    assert history.recorded()["1"][0]["statuses"] == [("success", "Bake succeeded")]
    assert summary["errors"] == []
