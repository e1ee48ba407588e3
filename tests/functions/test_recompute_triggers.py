"""A Rollout that lists the baked revision only after the webhook: the audit trigger and `resync` open
the gate anyway (GitHub does not redeliver, so these are the healers)."""

from __future__ import annotations

import json

import pytest
import requests
from kubernetes import client

from shared.audit import parse_audit_json
from stagegate.audit_service import AuditContext, handle_audit_events
from stagegate.github import GitHubDeployments, github_client
from stagegate.kube import KubeGates
from stagegate_dev import devstack
from stagegate_dev.fake_github import FakeGitHub
from tests.functions.test_github_webhook import CA, SECRET, App, deliver, rev
from tests.kube_objects import ENV_ARGS, environment, rollout_status_delivery

RESYNC_TOKEN = "resync-token-for-tests"


def serve(kube_stack, procs, fake, source: str, target: str) -> str:
    env = {
        "KUBECONFIG": str(kube_stack.function_kubeconfig),
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "GITHUB_TOKEN": fake.token,
        "GITHUB_API_URL": fake.url,
        "RESYNC_TOKEN": RESYNC_TOKEN,
    }
    CA[:] = [str(kube_stack.tls.ca_file)]
    path = devstack.ROOT / "functions" / source / "main.py"
    return devstack.FunctionServer(path, target, env, kube_stack.tls, procs).url


@pytest.fixture(scope="module")
def webhook(kube_stack, procs, fake) -> str:
    return serve(kube_stack, procs, fake, "github_webhook", "github_webhook")


@pytest.fixture(scope="module")
def resync(kube_stack, procs, fake) -> str:
    return serve(kube_stack, procs, fake, "resync", "resync_http")


@pytest.fixture
def app(custom: client.CustomObjectsApi, gates: KubeGates, fake: FakeGitHub, namespace: str) -> App:
    return App(custom, gates, fake, namespace)


def baked_before_listed(webhook: str, fake: FakeGitHub, app: App) -> None:
    app.environment("staging")
    app.environment("prod", upstream="staging")
    app.candidates("prod", ("v0", rev(0)))
    assert deliver(webhook, fake, app, app.bake("staging", rev(1), tag="v1")).status_code == 200
    assert app.gate("prod") == []
    app.candidates("prod", ("v0", rev(0)), ("v1", rev(1)))


def rollout_status_event(namespace: str, name: str) -> bytes:
    return json.dumps(rollout_status_delivery(namespace, name)).encode()


def test_rollout_status_change_reaching_the_audit_path_opens_the_gate(webhook, fake, app, gates) -> None:
    baked_before_listed(webhook, fake, app)
    upstream = GitHubDeployments(github_client(fake.token, fake.url, 5))
    summary = handle_audit_events(
        parse_audit_json(rollout_status_event(app.namespace, "myapp-prod")), AuditContext(gates, upstream, 5)
    )
    assert summary.acted == 1
    assert app.gate("prod") == ["v1"]


def test_rollout_status_change_without_github_configured_is_ignored_with_reason(
    webhook, fake, app, gates
) -> None:
    baked_before_listed(webhook, fake, app)
    summary = handle_audit_events(
        parse_audit_json(rollout_status_event(app.namespace, "myapp-prod")), AuditContext(gates, None, 5)
    )
    assert summary.ignored == {"rollout change, but no GitHub credentials are configured here": 1}
    assert app.gate("prod") == []


def test_resync_opens_what_the_webhook_could_not_yet(webhook, resync, fake, app) -> None:
    baked_before_listed(webhook, fake, app)
    response = requests.post(
        resync, headers={"Authorization": f"Bearer {RESYNC_TOKEN}"}, verify=CA[0], timeout=60
    )
    assert response.status_code == 200, response.text
    assert app.gate("prod") == ["v1"]
    assert f"{app.namespace}/prod" in {g["environment"] for g in response.json()["gates"]}


def test_resync_creates_a_missing_gate_blocking(resync, app) -> None:
    body = environment(app.namespace, "late")
    body["spec"]["backend"]["project"] = app.repo
    app.custom.create_namespaced_custom_object(*ENV_ARGS, app.namespace, "environments", body)
    response = requests.post(resync, headers={"Authorization": "Bearer nope"}, verify=CA[0], timeout=30)
    assert response.status_code == 401
