"""Issue 10, item 3, end to end: `k8s_audit_http` served by functions-framework (gunicorn, TLS), the real
kube-apiserver behind a proxy that makes every request 20 ms slower, and a backlog of 16 deliveries of
400 Environment events each plus Rollout status changes whose recompute waits for a GitHub that never
answers, all sent again and again. An Environment created meanwhile still gets its gate within
`AUDIT_DEADLINE_SECONDS` (before: 503 after 6 s, the gate 35 s later or never; see `audit_backlog`).
A delivery of more events than `AUDIT_MAX_EVENTS` is refused whole with 413."""

from __future__ import annotations

import pytest
import requests

from stagegate_dev import devstack
from tests.functions import audit_backlog
from tests.kube_objects import list_gates

DEADLINE = 2.0

# Scheduling does not depend on the CRDs: the project's set is enough.
pytestmark = pytest.mark.parametrize("crd_dir", ["project"], indirect=True)


def test_a_backlog_cannot_delay_a_creates_gate_past_the_deadline(kube_stack, procs, tmp_path) -> None:
    result = audit_backlog.run(
        kube_stack, procs, tmp_path, deliveries=16, events=400, rollout_senders=8, delay=0.02,
        deadline=DEADLINE, creates=3, warmup=2.0, wait=30,
    )  # fmt: skip
    print("\n" + "\n".join(create.line(n) for n, create in enumerate(result.creates, 1)))
    print(f"backlog answers {dict(result.backlog_answers)}, rollout answers {dict(result.rollout_answers)}")
    assert sum(result.backlog_answers.values()) > 16, "the backlog never got going"
    for create in result.creates:
        assert create.status == 200, create
        assert create.gate_after is not None, create
        assert create.gate_after <= DEADLINE, create
        assert create.allowed == [], create


def test_more_events_than_audit_max_events_are_refused_whole(kube_stack, procs, namespace, custom) -> None:
    env = {
        "KUBECONFIG": str(kube_stack.function_kubeconfig),
        "AUDIT_WEBHOOK_TOKEN": audit_backlog.TOKEN,
        "AUDIT_MAX_EVENTS": "3",
    }
    server = devstack.FunctionServer(audit_backlog.SOURCE, "k8s_audit_http", env, kube_stack.tls, procs)

    def post(count: int) -> requests.Response:
        return requests.post(
            server.url,
            data=audit_backlog.environment_batch(namespace, "env", count),
            headers={"Authorization": f"Bearer {audit_backlog.TOKEN}"},
            verify=str(kube_stack.tls.ca_file),
            timeout=30,
        )

    refused = post(4)
    assert refused.status_code == 413
    assert "4 events, more than the 3" in refused.json()["error"]
    assert list_gates(custom, namespace) == []
    accepted = post(3)
    assert accepted.status_code == 200, accepted.text
    assert len(list_gates(custom, namespace)) == 3
