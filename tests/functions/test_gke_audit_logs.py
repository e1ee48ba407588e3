"""GKE without an audit webhook: Cloud Audit Logs entries, as a Logging sink publishes them, through
Pub/Sub (the real emulator) to `k8s_audit` and the `reporter` (served by functions-framework), on the
real kube-apiserver and the GitHub stand-in.

Wired as `infra/gcp/gke_audit_logs.tf` wires it: one topic, one push subscription to each function,
neither ordered (a sink publishes without ordering keys). Each message's data is one LogEntry as
JSON, built with Google's own types (`tests/shared/test_cloud_audit_log.py`); the Logging sink itself
has no emulator, so the test publishes what it would. The functions run as the least-privilege
identity of `infra/k8s/rbac.yaml`.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from kubernetes import client

from stagegate.kube import KubeGates
from stagegate_dev import devstack
from stagegate_dev.fake_github import FakeGitHub
from tests.functions.reporter_support import History
from tests.kube_objects import ENV_ARGS, environment, list_gates
from tests.shared.test_cloud_audit_log import environment_entry, log_entry, rollout_status_entry

PROJECT = "stagegate-test"


def wait_for(condition, seconds: float = 30) -> None:  # type: ignore[no-untyped-def]
    devstack.wait_until(condition, seconds, "condition")


class SinkRoute:
    """The sink's topic and its two push subscriptions: to k8s_audit and to the reporter."""

    def __init__(
        self, pubsub: Any, kube_stack: devstack.KubeStack, procs: devstack.Processes, fake: FakeGitHub
    ):
        suffix = uuid.uuid4().hex[:8]
        self.topic = f"projects/{PROJECT}/topics/gke-audit-{suffix}"
        self.publisher = pubsub.PublisherClient()
        self.publisher.create_topic(name=self.topic)
        env = {
            "KUBECONFIG": str(kube_stack.function_kubeconfig),
            "GITHUB_TOKEN": fake.token,
            "GITHUB_API_URL": fake.url,
            "AUDIT_DEADLINE_SECONDS": "5",
        }
        self.k8s_audit = devstack.FunctionServer(
            devstack.ROOT / "functions" / "k8s_audit" / "main.py", "k8s_audit", env, None, procs
        )
        self.reporter = devstack.FunctionServer(
            devstack.ROOT / "functions" / "reporter" / "main.py", "reporter", env, None, procs
        )
        subscriber = pubsub.SubscriberClient()
        for name, server, ack_deadline in (
            ("k8s-audit", self.k8s_audit, 10),
            ("reporter", self.reporter, 60),
        ):
            subscriber.create_subscription(
                request={
                    "name": f"projects/{PROJECT}/subscriptions/gke-{name}-{suffix}",
                    "topic": self.topic,
                    "push_config": {"push_endpoint": server.url},
                    "ack_deadline_seconds": ack_deadline,
                }
            )
        self.procs = procs

    def publish(self, entry: dict[str, Any]) -> None:
        """What the sink does with an entry its filter lets through: one message, no ordering key."""
        self.publisher.publish(self.topic, json.dumps(entry).encode()).result(timeout=10)

    def handled(self, server: devstack.FunctionServer) -> list[dict[str, Any]]:
        """The summaries the server logged for the messages it acknowledged after handling them."""
        lines = self.procs.tail(server.name, 10_000).splitlines()
        return [json.loads(line)["summary"] for line in lines if line.startswith("{") and ": handled" in line]

    def log(self, server: devstack.FunctionServer) -> str:
        return self.procs.tail(server.name, 10_000)


@pytest.fixture
def sink(
    pubsub: Any, kube_stack: devstack.KubeStack, procs: devstack.Processes, fake: FakeGitHub
) -> SinkRoute:
    return SinkRoute(pubsub, kube_stack, procs, fake)


def create_environment(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    created: dict[str, Any] = custom.create_namespaced_custom_object(
        *ENV_ARGS, namespace, "environments", environment(namespace, name)
    )
    return created


def test_environment_create_entry_makes_its_blocking_gate(
    sink: SinkRoute, custom: client.CustomObjectsApi, namespace: str
) -> None:
    env = create_environment(custom, namespace, "prod")  # with a relationship: After staging
    sink.publish(environment_entry(namespace, "prod"))
    wait_for(lambda: [g["spec"]["allowedVersions"] for g in list_gates(custom, namespace)] == [[]])
    [gate] = list_gates(custom, namespace)
    assert [ref["uid"] for ref in gate["metadata"]["ownerReferences"]] == [env["metadata"]["uid"]]
    # The reporter got the entry too (one subscription each, no filter) and had nothing to report.
    wait_for(lambda: {"rollouts": [], "errors": []} in sink.handled(sink.reporter))


def test_a_failed_request_changes_nothing(
    sink: SinkRoute, custom: client.CustomObjectsApi, namespace: str
) -> None:
    create_environment(custom, namespace, "prod")
    sink.publish(environment_entry(namespace, "prod", code=7))  # PERMISSION_DENIED
    wait_for(lambda: any(s["ignored"] == {"response status 403": 1} for s in sink.handled(sink.k8s_audit)))
    assert list_gates(custom, namespace) == []


def test_a_malformed_entry_is_acknowledged_once_and_logged_with_its_reason(sink: SinkRoute) -> None:
    marker = f"not-a-resource-name-{uuid.uuid4().hex[:8]}"
    sink.publish(log_entry("io.k8s.core.v1.pods.create", marker))
    reason = "LogEntry.protoPayload.resourceName must look like"
    wait_for(lambda: marker in sink.log(sink.k8s_audit) and marker in sink.log(sink.reporter))
    time.sleep(12)  # past the ack deadline: a message not acknowledged would have come back
    for server in (sink.k8s_audit, sink.reporter):
        dropped = [line for line in sink.log(server).splitlines() if marker in line]
        assert len(dropped) == 1, dropped
        assert "dropping message" in dropped[0]
        assert reason in dropped[0]


def test_rollout_status_entry_reaches_the_reporter_and_is_recorded_on_github(
    sink: SinkRoute, custom: client.CustomObjectsApi, gates: KubeGates, fake: FakeGitHub, namespace: str
) -> None:
    history = History(custom, gates, fake, namespace).create()
    history.deploy(1, "Succeeded")
    sink.publish(rollout_status_entry(history.namespace, history.rollout))
    wait_for(lambda: "1" in history.recorded(), 60)
    assert history.recorded()["1"][0]["statuses"] == [("success", "Bake succeeded")]
    # k8s_audit got it too: it recomputes the gates of Environments with a relationship governing the
    # Rollout, and staging has none.
    wait_for(
        lambda: any(
            s["ignored"] == {"rollout governed by no Environment with a relationship": 1}
            for s in sink.handled(sink.k8s_audit)
        )
    )
