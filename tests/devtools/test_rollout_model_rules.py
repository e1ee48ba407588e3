"""The rollout model's pure rules, each against the Go function it ports (no cluster)."""

from __future__ import annotations

import pytest

from stagegate_dev.rollout_model import (
    ForceDeployUnavailable,
    RolloutModel,
    deployment_message,
    evaluate_gates,
    has_manual_deployment,
    next_release_candidates,
    select_wanted_release,
    set_condition,
    tags,
)


def versions(*names: str) -> list[dict]:
    return [{"tag": n} for n in names]


def rollout(name: str = "app", *, annotations: dict | None = None, wanted: str | None = None) -> dict:
    spec = {"releasesImagePolicy": {"name": name}} | ({"wantedVersion": wanted} if wanted is not None else {})
    return {"metadata": {"name": name, "annotations": annotations or {}}, "spec": spec}


def gate(name: str, rollout_name: str = "app", **spec: object) -> dict:
    return {"metadata": {"name": name}, "spec": {"rolloutRef": {"name": rollout_name}, **spec}}


def test_candidates_are_newest_first_and_newer_than_the_deployed_tag() -> None:
    releases = versions("v1", "v2", "v3")
    assert tags(next_release_candidates(releases, [])) == ("v3", "v2", "v1")
    assert tags(next_release_candidates(releases, [{"version": {"tag": "v2"}}])) == ("v3",)
    assert tags(next_release_candidates(releases, [{"version": {"tag": "v3"}}])) == ()


def test_a_deployed_tag_missing_from_the_releases_leaves_no_candidates() -> None:
    assert next_release_candidates(versions("v1", "v2"), [{"version": {"tag": "custom"}}]) == []


def test_null_allowed_versions_restricts_nothing_and_empty_list_blocks_all() -> None:
    candidates = versions("v3", "v2", "v1")
    open_gate = evaluate_gates(rollout(), [gate("open", passing=True)], candidates)
    assert (tags(open_gate.candidates), open_gate.passing) == (("v3", "v2", "v1"), True)
    assert open_gate.condition[1] == "AllGatesPassing"
    closed = evaluate_gates(rollout(), [gate("closed", passing=True, allowedVersions=[])], candidates)
    assert (tags(closed.candidates), closed.passing) == ((), True)
    assert closed.condition == (
        "False",
        "NoAllowedVersions",
        "No release candidates are allowed by all gates",
    )
    assert closed.summaries == [
        {
            "name": "closed",
            "passing": True,
            "allowedVersions": [],
            "message": "Gate does not allow any release candidate",
        }
    ]


def test_gates_intersect_and_gates_of_other_rollouts_are_ignored() -> None:
    gates = [
        gate("a", allowedVersions=["v1", "v2"]),
        gate("b", allowedVersions=["v2", "v3"]),
        gate("other", rollout_name="other", allowedVersions=[]),
    ]
    verdict = evaluate_gates(rollout(), gates, versions("v3", "v2", "v1"))
    assert tags(verdict.candidates) == ("v2",)
    assert [s["name"] for s in verdict.summaries] == ["a", "b"]


def test_a_gate_that_is_not_passing_blocks_but_filters_nothing() -> None:
    verdict = evaluate_gates(rollout(), [gate("g", passing=False, allowedVersions=[])], versions("v2", "v1"))
    assert (tags(verdict.candidates), verdict.passing) == (("v2", "v1"), False)
    assert verdict.condition[1] == "SomeGatesBlocking"
    assert verdict.summaries == [{"name": "g", "passing": False, "message": "Gate is not passing"}]


def test_bypass_of_a_candidate_passes_with_only_that_candidate() -> None:
    notes = {"rollout.kuberik.com/bypass-gates": "v2"}
    gates = [gate("g", passing=False), gate("h", allowedVersions=[])]
    verdict = evaluate_gates(rollout(annotations=notes), gates, versions("v3", "v2", "v1"))
    assert (tags(verdict.candidates), verdict.passing, verdict.bypassed) == (("v2",), True, "v2")
    assert verdict.condition == ("True", "GatesBypassed", "Gates bypassed for version v2")
    assert all(s["bypassGates"] for s in verdict.summaries)


def test_bypass_of_a_tag_that_is_no_candidate_is_ignored() -> None:
    notes = {"rollout.kuberik.com/bypass-gates": "v0"}
    verdict = evaluate_gates(rollout(annotations=notes), [gate("g", allowedVersions=[])], versions("v1"))
    assert (verdict.candidates, verdict.bypassed) == ([], None)


@pytest.mark.parametrize(
    ("notes", "wanted", "manual"),
    [
        ({}, None, False),
        ({}, "v9", True),
        ({"rollout.kuberik.com/force-deploy": "v1"}, None, True),
        ({"rollout.kuberik.com/force-deploy": ""}, None, False),
        ({"rollout.kuberik.com/bypass-gates": "v1"}, None, False),
    ],
)
def test_manual_deployment_is_wanted_version_or_non_empty_force_deploy(
    notes: dict, wanted: str | None, manual: bool
) -> None:
    assert has_manual_deployment(rollout(annotations=notes, wanted=wanted)) is manual


def test_wanted_version_beats_force_deploy_beats_gated_candidates() -> None:
    releases, gated = versions("v1", "v2"), versions("v2")
    forced = {"rollout.kuberik.com/force-deploy": "v1"}
    assert select_wanted_release(rollout(annotations=forced, wanted="v9"), releases, gated)[0] == "v9"
    assert select_wanted_release(rollout(annotations=forced), releases, gated)[0] == "v1"
    assert select_wanted_release(rollout(), releases, gated)[0] == "v2"
    assert select_wanted_release(rollout(), releases, [])[0] is None


def test_force_deploy_must_name_an_available_release() -> None:
    forced = {"rollout.kuberik.com/force-deploy": "v9"}
    with pytest.raises(ForceDeployUnavailable, match="force deploy version v9 is not in available releases"):
        select_wanted_release(rollout(annotations=forced), versions("v1"), versions("v1"))


def test_condition_transition_time_moves_only_when_its_status_changes() -> None:
    status: dict = {}
    set_condition(status, "Ready", "True", "A", "first", "t1")
    set_condition(status, "Ready", "True", "B", "second", "t2")
    assert status["conditions"] == [
        {"type": "Ready", "status": "True", "reason": "B", "message": "second", "lastTransitionTime": "t1"}
    ]
    set_condition(status, "Ready", "False", "C", "third", "t3")
    assert status["conditions"][0]["lastTransitionTime"] == "t3"


def test_deployment_messages_name_what_was_used() -> None:
    assert deployment_message({}, False, bypass=True, force=False, unblock=True) == (
        "Automatic deployment, with gate bypass, with failed bake unblock"
    )
    assert deployment_message({}, True, bypass=False, force=True, unblock=False) == (
        "Manual deployment, with force deploy"
    )
    notes = {"rollout.kuberik.com/deploy-message": "roll back"}
    assert deployment_message(notes, True, bypass=False, force=True, unblock=False) == "roll back"
    assert (
        deployment_message(notes, False, bypass=False, force=False, unblock=False) == "Automatic deployment"
    )


def test_unknown_semantics_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown semantics"):
        RolloutModel(None, "ns", semantics="latest")  # type: ignore[arg-type]
