"""What the hand-off test and the benches share: functions served with GitHub (the stand-in) and a
webhook secret, a delivery posted as GitHub posts it, and an audit topic on the Pub/Sub emulator
pushed, ordered, to a served `k8s_audit`."""

from __future__ import annotations

import time
import uuid

import requests

from shared.github_delivery import signature
from stagegate_dev import devstack
from stagegate_dev.fake_github import FakeGitHub
from tests.functions.test_github_webhook import SECRET

GITHUB_TIMEOUT = 10.0
"""How long GitHub waits for a webhook's answer."""


def deliver(url: str, fake: FakeGitHub, repo: str, status_id: int, ca: str) -> tuple[int, float]:
    """Post the signed `deployment_status` delivery of a status; (HTTP status, 0 when GitHub would have
    given up waiting; seconds)."""
    headers, body = fake.deployment_status_event(repo, status_id)
    headers["X-Hub-Signature-256"] = signature(SECRET, body)
    started = time.perf_counter()
    try:
        answer = requests.post(url, data=body, headers=headers, verify=ca, timeout=GITHUB_TIMEOUT)
        code = answer.status_code
    except requests.Timeout:
        code = 0  # GitHub gave up waiting: the delivery failed, and it is not redelivered
    return code, time.perf_counter() - started


def serve(
    kube_stack: devstack.KubeStack,
    procs: devstack.Processes,
    fake: FakeGitHub,
    function: tuple[str, str],
    tls: bool,
    **env: str,
) -> str:
    """`functions/<source>/main.py`'s target `function` (source, target) served, its URL."""
    source, target = function
    settings = {
        "KUBECONFIG": str(kube_stack.function_kubeconfig),
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "GITHUB_TOKEN": fake.token,
        "GITHUB_API_URL": fake.url,
        **env,
    }
    path = devstack.ROOT / "functions" / source / "main.py"
    return devstack.FunctionServer(path, target, settings, kube_stack.tls if tls else None, procs).url


def audit_route(
    kube_stack: devstack.KubeStack, procs: devstack.Processes, fake: FakeGitHub, emulator: str
) -> str:
    """A fresh audit topic and its ordered push subscription to a served `k8s_audit` (with GitHub); the
    topic's path. The caller's Pub/Sub clients must point at `emulator` (PUBSUB_EMULATOR_HOST)."""
    from google.cloud import pubsub_v1

    topic = f"projects/stagegate-test/topics/audit-{uuid.uuid4().hex[:8]}"
    pubsub_v1.PublisherClient().create_topic(name=topic)
    consumer = serve(
        kube_stack, procs, fake, ("k8s_audit", "k8s_audit"), False, PUBSUB_EMULATOR_HOST=emulator
    )
    pubsub_v1.SubscriberClient().create_subscription(
        request={
            "name": topic.replace("/topics/", "/subscriptions/"),
            "topic": topic,
            "push_config": {"push_endpoint": consumer},
            "enable_message_ordering": True,
            "ack_deadline_seconds": 60,
        }
    )
    return topic
