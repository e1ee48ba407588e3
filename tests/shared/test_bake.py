"""Unit and property tests of shared/bake.py: from GitHub's answer per candidate revision to the tags a
Rollout may deploy.

The statuses follow the environment controller's table in DESIGN.md ("Bake succeeded", "Bake failed",
"Baking in progress", "Deploying", "Bake cancelled"), plus GitHub's own description-less `inactive`
marks on older deployments. `at(s)` is GitHub's `createdAt` `s` seconds into one morning, so two
statuses with the same `s` were created within the same second (GitHub gives statuses no id to order
them by). The candidate `main-1779290372-b797408` has revision `b797408`, an abbreviation of `OID`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.bake import (
    AMBIGUOUS,
    CommitLookup,
    DeploymentRecord,
    ReleaseCandidate,
    RevisionResult,
    StatusRecord,
    allowed_tags,
    bake_states,
    candidate_revisions,
    carries_bake_result,
    counts_for,
    is_justified,
    lookup_kind,
    release_candidates,
    results_for,
    revision_result,
)
from shared.errors import BadEvent
from tests.shared.builders import (
    OID,
    OTHER_OID,
    at,
    baking,
    deployment,
    failed,
    github_inactive,
    lookup,
    status,
    succeeded,
)

PROPERTY_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

R1 = OID[:7]
R2 = OTHER_OID[:7]
TAG = "main-1779290372-b797408"


def result_of(*deployments: DeploymentRecord, revision: str = R1, oid: str | None = OID) -> RevisionResult:
    return revision_result(lookup(revision, *deployments, oid=oid))


def tags_allowed(
    kind: Any, *lookups: CommitLookup, candidates: Sequence[ReleaseCandidate] = ()
) -> tuple[str, ...]:
    """The tags allowed for `candidates` (default: `TAG` at revision `R1`) given GitHub's answer."""
    return allowed_tags(kind, "staging", candidates or [ReleaseCandidate(TAG, R1)], results_for(lookups)).tags


# lookup_kind: which revisions name a commit at all


@pytest.mark.parametrize("revision", [OID, OID.upper(), OTHER_OID])
def test_forty_hex_digits_are_looked_up_as_a_full_commit_id(revision: str) -> None:
    assert lookup_kind(revision) == "oid"


@pytest.mark.parametrize(
    "revision", [OID[:7], OID[:8], OID[:12], OID[:39], OID[:7].upper(), "B797408C0", "Deadbee"]
)
def test_seven_to_thirty_nine_hex_digits_in_any_case_are_an_abbreviation(revision: str) -> None:
    assert lookup_kind(revision) == "abbreviation"


@pytest.mark.parametrize(
    "revision",
    [
        "",
        "b79740",  # six digits: too short to name one commit
        "b7",
        OID + "0",  # 41 digits
        "main",
        "release-1.2",
        "v1.2.3",
        f"main@sha1:{OID}",
        f"main@sha1:{OID[:7]}",
        "refs/heads/main",
        "HEAD~1",
        "g797408",  # not hex
        f" {OID[:7]}",
        pytest.param(f"{OID[:7]}\n", id="abbreviation-newline"),
        pytest.param(f"{OID[:39]}\n", id="39-digits-newline"),
        "b797408-dirty",
    ],
)
def test_anything_else_is_not_looked_up_because_it_names_no_fixed_commit(revision: str) -> None:
    assert lookup_kind(revision) is None


def test_revision_with_a_trailing_newline_stays_blocked_even_if_github_resolves_it() -> None:
    # Whatever `lookup_kind` says of it, no deployment counts for a revision the commit id does not
    # start with, so the candidate is never allowed.
    revision = f"{OID[:7]}\n"
    answer = lookup(revision, deployment(1, 0, succeeded(1)))
    for kind in ("After", "Parallel"):
        assert tags_allowed(kind, answer, candidates=[ReleaseCandidate(TAG, revision)]) == ()


# DeploymentRecord.payload_revision


def test_payload_revision_is_read_from_the_payload_version() -> None:
    assert deployment(1, 0, revision=OID[:7]).payload_revision == OID[:7]


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
        ["version"],
    ],
)
def test_payload_without_a_usable_revision_has_none(payload: Any) -> None:
    record = DeploymentRecord(id=1, sha=OID, payload=payload, created_at=at(0))
    assert record.payload_revision is None


# counts_for: whether a deployment is evidence for the revision


@pytest.mark.parametrize(
    "claimed",
    [None, OID, OID.upper(), OID[:7], OID[:7].upper(), OID[:20]],
    ids=["none", "full", "full-upper", "7", "7-upper", "20"],
)
def test_deployment_of_the_commit_counts_unless_its_payload_names_another(claimed: str | None) -> None:
    assert counts_for(R1, OID, deployment(1, 0, revision=claimed)) is True


@pytest.mark.parametrize(
    ("claimed", "why"),
    [
        (OTHER_OID, "another commit"),
        (OTHER_OID[:7], "an abbreviation of another commit"),
        (OID[:6], "a prefix shorter than 7"),
        (OID[:1], "one digit"),
        ("main", "a branch"),
        ("main-branch-2026", "a long non-hex name"),
        (OID + "ff", "longer than the commit id"),
    ],
)
def test_deployment_whose_payload_names_another_or_no_fixed_commit_does_not_count(
    claimed: str, why: str
) -> None:
    assert counts_for(R1, OID, deployment(1, 0, revision=claimed)) is False, why


def test_deployment_of_another_commit_does_not_count() -> None:
    assert counts_for(R1, OID, deployment(1, 0, sha=OTHER_OID, revision=OID)) is False


def test_deployment_does_not_count_when_the_commit_github_returned_is_not_the_revisions() -> None:
    assert counts_for(R2, OID, deployment(1, 0)) is False


def test_commit_ids_are_compared_without_regard_to_letter_case() -> None:
    assert counts_for(OID[:9].upper(), OID.upper(), deployment(1, 0, sha=OID.upper(), revision=OID[:8]))


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


# bake_states: the deciding status of one deployment


def test_bake_result_is_the_newest_status_by_creation_time_whatever_the_listing_order() -> None:
    listed_oddly = deployment(1, 0, status("in_progress", 1, "Deploying"), failed(3), succeeded(2))
    assert bake_states(listed_oddly) == (frozenset({"failure"}), at(3))


def test_githubs_inactive_after_a_success_leaves_the_result_success() -> None:
    record = deployment(1, 0, github_inactive(9), succeeded(5), status("in_progress", 1, "Deploying"))
    assert bake_states(record) == (frozenset({"success"}), at(5))


def test_cancellation_after_a_success_is_the_result() -> None:
    record = deployment(1, 0, status("inactive", 9, "Bake cancelled"), succeeded(5))
    assert bake_states(record) == (frozenset({"inactive"}), at(9))


@pytest.mark.parametrize(
    "statuses",
    [(), (github_inactive(3),), (github_inactive(4), status("inactive", 2, ""))],
)
def test_bake_states_are_none_when_no_status_carries_a_result(statuses: tuple[StatusRecord, ...]) -> None:
    assert bake_states(deployment(1, 0, *statuses)) is None


@pytest.mark.parametrize(("state", "expected"), [("SUCCESS", "success"), ("Failure", "failure")])
def test_bake_states_are_lower_cased(state: str, expected: str) -> None:
    assert bake_states(deployment(1, 0, status(state, 1, "Bake"))) == (frozenset({expected}), at(1))


def test_upper_case_inactive_from_github_is_skipped_too() -> None:
    assert bake_states(deployment(1, 0, status("INACTIVE", 9), succeeded(5))) == (
        frozenset({"success"}),
        at(5),
    )


def test_statuses_created_in_the_same_second_that_disagree_are_all_kept() -> None:
    record = deployment(1, 0, succeeded(5), baking(5), failed(4))
    assert bake_states(record) == (frozenset({"success", "in_progress"}), at(5))


def test_statuses_created_in_the_same_second_that_agree_are_one_result() -> None:
    record = deployment(1, 0, succeeded(5), status("SUCCESS", 5, "Bake succeeded: again"))
    assert bake_states(record) == (frozenset({"success"}), at(5))


def test_githubs_inactive_in_the_same_second_as_a_success_does_not_make_a_tie() -> None:
    assert bake_states(deployment(1, 0, github_inactive(5), succeeded(5))) == (frozenset({"success"}), at(5))


# revision_result: the deciding deployment of a revision


def test_newest_deployment_with_a_result_decides_and_says_where_it_sits() -> None:
    found = result_of(deployment(1, 0, succeeded(2)), deployment(2, 5, failed(7)))
    assert found == RevisionResult(R1, frozenset({"failure"}), deployed=True, position=(at(5), 2, at(7)))
    assert found.result == "failure"


def test_newer_success_of_a_revision_replaces_an_older_failure() -> None:
    found = result_of(deployment(1, 0, failed(2)), deployment(2, 5, succeeded(7)))
    assert (found.result, found.position) == ("success", (at(5), 2, at(7)))


def test_later_failure_on_the_same_deployment_revokes_its_success() -> None:
    assert result_of(deployment(1, 0, failed(9), succeeded(5))).result == "failure"


def test_later_failed_deployment_of_a_revision_revokes_it_for_both_kinds() -> None:
    found = result_of(deployment(1, 0, github_inactive(6), succeeded(5)), deployment(2, 8, failed(9)))
    assert found.result == "failure"
    assert not is_justified("After", found)
    assert not is_justified("Parallel", found)


def test_newer_deployment_without_any_status_does_not_hide_an_older_result() -> None:
    found = result_of(deployment(1, 0, succeeded(2)), deployment(2, 5))
    assert (found.result, found.position) == ("success", (at(0), 1, at(2)))


def test_newer_deployment_with_only_githubs_inactive_does_not_hide_an_older_result() -> None:
    found = result_of(deployment(1, 0, failed(2)), deployment(2, 5, github_inactive(6)))
    assert (found.result, found.position) == ("failure", (at(0), 1, at(2)))


def test_revision_deployed_but_never_baked_has_no_result_and_no_position() -> None:
    found = result_of(deployment(1, 0), deployment(2, 3, github_inactive(4)))
    assert found == RevisionResult(R1, frozenset(), deployed=True)
    assert found.result is None


def test_revision_without_deployments_is_not_deployed() -> None:
    assert result_of() == RevisionResult(R1, frozenset(), deployed=False)


def test_deployments_created_in_the_same_second_are_ordered_by_id_not_by_listing() -> None:
    forward = result_of(deployment(7, 0, succeeded(1)), deployment(8, 0, failed(1)))
    backward = result_of(deployment(8, 0, failed(1)), deployment(7, 0, succeeded(1)))
    assert forward == backward
    assert (forward.result, forward.position) == ("failure", (at(0), 8, at(1)))


def test_deployment_of_another_commit_in_the_answer_is_ignored() -> None:
    found = result_of(deployment(1, 0, failed(1)), deployment(2, 5, succeeded(6), sha=OTHER_OID))
    assert (found.result, found.position) == ("failure", (at(0), 1, at(1)))


def test_deployment_claiming_another_revision_in_its_payload_is_ignored() -> None:
    found = result_of(deployment(1, 0, failed(1)), deployment(2, 5, succeeded(6), revision=OTHER_OID[:7]))
    assert found.result == "failure"


def test_revision_github_does_not_resolve_is_blocked_with_a_note() -> None:
    found = result_of(deployment(1, 0, succeeded(1)), oid=None)
    assert (found.states, found.deployed, found.position) == (frozenset(), False, None)
    assert found.note == "names no single commit on GitHub"


@pytest.mark.parametrize("revision", ["main", f"main@sha1:{OID}", "b79740", "v1.2.3"])
def test_revision_that_is_not_a_commit_id_is_blocked_with_a_note(revision: str) -> None:
    found = revision_result(CommitLookup(revision, None))
    assert (found.states, found.deployed) == (frozenset(), False)
    assert found.note == "is not a commit id (7 to 40 hex digits)"


def test_tied_statuses_of_the_deciding_deployment_make_an_ambiguous_result() -> None:
    found = result_of(deployment(1, 0, succeeded(3), failed(3)))
    assert found.states == {"success", "failure"}
    assert found.result == AMBIGUOUS


# Thirty statuses: GitHub pages them; only the newest counts, wherever it was listed


def thirty_statuses(newest: StatusRecord, older: str) -> tuple[StatusRecord, ...]:
    olds = [status(older, s, f"Bake {older}") for s in range(1, 30)]
    return (olds[0], *olds[1:15], newest, *olds[15:])


@pytest.mark.parametrize("kind", ["After", "Parallel"])
def test_deployment_whose_newest_of_thirty_statuses_is_failure_is_not_justified(kind: Any) -> None:
    found = result_of(deployment(1, 0, *thirty_statuses(failed(30), "success")))
    assert found.result == "failure"
    assert not is_justified(kind, found)
    assert tags_allowed(kind, lookup(R1, deployment(1, 0, *thirty_statuses(failed(30), "success")))) == ()


@pytest.mark.parametrize("kind", ["After", "Parallel"])
def test_deployment_whose_newest_of_thirty_statuses_is_success_after_failures_is_justified(kind: Any) -> None:
    statuses = thirty_statuses(succeeded(30), "failure")
    found = result_of(deployment(1, 0, *statuses))
    assert found.result == "success"
    assert is_justified(kind, found)
    assert tags_allowed(kind, lookup(R1, deployment(1, 0, *statuses))) == (TAG,)


# results_for


def test_results_are_kept_apart_per_revision() -> None:
    found = results_for(
        [
            lookup(R1, deployment(1, 0, succeeded(1))),
            lookup(R2, deployment(2, 2, failed(3), sha=OTHER_OID), oid=OTHER_OID),
            lookup("main", oid=None),
        ]
    )
    assert {r: (res.result, res.note) for r, res in found.items()} == {
        R1: ("success", ""),
        R2: ("failure", ""),
        "main": (None, "is not a commit id (7 to 40 hex digits)"),
    }


def test_no_lookups_mean_no_results() -> None:
    assert results_for([]) == {}


# RevisionResult.result and is_justified


def result_with(states: set[str], deployed: bool = True) -> RevisionResult:
    return RevisionResult(
        "r", frozenset(states), deployed=deployed, position=None if not states else ("", 1, "")
    )


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        (set(), None),
        ({"success"}, "success"),
        ({"success", "failure"}, AMBIGUOUS),
        ({"a", "b", "c"}, AMBIGUOUS),
    ],
)
def test_result_is_one_state_or_ambiguous_or_none(states: set[str], expected: str | None) -> None:
    assert result_with(states).result == expected


JUSTIFIED = {
    # states, deployed: (After, Parallel)
    "success": (({"success"}, True), (True, True)),
    "failure": (({"failure"}, True), (False, False)),
    "error": (({"error"}, True), (False, False)),
    "in progress": (({"in_progress"}, True), (False, True)),
    "pending": (({"pending"}, True), (False, True)),
    "cancelled": (({"inactive"}, True), (False, True)),
    "deployed, not baked": ((set(), True), (False, True)),
    "not deployed": ((set(), False), (False, False)),
    "tie success/in_progress": (({"success", "in_progress"}, True), (False, True)),
    "tie success/failure": (({"success", "failure"}, True), (False, False)),
    "tie success/error": (({"success", "error"}, True), (False, False)),
    "tie in_progress/pending": (({"in_progress", "pending"}, True), (False, True)),
}


@pytest.mark.parametrize(("given_", "expected"), JUSTIFIED.values(), ids=JUSTIFIED.keys())
def test_after_needs_a_plain_success_and_parallel_a_deployment_that_did_not_fail(
    given_: tuple[set[str], bool], expected: tuple[bool, bool]
) -> None:
    states, deployed = given_
    result = result_with(states, deployed)
    assert (is_justified("After", result), is_justified("Parallel", result)) == expected


# release_candidates and candidate_revisions


def test_release_candidates_are_read_with_their_revisions() -> None:
    rollout = {
        "status": {
            "releaseCandidates": [
                {
                    "tag": TAG,
                    "revision": R1,
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
        ReleaseCandidate(TAG, R1),
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


def test_candidate_revisions_are_the_distinct_revisions_of_candidates_that_have_one() -> None:
    candidates = [
        ReleaseCandidate("v1", R1),
        ReleaseCandidate("v2", R1),
        ReleaseCandidate("v3", None),
        ReleaseCandidate("v4", "main"),
    ]
    assert candidate_revisions(candidates) == {R1, "main"}
    assert candidate_revisions([]) == frozenset()


# allowed_tags: revision matching as a candidate sees it


@pytest.mark.parametrize(
    "revision",
    [OID, OID.upper(), OID[:7], OID[:7].upper(), OID[:12], OID[:39]],
    ids=["full", "full-upper", "7", "7-upper", "12", "39"],
)
def test_candidate_whose_commit_baked_successfully_is_allowed_by_full_id_or_abbreviation(
    revision: str,
) -> None:
    answer = lookup(revision, deployment(1, 0, succeeded(1)))
    assert tags_allowed("After", answer, candidates=[ReleaseCandidate(TAG, revision)]) == (TAG,)


@pytest.mark.parametrize("revision", ["main", OID[:6], f"main@sha1:{OID}", "v1.2.3", OID + "a"])
def test_candidate_whose_revision_is_not_a_commit_id_is_blocked_saying_so(revision: str) -> None:
    found = allowed_tags(
        "Parallel",
        "staging",
        [ReleaseCandidate(TAG, revision)],
        results_for([CommitLookup(revision, None)]),
    )
    assert found.tags == ()
    assert found.reasons[TAG] == f"blocked: revision {revision} is not a commit id (7 to 40 hex digits)"


def test_candidate_whose_abbreviation_github_cannot_resolve_is_blocked_saying_so() -> None:
    found = allowed_tags(
        "Parallel", "staging", [ReleaseCandidate(TAG, R1)], results_for([lookup(R1, oid=None)])
    )
    assert found.tags == ()
    assert found.reasons[TAG] == f"blocked: revision {R1} names no single commit on GitHub"


@pytest.mark.parametrize("kind", ["After", "Parallel"])
def test_deployment_whose_payload_names_another_commit_does_not_allow_the_candidate(kind: Any) -> None:
    answer = lookup(R1, deployment(1, 0, succeeded(1), revision=OTHER_OID))
    found = allowed_tags(kind, "staging", [ReleaseCandidate(TAG, R1)], results_for([answer]))
    assert found.tags == ()
    assert found.reasons[TAG] == f"blocked: revision {R1} has no deployment in staging"


@pytest.mark.parametrize("kind", ["After", "Parallel"])
def test_deployment_whose_payload_revision_is_shorter_than_seven_does_not_count(kind: Any) -> None:
    assert tags_allowed(kind, lookup(R1, deployment(1, 0, succeeded(1), revision=OID[:6]))) == ()


@pytest.mark.parametrize("kind", ["After", "Parallel"])
def test_deployment_without_a_payload_revision_counts_for_its_commit(kind: Any) -> None:
    assert tags_allowed(kind, lookup(R1, deployment(1, 0, succeeded(1), revision=None))) == (TAG,)


def test_deployment_without_any_payload_counts_for_its_commit() -> None:
    bare = DeploymentRecord(id=1, sha=OID, payload=None, created_at=at(0), statuses=(succeeded(1),))
    assert tags_allowed("After", lookup(R1, bare)) == (TAG,)


def test_success_of_another_commit_that_github_listed_does_not_allow_the_candidate() -> None:
    assert tags_allowed("After", lookup(R1, deployment(1, 0, succeeded(1), sha=OTHER_OID))) == ()


# allowed_tags: reasons and shape


def test_allowed_tags_are_sorted_and_without_duplicates() -> None:
    candidates = [ReleaseCandidate("v2", R1), ReleaseCandidate("v1", R1), ReleaseCandidate("v2", R1)]
    assert tags_allowed("After", lookup(R1, deployment(1, 0, succeeded(1))), candidates=candidates) == (
        "v1",
        "v2",
    )


def test_candidate_without_revision_is_blocked_saying_so() -> None:
    found = allowed_tags("Parallel", "staging", [ReleaseCandidate("v1", None)], {})
    assert found.tags == ()
    assert found.reasons["v1"] == "blocked: the candidate has no revision to match on GitHub"


def test_candidate_whose_revision_was_not_looked_up_is_blocked_saying_so() -> None:
    found = allowed_tags("Parallel", "staging", [ReleaseCandidate("v1", R1)], {})
    assert found.reasons["v1"] == f"blocked: revision {R1} was not looked up on GitHub"


@pytest.mark.parametrize(
    ("kind", "words"), [("After", "baked successfully in staging"), ("Parallel", "deployed in staging")]
)
def test_reason_for_an_allowed_tag_names_revision_and_upstream(kind: Any, words: str) -> None:
    found = allowed_tags(
        kind,
        "staging",
        [ReleaseCandidate("v1", R1)],
        results_for([lookup(R1, deployment(1, 0, succeeded(1)))]),
    )
    assert found.tags == ("v1",)
    assert found.reasons["v1"].startswith("allowed: ")
    assert R1 in found.reasons["v1"]
    assert words in found.reasons["v1"]


@pytest.mark.parametrize(
    ("deployments", "state"),
    [
        ((deployment(1, 0, failed(1)),), "bake result failure"),
        ((deployment(1, 0, baking(1)),), "bake result in_progress"),
        ((deployment(1, 0),), "bake result none yet"),
        ((deployment(1, 0, succeeded(1), failed(1)),), f"bake result {AMBIGUOUS}"),
        ((), "no deployment"),
    ],
)
def test_reason_for_a_blocked_tag_names_revision_upstream_and_state(
    deployments: tuple[DeploymentRecord, ...], state: str
) -> None:
    found = allowed_tags(
        "After", "staging", [ReleaseCandidate("v1", R1)], results_for([lookup(R1, *deployments)])
    )
    assert found.tags == ()
    assert found.reasons["v1"] == f"blocked: revision {R1} has {state} in staging"


def test_every_candidate_gets_a_reason() -> None:
    candidates = [ReleaseCandidate("v1", R1), ReleaseCandidate("v2", R2), ReleaseCandidate("v3", None)]
    found = allowed_tags(
        "After",
        "staging",
        candidates,
        results_for([lookup(R1, deployment(1, 0, succeeded(1))), lookup(R2, oid=OTHER_OID)]),
    )
    assert set(found.reasons) == {"v1", "v2", "v3"}
    assert found.tags == ("v1",)


# allowed_tags: one tag, two revisions


def both_revisions(first: StatusRecord, second: StatusRecord) -> tuple[CommitLookup, ...]:
    return (
        lookup(R1, deployment(1, 0, first)),
        lookup(R2, deployment(2, 0, second, sha=OTHER_OID), oid=OTHER_OID),
    )


TWO_REVISIONS = [ReleaseCandidate(TAG, R1), ReleaseCandidate(TAG, R2)]


@pytest.mark.parametrize("kind", ["After", "Parallel"])
def test_tag_carried_by_two_revisions_is_allowed_when_both_are_justified(kind: Any) -> None:
    answer = both_revisions(succeeded(1), succeeded(2))
    found = allowed_tags(kind, "staging", TWO_REVISIONS, results_for(answer))
    assert found.tags == (TAG,)
    assert found.reasons[TAG].startswith("allowed: ")
    assert R1 in found.reasons[TAG]
    assert R2 in found.reasons[TAG]


@pytest.mark.parametrize("kind", ["After", "Parallel"])
@pytest.mark.parametrize("failing", [0, 1])
def test_tag_carried_by_two_revisions_is_blocked_when_either_is_not_justified(
    kind: Any, failing: int
) -> None:
    outcomes = [succeeded(1), succeeded(1)]
    outcomes[failing] = failed(1)
    found = allowed_tags(kind, "staging", TWO_REVISIONS, results_for(both_revisions(*outcomes)))
    assert found.tags == ()
    bad = (R1, R2)[failing]
    assert found.reasons[TAG].startswith("blocked: ")
    assert f"revision {bad} has bake result failure in staging" in found.reasons[TAG]


@pytest.mark.parametrize("kind", ["After", "Parallel"])
def test_tag_carried_by_a_revision_and_by_an_entry_without_one_is_blocked(kind: Any) -> None:
    candidates = [ReleaseCandidate(TAG, R1), ReleaseCandidate(TAG, None)]
    answer = results_for([lookup(R1, deployment(1, 0, succeeded(1)))])
    assert allowed_tags(kind, "staging", candidates, answer).tags == ()


def test_tag_with_one_revision_in_progress_is_blocked_for_after_and_allowed_for_parallel() -> None:
    answer = results_for(both_revisions(succeeded(1), baking(1)))
    assert allowed_tags("After", "staging", TWO_REVISIONS, answer).tags == ()
    assert allowed_tags("Parallel", "staging", TWO_REVISIONS, answer).tags == (TAG,)


# allowed_tags: statuses tied within one second


def test_success_tied_with_in_progress_blocks_after_and_allows_parallel() -> None:
    answer = lookup(R1, deployment(1, 0, succeeded(5), baking(5)))
    assert tags_allowed("After", answer) == ()
    assert tags_allowed("Parallel", answer) == (TAG,)


@pytest.mark.parametrize("failure", [failed(5), status("error", 5)], ids=["failure", "error"])
@pytest.mark.parametrize("kind", ["After", "Parallel"])
def test_success_tied_with_a_failure_blocks_both_kinds(kind: Any, failure: StatusRecord) -> None:
    for listed in ((succeeded(5), failure), (failure, succeeded(5))):
        assert tags_allowed(kind, lookup(R1, deployment(1, 0, *listed))) == ()


def test_success_one_second_after_a_failure_is_not_a_tie() -> None:
    answer = lookup(R1, deployment(1, 0, failed(5), succeeded(6)))
    assert tags_allowed("After", answer) == (TAG,)


# allowed_tags: vetoes


def test_vetoed_revision_is_blocked_with_the_veto_as_the_reason() -> None:
    answer = results_for([lookup(R1, deployment(1, 0, succeeded(1)))])
    found = allowed_tags("After", "staging", [ReleaseCandidate(TAG, R1)], answer, {R1: "held back"})
    assert found.tags == ()
    assert found.reasons[TAG] == f"blocked: revision {R1}: held back"


def test_veto_of_a_revision_that_is_blocked_anyway_keeps_the_upstream_reason() -> None:
    answer = results_for([lookup(R1, deployment(1, 0, failed(1)))])
    found = allowed_tags("After", "staging", [ReleaseCandidate(TAG, R1)], answer, {R1: "held back"})
    assert found.reasons[TAG] == f"blocked: revision {R1} has bake result failure in staging"


def test_veto_of_another_revision_does_not_block() -> None:
    answer = results_for([lookup(R1, deployment(1, 0, succeeded(1)))])
    assert allowed_tags("After", "staging", [ReleaseCandidate(TAG, R1)], answer, {R2: "held"}).tags == (TAG,)


# Properties: Invariant 3 (safety) and Invariant 4 (recompute, don't accumulate), against an
# independent restatement of the rules. Each generated deployment knows whether it is evidence for
# its revision (the generator decides from how it built the sha and the payload, not from
# `counts_for`), and statuses fall into few seconds so ties are common.


@dataclass(frozen=True)
class Revision:
    """A candidate revision and the commit GitHub resolves it to (None: no single commit)."""

    name: str
    oid: str | None


REVISIONS = (
    Revision(OID[:7], OID),
    Revision(OTHER_OID.upper(), OTHER_OID),
    Revision("C0FFEE1", "c0ffee1d2e3f405162738495a6b7c8d9e0f1a2b3"),
    Revision("deadbee", None),
    Revision(f"main@sha1:{OID}", None),
)
ALIEN_OID = "0123456789abcdef0123456789abcdef01234567"
STATES = (
    "success",
    "success",
    "failure",
    "in_progress",
    "error",
    "pending",
    "queued",
    "inactive",
    "SUCCESS",
    "Failure",
)
DESCRIPTIONS = (
    None,
    "",
    "Bake succeeded",
    "Bake failed: x",
    "Baking in progress",
    "Deploying",
    "Bake cancelled",
)
# Three seconds only: statuses of one deployment and deployments of one revision often tie.
seconds = st.integers(min_value=0, max_value=2)
statuses_st = st.builds(StatusRecord, st.sampled_from(STATES), st.sampled_from(DESCRIPTIONS), seconds.map(at))


@dataclass(frozen=True)
class Generated:
    """GitHub's answer and, per deployment id, whether it counts for its revision by construction."""

    lookups: tuple[CommitLookup, ...]
    counts: Mapping[int, bool]


@st.composite
def answers(draw: st.DrawFn) -> Generated:
    ids = iter(draw(st.lists(st.integers(1, 10_000), min_size=40, max_size=40, unique=True)))
    lookups, counts = [], {}
    for revision in REVISIONS:
        if revision.oid is None:
            lookups.append(CommitLookup(revision.name, None))
            continue
        records = []
        for _ in range(draw(st.integers(0, 4))):
            own_commit = draw(st.sampled_from([True, True, False]))
            claim = draw(
                st.sampled_from(["none", "full", "abbreviation", "none", "other", "short", "branch"])
            )
            claimed = {
                "none": None,
                "full": revision.oid.upper(),
                "abbreviation": revision.oid[:9],
                "other": ALIEN_OID[:8],
                "short": revision.oid[:6],
                "branch": "main-2026",
            }[claim]
            statuses = draw(st.lists(statuses_st, max_size=4))
            if statuses and draw(st.booleans()):
                # Another status in the same second as one already drawn, likely saying something else.
                twin = draw(st.sampled_from(statuses))
                statuses.append(
                    StatusRecord(
                        draw(st.sampled_from(STATES)), draw(st.sampled_from(DESCRIPTIONS)), twin.created_at
                    )
                )
            record = deployment(
                next(ids),
                draw(seconds),
                *statuses,
                sha=revision.oid if own_commit else ALIEN_OID,
                revision=claimed,
            )
            counts[record.id] = own_commit and claim in {"none", "full", "abbreviation"}
            records.append(record)
        lookups.append(CommitLookup(revision.name, revision.oid, tuple(records)))
    return Generated(tuple(lookups), counts)


def _carries(s: StatusRecord) -> bool:
    return not (s.state.lower() == "inactive" and not (s.description or "").startswith("Bake cancelled"))


def restated(generated: Generated, revision: str) -> tuple[bool, frozenset[str]]:
    """Independent restatement: (deployed, states of the deciding statuses) for `revision`. The newest
    counted deployment (by creation, then id) with a result-carrying status decides; its newest such
    statuses (several only when created in the same second) give the states."""
    found = next(lookup for lookup in generated.lookups if lookup.revision == revision)
    counted = [d for d in found.deployments if generated.counts[d.id]]
    deciding = [d for d in counted if any(_carries(s) for s in d.statuses)]
    if not deciding:
        return bool(counted), frozenset()
    newest = max(deciding, key=lambda d: (d.created_at, d.id))
    carrying = [s for s in newest.statuses if _carries(s)]
    last = max(s.created_at for s in carrying)
    return True, frozenset(s.state.lower() for s in carrying if s.created_at == last)


def justified_restated(kind: str, generated: Generated, revision: str | None) -> bool:
    if revision is None:
        return False
    deployed, states = restated(generated, revision)
    if kind == "After":
        return states == {"success"}
    return deployed and not states & {"failure", "error"}


candidates_st = st.lists(
    st.builds(
        ReleaseCandidate,
        st.sampled_from(["v1", "v2", "v3", "v4"]),
        st.sampled_from((*(r.name for r in REVISIONS), None)),
    ),
    max_size=6,
)
kinds = st.sampled_from(["After", "Parallel"])


@PROPERTY_SETTINGS
@given(kind=kinds, generated=answers(), candidates=candidates_st)
def test_allowed_tags_are_exactly_those_every_entry_of_which_is_justified_upstream(
    kind: Any, generated: Generated, candidates: list[ReleaseCandidate]
) -> None:
    # Besides the drawn candidates, one tag per revision, so every revision's result is judged alone.
    candidates = [*candidates, *(ReleaseCandidate(f"only-{r.name}", r.name) for r in REVISIONS)]
    found = allowed_tags(kind, "staging", candidates, results_for(generated.lookups))
    expected = {
        tag
        for tag in {c.tag for c in candidates}
        if all(justified_restated(kind, generated, c.revision) for c in candidates if c.tag == tag)
    }
    assert set(found.tags) == expected
    assert list(found.tags) == sorted(expected)
    assert set(found.reasons) == {c.tag for c in candidates}
    for tag, reason in found.reasons.items():
        assert reason.startswith("allowed: " if tag in expected else "blocked: ")


@PROPERTY_SETTINGS
@given(generated=answers(), candidates=candidates_st)
def test_after_allows_a_subset_of_what_parallel_allows(
    generated: Generated, candidates: list[ReleaseCandidate]
) -> None:
    results = results_for(generated.lookups)
    after = allowed_tags("After", "staging", candidates, results).tags
    assert set(after) <= set(allowed_tags("Parallel", "staging", candidates, results).tags)


@st.composite
def shuffled(draw: st.DrawFn, generated: Generated) -> tuple[CommitLookup, ...]:
    """The same answer listed in another order: lookups, deployments, and statuses within each."""
    lookups = []
    for found in draw(st.permutations(generated.lookups)):
        records = [
            DeploymentRecord(d.id, d.sha, d.payload, d.created_at, tuple(draw(st.permutations(d.statuses))))
            for d in draw(st.permutations(found.deployments))
        ]
        lookups.append(CommitLookup(found.revision, found.oid, tuple(records)))
    return tuple(lookups)


@PROPERTY_SETTINGS
@given(kind=kinds, generated=answers(), candidates=candidates_st, data=st.data())
def test_results_and_allowed_tags_do_not_depend_on_the_order_github_lists_anything(
    kind: Any, generated: Generated, candidates: list[ReleaseCandidate], data: st.DataObject
) -> None:
    reordered = data.draw(shuffled(generated))
    assert results_for(reordered) == results_for(generated.lookups)
    assert allowed_tags(kind, "staging", candidates, results_for(reordered)) == allowed_tags(
        kind, "staging", candidates, results_for(generated.lookups)
    )


TIED = (
    deployment(2, 0, failed(1), succeeded(1), github_inactive(1)),
    deployment(1, 0, succeeded(1), baking(1)),
    deployment(3, 0, revision=OTHER_OID),
)


@pytest.mark.parametrize("kind", ["After", "Parallel"])
def test_every_listing_of_deployments_and_statuses_tied_within_one_second_gives_one_answer(kind: Any) -> None:
    answers_seen = set()
    for records in itertools.permutations(TIED):
        for listings in itertools.product(*(itertools.permutations(d.statuses) for d in records)):
            relisted = [
                DeploymentRecord(d.id, d.sha, d.payload, d.created_at, statuses)
                for d, statuses in zip(records, listings, strict=True)
            ]
            result = revision_result(lookup(R1, *relisted))
            answers_seen.add((result, tags_allowed(kind, lookup(R1, *relisted))))
    assert answers_seen == {
        (RevisionResult(R1, frozenset({"failure", "success"}), True, (at(0), 2, at(1))), ()),
    }


@PROPERTY_SETTINGS
@given(generated=answers(), data=st.data())
def test_listing_a_deployment_twice_changes_nothing(generated: Generated, data: st.DataObject) -> None:
    doubled = []
    for found in generated.lookups:
        extra = (
            data.draw(st.lists(st.sampled_from(found.deployments), max_size=3)) if found.deployments else []
        )
        doubled.append(CommitLookup(found.revision, found.oid, (*found.deployments, *extra)))
    assert results_for(doubled) == results_for(generated.lookups)


@PROPERTY_SETTINGS
@given(kind=kinds, generated=answers(), candidates=candidates_st, which=st.sampled_from(REVISIONS[:3]))
def test_newer_failed_deployment_removes_its_revision_whatever_came_before(
    kind: Any, generated: Generated, candidates: list[ReleaseCandidate], which: Revision
) -> None:
    assert which.oid is not None
    newest = max(generated.counts, default=0) + 1
    failing = deployment(newest, 5, failed(7), baking(6), sha=which.oid)
    lookups = [
        CommitLookup(f.revision, f.oid, (*f.deployments, failing)) if f.revision == which.name else f
        for f in generated.lookups
    ]
    found = results_for(lookups)
    assert not is_justified(kind, found[which.name])
    for tag in allowed_tags(kind, "staging", candidates, found).tags:
        assert all(c.revision != which.name for c in candidates if c.tag == tag), tag


@PROPERTY_SETTINGS
@given(kind=kinds, generated=answers(), candidates=candidates_st, vetoed=st.sets(st.sampled_from(REVISIONS)))
def test_vetoes_only_ever_remove_tags(
    kind: Any, generated: Generated, candidates: list[ReleaseCandidate], vetoed: set[Revision]
) -> None:
    results = results_for(generated.lookups)
    free = allowed_tags(kind, "staging", candidates, results).tags
    held = allowed_tags(kind, "staging", candidates, results, {r.name: "held" for r in vetoed}).tags
    assert set(held) <= set(free)
    assert set(free) - set(held) <= {c.tag for c in candidates if c.revision in {r.name for r in vetoed}}
