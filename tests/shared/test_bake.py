"""Unit and property tests of shared/bake.py: from GitHub's answer per candidate revision to the tags a
Rollout may deploy.

The statuses follow the environment controller's table in DESIGN.md ("Bake succeeded", "Bake failed",
"Baking in progress", "Deploying", "Bake cancelled"), plus GitHub's own description-less `inactive`
marks on older deployments. `at(s)` is GitHub's `createdAt` `s` seconds into one morning, so two
statuses with the same `s` were created within the same second (GitHub gives statuses no id to order
them by). The candidate `main-1779290372-b797408` (`TAG`) has revision `b797408`, an abbreviation of
`OID`; the builder records every deployment as kuberik does: history entry = its id unless told,
`version.tag` = `TAG`, `version.revision` = its commit.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.bake import (
    AMBIGUOUS,
    CONTRADICTORY,
    CommitLookup,
    DeploymentRecord,
    ReleaseCandidate,
    StatusRecord,
    VersionResult,
    allowed_tags,
    bake_result,
    candidate_revisions,
    carries_bake_result,
    counts_for,
    is_justified,
    lookup_kind,
    newest_result,
    release_candidates,
    results_for,
    version_result,
    vouches_for,
)
from shared.errors import BadEvent
from tests.shared.builders import (
    OID,
    OTHER_OID,
    TAG,
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
CANDIDATE = ReleaseCandidate(TAG, R1)
REBUILD = "main-1779299999-b797408"
"""A CI re-run of the same commit: another image, another tag."""


def result_of(
    *deployments: DeploymentRecord, candidate: ReleaseCandidate = CANDIDATE, oid: str | None = OID
) -> VersionResult:
    return version_result(candidate, lookup(candidate.revision or "", *deployments, oid=oid))


def tags_allowed(
    kind: Any, *lookups: CommitLookup, candidates: Sequence[ReleaseCandidate] = ()
) -> tuple[str, ...]:
    """The tags allowed for `candidates` (default: `TAG` at revision `R1`) given GitHub's answer."""
    candidates = candidates or [CANDIDATE]
    by_revision = {found.revision: found for found in lookups}
    return allowed_tags(kind, "staging", candidates, results_for(candidates, by_revision)).tags


def judged(kind: Any, candidates: Sequence[ReleaseCandidate], *lookups: CommitLookup, **vetoed: str) -> Any:
    by_revision = {found.revision: found for found in lookups}
    return allowed_tags(kind, "staging", candidates, results_for(candidates, by_revision), vetoed or None)


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


# DeploymentRecord: what kuberik's payload says


def test_payload_version_fields_and_entry_are_read_from_kuberiks_payload() -> None:
    record = deployment(1, 0, revision=OID[:7], entry=12, digest="sha256:aa")
    assert (record.payload_revision, record.payload_tag, record.payload_digest, record.entry) == (
        OID[:7],
        TAG,
        "sha256:aa",
        12,
    )


@pytest.mark.parametrize(
    "payload",
    [
        None,
        {},
        {"version": None},
        {"version": "v1"},
        {"version": {}},
        {"version": {"revision": ""}},
        {"version": {"revision": 1234, "tag": 5}},
        {"version": {"revision": ["r1"], "tag": ["v1"]}},
        {"version": {"revision": None, "tag": None}},
        ["version"],
    ],
)
def test_payload_without_usable_version_fields_has_none(payload: Any) -> None:
    record = DeploymentRecord(id=1, sha=OID, payload=payload, created_at=at(0))
    assert (record.payload_revision, record.payload_tag, record.payload_digest, record.entry) == (
        None,
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("raw", "entry"),
    [("7", 7), (7, 7), ("0042", 42), ("entry-7", None), ("", None), ("-3", None), ("٣", None), (True, None)],
)
def test_history_entry_id_is_a_plain_integer_or_nothing(raw: object, entry: int | None) -> None:
    record = DeploymentRecord(id=1, sha=OID, payload={"id": raw}, created_at=at(0))
    assert record.entry == entry


# counts_for: whether a deployment is of the revision's commit


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


# bake_result: a status read as kuberik's environment controller reads it


@pytest.mark.parametrize(
    ("state", "description", "result"),
    [
        ("success", "Bake succeeded", "success"),
        ("success", "Bake succeeded: all checks green", "success"),
        ("SUCCESS", "Bake succeeded", "success"),
        ("failure", "Bake failed", "failure"),
        ("failure", "Bake failed: error rate above 5%", "failure"),
        ("in_progress", "Baking in progress", "in_progress"),
        ("in_progress", "Deploying", "in_progress"),
        ("pending", "Deploying", "pending"),
        ("pending", "Deploying: rolling out", "pending"),
        ("inactive", "Bake cancelled", "inactive"),
        ("inactive", "Bake cancelled: superseded by v2", "inactive"),
    ],
)
def test_a_status_kuberik_wrote_carries_its_state(state: str, description: str, result: str) -> None:
    assert bake_result(StatusRecord(state, description, at(0))) == result


@pytest.mark.parametrize(
    ("state", "description"),
    [
        ("success", "Deployment successful"),  # what a deploy tool writes when it *deployed*
        ("success", None),
        ("success", ""),
        ("failure", None),
        ("error", "Deploy crashed"),
        ("queued", None),
        ("success", "bake succeeded"),  # kuberik's prefixes are matched exactly
        ("success", "Bake succeededly"),
        ("inactive", None),
        ("INACTIVE", ""),
        ("inactive", "Superseded by a newer deployment"),
        ("inactive", "Deploying"),  # inactive counts only as a cancellation, as in the Go controller
    ],
)
def test_a_status_kuberik_did_not_write_carries_no_bake_result(state: str, description: str | None) -> None:
    recorded = StatusRecord(state, description, at(0))
    assert bake_result(recorded) is None
    assert carries_bake_result(recorded) is False


@pytest.mark.parametrize(
    ("state", "description"),
    [
        ("failure", "Bake succeeded"),
        ("error", "Bake succeeded"),
        ("in_progress", "Bake succeeded"),
        ("success", "Bake failed"),
        ("success", "Deploying"),
        ("success", "Baking in progress"),
        ("success", "Bake cancelled"),
        ("error", "Bake failed"),
        ("pending", "Baking in progress"),
    ],
)
def test_a_prefix_that_contradicts_its_state_is_contradictory(state: str, description: str) -> None:
    assert bake_result(StatusRecord(state, description, at(0))) == CONTRADICTORY


@pytest.mark.parametrize("kind", ["After", "Parallel"])
def test_a_deploy_tools_success_does_not_open_the_gate(kind: Any) -> None:
    tool = deployment(1, 0, status("pending", 1, "Deploying"), status("success", 2, "Deployment successful"))
    assert result_of(tool).states == {"pending"}
    assert tags_allowed("After", lookup(R1, tool)) == ()
    assert (
        tags_allowed("After", lookup(R1, deployment(1, 0, status("success", 2, "Deployment successful"))))
        == ()
    )


@pytest.mark.parametrize("kind", ["After", "Parallel"])
def test_a_contradictory_status_is_neither_a_success_nor_a_clean_deployment(kind: Any) -> None:
    answer = lookup(R1, deployment(1, 0, succeeded(1), status("failure", 2, "Bake succeeded")))
    assert tags_allowed(kind, answer) == ()


# newest_result: the deciding statuses of one entry's records


def test_bake_result_is_the_newest_carrying_status_whatever_the_listing_order() -> None:
    listed_oddly = deployment(1, 0, status("in_progress", 1, "Deploying"), failed(3), succeeded(2))
    assert newest_result([listed_oddly]) == (frozenset({"failure"}), at(3), 1)


def test_githubs_inactive_after_a_success_leaves_the_result_success() -> None:
    record = deployment(1, 0, github_inactive(9), succeeded(5), status("in_progress", 1, "Deploying"))
    assert newest_result([record]) == (frozenset({"success"}), at(5), 1)


def test_cancellation_after_a_success_is_the_result() -> None:
    record = deployment(1, 0, status("inactive", 9, "Bake cancelled"), succeeded(5))
    assert newest_result([record]) == (frozenset({"inactive"}), at(9), 1)


@pytest.mark.parametrize(
    "statuses",
    [
        (),
        (github_inactive(3),),
        (github_inactive(4), status("inactive", 2, "")),
        (status("success", 1, "ok"),),
    ],
)
def test_no_result_when_no_status_carries_one(statuses: tuple[StatusRecord, ...]) -> None:
    assert newest_result([deployment(1, 0, *statuses)]) is None


def test_statuses_created_in_the_same_second_that_disagree_are_all_kept() -> None:
    record = deployment(1, 0, succeeded(5), baking(5), failed(4))
    assert newest_result([record]) == (frozenset({"success", "in_progress"}), at(5), 1)


def test_statuses_created_in_the_same_second_that_agree_are_one_result() -> None:
    record = deployment(1, 0, succeeded(5), status("SUCCESS", 5, "Bake succeeded: again"))
    assert newest_result([record]) == (frozenset({"success"}), at(5), 1)


def test_githubs_inactive_in_the_same_second_as_a_success_does_not_make_a_tie() -> None:
    assert newest_result([deployment(1, 0, github_inactive(5), succeeded(5))]) == (
        frozenset({"success"}),
        at(5),
        1,
    )


# Version identity: a record vouches only for the build it records


@pytest.mark.parametrize("kind", ["After", "Parallel"])
def test_a_rebuild_of_a_baked_commit_is_not_allowed(kind: Any) -> None:
    answer = lookup(R1, deployment(1, 0, succeeded(1)))
    candidates = [CANDIDATE, ReleaseCandidate(REBUILD, R1)]
    found = judged(kind, candidates, answer)
    assert found.tags == (TAG,)
    assert found.reasons[REBUILD] == (
        f"blocked: commit {OID[:7]} ran there only as other builds ({TAG}), not as {REBUILD} in staging"
    )


def test_the_rebuild_is_allowed_once_it_bakes_itself() -> None:
    answer = lookup(R1, deployment(1, 0, succeeded(1)), deployment(2, 5, succeeded(6), tag=REBUILD))
    assert tags_allowed("After", answer, candidates=[ReleaseCandidate(REBUILD, R1), CANDIDATE]) == (
        TAG,
        REBUILD,
    )


@pytest.mark.parametrize(
    ("candidate_digest", "recorded_digest", "vouches"),
    [
        ("sha256:aa", "sha256:aa", True),
        ("sha256:AA", "sha256:aa", True),
        ("sha256:aa", "sha256:bb", False),  # the tag was pushed again: another image
        (None, "sha256:aa", True),
        ("sha256:aa", None, True),
        (None, None, True),
    ],
)
def test_digests_must_agree_where_both_carry_one(
    candidate_digest: str | None, recorded_digest: str | None, vouches: bool
) -> None:
    record = deployment(1, 0, succeeded(1), digest=recorded_digest)
    assert vouches_for(ReleaseCandidate(TAG, R1, candidate_digest), OID, record) is vouches
    assert (
        bool(
            tags_allowed(
                "After", lookup(R1, record), candidates=[ReleaseCandidate(TAG, R1, candidate_digest)]
            )
        )
        is vouches
    )


@pytest.mark.parametrize(
    "record",
    [
        deployment(1, 0, succeeded(1), tag=None),
        deployment(1, 0, succeeded(1), entry=None),
        deployment(1, 0, succeeded(1), entry="entry-1"),
        DeploymentRecord(id=1, sha=OID, payload=None, created_at=at(0), statuses=(succeeded(1),)),
    ],
    ids=["no tag", "no entry id", "entry id not a number", "no payload"],
)
@pytest.mark.parametrize("kind", ["After", "Parallel"])
def test_a_record_without_kuberiks_tag_and_entry_id_vouches_for_nothing(
    kind: Any, record: DeploymentRecord
) -> None:
    assert tags_allowed(kind, lookup(R1, record)) == ()


def test_a_record_of_another_commit_with_the_same_tag_does_not_vouch() -> None:
    assert tags_allowed("After", lookup(R1, deployment(1, 0, succeeded(1), sha=OTHER_OID))) == ()
    assert tags_allowed("After", lookup(R1, deployment(1, 0, succeeded(1), revision=OTHER_OID))) == ()


# The deciding record: the newest history entry, not the newest creation


def test_newest_history_entry_decides() -> None:
    found = result_of(deployment(1, 0, succeeded(2), entry=4), deployment(2, 5, failed(7), entry=5))
    assert (found.states, found.position, found.late) == (frozenset({"failure"}), (5, at(7), 2), frozenset())


def test_newer_entry_that_succeeded_replaces_an_older_failure() -> None:
    found = result_of(deployment(1, 0, failed(2), entry=4), deployment(2, 5, succeeded(7), entry=5))
    assert (found.result, found.position) == ("success", (5, at(7), 2))


def test_a_late_duplicate_of_an_older_entry_cannot_turn_a_newer_failure_into_a_success() -> None:
    # The inversion: entry 5 baked fine, entry 7 of the same build failed; a reporter cut at its
    # deadline left a duplicate of entry 5 created after entry 7, whose status says success.
    found = result_of(
        deployment(10, 0, succeeded(2), entry=5),
        deployment(11, 5, failed(9), entry=7),
        deployment(12, 20, succeeded(21), entry=5),
    )
    assert found.states == {"failure"}
    assert found.position == (7, at(9), 11)
    assert not is_justified("After", found)
    assert not is_justified("Parallel", found)


def test_an_older_entry_recorded_after_the_newest_may_only_narrow() -> None:
    # A Rollout created again counts its history from 1: its entry 1 failed, recorded after entry 57.
    found = result_of(deployment(10, 0, succeeded(2), entry=57), deployment(11, 5, failed(6), entry=1))
    assert (found.states, found.late) == (frozenset({"success"}), frozenset({"failure"}))
    assert not is_justified("After", found)
    assert not is_justified("Parallel", found)
    in_progress = result_of(deployment(10, 0, succeeded(2), entry=57), deployment(11, 5, baking(6), entry=1))
    assert not is_justified("After", in_progress)
    assert is_justified("Parallel", in_progress)


def test_an_older_entry_recorded_after_the_newest_that_also_succeeded_changes_nothing() -> None:
    found = result_of(deployment(10, 0, succeeded(2), entry=57), deployment(11, 5, succeeded(6), entry=1))
    assert is_justified("After", found)


def test_older_entries_recorded_before_the_newest_do_not_count() -> None:
    found = result_of(deployment(10, 0, failed(2), entry=4), deployment(11, 5, succeeded(6), entry=5))
    assert found.late == frozenset()
    assert is_justified("After", found)


def test_duplicates_of_the_newest_entry_are_read_together_newest_status_first() -> None:
    found = result_of(
        deployment(10, 0, baking(1), entry=7), deployment(11, 0, baking(1), succeeded(4), entry=7)
    )
    assert (found.result, found.position) == ("success", (7, at(4), 11))
    tie = result_of(deployment(10, 0, failed(4), entry=7), deployment(11, 0, succeeded(4), entry=7))
    assert tie.result == AMBIGUOUS
    assert not is_justified("After", tie)


def test_newest_entry_without_a_result_yet_is_not_baked_whatever_older_entries_said() -> None:
    found = result_of(deployment(1, 0, succeeded(2), entry=4), deployment(2, 5, entry=5))
    assert (found.states, found.deployed, found.position) == (frozenset(), True, None)
    assert not is_justified("After", found)
    assert is_justified("Parallel", found)


def test_a_version_deployed_but_never_baked_has_no_result_and_no_position() -> None:
    found = result_of(deployment(1, 0), deployment(2, 3, github_inactive(4), entry=1))
    assert found == VersionResult(CANDIDATE, frozenset(), deployed=True)
    assert found.result is None


def test_a_version_without_records_is_not_deployed() -> None:
    assert result_of() == VersionResult(CANDIDATE, frozenset(), deployed=False)


def test_records_of_other_commits_and_claims_in_the_answer_are_ignored() -> None:
    found = result_of(
        deployment(1, 0, failed(1), entry=3),
        deployment(2, 5, succeeded(6), sha=OTHER_OID, entry=9),
        deployment(3, 6, succeeded(7), revision=OTHER_OID[:7], entry=9),
    )
    assert (found.result, found.position) == ("failure", (3, at(1), 1))


def test_revision_github_does_not_resolve_is_blocked_with_a_note() -> None:
    found = result_of(deployment(1, 0, succeeded(1)), oid=None)
    assert (found.states, found.deployed, found.position) == (frozenset(), False, None)
    assert found.note == f"revision {R1} names no commit GitHub knows (not pushed, or an ambiguous short id)"


@pytest.mark.parametrize("revision", ["main", f"main@sha1:{OID}", "b79740", "v1.2.3"])
def test_revision_that_is_not_a_commit_id_is_blocked_with_a_note(revision: str) -> None:
    found = version_result(ReleaseCandidate(TAG, revision), CommitLookup(revision, None))
    assert (found.states, found.deployed) == (frozenset(), False)
    assert found.note == f"revision {revision} is not a commit id (7 to 40 hex digits)"


# Thirty statuses: GitHub pages them; only the newest counts, wherever it was listed


def thirty_statuses(newest: StatusRecord, older: StatusRecord) -> tuple[StatusRecord, ...]:
    olds = [replace(older, created_at=at(s)) for s in range(1, 30)]
    return (olds[0], *olds[1:15], newest, *olds[15:])


@pytest.mark.parametrize("kind", ["After", "Parallel"])
def test_deployment_whose_newest_of_thirty_statuses_is_failure_is_not_justified(kind: Any) -> None:
    record = deployment(1, 0, *thirty_statuses(failed(30), succeeded(0)))
    assert result_of(record).result == "failure"
    assert tags_allowed(kind, lookup(R1, record)) == ()


@pytest.mark.parametrize("kind", ["After", "Parallel"])
def test_deployment_whose_newest_of_thirty_statuses_is_success_after_failures_is_justified(kind: Any) -> None:
    record = deployment(1, 0, *thirty_statuses(succeeded(30), failed(0)))
    assert result_of(record).result == "success"
    assert tags_allowed(kind, lookup(R1, record)) == (TAG,)


# results_for and is_justified


def test_results_are_kept_apart_per_candidate() -> None:
    candidates = [
        CANDIDATE,
        ReleaseCandidate("v2", R2),
        ReleaseCandidate("v3", "main"),
        ReleaseCandidate("v4", None),
    ]
    found = results_for(
        candidates,
        {
            R1: lookup(R1, deployment(1, 0, succeeded(1))),
            R2: lookup(R2, deployment(2, 2, failed(3), sha=OTHER_OID, tag="v2"), oid=OTHER_OID),
            "main": CommitLookup("main", None),
        },
    )
    assert {c.tag: (r.result, r.note) for c, r in found.items()} == {
        TAG: ("success", ""),
        "v2": ("failure", ""),
        "v3": (None, "revision main is not a commit id (7 to 40 hex digits)"),
    }


def test_no_lookups_mean_no_results() -> None:
    assert results_for([CANDIDATE], {}) == {}


def result_with(states: set[str], deployed: bool = True, late: set[str] = frozenset()) -> VersionResult:  # type: ignore[assignment]
    return VersionResult(
        CANDIDATE,
        frozenset(states),
        deployed=deployed,
        position=None if not states else (1, "", 1),
        late=frozenset(late),
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
    # states, deployed, late: (After, Parallel)
    "success": (({"success"}, True, set()), (True, True)),
    "failure": (({"failure"}, True, set()), (False, False)),
    "error": (({"error"}, True, set()), (False, False)),
    "contradictory": (({CONTRADICTORY}, True, set()), (False, False)),
    "in progress": (({"in_progress"}, True, set()), (False, True)),
    "pending": (({"pending"}, True, set()), (False, True)),
    "cancelled": (({"inactive"}, True, set()), (False, True)),
    "deployed, not baked": ((set(), True, set()), (False, True)),
    "not deployed": ((set(), False, set()), (False, False)),
    "tie success/in_progress": (({"success", "in_progress"}, True, set()), (False, True)),
    "tie success/failure": (({"success", "failure"}, True, set()), (False, False)),
    "tie in_progress/pending": (({"in_progress", "pending"}, True, set()), (False, True)),
    "success, late success": (({"success"}, True, {"success"}), (True, True)),
    "success, late failure": (({"success"}, True, {"failure"}), (False, False)),
    "success, late in progress": (({"success"}, True, {"in_progress"}), (False, True)),
    "not baked, late failure": ((set(), True, {"failure"}), (False, False)),
}


@pytest.mark.parametrize(("given_", "expected"), JUSTIFIED.values(), ids=JUSTIFIED.keys())
def test_after_needs_a_plain_success_and_parallel_a_deployment_that_did_not_fail(
    given_: tuple[set[str], bool, set[str]], expected: tuple[bool, bool]
) -> None:
    states, deployed, late = given_
    result = result_with(states, deployed, late)
    assert (is_justified("After", result), is_justified("Parallel", result)) == expected


# release_candidates and candidate_revisions


def test_release_candidates_are_read_with_their_revisions_and_digests() -> None:
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
                {"tag": "v2", "revision": "", "digest": ""},
                {"tag": "v3", "revision": 42, "digest": 7},
            ]
        }
    }
    assert release_candidates(rollout) == (
        ReleaseCandidate(TAG, R1, "sha256:00ff"),
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
def test_candidate_whose_build_baked_successfully_is_allowed_by_full_id_or_abbreviation(
    revision: str,
) -> None:
    answer = lookup(revision, deployment(1, 0, succeeded(1)))
    assert tags_allowed("After", answer, candidates=[ReleaseCandidate(TAG, revision)]) == (TAG,)


@pytest.mark.parametrize("revision", ["main", OID[:6], f"main@sha1:{OID}", "v1.2.3", OID + "a"])
def test_candidate_whose_revision_is_not_a_commit_id_is_blocked_saying_so(revision: str) -> None:
    found = judged("Parallel", [ReleaseCandidate(TAG, revision)], CommitLookup(revision, None))
    assert found.tags == ()
    assert found.reasons[TAG] == f"blocked: revision {revision} is not a commit id (7 to 40 hex digits)"


def test_candidate_whose_abbreviation_github_cannot_resolve_is_blocked_saying_so() -> None:
    found = judged("Parallel", [CANDIDATE], lookup(R1, oid=None))
    assert found.tags == ()
    assert (
        found.reasons[TAG]
        == f"blocked: revision {R1} names no commit GitHub knows (not pushed, or an ambiguous short id)"
    )


@pytest.mark.parametrize("kind", ["After", "Parallel"])
def test_deployment_whose_payload_names_another_commit_does_not_allow_the_candidate(kind: Any) -> None:
    found = judged(kind, [CANDIDATE], lookup(R1, deployment(1, 0, succeeded(1), revision=OTHER_OID)))
    assert found.tags == ()
    assert found.reasons[TAG] == f"blocked: {TAG} ({R1}) has no record of this build in staging"


@pytest.mark.parametrize("kind", ["After", "Parallel"])
def test_deployment_whose_payload_revision_is_shorter_than_seven_does_not_count(kind: Any) -> None:
    assert tags_allowed(kind, lookup(R1, deployment(1, 0, succeeded(1), revision=OID[:6]))) == ()


@pytest.mark.parametrize("kind", ["After", "Parallel"])
def test_deployment_without_a_payload_revision_counts_for_its_commit(kind: Any) -> None:
    assert tags_allowed(kind, lookup(R1, deployment(1, 0, succeeded(1), revision=None))) == (TAG,)


# allowed_tags: reasons and shape


def test_allowed_tags_are_sorted_and_without_duplicates() -> None:
    candidates = [ReleaseCandidate("v2", R1), ReleaseCandidate("v1", R1), ReleaseCandidate("v2", R1)]
    answer = lookup(R1, deployment(1, 0, succeeded(1), tag="v1"), deployment(2, 0, succeeded(1), tag="v2"))
    assert tags_allowed("After", answer, candidates=candidates) == ("v1", "v2")


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
def test_reason_for_an_allowed_tag_names_the_build_and_upstream(kind: Any, words: str) -> None:
    found = judged(kind, [CANDIDATE], lookup(R1, deployment(1, 0, succeeded(1))))
    assert found.tags == (TAG,)
    assert found.reasons[TAG] == f"allowed: {TAG} ({R1}) {words}" + (
        "" if kind == "After" else " without failing"
    )


@pytest.mark.parametrize(
    ("deployments", "state"),
    [
        ((deployment(1, 0, failed(1)),), "bake result failure (history entry 1, deployment 1)"),
        ((deployment(1, 0, baking(1)),), "bake result in_progress (history entry 1, deployment 1)"),
        ((deployment(1, 0),), "bake result none yet"),
        (
            (deployment(1, 0, succeeded(1), failed(1)),),
            f"bake result {AMBIGUOUS} (history entry 1, deployment 1)",
        ),
        (
            (deployment(1, 0, succeeded(1), entry=9), deployment(2, 3, failed(4), entry=2)),
            "bake result success (history entry 9, deployment 1), and a record of an older entry created "
            "after it says failure",
        ),
        ((), "no record of this build"),
    ],
)
def test_reason_for_a_blocked_tag_names_the_build_upstream_and_result(
    deployments: tuple[DeploymentRecord, ...], state: str
) -> None:
    found = judged("After", [CANDIDATE], lookup(R1, *deployments))
    assert found.tags == ()
    assert found.reasons[TAG] == f"blocked: {TAG} ({R1}) has {state} in staging"


def test_every_candidate_gets_a_reason() -> None:
    candidates = [CANDIDATE, ReleaseCandidate("v2", R2), ReleaseCandidate("v3", None)]
    found = judged("After", candidates, lookup(R1, deployment(1, 0, succeeded(1))), lookup(R2, oid=OTHER_OID))
    assert set(found.reasons) == {TAG, "v2", "v3"}
    assert found.tags == (TAG,)


# allowed_tags: one tag, two revisions (the candidate list holds the tag twice)


def both_revisions(first: StatusRecord, second: StatusRecord) -> tuple[CommitLookup, ...]:
    return (
        lookup(R1, deployment(1, 0, first)),
        lookup(R2, deployment(2, 0, second, sha=OTHER_OID), oid=OTHER_OID),
    )


TWO_REVISIONS = [ReleaseCandidate(TAG, R1), ReleaseCandidate(TAG, R2)]


@pytest.mark.parametrize("kind", ["After", "Parallel"])
def test_tag_carried_by_two_revisions_is_allowed_when_both_are_justified(kind: Any) -> None:
    found = judged(kind, TWO_REVISIONS, *both_revisions(succeeded(1), succeeded(2)))
    assert found.tags == (TAG,)
    assert R1 in found.reasons[TAG]
    assert R2 in found.reasons[TAG]


@pytest.mark.parametrize("kind", ["After", "Parallel"])
@pytest.mark.parametrize("failing", [0, 1])
def test_tag_carried_by_two_revisions_is_blocked_when_either_is_not_justified(
    kind: Any, failing: int
) -> None:
    outcomes = [succeeded(1), succeeded(1)]
    outcomes[failing] = failed(1)
    found = judged(kind, TWO_REVISIONS, *both_revisions(*outcomes))
    assert found.tags == ()
    bad = (R1, R2)[failing]
    assert f"{TAG} ({bad}) has bake result failure" in found.reasons[TAG]


@pytest.mark.parametrize("kind", ["After", "Parallel"])
def test_tag_carried_by_a_revision_and_by_an_entry_without_one_is_blocked(kind: Any) -> None:
    candidates = [CANDIDATE, ReleaseCandidate(TAG, None)]
    assert judged(kind, candidates, lookup(R1, deployment(1, 0, succeeded(1)))).tags == ()


def test_tag_with_one_revision_in_progress_is_blocked_for_after_and_allowed_for_parallel() -> None:
    answer = both_revisions(succeeded(1), baking(1))
    assert judged("After", TWO_REVISIONS, *answer).tags == ()
    assert judged("Parallel", TWO_REVISIONS, *answer).tags == (TAG,)


# allowed_tags: statuses tied within one second


def test_success_tied_with_in_progress_blocks_after_and_allows_parallel() -> None:
    answer = lookup(R1, deployment(1, 0, succeeded(5), baking(5)))
    assert tags_allowed("After", answer) == ()
    assert tags_allowed("Parallel", answer) == (TAG,)


@pytest.mark.parametrize("failure", [failed(5), status("error", 5, "Bake failed")], ids=["failure", "error"])
@pytest.mark.parametrize("kind", ["After", "Parallel"])
def test_success_tied_with_a_failure_blocks_both_kinds(kind: Any, failure: StatusRecord) -> None:
    for listed in ((succeeded(5), failure), (failure, succeeded(5))):
        assert tags_allowed(kind, lookup(R1, deployment(1, 0, *listed))) == ()


def test_success_one_second_after_a_failure_is_not_a_tie() -> None:
    assert tags_allowed("After", lookup(R1, deployment(1, 0, failed(5), succeeded(6)))) == (TAG,)


# allowed_tags: vetoes (by tag)


def test_vetoed_tag_is_blocked_with_the_veto_as_the_reason() -> None:
    found = allowed_tags(
        "After",
        "staging",
        [CANDIDATE],
        results_for([CANDIDATE], {R1: lookup(R1, deployment(1, 0, succeeded(1)))}),
        {TAG: "held back"},
    )
    assert found.tags == ()
    assert found.reasons[TAG] == f"blocked: {TAG}: held back"


def test_veto_of_a_tag_that_is_blocked_anyway_keeps_the_upstream_reason() -> None:
    found = allowed_tags(
        "After",
        "staging",
        [CANDIDATE],
        results_for([CANDIDATE], {R1: lookup(R1, deployment(1, 0, failed(1)))}),
        {TAG: "held back"},
    )
    assert found.reasons[TAG].startswith(f"blocked: {TAG} ({R1}) has bake result failure")


def test_veto_of_another_tag_does_not_block() -> None:
    results = results_for([CANDIDATE], {R1: lookup(R1, deployment(1, 0, succeeded(1)))})
    assert allowed_tags("After", "staging", [CANDIDATE], results, {REBUILD: "held"}).tags == (TAG,)


# Properties: Invariant 3 (safety) and Invariant 4 (recompute, don't accumulate), against an
# independent restatement of the rules. Each generated record knows whether it is of its revision's
# commit (the generator decides from how it built the sha and the payload, not from `counts_for`),
# and which build (tag, digest) it records; statuses and creation fall into few seconds so ties are
# common, and entries into few ids so duplicates and late records are too.


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
TAGS = ("v1", "v2", "v3")
DIGESTS = (None, "sha256:aa", "sha256:bb")
STATES = ("success", "success", "failure", "in_progress", "error", "pending", "queued", "inactive", "SUCCESS")
DESCRIPTIONS = (
    None,
    "",
    "Bake succeeded",
    "Bake succeeded",
    "Bake failed: x",
    "Baking in progress",
    "Deploying",
    "Bake cancelled",
    "Deployment successful",
)
# Three seconds only: statuses of one deployment and deployments of one revision often tie.
seconds = st.integers(min_value=0, max_value=2)
statuses_st = st.builds(StatusRecord, st.sampled_from(STATES), st.sampled_from(DESCRIPTIONS), seconds.map(at))


@dataclass(frozen=True)
class Made:
    """What a generated record is, by construction."""

    of_commit: bool
    tag: str | None
    digest: str | None
    entry: int | None


@dataclass(frozen=True)
class Generated:
    """GitHub's answer (revision -> lookup) and, per deployment id, what the record is."""

    lookups: Mapping[str, CommitLookup]
    made: Mapping[int, Made]


@st.composite
def answers(draw: st.DrawFn) -> Generated:
    ids = iter(draw(st.lists(st.integers(1, 10_000), min_size=40, max_size=40, unique=True)))
    lookups, made = {}, {}
    for revision in REVISIONS:
        if revision.oid is None:
            lookups[revision.name] = CommitLookup(revision.name, None)
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
            tag = draw(st.sampled_from((*TAGS, None)))
            digest = draw(st.sampled_from(DIGESTS))
            entry = draw(st.sampled_from((1, 2, 3, None)))
            statuses = draw(st.lists(statuses_st, max_size=4))
            if statuses and draw(st.booleans()):
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
                tag=tag,
                digest=digest,
                entry=entry,
            )
            made[record.id] = Made(
                own_commit and claim in {"none", "full", "abbreviation"}, tag, digest, entry
            )
            records.append(record)
        lookups[revision.name] = CommitLookup(revision.name, revision.oid, tuple(records))
    return Generated(lookups, made)


KUBERIK = {
    "Bake succeeded": {"success"},
    "Bake failed": {"failure"},
    "Baking in progress": {"in_progress"},
    "Deploying": {"in_progress", "pending"},
    "Bake cancelled": {"inactive"},
}


def _said(s: StatusRecord) -> str | None:
    """Restated: kuberik's prefix decides whether a status says anything; its state must agree."""
    prefix = (s.description or "").split(":")[0]
    state = s.state.lower()
    if prefix not in KUBERIK or (state == "inactive" and prefix != "Bake cancelled"):
        return None
    return state if state in KUBERIK[prefix] else "contradicts"


def _newest(records: list[DeploymentRecord]) -> set[str]:
    said = [(s.created_at, r) for d in records for s in d.statuses if (r := _said(s)) is not None]
    if not said:
        return set()
    last = max(at for at, _ in said)
    return {r for at, r in said if at == last}


def restated(generated: Generated, candidate: ReleaseCandidate) -> tuple[bool, set[str], set[str]]:
    """Independent restatement for one candidate: (a record is of its build, what the newest entry
    says, what records of older entries created after the newest entry's first record say)."""
    found = generated.lookups.get(candidate.revision or "")
    if found is None or found.oid is None:
        return False, set(), set()
    mine = [
        d
        for d in found.deployments
        if (m := generated.made[d.id]).of_commit
        and m.tag == candidate.tag
        and m.entry is not None
        and (m.digest is None or candidate.digest is None or m.digest == candidate.digest)
    ]
    if not mine:
        return False, set(), set()
    top = max(generated.made[d.id].entry or 0 for d in mine)
    newest = [d for d in mine if generated.made[d.id].entry == top]
    first = min(d.id for d in newest)
    late: set[str] = set()
    for d in mine:
        if generated.made[d.id].entry != top and d.id > first:
            late |= _newest([d])
    return True, _newest(newest), late


def justified_restated(kind: str, generated: Generated, candidate: ReleaseCandidate) -> bool:
    deployed, states, late = restated(generated, candidate)
    if kind == "After":
        return states == {"success"} and late <= {"success"}
    return deployed and not (states | late) & {"failure", "error", "contradicts"}


candidates_st = st.lists(
    st.builds(
        ReleaseCandidate,
        st.sampled_from(TAGS),
        st.sampled_from((*(r.name for r in REVISIONS), None)),
        st.sampled_from(DIGESTS),
    ),
    max_size=6,
)
kinds = st.sampled_from(["After", "Parallel"])


@PROPERTY_SETTINGS
@given(kind=kinds, generated=answers(), candidates=candidates_st)
def test_allowed_tags_are_exactly_those_every_entry_of_which_is_justified_upstream(
    kind: Any, generated: Generated, candidates: list[ReleaseCandidate]
) -> None:
    found = allowed_tags(kind, "staging", candidates, results_for(candidates, generated.lookups))
    expected = {
        tag
        for tag in {c.tag for c in candidates}
        if all(justified_restated(kind, generated, c) for c in candidates if c.tag == tag)
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
    results = results_for(candidates, generated.lookups)
    after = allowed_tags("After", "staging", candidates, results).tags
    assert set(after) <= set(allowed_tags("Parallel", "staging", candidates, results).tags)


@PROPERTY_SETTINGS
@given(kind=kinds, generated=answers(), candidates=candidates_st)
def test_only_records_of_the_very_build_can_allow_a_tag(
    kind: Any, generated: Generated, candidates: list[ReleaseCandidate]
) -> None:
    found = allowed_tags(kind, "staging", candidates, results_for(candidates, generated.lookups))
    for tag in found.tags:
        for candidate in (c for c in candidates if c.tag == tag):
            lookup_ = generated.lookups[candidate.revision or ""]
            assert any(generated.made[d.id].tag == tag for d in lookup_.deployments)


@st.composite
def shuffled(draw: st.DrawFn, generated: Generated) -> dict[str, CommitLookup]:
    """The same answer listed in another order: deployments, and statuses within each."""
    out = {}
    for revision, found in generated.lookups.items():
        records = [
            replace(d, statuses=tuple(draw(st.permutations(d.statuses))))
            for d in draw(st.permutations(found.deployments))
        ]
        out[revision] = replace(found, deployments=tuple(records))
    return out


@PROPERTY_SETTINGS
@given(kind=kinds, generated=answers(), candidates=candidates_st, data=st.data())
def test_results_and_allowed_tags_do_not_depend_on_the_order_github_lists_anything(
    kind: Any, generated: Generated, candidates: list[ReleaseCandidate], data: st.DataObject
) -> None:
    reordered = data.draw(shuffled(generated))
    assert results_for(candidates, reordered) == results_for(candidates, generated.lookups)
    assert allowed_tags(kind, "staging", candidates, results_for(candidates, reordered)) == allowed_tags(
        kind, "staging", candidates, results_for(candidates, generated.lookups)
    )


TIED = (
    deployment(2, 0, failed(1), succeeded(1), github_inactive(1), entry=3),
    deployment(1, 0, succeeded(1), baking(1), entry=3),
    deployment(3, 0, revision=OTHER_OID, entry=4),
)


@pytest.mark.parametrize("kind", ["After", "Parallel"])
def test_every_listing_of_records_and_statuses_tied_within_one_second_gives_one_answer(kind: Any) -> None:
    answers_seen = set()
    for records in itertools.permutations(TIED):
        for listings in itertools.product(*(itertools.permutations(d.statuses) for d in records)):
            relisted = [replace(d, statuses=s) for d, s in zip(records, listings, strict=True)]
            result = result_of(*relisted)
            answers_seen.add((result, tags_allowed(kind, lookup(R1, *relisted))))
    assert answers_seen == {
        (VersionResult(CANDIDATE, frozenset({"failure", "success", "in_progress"}), True, (3, at(1), 2)), ()),
    }


@PROPERTY_SETTINGS
@given(generated=answers(), candidates=candidates_st, data=st.data())
def test_listing_a_deployment_twice_changes_nothing(
    generated: Generated, candidates: list[ReleaseCandidate], data: st.DataObject
) -> None:
    doubled = {}
    for revision, found in generated.lookups.items():
        extra = (
            data.draw(st.lists(st.sampled_from(found.deployments), max_size=3)) if found.deployments else []
        )
        doubled[revision] = replace(found, deployments=(*found.deployments, *extra))
    assert results_for(candidates, doubled) == results_for(candidates, generated.lookups)


@PROPERTY_SETTINGS
@given(kind=kinds, generated=answers(), candidates=candidates_st, which=st.sampled_from(REVISIONS[:3]))
def test_a_newer_failed_entry_of_a_build_removes_it_whatever_came_before(
    kind: Any, generated: Generated, candidates: list[ReleaseCandidate], which: Revision
) -> None:
    assert which.oid is not None
    newest = max(generated.made, default=0) + 1
    candidate = ReleaseCandidate("v1", which.name)
    failing = deployment(newest, 5, failed(7), baking(6), sha=which.oid, tag="v1", entry=99)
    lookups = dict(generated.lookups)
    lookups[which.name] = replace(
        lookups[which.name], deployments=(*lookups[which.name].deployments, failing)
    )
    found = results_for([*candidates, candidate], lookups)
    assert not is_justified(kind, found[candidate])
    assert "v1" not in allowed_tags(kind, "staging", [*candidates, candidate], found).tags


@PROPERTY_SETTINGS
@given(kind=kinds, generated=answers(), candidates=candidates_st, vetoed=st.sets(st.sampled_from(TAGS)))
def test_vetoes_only_ever_remove_tags(
    kind: Any, generated: Generated, candidates: list[ReleaseCandidate], vetoed: set[str]
) -> None:
    results = results_for(candidates, generated.lookups)
    free = allowed_tags(kind, "staging", candidates, results).tags
    held = allowed_tags(kind, "staging", candidates, results, dict.fromkeys(vetoed, "held")).tags
    assert set(held) <= set(free)
    assert set(free) - set(held) <= vetoed
