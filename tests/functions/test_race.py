"""The incident, closed: with the audit webhook in blocking mode the gate exists before the
Environment's creation is acknowledged. No polling, no sleep: one GET right after the create returns.

The apiserver loads the project's audit policy (`infra/k8s/audit-policy.yaml`) and posts to
`k8s_audit_http` served by functions-framework in its own process, over TLS with a bearer token.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from shared.gate import gate_name
from stagegate_dev import devstack
from tests.kube_objects import ENV_ARGS, GATE_ARGS, environment


@pytest.fixture(scope="module")
def blocking_stack(crd_dir: Path) -> Iterator[devstack.KubeStack]:
    with devstack.audit_webhook_stack(crd_dir) as (stack, _server):
        yield stack


def test_gate_blocks_before_environment_creation_returns(blocking_stack: devstack.KubeStack) -> None:
    custom = client.CustomObjectsApi(blocking_stack.api_client())
    client.CoreV1Api(blocking_stack.api_client()).create_namespace({"metadata": {"name": "race"}})
    for i in range(20):
        name = f"prod-{i}"
        custom.create_namespaced_custom_object(*ENV_ARGS, "race", "environments", environment("race", name))
        gate = custom.get_namespaced_custom_object(*GATE_ARGS, "race", "rolloutgates", gate_name(name))
        assert gate["spec"]["allowedVersions"] == [], f"attempt {i}: {gate['spec']}"
        assert gate["spec"]["passing"] is True


def test_environment_without_relationship_gets_unrestricted_gate_in_time(
    blocking_stack: devstack.KubeStack,
) -> None:
    custom = client.CustomObjectsApi(blocking_stack.api_client())
    custom.create_namespaced_custom_object(
        *ENV_ARGS, "default", "environments", environment("default", "staging", upstream=None)
    )
    gate = custom.get_namespaced_custom_object(*GATE_ARGS, "default", "rolloutgates", gate_name("staging"))
    assert "allowedVersions" not in gate["spec"]


def test_batch_mode_leaves_the_window_open_which_is_why_blocking_mode_is_needed() -> None:
    """The control: the same check fails when the webhook does not sit in the request path."""
    with devstack.audit_webhook_stack(mode="batch") as (stack, _server):
        custom = client.CustomObjectsApi(stack.api_client())
        custom.create_namespaced_custom_object(
            *ENV_ARGS, "default", "environments", environment("default", "prod")
        )
        with pytest.raises(client.exceptions.ApiException) as missing:
            custom.get_namespaced_custom_object(*GATE_ARGS, "default", "rolloutgates", gate_name("prod"))
        assert missing.value.status == 404
        devstack.wait_until(
            lambda: (
                custom.get_namespaced_custom_object(*GATE_ARGS, "default", "rolloutgates", gate_name("prod"))[
                    "spec"
                ]["allowedVersions"]
                == []
            ),
            30,
            "gate after the batch is delivered",
        )
