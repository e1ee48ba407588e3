"""No work after the answer: once an entry point answered at its deadline, the work behind it makes no
further Kubernetes or GitHub call (on Cloud Run and Lambda it could otherwise resume much later)."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client

from shared.errors import RetryableError
from shared.github_delivery import signature
from stagegate.abandon import Abandoned, abandonable, check
from stagegate.github import GitHubDeployments, github_client
from stagegate.http import within
from stagegate.kube import KubeGates
from stagegate.settings import Settings
from stagegate.webhook_service import github_request
from stagegate_dev.fake_github import FakeGitHub
from tests.functions.test_github_webhook import SECRET, App, rev


def test_check_raises_only_in_the_abandoned_work_and_only_once_abandoned() -> None:
    seen: list[str] = []
    go_on = threading.Event()

    def work() -> None:
        check("first call")
        seen.append("first")
        go_on.wait(5)
        check("second call")
        seen.append("second")

    run, flag = abandonable(work)
    raised: list[BaseException] = []

    def in_thread() -> None:
        try:
            run()
        except Abandoned as exc:
            raised.append(exc)

    worker = threading.Thread(target=in_thread)
    worker.start()
    time.sleep(0.2)
    check("a call outside the work is never refused")
    flag.set()
    go_on.set()
    worker.join(5)
    assert seen == ["first"]
    assert len(raised) == 1
    assert "second call" in str(raised[0])


def test_within_abandons_running_work_at_the_deadline() -> None:
    calls: list[int] = []

    def work() -> None:
        for i in range(20):
            check(f"call {i}")
            calls.append(i)
            time.sleep(0.1)

    with pytest.raises(RetryableError, match="left undone"):
        within(0.35, work)
    time.sleep(0.5)
    made = len(calls)
    time.sleep(0.5)
    assert 2 <= made <= 5
    assert len(calls) == made  # nothing after the answer


@pytest.fixture
def app(custom: client.CustomObjectsApi, gates: KubeGates, fake: FakeGitHub, namespace: str) -> App:
    return App(custom, gates, fake, namespace)


def _deliver(app: App, fake: FakeGitHub, gates: KubeGates, status_id: int) -> None:
    headers, body = fake.deployment_status_event(app.repo, status_id)
    headers["X-Hub-Signature-256"] = signature(SECRET, body)
    settings = Settings.from_env({"GITHUB_WEBHOOK_SECRET": SECRET, "GITHUB_WEBHOOK_DEADLINE_SECONDS": "1"})
    github_request(headers, body, settings, gates, GitHubDeployments(github_client(fake.token, fake.url, 10)))


@pytest.mark.parametrize("slow", [False, True], ids=["GitHub answers in time", "GitHub answers late"])
def test_a_webhook_answered_at_its_deadline_writes_no_gate_afterwards(
    app: App, fake: FakeGitHub, gates: KubeGates, slow: bool
) -> None:
    app.environment("staging")
    app.environment("prod", upstream="staging")
    app.candidates("prod", ("v1", rev(1)))
    status = app.bake("staging", rev(1))
    if not slow:
        _deliver(app, fake, gates, status)
        assert app.gate("prod") == ["v1"]
        return
    fake.hang_next(1, seconds=2.0, api="graphql")  # the read answers 1 s after the 1 s deadline
    with pytest.raises(RetryableError, match="not finished within 1s"):
        _deliver(app, fake, gates, status)
    time.sleep(2.5)  # the read has come back by now; before, the late recompute opened the gate here
    assert app.gate("prod") == []
