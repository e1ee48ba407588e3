"""audit_bridge -> EventBridge bus -> the rule from infra/aws (exact event pattern) -> SQS, all in moto's
server mode; the received messages fed to the Lambda adapter create the gate on the real kube-apiserver.
The GitHub webhook's Lambda adapter answers function URL events like the Functions Framework target."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest
import requests

from shared.github_delivery import signature
from stagegate.bridge import EVENTBRIDGE_DETAIL_TYPE, EVENTBRIDGE_SOURCE
from stagegate_dev import devstack
from tests.functions.lambda_loader import load_lambda_main
from tests.infra.terraform import eventbridge_pattern
from tests.kube_objects import create_environment, delivery_bytes, environment, list_gates, stored
from tests.payloads import payload_bytes

TOKEN = "bridge-token-for-tests"
SECRET = "lambda-webhook-secret"


@pytest.fixture(scope="module")
def moto(procs: devstack.Processes) -> devstack.MotoServer:
    return devstack.MotoServer(procs)


@pytest.fixture(scope="module")
def aws(moto: devstack.MotoServer) -> Iterator[dict[str, str]]:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in moto.env().items():
            patch.setenv(key, value)
        yield moto.env()


class Bus:
    """A bus, the rule from infra/aws routing to an SQS queue, and the bridge publishing to the bus."""

    def __init__(self, aws: dict[str, str], kube_stack, procs) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.events = boto3.client("events")
        self.sqs = boto3.client("sqs")
        self.name = f"stagegate-audit-{suffix}"
        self.events.create_event_bus(Name=self.name)
        self.queue = self.sqs.create_queue(QueueName=f"audit-{suffix}")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.events.put_rule(
            Name="audit", EventBusName=self.name, EventPattern=json.dumps(eventbridge_pattern())
        )
        self.events.put_targets(Rule="audit", EventBusName=self.name, Targets=[{"Id": "sqs", "Arn": arn}])
        env = {
            **aws,
            "BRIDGE_TRANSPORT": "eventbridge",
            "BRIDGE_EVENT_BUS": self.name,
            "AUDIT_WEBHOOK_TOKEN": TOKEN,
        }
        self.bridge = devstack.FunctionServer(
            devstack.ROOT / "functions" / "audit_bridge" / "main.py", "audit_bridge", env, None, procs
        )

    def post(self, body: bytes) -> requests.Response:
        return requests.post(
            self.bridge.url, data=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )

    def received(self, wait: int = 2) -> list[dict[str, Any]]:
        answer = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10, WaitTimeSeconds=wait)
        return answer.get("Messages", [])


@pytest.fixture
def lambda_module(kube_stack, monkeypatch: pytest.MonkeyPatch, fake) -> ModuleType:
    """functions/aws_lambda/main.py loaded the way Lambda loads it, with this test's configuration."""
    for key, value in {
        "KUBECONFIG": str(kube_stack.function_kubeconfig),
        "GITHUB_TOKEN": fake.token, "GITHUB_API_URL": fake.url,
        "GITHUB_WEBHOOK_SECRET": SECRET,
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    return load_lambda_main()


def sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Records": [
            {"messageId": m["MessageId"], "body": m["Body"], "eventSource": "aws:sqs"} for m in messages
        ]
    }


def test_bridged_event_reaches_the_lambda_through_the_infra_rule_and_makes_the_gate(
    aws, kube_stack, procs, namespace, custom, lambda_module
) -> None:
    bus = Bus(aws, kube_stack, procs)
    answer = bus.post(delivery_bytes(create_environment(custom, environment(namespace, "prod"))))
    assert answer.status_code == 200, answer.text
    assert answer.json()["published"] == 1
    messages = bus.received()
    assert len(messages) == 1
    envelope = json.loads(messages[0]["Body"])
    assert (envelope["source"], envelope["detail-type"]) == (EVENTBRIDGE_SOURCE, EVENTBRIDGE_DETAIL_TYPE)
    assert lambda_module.k8s_audit_eventbridge(sqs_event(messages), None) == {"batchItemFailures": []}
    assert [g["spec"]["allowedVersions"] for g in list_gates(custom, namespace)] == [[]]


def test_direct_eventbridge_invocation_works_too(
    aws, kube_stack, procs, namespace, custom, lambda_module
) -> None:
    bus = Bus(aws, kube_stack, procs)
    bus.post(delivery_bytes(create_environment(custom, environment(namespace, "prod"))))
    envelope = json.loads(bus.received()[0]["Body"])
    assert lambda_module.k8s_audit_eventbridge(envelope, None) == {}
    assert len(list_gates(custom, namespace)) == 1


def test_irrelevant_events_publish_nothing(aws, kube_stack, procs) -> None:
    bus = Bus(aws, kube_stack, procs)
    assert bus.post(payload_bytes("audit/configmap-create-metadata.json")).json()["published"] == 0
    assert bus.received(wait=1) == []


def test_the_rule_ignores_events_of_another_source(aws, kube_stack, procs) -> None:
    bus = Bus(aws, kube_stack, procs)
    bus.events.put_events(
        Entries=[
            {
                "Source": "someone.else",
                "DetailType": EVENTBRIDGE_DETAIL_TYPE,
                "Detail": "{}",
                "EventBusName": bus.name,
            }
        ]
    )
    assert bus.received(wait=1) == []


def test_poison_and_transient_messages_are_told_apart(lambda_module, namespace, custom, monkeypatch) -> None:
    poison = {"messageId": "p", "body": "not json"}
    no_detail = {"messageId": "n", "body": json.dumps({"source": EVENTBRIDGE_SOURCE})}
    assert lambda_module.k8s_audit_eventbridge({"Records": [poison, no_detail]}, None) == {
        "batchItemFailures": []
    }
    from stagegate.kube import KubeGates
    from stagegate.kube_http import KubeClient, KubeConfig

    unreachable = KubeGates(KubeClient(KubeConfig(server="https://127.0.0.1:9")), timeout=1)
    failing = dataclasses.replace(lambda_module.CONTEXT, kube=unreachable)
    monkeypatch.setattr(lambda_module, "CONTEXT", failing)
    detail = json.loads(delivery_bytes(stored(environment(namespace, "prod"))))
    transient = {"messageId": "t", "body": json.dumps({"detail": detail})}
    assert lambda_module.k8s_audit_eventbridge({"Records": [transient]}, None) == {
        "batchItemFailures": [{"itemIdentifier": "t"}]
    }


def function_url_event(body: bytes, headers: dict[str, str], *, base64: bool = False) -> dict[str, Any]:
    import base64 as b64

    return {
        "version": "2.0",
        "rawPath": "/",
        "headers": {k.lower(): v for k, v in headers.items()},
        "body": b64.b64encode(body).decode() if base64 else body.decode(),
        "isBase64Encoded": base64,
        "requestContext": {"http": {"method": "POST"}},
    }


@pytest.mark.parametrize("base64", [False, True])
@pytest.mark.parametrize("handler", ["github_webhook", "github_protection_rule"])
def test_a_github_lambda_answers_a_signed_ping(lambda_module, handler: str, base64: bool) -> None:
    body = json.dumps({"zen": "Mind your words, they are important."}).encode()
    headers = {
        "X-GitHub-Event": "ping",
        "X-Hub-Signature-256": signature(SECRET, body),
        "Content-Type": "application/json",
    }
    answer = getattr(lambda_module, handler)(function_url_event(body, headers, base64=base64), None)
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"])["status"] == "pong"


@pytest.mark.parametrize("handler", ["github_webhook", "github_protection_rule"])
def test_a_github_lambda_refuses_a_bad_signature(lambda_module, handler: str) -> None:
    body = b"{}"
    headers = {"X-GitHub-Event": "ping", "X-Hub-Signature-256": signature("wrong", body)}
    answer = getattr(lambda_module, handler)(function_url_event(body, headers), None)
    assert answer["statusCode"] == 401
    assert "does not match" in json.loads(answer["body"])["error"]


def test_publish_failure_answers_5xx_so_the_apiserver_retries(aws, procs, namespace) -> None:
    env = {
        **aws,
        "BRIDGE_TRANSPORT": "eventbridge",
        "BRIDGE_EVENT_BUS": "never-created",
        "AUDIT_WEBHOOK_TOKEN": TOKEN,
    }
    bridge = devstack.FunctionServer(
        devstack.ROOT / "functions" / "audit_bridge" / "main.py", "audit_bridge", env, None, procs
    )
    answer = requests.post(
        bridge.url,
        data=delivery_bytes(stored(environment(namespace, "prod"))),
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    assert answer.status_code == 503, answer.text
    assert "EventBridge" in answer.json()["error"]
