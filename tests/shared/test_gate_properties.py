"""Property tests of the gate invariants (DESIGN.md, "Invariants") over generated Environments and gates.

Each generated gate knows how it was built (whose owner references it carries), so the properties
decide "owned" and "foreign" from the generator, not from the functions under test. A plan's merge
patch is applied to the gate's raw dict the way the kube-apiserver applies it (RFC 7386) and the
result re-read with `RolloutGate.from_raw`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from shared.errors import RetryableError
from shared.gate import GatePlan, fallback_gate_name, gate_name, new_gate, plan_gates
from shared.views import Environment, RolloutGate
from tests.shared.builders import (
    ABSENT,
    deployment_owner,
    env_owner,
    environment_raw,
    gate_raw,
    merge_patch,
    wanted_annotations,
)

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

dns_labels = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,14}[a-z0-9])?", fullmatch=True)
# Mostly short names; some of 245..253 characters, whose gate names are shortened and hashed
# (the cut at 232 characters falls inside the fourth label, so it may leave a trailing hyphen).
long_names = st.builds(
    lambda labels, tail: ".".join([*labels, tail]),
    st.lists(st.from_regex(r"[a-z0-9][-a-z0-9]{58}[a-z0-9]", fullmatch=True), min_size=4, max_size=4),
    st.from_regex(r"[a-z0-9]{1,9}", fullmatch=True),
)
env_names = dns_labels | long_names
tags = st.sampled_from(["v1", "v2", "v3", "main-1779290372-b797408"])
relationships = st.none() | st.tuples(st.sampled_from(["After", "Parallel"]), dns_labels)

# How a generated owner reference relates to the Environment under test.
OWNER_KINDS = ("ours", "ours-without-uid", "earlier", "other-env", "deployment", "other-group")
OURS = frozenset({"ours", "ours-without-uid"})


@st.composite
def environments(draw: st.DrawFn, relationship: Any = relationships) -> Environment:
    return Environment.from_raw(
        environment_raw(
            draw(env_names),
            uid=str(draw(st.uuids())),
            rollout=draw(dns_labels),
            relationship=draw(relationship),
        )
    )


def _owner(kind: str, env: Environment, controller: bool, block: bool) -> dict[str, Any]:
    other_uid = "00000000-0000-4000-8000-00000000000a"
    if kind == "ours":
        return env_owner(env.name, env.uid, controller=controller, block_owner_deletion=block)
    if kind == "ours-without-uid":
        return env_owner(env.name, "", controller=controller, block_owner_deletion=block)
    if kind == "earlier":
        return env_owner(env.name, other_uid, controller=controller, block_owner_deletion=block)
    if kind == "other-env":
        return env_owner(env.name + "-other", "00000000-0000-4000-8000-00000000000b", controller=controller)
    if kind == "other-group":
        return env_owner(env.name, other_uid, api_version="example.com/v1", controller=controller)
    return deployment_owner()


@dataclass(frozen=True)
class Generated:
    """A raw gate and how it was built."""

    raw: dict[str, Any]
    owner_kinds: tuple[str, ...]

    @property
    def name(self) -> str:
        return str(self.raw["metadata"]["name"])

    @property
    def deleting(self) -> bool:
        return "deletionTimestamp" in self.raw["metadata"]

    def owned_by_env(self) -> bool:
        return bool(OURS & set(self.owner_kinds))

    def earlier_incarnation_of(self, env: Environment) -> bool:
        return self.name == gate_name(env.name) and self.owner_kinds == ("earlier",)

    def foreign_to(self, env: Environment) -> bool:
        return not self.owned_by_env() and not self.earlier_incarnation_of(env)


@st.composite
def gate_sets(draw: st.DrawFn, env: Environment) -> list[Generated]:
    names = st.sampled_from(
        [gate_name(env.name), fallback_gate_name(env), "ghd-abc12", "ghd-" + env.name, "other-stagegate"]
    )
    count = draw(st.integers(min_value=0, max_value=4))
    chosen = draw(st.lists(names, min_size=count, max_size=count, unique=True))
    out = []
    for name in chosen:
        owner_kinds = tuple(
            draw(
                st.sampled_from([(), ("ours",), ("earlier",)])
                | st.lists(st.sampled_from(OWNER_KINDS), min_size=1, max_size=2)
            )
        )
        owners = [_owner(k, env, draw(st.booleans()), draw(st.booleans())) for k in owner_kinds]
        raw = gate_raw(
            name,
            namespace=env.namespace,
            rollout=draw(st.sampled_from([env.rollout_name, env.rollout_name + "-old", None])),
            allowed=draw(st.just(ABSENT) | st.none() | st.lists(tags, max_size=3, unique=True)),
            passing=draw(st.sampled_from([True, False, ABSENT])),
            owners=owners,
            labels=draw(
                st.sampled_from([ABSENT, {}, {"app.kubernetes.io/managed-by": "helm"}, {"team": "a"}])
            ),
            annotations=draw(st.sampled_from([ABSENT, {}, wanted_annotations(env)])),
            deleting=draw(st.integers(0, 9)) == 0,
            resource_version=str(draw(st.integers(1, 10_000))),
        )
        out.append(Generated(raw, owner_kinds))
    return out


@st.composite
def scenarios(draw: st.DrawFn, relationship: Any = relationships) -> tuple[Environment, list[Generated]]:
    env = draw(environments(relationship))
    return env, draw(gate_sets(env))


with_relationship = st.tuples(st.sampled_from(["After", "Parallel"]), dns_labels)


def plans_or_retry(env: Environment, generated: list[Generated]) -> list[GatePlan] | None:
    """The plans, or None when the only answer is to retry because the name to create is being freed."""
    gates = [RolloutGate.from_raw(g.raw) for g in generated]
    try:
        return plan_gates(env, gates)
    except RetryableError:
        names = {gate_name(env.name), fallback_gate_name(env)}
        assert any(g.deleting for g in generated if g.name in names), (
            "retry only while a gate under our name or our fallback name is being deleted"
        )
        assert not any(g.owned_by_env() and not g.deleting for g in generated), (
            "retry although a gate is ours"
        )
        return None


def applied(generated: list[Generated], plans: list[GatePlan]) -> dict[str, dict[str, Any]]:
    """The gates' raw dicts after the apiserver applied every create and merge patch of the plans."""
    raws = {g.name: g.raw for g in generated}
    for plan in plans:
        if plan.action == "create":
            assert plan.gate not in raws
            assert plan.body is not None
            raws[plan.gate] = dict(plan.body)
        elif plan.action == "update":
            raws[plan.gate] = merge_patch(raws[plan.gate], plan.patch)
    return raws


# The test's merge patch must behave like the apiserver's, or every property below proves nothing.


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [  # RFC 7386, Appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_helper_follows_rfc_7386(target: Any, patch: Any, result: Any) -> None:
    assert merge_patch(target, patch) == result


def test_merge_patch_helper_does_not_modify_its_target() -> None:
    target = {"spec": {"allowedVersions": ["v1"]}}
    merge_patch(target, {"spec": {"allowedVersions": None}})
    assert target == {"spec": {"allowedVersions": ["v1"]}}


# Invariant 1: blocking by default


@PROPERTY_SETTINGS
@given(scenarios(relationship=with_relationship))
def test_environment_with_relationship_never_ends_with_a_null_gate(scenario) -> None:
    env, generated = scenario
    plans = plans_or_retry(env, generated)
    assume(plans is not None)
    after = applied(generated, plans)
    for plan in plans:
        if plan.action == "create":
            assert plan.body is not None
            assert plan.body["spec"]["allowedVersions"] == []
            assert plan.allowed_after == ()
        elif plan.action in ("update", "unchanged"):
            assert plan.allowed_after is not None
            reread = RolloutGate.from_raw(after[plan.gate])
            assert reread.allowed_versions is not None
            assert reread.allowed_versions == plan.allowed_after


@PROPERTY_SETTINGS
@given(scenarios(relationship=st.none()))
def test_environment_without_relationship_ends_with_unrestricted_gates(scenario) -> None:
    env, generated = scenario
    plans = plans_or_retry(env, generated)
    assume(plans is not None)
    after = applied(generated, plans)
    for plan in plans:
        if plan.action in ("create", "update", "unchanged"):
            # Absent or an explicit null: both mean "no restriction" to the rollout controller.
            assert after[plan.gate]["spec"].get("allowedVersions") is None
            assert plan.allowed_after is None


# Fail closed: never wider


@PROPERTY_SETTINGS
@given(scenarios(relationship=with_relationship))
def test_plan_never_widens_the_allowed_versions_of_an_environment_with_relationship(scenario) -> None:
    env, generated = scenario
    plans = plans_or_retry(env, generated)
    assume(plans is not None)
    before = {g.name: RolloutGate.from_raw(g.raw) for g in generated}
    after = applied(generated, plans)
    for plan in plans:
        if plan.action not in ("update", "unchanged"):
            continue
        was = before[plan.gate].allowed_versions
        now = RolloutGate.from_raw(after[plan.gate]).allowed_versions
        assert now is not None
        if was is None:
            assert now == ()
        else:
            assert set(now) <= set(was)


@PROPERTY_SETTINGS
@given(scenarios())
def test_failing_gate_never_becomes_passing(scenario) -> None:
    env, generated = scenario
    plans = plans_or_retry(env, generated)
    assume(plans is not None)
    after = applied(generated, plans)
    for g in generated:
        if g.raw["spec"].get("passing") is False:
            assert after[g.name]["spec"]["passing"] is False


# Invariant 7: foreign gates are never taken over; creation is idempotent


@PROPERTY_SETTINGS
@given(scenarios())
def test_foreign_gates_are_never_written(scenario) -> None:
    env, generated = scenario
    plans = plans_or_retry(env, generated)
    assume(plans is not None)
    foreign = {g.name for g in generated if g.foreign_to(env)}
    written = {p.gate for p in plans if p.action in ("create", "update")}
    assert not foreign & written
    after = applied(generated, plans)
    for g in generated:
        if g.name in foreign:
            assert after[g.name] == g.raw


@PROPERTY_SETTINGS
@given(scenarios())
def test_refusal_happens_only_for_a_foreign_gate_under_our_name(scenario) -> None:
    env, generated = scenario
    plans = plans_or_retry(env, generated)
    assume(plans is not None)
    for plan in plans:
        if plan.action == "refuse":
            [blocker] = [g for g in generated if g.name == plan.gate]
            assert plan.gate == gate_name(env.name)
            assert blocker.foreign_to(env)
            assert not any(g.owned_by_env() and not g.deleting for g in generated)


@PROPERTY_SETTINGS
@given(scenarios())
def test_at_most_one_create_and_only_when_no_live_gate_is_ours(scenario) -> None:
    env, generated = scenario
    plans = plans_or_retry(env, generated)
    assume(plans is not None)
    creates = [p for p in plans if p.action == "create"]
    assert len(creates) <= 1
    if creates:
        assert not any(g.owned_by_env() and not g.deleting for g in generated)
        assert creates[0].gate not in {g.name for g in generated}


@PROPERTY_SETTINGS
@given(scenarios())
def test_create_takes_the_deterministic_name_unless_a_foreign_gate_holds_it_then_the_fallback(
    scenario,
) -> None:
    env, generated = scenario
    plans = plans_or_retry(env, generated)
    assume(plans is not None)
    names = {g.name for g in generated}
    [holder] = [g for g in generated if g.name == gate_name(env.name)] or [None]
    creates = [p.gate for p in plans if p.action == "create"]
    if any(g.owned_by_env() and not g.deleting for g in generated):
        assert creates == []
    elif holder is None:
        assert creates == [gate_name(env.name)]
    elif holder.earlier_incarnation_of(env):
        assert creates == []
    else:
        assert holder.foreign_to(env)
        assert not holder.deleting
        assert creates == ([] if fallback_gate_name(env) in names else [fallback_gate_name(env)])


@PROPERTY_SETTINGS
@given(scenarios())
def test_refusal_comes_with_a_fallback_create_exactly_when_the_fallback_name_is_free(scenario) -> None:
    env, generated = scenario
    plans = plans_or_retry(env, generated)
    assume(plans is not None)
    names = {g.name for g in generated}
    blocked = any(g.name == gate_name(env.name) and g.foreign_to(env) for g in generated) and not any(
        g.owned_by_env() and not g.deleting for g in generated
    )
    if blocked:
        fallback = [("create", fallback_gate_name(env))] if fallback_gate_name(env) not in names else []
        assert [(p.action, p.gate) for p in plans] == [("refuse", gate_name(env.name)), *fallback]
    else:
        assert not any(p.action == "refuse" for p in plans)


@PROPERTY_SETTINGS
@given(scenarios())
def test_fallback_create_is_the_new_gate_under_another_name(scenario) -> None:
    env, generated = scenario
    plans = plans_or_retry(env, generated)
    assume(plans is not None)
    for plan in plans:
        if plan.action == "create":
            expected = new_gate(env)
            expected["metadata"]["name"] = plan.gate
            assert plan.body == expected


@PROPERTY_SETTINGS
@given(scenarios())
def test_environment_is_left_without_a_live_gate_of_its_own_only_when_both_names_are_taken(
    scenario,
) -> None:
    env, generated = scenario
    plans = plans_or_retry(env, generated)
    assume(plans is not None)
    after = applied(generated, plans)
    earlier = {g.name for g in generated if g.earlier_incarnation_of(env) and not g.deleting}
    ours_after = (
        {g.name for g in generated if g.owned_by_env() and not g.deleting}
        | {p.gate for p in plans if p.action == "create"}
        | {p.gate for p in plans if p.gate in earlier and p.action in ("update", "unchanged")}
    )
    for name in ours_after:
        refs = after[name]["metadata"]["ownerReferences"]
        assert any(r["kind"] == "Environment" and r["name"] == env.name for r in refs)
    if not ours_after:
        holders = {g.name: g for g in generated}
        assert holders[gate_name(env.name)].foreign_to(env)
        assert fallback_gate_name(env) in holders


@PROPERTY_SETTINGS
@given(scenarios())
def test_every_live_gate_of_the_environment_gets_exactly_one_plan(scenario) -> None:
    env, generated = scenario
    plans = plans_or_retry(env, generated)
    assume(plans is not None)
    names = [p.gate for p in plans]
    assert len(names) == len(set(names))
    live_ours = {g.name for g in generated if g.owned_by_env() and not g.deleting}
    if live_ours:
        assert set(names) == live_ours


@PROPERTY_SETTINGS
@given(scenarios())
def test_updates_are_conditional_on_the_resource_version_they_were_computed_from(scenario) -> None:
    env, generated = scenario
    plans = plans_or_retry(env, generated)
    assume(plans is not None)
    versions = {g.name: g.raw["metadata"]["resourceVersion"] for g in generated}
    for plan in plans:
        if plan.action in ("update", "unchanged"):
            assert plan.resource_version == versions[plan.gate]


@PROPERTY_SETTINGS
@given(scenarios())
def test_planning_again_after_applying_the_plan_changes_nothing(scenario) -> None:
    env, generated = scenario
    plans = plans_or_retry(env, generated)
    assume(plans is not None)
    after = applied(generated, plans)
    again = plan_gates(env, [RolloutGate.from_raw(raw) for raw in after.values()])
    assert {p.action for p in again} <= {"unchanged", "refuse"}
    created = any(p.action == "create" for p in plans)
    # A refusal stays only while nothing could be created: a created fallback gate is ours, and
    # an Environment with a live gate of its own is never refused.
    assert [(p.gate, p.action) for p in again if p.action == "refuse"] == (
        [] if created else [(p.gate, p.action) for p in plans if p.action == "refuse"]
    )
    if any(p.action in ("create", "update") for p in plans):
        assert {p.gate for p in again if p.action == "unchanged"} >= {
            p.gate for p in plans if p.action in ("create", "update")
        }
