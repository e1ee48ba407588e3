"""A misspelt relationship gets a voice: an admission warning and a Warning Event when an Environment
of the deployment is spelt closely; an Event from the recompute once GitHub holds no record there either;
and `explain` says it. On the real kube-apiserver, with the shipped admission webhooks registered and the
GitHub stand-in."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from kubernetes import client

from shared.audit import parse_audit_json
from shared.upstream import UNKNOWN_UPSTREAM_REASON
from stagegate.audit_service import AuditContext, handle_audit_events
from stagegate.cli import explain
from stagegate.github import GitHubDeployments, github_client
from stagegate.kube import KubeGates
from stagegate_dev import devstack
from stagegate_dev.fake_github import FakeGitHub
from tests.functions.admission_support import GUARD_LABEL, labelled_namespace
from tests.functions.test_github_webhook import App, rev
from tests.kube_objects import ENV_ARGS, environment, rollout_status_delivery


@pytest.fixture
def watched(registered: dict[str, Any], kube_stack: devstack.KubeStack, isolation: dict[str, str]) -> str:
    """A namespace the admission webhooks see."""
    return labelled_namespace(kube_stack, {**isolation, **GUARD_LABEL}, "typo")


def create(
    custom: client.CustomObjectsApi, namespace: str, name: str, upstream: str | None
) -> dict[str, str]:
    """Create an Environment through the API; the answer's headers."""
    _, _, headers = custom.create_namespaced_custom_object_with_http_info(
        *ENV_ARGS,
        namespace,
        "environments",
        environment(namespace, name, upstream=upstream, rollout=f"myapp-{name}"),
    )
    return dict(headers)


def warnings_about(kube_stack: devstack.KubeStack, namespace: str, name: str) -> list[str]:
    events = client.CoreV1Api(kube_stack.api_client()).list_namespaced_event(namespace).items
    return [
        e.message
        for e in events
        if e.reason == UNKNOWN_UPSTREAM_REASON and e.involved_object.name == name and e.type == "Warning"
    ]


def test_a_misspelt_upstream_is_answered_with_a_warning_and_a_warning_event(
    watched: str, custom: client.CustomObjectsApi, kube_stack: devstack.KubeStack
) -> None:
    create(custom, watched, "staging", None)
    headers = create(custom, watched, "prod", "stagign")
    assert "did you mean 'staging'?" in headers.get("Warning", ""), headers
    devstack.wait_until(lambda: warnings_about(kube_stack, watched, "prod"), 10, "the UnknownUpstream Event")
    [said] = warnings_about(kube_stack, watched, "prod")
    assert "Environment prod follows 'stagign'" in said


def test_a_correct_or_far_away_upstream_is_not_called_a_typo(
    watched: str, custom: client.CustomObjectsApi, kube_stack: devstack.KubeStack
) -> None:
    create(custom, watched, "staging", None)
    assert "follows" not in create(custom, watched, "prod", "staging").get("Warning", "")
    # Another cluster's environment, spelt like nothing here: GitHub may well know it.
    assert "follows" not in create(custom, watched, "dr", "eu-west-canary").get("Warning", "")
    assert warnings_about(kube_stack, watched, "prod") == warnings_about(kube_stack, watched, "dr") == []


def test_the_recompute_and_explain_say_it_once_github_holds_no_record_either(
    fake: FakeGitHub,
    custom: client.CustomObjectsApi,
    gates: KubeGates,
    namespace: str,
    kube_stack: devstack.KubeStack,
) -> None:
    app = App(custom, gates, fake, namespace)
    app.environment("staging")
    app.environment("prod", upstream="stagign")
    app.candidates("prod", ("v1", rev(1)))
    app.bake("staging", rev(1))  # baked where prod should have looked
    github = GitHubDeployments(github_client(fake.token, fake.url, 10))
    events = parse_audit_json(json.dumps(rollout_status_delivery(namespace, "myapp-prod")).encode())
    handle_audit_events(events, AuditContext(gates, github, 5))
    assert app.gate("prod") == []
    [said] = warnings_about(kube_stack, namespace, "prod")
    assert "GitHub holds no record in kuberik/myapp/stagign" in said
    assert "did you mean 'staging'?" in said
    handle_audit_events(events, AuditContext(gates, github, 5))  # nothing written: not said again
    assert len(warnings_about(kube_stack, namespace, "prod")) == 1
    env = gates.get_environment(namespace, "prod")
    assert env is not None
    out = io.StringIO()
    assert explain(env, gates, github, out)
    assert "GitHub holds no record in kuberik/myapp/stagign" in out.getvalue()
    assert "did you mean 'staging'?" in out.getvalue()
