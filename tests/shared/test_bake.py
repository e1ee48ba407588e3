"""Unit and property tests of shared/bake.py: from GitHub deployments to the tags a Rollout may deploy.

The statuses follow the environment controller's table in DESIGN.md ("Bake succeeded", "Bake failed",
"Baking in progress", "Deploying", "Bake cancelled"), plus GitHub's own description-less `inactive`
marks on older deployments. Timestamps are GitHub's ISO 8601 form; `at(n)` is minute `n` of one day.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.bake import (
    DeploymentRecord,
    ReleaseCandidate,
    RevisionResult,
    StatusRecord,
    allowed_revisions,
    allowed_tags,
    bake_result,
    carries_bake_result,
    newest_status_time,
    release_candidates,
    results_by_revision,
)
from shared.errors import BadEvent

PROPERTY_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SHA = "b797408c0ffee0000000000000000000000000aa"


def at(minute: int) -> str:
    return f"2026-05-15T{10 + minute // 60:02d}:{minute % 60:02d}:00Z"


def status(state: str, minute: int, description: str | None = None) -> StatusRecord:
    return StatusRecord(state=state, description=description, created_at=at(minute))


def succeeded(minute: int) -> StatusRecord:
    return status("success", minute, "Bake succeeded")


def failed(minute: int) -> StatusRecord:
    return status("failure", minute, "Bake failed: error rate above 5%")


def github_inactive(minute: int) -> StatusRecord:
    """What GitHub adds by itself to an older deployment of the same environment."""
    return status("inactive", minute)


def deployment(
    id: int, revision: str | None, minute: int, *statuses: StatusRecord, sha: str = SHA
) -> DeploymentRecord:
    """A deployment as the environment controller records it; statuses are given newest first."""
    payload: dict[str, Any] = {
        "id": f"entry-{id}",
        "relationship": {"type": "After"},
        "version": {"tag": "t"},
    }
    if revision is not None:
        payload["version"]["revision"] = revision
    return DeploymentRecord(id=id, sha=sha, payload=payload, created_at=at(minute), statuses=statuses)


def results(*deployments: DeploymentRecord) -> dict[str, RevisionResult]:
    return results_by_revision(deployments)


# DeploymentRecord.revision


def test_revision_is_read_from_the_payload_version() -> None:
    assert deployment(1, "r-payload", 0, sha="abc123").revision == "r-payload"


@pytest.mark.parametrize(
    "payload",
    [
        None,
        {},
        {"version": None},
        {"version": "v1"},
        {"version": {}},
        {"version": {"tag": "v1"}},
        {"version": {"revision": ""}},
        {"version": {"revision": 1234}},
        {"version": {"revision": ["r1"]}},
        {"version": {"revision": None}},
    ],
)
def test_revision_falls_back_to_the_commit_sha_without_a_usable_payload_revision(payload: Any) -> None:
    record = DeploymentRecord(id=1, sha="abc123", payload=payload, created_at=at(0))
    assert record.revision == "abc123"


# carries_bake_result


@pytest.mark.parametrize(
    ("state", "description"),
    [
        ("success", "Bake succeeded"),
        ("success", "Bake succeeded: all checks green"),
        ("failure", "Bake failed"),
        ("failure", "Bake failed: error rate above 5%"),
        ("in_progress", "Baking in progress"),
        ("in_progress", "Deploying"),
        ("pending", "Deploying"),
        ("error", None),
        ("queued", None),
        ("success", None),
        ("SUCCESS", ""),
    ],
)
def test_every_state_other_than_inactive_carries_a_bake_result(state: str, description: str | None) -> None:
    assert carries_bake_result(StatusRecord(state, description, at(0))) is True


@pytest.mark.parametrize("description", [None, ""])
@pytest.mark.parametrize("state", ["inactive", "INACTIVE", "Inactive"])
def test_description_less_inactive_from_github_carries_no_bake_result(
    state: str, description: str | None
) -> None:
    assert carries_bake_result(StatusRecord(state, description, at(0))) is False


@pytest.mark.parametrize("description", ["Bake cancelled", "Bake cancelled: superseded by v2"])
def test_inactive_saying_bake_cancelled_carries_a_bake_result(description: str) -> None:
    assert carries_bake_result(StatusRecord("inactive", description, at(0))) is True


def test_inactive_with_an_unrelated_description_carries_no_bake_result() -> None:
    assert carries_bake_result(StatusRecord("inactive", "Superseded by a newer deployment", at(0))) is False


# bake_result


def test_bake_result_is_the_newest_status_by_creation_time() -> None:
    oldest_first = deployment(1, "r1", 0, status("in_progress", 1, "Deploying"), failed(3), succeeded(2))
    assert bake_result(oldest_first) == "failure"


def test_githubs_inactive_after_a_success_leaves_the_result_success() -> None:
    record = deployment(1, "r1", 0, github_inactive(9), succeeded(5), status("in_progress", 1, "Deploying"))
    assert bake_result(record) == "success"


def test_cancellation_after_a_success_is_the_result() -> None:
    record = deployment(1, "r1", 0, status("inactive", 9, "Bake cancelled"), succeeded(5))
    assert bake_result(record) == "inactive"


@pytest.mark.parametrize(
    "statuses",
    [(), (github_inactive(3),), (github_inactive(4), status("inactive", 2, ""))],
)
def test_bake_result_is_none_when_no_status_carries_one(statuses: tuple[StatusRecord, ...]) -> None:
    assert bake_result(deployment(1, "r1", 0, *statuses)) is None


@pytest.mark.parametrize(("state", "expected"), [("SUCCESS", "success"), ("Failure", "failure")])
def test_bake_result_is_lower_cased(state: str, expected: str) -> None:
    assert bake_result(deployment(1, "r1", 0, status(state, 1, "Bake"))) == expected


def test_upper_case_inactive_from_github_is_skipped_too() -> None:
    assert bake_result(deployment(1, "r1", 0, status("INACTIVE", 9), succeeded(5))) == "success"


# results_by_revision


def test_newest_deployment_with_a_result_decides_for_its_revision() -> None:
    found = results(deployment(1, "r1", 0, succeeded(2)), deployment(2, "r1", 5, failed(7)))
    assert found == {"r1": RevisionResult("r1", "failure", 2)}


def test_newer_success_of_a_revision_replaces_an_older_failure() -> None:
    found = results(deployment(1, "r1", 0, failed(2)), deployment(2, "r1", 5, succeeded(7)))
    assert found["r1"] == RevisionResult("r1", "success", 2)


def test_later_failure_on_the_same_deployment_revokes_its_success() -> None:
    found = results(deployment(1, "r1", 0, failed(9), succeeded(5)))
    assert found["r1"].result == "failure"


def test_later_failed_deployment_of_a_revision_revokes_it() -> None:
    found = results(
        deployment(1, "r1", 0, github_inactive(6), succeeded(5)), deployment(2, "r1", 8, failed(9))
    )
    assert found["r1"].result == "failure"
    assert "r1" not in allowed_revisions("After", found)
    assert "r1" not in allowed_revisions("Parallel", found)


def test_newer_deployment_without_any_status_does_not_hide_an_older_result() -> None:
    found = results(deployment(1, "r1", 0, succeeded(2)), deployment(2, "r1", 5))
    assert found["r1"] == RevisionResult("r1", "success", 1)


def test_newer_deployment_with_only_githubs_inactive_does_not_hide_an_older_result() -> None:
    found = results(deployment(1, "r1", 0, failed(2)), deployment(2, "r1", 5, github_inactive(6)))
    assert found["r1"] == RevisionResult("r1", "failure", 1)


def test_revision_deployed_but_never_baked_has_no_result_yet() -> None:
    found = results(deployment(1, "r1", 0), deployment(2, "r1", 3, github_inactive(4)))
    assert found["r1"].result is None
    assert found["r1"].deployment_id == 2


def test_results_are_kept_apart_per_revision() -> None:
    found = results(
        deployment(1, "r1", 0, succeeded(1)),
        deployment(2, "r2", 2, failed(3)),
        deployment(3, None, 4, succeeded(5), sha="feedbeef"),
    )
    assert {r: res.result for r, res in found.items()} == {
        "r1": "success",
        "r2": "failure",
        "feedbeef": "success",
    }


def test_deployments_created_in_the_same_second_are_ordered_by_id() -> None:
    forward = results(deployment(7, "r1", 0, succeeded(1)), deployment(8, "r1", 0, failed(1)))
    backward = results(deployment(8, "r1", 0, failed(1)), deployment(7, "r1", 0, succeeded(1)))
    assert forward == backward == {"r1": RevisionResult("r1", "failure", 8)}


def test_no_deployments_mean_no_results() -> None:
    assert results_by_revision([]) == {}


# allowed_revisions


RESULTS_OF_EVERY_KIND = {
    "ok": RevisionResult("ok", "success", 1),
    "bad": RevisionResult("bad", "failure", 2),
    "broken": RevisionResult("broken", "error", 3),
    "baking": RevisionResult("baking", "in_progress", 4),
    "queued": RevisionResult("queued", "pending", 5),
    "cancelled": RevisionResult("cancelled", "inactive", 6),
    "unbaked": RevisionResult("unbaked", None, 7),
}


def test_after_allows_only_revisions_baked_successfully() -> None:
    assert allowed_revisions("After", RESULTS_OF_EVERY_KIND) == {"ok"}


def test_parallel_allows_every_deployed_revision_that_did_not_fail() -> None:
    allowed = allowed_revisions("Parallel", RESULTS_OF_EVERY_KIND)
    assert allowed == {"ok", "baking", "queued", "cancelled", "unbaked"}
    assert allowed.isdisjoint({"bad", "broken"})


@pytest.mark.parametrize("kind", ["After", "Parallel"])
def test_nothing_is_allowed_without_upstream_results(kind: Any) -> None:
    assert allowed_revisions(kind, {}) == frozenset()


# release_candidates


def test_release_candidates_are_read_with_their_revisions() -> None:
    rollout = {
        "status": {
            "releaseCandidates": [
                {
                    "tag": "main-1779290372-b797408",
                    "revision": "b797408",
                    "digest": "sha256:00ff",
                    "version": "1.2.3",
                    "created": "2026-05-15T10:00:00Z",
                },
                {"tag": "v1"},
                {"tag": "v2", "revision": ""},
                {"tag": "v3", "revision": 42},
            ]
        }
    }
    assert release_candidates(rollout) == (
        ReleaseCandidate("main-1779290372-b797408", "b797408"),
        ReleaseCandidate("v1", None),
        ReleaseCandidate("v2", None),
        ReleaseCandidate("v3", None),
    )


@pytest.mark.parametrize(
    "rollout",
    [
        {},
        {"status": None},
        {"status": {}},
        {"status": {"releaseCandidates": None}},
        {"status": {"releaseCandidates": []}},
    ],
)
def test_rollout_without_candidates_has_none(rollout: Mapping[str, Any]) -> None:
    assert release_candidates(rollout) == ()


@pytest.mark.parametrize(
    "candidate", [{"revision": "r2"}, {"tag": ""}, {"tag": None}, {"tag": 7}, "v2", None, ["v2"]]
)
def test_candidate_without_a_tag_is_rejected_naming_its_index(candidate: object) -> None:
    rollout = {"status": {"releaseCandidates": [{"tag": "v1", "revision": "r1"}, candidate]}}
    with pytest.raises(BadEvent, match=re.escape("status.releaseCandidates[1].tag")):
        release_candidates(rollout)


@pytest.mark.parametrize("status_value", ["Ready", ["x"], 3])
def test_rollout_status_that_is_not_an_object_is_rejected(status_value: object) -> None:
    with pytest.raises(BadEvent, match="status must be an object"):
        release_candidates({"status": status_value})


@pytest.mark.parametrize("raw", [{"tag": "v1"}, "v1", 5])
def test_release_candidates_that_are_not_a_list_are_rejected(raw: object) -> None:
    with pytest.raises(BadEvent, match=re.escape("releaseCandidates must be a list")):
        release_candidates({"status": {"releaseCandidates": raw}})


# allowed_tags


def test_allowed_tags_are_sorted_and_without_duplicates() -> None:
    candidates = [ReleaseCandidate("v2", "r1"), ReleaseCandidate("v1", "r1"), ReleaseCandidate("v2", "r1")]
    found = allowed_tags("After", "staging", candidates, results(deployment(1, "r1", 0, succeeded(1))))
    assert found.tags == ("v1", "v2")


def test_candidate_without_revision_is_blocked_saying_so() -> None:
    found = allowed_tags("Parallel", "staging", [ReleaseCandidate("v1", None)], {})
    assert found.tags == ()
    assert found.reasons["v1"].startswith("blocked")
    assert "no revision" in found.reasons["v1"]


def test_candidate_without_revision_is_blocked_even_when_its_sha_baked() -> None:
    upstream = results(deployment(1, None, 0, succeeded(1), sha="abc123"))
    found = allowed_tags("After", "staging", [ReleaseCandidate("v1", None)], upstream)
    assert found.tags == ()


@pytest.mark.parametrize(
    ("kind", "words"), [("After", "baked successfully in staging"), ("Parallel", "deployed in staging")]
)
def test_reason_for_an_allowed_tag_names_revision_and_upstream(kind: Any, words: str) -> None:
    found = allowed_tags(
        kind, "staging", [ReleaseCandidate("v1", "r1")], results(deployment(1, "r1", 0, succeeded(1)))
    )
    assert found.tags == ("v1",)
    assert found.reasons["v1"].startswith("allowed")
    assert "r1" in found.reasons["v1"]
    assert words in found.reasons["v1"]


@pytest.mark.parametrize(
    ("upstream", "state"),
    [
        ((deployment(1, "r1", 0, failed(1)),), "bake result failure"),
        (
            (deployment(1, "r1", 0, status("in_progress", 1, "Baking in progress")),),
            "bake result in_progress",
        ),
        ((deployment(1, "r1", 0),), "bake result none yet"),
        ((deployment(1, "other", 0, succeeded(1)),), "no deployment"),
    ],
)
def test_reason_for_a_blocked_tag_names_revision_upstream_and_state(
    upstream: tuple[DeploymentRecord, ...], state: str
) -> None:
    found = allowed_tags("After", "staging", [ReleaseCandidate("v1", "r1")], results(*upstream))
    assert found.tags == ()
    reason = found.reasons["v1"]
    assert reason.startswith("blocked")
    assert "r1" in reason
    assert "staging" in reason
    assert state in reason


def test_every_candidate_gets_a_reason() -> None:
    candidates = [ReleaseCandidate("v1", "r1"), ReleaseCandidate("v2", "r2"), ReleaseCandidate("v3", None)]
    found = allowed_tags("After", "staging", candidates, results(deployment(1, "r1", 0, succeeded(1))))
    assert set(found.reasons) == {"v1", "v2", "v3"}
    assert found.tags == ("v1",)


# newest_status_time


def test_newest_status_time_is_the_latest_status_of_any_deployment() -> None:
    upstream = [
        deployment(1, "r1", 0, github_inactive(40), succeeded(5)),
        deployment(2, "r2", 50, status("in_progress", 51, "Deploying")),
        deployment(3, "r3", 59),
    ]
    assert newest_status_time(upstream) == at(51)


def test_newest_status_time_counts_statuses_that_carry_no_result() -> None:
    assert newest_status_time([deployment(1, "r1", 0, github_inactive(30), succeeded(5))]) == at(30)


@pytest.mark.parametrize("upstream", [[], [deployment(1, "r1", 0)]])
def test_newest_status_time_is_empty_without_statuses(upstream: list[DeploymentRecord]) -> None:
    assert newest_status_time(upstream) == ""


# Properties: Invariant 3 (safety) and Invariant 4 (recompute, don't accumulate)

REVISIONS = ("r1", "r2", "r3")
STATES = ("success", "failure", "error", "in_progress", "pending", "queued", "inactive", "SUCCESS", "Failure")
DESCRIPTIONS = (
    None,
    "",
    "Bake succeeded",
    "Bake failed: x",
    "Baking in progress",
    "Deploying",
    "Bake cancelled",
)
minutes = st.integers(min_value=0, max_value=30)

statuses_st = st.builds(StatusRecord, st.sampled_from(STATES), st.sampled_from(DESCRIPTIONS), minutes.map(at))
payloads_st = st.one_of(
    st.none(),
    st.sampled_from(REVISIONS).map(lambda r: {"version": {"tag": "t", "revision": r}}),
    st.sampled_from([{}, {"version": {"revision": ""}}, {"version": {"revision": 5}}, {"version": "v"}]),
)


@st.composite
def upstream_deployments(draw: st.DrawFn) -> list[DeploymentRecord]:
    """Deployments with distinct ids; statuses listed newest first, the way GitHub lists them."""
    count = draw(st.integers(min_value=0, max_value=7))
    ids = draw(
        st.lists(st.integers(min_value=1, max_value=10_000), min_size=count, max_size=count, unique=True)
    )
    return [
        DeploymentRecord(
            id=deployment_id,
            sha=draw(st.sampled_from(REVISIONS)),
            payload=draw(payloads_st),
            created_at=at(draw(minutes)),
            statuses=tuple(
                sorted(draw(st.lists(statuses_st, max_size=4)), key=lambda s: s.created_at, reverse=True)
            ),
        )
        for deployment_id in ids
    ]


candidates_st = st.lists(
    st.builds(
        ReleaseCandidate, st.sampled_from(["v1", "v2", "v3", "v4"]), st.sampled_from((*REVISIONS, None))
    ),
    max_size=6,
)
kinds = st.sampled_from(["After", "Parallel"])


def _carries(s: StatusRecord) -> bool:
    return not (s.state.lower() == "inactive" and not (s.description or "").startswith("Bake cancelled"))


def deciding_result(revision: str, upstream: Sequence[DeploymentRecord]) -> str | None:
    """Independent restatement: the newest result-carrying status of the newest deployment of
    `revision` that has one (deployments ordered by creation, then id; ties between statuses go to
    the one GitHub lists first). None when no deployment of the revision has one."""
    best: tuple[tuple[str, int], str] | None = None
    for record in upstream:
        if record.revision != revision:
            continue
        carrying = [s for s in record.statuses if _carries(s)]
        if not carrying:
            continue
        newest = max(carrying, key=lambda s: s.created_at)
        key = (record.created_at, record.id)
        if best is None or key > best[0]:
            best = (key, newest.state.lower())
    return None if best is None else best[1]


@PROPERTY_SETTINGS
@given(upstream=upstream_deployments(), candidates=candidates_st)
def test_after_allows_only_tags_whose_revision_baked_successfully_upstream(
    upstream: list[DeploymentRecord], candidates: list[ReleaseCandidate]
) -> None:
    found = allowed_tags("After", "staging", candidates, results_by_revision(upstream))
    justified = {
        c.tag
        for c in candidates
        if c.revision is not None and deciding_result(c.revision, upstream) == "success"
    }
    assert set(found.tags) <= {c.tag for c in candidates}
    assert set(found.tags) <= justified
    assert set(found.tags) == justified
    assert list(found.tags) == sorted(set(found.tags))


@PROPERTY_SETTINGS
@given(upstream=upstream_deployments(), candidates=candidates_st)
def test_parallel_allows_only_tags_whose_revision_was_deployed_upstream_without_failing(
    upstream: list[DeploymentRecord], candidates: list[ReleaseCandidate]
) -> None:
    found = allowed_tags("Parallel", "staging", candidates, results_by_revision(upstream))
    deployed = {d.revision for d in upstream}
    for tag in found.tags:
        assert any(
            c.tag == tag
            and c.revision in deployed
            and deciding_result(c.revision, upstream) not in {"failure", "error"}
            for c in candidates
        ), tag


@PROPERTY_SETTINGS
@given(
    kind=kinds,
    upstream=upstream_deployments(),
    candidates=candidates_st,
    data=st.data(),
)
def test_outcome_does_not_depend_on_order_or_duplicates_of_deployments(
    kind: Any, upstream: list[DeploymentRecord], candidates: list[ReleaseCandidate], data: st.DataObject
) -> None:
    duplicates = data.draw(st.lists(st.sampled_from(upstream), max_size=5)) if upstream else []
    reordered = data.draw(st.permutations([*upstream, *duplicates]))
    assert results_by_revision(reordered) == results_by_revision(upstream)
    assert allowed_tags(kind, "staging", candidates, results_by_revision(reordered)) == allowed_tags(
        kind, "staging", candidates, results_by_revision(upstream)
    )
    assert newest_status_time(reordered) == newest_status_time(upstream)


@PROPERTY_SETTINGS
@given(
    kind=kinds, upstream=upstream_deployments(), candidates=candidates_st, revision=st.sampled_from(REVISIONS)
)
def test_newer_failed_deployment_removes_its_revision_whatever_came_before(
    kind: Any, upstream: list[DeploymentRecord], candidates: list[ReleaseCandidate], revision: str
) -> None:
    newest = max((d.id for d in upstream), default=0) + 1
    failing = deployment(newest, revision, 31, failed(32), status("in_progress", 31, "Baking in progress"))
    found = results_by_revision([*upstream, failing])
    assert revision not in allowed_revisions(kind, found)
    for tag in allowed_tags(kind, "staging", candidates, found).tags:
        assert any(c.tag == tag and c.revision not in (None, revision) for c in candidates), tag
