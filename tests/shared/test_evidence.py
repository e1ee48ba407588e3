"""Unit, scenario and property tests of shared/evidence.py: what a gate remembers of the GitHub answers
it acted on, so that a lagging answer (a replica that has not seen the newest statuses) can narrow the
gate but never re-open it, while nothing can pin it shut for longer than `VETO_TTL_SECONDS`.

The Environment is the `prod` fixture (`After staging`) unless a test says otherwise. Scenarios act
on answers the way the recompute does: plan, apply the merge patch, read the gate again.
`at(s)`/`epoch(s)` are the same moment on GitHub's clock: a status's `createdAt`, and the `Date` of the
answer being acted on (`now`). stagegate's own clock appears nowhere: it is not an input.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.bake import (
    CommitLookup,
    DeploymentRecord,
    Position,
    ReleaseCandidate,
    StatusRecord,
    VersionResult,
    allowed_tags,
    results_for,
)
from shared.evidence import (
    CLOCK_SKEW_SECONDS,
    EVIDENCE_ANNOTATION,
    LEGACY_PREFIX,
    LEGACY_WATERMARK_ANNOTATION,
    VETO_TTL_SECONDS,
    Evidence,
    Veto,
    github_now,
    next_evidence,
    read_evidence,
    vetoed,
    vetoes_in_force,
)
from shared.recompute import Recomputed, plan_recompute
from shared.upstream import upstream_key
from shared.views import Environment, RolloutGate
from tests.shared.builders import (
    OID,
    OTHER_OID,
    at,
    baking,
    computed_for,
    deployment,
    environment,
    epoch,
    failed,
    gate,
    gate_raw,
    lookup,
    merge_patch,
    status,
    succeeded,
    wanted_annotations,
)

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TTL = VETO_TTL_SECONDS


def prod_key() -> str:
    key = upstream_key(environment())
    assert key is not None
    return key


KEY = prod_key()
R1, R2 = OID[:7], OTHER_OID[:7]
V1, V2 = ReleaseCandidate("v1", R1), ReleaseCandidate("v2", R2)
CANDIDATES = (V1, V2)


def annotated(evidence: Evidence | str) -> dict[str, str]:
    text = evidence if isinstance(evidence, str) else evidence.to_annotation()
    return {**wanted_annotations(), EVIDENCE_ANNOTATION: text}


def evidence_of(raw_gate: dict[str, Any]) -> Evidence:
    return read_evidence(RolloutGate.from_raw(raw_gate))


def act(
    raw_gate: dict[str, Any],
    lookups: Sequence[CommitLookup],
    now: float | None,
    env: Environment | None = None,
    candidates: tuple[ReleaseCandidate, ...] = CANDIDATES,
) -> tuple[dict[str, Any], Recomputed]:
    """Recompute from this answer, which GitHub gave at `now` (seconds after 10:00 on its clock; None:
    no `Date`), and apply the write, as the shell does."""
    answer = {
        found.revision: replace(found, answered_at=None if now is None else epoch(now)) for found in lookups
    }
    recomputed = plan_recompute(
        env or environment(),
        RolloutGate.from_raw(raw_gate),
        candidates,
        results_for(candidates, answer),
        github_now(answer.values()),
    )
    plan = recomputed.plan
    return (merge_patch(raw_gate, plan.patch) if plan.action == "update" else raw_gate), recomputed


def allowed(raw_gate: dict[str, Any]) -> list[str] | None:
    found: list[str] | None = raw_gate["spec"].get("allowedVersions")
    return found


def result(
    states: set[str], position: Position | None, deployed: bool = True
) -> dict[ReleaseCandidate, VersionResult]:
    return {V1: VersionResult(V1, frozenset(states), deployed=deployed, position=position)}


def rec(id: int, second: float, *statuses: StatusRecord, entry: int | None = None) -> DeploymentRecord:
    """A record of the build `v1` of `R1`: history entry `entry` (default: its id)."""
    return deployment(id, second, *statuses, tag="v1", entry=id if entry is None else entry)


FRESH = gate_raw(allowed=[])  # carries evidence for the prod fixture's upstream, no vetoes
BAKED = rec(1, 0, succeeded(10))
"""The older record of v1 (history entry 1): baked successfully at 10."""


def newer(*statuses: StatusRecord) -> DeploymentRecord:
    """The newer record of v1 (history entry 2), created at 20."""
    return rec(2, 20, *statuses)


# to_annotation / read_evidence

POSITION = (2, at(25), 2)
"""History entry 2, status created at 25, on deployment 2."""


def test_evidence_is_written_as_compact_json_with_its_vetoes() -> None:
    evidence = Evidence(KEY, {"v1": Veto(POSITION, int(epoch(25)) + TTL)})
    assert json.loads(evidence.to_annotation()) == {
        "upstream": "myorg/myapp kuberik/myapp/staging After",
        "vetoes": {"v1": {"at": [2, at(25), 2], "until": "2026-05-15T10:05:25Z"}},
    }
    assert " " not in evidence.to_annotation().replace(KEY, "")


def test_equal_evidence_is_written_as_equal_text_whatever_the_order_of_its_vetoes() -> None:
    one, two = Veto((1, at(2), 1), int(epoch(300))), Veto((3, at(4), 2), int(epoch(301)))
    assert (
        Evidence(KEY, {"v1": one, "v2": two}).to_annotation()
        == Evidence(KEY, {"v2": two, "v1": one}).to_annotation()
    )


def test_evidence_reads_back_as_written() -> None:
    evidence = Evidence(KEY, {"v1": Veto(POSITION, int(epoch(325))), "v2": Veto((9, at(1), 9), 7)})
    assert read_evidence(gate(annotations=annotated(evidence))) == evidence


positions = st.tuples(st.integers(0, 2**53), st.integers(0, 10**6).map(at), st.integers(0, 2**53))
vetoes_st = st.dictionaries(
    st.text(min_size=1, max_size=12).filter(lambda key: not key.startswith(LEGACY_PREFIX)),
    st.builds(Veto, st.none() | positions, st.integers(0, 2**32)),
)


@PROPERTY_SETTINGS
@given(upstream=st.none() | st.text(max_size=40), vetoes=vetoes_st)
def test_any_evidence_reads_back_as_written(upstream: str | None, vetoes: dict[str, Veto]) -> None:
    evidence = Evidence(upstream, vetoes)
    assert read_evidence(gate(annotations=annotated(evidence))) == evidence


def test_gate_without_evidence_has_none() -> None:
    assert read_evidence(gate(annotations=wanted_annotations())) == Evidence(None)


def test_a_veto_written_before_versions_were_told_apart_holds_its_revision_until_it_expires() -> None:
    # The earlier format keyed vetoes by revision, at (deployment createdAt, id, status createdAt).
    text = json.dumps({"upstream": KEY, "vetoes": {R1: {"at": [at(20), 2, at(25)], "until": at(25 + TTL)}}})
    evidence = read_evidence(gate(annotations=annotated(text)))
    assert evidence == Evidence(KEY, {LEGACY_PREFIX + R1: Veto(None, int(epoch(25 + TTL)))})
    raw = gate_raw(allowed=[], annotations=annotated(text))
    newest_success = [lookup(R1, BAKED, rec(3, 40, succeeded(41)))]
    raw, recomputed = act(raw, newest_success, now=60)
    assert allowed(raw) == [], "a legacy veto cannot be superseded, only outlived"
    assert "lagging" in recomputed.allowed.reasons["v1"]
    raw, _ = act(raw, newest_success, now=25 + TTL + 1)
    assert allowed(raw) == ["v1"]


def veto_text(entry: str) -> str:
    """Evidence whose one veto has `entry` written as is (not necessarily JSON)."""
    veto = f'{{"at": [{entry}, "{at(1)}", 2], "until": "{at(300)}"}}'
    return f'{{"upstream": "{KEY}", "vetoes": {{"v1": {veto}}}}}'


def one_veto(veto: object) -> str:
    return json.dumps({"upstream": KEY, "vetoes": {"v1": veto}})


UNREADABLE = {
    "empty": "",
    "not JSON": "observed 10:05",
    "legacy watermark text": "2026-05-15T10:00:00Z",
    "a list": "[]",
    "null": "null",
    "a number": "1",
    "a string": '"myorg/myapp kuberik/myapp/staging After"',
    "no upstream": '{"vetoes": {}}',
    "vetoes a list": json.dumps({"upstream": KEY, "vetoes": []}),
    "vetoes null": json.dumps({"upstream": KEY, "vetoes": None}),
    "veto not an object": one_veto("held"),
    "veto without at": one_veto({"until": at(300)}),
    "veto without until": one_veto({"at": [1, at(1), 2]}),
    "at too short": one_veto({"at": [1, at(1)], "until": at(300)}),
    "at not a list": one_veto({"at": "1", "until": at(300)}),
    "at deployment not a number": one_veto({"at": [1, at(1), "x"], "until": at(9)}),
    "at entry null": one_veto({"at": [None, at(1), 2], "until": at(9)}),
    "at entry NaN": veto_text("NaN"),
    "at entry of 5000 digits": veto_text("1" * 5000),
    "until in epoch seconds": one_veto({"at": [1, at(1), 2], "until": 9}),
    "until not a time": one_veto({"at": [1, at(1), 2], "until": "soon"}),
    "until null": one_veto({"at": [1, at(1), 2], "until": None}),
    "nested beyond the recursion limit": "[" * 100_000 + "]" * 100_000,
    "at entry Infinity": veto_text("Infinity"),
    "at entry 1e400": veto_text("1e400"),
}


@pytest.mark.parametrize("text", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_unreadable_evidence_is_no_evidence(text: str) -> None:
    assert read_evidence(gate(annotations=annotated(text))) == Evidence(None)


@pytest.mark.parametrize("upstream", [5, None, [KEY], {"key": KEY}])
def test_evidence_whose_upstream_is_not_a_string_names_no_upstream_and_vetoes_nothing(
    upstream: object,
) -> None:
    text = json.dumps({"upstream": upstream, "vetoes": {"v1": {"at": [1, at(1), 2], "until": at(200)}}})
    evidence = read_evidence(gate(annotations=annotated(text)))
    assert evidence.upstream is None
    assert vetoes_in_force(evidence, KEY, epoch(100)) == {}


# github_now: GitHub's time of an answer


def test_githubs_time_is_the_date_of_the_answer() -> None:
    assert github_now([lookup(R1, BAKED, answered=30), lookup(R2, answered=31)]) == epoch(30)


def test_without_a_date_githubs_time_is_the_newest_moment_the_answer_shows() -> None:
    assert github_now([lookup(R1, BAKED, newer(failed(25))), lookup(R2, oid=OTHER_OID)]) == epoch(25)


def test_an_empty_answer_without_a_date_has_no_time() -> None:
    assert github_now([lookup(R1, oid=None)]) is None
    assert github_now([]) is None


# vetoes_in_force

VETO = Veto(POSITION, int(epoch(25)) + TTL)


def test_vetoes_of_the_same_upstream_are_in_force_until_they_expire_on_githubs_clock() -> None:
    evidence = Evidence(KEY, {"v1": VETO})
    assert vetoes_in_force(evidence, KEY, epoch(30)) == {"v1": VETO}
    assert vetoes_in_force(evidence, KEY, epoch(25 + TTL)) == {"v1": VETO}
    assert vetoes_in_force(evidence, KEY, epoch(25 + TTL + 1)) == {}


def test_without_githubs_time_no_veto_expires() -> None:
    assert vetoes_in_force(Evidence(KEY, {"v1": Veto(POSITION, 7)}), KEY, None) == {"v1": Veto(POSITION, 7)}


@pytest.mark.parametrize(
    "upstream",
    [None, "myorg/myapp kuberik/myapp/staging Parallel", "myorg/myapp kuberik/myapp/qa After", KEY.upper()],
)
def test_vetoes_recorded_for_another_upstream_are_dropped(upstream: str | None) -> None:
    assert vetoes_in_force(Evidence(upstream, {"v1": VETO}), KEY, epoch(30)) == {}
    assert vetoes_in_force(Evidence(upstream, {"v1": VETO}), KEY, None) == {}


def test_veto_claiming_to_outlive_the_ttl_and_the_clock_skew_is_not_believed() -> None:
    now = epoch(30)
    horizon = int(now) + TTL + CLOCK_SKEW_SECONDS
    believed = Veto(VETO.position, horizon)
    pinning = Veto(VETO.position, horizon + 1)
    assert vetoes_in_force(Evidence(KEY, {"v1": believed, "v2": pinning}), KEY, now) == {"v1": believed}


# vetoed: which justified tags this answer may not allow yet

HELD = {"v1": Veto(POSITION, int(epoch(325)))}


@pytest.mark.parametrize(
    "position",
    [(1, at(10), 1), (2, at(24), 2), (2, at(25), 2), (2, at(25), 1), None],
    ids=["older-entry", "older-status", "same-status", "same-second-lower-deployment", "no-position"],
)
def test_justified_result_no_newer_than_the_veto_is_held_back(position: Position | None) -> None:
    justified = result({"success"} if position else set(), position)
    held = vetoed(HELD, justified, "After" if position else "Parallel")
    assert set(held) == {"v1"}
    assert "lagging" in held["v1"]
    assert at(25) in held["v1"]
    assert "2026-05-15T10:05:25Z" in held["v1"]


@pytest.mark.parametrize(
    "position", [(2, at(26), 2), (2, at(25), 3), (3, at(1), 1)], ids=["status", "deployment", "entry"]
)
def test_justified_result_strictly_newer_than_the_veto_is_not_held_back(position: Position) -> None:
    assert vetoed(HELD, result({"success"}, position), "After") == {}


def test_unjustified_or_missing_results_are_not_listed_as_vetoed() -> None:
    assert vetoed(HELD, result({"failure"}, (1, at(1), 1)), "After") == {}
    assert vetoed(HELD, {}, "After") == {}


def test_a_veto_holds_only_its_own_tag() -> None:
    other = ReleaseCandidate("v1-rebuild", R1)
    justified = {other: VersionResult(other, frozenset({"success"}), True, (1, at(1), 1))}
    assert vetoed(HELD, justified, "After") == {}


# next_evidence: what acting on an answer leaves behind


def test_unjustified_result_within_the_ttl_leaves_a_veto_until_ttl_after_its_status() -> None:
    found = next_evidence(KEY, {}, result({"failure"}, POSITION), "After", epoch(30))
    assert found == Evidence(KEY, {"v1": Veto(POSITION, int(epoch(25)) + TTL)})


def test_unjustified_result_older_than_the_ttl_leaves_no_veto_since_every_replica_has_it() -> None:
    old = result({"failure"}, POSITION)
    assert next_evidence(KEY, {}, old, "After", epoch(25 + TTL + 1)) == Evidence(KEY)
    assert next_evidence(KEY, {}, old, "After", epoch(25 + TTL)).vetoes != {}


def test_without_githubs_time_an_unjustified_result_leaves_a_veto_ttl_after_its_status() -> None:
    found = next_evidence(KEY, {}, result({"failure"}, POSITION), "After", None)
    assert found.vetoes["v1"] == Veto(POSITION, int(epoch(25)) + TTL)


def test_status_stamped_after_the_answer_is_held_back_ttl_from_the_answer_at_most() -> None:
    ahead = result({"failure"}, (2, at(5000), 2))
    assert next_evidence(KEY, {}, ahead, "After", epoch(30)).vetoes["v1"].until == int(epoch(30)) + TTL


def test_status_with_an_unreadable_time_is_held_back_ttl_from_the_answer_at_most() -> None:
    garbled = result({"failure"}, (2, "a while ago", 2))
    assert next_evidence(KEY, {}, garbled, "After", epoch(30)).vetoes["v1"].until == int(epoch(30)) + TTL


def test_newer_unjustified_result_moves_the_veto_and_an_older_one_keeps_it() -> None:
    moved = next_evidence(KEY, HELD, result({"failure"}, (2, at(40), 2)), "After", epoch(50))
    assert moved.vetoes["v1"] == Veto((2, at(40), 2), int(epoch(40)) + TTL)
    assert next_evidence(KEY, HELD, result({"failure"}, (1, at(5), 1)), "After", epoch(50)).vetoes == HELD


def test_strictly_newer_justified_result_lifts_the_veto_and_an_older_one_does_not() -> None:
    assert next_evidence(KEY, HELD, result({"success"}, (2, at(26), 2)), "After", epoch(50)) == Evidence(KEY)
    kept = next_evidence(KEY, HELD, result({"success"}, (1, at(10), 1)), "After", epoch(50))
    assert kept.vetoes == HELD


def test_results_without_a_position_leave_vetoes_as_they_are() -> None:
    results = {
        V1: VersionResult(V1, frozenset(), deployed=True),
        V2: VersionResult(V2, frozenset(), deployed=False),
    }
    assert next_evidence(KEY, HELD, results, "After", epoch(30)) == Evidence(KEY, HELD)


def test_next_evidence_names_the_upstream_it_was_computed_for() -> None:
    assert next_evidence("other", {}, {}, "Parallel", epoch(0)) == Evidence("other")


# Scenarios: acting on answers as the recompute does


@pytest.mark.parametrize(
    ("newest", "lagging"),
    [
        ((failed(25),), ()),
        ((succeeded(22), failed(25)), (newer(succeeded(22)),)),
        ((baking(25),), ()),
        ((succeeded(22), baking(25)), (newer(succeeded(22)),)),
        ((succeeded(22), status("error", 25, "Bake failed")), (newer(succeeded(22)),)),
    ],
    ids=[
        "failure/deployment-missing",
        "failure/status-missing",
        "baking/deployment-missing",
        "baking/status-missing",
        "error-after-success/error-missing",
    ],
)
def test_lagging_answer_cannot_re_allow_what_an_acted_on_answer_showed_not_succeeding(
    newest: tuple[StatusRecord, ...], lagging: tuple[DeploymentRecord, ...]
) -> None:
    # Without the evidence, the lagging answer alone would allow v1: the veto is what holds it back.
    assert allowed(act(FRESH, [lookup(R1, BAKED, *lagging)], now=40)[0]) == ["v1"]
    raw, _ = act(FRESH, [lookup(R1, BAKED, newer(*newest))], now=30)
    assert allowed(raw) == []
    assert evidence_of(raw).vetoes == {"v1": Veto(POSITION, int(epoch(25)) + TTL)}
    raw, recomputed = act(raw, [lookup(R1, BAKED, *lagging)], now=40)
    assert allowed(raw) == []
    assert "lagging" in recomputed.allowed.reasons["v1"]
    assert evidence_of(raw).vetoes == {"v1": Veto(POSITION, int(epoch(25)) + TTL)}


def test_answers_lagging_by_different_amounts_cannot_re_allow_in_turn() -> None:
    # Deployment 2 went baking (22), succeeded (23), failed (25). The gate acted on the newest answer;
    # a replica far behind (baking) must not weaken the veto so that one less behind (success) passes.
    raw, _ = act(FRESH, [lookup(R1, BAKED, newer(baking(22), succeeded(23), failed(25)))], now=30)
    raw, _ = act(raw, [lookup(R1, BAKED, newer(baking(22)))], now=31)
    raw, recomputed = act(raw, [lookup(R1, BAKED, newer(baking(22), succeeded(23)))], now=32)
    assert allowed(raw) == []
    assert "lagging" in recomputed.allowed.reasons["v1"]


def test_parallel_lagging_answer_cannot_re_allow_a_revision_an_acted_on_answer_showed_failing() -> None:
    env = environment(relationship=("Parallel", "staging"))
    start = gate_raw(allowed=[], annotations={**wanted_annotations(env), **computed_for(env)})
    raw, _ = act(start, [lookup(R1, rec(1, 0, baking(5)), newer(failed(25)))], now=30, env=env)
    raw, _ = act(raw, [lookup(R1, rec(1, 0, baking(5)))], now=40, env=env)
    assert allowed(raw) == []


@pytest.mark.parametrize(
    "newest_answer",
    [
        (BAKED, newer(failed(25), succeeded(26))),
        (BAKED, newer(failed(25)), rec(3, 30, succeeded(31))),
    ],
    ids=["newer-status", "newer-deployment"],
)
def test_strictly_newer_success_lifts_the_veto(newest_answer: tuple[DeploymentRecord, ...]) -> None:
    raw, _ = act(FRESH, [lookup(R1, BAKED, newer(failed(25)))], now=30)
    raw, _ = act(raw, [lookup(R1, *newest_answer)], now=40)
    assert allowed(raw) == ["v1"]
    assert evidence_of(raw) == Evidence(KEY)


def test_success_tied_with_the_vetoed_failure_does_not_lift_the_veto() -> None:
    raw, _ = act(FRESH, [lookup(R1, BAKED, newer(failed(25)))], now=30)
    raw, _ = act(raw, [lookup(R1, BAKED, newer(failed(25), succeeded(25)))], now=40)
    assert allowed(raw) == []


@pytest.mark.parametrize(("now", "expected"), [(25 + TTL - 1, []), (25 + TTL, []), (25 + TTL + 1, ["v1"])])
def test_veto_expires_ttl_after_the_creation_of_the_status_it_remembers(
    now: int, expected: list[str]
) -> None:
    raw, _ = act(FRESH, [lookup(R1, BAKED, newer(baking(25)))], now=30)
    raw, _ = act(raw, [lookup(R1, BAKED)], now=now)
    assert allowed(raw) == expected


def test_deleting_the_newest_deployment_holds_the_revision_back_only_until_the_veto_expires() -> None:
    raw, _ = act(FRESH, [lookup(R1, BAKED, newer(failed(25)))], now=30)
    for now in (60, 120, 25 + TTL):
        raw, _ = act(raw, [lookup(R1, BAKED)], now=now)  # deployment 2 is gone for good
        assert allowed(raw) == [], now
    raw, _ = act(raw, [lookup(R1, BAKED)], now=25 + TTL + 1)
    assert allowed(raw) == ["v1"]
    assert evidence_of(raw) == Evidence(KEY)


@pytest.mark.parametrize(
    ("until", "expected"),
    [(TTL + CLOCK_SKEW_SECONDS, []), (TTL + CLOCK_SKEW_SECONDS + 1, ["v1"]), (10**9, ["v1"])],
    ids=["at-horizon", "beyond-horizon", "far-future"],
)
def test_hand_written_veto_cannot_pin_a_gate_beyond_ttl_and_clock_skew(
    until: int, expected: list[str]
) -> None:
    now = 100
    pinned = Evidence(KEY, {"v1": Veto((99, at(9000), 99), int(epoch(now)) + until)})
    raw, _ = act(gate_raw(allowed=[], annotations=annotated(pinned)), [lookup(R1, BAKED)], now=now)
    assert allowed(raw) == expected


@pytest.mark.parametrize(
    "other",
    [
        environment(relationship=("Parallel", "staging")),
        environment(relationship=("After", "qa")),
        environment(relationship=None),
    ],
    ids=["type", "environment", "no-relationship"],
)
def test_vetoes_recorded_for_another_upstream_do_not_hold_this_one_back(other: Environment) -> None:
    vetoes = {"v1": Veto((99, at(9000), 99), int(epoch(30)) + TTL)}
    start = gate_raw(allowed=[], annotations={**wanted_annotations(), **computed_for(other, vetoes)})
    raw, _ = act(start, [lookup(R1, BAKED)], now=30)
    assert allowed(raw) == ["v1"]
    assert evidence_of(raw) == Evidence(KEY)


@pytest.mark.parametrize(
    "text",
    ["{not json", "", "[]", "[" * 100_000 + "]" * 100_000, veto_text("Infinity")],
    ids=["syntax", "empty", "list", "deep", "infinity"],
)
def test_unreadable_evidence_holds_nothing_back_and_is_replaced(text: str) -> None:
    raw, _ = act(gate_raw(allowed=[], annotations=annotated(text)), [lookup(R1, BAKED)], now=30)
    assert allowed(raw) == ["v1"]
    assert evidence_of(raw) == Evidence(KEY)


@pytest.mark.parametrize(
    "answer",
    [
        [lookup(R1, BAKED, newer(failed(25))), lookup(R2, oid=OTHER_OID)],
        [
            lookup(R1, BAKED),
            lookup(R2, deployment(3, 5, succeeded(6), sha=OTHER_OID, tag="v2"), oid=OTHER_OID),
        ],
        [lookup(R1, rec(1, -500, failed(-400)))],
    ],
    ids=["recent-failure", "successes", "failure-older-than-the-ttl"],
)
def test_quiet_upstream_answering_the_same_again_writes_nothing(answer: list[CommitLookup]) -> None:
    raw, first = act(gate_raw(allowed=[], annotations=wanted_annotations()), answer, now=30)
    assert first.plan.action == "update"
    for now in (30, 31, 200):
        again, recomputed = act(raw, answer, now=now)
        assert recomputed.plan.action == "unchanged", now
        assert recomputed.plan.patch is None
        assert again == raw


def test_gate_recomputed_by_the_old_watermark_scheme_gets_evidence_and_loses_the_watermark() -> None:
    start = gate_raw(
        allowed=["v1"], annotations={**wanted_annotations(), LEGACY_WATERMARK_ANNOTATION: at(50)}
    )
    raw, _ = act(start, [lookup(R1, BAKED)], now=60)
    assert LEGACY_WATERMARK_ANNOTATION not in raw["metadata"]["annotations"]
    assert evidence_of(raw) == Evidence(KEY)
    assert allowed(raw) == ["v1"]


# Property: a lagging answer never re-allows what a newer answer acted on refused.
#
# The upstream's history is a sequence of events (a new deployment of R1 or R2, or a status on a
# deployment made earlier), stamped with non-decreasing seconds so ties are common. An answer is
# what a replica had seen: a prefix of the history. Acting on answers in any order, every tag the
# gate allows must be justified by the newest answer acted on so far (all within the TTL, as replica
# lag is bounded by it).

STATES = ("success", "success", "failure", "error", "in_progress", "pending", "inactive")
DESCRIPTIONS = {
    "success": ("Bake succeeded", "Deployment successful"),
    "failure": ("Bake failed",),
    "error": ("Bake failed", "crashed"),
    "in_progress": ("Baking in progress", "Deploying"),
    "pending": ("Deploying",),
    "inactive": (None, "Bake cancelled"),
}


@dataclass(frozen=True)
class History:
    events: tuple[tuple[str, Any], ...]
    tags: dict[int, str]
    entries: dict[int, int]

    def answer(self, length: int) -> list[CommitLookup]:
        """What a replica that has seen the first `length` events answers."""
        deployments: dict[int, tuple[str, str, list[StatusRecord]]] = {}
        for kind, event in self.events[:length]:
            if kind == "deployment":
                deployment_id, oid, second = event
                deployments[deployment_id] = (oid, at(second), [])
            else:
                deployment_id, record = event
                deployments[deployment_id][2].append(record)
        by_oid: dict[str, list[DeploymentRecord]] = {OID: [], OTHER_OID: []}
        for deployment_id, (oid, created, statuses) in deployments.items():
            payload = {
                "id": str(self.entries[deployment_id]),
                "version": {"tag": self.tags[deployment_id], "revision": oid},
            }
            by_oid[oid].append(DeploymentRecord(deployment_id, oid, payload, created, tuple(statuses)))
        return [lookup(R1, *by_oid[OID]), lookup(R2, *by_oid[OTHER_OID], oid=OTHER_OID)]


@st.composite
def histories(draw: st.DrawFn) -> History:
    second = 0
    events: list[tuple[str, Any]] = []
    made: list[int] = []
    tags: dict[int, str] = {}
    entries: dict[int, int] = {}
    for _ in range(draw(st.integers(1, 12))):
        second += draw(st.sampled_from([0, 0, 0, 1, 5]))
        if not made or draw(st.integers(0, 2)) == 0:
            made.append(len(made) + 1)
            tags[made[-1]] = draw(st.sampled_from(["v1", "v2"]))
            # Mostly in history order; sometimes a duplicate or a late record of an older entry.
            entries[made[-1]] = draw(st.sampled_from([made[-1], made[-1], max(1, made[-1] - 1), 1]))
            events.append(("deployment", (made[-1], draw(st.sampled_from([OID, OTHER_OID])), second)))
        else:
            state = draw(st.sampled_from(STATES))
            description = draw(st.sampled_from(DESCRIPTIONS[state]))
            events.append(
                ("status", (draw(st.sampled_from(made)), StatusRecord(state, description, at(second))))
            )
    return History(tuple(events), tags, entries)


candidate_sets = st.sampled_from(
    [
        CANDIDATES,
        (ReleaseCandidate("v1", R1), ReleaseCandidate("v1", R2), ReleaseCandidate("v2", R2)),
    ]
)


@PROPERTY_SETTINGS
@given(
    history=histories(),
    kind=st.sampled_from(["After", "Parallel"]),
    candidates=candidate_sets,
    data=st.data(),
)
def test_lagging_answers_never_re_allow_what_a_newer_answer_acted_on_refused(
    history: History, kind: Any, candidates: tuple[ReleaseCandidate, ...], data: st.DataObject
) -> None:
    env = environment(relationship=(kind, "staging"))
    raw = gate_raw(allowed=[], annotations={**wanted_annotations(env), **computed_for(env)})
    lengths = data.draw(st.lists(st.integers(0, len(history.events)), min_size=1, max_size=6))
    order = data.draw(st.sampled_from(["as drawn", "newest first", "newest first, then ever older"]))
    if order != "as drawn":
        # Acting on the newest answer first is what lagging answers must not undo.
        lengths.insert(0, lengths.pop(lengths.index(max(lengths))))
    if order == "newest first, then ever older":
        lengths.sort(reverse=True)
    now, newest = 100, 0
    for length in lengths:
        now += data.draw(st.integers(0, 20))
        raw, recomputed = act(raw, history.answer(length), now=now, env=env, candidates=candidates)
        newest = max(newest, length)
        newest_answer = {found.revision: found for found in history.answer(newest)}
        justified = allowed_tags(kind, "staging", candidates, results_for(candidates, newest_answer)).tags
        assert set(allowed(raw) or ()) <= set(justified), (length, newest)
        assert tuple(allowed(raw) or ()) == recomputed.plan.allowed_after
