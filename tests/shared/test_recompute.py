"""Unit and property tests of shared/recompute.py: the one write that makes a gate match its upstream.

The Environment is the `prod` fixture (`After staging`, deployment name `myapp`) unless a test says
otherwise; its gate carries evidence for that upstream unless a test says otherwise. A plan's merge
patch is applied the way the kube-apiserver applies it and the gate read again, so the tests check
the gate that would result, not only the patch. `now` is given in seconds after 10:00 (`epoch`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.bake import (
    CommitLookup,
    DeploymentRecord,
    ReleaseCandidate,
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
    github_now,
    read_evidence,
)
from shared.recompute import Recomputed, plan_recompute
from shared.upstream import upstream_key
from shared.views import Environment, RolloutGate
from tests.shared.builders import (
    ABSENT,
    OID,
    OTHER_OID,
    at,
    baking,
    computed_for,
    deployment,
    environment,
    environment_raw,
    epoch,
    failed,
    gate,
    gate_raw,
    lookup,
    merge_patch,
    succeeded,
    wanted_annotations,
)

PROPERTY_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

R1, R2 = OID[:7], OTHER_OID[:7]
THIRD_OID = "c0ffee1d2e3f405162738495a6b7c8d9e0f1a2b3"
R3 = THIRD_OID[:7]
CANDIDATES = (ReleaseCandidate("v1", R1), ReleaseCandidate("v2", R2), ReleaseCandidate("v0", None))
KEY = upstream_key(environment())
NOW = 100


def recompute(
    raw_gate: dict[str, Any],
    lookups: Sequence[CommitLookup],
    candidates: tuple[ReleaseCandidate, ...] = CANDIDATES,
    env: Environment | None = None,
    now: float = NOW,
) -> Recomputed:
    """Plan from this answer, which GitHub gave at `now` (its `Date`), as the shell does."""
    answer = {found.revision: replace(found, answered_at=epoch(now)) for found in lookups}
    results = results_for(candidates, answer)
    return plan_recompute(
        env or environment(), RolloutGate.from_raw(raw_gate), candidates, results, github_now(answer.values())
    )


def build(record: DeploymentRecord, tag: str, sha: str) -> DeploymentRecord:
    """The record as one of the build `tag` of commit `sha`."""
    payload = {**(record.payload or {}), "version": {"tag": tag, "revision": sha}}
    return replace(record, sha=sha, payload=payload)


def applied(raw_gate: dict[str, Any], recomputed: Recomputed) -> dict[str, Any]:
    """The gate after the plan, as the kube-apiserver would store it."""
    plan = recomputed.plan
    return merge_patch(raw_gate, plan.patch) if plan.action == "update" else raw_gate


def r1(*deployments: DeploymentRecord) -> CommitLookup:
    """GitHub's answer for R1; its deployments are of the build v1."""
    return lookup(R1, *(build(d, "v1", OID) for d in deployments))


def r2(*deployments: DeploymentRecord) -> CommitLookup:
    """GitHub's answer for R2; its deployments are of the build v2 of R2's commit."""
    return lookup(R2, *(build(d, "v2", OTHER_OID) for d in deployments), oid=OTHER_OID)


# plan_recompute: what the write is


def test_success_upstream_opens_an_empty_gate_for_that_candidate() -> None:
    recomputed = recompute(gate_raw(allowed=[]), [r1(deployment(1, 0, succeeded(5), baking(1))), r2()])
    plan = recomputed.plan
    assert plan.action == "update"
    assert plan.patch == {"spec": {"allowedVersions": ["v1"]}}
    assert (plan.allowed_before, plan.allowed_after) == ((), ("v1",))
    assert plan.resource_version == "7"
    assert plan.reason == "set to ['v1'] from the bake results of staging (After)"
    assert recomputed.allowed.reasons["v1"].startswith("allowed")
    assert recomputed.allowed.reasons["v2"].startswith("blocked")
    assert recomputed.allowed.reasons["v0"].startswith("blocked")


@pytest.mark.parametrize(
    "annotations",
    [wanted_annotations(), {**wanted_annotations(), EVIDENCE_ANNOTATION: "garbage"}],
    ids=["absent", "unreadable"],
)
def test_gate_without_readable_evidence_gets_evidence_for_the_environments_upstream(
    annotations: dict[str, str],
) -> None:
    raw = gate_raw(allowed=[], annotations=annotations)
    recomputed = recompute(raw, [r1(deployment(1, 0, succeeded(5)))])
    assert recomputed.plan.patch == {
        "spec": {"allowedVersions": ["v1"]},
        "metadata": {"annotations": {EVIDENCE_ANNOTATION: Evidence(KEY).to_annotation()}},
    }
    assert read_evidence(RolloutGate.from_raw(applied(raw, recomputed))) == Evidence(KEY)


def test_same_answer_again_changes_nothing() -> None:
    answer = [r1(deployment(1, 0, succeeded(5)))]
    raw = applied(gate_raw(allowed=[]), recompute(gate_raw(allowed=[]), answer))
    again = recompute(raw, answer).plan
    assert again.action == "unchanged"
    assert again.patch is None
    assert again.allowed_after == ("v1",)
    assert again.reason == "allowed versions already ['v1']"


def test_later_failure_narrows_the_gate_and_records_a_veto() -> None:
    raw = applied(gate_raw(allowed=[]), recompute(gate_raw(allowed=[]), [r1(deployment(1, 0, succeeded(5)))]))
    later = [r1(deployment(1, 0, succeeded(5)), deployment(2, 8, failed(9)))]
    plan = recompute(raw, later).plan
    assert plan.action == "update"
    assert (plan.allowed_before, plan.allowed_after) == (("v1",), ())
    after = RolloutGate.from_raw(applied(raw, recompute(raw, later)))
    assert after.allowed_versions == ()
    assert read_evidence(after) == Evidence(
        KEY, {"v1": Veto((2, at(9), 2), int(epoch(9)) + VETO_TTL_SECONDS)}
    )


def test_refused_widening_still_narrows_to_what_the_answer_justifies() -> None:
    # The gate allows v1 and v2; an earlier answer saw R3 failing. This answer shows R1 failing now,
    # R2 still fine, and R3 successful but no newer than the failure seen: v3 stays out, v1 goes.
    candidates = (*CANDIDATES, ReleaseCandidate("v3", R3))
    held = {"v3": Veto((3, at(35), 3), int(epoch(35)) + VETO_TTL_SECONDS)}
    raw = gate_raw(allowed=["v1", "v2"], annotations={**wanted_annotations(), **computed_for(vetoes=held)})
    answer = [
        r1(deployment(1, 0, succeeded(5)), deployment(4, 40, failed(41))),
        r2(deployment(2, 10, succeeded(11))),
        lookup(R3, build(deployment(3, 30, succeeded(31)), "v3", THIRD_OID), oid=THIRD_OID),
    ]
    recomputed = recompute(raw, answer, candidates)
    assert recomputed.plan.allowed_after == ("v2",)
    assert RolloutGate.from_raw(applied(raw, recomputed)).allowed_versions == ("v2",)
    assert "lagging" in recomputed.allowed.reasons["v3"]


def test_old_allowed_tags_the_answer_does_not_justify_are_dropped() -> None:
    plan = recompute(gate_raw(allowed=["v1", "v2", "v9"]), [r1(deployment(1, 0, succeeded(5)))]).plan
    assert plan.allowed_after == ("v1",)


def test_null_gate_becomes_a_list() -> None:
    plan = recompute(gate_raw(allowed=None), [r2(deployment(1, 0, failed(3)))]).plan
    assert plan.action == "update"
    assert plan.allowed_after == ()
    assert plan.patch is not None
    assert plan.patch["spec"] == {"allowedVersions": []}


def test_null_gate_with_a_success_upstream_becomes_the_justified_list() -> None:
    plan = recompute(gate_raw(allowed=None), [r1(deployment(1, 0, succeeded(5)))]).plan
    assert plan.allowed_after == ("v1",)


@pytest.mark.parametrize("allowed", [[], ["v1"]], ids=["allowed-list-changes", "allowed-list-stays"])
def test_legacy_watermark_annotation_is_removed(allowed: list[str]) -> None:
    annotations = {**wanted_annotations(), **computed_for(), LEGACY_WATERMARK_ANNOTATION: at(50)}
    raw = gate_raw(allowed=allowed, annotations=annotations)
    recomputed = recompute(raw, [r1(deployment(1, 0, succeeded(5)))])
    assert recomputed.plan.action == "update"
    assert recomputed.plan.patch is not None
    assert recomputed.plan.patch["metadata"] == {"annotations": {LEGACY_WATERMARK_ANNOTATION: None}}
    after = applied(raw, recomputed)["metadata"]["annotations"]
    assert LEGACY_WATERMARK_ANNOTATION not in after
    assert after == {**wanted_annotations(), **computed_for()}


def test_write_of_evidence_alone_says_the_allowed_versions_stay() -> None:
    raw = gate_raw(allowed=["v1"], annotations=wanted_annotations())
    plan = recompute(raw, [r1(deployment(1, 0, succeeded(5)))]).plan
    assert plan.action == "update"
    assert plan.patch == {"metadata": {"annotations": {EVIDENCE_ANNOTATION: Evidence(KEY).to_annotation()}}}
    assert plan.reason == "allowed versions stay ['v1']; recorded what GitHub answered"


def test_gate_computed_for_another_upstream_starts_from_this_upstreams_answer() -> None:
    qa = environment(relationship=("After", "qa"))
    held = {"v1": Veto((9, at(90), 9), int(epoch(NOW)) + VETO_TTL_SECONDS)}
    raw = gate_raw(allowed=["v2"], annotations={**wanted_annotations(), **computed_for(qa, held)})
    recomputed = recompute(raw, [r1(deployment(1, 0, succeeded(5)))])
    assert recomputed.plan.allowed_after == ("v1",)
    assert read_evidence(RolloutGate.from_raw(applied(raw, recomputed))) == Evidence(KEY)


def test_resource_version_read_with_the_gate_is_carried_in_every_plan() -> None:
    answer = [r1(deployment(1, 0, succeeded(5)))]
    fresh = recompute(gate_raw(allowed=[], resource_version="4242"), answer)
    same = recompute(gate_raw(allowed=["v1"], resource_version="4243"), answer)
    assert (fresh.plan.action, fresh.plan.resource_version) == ("update", "4242")
    assert (same.plan.action, same.plan.resource_version) == ("unchanged", "4243")


def test_environment_without_relationship_has_no_recomputed_gate() -> None:
    with pytest.raises(ValueError, match="relationship"):
        plan_recompute(environment(relationship=None), gate(allowed=[]), CANDIDATES, {}, epoch(0))


@pytest.mark.parametrize("passing", [False, True, ABSENT])
def test_recompute_never_touches_passing(passing: Any) -> None:
    raw = gate_raw(allowed=[], passing=passing)
    recomputed = recompute(raw, [r1(deployment(1, 0, succeeded(5)))])
    assert recomputed.plan.patch is not None
    assert "passing" not in recomputed.plan.patch.get("spec", {})
    assert applied(raw, recomputed)["spec"].get("passing", ABSENT) is passing


def test_parallel_environment_opens_for_a_version_still_baking_upstream() -> None:
    env = environment(relationship=("Parallel", "staging"))
    raw = gate_raw(allowed=[], annotations={**wanted_annotations(env), **computed_for(env)})
    plan = recompute(raw, [r2(deployment(1, 0, baking(1)))], env=env).plan
    assert plan.allowed_after == ("v2",)
    assert plan.reason == "set to ['v2'] from the bake results of staging (Parallel)"


def test_evidence_names_the_upstream_of_an_environment_with_its_own_deployment_name() -> None:
    raw_env = environment_raw()
    raw_env["spec"]["name"] = "shop"
    raw_env["spec"]["backend"]["project"] = "MyOrg/Shop"
    env = Environment.from_raw(raw_env)
    raw = gate_raw(allowed=[])
    after = RolloutGate.from_raw(applied(raw, recompute(raw, [r1(deployment(1, 0, succeeded(5)))], env=env)))
    assert read_evidence(after).upstream == "myorg/shop kuberik/shop/staging After"


# Properties: Invariants 1, 3, 4, 5 and 6 over generated gates, evidence and answers

tags = st.sampled_from(["v0", "v1", "v2", "v3"])
REVISIONS = {R1: OID, R2: OTHER_OID, R3: THIRD_OID}
# Weighted towards success, so that answers often justify something and gates often widen.
STATES = ("success", "success", "success", "failure", "error", "in_progress", "pending", "inactive")
BAKE_DESCRIPTIONS = {
    "success": "Bake succeeded",
    "failure": "Bake failed",
    "error": "Bake failed",
    "in_progress": "Baking in progress",
    "pending": "Deploying",
    "inactive": "Bake cancelled",
}
# Null in one gate of four: most gates the recompute meets already hold a list.
gate_allowed = st.integers(0, 3).flatmap(
    lambda n: st.none() if n == 0 else st.lists(tags, max_size=4, unique=True)
)
relationships = st.tuples(st.sampled_from(["After", "Parallel"]), st.sampled_from(["staging", "qa"]))
seconds = st.integers(0, 40)


@st.composite
def answers(draw: st.DrawFn) -> list[CommitLookup]:
    """GitHub's answer for R1..R3: a few deployments each, statuses in any order, ties common."""
    ids = iter(range(1, 100))
    lookups = []
    for revision, oid in REVISIONS.items():
        records = [
            deployment(
                next(ids),
                draw(seconds),
                *(
                    StatusRecord(state, BAKE_DESCRIPTIONS[state], at(second))
                    for state, second in draw(
                        st.lists(st.tuples(st.sampled_from(STATES), seconds), max_size=3)
                    )
                ),
                sha=oid,
                tag=draw(tags),
                entry=draw(st.integers(1, 4)),
            )
            for _ in range(draw(st.integers(0, 3)))
        ]
        lookups.append(lookup(revision, *records, oid=oid))
    return lookups


veto_st = st.builds(
    Veto,
    st.tuples(st.integers(1, 4), seconds.map(at), st.integers(1, 12)),
    st.integers(-60, VETO_TTL_SECONDS + CLOCK_SKEW_SECONDS + 60).map(lambda d: int(epoch(NOW)) + d),
)
vetoes_st = st.dictionaries(tags, veto_st, max_size=3)


@st.composite
def evidence_annotations(draw: st.DrawFn, env: Environment) -> dict[str, str]:
    """No evidence, unreadable evidence, or evidence for this or another upstream with vetoes."""
    choice = draw(st.sampled_from(["absent", "unreadable", "this", "this", "this", "other"]))
    if choice == "absent":
        return {}
    if choice == "unreadable":
        return {EVIDENCE_ANNOTATION: draw(st.sampled_from(["", "{", "[]", '{"vetoes": {}}']))}
    assert env.relationship is not None
    flipped = "Parallel" if env.relationship.type == "After" else "After"
    other = environment(relationship=(flipped, env.relationship.environment))
    return computed_for(env if choice == "this" else other, draw(vetoes_st))


@st.composite
def gates(draw: st.DrawFn, env: Environment) -> dict[str, Any]:
    annotations = {**wanted_annotations(env), "team": "payments", **draw(evidence_annotations(env))}
    if draw(st.booleans()):
        annotations[LEGACY_WATERMARK_ANNOTATION] = at(draw(seconds))
    return gate_raw(
        allowed=draw(gate_allowed),
        passing=draw(st.sampled_from([True, False, ABSENT])),
        annotations=annotations,
        resource_version=str(draw(st.integers(1, 10**6))),
    )


candidate_sets = st.lists(
    st.builds(ReleaseCandidate, tags, st.sampled_from([*REVISIONS, None])), min_size=1, max_size=5
).map(tuple)


def check_plan(
    env: Environment,
    raw: dict[str, Any],
    answer: list[CommitLookup],
    candidates: tuple[ReleaseCandidate, ...],
) -> None:
    assert env.relationship is not None
    recomputed = recompute(raw, answer, candidates, env=env)
    plan = recomputed.plan
    assert plan.action in {"update", "unchanged"}
    assert plan.resource_version == raw["metadata"]["resourceVersion"]
    assert plan.allowed_after is not None, "a recomputed gate is never null"
    after_raw = applied(raw, recomputed)
    after = RolloutGate.from_raw(after_raw)
    assert after.allowed_versions == plan.allowed_after == recomputed.allowed.tags
    justified = allowed_tags(
        env.relationship.type,
        env.relationship.environment,
        candidates,
        results_for(candidates, {found.revision: found for found in answer}),
    )
    assert set(plan.allowed_after) <= set(justified.tags), "allowed a tag this answer does not justify"
    assert after_raw["spec"].get("passing", ABSENT) == raw["spec"].get("passing", ABSENT)
    assert after.rollout_name == "myapp"
    assert after.owner_references == RolloutGate.from_raw(raw).owner_references
    assert after.labels == RolloutGate.from_raw(raw).labels
    assert LEGACY_WATERMARK_ANNOTATION not in after.annotations
    assert read_evidence(after).upstream == upstream_key(env)
    assert after.annotations["team"] == "payments"
    for key, value in wanted_annotations(env).items():
        assert after.annotations[key] == value
    assert (plan.action == "unchanged") == (after_raw == raw)


@PROPERTY_SETTINGS
@given(relationship=relationships, answer=answers(), candidates=candidate_sets, data=st.data())
def test_recomputed_gate_is_never_null_only_what_the_answer_justifies_and_leaves_the_rest_alone(
    relationship: tuple[str, str],
    answer: list[CommitLookup],
    candidates: tuple[ReleaseCandidate, ...],
    data: st.DataObject,
) -> None:
    env = environment(relationship=relationship)
    check_plan(env, data.draw(gates(env)), answer, candidates)


@PROPERTY_SETTINGS
@given(relationship=relationships, answer=answers(), candidates=candidate_sets, data=st.data())
def test_quiet_upstream_answering_the_same_again_leaves_the_gate_unchanged(
    relationship: tuple[str, str],
    answer: list[CommitLookup],
    candidates: tuple[ReleaseCandidate, ...],
    data: st.DataObject,
) -> None:
    env = environment(relationship=relationship)
    raw = applied(start := data.draw(gates(env)), recompute(start, answer, candidates, env=env))
    again = recompute(raw, answer, candidates, env=env)
    assert again.plan.action == "unchanged", again.plan.patch
    assert again.plan.allowed_after == tuple(raw["spec"]["allowedVersions"])


@PROPERTY_SETTINGS
@given(answer=answers(), candidates=candidate_sets, data=st.data())
def test_recompute_does_not_depend_on_the_order_github_lists_deployments_and_statuses(
    answer: list[CommitLookup], candidates: tuple[ReleaseCandidate, ...], data: st.DataObject
) -> None:
    raw = data.draw(gates(environment()))
    reordered = [
        replace(
            found,
            deployments=tuple(
                replace(d, statuses=tuple(data.draw(st.permutations(d.statuses))))
                for d in data.draw(st.permutations(found.deployments))
            ),
        )
        for found in data.draw(st.permutations(answer))
    ]
    assert recompute(raw, reordered, candidates) == recompute(raw, answer, candidates)
