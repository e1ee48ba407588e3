"""`k8s_audit_http` and `k8s_audit` served by the real functions-framework (gunicorn, TLS), in their own
process, against the real kube-apiserver: authentication, bad input, bounded time, Pub/Sub acks."""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests

from stagegate_dev import devstack
from tests.kube_objects import create_environment, delivery, delivery_bytes, environment, list_gates, stored

SOURCE = devstack.ROOT / "functions" / "k8s_audit" / "main.py"
TOKEN = "test-token-0123456789"


def serve(kube_stack: devstack.KubeStack, procs: devstack.Processes, target: str, **env: str) -> str:
    settings = {"KUBECONFIG": str(kube_stack.function_kubeconfig), "AUDIT_WEBHOOK_TOKEN": TOKEN, **env}
    return devstack.FunctionServer(SOURCE, target, settings, kube_stack.tls, procs).url


@pytest.fixture(scope="module")
def webhook_url(kube_stack: devstack.KubeStack, procs: devstack.Processes) -> str:
    return serve(kube_stack, procs, "k8s_audit_http")


@pytest.fixture(scope="module")
def pubsub_url(kube_stack: devstack.KubeStack, procs: devstack.Processes) -> str:
    return serve(kube_stack, procs, "k8s_audit")


def post(url: str, body: bytes, kube_stack: devstack.KubeStack, token: str | None = TOKEN, **headers: str):
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(url, data=body, headers=headers, verify=str(kube_stack.tls.ca_file), timeout=30)


def test_signed_delivery_creates_the_gate_and_answers_a_summary(
    webhook_url, kube_stack, namespace, custom
) -> None:
    env = create_environment(custom, environment(namespace, "prod"))
    response = post(webhook_url, delivery_bytes(env), kube_stack)
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["events"] == 1
    assert summary["acted"] == 1
    assert summary["gates"][0]["action"] == "create"
    assert [g["spec"]["allowedVersions"] for g in list_gates(custom, namespace)] == [[]]


def test_irrelevant_events_are_counted_not_errors(webhook_url, kube_stack, namespace, custom) -> None:
    from tests.payloads import payload_bytes

    response = post(webhook_url, payload_bytes("audit/configmap-create-metadata.json"), kube_stack)
    assert response.status_code == 200
    assert response.json()["acted"] == 0
    assert sum(response.json()["ignored"].values()) == 1


BAD_BODIES = {
    "not JSON": (b"{this is not json", 400, "not JSON"),
    "wrong kind": (json.dumps({"apiVersion": "audit.k8s.io/v1", "kind": "Policy"}).encode(), 400, "kind"),
    "wrong apiVersion": (json.dumps({"apiVersion": "v1", "kind": "EventList"}).encode(), 400, "apiVersion"),
    "event without stage": (
        json.dumps(
            {
                "apiVersion": "audit.k8s.io/v1",
                "kind": "EventList",
                "items": [{"auditID": "a", "verb": "create"}],
            }
        ).encode(),
        400,
        "stage",
    ),
    "10 MB body": (b"{" + b" " * (10 * 1024 * 1024) + b"}", 413, "limit"),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_input_gets_a_4xx_with_reason_and_changes_nothing(
    case, webhook_url, kube_stack, namespace, custom
) -> None:
    body, status, reason = BAD_BODIES[case]
    response = post(webhook_url, body, kube_stack)
    assert response.status_code == status
    assert reason in response.json()["error"]
    assert list_gates(custom, namespace) == []


def test_bad_item_rejects_the_whole_delivery(webhook_url, kube_stack, namespace, custom) -> None:
    body = delivery(stored(environment(namespace, "prod")))
    body["items"].append({"auditID": "x", "stage": "ResponseComplete"})
    response = post(webhook_url, json.dumps(body).encode(), kube_stack)
    assert response.status_code == 400
    assert "items[1].verb" in response.json()["error"]
    assert list_gates(custom, namespace) == []


@pytest.mark.parametrize("token", [None, "wrong-token", ""])
def test_wrong_or_missing_token_is_refused(token, webhook_url, kube_stack, namespace, custom) -> None:
    response = post(
        webhook_url, delivery_bytes(stored(environment(namespace, "prod"))), kube_stack, token=token
    )
    assert response.status_code == 401
    assert list_gates(custom, namespace) == []


def test_without_a_configured_token_every_request_is_refused_and_logged(
    kube_stack, procs, namespace, custom
) -> None:
    url = serve(kube_stack, procs, "k8s_audit_http", AUDIT_WEBHOOK_TOKEN="")
    response = post(url, delivery_bytes(stored(environment(namespace, "prod"))), kube_stack, token="anything")
    assert response.status_code == 401
    assert "AUDIT_WEBHOOK_TOKEN is not configured" in response.json()["error"]
    assert list_gates(custom, namespace) == []
    log = (procs.log_dir / "function-k8s_audit_http.log").read_text()
    assert "AUDIT_WEBHOOK_TOKEN is not configured" in log


def test_hanging_kubernetes_api_gets_an_answer_within_the_deadline(
    kube_stack, procs, black_hole, namespace
) -> None:
    url = serve(kube_stack, procs, "k8s_audit_http", KUBECONFIG=str(black_hole), AUDIT_DEADLINE_SECONDS="1")
    started = time.monotonic()
    response = post(url, delivery_bytes(stored(environment(namespace, "prod"))), kube_stack)
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert "within 1s" in response.json()["error"] or "timed out" in response.json()["error"].lower()
    assert elapsed < 10, f"answered after {elapsed:.1f}s; the deadline is 1s"


def pubsub_push(body: bytes) -> dict:
    """A Pub/Sub push delivery as a structured CloudEvent, the way Eventarc sends it."""
    return {
        "specversion": "1.0",
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": "//pubsub.googleapis.com/projects/test/topics/audit",
        "id": "1234",
        "datacontenttype": "application/json",
        "data": {
            "message": {"data": base64.b64encode(body).decode(), "messageId": "1234"},
            "subscription": "s",
        },
    }


def post_event(url: str, event: dict, kube_stack: devstack.KubeStack):
    return requests.post(
        url,
        data=json.dumps(event),
        headers={"Content-Type": "application/cloudevents+json"},
        verify=str(kube_stack.tls.ca_file),
        timeout=30,
    )


def test_pubsub_message_creates_the_gate(pubsub_url, kube_stack, namespace, custom) -> None:
    env = create_environment(custom, environment(namespace, "prod"))
    response = post_event(pubsub_url, pubsub_push(delivery_bytes(env)), kube_stack)
    assert response.status_code == 200, response.text
    assert [g["spec"]["allowedVersions"] for g in list_gates(custom, namespace)] == [[]]


@pytest.mark.parametrize(
    "data",
    [{"message": {"data": "%%% not base64"}}, {"message": {}}, pubsub_push(b"not json")["data"]],
    ids=["bad base64", "no data", "not an audit document"],
)
def test_poison_pubsub_message_is_acknowledged_and_logged(
    data, pubsub_url, kube_stack, procs, namespace, custom
) -> None:
    event = {**pubsub_push(b""), "data": data}
    response = post_event(pubsub_url, event, kube_stack)
    assert response.status_code == 200
    assert list_gates(custom, namespace) == []
    assert "dropping message" in (procs.log_dir / "function-k8s_audit.log").read_text()


def test_transient_failure_fails_the_push_so_pubsub_redelivers(
    kube_stack, procs, black_hole, namespace
) -> None:
    url = serve(kube_stack, procs, "k8s_audit", KUBECONFIG=str(black_hole), AUDIT_DEADLINE_SECONDS="0.5")
    response = post_event(
        url, pubsub_push(delivery_bytes(stored(environment(namespace, "prod")))), kube_stack
    )
    assert response.status_code == 500


@pytest.mark.parametrize(
    ("variable", "value"), [("AUDIT_DEADLINE_SECONDS", "two"), ("KUBECONFIG", "/nonexistent/kubeconfig")]
)
def test_bad_configuration_stops_the_function_at_start_naming_the_variable(
    variable, value, kube_stack, procs
) -> None:
    with pytest.raises(RuntimeError, match="exited"):
        serve(kube_stack, procs, "k8s_audit_http", **{variable: value})
    assert variable in (procs.log_dir / "function-k8s_audit_http.log").read_text()
