"""audit_bridge -> Pub/Sub (the real emulator) -> push subscription -> k8s_audit (functions-framework)
-> gate on the real kube-apiserver: delivery, redelivery after a transient failure, a poison message
acknowledged once, order per Environment."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
import requests

from shared.gate import gate_name
from stagegate_dev import devstack
from tests.flaky_proxy import FlakyProxy
from tests.kube_objects import create_environment, delivery, delivery_bytes, environment, list_gates, stored

TOKEN = "bridge-token-for-tests"
PROJECT = "stagegate-test"


class Route:
    """A topic, the bridge publishing to it, and a push subscription to a k8s_audit server."""

    def __init__(self, pubsub: Any, emulator, kube_stack, procs, kubeconfig: str) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.topic = f"projects/{PROJECT}/topics/audit-{suffix}"
        pubsub.PublisherClient().create_topic(name=self.topic)
        env = {"KUBECONFIG": kubeconfig, "AUDIT_DEADLINE_SECONDS": "2"}
        self.consumer = devstack.FunctionServer(
            devstack.ROOT / "functions" / "k8s_audit" / "main.py", "k8s_audit", env, None, procs
        )
        pubsub.SubscriberClient().create_subscription(
            request={
                "name": f"projects/{PROJECT}/subscriptions/k8s-audit-{suffix}",
                "topic": self.topic,
                "push_config": {"push_endpoint": self.consumer.url},
                "enable_message_ordering": True,
                "ack_deadline_seconds": 10,
            }
        )
        bridge_env = {
            "BRIDGE_TRANSPORT": "pubsub", "BRIDGE_PUBSUB_TOPIC": self.topic, "AUDIT_WEBHOOK_TOKEN": TOKEN,
            "PUBSUB_EMULATOR_HOST": emulator.host, "KUBECONFIG": str(kube_stack.function_kubeconfig),
        }  # fmt: skip
        self.bridge = devstack.FunctionServer(
            devstack.ROOT / "functions" / "audit_bridge" / "main.py", "audit_bridge", bridge_env, None, procs
        )
        self.procs = procs

    def post(self, body: bytes) -> requests.Response:
        return requests.post(
            self.bridge.url, data=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )

    def consumer_log(self) -> str:
        return self.procs.tail(self.consumer.name, 10_000)


def wait_for(condition, seconds: float = 30) -> None:  # type: ignore[no-untyped-def]
    devstack.wait_until(condition, seconds, "condition")


def test_bridged_create_event_reaches_k8s_audit_and_makes_the_gate(
    pubsub, emulator, kube_stack, procs, namespace, custom
) -> None:
    route = Route(pubsub, emulator, kube_stack, procs, str(kube_stack.function_kubeconfig))
    answer = route.post(delivery_bytes(create_environment(custom, environment(namespace, "prod"))))
    assert answer.status_code == 200, answer.text
    assert answer.json()["published"] == 1
    wait_for(lambda: [g["spec"]["allowedVersions"] for g in list_gates(custom, namespace)] == [[]])


def test_irrelevant_events_are_not_published(pubsub, emulator, kube_stack, procs) -> None:
    from tests.payloads import payload_bytes

    route = Route(pubsub, emulator, kube_stack, procs, str(kube_stack.function_kubeconfig))
    answer = route.post(payload_bytes("audit/configmap-create-metadata.json"))
    assert answer.json() == {
        "events": 1,
        "published": 0,
        "ignored": {"not routed: configmaps.core create": 1},
    }


def test_bridge_refuses_a_wrong_token(pubsub, emulator, kube_stack, procs) -> None:
    route = Route(pubsub, emulator, kube_stack, procs, str(kube_stack.function_kubeconfig))
    answer = requests.post(route.bridge.url, data=b"{}", headers={"Authorization": "Bearer no"}, timeout=30)
    assert answer.status_code == 401


def test_transient_failure_is_redelivered_until_the_gate_exists(
    pubsub, emulator, kube_stack, procs, namespace, custom, tmp_path
) -> None:
    proxy = FlakyProxy(kube_stack.port)
    try:
        kubeconfig = devstack.write_kubeconfig(
            tmp_path / "flaky",
            f"https://127.0.0.1:{proxy.port}",
            kube_stack.tls.ca_file,
            kube_stack.admin_token,
        )
        route = Route(pubsub, emulator, kube_stack, procs, str(kubeconfig))
        env = create_environment(custom, environment(namespace, "prod"))
        assert route.post(delivery_bytes(env)).status_code == 200
        wait_for(lambda: route.consumer_log().count("will be redelivered") >= 2)
        assert list_gates(custom, namespace) == []
        proxy.up.set()
        wait_for(lambda: len(list_gates(custom, namespace)) == 1, 120)
        assert list_gates(custom, namespace)[0]["spec"]["allowedVersions"] == []
    finally:
        proxy.close()


def test_poison_message_is_acknowledged_once_and_logged(
    pubsub, emulator, kube_stack, procs, namespace
) -> None:
    route = Route(pubsub, emulator, kube_stack, procs, str(kube_stack.function_kubeconfig))
    publisher = pubsub.PublisherClient()
    publisher.publish(route.topic, b"this is not an audit event").result(timeout=10)
    wait_for(lambda: "dropping message" in route.consumer_log())
    time.sleep(5)  # a nacked message would have come back within the ack deadline's retry
    assert route.consumer_log().count("dropping message") == 1


def test_events_for_one_environment_arrive_in_order(
    pubsub, emulator, kube_stack, procs, namespace, custom
) -> None:
    route = Route(pubsub, emulator, kube_stack, procs, str(kube_stack.function_kubeconfig))
    env = create_environment(custom, environment(namespace, "prod", upstream=None))
    versions = []
    for i in range(10):
        body = delivery(env, "create" if i == 0 else "update")
        body["items"][0]["responseObject"]["spec"]["environment"] = f"v{i}"
        if i == 9:
            body["items"][0]["responseObject"]["spec"]["relationship"] = {
                "type": "After",
                "environment": "staging",
            }
        versions.append(f"v{i}")
        assert route.post(json.dumps(body).encode()).status_code == 200
    wait_for(lambda: route.consumer_log().count("k8s_audit: handled") >= 10, 60)
    handled = [json.loads(line) for line in route.consumer_log().splitlines() if "k8s_audit: handled" in line]
    assert [h["cloudEventId"] for h in handled] == sorted((h["cloudEventId"] for h in handled), key=int)
    assert (
        custom.get_namespaced_custom_object(
            "kuberik.com", "v1alpha1", namespace, "rolloutgates", gate_name("prod")
        )["spec"]["allowedVersions"]
        == []
    )


def test_publish_failure_answers_5xx_so_the_apiserver_retries(emulator, kube_stack, procs, namespace) -> None:
    env = {
        "BRIDGE_TRANSPORT": "pubsub", "BRIDGE_PUBSUB_TOPIC": f"projects/{PROJECT}/topics/never-created",
        "AUDIT_WEBHOOK_TOKEN": TOKEN, "PUBSUB_EMULATOR_HOST": emulator.host, "AUDIT_DEADLINE_SECONDS": "5",
    }  # fmt: skip
    bridge = devstack.FunctionServer(
        devstack.ROOT / "functions" / "audit_bridge" / "main.py", "audit_bridge", env, None, procs
    )
    answer = requests.post(
        bridge.url,
        data=delivery_bytes(stored(environment(namespace, "prod"))),
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    assert answer.status_code == 503
    assert "publish" in answer.json()["error"]


def test_bridge_without_a_topic_stops_at_start_naming_the_variable(procs) -> None:
    with pytest.raises(devstack.ProcessExited):
        devstack.FunctionServer(
            devstack.ROOT / "functions" / "audit_bridge" / "main.py", "audit_bridge",
            {"BRIDGE_TRANSPORT": "pubsub", "AUDIT_WEBHOOK_TOKEN": TOKEN}, None, procs,
        )  # fmt: skip
    assert "BRIDGE_PUBSUB_TOPIC" in procs.tail("function-audit_bridge", 200)
