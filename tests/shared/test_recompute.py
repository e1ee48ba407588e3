"""Unit and property tests of shared/recompute.py: the one write that makes a gate match its upstream.

The Environment is the `prod` fixture (`After staging`, deployment name `myapp`) unless a test says
otherwise. A plan's merge patch is applied the way the kube-apiserver applies it and the gate read
again, so the tests check the gate that would result, not only the patch.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.bake import (
    DeploymentRecord,
    ReleaseCandidate,
    StatusRecord,
    newest_status_time,
    results_by_revision,
)
from shared.recompute import (
    WATERMARK_ANNOTATION,
    Recomputed,
    deployment_name,
    github_environment,
    plan_recompute,
)
from shared.views import Environment, RolloutGate
from tests.shared.builders import (
    ABSENT,
    environment,
    environment_raw,
    gate,
    gate_raw,
    merge_patch,
    wanted_annotations,
)

PROPERTY_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CANDIDATES = (ReleaseCandidate("v1", "r1"), ReleaseCandidate("v2", "r2"), ReleaseCandidate("v0", None))


def at(minute: int) -> str:
    return f"2026-05-15T10:{minute:02d}:00Z"


def record(id: int, revision: str, minute: int, *statuses: tuple[str, int]) -> DeploymentRecord:
    """A staging deployment; statuses are `(state, minute)`, newest first."""
    return DeploymentRecord(
        id=id,
        sha=f"sha-{revision}",
        payload={"version": {"tag": "t", "revision": revision}},
        created_at=at(minute),
        statuses=tuple(StatusRecord(state, f"Bake {state}", at(m)) for state, m in statuses),
    )


def watermarked(allowed: Any, watermark: str | None, **kwargs: Any) -> dict[str, Any]:
    annotations = wanted_annotations()
    if watermark is not None:
        annotations[WATERMARK_ANNOTATION] = watermark
    return gate_raw(allowed=allowed, annotations=annotations, **kwargs)


def recompute(
    raw_gate: dict[str, Any],
    upstream: list[DeploymentRecord],
    candidates: tuple[ReleaseCandidate, ...] = CANDIDATES,
    env: Environment | None = None,
) -> Recomputed:
    return plan_recompute(
        env or environment(),
        RolloutGate.from_raw(raw_gate),
        candidates,
        results_by_revision(upstream),
        newest_status_time(upstream),
    )


def applied(raw_gate: dict[str, Any], recomputed: Recomputed) -> dict[str, Any]:
    """The gate after the plan, as the kube-apiserver would store it."""
    plan = recomputed.plan
    return merge_patch(raw_gate, plan.patch) if plan.action == "update" else raw_gate


# deployment_name / github_environment


def test_github_environment_is_kuberik_name_and_environment() -> None:
    assert deployment_name(environment()) == "kuberik/myapp"
    assert github_environment(environment(), "staging") == "kuberik/myapp/staging"


def test_kuberik_prefix_is_added_only_once() -> None:
    raw = environment_raw()
    raw["spec"]["name"] = "kuberik/myapp"
    env = Environment.from_raw(raw)
    assert deployment_name(env) == "kuberik/myapp"
    assert github_environment(env, "staging") == "kuberik/myapp/staging"


@pytest.mark.parametrize("name", [None, ""])
def test_deployment_name_falls_back_to_the_environment_name(name: str | None) -> None:
    raw = environment_raw("prod")
    if name is None:
        del raw["spec"]["name"]
    else:
        raw["spec"]["name"] = name
    assert github_environment(Environment.from_raw(raw), "staging") == "kuberik/prod/staging"


# plan_recompute


def test_success_upstream_opens_an_empty_gate_for_that_candidate_and_records_the_watermark() -> None:
    upstream = [record(1, "r1", 0, ("success", 5), ("in_progress", 1))]
    recomputed = recompute(gate_raw(allowed=[]), upstream)
    plan = recomputed.plan
    assert plan.action == "update"
    assert plan.patch == {
        "spec": {"allowedVersions": ["v1"]},
        "metadata": {"annotations": {WATERMARK_ANNOTATION: at(5)}},
    }
    assert plan.allowed_before == ()
    assert plan.allowed_after == ("v1",)
    assert plan.resource_version == "7"
    assert "staging" in plan.reason
    assert recomputed.allowed.reasons["v1"].startswith("allowed")
    assert recomputed.allowed.reasons["v2"].startswith("blocked")


def test_same_observation_again_changes_nothing() -> None:
    upstream = [record(1, "r1", 0, ("success", 5))]
    raw = applied(gate_raw(allowed=[]), recompute(gate_raw(allowed=[]), upstream))
    again = recompute(raw, upstream).plan
    assert again.action == "unchanged"
    assert again.patch is None
    assert again.allowed_after == ("v1",)
    assert "already" in again.reason


def test_later_failure_narrows_the_gate_and_moves_the_watermark() -> None:
    first = [record(1, "r1", 0, ("success", 5))]
    raw = applied(gate_raw(allowed=[]), recompute(gate_raw(allowed=[]), first))
    later = [record(1, "r1", 0, ("success", 5)), record(2, "r1", 8, ("failure", 9))]
    plan = recompute(raw, later).plan
    assert plan.action == "update"
    assert plan.allowed_before == ("v1",)
    assert plan.allowed_after == ()
    after = RolloutGate.from_raw(applied(raw, recompute(raw, later)))
    assert after.allowed_versions == ()
    assert after.annotations[WATERMARK_ANNOTATION] == at(9)


def test_newer_observation_with_the_same_result_only_moves_the_watermark() -> None:
    raw = watermarked(["v1"], at(5))
    plan = recompute(raw, [record(1, "r1", 0, ("inactive", 9), ("success", 5))]).plan
    assert plan.action == "update"
    assert plan.patch == {"metadata": {"annotations": {WATERMARK_ANNOTATION: at(9)}}}


def test_observation_older_than_the_watermark_never_widens() -> None:
    raw = watermarked([], at(20))
    plan = recompute(raw, [record(1, "r1", 0, ("success", 5))]).plan
    assert plan.action == "unchanged"
    assert plan.allowed_after == ()
    assert at(20) in plan.reason
    assert "kept" in plan.reason


def test_observation_without_any_status_never_widens_a_watermarked_gate() -> None:
    plan = recompute(
        watermarked(["v1"], at(20)),
        [record(1, "r2", 0)],
        env=environment(relationship=("Parallel", "staging")),
    ).plan
    assert plan.action == "unchanged"
    assert plan.allowed_after == ("v1",)
    assert "none" in plan.reason


def test_observation_older_than_the_watermark_may_narrow_but_keeps_the_watermark() -> None:
    raw = watermarked(["v1", "v2"], at(20))
    upstream = [record(1, "r1", 0, ("success", 5)), record(2, "r2", 6, ("failure", 7))]
    plan = recompute(raw, upstream).plan
    assert plan.action == "update"
    assert plan.allowed_after == ("v1",)
    assert plan.patch == {"spec": {"allowedVersions": ["v1"]}}
    after = RolloutGate.from_raw(applied(raw, recompute(raw, upstream)))
    assert after.annotations[WATERMARK_ANNOTATION] == at(20)


def test_null_gate_with_a_fresh_observation_becomes_a_list() -> None:
    plan = recompute(gate_raw(allowed=None), [record(1, "r2", 0, ("failure", 3))]).plan
    assert plan.action == "update"
    assert plan.allowed_after == ()
    assert plan.patch is not None
    assert plan.patch["spec"] == {"allowedVersions": []}


def test_null_gate_with_an_older_observation_is_still_closed() -> None:
    plan = recompute(watermarked(None, at(20)), [record(1, "r1", 0, ("success", 5))]).plan
    assert plan.allowed_after is not None
    assert set(plan.allowed_after) <= {"v1"}


def test_resource_version_read_with_the_gate_is_carried_in_every_plan() -> None:
    fresh = recompute(gate_raw(allowed=[], resource_version="4242"), [record(1, "r1", 0, ("success", 5))])
    stale = recompute(watermarked([], at(20), resource_version="4243"), [record(1, "r1", 0, ("success", 5))])
    assert (fresh.plan.action, fresh.plan.resource_version) == ("update", "4242")
    assert (stale.plan.action, stale.plan.resource_version) == ("unchanged", "4243")


def test_environment_without_relationship_has_no_recomputed_gate() -> None:
    with pytest.raises(ValueError, match="relationship"):
        plan_recompute(environment(relationship=None), gate(allowed=[]), CANDIDATES, {}, at(0))


@pytest.mark.parametrize("passing", [False, True, ABSENT])
def test_recompute_never_touches_passing(passing: Any) -> None:
    raw = gate_raw(allowed=[], passing=passing)
    recomputed = recompute(raw, [record(1, "r1", 0, ("success", 5))])
    assert recomputed.plan.patch is not None
    assert "passing" not in recomputed.plan.patch.get("spec", {})
    assert applied(raw, recomputed)["spec"].get("passing", ABSENT) is passing


def test_parallel_environment_opens_for_a_version_still_baking_upstream() -> None:
    env = environment(relationship=("Parallel", "staging"))
    plan = recompute(gate_raw(allowed=[]), [record(1, "r2", 0, ("in_progress", 1))], env=env).plan
    assert plan.allowed_after == ("v2",)


# Properties: Invariants 4, 5 and 6 over generated gates and observations

tags = st.sampled_from(["v0", "v1", "v2", "v3"])
revisions = st.sampled_from(["r1", "r2", "r3"])
states = st.sampled_from(["success", "failure", "error", "in_progress", "pending", "inactive"])
gate_allowed = st.none() | st.lists(tags, max_size=4, unique=True)
watermarks = st.none() | st.integers(min_value=0, max_value=30).map(at)


@st.composite
def upstreams(draw: st.DrawFn) -> list[DeploymentRecord]:
    count = draw(st.integers(min_value=0, max_value=5))
    return [
        record(
            i,
            draw(revisions),
            draw(st.integers(0, 30)),
            *sorted(
                draw(st.lists(st.tuples(states, st.integers(0, 30)), max_size=3)),
                key=lambda s: s[1],
                reverse=True,
            ),
        )
        for i in range(1, count + 1)
    ]


candidate_sets = st.lists(st.builds(ReleaseCandidate, tags, st.none() | revisions), max_size=5).map(tuple)
relationships = st.tuples(st.sampled_from(["After", "Parallel"]), st.just("staging"))


def check_plan(
    relationship: tuple[str, str],
    allowed: list[str] | None,
    watermark: str | None,
    upstream: list[DeploymentRecord],
    candidates: tuple[ReleaseCandidate, ...],
) -> None:
    raw = watermarked(allowed, watermark, passing=False)
    recomputed = recompute(raw, upstream, candidates, env=environment(relationship=relationship))
    plan, observed, before = recomputed.plan, newest_status_time(upstream), raw["spec"]["allowedVersions"]
    assert plan.action in {"update", "unchanged"}
    assert plan.resource_version == "7"
    assert plan.allowed_after is not None, "a recomputed gate is never null"
    after = RolloutGate.from_raw(applied(raw, recomputed))
    assert after.allowed_versions == plan.allowed_after
    assert after.passing is False
    assert after.rollout_name == "myapp"
    assert set(plan.allowed_after) <= {c.tag for c in candidates} | set(before or ())
    if observed < (watermark or "") and before is not None:
        assert set(plan.allowed_after) <= set(before), "an older observation widened the gate"
    else:
        assert plan.allowed_after == recomputed.allowed.tags
    assert after.annotations.get(WATERMARK_ANNOTATION, "") == max(watermark or "", observed)
    for key, value in wanted_annotations().items():
        assert after.annotations[key] == value


@PROPERTY_SETTINGS
@given(
    relationship=relationships,
    allowed=st.lists(tags, max_size=4, unique=True),
    watermark=watermarks,
    upstream=upstreams(),
    candidates=candidate_sets,
)
def test_recomputed_gate_is_never_null_never_stale_wider_and_leaves_the_rest_alone(
    relationship: tuple[str, str],
    allowed: list[str],
    watermark: str | None,
    upstream: list[DeploymentRecord],
    candidates: tuple[ReleaseCandidate, ...],
) -> None:
    check_plan(relationship, allowed, watermark, upstream, candidates)


@PROPERTY_SETTINGS
@given(
    relationship=relationships,
    allowed=gate_allowed,
    watermark=watermarks,
    upstream=upstreams(),
    candidates=candidate_sets,
)
@example(
    relationship=("After", "staging"),
    allowed=None,
    watermark=at(20),
    upstream=[record(1, "r1", 0, ("success", 5))],
    candidates=CANDIDATES,
)
def test_recomputed_gate_is_never_null_for_any_input(
    relationship: tuple[str, str],
    allowed: list[str] | None,
    watermark: str | None,
    upstream: list[DeploymentRecord],
    candidates: tuple[ReleaseCandidate, ...],
) -> None:
    check_plan(relationship, allowed, watermark, upstream, candidates)


@PROPERTY_SETTINGS
@given(
    allowed=gate_allowed,
    watermark=watermarks,
    upstream=upstreams(),
    candidates=candidate_sets,
    data=st.data(),
)
def test_recompute_does_not_depend_on_the_order_of_deployments(
    allowed: list[str] | None,
    watermark: str | None,
    upstream: list[DeploymentRecord],
    candidates: tuple[ReleaseCandidate, ...],
    data: st.DataObject,
) -> None:
    raw = watermarked(allowed, watermark)
    reordered = data.draw(st.permutations(upstream))
    assert recompute(raw, reordered, candidates) == recompute(raw, upstream, candidates)
