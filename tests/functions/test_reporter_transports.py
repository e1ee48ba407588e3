"""Rollout status changes reach the reporter through durable transports, and a GitHub outage loses
nothing: the transport's redelivery completes the report.

- Google Cloud: the blocking audit webhook (`k8s_audit_http`, served) hands the change to a Pub/Sub
  topic (the real emulator), whose ordered push subscription calls the `reporter` CloudEvent target
  (served by functions-framework), which records the history on the GitHub stand-in.
- AWS: `audit_bridge` (served) publishes to EventBridge and hands the change to an SQS FIFO queue
  (moto's server), grouped by Rollout; its messages are fed to the Lambda handler `reporter_sqs`.
All functions run as the least-privilege identity of `infra/k8s/rbac.yaml` (the Lease included).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import boto3
import pytest
import requests
from kubernetes import client

from stagegate.kube import KubeGates
from stagegate_dev import devstack
from stagegate_dev.fake_github import FakeGitHub
from tests.functions.lambda_loader import load_lambda_main
from tests.functions.reporter_support import History
from tests.functions.test_recompute_triggers import rollout_status_event
from tests.kube_objects import ENV_ARGS

TOKEN = "reporter-transport-token"
PROJECT = "stagegate-test"


def wait_for(check: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


@pytest.fixture
def history(custom: client.CustomObjectsApi, gates: KubeGates, fake: FakeGitHub, namespace: str) -> History:
    return History(custom, gates, fake, namespace).create()


# --- Google Cloud: k8s_audit_http -> Pub/Sub (ordered) -> reporter -------------------------------------


@pytest.fixture(scope="module")
def pubsub_route(pubsub: Any, emulator, kube_stack, procs, fake: FakeGitHub) -> str:
    """The audit webhook handing Rollout changes to a topic whose push subscription is the reporter."""
    suffix = uuid.uuid4().hex[:8]
    topic = f"projects/{PROJECT}/topics/reports-{suffix}"
    pubsub.PublisherClient().create_topic(name=topic)
    common = {
        "KUBECONFIG": str(kube_stack.function_kubeconfig),
        "PUBSUB_EMULATOR_HOST": emulator.host,
        "GITHUB_TOKEN": fake.token,
        "GITHUB_API_URL": fake.url,
        "AUDIT_WEBHOOK_TOKEN": TOKEN,
    }
    reporter = devstack.FunctionServer(
        devstack.ROOT / "functions" / "reporter" / "main.py", "reporter", common, None, procs
    )
    pubsub.SubscriberClient().create_subscription(
        request={
            "name": f"projects/{PROJECT}/subscriptions/reporter-{suffix}",
            "topic": topic,
            "push_config": {"push_endpoint": reporter.url},
            "enable_message_ordering": True,
            "ack_deadline_seconds": 60,
        }
    )
    audit = devstack.FunctionServer(
        devstack.ROOT / "functions" / "k8s_audit" / "main.py",
        "k8s_audit_http",
        {**common, "REPORT_TRANSPORT": "pubsub", "REPORT_PUBSUB_TOPIC": topic},
        None,
        procs,
    )
    return audit.url


def post_audit(url: str, body: bytes) -> requests.Response:
    return requests.post(url, data=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)


def test_the_audit_webhook_hands_rollout_changes_to_the_reporter_through_pubsub(
    pubsub_route: str, history: History
) -> None:
    history.deploy(1, "Succeeded")
    answer = post_audit(pubsub_route, rollout_status_event(history.namespace, history.rollout))
    assert answer.status_code == 200, answer.text
    assert answer.json()["for_reporter"] == 1
    # The reporter creates the deployment, then its status: wait for both, not for the first alone.
    wait_for(
        lambda: [d["statuses"] for d in history.recorded().get("1", [])] == [[("success", "Bake succeeded")]]
    )
    # The reporter then shows the Rollout's history in its Environment's status, without waiting for
    # GitHub to deliver the report back as a webhook.
    wait_for(lambda: shown_history(history) == history.entries)


def shown_history(history: History) -> object:
    env = history.custom.get_namespaced_custom_object(
        *ENV_ARGS, history.namespace, "environments", history.env
    )
    infos = (env.get("status") or {}).get("environmentInfos") or []
    return infos[0].get("history") if infos else None


def test_a_github_outage_is_retried_by_pubsub_until_the_report_is_complete(
    pubsub_route: str, history: History
) -> None:
    history.deploy(1, "Succeeded")
    history.deploy(2, "InProgress")
    history.fake.fail_next(6, 502)  # the first deliveries fail on GitHub; Pub/Sub delivers again
    assert (
        post_audit(pubsub_route, rollout_status_event(history.namespace, history.rollout)).status_code == 200
    )
    # The report is complete when both deployments carry their status (each is created, then its status).
    wait_for(
        lambda: (
            all(d["statuses"] for v in history.recorded().values() for d in v)
            and len(history.recorded()) == 2
        ),
        seconds=90,
    )
    assert history.fake.faults.pending() == 0
    recorded = history.recorded()
    assert {k: len(v) for k, v in recorded.items()} == {"1": 1, "2": 1}
    assert recorded["1"][0]["statuses"] == [("success", "Bake succeeded")]
    assert recorded["2"][0]["statuses"] == [("in_progress", "Baking in progress")]


# --- AWS: audit_bridge -> SQS FIFO (grouped by Rollout) -> reporter_sqs --------------------------------


@pytest.fixture(scope="module")
def fifo(aws: dict[str, str], procs: devstack.Processes) -> tuple[str, str]:
    """A FIFO queue and an audit_bridge that publishes to EventBridge and hands Rollout changes to it."""
    suffix = uuid.uuid4().hex[:8]
    boto3.client("events").create_event_bus(Name=f"audit-{suffix}")
    queue = boto3.client("sqs").create_queue(
        QueueName=f"reports-{suffix}.fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    env = {
        **aws,
        "BRIDGE_TRANSPORT": "eventbridge",
        "BRIDGE_EVENT_BUS": f"audit-{suffix}",
        "REPORT_TRANSPORT": "sqs",
        "REPORT_SQS_QUEUE_URL": queue,
        "AUDIT_WEBHOOK_TOKEN": TOKEN,
    }
    bridge = devstack.FunctionServer(
        devstack.ROOT / "functions" / "audit_bridge" / "main.py", "audit_bridge", env, None, procs
    )
    return bridge.url, queue


@pytest.fixture
def lambda_module(kube_stack, monkeypatch: pytest.MonkeyPatch, fake: FakeGitHub, aws) -> ModuleType:
    for key, value in {
        "KUBECONFIG": str(kube_stack.function_kubeconfig),
        "GITHUB_TOKEN": fake.token,
        "GITHUB_API_URL": fake.url,
    }.items():
        monkeypatch.setenv(key, value)
    return load_lambda_main()


def received(queue: str) -> list[dict[str, Any]]:
    answer = boto3.client("sqs").receive_message(
        QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=2, AttributeNames=["MessageGroupId"]
    )
    return answer.get("Messages", [])


def sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Records": [
            {"messageId": m["MessageId"], "body": m["Body"], "eventSource": "aws:sqs"} for m in messages
        ]
    }


def test_the_bridge_hands_rollout_changes_to_a_fifo_queue_grouped_by_rollout_and_the_lambda_reports(
    fifo: tuple[str, str], lambda_module: ModuleType, history: History
) -> None:
    url, queue = fifo
    history.deploy(1, "Succeeded")
    answer = post_audit(url, rollout_status_event(history.namespace, history.rollout))
    assert answer.status_code == 200, answer.text
    assert answer.json()["for_reporter"] == 1
    messages = received(queue)
    assert [m["Attributes"]["MessageGroupId"] for m in messages] == [f"{history.namespace}/{history.rollout}"]

    history.fake.fail_next(3, 503)  # GitHub is down: the message is handed back to SQS
    assert lambda_module.reporter_sqs(sqs_event(messages), None) == {
        "batchItemFailures": [{"itemIdentifier": messages[0]["MessageId"]}]
    }
    assert history.recorded() == {}
    history.fake.faults.clear()
    assert lambda_module.reporter_sqs(sqs_event(messages), None) == {"batchItemFailures": []}
    assert history.recorded()["1"][0]["statuses"] == [("success", "Bake succeeded")]


def test_after_a_failed_message_the_rest_of_the_batch_is_handed_back_unprocessed(
    lambda_module: ModuleType, history: History
) -> None:
    history.deploy(1, "Succeeded")
    body = rollout_status_event(history.namespace, history.rollout).decode()
    records = [{"MessageId": f"m{i}", "Body": body} for i in range(3)]
    history.fake.fail_next(50, 502)
    try:
        result = lambda_module.reporter_sqs(sqs_event(records), None)
    finally:
        history.fake.faults.clear()
    assert result == {"batchItemFailures": [{"itemIdentifier": f"m{i}"} for i in range(3)]}
    assert history.recorded() == {}


# --- concurrent invocations of the served function ------------------------------------------------------


@pytest.fixture(scope="module")
def reporter_http(kube_stack, procs, fake: FakeGitHub) -> str:
    env = {
        "KUBECONFIG": str(kube_stack.function_kubeconfig),
        "GITHUB_TOKEN": fake.token,
        "GITHUB_API_URL": fake.url,
        "AUDIT_WEBHOOK_TOKEN": TOKEN,
    }
    path = devstack.ROOT / "functions" / "reporter" / "main.py"
    return devstack.FunctionServer(path, "reporter_http", env, None, procs).url


def test_concurrent_invocations_of_the_reporter_create_each_deployment_once(
    reporter_http: str, history: History
) -> None:
    for n in range(1, 5):
        history.deploy(n, "Succeeded")
    body = rollout_status_event(history.namespace, history.rollout)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: post_audit(reporter_http, body), range(6)))
    codes = sorted(a.status_code for a in answers)
    assert set(codes) <= {200, 503}, [a.text for a in answers]
    assert 200 in codes
    for answer in answers:
        if answer.status_code == 503:  # the Lease was held: retried by whoever delivered it
            assert "another report" in answer.text
    assert {k: len(v) for k, v in history.recorded().items()} == {str(n): 1 for n in range(1, 5)}
    again = post_audit(reporter_http, body)
    assert again.status_code == 200
    assert again.json()["rollouts"][0]["outcome"] == "unchanged"
