"""Unit, scenario and property tests of shared/evidence.py: what a gate remembers of the GitHub answers
it acted on, so that a lagging answer (a replica that has not seen the newest statuses) can narrow the
gate but never re-open it, while nothing can pin it shut for longer than `VETO_TTL_SECONDS`.

The Environment is the `prod` fixture (`After staging`) unless a test says otherwise. Scenarios act
on answers the way the recompute does: plan, apply the merge patch, read the gate again.
`at(s)`/`epoch(s)` are the same moment as GitHub's `createdAt` and as the recompute's `now`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.bake import (
    CommitLookup,
    DeploymentRecord,
    ReleaseCandidate,
    RevisionResult,
    StatusRecord,
    allowed_tags,
    results_for,
)
from shared.evidence import (
    CLOCK_SKEW_SECONDS,
    EVIDENCE_ANNOTATION,
    LEGACY_WATERMARK_ANNOTATION,
    VETO_TTL_SECONDS,
    Evidence,
    Veto,
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
CANDIDATES = (ReleaseCandidate("v1", R1), ReleaseCandidate("v2", R2))


def annotated(evidence: Evidence | str) -> dict[str, str]:
    text = evidence if isinstance(evidence, str) else evidence.to_annotation()
    return {**wanted_annotations(), EVIDENCE_ANNOTATION: text}


def evidence_of(raw_gate: dict[str, Any]) -> Evidence:
    return read_evidence(RolloutGate.from_raw(raw_gate))


def act(
    raw_gate: dict[str, Any],
    lookups: Sequence[CommitLookup],
    now: float,
    env: Environment | None = None,
    candidates: tuple[ReleaseCandidate, ...] = CANDIDATES,
) -> tuple[dict[str, Any], Recomputed]:
    """Recompute from this answer at `now` (seconds after 10:00) and apply the write, as the shell does."""
    recomputed = plan_recompute(
        env or environment(), RolloutGate.from_raw(raw_gate), candidates, results_for(lookups), epoch(now)
    )
    plan = recomputed.plan
    return (merge_patch(raw_gate, plan.patch) if plan.action == "update" else raw_gate), recomputed


def allowed(raw_gate: dict[str, Any]) -> list[str] | None:
    found: list[str] | None = raw_gate["spec"].get("allowedVersions")
    return found


def result(states: set[str], position: tuple[str, int, str] | None, deployed: bool = True) -> RevisionResult:
    return RevisionResult(R1, frozenset(states), deployed=deployed, position=position)


FRESH = gate_raw(allowed=[])  # carries evidence for the prod fixture's upstream, no vetoes
BAKED = deployment(1, 0, succeeded(10))
"""The older deployment of R1: baked successfully at 10."""


def newer(*statuses: StatusRecord) -> DeploymentRecord:
    """The newer deployment of R1, created at 20."""
    return deployment(2, 20, *statuses)


# to_annotation / read_evidence


def test_evidence_is_written_as_compact_json_with_its_vetoes() -> None:
    evidence = Evidence(KEY, {R1: Veto((at(20), 2, at(25)), int(epoch(25)) + TTL)})
    assert json.loads(evidence.to_annotation()) == {
        "upstream": "myorg/myapp kuberik/myapp/staging After",
        "vetoes": {R1: {"at": [at(20), 2, at(25)], "until": "2026-05-15T10:05:25Z"}},
    }
    assert " " not in evidence.to_annotation().replace(KEY, "")


def test_equal_evidence_is_written_as_equal_text_whatever_the_order_of_its_vetoes() -> None:
    one, two = Veto((at(1), 1, at(2)), int(epoch(300))), Veto((at(3), 2, at(4)), int(epoch(301)))
    assert (
        Evidence(KEY, {R1: one, R2: two}).to_annotation() == Evidence(KEY, {R2: two, R1: one}).to_annotation()
    )


def test_evidence_reads_back_as_written() -> None:
    evidence = Evidence(KEY, {R1: Veto((at(20), 2, at(25)), int(epoch(325))), R2: Veto((at(0), 9, at(1)), 7)})
    assert read_evidence(gate(annotations=annotated(evidence))) == evidence


positions = st.tuples(st.integers(0, 10**6).map(at), st.integers(0, 2**53), st.integers(0, 10**6).map(at))
vetoes_st = st.dictionaries(
    st.text(min_size=1, max_size=12), st.builds(Veto, positions, st.integers(0, 2**32))
)


@PROPERTY_SETTINGS
@given(upstream=st.none() | st.text(max_size=40), vetoes=vetoes_st)
def test_any_evidence_reads_back_as_written(upstream: str | None, vetoes: dict[str, Veto]) -> None:
    evidence = Evidence(upstream, vetoes)
    assert read_evidence(gate(annotations=annotated(evidence))) == evidence


def test_gate_without_evidence_has_none() -> None:
    assert read_evidence(gate(annotations=wanted_annotations())) == Evidence(None)


def veto_text(deployment_id: str) -> str:
    """Evidence whose one veto has `deployment_id` written as is (not necessarily JSON)."""
    veto = f'{{"at": ["{at(0)}", {deployment_id}, "{at(1)}"], "until": "{at(300)}"}}'
    return f'{{"upstream": "{KEY}", "vetoes": {{"{R1}": {veto}}}}}'


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
    "veto not an object": json.dumps({"upstream": KEY, "vetoes": {R1: "held"}}),
    "veto without at": json.dumps({"upstream": KEY, "vetoes": {R1: {"until": at(300)}}}),
    "veto without until": json.dumps({"upstream": KEY, "vetoes": {R1: {"at": [at(0), 1, at(1)]}}}),
    "at too short": json.dumps({"upstream": KEY, "vetoes": {R1: {"at": [at(0), 1], "until": at(300)}}}),
    "at id not a number": json.dumps(
        {"upstream": KEY, "vetoes": {R1: {"at": [at(0), "x", at(1)], "until": at(9)}}}
    ),
    "at id null": json.dumps({"upstream": KEY, "vetoes": {R1: {"at": [at(0), None, at(1)], "until": at(9)}}}),
    "at id NaN": veto_text("NaN"),
    "at id of 5000 digits": veto_text("1" * 5000),
    "until in epoch seconds": json.dumps(
        {"upstream": KEY, "vetoes": {R1: {"at": [at(0), 1, at(1)], "until": 9}}}
    ),
    "until not a time": json.dumps(
        {"upstream": KEY, "vetoes": {R1: {"at": [at(0), 1, at(1)], "until": "soon"}}}
    ),
    "until null": json.dumps({"upstream": KEY, "vetoes": {R1: {"at": [at(0), 1, at(1)], "until": None}}}),
    "nested beyond the recursion limit": "[" * 100_000 + "]" * 100_000,
    "at id Infinity": veto_text("Infinity"),
    "at id 1e400": veto_text("1e400"),
}


@pytest.mark.parametrize("text", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_unreadable_evidence_is_no_evidence(text: str) -> None:
    assert read_evidence(gate(annotations=annotated(text))) == Evidence(None)


@pytest.mark.parametrize("upstream", [5, None, [KEY], {"key": KEY}])
def test_evidence_whose_upstream_is_not_a_string_names_no_upstream_and_vetoes_nothing(
    upstream: object,
) -> None:
    text = json.dumps({"upstream": upstream, "vetoes": {R1: {"at": [at(0), 1, at(1)], "until": at(200)}}})
    evidence = read_evidence(gate(annotations=annotated(text)))
    assert evidence.upstream is None
    assert vetoes_in_force(evidence, KEY, epoch(100)) == {}


# vetoes_in_force

VETO = Veto((at(20), 2, at(25)), int(epoch(25)) + TTL)


def test_vetoes_of_the_same_upstream_are_in_force_until_they_expire() -> None:
    evidence = Evidence(KEY, {R1: VETO})
    assert vetoes_in_force(evidence, KEY, epoch(30)) == {R1: VETO}
    assert vetoes_in_force(evidence, KEY, epoch(25 + TTL)) == {R1: VETO}
    assert vetoes_in_force(evidence, KEY, epoch(25 + TTL + 1)) == {}


@pytest.mark.parametrize(
    "upstream",
    [None, "myorg/myapp kuberik/myapp/staging Parallel", "myorg/myapp kuberik/myapp/qa After", KEY.upper()],
)
def test_vetoes_recorded_for_another_upstream_are_dropped(upstream: str | None) -> None:
    assert vetoes_in_force(Evidence(upstream, {R1: VETO}), KEY, epoch(30)) == {}


def test_veto_claiming_to_outlive_the_ttl_and_the_clock_skew_is_not_believed() -> None:
    now = epoch(30)
    horizon = int(now) + TTL + CLOCK_SKEW_SECONDS
    believed = Veto(VETO.position, horizon)
    pinning = Veto(VETO.position, horizon + 1)
    assert vetoes_in_force(Evidence(KEY, {R1: believed, R2: pinning}), KEY, now) == {R1: believed}


# vetoed: which justified revisions this answer may not allow yet

HELD = {R1: Veto((at(20), 2, at(25)), int(epoch(325)))}


@pytest.mark.parametrize(
    "position",
    [(at(0), 1, at(10)), (at(20), 2, at(24)), (at(20), 2, at(25)), (at(20), 1, at(30)), None],
    ids=["older-deployment", "older-status", "same-status", "same-second-lower-id", "no-position"],
)
def test_justified_result_no_newer_than_the_veto_is_held_back(position: tuple[str, int, str] | None) -> None:
    justified = result({"success"} if position else set(), position)
    held = vetoed(HELD, {R1: justified}, "After" if position else "Parallel")
    assert set(held) == {R1}
    assert "lagging" in held[R1]
    assert at(25) in held[R1]
    assert "2026-05-15T10:05:25Z" in held[R1]


@pytest.mark.parametrize(
    "position",
    [(at(20), 2, at(26)), (at(20), 3, at(21)), (at(21), 1, at(22))],
    ids=["status", "id", "deployment"],
)
def test_justified_result_strictly_newer_than_the_veto_is_not_held_back(
    position: tuple[str, int, str],
) -> None:
    assert vetoed(HELD, {R1: result({"success"}, position)}, "After") == {}


def test_unjustified_or_missing_results_are_not_listed_as_vetoed() -> None:
    assert vetoed(HELD, {R1: result({"failure"}, (at(0), 1, at(1)))}, "After") == {}
    assert vetoed(HELD, {}, "After") == {}


# next_evidence: what acting on an answer leaves behind


def test_unjustified_result_within_the_ttl_leaves_a_veto_until_ttl_after_its_status() -> None:
    found = next_evidence(KEY, {}, {R1: result({"failure"}, (at(20), 2, at(25)))}, "After", epoch(30))
    assert found == Evidence(KEY, {R1: Veto((at(20), 2, at(25)), int(epoch(25)) + TTL)})


def test_unjustified_result_older_than_the_ttl_leaves_no_veto_since_every_replica_has_it() -> None:
    old = {R1: result({"failure"}, (at(20), 2, at(25)))}
    assert next_evidence(KEY, {}, old, "After", epoch(25 + TTL + 1)) == Evidence(KEY)
    assert next_evidence(KEY, {}, old, "After", epoch(25 + TTL)).vetoes != {}


def test_status_stamped_in_the_future_is_held_back_ttl_from_now_at_most() -> None:
    ahead = {R1: result({"failure"}, (at(20), 2, at(5000)))}
    found = next_evidence(KEY, {}, ahead, "After", epoch(30))
    assert found.vetoes[R1].until == int(epoch(30)) + TTL


def test_status_with_an_unreadable_time_is_held_back_ttl_from_now_at_most() -> None:
    garbled = {R1: result({"failure"}, ("yesterday", 2, "a while ago"))}
    assert next_evidence(KEY, {}, garbled, "After", epoch(30)).vetoes[R1].until == int(epoch(30)) + TTL


def test_newer_unjustified_result_moves_the_veto_and_an_older_one_keeps_it() -> None:
    newer_failure = result({"failure"}, (at(20), 2, at(40)))
    moved = next_evidence(KEY, HELD, {R1: newer_failure}, "After", epoch(50))
    assert moved.vetoes[R1] == Veto((at(20), 2, at(40)), int(epoch(40)) + TTL)
    older_failure = result({"failure"}, (at(0), 1, at(5)))
    assert next_evidence(KEY, HELD, {R1: older_failure}, "After", epoch(50)).vetoes == HELD


def test_strictly_newer_justified_result_lifts_the_veto_and_an_older_one_does_not() -> None:
    lifted = next_evidence(KEY, HELD, {R1: result({"success"}, (at(20), 2, at(26)))}, "After", epoch(50))
    assert lifted == Evidence(KEY)
    kept = next_evidence(KEY, HELD, {R1: result({"success"}, (at(0), 1, at(10)))}, "After", epoch(50))
    assert kept.vetoes == HELD


def test_results_without_a_position_leave_vetoes_as_they_are() -> None:
    found = next_evidence(
        KEY, HELD, {R1: result(set(), None), R2: result(set(), None, deployed=False)}, "After", epoch(30)
    )
    assert found == Evidence(KEY, HELD)


def test_next_evidence_names_the_upstream_it_was_computed_for() -> None:
    assert next_evidence("other", {}, {}, "Parallel", epoch(0)) == Evidence("other")


# Scenarios: acting on answers as the recompute does


@pytest.mark.parametrize(
    ("newest", "lagging"),
    [
        ((failed(25),), ()),
        ((failed(25),), (newer(),)),
        ((baking(25),), ()),
        ((baking(25),), (newer(),)),
        ((succeeded(22), status("error", 25)), (newer(succeeded(22)),)),
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
    assert evidence_of(raw).vetoes == {R1: Veto((at(20), 2, at(25)), int(epoch(25)) + TTL)}
    raw, recomputed = act(raw, [lookup(R1, BAKED, *lagging)], now=40)
    assert allowed(raw) == []
    assert "lagging" in recomputed.allowed.reasons["v1"]
    assert evidence_of(raw).vetoes == {R1: Veto((at(20), 2, at(25)), int(epoch(25)) + TTL)}


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
    raw, _ = act(start, [lookup(R1, deployment(1, 0, baking(5)), newer(failed(25)))], now=30, env=env)
    raw, _ = act(raw, [lookup(R1, deployment(1, 0, baking(5)))], now=40, env=env)
    assert allowed(raw) == []


@pytest.mark.parametrize(
    "newest_answer",
    [
        (BAKED, newer(failed(25), succeeded(26))),
        (BAKED, newer(failed(25)), deployment(3, 30, succeeded(31))),
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
    pinned = Evidence(KEY, {R1: Veto((at(9000), 99, at(9000)), int(epoch(now)) + until)})
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
    vetoes = {R1: Veto((at(9000), 99, at(9000)), int(epoch(30)) + TTL)}
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
        [lookup(R1, BAKED), lookup(R2, deployment(3, 5, succeeded(6), sha=OTHER_OID), oid=OTHER_OID)],
        [lookup(R1, deployment(1, -500, failed(-400)))],
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
DESCRIPTIONS = {"inactive": (None, "Bake cancelled")}


@dataclass(frozen=True)
class History:
    events: tuple[tuple[str, Any], ...]

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
            by_oid[oid].append(
                DeploymentRecord(deployment_id, oid, {"version": {"revision": oid}}, created, tuple(statuses))
            )
        return [lookup(R1, *by_oid[OID]), lookup(R2, *by_oid[OTHER_OID], oid=OTHER_OID)]


@st.composite
def histories(draw: st.DrawFn) -> History:
    second = 0
    events: list[tuple[str, Any]] = []
    made: list[int] = []
    for _ in range(draw(st.integers(1, 12))):
        second += draw(st.sampled_from([0, 0, 0, 1, 5]))
        if not made or draw(st.integers(0, 2)) == 0:
            made.append(len(made) + 1)
            events.append(("deployment", (made[-1], draw(st.sampled_from([OID, OTHER_OID])), second)))
        else:
            state = draw(st.sampled_from(STATES))
            description = draw(st.sampled_from(DESCRIPTIONS.get(state, (f"Bake {state}",))))
            events.append(
                ("status", (draw(st.sampled_from(made)), StatusRecord(state, description, at(second))))
            )
    return History(tuple(events))


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
        justified = allowed_tags(kind, "staging", candidates, results_for(history.answer(newest))).tags
        assert set(allowed(raw) or ()) <= set(justified), (length, newest)
        assert tuple(allowed(raw) or ()) == recomputed.plan.allowed_after
