"""In blocking mode the apiserver holds each write while it retries a failed audit webhook answer (with
a 10 s initial backoff, up to its own request timeout). With GitHub hanging, a Rollout status write used
to take 60 s and fail; a Rollout change that cannot be finished in time is now answered 200 and left to
the resync, so the rollout controller's writes stay bounded by AUDIT_DEADLINE_SECONDS."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from kubernetes import client

from stagegate_dev import devstack
from tests.hanging_server import hanging_server
from tests.kube_objects import ENV_ARGS, environment


@pytest.fixture(scope="module")
def hanging_github() -> Iterator[str]:
    """A GitHub that accepts connections and never answers."""
    with hanging_server() as port:
        yield f"http://127.0.0.1:{port}"


def test_a_rollout_write_is_not_held_when_github_hangs(hanging_github: str) -> None:
    github = {"GITHUB_TOKEN": "ghp_hanging000000000000000000000000000", "GITHUB_API_URL": hanging_github}
    with devstack.audit_webhook_stack(function_env=github) as (kube, audit):
        api = kube.api_client()
        custom = client.CustomObjectsApi(api)
        client.CoreV1Api(api).create_namespace({"metadata": {"name": "held"}})
        body = environment("held", "prod", upstream="staging", rollout="app-prod")
        custom.create_namespaced_custom_object(*ENV_ARGS, "held", "environments", body)
        rollout = {"apiVersion": "kuberik.com/v1alpha1", "kind": "Rollout", "metadata": {"name": "app-prod"}}
        custom.create_namespaced_custom_object("kuberik.com", "v1alpha1", "held", "rollouts", rollout)
        took = []
        for i in range(2):
            started = time.monotonic()
            custom.patch_namespaced_custom_object_status(
                "kuberik.com", "v1alpha1", "held", "rollouts", "app-prod",
                {"status": {"releaseCandidates": [{"tag": f"v{i}", "revision": f"{i:040x}"}]}},
                _request_timeout=30,
            )  # fmt: skip
            took.append(time.monotonic() - started)
        log = kube.procs.tail(audit.name, 200)
    assert "left to the scheduled resync" in log
    # Under the 10 s the apiserver waits before its first retry: no retry happened (before: 60 s, failed).
    assert max(took) < 10, took
