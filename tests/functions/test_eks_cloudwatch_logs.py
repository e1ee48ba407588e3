"""`k8s_audit_cloudwatch`: EKS control-plane audit events delivered by a CloudWatch Logs subscription.

Deliveries are built in the documented format (the `DATA_MESSAGE`/`CONTROL_MESSAGE` document, gzip,
base64, under `awslogs.data`; see `stagegate/cloudwatch_logs.py` for the sources), each log event one
captured audit `Event` (`tests/payloads/audit/`) as EKS writes it to a `kube-apiserver-audit-*` stream:
at `Metadata` level, since EKS's audit policy logs custom resources without their objects. The Lambda
module is loaded as Lambda loads it; the gates are checked on the real kube-apiserver, and the hand-off
of Rollout status changes on an SQS FIFO queue in moto's server. Powertools for AWS Lambda's own
`CloudWatchLogsEvent` reads the same deliveries, as a reference for the format.

One test goes the whole way: a kube-apiserver writing its audit log the way EKS's does (JSON lines,
`Metadata` level), its lines selected by the subscription filter pattern of `infra/aws/eks.tf` (evaluated
as in `tests/infra/test_terraform_eks.py`), delivered to the handler, which makes the gate.

The decoding is unit-tested on its own: every malformed delivery is a `BadEvent` that says what is wrong.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.data_classes import CloudWatchLogsEvent

from shared.audit import AuditEvent
from shared.errors import BadEvent, PayloadTooLarge, PermanentError, RetryableError
from stagegate.cloudwatch_logs import (
    CONTROL_MESSAGE,
    DATA_MESSAGE,
    audit_events,
    consume_cloudwatch_logs,
    decode_subscription,
)
from stagegate_dev import devstack
from tests.functions.lambda_loader import load_lambda_main
from tests.infra.terraform import load
from tests.infra.test_terraform_eks import parse_json_pattern
from tests.kube_objects import create_environment, delivery, environment, list_gates, rollout_status_delivery
from tests.payloads import load_payload

GROUP = "/aws/eks/stagegate-test/cluster"
STREAM = "kube-apiserver-audit-1234567890abcdef01234567890abcde"
MAX_BYTES = 4 * 1024 * 1024
MAX_EVENTS = 400


# --- deliveries in the documented format ------------------------------------------------------------------


def wrap(document: bytes) -> dict[str, Any]:
    """What CloudWatch Logs invokes the function with: `{"awslogs": {"data": base64(gzip(document))}}`."""
    return {"awslogs": {"data": base64.b64encode(gzip.compress(document)).decode()}}


def subscription(
    lines: Sequence[str], *, stream: str = STREAM, message_type: str = DATA_MESSAGE
) -> dict[str, Any]:
    """A delivery of `lines` (log messages) from the cluster's audit stream."""
    document = {
        "messageType": message_type,
        "owner": "123456789012",
        "logGroup": GROUP,
        "logStream": stream,
        "subscriptionFilters": ["stagegate-eks-audit"],
        "logEvents": [
            {
                "id": f"3762{i:052d}",
                "timestamp": 1764140342000 + i,
                "message": line,
            }
            for i, line in enumerate(lines)
        ],
    }
    return wrap(json.dumps(document).encode())


def control_message() -> dict[str, Any]:
    """The reachability check CloudWatch Logs sends a new destination (CloudWatch Logs user guide)."""
    document = {
        "messageType": CONTROL_MESSAGE,
        "owner": "CloudwatchLogs",
        "logGroup": "",
        "logStream": "",
        "subscriptionFilters": [],
        "logEvents": [
            {
                "id": "",
                "timestamp": 1432826855000,
                "message": "CWL CONTROL MESSAGE: Checking health of destination Lambda function.",
            }
        ],
    }
    return wrap(json.dumps(document).encode())


def environment_line(namespace: str, name: str, verb: str = "create", *, with_object: bool = False) -> str:
    """The audit log line of an Environment write (Metadata level unless `with_object`)."""
    (event,) = delivery(environment(namespace, name), verb, with_object=with_object)["items"]
    return json.dumps(event)


def rollout_status_line(namespace: str, name: str) -> str:
    """The audit log line of a Rollout status patch (the rollout controller's bake updates)."""
    (event,) = rollout_status_delivery(namespace, name, str(uuid.uuid4()))["items"]
    return json.dumps(event)


def captured_lines() -> list[str]:
    """Every captured audit event, one log line each."""
    return [
        json.dumps(event)
        for name in (
            "environment-create.json",
            "environment-patch-rollout-ref.json",
            "configmap-create-metadata.json",
        )
        for event in load_payload(f"audit/{name}")["items"]
    ]


# --- decoding, without Kubernetes --------------------------------------------------------------------------


def test_a_delivery_reads_as_powertools_reads_it() -> None:
    event = subscription(captured_lines())
    ours = decode_subscription(event, MAX_BYTES, MAX_EVENTS)
    reference = CloudWatchLogsEvent(event).parse_logs_data()
    assert (ours.message_type, ours.owner, ours.log_group, ours.log_stream) == (
        reference.message_type,
        reference.owner,
        reference.log_group,
        reference.log_stream,
    )
    assert list(ours.subscription_filters) == reference.subscription_filters
    assert [(e.id, e.timestamp, e.message) for e in ours.log_events] == [
        (e.get_id, e.timestamp, e.message) for e in reference.log_events
    ]
    lines = audit_events(ours)
    assert lines.skipped == []
    assert [e.audit_id for e in lines.events] == [json.loads(m)["auditID"] for m in captured_lines()]


def test_powertools_would_read_a_corrupted_payload_that_is_refused_here() -> None:
    """Why the decoding is not Powertools': its base64 decoding drops what is not base64."""
    event = subscription(captured_lines())
    data = event["awslogs"]["data"]
    corrupted = {"awslogs": {"data": data[:40] + "!!" + data[40:]}}
    assert CloudWatchLogsEvent(corrupted).parse_logs_data().log_stream == STREAM
    with pytest.raises(BadEvent, match="not base64"):
        decode_subscription(corrupted, MAX_BYTES, MAX_EVENTS)


def test_several_gzip_members_are_read_as_one_document() -> None:
    document = json.dumps({"messageType": DATA_MESSAGE, "owner": "1", "logGroup": GROUP, "logStream": STREAM,
                           "subscriptionFilters": [], "logEvents": []}).encode()  # fmt: skip
    half = len(document) // 2
    data = base64.b64encode(gzip.compress(document[:half]) + gzip.compress(document[half:])).decode()
    assert decode_subscription({"awslogs": {"data": data}}, MAX_BYTES, MAX_EVENTS).log_stream == STREAM


def test_a_control_message_is_read_without_its_events() -> None:
    message = decode_subscription(control_message(), MAX_BYTES, MAX_EVENTS)
    assert message.is_control
    assert message.log_events == ()


def b64(raw: bytes) -> dict[str, Any]:
    return {"awslogs": {"data": base64.b64encode(raw).decode()}}


def with_document(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "messageType": DATA_MESSAGE, "owner": "123456789012", "logGroup": GROUP, "logStream": STREAM,
        "subscriptionFilters": ["f"], "logEvents": [{"id": "1", "timestamp": 1, "message": "{}"}],
    }  # fmt: skip
    document.update(changes)
    return wrap(json.dumps(document).encode())


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (None, "no awslogs.data"),
        ({}, "no awslogs.data"),
        ({"awslogs": "x"}, "no awslogs.data"),
        ({"awslogs": {"data": ""}}, "no awslogs.data"),
        ({"awslogs": {"data": 12}}, "no awslogs.data"),
        ({"awslogs": {"data": "not base64!"}}, "not base64"),
        ({"awslogs": {"data": "abc"}}, "not base64"),
        ({"awslogs": {"data": "é"}}, "not base64"),
        (b64(b'{"messageType": "DATA_MESSAGE"}'), "not gzip"),
        (b64(gzip.compress(b'{"messageType": "DATA_MESSAGE"}')[:-12]), "not gzip: the stream is truncated"),
        (b64(gzip.compress(b"{}") + b"\0\0"), "not gzip"),
        (wrap(b"not json"), "the decompressed awslogs.data is not JSON"),
        (wrap(b"\xff\xfe"), "not JSON: invalid UTF-8"),
        (wrap(b'{"a": NaN}'), "not JSON"),
        (wrap(b"[]"), "must be a JSON object"),
        (wrap(b'{"messageType": "DATA"}'), "messageType must be one of DATA_MESSAGE, CONTROL_MESSAGE"),
        (with_document(owner=None), "owner is required"),
        (with_document(logGroup=""), "logGroup is required"),
        (with_document(logStream=7), "logStream is required"),
        (with_document(subscriptionFilters="f"), "subscriptionFilters must be a list of strings"),
        (with_document(logEvents={}), "logEvents must be a list"),
        (with_document(logEvents=["x"]), r"logEvents\[0\] must be an object"),
        (
            with_document(logEvents=[{"id": "1", "timestamp": True, "message": ""}]),
            "timestamp must be an integer",
        ),
        (
            with_document(logEvents=[{"id": "1", "timestamp": 1.5, "message": ""}]),
            "timestamp must be an integer",
        ),
        (
            with_document(logEvents=[{"id": 1, "timestamp": 1, "message": ""}]),
            r"logEvents\[0\].id must be a string",
        ),
        (with_document(logEvents=[{"id": "1", "timestamp": 1}]), r"logEvents\[0\].message must be a string"),
    ],
)
def test_a_malformed_delivery_is_a_bad_event_saying_what_is_wrong(event: object, reason: str) -> None:
    with pytest.raises(BadEvent, match=reason) as raised:
        decode_subscription(event, MAX_BYTES, MAX_EVENTS)
    assert not isinstance(raised.value, PayloadTooLarge)


def test_a_delivery_decompressing_past_the_limit_is_refused_without_inflating_it() -> None:
    bomb = wrap(b'{"messageType": "DATA_MESSAGE", "pad": "' + b" " * (64 * 1024 * 1024) + b'"}')
    assert len(bomb["awslogs"]["data"]) < 200 * 1024
    with pytest.raises(PayloadTooLarge, match="decompresses to more than 1048576 bytes"):
        decode_subscription(bomb, 1024 * 1024, MAX_EVENTS)


def test_more_log_events_than_the_limit_are_refused_whole() -> None:
    event = subscription(["{}"] * 3)
    assert len(decode_subscription(event, MAX_BYTES, 3).log_events) == 3
    with pytest.raises(PayloadTooLarge, match="3 log events, more than the 2"):
        decode_subscription(event, MAX_BYTES, 2)


def test_each_line_is_read_on_its_own_and_a_bad_one_is_skipped_with_its_reason() -> None:
    good = environment_line("ns", "prod")
    event_list = json.dumps(load_payload("audit/environment-create.json"))
    no_id = json.loads(good)
    no_id.pop("auditID")
    lines = [
        "I0101 12:00:00.000000 1 controller.go:1] not an audit event",
        good,
        event_list,
        json.dumps({**json.loads(good), "apiVersion": "audit.k8s.io/v1beta1"}),
        json.dumps(no_id),
        "[1]",
        environment_line("ns", "staging", "update"),
    ]
    read = audit_events(decode_subscription(subscription(lines), MAX_BYTES, MAX_EVENTS))
    assert [(e.verb, e.object_ref.name if e.object_ref else None) for e in read.events] == [
        ("create", "prod"),
        ("update", "staging"),
    ]
    reasons = {s.id[-1]: s.reason for s in read.skipped}
    assert reasons == {
        "0": "logEvents[0].message is not JSON: Expecting value: line 1 column 1 (char 0)",
        "2": "logEvents[2].message is not an audit.k8s.io/v1 Event (apiVersion 'audit.k8s.io/v1', "
        "kind 'EventList')",
        "3": "logEvents[3].message is not an audit.k8s.io/v1 Event (apiVersion 'audit.k8s.io/v1beta1', "
        "kind 'Event')",
        "4": "logEvents[4].message.auditID is required and must be a non-empty string",
        "5": "logEvents[5].message must be a JSON object",
    }


class Recorder:
    """A stand-in for the handler: records what it is given, answers or fails as told."""

    def __init__(self, failure: Exception | None = None) -> None:
        self.calls: list[list[AuditEvent]] = []
        self.failure = failure

    def __call__(self, events: Sequence[AuditEvent]) -> Mapping[str, Any]:
        self.calls.append(list(events))
        if self.failure is not None:
            raise self.failure
        return {"events": len(events)}


def consume(event: object, handle: Recorder) -> dict[str, Any]:
    return consume_cloudwatch_logs(event, MAX_BYTES, MAX_EVENTS, handle)


def test_a_malformed_delivery_is_logged_and_acknowledged_not_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handle = Recorder()
    assert consume({"awslogs": {"data": "%%%"}}, handle) == {
        "dropped": "awslogs.data is not base64: Only base64 data is allowed"
    }
    assert handle.calls == []
    assert "dropping a CloudWatch Logs delivery: awslogs.data is not base64" in caplog.text


def test_a_control_message_is_acknowledged_without_acting() -> None:
    handle = Recorder()
    assert consume(control_message(), handle) == {"messageType": CONTROL_MESSAGE, "events": 0}
    assert handle.calls == []


def test_a_stream_that_is_not_an_audit_stream_is_ignored() -> None:
    handle = Recorder()
    answer = consume(subscription([environment_line("ns", "prod")], stream="kube-apiserver-0123"), handle)
    assert answer == {
        "ignored": "log stream 'kube-apiserver-0123' is not a kube-apiserver audit stream",
        "logEvents": 1,
    }
    assert handle.calls == []


def test_a_retryable_failure_raises_so_lambda_runs_the_delivery_again() -> None:
    handle = Recorder(RetryableError("the Kubernetes API did not answer"))
    with pytest.raises(RetryableError, match="did not answer"):
        consume(subscription([environment_line("ns", "prod")]), handle)
    assert len(handle.calls) == 1


def test_a_permanent_failure_is_logged_and_acknowledged() -> None:
    handle = Recorder(PermanentError("gate owned by someone else"))
    answer = consume(subscription([environment_line("ns", "prod"), "oops"]), handle)
    assert answer["dropped"] == "gate owned by someone else"
    assert [s["reason"] for s in answer["skipped"]] == [
        "logEvents[1].message is not JSON: Expecting value: line 1 column 1 (char 0)"
    ]


# --- the Lambda handler on the real kube-apiserver ------------------------------------------------------


def load_lambda(kube_stack: devstack.KubeStack, monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    """functions/aws_lambda/main.py loaded the way Lambda loads it, with this configuration only."""
    for key in (
        "GITHUB_TOKEN",
        "GITHUB_APP_ID",
        "REPORT_TRANSPORT",
        "REPORT_SQS_QUEUE_URL",
        "AUDIT_MAX_EVENTS",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kube_stack.function_kubeconfig))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_lambda_main()


@pytest.fixture
def lambda_module(kube_stack: devstack.KubeStack, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return load_lambda(kube_stack, monkeypatch)


def gates(custom: Any, namespace: str) -> dict[str, list[str] | None]:
    return {g["metadata"]["name"]: g["spec"].get("allowedVersions") for g in list_gates(custom, namespace)}


def test_an_environment_create_in_the_audit_log_makes_its_gate(lambda_module, namespace, custom) -> None:
    create_environment(custom, environment(namespace, "prod"))
    answer = lambda_module.k8s_audit_cloudwatch(subscription([environment_line(namespace, "prod")]), None)
    assert answer["logEvents"] == 1
    assert answer["skipped"] == []
    assert answer["acted"] == 1
    assert [g["action"] for g in answer["gates"]] == ["create"]
    assert list(gates(custom, namespace).values()) == [[]]


def test_the_same_delivery_twice_changes_nothing_the_second_time(lambda_module, namespace, custom) -> None:
    create_environment(custom, environment(namespace, "prod"))
    event = subscription([environment_line(namespace, "prod")])
    lambda_module.k8s_audit_cloudwatch(event, None)
    before = list_gates(custom, namespace)
    again = lambda_module.k8s_audit_cloudwatch(event, None)
    assert [g["action"] for g in again["gates"]] == ["unchanged"]
    assert list_gates(custom, namespace) == before


def test_a_control_message_does_nothing(lambda_module, namespace, custom) -> None:
    create_environment(custom, environment(namespace, "prod"))
    assert lambda_module.k8s_audit_cloudwatch(control_message(), None) == {
        "messageType": CONTROL_MESSAGE,
        "events": 0,
    }
    assert gates(custom, namespace) == {}


def test_a_malformed_line_is_skipped_and_the_others_make_their_gates(
    lambda_module, namespace, custom
) -> None:
    for name in ("prod", "qa"):
        create_environment(custom, environment(namespace, name))
    lines = [
        environment_line(namespace, "prod"),
        '{"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": ',  # cut off
        *captured_lines()[2:],  # a ConfigMap create: read, routed nowhere
        environment_line(namespace, "qa", with_object=False),
    ]
    answer = lambda_module.k8s_audit_cloudwatch(subscription(lines), None)
    assert [s["id"][-1] for s in answer["skipped"]] == ["1"]
    assert "not JSON" in answer["skipped"][0]["reason"]
    assert answer["events"] == 3
    assert answer["acted"] == 2
    assert sorted(gates(custom, namespace).values()) == [[], []]


def test_more_events_than_audit_max_events_change_nothing(kube_stack, monkeypatch, namespace, custom) -> None:
    module = load_lambda(kube_stack, monkeypatch, AUDIT_MAX_EVENTS="2")
    for name in ("prod", "qa", "dev"):
        create_environment(custom, environment(namespace, name))
    lines = [environment_line(namespace, name) for name in ("prod", "qa", "dev")]
    answer = module.k8s_audit_cloudwatch(subscription(lines), None)
    assert answer == {"dropped": "the delivery carries 3 log events, more than the 2 one delivery may carry"}
    assert gates(custom, namespace) == {}


def test_an_unreachable_kubernetes_api_raises_for_lambda_to_retry(
    lambda_module, namespace, monkeypatch
) -> None:
    from stagegate.kube import KubeGates
    from stagegate.kube_http import KubeClient, KubeConfig

    unreachable = KubeGates(KubeClient(KubeConfig(server="https://127.0.0.1:9")), timeout=1)
    monkeypatch.setattr(
        lambda_module, "CONTEXT", dataclasses.replace(lambda_module.CONTEXT, kube=unreachable)
    )
    with pytest.raises(RetryableError):
        lambda_module.k8s_audit_cloudwatch(subscription([environment_line(namespace, "prod")]), None)


# --- Rollout status changes handed to the reporter's FIFO queue -------------------------------------------


@pytest.fixture
def reports_queue(aws: dict[str, str]) -> str:
    return boto3.client("sqs").create_queue(
        QueueName=f"reports-{uuid.uuid4().hex[:8]}.fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]


def received(queue: str) -> list[dict[str, Any]]:
    answer = boto3.client("sqs").receive_message(
        QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1, AttributeNames=["MessageGroupId"]
    )
    return answer.get("Messages", [])


def test_a_rollout_status_change_lands_on_the_fifo_queue_grouped_by_rollout(
    kube_stack, monkeypatch, reports_queue, namespace, custom
) -> None:
    module = load_lambda(kube_stack, monkeypatch, REPORT_TRANSPORT="sqs", REPORT_SQS_QUEUE_URL=reports_queue)
    create_environment(custom, environment(namespace, "prod"))
    status = rollout_status_line(namespace, "myapp-prod")
    event = subscription([environment_line(namespace, "prod"), status])
    answer = module.k8s_audit_cloudwatch(event, None)
    assert answer["for_reporter"] == 1
    assert list(gates(custom, namespace).values()) == [[]]
    # Lambda may run the same delivery again: the queue keeps one copy.
    assert module.k8s_audit_cloudwatch(event, None)["for_reporter"] == 1
    messages = received(reports_queue)
    assert [m["Attributes"]["MessageGroupId"] for m in messages] == [f"{namespace}/myapp-prod"]
    body = json.loads(messages[0]["Body"])
    assert (body["apiVersion"], body["kind"], body["auditID"]) == (
        "audit.k8s.io/v1",
        "Event",
        json.loads(status)["auditID"],
    )


def test_a_failed_hand_off_raises_after_the_gates_are_made(
    kube_stack, monkeypatch, aws, namespace, custom
) -> None:
    missing = boto3.client("sqs").meta.endpoint_url + "/123456789012/never-created.fifo"
    module = load_lambda(kube_stack, monkeypatch, REPORT_TRANSPORT="sqs", REPORT_SQS_QUEUE_URL=missing)
    create_environment(custom, environment(namespace, "prod"))
    lines = [environment_line(namespace, "prod"), rollout_status_line(namespace, "myapp-prod")]
    with pytest.raises(RetryableError, match="not handed to the reporter"):
        module.k8s_audit_cloudwatch(subscription(lines), None)
    assert list(gates(custom, namespace).values()) == [[]]


# --- the whole way: a real audit log, the deployed filter pattern, the handler ---------------------------

EKS_LIKE_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
"""


@pytest.fixture(scope="module")
def logging_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[devstack.KubeStack, Path]]:
    """A kube-apiserver writing its audit log as JSON lines, custom resources at Metadata level (EKS's
    policy logs them so), which is what EKS ships to the `kube-apiserver-audit-*` streams."""
    folder = tmp_path_factory.mktemp("eks-audit")
    policy, audit_log = folder / "policy.yaml", folder / "audit.log"
    policy.write_text(EKS_LIKE_POLICY)
    flags = [
        "--audit-policy-file",
        str(policy),
        "--audit-log-path",
        str(audit_log),
        "--audit-log-format",
        "json",
    ]
    with devstack.KubeStack(extra_args=flags) as stack:
        yield stack, audit_log


def logged(audit_log: Path, wanted: Any, seconds: float = 20) -> list[str]:
    """The audit log's lines once one satisfies `wanted` (the log backend may write after answering)."""
    deadline = time.monotonic() + seconds
    while True:
        lines = audit_log.read_text(encoding="utf-8").splitlines()
        if any(wanted(json.loads(line)) for line in lines):
            return lines
        assert time.monotonic() < deadline, "the apiserver did not log the expected event"
        time.sleep(0.2)


def test_an_apiservers_own_audit_log_through_the_deployed_filter_makes_the_gate(
    logging_stack, monkeypatch
) -> None:
    stack, audit_log = logging_stack
    from kubernetes import client

    namespace = f"t-{uuid.uuid4().hex[:8]}"
    admin = stack.api_client()
    client.CoreV1Api(admin).create_namespace({"metadata": {"name": namespace}})
    custom = client.CustomObjectsApi(admin)
    create_environment(custom, environment(namespace, "prod"))

    def the_create(event: dict[str, Any]) -> bool:
        ref = event.get("objectRef", {})
        return (
            event.get("stage") == "ResponseComplete"
            and event.get("verb") == "create"
            and ref.get("resource") == "environments"
            and ref.get("namespace") == namespace
        )

    lines = logged(audit_log, the_create)
    pattern = parse_json_pattern(load("aws").locals["eks_audit_filter_pattern"])
    delivered = [line for line in lines if pattern.holds(json.loads(line))]
    # Of everything the apiserver logged (CRDs installed, namespaces, reads), only the create passes.
    assert len(lines) > 20
    assert [the_create(json.loads(line)) for line in delivered] == [True]
    assert json.loads(delivered[0])["level"] == "Metadata", "the event carries no Environment"

    module = load_lambda(stack, monkeypatch)
    answer = module.k8s_audit_cloudwatch(subscription(delivered), None)
    assert answer["skipped"] == []
    assert any(g["action"] == "create" for g in answer["gates"])
    assert list(gates(custom, namespace).values()) == [[]]
