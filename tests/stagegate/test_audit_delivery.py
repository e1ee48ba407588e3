"""`handle_audit_delivery`, the blocking webhook's way through a delivery, in-process with a Kubernetes
stand-in that answers every call 20 ms late and a GitHub that hangs: a backlog of big deliveries and
slow recomputes cannot delay an Environment create's gate past the deadline, nothing queued runs after
the answer, and a delivery of more events than `AUDIT_MAX_EVENTS` changes nothing.

The same on a real kube-apiserver, served by functions-framework: `tests/functions/test_audit_backlog.py`.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from shared.audit import AuditEvent, parse_audit_document
from shared.errors import PartialFailure, PayloadTooLarge, RetryableError
from stagegate.audit_service import AuditContext, AuditLanes, handle_audit_delivery
from stagegate.lanes import Lane
from tests.shared.builders import environment_raw
from tests.stagegate.in_memory import (
    AUDIT_TOKEN,
    NAMESPACE,
    InMemoryKube,
    environment_variables,
    function_env,
    load_function,
    write_kubeconfig,
)

DEADLINE = 2.0


class SlowKube(InMemoryKube):
    """The in-memory Kubernetes, every call answered `delay` seconds late (calls overlap, as on a real
    API); counts the calls."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls = 0
        self._lock = threading.Lock()
        super().__init__()

    def _slow(self, call: Callable[..., Any], *args: Any) -> Any:
        time.sleep(self.delay)
        with self._lock:
            self.calls += 1
            return call(*args)

    def list_gates(self, namespace: str) -> Any:
        return self._slow(super().list_gates, namespace)

    def create_gate(self, namespace: str, body: Mapping[str, Any]) -> Any:
        return self._slow(super().create_gate, namespace, body)

    def patch_gate(self, namespace: str, name: str, patch: Mapping[str, Any], resource_version: str) -> Any:
        return self._slow(super().patch_gate, namespace, name, patch, resource_version)

    def get_environment(self, namespace: str, name: str) -> Any:
        return self._slow(super().get_environment, namespace, name)

    def list_environments(self, namespaces: Any = ()) -> Any:
        return self._slow(super().list_environments, namespaces)

    def get_rollout(self, namespace: str, name: str) -> Any:
        return self._slow(super().get_rollout, namespace, name)


class HangingGitHub:
    """An upstream that answers nothing for `hang` seconds, then fails (a GitHub timeout)."""

    def __init__(self, hang: float) -> None:
        self.hang = hang
        self.calls = 0

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)

        def hanging(*args: object, **kwargs: object) -> Any:
            self.calls += 1
            time.sleep(self.hang)
            raise RetryableError("GitHub did not answer")

        return hanging


def create_event(name: str) -> dict[str, Any]:
    env = environment_raw(name, uid=str(uuid.uuid4()))
    return {
        "auditID": str(uuid.uuid4()),
        "stage": "ResponseComplete",
        "verb": "create",
        "objectRef": {"resource": "environments", "apiGroup": "environments.kuberik.com",
                      "namespace": NAMESPACE, "name": name},
        "responseStatus": {"code": 201},
        "responseObject": env,
    }  # fmt: skip


def rollout_event(name: str = "myapp") -> dict[str, Any]:
    return {
        "auditID": str(uuid.uuid4()),
        "stage": "ResponseComplete",
        "verb": "patch",
        "objectRef": {"resource": "rollouts", "subresource": "status", "apiGroup": "kuberik.com",
                      "namespace": NAMESPACE, "name": name},
        "responseStatus": {"code": 200},
    }  # fmt: skip


def event_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "audit.k8s.io/v1", "kind": "EventList", "items": items}


def parsed(items: list[dict[str, Any]]) -> list[AuditEvent]:
    return parse_audit_document(event_list(items))


@pytest.fixture
def world() -> tuple[SlowKube, AuditContext, AuditLanes]:
    kube = SlowKube(delay=0.02)
    return kube, AuditContext(kube, HangingGitHub(hang=DEADLINE), attempts=5), AuditLanes.default()


class Backlog:
    """Threads sending deliveries again and again until stopped; answers counted by kind."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.answers: dict[str, int] = {}
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()

    def add(self, send: Callable[[], object]) -> None:
        def loop() -> None:
            while not self.stop.is_set():
                try:
                    result = send()
                    errors = getattr(result, "errors", [])
                    kind = "refused as busy" if any("busy" in e for e in errors) else "ok"
                except RetryableError as exc:
                    kind = "refused as busy" if "busy" in str(exc) else type(exc).__name__
                with self.lock:
                    self.answers[kind] = self.answers.get(kind, 0) + 1

        thread = threading.Thread(target=loop, daemon=True)
        self.threads.append(thread)
        thread.start()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


@pytest.mark.parametrize("backlog_of", ["batches", "recomputes", "batches and recomputes"])
def test_a_backlog_cannot_delay_a_creates_gate_past_the_deadline(backlog_of: str) -> None:
    # A slower API and a longer deadline than elsewhere in this module: shared by one pool, as before,
    # the backlog's 6,400 writes take 16 workers about 20 s, far past the deadline, while a create that
    # goes first needs one 50 ms write; the margin keeps a loaded CI machine from deciding the outcome.
    deadline = 6.0
    kube = SlowKube(delay=0.05)
    ctx, lanes = AuditContext(kube, HangingGitHub(hang=deadline), attempts=5), AuditLanes.default()
    backlog = Backlog()
    try:
        if "recomputes" in backlog_of:  # Rollout status changes whose recompute waits for a GitHub that hangs
            for _ in range(8):
                backlog.add(lambda: handle_audit_delivery(parsed([rollout_event()]), ctx, lanes, deadline))
        if "batches" in backlog_of:  # 16 deliveries of 400 Environment events each, in flight all the time
            for i in range(16):
                batch = parsed([create_event(f"batch-{i:02d}-{j:03d}") for j in range(400)])
                backlog.add(lambda b=batch: handle_audit_delivery(b, ctx, lanes, deadline))
        time.sleep(1.0)
        took = []
        for n in range(5):
            started = time.monotonic()
            summary = handle_audit_delivery(parsed([create_event(f"prod-{n}")]), ctx, lanes, deadline)
            took.append(time.monotonic() - started)
            assert [g.action for g in summary.gates] == ["create"]
            gate = kube.gates[(NAMESPACE, f"prod-{n}-stagegate")]
            assert gate["spec"]["allowedVersions"] == []
    finally:
        backlog.close()
    times = ", ".join(f"{t * 1000:.0f} ms" for t in took)
    print(f"\ncreate under a backlog of {backlog_of}: {times}; {backlog.answers}")
    assert max(took) < deadline
    # A batch is refused with a 503; a lone Rollout change (blocking mode) with a 200 naming it.
    assert backlog.answers.get("refused as busy", 0) > 0, "no delivery was refused as busy"
    if backlog_of == "recomputes":
        assert ctx.upstream.calls > 0, "the recomputes never reached GitHub"


def test_nothing_queued_runs_after_the_answer(world) -> None:
    kube, ctx, _ = world
    lanes = AuditLanes(
        Lane("gates", workers=2, limit=1024), Lane("recomputes", 1, 8), threading.BoundedSemaphore(1)
    )
    # 400 creates of at least two 20 ms calls each take two workers 8 s or more: far past the 1 s deadline,
    # which still leaves a loaded CI machine time to finish a few (0.3 s once saw none finish there).
    events = parsed([create_event(f"batch-{j:03d}") for j in range(400)])
    started = time.monotonic()
    with pytest.raises(PartialFailure, match=r"not finished within 1s") as failure:
        handle_audit_delivery(events, ctx, lanes, 1.0)
    assert time.monotonic() - started < 2.0
    at_answer = kube.calls
    time.sleep(0.5)
    assert kube.calls - at_answer <= 2, f"{kube.calls - at_answer} calls after the answer (2 were running)"
    summary = failure.value.summary
    assert 0 < summary["acted"] < 400
    assert len(summary["errors"]) == 400 - summary["acted"]
    assert all("not finished within 1s" in e for e in summary["errors"])


def test_a_batch_without_a_free_slot_is_refused_before_any_call_while_a_create_passes(world) -> None:
    kube, ctx, lanes = world
    while lanes.slow.acquire(blocking=False):  # every slot taken by other slow deliveries
        pass
    batch = parsed([create_event("a"), create_event("b")])
    with pytest.raises(RetryableError, match="busy"):
        handle_audit_delivery(batch, ctx, lanes, DEADLINE)
    # One Rollout change (blocking mode's shape): refused too, but answered 200 so that the apiserver does
    # not hold the Rollout write retrying it; the resync recomputes.
    refused = handle_audit_delivery(parsed([rollout_event()]), ctx, lanes, DEADLINE)
    assert any("busy" in error for error in refused.errors), refused.errors
    with pytest.raises(RetryableError, match="busy"), lanes.admission(body_bytes=1024 * 1024):
        pass  # a large body is refused before it is read
    with pytest.raises(RetryableError, match="busy"), lanes.admission(body_bytes=None):
        pass  # and so is one of unknown length
    assert kube.calls == 0
    with lanes.admission(body_bytes=4096) as admission:
        events = parsed([create_event("fresh")])
        summary = handle_audit_delivery(events, ctx, lanes, DEADLINE, admission=admission)
    assert [g.action for g in summary.gates] == ["create"]


def test_rollout_changes_without_github_are_ignored_without_a_slot(world) -> None:
    kube, _, lanes = world
    ctx = AuditContext(kube, None, attempts=5)
    while lanes.slow.acquire(blocking=False):
        pass
    summary = handle_audit_delivery(parsed([rollout_event()]), ctx, lanes, DEADLINE)
    assert summary.ignored == {"rollout change, but no GitHub credentials are configured here": 1}
    assert kube.calls == 0


def test_environment_creates_of_a_batch_go_first(world) -> None:
    kube, _, _ = world
    ctx = AuditContext(kube, None, attempts=5)
    lanes = AuditLanes(
        Lane("gates", workers=1, limit=64), Lane("recomputes", 1, 8), threading.BoundedSemaphore(1)
    )
    order: list[str] = []
    create_gate = kube.create_gate
    list_gates = kube.list_gates

    def record_create(namespace: str, body: Mapping[str, Any]) -> Any:
        order.append(f"create {body['metadata']['name']}")
        return create_gate(namespace, body)

    def record_list(namespace: str) -> Any:
        order.append("list (update)")
        return list_gates(namespace)

    kube.create_gate, kube.list_gates = record_create, record_list  # type: ignore[method-assign]
    update = create_event("prod")
    update["verb"] = "update"
    update["responseObject"] = environment_raw("prod")
    handle_audit_delivery(
        parsed([update, create_event("new-a"), create_event("new-b")]), ctx, lanes, DEADLINE
    )
    assert order[:2] == ["create new-a-stagegate", "create new-b-stagegate"]
    assert order[2] == "list (update)"


# --- AUDIT_MAX_EVENTS ---------------------------------------------------------------------------------


def test_more_events_than_the_limit_are_refused_before_any_is_read() -> None:
    items: list[Any] = [create_event(f"e{i}") for i in range(400)]
    assert len(parse_audit_document(event_list(items), max_events=400)) == 400
    items.append("not even an event")  # never looked at
    with pytest.raises(PayloadTooLarge, match="401 events, more than the 400"):
        parse_audit_document(event_list(items), max_events=400)


@pytest.fixture
def audit_http(tmp_path: Path) -> tuple[Any, InMemoryKube]:
    kube = InMemoryKube()
    env = {**function_env(write_kubeconfig(tmp_path / "kubeconfig")), "AUDIT_MAX_EVENTS": "5"}
    with environment_variables(env):
        app, module = load_function("k8s_audit", "k8s_audit_http")
    module.CONTEXT = AuditContext(kube, None, attempts=5)
    return app.test_client(), kube


def post(client: Any, items: list[dict[str, Any]]) -> Any:
    return client.post(
        "/", data=json.dumps(event_list(items)), headers={"Authorization": f"Bearer {AUDIT_TOKEN}"}
    )


def test_the_webhook_answers_413_beyond_audit_max_events_and_changes_nothing(audit_http) -> None:
    client, kube = audit_http
    before = kube.snapshot()
    response = post(client, [create_event(f"e{i}") for i in range(6)])
    assert response.status_code == 413
    assert "6 events, more than the 5" in response.get_json()["error"]
    assert kube.snapshot() == before
    assert kube.writes == 0
    response = post(client, [create_event(f"e{i}") for i in range(5)])
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["acted"] == 5
