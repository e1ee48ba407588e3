"""The reporter's pure core: the Go controller's payload bytes, the bake-state table, and which writes a
history needs given what GitHub holds (adoption, duplicates, GitHub's own inactive marks, ties)."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

import pytest

from shared import payload
from shared.bake import CommitLookup, DeploymentRecord, StatusRecord
from shared.report import (
    MAX_DESCRIPTION,
    NewDeployment,
    NewStatus,
    bake_status,
    history,
    plan_report,
    revisions,
)
from shared.views import Relationship
from tests.shared.builders import environment

REV = {n: f"{n:x}" * 40 for n in range(1, 10)}
TASK = "deploy:kuberik/myapp"


def entry(n: int, bake: str | None = "Succeeded", **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"id": n, "version": {"tag": f"main-{n}", "revision": REV[n]}, "message": f"m{n}"}
    if bake is not None:
        item["bakeStatus"] = bake
    return {**item, **extra}


def rollout(*entries: dict[str, Any]) -> dict[str, Any]:
    """Newest entry first, as the rollout controller keeps `status.history`."""
    return {"status": {"history": list(entries)}}


def deployed(
    n: int, *statuses: tuple[str, str, str], dep_id: int | None = None, **kw: Any
) -> DeploymentRecord:
    return DeploymentRecord(
        id=dep_id or 100 + n,
        sha=REV[n],
        payload=kw.get("doc", {"id": str(n), "version": {"tag": f"main-{n}", "revision": REV[n]}}),
        created_at=kw.get("at", "2026-11-26T10:00:00Z"),
        statuses=tuple(StatusRecord(s, d, t) for s, d, t in statuses),
        task=kw.get("task", TASK),
    )


def lookups(*records: DeploymentRecord, known: tuple[int, ...] = (1, 2, 3)) -> dict[str, CommitLookup]:
    out = {REV[n]: CommitLookup(REV[n], REV[n]) for n in known}
    for record in records:
        current = out[record.sha]
        out[record.sha] = CommitLookup(current.revision, current.oid, (*current.deployments, record))
    return out


# --- the payload --------------------------------------------------------------------------------------


def test_the_payload_is_byte_for_byte_what_go_marshals() -> None:
    version = {
        "created": "2026-11-26T10:00:00Z",
        "revision": "abc1234",
        "tag": "v<1>&2",
        "digest": "sha256:d",
    }
    doc = payload.payload_document(7, Relationship("After", "staging"), version)
    assert doc == (
        '{"id":"7","relationship":{"environment":"staging","type":"After"},'
        '"version":{"tag":"v\\u003c1\\u003e\\u00262","digest":"sha256:d","revision":"abc1234",'
        '"created":"2026-11-26T10:00:00Z"}}'
    )
    assert base64.b64decode(payload.encode(7, Relationship("After", "staging"), version)).decode() == doc


def test_a_payload_without_relationship_or_optional_fields_omits_them_as_omitempty_does() -> None:
    assert payload.payload_document(1, None, {"tag": "t", "version": "", "digest": None}) == (
        '{"id":"1","version":{"tag":"t"}}'
    )


@pytest.mark.parametrize(
    "stored",
    [
        {"id": "3", "version": {"tag": "t"}},
        json.dumps({"id": "3", "version": {"tag": "t"}}),
        base64.b64encode(b'{"id":"3","version":{"tag":"t"}}').decode(),
        json.dumps(base64.b64encode(b'{"id":"3","version":{"tag":"t"}}').decode()),
    ],
    ids=["object", "json-text", "base64 (Go)", "json-quoted base64"],
)
def test_every_form_github_returns_a_payload_in_is_read(stored: object) -> None:
    assert payload.entry_id(payload.decode(stored)) == "3"


@pytest.mark.parametrize("stored", [None, "", "not base64 !", base64.b64encode(b"[1]").decode(), 5, "[]"])
def test_a_payload_that_holds_no_object_is_none(stored: object) -> None:
    assert payload.decode(stored) is None


# --- the bake-state table -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bake", "expected"),
    [
        ("Succeeded", ("success", "Bake succeeded")),
        ("Failed", ("failure", "Bake failed")),
        ("InProgress", ("in_progress", "Baking in progress")),
        ("Deploying", ("in_progress", "Deploying")),
        ("Cancelled", ("inactive", "Bake cancelled")),
        (None, ("pending", "Deploying")),
        ("Unknown", ("pending", "Deploying")),
    ],
)
def test_bake_states_map_as_in_the_go_controller(bake: str | None, expected: tuple[str, str]) -> None:
    assert bake_status(bake, None) == expected
    assert bake_status(bake, "")[1] == expected[1]
    assert bake_status(bake, "msg") == (expected[0], f"{expected[1]}: msg")


def test_a_long_message_is_cut_to_140_characters() -> None:
    _, description = bake_status("Failed", "x" * 500)
    assert len(description) == MAX_DESCRIPTION
    assert description.startswith("Bake failed: xxx")


# --- which writes a history needs ---------------------------------------------------------------------


def test_history_is_walked_oldest_first_and_incomplete_entries_are_skipped() -> None:
    entries, skipped = history(
        rollout(
            entry(3),
            {"id": 9, "version": {"tag": "x"}},
            {"version": {"tag": "y", "revision": REV[4]}},
            entry(2, version={"tag": "b", "revision": "refs/heads/main"}),
            "garbage",  # type: ignore[arg-type]
            entry(1),
        )
    )
    assert [e.id for e in entries] == [1, 3]
    assert len(skipped) == 4
    assert revisions(rollout(entry(2), entry(1), entry(2))) == sorted({REV[1], REV[2]})


def test_a_fresh_history_creates_each_deployment_then_its_status_oldest_first() -> None:
    env = environment("staging", relationship=None)
    plan = plan_report(env, rollout(entry(2, "InProgress"), entry(1)), lookups())
    assert plan is not None
    kinds = [(type(w).__name__, w.entry.id) for w in plan.writes]
    assert kinds == [("NewDeployment", 1), ("NewStatus", 1), ("NewDeployment", 2), ("NewStatus", 2)]
    body = plan.writes[0].body
    assert body["ref"] == REV[1]
    assert body["task"] == TASK
    assert body["environment"] == "kuberik/myapp/production"
    assert body["production_environment"] is True
    assert body["auto_merge"] is False
    assert body["required_contexts"] == []
    assert body["description"] == "m1"
    assert payload.decode(body["payload"]) == {"id": "1", "version": {"tag": "main-1", "revision": REV[1]}}
    assert plan.writes[3].body == {
        "state": "in_progress",
        "description": "Baking in progress",
        "environment": "kuberik/myapp/production",
    }


def test_a_recorded_entry_gets_a_status_only_when_its_newest_bake_result_differs() -> None:
    env = environment("staging", relationship=None)
    done = deployed(
        1,
        ("pending", "Deploying", "10:00"),
        ("success", "Bake succeeded", "10:05"),
        ("inactive", "", "10:09"),
    )
    moving = deployed(
        2, ("success", "Bake succeeded", "10:00"), ("in_progress", "Baking in progress", "10:07")
    )
    plan = plan_report(env, rollout(entry(2), entry(1)), lookups(done, moving))
    assert plan is not None
    assert plan.recorded == 2
    assert [(type(w), w.entry.id, getattr(w, "deployment_id", None)) for w in plan.writes] == [
        (NewStatus, 2, moving.id)
    ]
    assert plan.writes[0].replaces == "in_progress: Baking in progress"  # type: ignore[union-attr]


def test_a_tie_of_different_statuses_is_written_again_and_duplicates_all_get_the_status() -> None:
    env = environment("staging", relationship=None)
    tied = deployed(1, ("success", "Bake succeeded", "10:00"), ("failure", "Bake failed", "10:00"))
    twin = deployed(1, ("success", "Bake succeeded", "10:00"), dep_id=555, at="2026-11-26T10:00:01Z")
    plan = plan_report(env, rollout(entry(1)), lookups(tied, twin))
    assert plan is not None
    assert [w.deployment_id for w in plan.writes if isinstance(w, NewStatus)] == [tied.id]
    plan = plan_report(env, rollout(entry(1, "Failed")), lookups(tied, twin))
    assert plan is not None
    assert sorted(w.deployment_id or 0 for w in plan.writes) == sorted([tied.id, 555])


@pytest.mark.parametrize(
    "other",
    [
        {"task": "deploy:kuberik/other"},
        {"doc": {"id": "99", "version": {"tag": "t", "revision": REV[1]}}},
        {"doc": {"id": "1", "version": {"tag": "t", "revision": REV[2]}}},  # claims another commit
    ],
    ids=["other task", "other entry id", "other revision in payload"],
)
def test_a_deployment_of_another_entry_or_task_is_not_adopted(other: dict[str, Any]) -> None:
    env = environment("staging", relationship=None)
    plan = plan_report(
        env, rollout(entry(1)), lookups(deployed(1, ("success", "Bake succeeded", "10:00"), **other))
    )
    assert plan is not None
    assert [type(w) for w in plan.writes] == [NewDeployment, NewStatus]


def test_an_unknown_commit_is_skipped_and_an_environment_without_project_plans_nothing() -> None:
    env = environment("staging", relationship=None)
    plan = plan_report(
        env, rollout(entry(2), entry(1)), lookups(known=(1,)) | {REV[2]: CommitLookup(REV[2], None)}
    )
    assert plan is not None
    assert {w.entry.id for w in plan.writes} == {1}
    assert [s.reason for s in plan.skipped] == [f"GitHub knows no commit {REV[2]}"]
    raw = environment("staging", relationship=None).raw
    no_project = type(env).from_raw({**raw, "spec": {**raw["spec"], "backend": {"type": "github"}}})
    assert plan_report(no_project, rollout(entry(1)), lookups()) is None


def test_the_payload_carries_the_environments_relationship() -> None:
    plan = plan_report(environment("prod"), rollout(entry(1)), lookups())
    assert plan is not None
    doc = payload.decode(plan.writes[0].body["payload"])
    assert doc is not None
    assert doc["relationship"] == {"environment": "staging", "type": "After"}


def test_statuses_carry_the_configured_environment_url_with_its_fields_quoted() -> None:
    env = environment("prod")
    template = "https://dash.example/rollouts/{namespace}/{name}?env={environment}&r={rollout}"
    plan = plan_report(env, rollout(entry(1)), lookups(), template)
    assert plan is not None
    [status] = [w for w in plan.writes if isinstance(w, NewStatus)]
    expected = (
        f"https://dash.example/rollouts/{env.namespace}/{env.name}?env={env.environment}&r={env.rollout_name}"
    )
    assert status.body["environment_url"] == expected
    plain = plan_report(env, rollout(entry(1)), lookups())
    assert plain is not None
    assert all("environment_url" not in w.body for w in plain.writes if isinstance(w, NewStatus))


@pytest.mark.parametrize(
    ("bake", "field"),
    [("Succeeded", "bakeEndTime"), ("Failed", "bakeEndTime"), ("Cancelled", "bakeEndTime"),
     ("InProgress", "bakeStartTime"), ("Deploying", "timestamp"), (None, "timestamp")],
)  # fmt: skip
def test_an_entry_says_when_its_bake_state_was_set_for_the_lag_metric(bake: str | None, field: str) -> None:
    times = {"timestamp": "2026-12-08T10:00:00Z", "bakeStartTime": "2026-12-08T10:01:00Z",
             "bakeEndTime": "2026-12-08T10:11:00Z"}  # fmt: skip
    item: dict[str, object] = {"id": 1, "version": {"tag": "main-1", "revision": REV[1]}, **times}
    if bake is not None:
        item["bakeStatus"] = bake
    [entry], _ = history({"status": {"history": [item]}})
    assert entry.since == datetime.fromisoformat(times[field]).timestamp()


def test_an_entry_without_a_readable_time_has_no_lag() -> None:
    item = {"id": 1, "version": {"revision": REV[1]}, "bakeStatus": "Succeeded", "bakeEndTime": "yesterday"}
    [entry], _ = history({"status": {"history": [item]}})
    assert entry.since is None
