"""The follower's pure part: which watch events are changes, and the resume point it keeps."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shared.errors import BadEvent
from shared.follow import (
    RESUME_ANNOTATION,
    Change,
    Expired,
    Seen,
    WatchEvent,
    needing_gate_work,
    parse_event,
    read_resume,
    resume_annotation,
    stream_key,
)
from shared.gate import plan_gates
from shared.views import Environment, RolloutGate


def rollout(history: list[dict[str, Any]] | None = None, version: str = "10") -> dict[str, Any]:
    return {
        "apiVersion": "kuberik.com/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "myapp", "namespace": "team", "uid": "u1", "resourceVersion": version},
        "spec": {"releasesImagePolicy": {"name": "p"}},
        "status": {"history": history or []},
    }


def environment(relationship: str | None = "staging", version: str = "10") -> dict[str, Any]:
    spec: dict[str, Any] = {"name": "myapp", "environment": "prod", "rolloutRef": {"name": "myapp"}}
    if relationship:
        spec["relationship"] = {"type": "After", "environment": relationship}
    return {
        "metadata": {"name": "prod", "namespace": "team", "uid": "u2", "resourceVersion": version},
        "spec": spec,
        "status": {},
    }


def event(obj: dict[str, Any], kind: str = "MODIFIED") -> WatchEvent:
    return WatchEvent(kind, obj, obj["metadata"]["resourceVersion"])


def test_watch_lines_parse_into_changes_bookmarks_and_expiry() -> None:
    parsed = parse_event({"type": "ADDED", "object": rollout()})
    assert isinstance(parsed, WatchEvent)
    assert (parsed.type, parsed.resource_version) == ("ADDED", "10")
    bookmark = parse_event(
        {"type": "BOOKMARK", "object": {"kind": "Rollout", "metadata": {"resourceVersion": "12"}}}
    )
    assert isinstance(bookmark, WatchEvent)
    assert bookmark.resource_version == "12"
    # What the kube-apiserver sends for a version older than it keeps (measured: 1.20, "too old resource
    # version: 1 (198)"): an ERROR event with a Status of code 410, not an HTTP 410.
    expired = parse_event(
        {
            "type": "ERROR",
            "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"},
        }
    )
    assert expired == Expired("too old")


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        {"type": "ADDED"},
        {"type": "ADDED", "object": "x"},
        {"type": "ADDED", "object": {"metadata": {}}},
        {"type": "ADDED", "object": {"metadata": {"resourceVersion": ""}}},
        {"type": "SOMETHING", "object": {"metadata": {"resourceVersion": "1"}}},
        {"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "etcd"}},
    ],
)
def test_anything_else_is_a_bad_event(raw: Any) -> None:
    with pytest.raises(BadEvent):
        parse_event(raw)


def test_a_rollout_is_a_change_when_its_status_changes_and_only_then() -> None:
    seen = Seen("rollout")
    first = rollout([{"id": 1}])
    assert seen.changed(event(first, "ADDED")) == Change("rollout", "team", "myapp")
    same_status = copy.deepcopy(first)
    same_status["metadata"].update(resourceVersion="11", managedFields=[{"manager": "x"}])
    same_status["spec"] = {"releasesImagePolicy": {"name": "other"}}
    assert seen.changed(event(same_status)) is None
    baked = rollout([{"id": 1, "bakeStatus": "Succeeded"}], version="12")
    assert seen.changed(event(baked)) == Change("rollout", "team", "myapp")
    assert seen.changed(event(baked)) is None  # the same again (a relist, a second watch) is no change


def test_an_environment_is_a_change_for_spec_labels_annotations_or_a_new_incarnation() -> None:
    seen = Seen("environment")
    env = environment()
    assert seen.changed(event(env, "ADDED")) is not None
    status_only = copy.deepcopy(env)
    status_only["status"] = {"currentVersion": "main-1"}  # what stagegate itself writes
    status_only["metadata"]["resourceVersion"] = "11"
    assert seen.changed(event(status_only)) is None
    applied = copy.deepcopy(status_only)
    applied["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
    assert seen.changed(event(applied)) is None
    for change in (
        lambda e: e["spec"].pop("relationship"),
        lambda e: e["metadata"].update(labels={"team": "a"}),
        lambda e: e["metadata"].update(annotations={"stagegate.kuberik.com/x": "y"}),
        lambda e: e["metadata"].update(uid="u3"),
    ):
        changed = copy.deepcopy(env)
        change(changed)
        assert seen.changed(event(changed)) == Change("environment", "team", "prod")
        assert seen.changed(event(env)) is not None  # and back


def test_a_deletion_is_no_change_and_is_forgotten() -> None:
    seen = Seen("environment")
    env = environment()
    seen.changed(event(env, "ADDED"))
    assert seen.changed(event(env, "DELETED")) is None
    assert len(seen) == 0
    assert seen.changed(event(env, "ADDED")) is not None  # created again: a change


def test_a_relist_makes_every_object_listed_a_change_and_forgets_the_rest() -> None:
    seen = Seen("rollout")
    other = rollout()
    other["metadata"]["name"] = "gone"
    seen.changed(event(other, "ADDED"))
    seen.changed(event(rollout(), "ADDED"))
    assert seen.relisted([rollout()]) == [Change("rollout", "team", "myapp")]
    assert len(seen) == 1
    assert seen.relisted([{"metadata": {}}]) == []  # nameless: nothing to look at


def test_the_resume_point_round_trips_and_anything_unreadable_means_list_again() -> None:
    points = {stream_key("rollouts", None): "120", stream_key("environments", "team"): "99"}
    assert points == {"rollouts": "120", "environments/team": "99"}
    assert read_resume(resume_annotation(points)) == points
    assert read_resume(None) == {}
    for raw in ("not json", "[1]", '{"rollouts": 5, "environments": ""}', 7):
        assert read_resume({RESUME_ANNOTATION: raw}) == {}


def test_a_relist_keeps_only_the_environments_whose_gates_need_work() -> None:
    def stored_gate(raw_env: dict[str, Any]) -> RolloutGate:
        [plan] = plan_gates(Environment.from_raw(raw_env), [])
        assert plan.body is not None
        meta = {**plan.body["metadata"], "namespace": "team", "resourceVersion": "5", "uid": "g"}
        return RolloutGate.from_raw({**plan.body, "metadata": meta})

    fine, missing, moved = environment(), environment(), environment()
    for raw, name, uid in (
        (fine, "fine", "u-fine"),
        (missing, "missing", "u-missing"),
        (moved, "moved", "u-moved"),
    ):
        raw["metadata"].update(name=name, uid=uid)
    gates = [stored_gate(fine), stored_gate(moved)]
    moved["spec"]["relationship"]["environment"] = "qa"  # changed while the watch was away
    seen = Seen("environment")
    changes = seen.relisted([fine, missing, moved, {"metadata": {"namespace": "team", "name": "bad"}}])
    assert [c.name for c in changes] == ["fine", "missing", "moved", "bad"]
    kept = needing_gate_work(
        changes, [fine, missing, moved, {"metadata": {"namespace": "team", "name": "bad"}}], gates
    )
    assert [c.name for c in kept] == ["missing", "moved", "bad"]  # "bad" cannot be read: left to the handler
