"""The fake GitHub delivers `deployment_status` webhooks by itself, as GitHub does for a configured hook.

A small receiver on loopback records what arrives. Each test waits for delivery attempts with
`wait_for_deliveries` rather than sleeping; since the fake delivers in recording order, a last
"sentinel" status proves that nothing recorded before it is still on its way.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from stagegate_dev.fake_github import FakeGitHub
from stagegate_dev.fake_github.server import Quiet
from tests.fake_github.support import REPO, STAGING, deploy, http

SECRET = "s3cret"
OTHER = "myorg/other"


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.body)
        return decoded

    @property
    def status_id(self) -> int:
        return int(self.payload["deployment_status"]["id"])


@dataclass
class Receiver:
    """A webhook receiver that records every request, then answers `status` after `delay` seconds."""

    url: str = ""
    status: int = 200
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        with self.lock:
            self.received.append(Received(dict(request.headers), request.get_data()))
            status, delay = self.status, self.delay
        time.sleep(delay)
        return Response(b"ok", status=status)(environ, start_response)

    def status_ids(self) -> list[int]:
        with self.lock:
            return [r.status_id for r in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    app = Receiver()
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    app.url = f"http://127.0.0.1:{server.server_port}/hook"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield app
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def post_status(fake: FakeGitHub, deployment_id: int, state: str, repo: str = REPO) -> dict[str, Any]:
    answer = http(fake, "POST", f"/repos/{repo}/deployments/{deployment_id}/statuses", json={"state": state})
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_a_status_created_over_rest_is_delivered_signed(fake: FakeGitHub, receiver: Receiver) -> None:
    fake.deliver_webhooks(receiver.url, SECRET)
    deployment = deploy(fake, 1)

    status = post_status(fake, deployment["id"], "in_progress")
    [delivery] = fake.wait_for_deliveries(1)

    [got] = receiver.received
    expected = "sha256=" + hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(got.headers["X-Hub-Signature-256"], expected)
    assert got.headers["X-Github-Event"] == "deployment_status"
    assert got.headers["X-Github-Hook-Id"] == str(fake.hook_id)
    assert got.headers["Content-Type"] == "application/json"
    assert got.payload["action"] == "created"
    assert got.payload["deployment_status"]["id"] == status["id"]
    assert got.payload["deployment_status"]["state"] == "in_progress"
    assert got.payload["deployment"]["id"] == deployment["id"]
    assert got.payload["repository"]["full_name"] == REPO
    assert delivery.guid == got.headers["X-Github-Delivery"]
    assert (delivery.repo, delivery.status_id, delivery.deployment_id, delivery.state) == (
        REPO,
        status["id"],
        deployment["id"],
        "in_progress",
    )
    assert (delivery.status_code, delivery.error, delivery.ok) == (200, None, True)
    assert 0 <= delivery.latency < 5


def test_a_status_created_with_the_python_helper_is_delivered_too(
    fake: FakeGitHub, receiver: Receiver
) -> None:
    fake.deliver_webhooks(receiver.url, SECRET)
    status = fake.create_status(REPO, deploy(fake, 1)["id"], "failure", "Bake failed")

    fake.wait_for_deliveries(1)

    assert receiver.status_ids() == [status["id"]]
    assert receiver.received[0].payload["deployment_status"]["description"] == "Bake failed"


def test_deliveries_arrive_in_the_order_the_statuses_were_recorded(
    fake: FakeGitHub, receiver: Receiver
) -> None:
    fake.deliver_webhooks(receiver.url, SECRET)
    first, second = deploy(fake, 1)["id"], deploy(fake, 2)["id"]
    recorded = [
        post_status(fake, second, "queued")["id"],
        fake.create_status(REPO, first, "in_progress")["id"],
        post_status(fake, first, "failure")["id"],
        fake.create_status(REPO, second, "in_progress")["id"],
        post_status(fake, second, "error")["id"],
        post_status(fake, first, "pending")["id"],
    ]

    deliveries = fake.wait_for_deliveries(len(recorded))

    assert receiver.status_ids() == recorded
    assert [d.status_id for d in deliveries] == recorded
    assert len({d.guid for d in deliveries}) == len(recorded)
    assert [d.recorded_at for d in deliveries] == sorted(d.recorded_at for d in deliveries)


def test_inactive_statuses_explicit_or_automatic_are_not_delivered(
    fake: FakeGitHub, receiver: Receiver
) -> None:
    fake.deliver_webhooks(receiver.url, SECRET)
    older, newer = deploy(fake, 1)["id"], deploy(fake, 2)["id"]
    delivered = [post_status(fake, older, "success")["id"], post_status(fake, newer, "success")["id"]]
    automatic = fake.statuses(REPO, older)[0]
    assert automatic["state"] == "inactive"  # the success of `newer` added it
    post_status(fake, newer, "inactive")
    delivered.append(post_status(fake, newer, "error")["id"])  # the sentinel

    fake.wait_for_deliveries(len(delivered))

    assert receiver.status_ids() == delivered
    assert [d.state for d in fake.deliveries] == ["success", "success", "error"]


@pytest.mark.parametrize("status", [500, 404])
def test_a_receiver_that_answers_an_error_fails_the_delivery_which_is_never_retried(
    fake: FakeGitHub, receiver: Receiver, status: int
) -> None:
    receiver.status = status
    fake.deliver_webhooks(receiver.url, SECRET)
    deployment = deploy(fake, 1)["id"]
    failed = post_status(fake, deployment, "in_progress")["id"]
    [first] = fake.wait_for_deliveries(1)
    receiver.status = 200  # up again: GitHub still does not redeliver the failed one

    sentinel = post_status(fake, deployment, "success")["id"]
    deliveries = fake.wait_for_deliveries(2)

    assert (first.status_id, first.status_code, first.ok) == (failed, status, False)
    assert first.error == f"Invalid HTTP Response: {status}"
    assert receiver.status_ids() == [failed, sentinel]
    assert [(d.status_id, d.ok) for d in deliveries] == [(failed, False), (sentinel, True)]


def test_a_receiver_that_is_not_listening_fails_the_delivery_which_is_never_retried(
    fake: FakeGitHub, receiver: Receiver
) -> None:
    fake.deliver_webhooks(closed_port_url(), SECRET)
    deployment = deploy(fake, 1)["id"]
    lost = post_status(fake, deployment, "in_progress")["id"]
    [first] = fake.wait_for_deliveries(1)
    fake.deliver_webhooks(receiver.url, SECRET)

    sentinel = post_status(fake, deployment, "success")["id"]
    deliveries = fake.wait_for_deliveries(2)

    assert (first.status_id, first.status_code, first.ok) == (lost, None, False)
    assert str(first.error).startswith("We couldn't deliver this payload")
    assert receiver.status_ids() == [sentinel]
    assert [(d.status_id, d.ok) for d in deliveries] == [(lost, False), (sentinel, True)]


def test_the_post_that_records_a_status_does_not_wait_for_a_slow_receiver(
    fake: FakeGitHub, receiver: Receiver
) -> None:
    receiver.delay = 2.0
    fake.deliver_webhooks(receiver.url, SECRET)
    deployment = deploy(fake, 1)["id"]

    started = time.perf_counter()
    status = post_status(fake, deployment, "in_progress")
    answered = time.perf_counter() - started
    [delivery] = fake.wait_for_deliveries(1, timeout=8)

    assert answered < 1.0
    assert delivery.status_id == status["id"]
    assert delivery.ok
    assert delivery.latency >= 2.0


def test_only_the_hooks_repositories_are_delivered(fake: FakeGitHub, receiver: Receiver) -> None:
    fake.add_repo(OTHER)
    fake.deliver_webhooks(receiver.url, SECRET, repos=["MyOrg/Other"])  # letter case ignored
    mine = deploy(fake, 1)["id"]
    other = fake.create_deployment(OTHER, sha="b" * 40, ref="main", environment=STAGING)["id"]

    post_status(fake, mine, "in_progress")
    wanted = [post_status(fake, other, "in_progress", OTHER)["id"]]
    post_status(fake, mine, "success")
    wanted.append(post_status(fake, other, "success", OTHER)["id"])
    fake.wait_for_deliveries(2)

    assert receiver.status_ids() == wanted
    assert {d.repo for d in fake.deliveries} == {OTHER}


def test_nothing_is_delivered_without_a_hook_or_after_it_is_removed(
    fake: FakeGitHub, receiver: Receiver
) -> None:
    deployment = deploy(fake, 1)["id"]
    post_status(fake, deployment, "queued")  # before any hook
    fake.deliver_webhooks(receiver.url, SECRET)
    delivered = post_status(fake, deployment, "in_progress")["id"]
    fake.wait_for_deliveries(1)

    fake.stop_webhooks()
    post_status(fake, deployment, "success")
    with pytest.raises(TimeoutError, match="1 of 2"):
        fake.wait_for_deliveries(2, timeout=0.5)

    assert receiver.status_ids() == [delivered]


def test_close_ends_the_worker_and_drops_queued_deliveries(
    make_fake: Callable[..., FakeGitHub], receiver: Receiver
) -> None:
    receiver.delay = 1.0
    fake = make_fake()
    fake.deliver_webhooks(receiver.url, SECRET)
    deployment = deploy(fake, 1)["id"]
    for state in ("queued", "in_progress", "failure", "error"):
        post_status(fake, deployment, state)
    deadline = time.perf_counter() + 5
    while not receiver.received and time.perf_counter() < deadline:  # the first is under way
        time.sleep(0.01)

    started = time.perf_counter()
    fake.close()

    assert time.perf_counter() - started < 3
    assert not any(t.name == "fake-github-hookshot" and t.is_alive() for t in threading.enumerate())
    assert len(receiver.received) == 1
    assert len(fake.deliveries) == 1


def test_a_deployment_created_with_a_string_payload_is_delivered_with_it(
    fake: FakeGitHub, receiver: Receiver
) -> None:
    """GitHub's own webhook description allows a string payload (kuberik's Go controller sends base64);
    only the community schema says object, and that one gap is all the fake lets through."""
    fake.deliver_webhooks(receiver.url, SECRET)
    answer = http(
        fake,
        "POST",
        f"/repos/{REPO}/deployments",
        json={
            "ref": "1" * 40,
            "environment": STAGING,
            "payload": "eyJpZCI6IjEifQ==",
            "required_contexts": [],
        },
    )
    assert answer.status_code == 201, answer.text
    post_status(fake, answer.json()["id"], "success")
    [delivery] = fake.wait_for_deliveries(1)
    assert delivery.ok, delivery.error
    assert receiver.received[0].payload["deployment"]["payload"] == "eyJpZCI6IjEifQ=="
    assert fake.contracts.webhook_errors(
        "deployment_status", "created", {}, {**receiver.received[0].payload, "deployment": {"payload": 5}}
    )
