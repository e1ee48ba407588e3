"""A revocation fanning out to many downstream Environments: narrowing first, bounded by the webhook's
deadline, and what it could not reach handed on durably rather than left to the resync.

In-process, against the in-memory Kubernetes of the model (`tests.model.store`, its writes made slow
where a test needs time to run out) and a GitHub answer built from kuberik's records. The same on the
real apiserver, the real github_webhook and k8s_audit and the Pub/Sub emulator is in
`tests/functions/test_revocation_handoff.py`; the numbers for N = 100 and 1,000 are
`bench/bench_revocation.py`'s.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from shared.audit import HAND_OFF_ANNOTATION, HAND_OFF_USER, parse_audit_json
from shared.bake import CommitLookup
from shared.errors import PartialFailure
from shared.github_delivery import signature, verify_delivery
from stagegate import fanout, recompute_service
from stagegate.audit_service import AuditContext, handle_audit_events
from stagegate.fanout import fan_out
from stagegate.webhook_service import on_delivery
from tests.kube_objects import environment
from tests.model.store import InMemoryKube
from tests.shared.builders import OID, OTHER_OID, deployment, failed, lookup, succeeded
from tests.shared.test_github_delivery import deployment_status_payload
from tests.stagegate.in_memory import RecordingTransport

NS = "shop"
SECRET = "revocation-secret"
REPO = "myorg/myapp"
V1, V2 = ("v1", OID), ("v2", OTHER_OID)


class Staging:
    """GitHub's answer for staging: v1 baked then failed, v2 baked (kuberik's records)."""

    def __init__(self) -> None:
        self.calls = 0
        self.answer = {
            OID: lookup(OID, deployment(1, 0, succeeded(1), failed(5), tag="v1")),
            OTHER_OID: lookup(
                OTHER_OID, deployment(2, 2, succeeded(3), sha=OTHER_OID, tag="v2"), oid=OTHER_OID
            ),
        }

    def commit_deployments(
        self, repository: str, environment: str, revisions: Iterable[str]
    ) -> dict[str, CommitLookup]:
        self.calls += 1
        return {r: self.answer[r] for r in revisions}


class Clock:
    """The monotonic clock the recompute and the fan-out judge their deadline by, made to advance only
    by gate writes (`SlowKube`): how many writes a deadline lets start does not depend on this machine."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class SlowKube(InMemoryKube):
    """Each gate write takes `delay` seconds of `clock` (an apiserver under load); writes are recorded."""

    def __init__(self, delay: float = 0.0, clock: Clock | None = None) -> None:
        super().__init__()
        self.delay = delay
        self.clock = clock or Clock()
        self.patched: list[str] = []

    def patch_gate(self, namespace: str, name: str, patch: Mapping[str, Any], resource_version: str) -> Any:
        with self.lock:
            self.clock.now += self.delay
            self.patched.append(name)
        return super().patch_gate(namespace, name, patch, resource_version)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The deadline's clock, in place of `time` where the recompute and the fan-out read it."""
    fake = Clock()
    monkeypatch.setattr(recompute_service, "time", fake)
    monkeypatch.setattr(fanout, "time", fake)
    return fake


def world(kube: InMemoryKube, narrowing: int, widening: int = 0) -> None:
    """`narrowing` prod Environments whose gates allow v1 (now failed), `widening` ones listing v2 (baked,
    not yet allowed); all follow staging."""
    for i in range(narrowing + widening):
        name = f"prod-{i}"
        body = environment(NS, name, upstream="staging", rollout=name)
        body["spec"]["backend"]["project"] = REPO
        stored = kube.put_environment(body)
        tag, sha = V1 if i < narrowing else V2
        kube.put_rollout_status(NS, name, [{"tag": tag, "revision": sha}])
        gate = {
            "apiVersion": "kuberik.com/v1alpha1",
            "kind": "RolloutGate",
            "metadata": {
                "name": f"{name}-stagegate",
                "namespace": NS,
                "resourceVersion": "1",
                "ownerReferences": [
                    {
                        "apiVersion": "environments.kuberik.com/v1alpha1",
                        "kind": "Environment",
                        "name": name,
                        "uid": stored["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "rolloutRef": {"name": name},
                "passing": True,
                "allowedVersions": ["v1"] if i < narrowing else [],
            },
        }
        kube.gates[(NS, f"{name}-stagegate")] = gate


def delivery() -> Any:
    """staging's failure as GitHub delivers it (the shape `tests/shared/test_github_delivery.py` checks)."""
    payload = deployment_status_payload()
    payload["deployment_status"].update(state="failure", description="Bake failed: error rate above 5%")
    body = json.dumps(payload).encode()
    headers = {
        "X-GitHub-Event": "deployment_status",
        "X-GitHub-Delivery": "d-1",
        "X-Hub-Signature-256": signature(SECRET, body),
    }
    return verify_delivery(headers, body, [SECRET])


def allowing_v1(kube: InMemoryKube) -> int:
    return sum("v1" in (g["spec"].get("allowedVersions") or []) for g in kube.gates.values())


def test_narrowing_writes_are_made_before_any_widening(monkeypatch: pytest.MonkeyPatch) -> None:
    kube = SlowKube()
    world(kube, narrowing=20, widening=20)
    one_at_a_time = lambda items, work, deadline=None: fan_out(items, work, deadline, workers=1)  # noqa: E731
    monkeypatch.setattr(recompute_service, "fan_out", one_at_a_time)
    on_delivery(delivery(), kube, Staging(), [NS])
    narrowed = [f"prod-{i}-stagegate" for i in range(20)]
    assert sorted(kube.patched[:20]) == sorted(narrowed)
    assert allowing_v1(kube) == 0
    assert sum(g["spec"].get("allowedVersions") == ["v2"] for g in kube.gates.values()) == 20


def test_a_thousand_downstream_gates_take_one_github_read_and_a_few_kubernetes_reads() -> None:
    kube = SlowKube()
    world(kube, narrowing=1000)
    reads: list[str] = []
    for method in ("list_gates", "list_rollouts", "list_environments", "get_rollout", "get_environment"):
        real = getattr(kube, method)
        monkey = lambda *a, _m=method, _r=real, **k: (reads.append(_m), _r(*a, **k))[1]  # noqa: E731
        setattr(kube, method, monkey)
    staging = Staging()
    summary = on_delivery(delivery(), kube, staging, [NS])
    assert allowing_v1(kube) == 0
    assert staging.calls == 1
    assert len(kube.patched) == 1000
    assert len(reads) <= 4, reads  # the webhook's list, then gates, Rollouts and Environments once each
    assert summary["status"] == "recomputed"


def test_what_is_not_reached_before_the_deadline_is_handed_on_and_finished_by_the_audit_path(
    clock: Clock,
) -> None:
    kube = SlowKube(delay=0.05, clock=clock)
    world(kube, narrowing=200)
    transport = RecordingTransport()
    summary = on_delivery(delivery(), kube, Staging(), [NS], deadline=clock.now + 0.3, handoff=transport)
    left = allowing_v1(kube)
    assert 0 < left < 200, "the deadline should have cut the fan-out short"
    assert summary["status"] == "recomputed, the rest handed on"
    handed = summary["handedOn"]
    assert len(handed["environments"]) == left
    events = [event for message in transport.messages for event in parse_audit_json(message)]
    assert len(events) == len(handed["rollouts"]) == left  # one "look again" per Rollout
    assert len(transport.messages) == -(-left // 100)  # a hundred to a message
    assert {e.raw["user"]["username"] for e in events} == {HAND_OFF_USER}
    assert all(
        "deployment_status myorg/myapp kuberik/myapp/staging (failure)"
        in e.raw["annotations"][HAND_OFF_ANNOTATION]
        for e in events
    )
    # k8s_audit takes them from the transport, with its retries, and finishes the revocation.
    kube.delay = 0.0
    staging = Staging()
    for message in transport.messages:  # one delivery each, as Pub/Sub pushes them
        handle_audit_events(parse_audit_json(message), AuditContext(kube, staging, 5))
    assert allowing_v1(kube) == 0
    assert staging.calls == len(transport.messages)  # one GitHub read per delivery, not per Rollout


def test_without_a_transport_what_is_not_reached_in_time_is_answered_503_naming_it(clock: Clock) -> None:
    kube = SlowKube(delay=0.05, clock=clock)
    world(kube, narrowing=200)
    with pytest.raises(PartialFailure, match="no BRIDGE_TRANSPORT") as caught:
        on_delivery(delivery(), kube, Staging(), [NS], deadline=clock.now + 0.3)
    assert 0 < len(caught.value.summary["unfinished"]) < 200
    assert allowing_v1(kube) == len(caught.value.summary["unfinished"])


def test_a_deadline_already_past_writes_nothing_and_hands_everything_on(clock: Clock) -> None:
    kube = SlowKube(clock=clock)
    world(kube, narrowing=5)
    transport = RecordingTransport()
    staging = Staging()
    summary = on_delivery(delivery(), kube, staging, [NS], deadline=clock.now - 1, handoff=transport)
    assert kube.patched == []
    assert staging.calls == 0
    assert len(summary["handedOn"]["rollouts"]) == 5
