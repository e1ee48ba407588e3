"""Unit tests of shared/gate.py: the gate's name, the gate to create, and the plan for existing gates."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.bake import ReleaseCandidate, StatusRecord, results_for
from shared.errors import RetryableError
from shared.evidence import EVIDENCE_ANNOTATION
from shared.gate import (
    DESCRIPTION_ANNOTATION,
    MANAGED_BY_LABEL,
    PENDING_OWNER_ANNOTATION,
    PRETTY_NAME_ANNOTATION,
    GatePlan,
    fallback_gate_name,
    gate_name,
    is_owned_by,
    new_gate,
    plan_gates,
)
from shared.recompute import plan_recompute
from shared.upstream import upstream_key
from shared.views import Environment, RolloutGate
from tests.shared.builders import (
    ABSENT,
    ENV_UID,
    OID,
    OLD_ENV_UID,
    computed_for,
    deployment,
    deployment_owner,
    env_owner,
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

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def sha10(text: str) -> str:
    """The first 10 hex digits of the SHA-256 of `text`: the hash a shortened gate name ends in."""
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def shortened(stem_of: str, hashed: str) -> str:
    """`<stem>-stagegate-<hash>`: the stem is `stem_of` cut to 232 characters without a trailing '.'/'-'."""
    return stem_of[:232].rstrip(".-") + "-stagegate-" + sha10(hashed)


SHORTENED = re.compile(r"^(?P<stem>.+)-stagegate-(?P<hash>[0-9a-f]{10})$")

OUR_OWNER_REFERENCE = {
    "apiVersion": "environments.kuberik.com/v1alpha1",
    "kind": "Environment",
    "name": "prod",
    "uid": ENV_UID,
    "controller": True,
    "blockOwnerDeletion": True,
}


@st.composite
def subdomains(draw: st.DrawFn, min_size: int = 1) -> str:
    """Valid DNS-1123 subdomains of min_size..253 characters, many of them long."""
    target = draw(st.integers(min_value=min_size, max_value=253))
    labels: list[str] = []
    while len(".".join(labels)) < target:
        labels.append(draw(st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)))
    name = ".".join(labels)[:target].rstrip(".-")
    assert DNS1123_SUBDOMAIN.match(name), name
    return name


# gate_name


def test_gate_name_is_the_environment_name_with_the_stagegate_suffix() -> None:
    assert gate_name("prod") == "prod-stagegate"
    assert gate_name("eu.prod-1") == "eu.prod-1-stagegate"


def test_gate_name_of_a_long_environment_is_pinned_so_gates_survive_upgrades() -> None:
    # A changed scheme would orphan every existing long-named gate and create a second one.
    assert gate_name("a" * 244) == "a" * 232 + "-stagegate-ad5e672a5b"


def test_gate_name_is_the_same_on_every_call() -> None:
    name = "x" * 300
    assert gate_name(name) == gate_name(name)


def test_name_that_reaches_exactly_253_characters_is_not_shortened() -> None:
    env_name = "a" * 243
    assert gate_name(env_name) == env_name + "-stagegate"
    assert len(gate_name(env_name)) == 253


@pytest.mark.parametrize(
    "env_name",
    [
        "a" * 244,
        "a" * 253,
        "a" * 231 + "." + "b" * 21,  # cut lands right after a dot
        "a" * 230 + "-b." + "c" * 20,  # cut lands right after a hyphen
        "a" * 229 + ".b-c" + "d" * 20,
        ".".join(["abcdefghij-klmnop"] * 14) + ".x",
    ],
)
def test_long_name_is_shortened_to_a_valid_subdomain_of_at_most_253_characters(env_name: str) -> None:
    assert DNS1123_SUBDOMAIN.match(env_name)
    name = gate_name(env_name)
    assert len(name) <= 253
    assert DNS1123_SUBDOMAIN.match(name), name
    assert name == shortened(env_name, env_name)
    match = SHORTENED.match(name)
    assert match is not None
    assert match["stem"] == env_name[:232].rstrip(".-")
    assert match["hash"] == sha10(env_name)
    assert not name.endswith("-stagegate")


def test_shortened_name_drops_dots_and_hyphens_the_cut_leaves_at_the_end_of_the_stem() -> None:
    assert gate_name("a" * 231 + "." + "b" * 21) == "a" * 231 + "-stagegate-" + sha10(
        "a" * 231 + "." + "b" * 21
    )
    assert gate_name("a" * 230 + "-.b" + "c" * 20).startswith("a" * 230 + "-stagegate-")


def test_long_names_that_share_their_first_250_characters_get_distinct_gate_names() -> None:
    first, second = "a" * 250 + "b", "a" * 250 + "c"
    assert gate_name(first) != gate_name(second)


@given(subdomains())
def test_every_valid_environment_name_gives_a_valid_gate_name(env_name: str) -> None:
    name = gate_name(env_name)
    assert len(name) <= 253
    assert DNS1123_SUBDOMAIN.match(name), name
    if len(env_name) <= 243:
        assert name == env_name + "-stagegate"
    else:
        assert name == shortened(env_name, env_name)


@given(subdomains(), subdomains())
def test_distinct_environment_names_give_distinct_gate_names(first: str, second: str) -> None:
    if first != second:
        assert gate_name(first) != gate_name(second)


@pytest.mark.parametrize(
    "crafted",
    [
        "a" * 232 + "-" + sha10("a" * 244),  # <stem>-<hash>: plus the suffix, the former shortened name
        "a" * 232 + "-stagegate-" + sha10("a" * 244),  # the shortened name itself
        "a" * 232 + "-stagegate",  # the shortened name without its hash
        "a" * 221 + "-stagegate-" + sha10("a" * 244),  # short enough to keep its own name
        "a" * 222 + "-" + sha10("a" * 244),
        "a" * 243,
        "a" * 245,
    ],
)
def test_shortened_gate_name_cannot_be_taken_by_an_environment_with_a_crafted_name(crafted: str) -> None:
    long_name = "a" * 244
    assert DNS1123_SUBDOMAIN.match(crafted)
    assert len(crafted) <= 253
    assert gate_name(crafted) != gate_name(long_name)


@given(subdomains())
def test_only_shortened_gate_names_end_in_hex_so_the_two_kinds_never_meet(env_name: str) -> None:
    # A name that is not shortened ends in "-stagegate" ('s', 't', 'g' are not hex digits); a
    # shortened one ends in its own hash, so only a hash collision could make two of them equal.
    name = gate_name(env_name)
    assert name.endswith("-stagegate") == (len(env_name) <= 243)
    assert (SHORTENED.match(name) is not None) == (len(env_name) > 243)


# fallback_gate_name


def test_fallback_gate_name_is_pinned_and_ends_in_the_hash_of_the_uid() -> None:
    env = environment("prod", uid=ENV_UID)
    assert fallback_gate_name(env) == "prod-stagegate-945da2f77e"
    assert fallback_gate_name(env) == "prod-stagegate-" + sha10(ENV_UID)


def test_fallback_gate_name_of_a_long_environment_keeps_the_stem_of_the_shortened_name() -> None:
    env = environment("a" * 244, uid=ENV_UID)
    assert fallback_gate_name(env) == "a" * 232 + "-stagegate-945da2f77e"
    assert fallback_gate_name(env) != gate_name(env.name)


def test_fallback_gate_name_differs_for_each_incarnation_of_an_environment() -> None:
    assert fallback_gate_name(environment(uid=ENV_UID)) != fallback_gate_name(environment(uid=OLD_ENV_UID))


@given(subdomains(), st.uuids(), subdomains())
def test_fallback_gate_name_is_a_valid_subdomain_no_environment_name_produces(
    env_name: str, uid: object, other_name: str
) -> None:
    env = Environment.from_raw(environment_raw(env_name, uid=str(uid)))
    name = fallback_gate_name(env)
    assert len(name) <= 253
    assert DNS1123_SUBDOMAIN.match(name), name
    assert name == shortened(env_name, str(uid))
    assert name != gate_name(env_name)
    assert name != gate_name(other_name)


# new_gate


def test_new_environment_with_relationship_gets_empty_allowed_versions() -> None:
    body = new_gate(environment(relationship=("After", "staging")))
    assert body["spec"]["allowedVersions"] == []


def test_new_environment_with_parallel_relationship_also_gets_empty_allowed_versions() -> None:
    body = new_gate(environment(relationship=("Parallel", "staging")))
    assert body["spec"]["allowedVersions"] == []


def test_new_environment_without_relationship_gets_no_allowed_versions_key() -> None:
    body = new_gate(environment(relationship=None))
    assert "allowedVersions" not in body["spec"]


@pytest.mark.parametrize("relationship", [("After", "staging"), None])
def test_new_gate_is_passing_and_governs_the_environments_rollout(relationship) -> None:
    body = new_gate(environment(rollout="myapp-v2", relationship=relationship))
    assert body["spec"]["passing"] is True
    assert body["spec"]["rolloutRef"] == {"name": "myapp-v2"}


def test_new_gate_is_a_rollout_gate_named_after_the_environment_in_its_namespace() -> None:
    body = new_gate(environment("prod", namespace="team-a"))
    assert (body["apiVersion"], body["kind"]) == ("kuberik.com/v1alpha1", "RolloutGate")
    assert (body["metadata"]["name"], body["metadata"]["namespace"]) == ("prod-stagegate", "team-a")


def test_new_gate_is_controlled_by_its_environment_so_it_is_garbage_collected() -> None:
    body = new_gate(environment("prod", uid=ENV_UID))
    assert body["metadata"]["ownerReferences"] == [OUR_OWNER_REFERENCE]


def test_new_gate_is_labelled_as_managed_by_stagegate() -> None:
    body = new_gate(environment())
    assert body["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "stagegate"}


@pytest.mark.parametrize("kind", ["After", "Parallel"])
def test_new_gate_annotations_name_the_upstream_environment(kind: str) -> None:
    annotations = new_gate(environment(relationship=(kind, "eu-staging")))["metadata"]["annotations"]
    assert set(annotations) == {"gate.kuberik.com/pretty-name", "gate.kuberik.com/description"}
    assert "eu-staging" in annotations["gate.kuberik.com/pretty-name"]
    assert "eu-staging" in annotations["gate.kuberik.com/description"]


def test_after_and_parallel_gates_are_described_differently() -> None:
    after = new_gate(environment(relationship=("After", "staging")))["metadata"]["annotations"]
    parallel = new_gate(environment(relationship=("Parallel", "staging")))["metadata"]["annotations"]
    assert "baked" in after[DESCRIPTION_ANNOTATION]
    assert "baked" not in parallel[DESCRIPTION_ANNOTATION]
    assert after[PRETTY_NAME_ANNOTATION] != parallel[PRETTY_NAME_ANNOTATION]


def test_new_gate_without_relationship_says_it_does_not_restrict() -> None:
    annotations = new_gate(environment(relationship=None))["metadata"]["annotations"]
    assert "no relationship" in annotations[DESCRIPTION_ANNOTATION]


def test_new_gate_reads_back_as_a_blocking_gate_owned_by_its_environment() -> None:
    env = environment()
    created = RolloutGate.from_raw(new_gate(env))
    assert created.allowed_versions == ()
    assert created.passing is True
    assert created.rollout_name == "myapp"
    assert [(r.name, r.uid, r.controller) for r in created.owner_references] == [("prod", ENV_UID, True)]


# the gate made at admission, before its Environment is stored


def pending(uid: str = ENV_UID, name: str = "prod", **changes: Any) -> RolloutGate:
    """The gate admission makes for an Environment create (read back as the API stores it)."""
    raw = new_gate(environment(name, uid=uid), stored=False)
    raw["metadata"].update(resourceVersion="7", **changes)
    return RolloutGate.from_raw(raw)


def test_a_gate_made_before_its_environment_is_stored_names_it_as_pending_owner_only() -> None:
    """The garbage collector deletes a dependent whose owner it cannot find, and it may look before the
    Environment is stored: no owner reference yet."""
    [plan] = plan_gates(environment(uid=ENV_UID), [], stored=False)
    assert plan.body is not None
    assert "ownerReferences" not in plan.body["metadata"]
    assert plan.body["metadata"]["annotations"][PENDING_OWNER_ANNOTATION] == ENV_UID
    assert (plan.action, plan.allowed_after, plan.relaxes) == ("create", (), False)


def test_a_pending_gate_belongs_to_that_uid_only() -> None:
    assert is_owned_by(pending(), environment(uid=ENV_UID))
    assert not is_owned_by(pending(), environment(uid=OLD_ENV_UID))
    unlabelled = pending(labels={})  # not ours: the annotation alone makes no owner
    assert not is_owned_by(unlabelled, environment(uid=ENV_UID))


def test_the_stored_environment_adopts_its_pending_gate_and_only_from_the_api() -> None:
    [plan] = plan_gates(environment(uid=ENV_UID), [pending()])
    assert plan.action == "update"
    assert plan.patch is not None
    assert plan.patch["metadata"]["ownerReferences"] == [OUR_OWNER_REFERENCE]
    assert plan.patch["metadata"]["annotations"][PENDING_OWNER_ANNOTATION] is None
    assert "spec" not in plan.patch  # still blocking, as made
    assert plan.relaxes  # an owner change decides garbage collection: never from an event's copy


def test_admission_leaves_a_pending_gate_of_the_same_create_as_it_is() -> None:
    [plan] = plan_gates(environment(uid=ENV_UID), [pending()], stored=False)
    assert plan.action == "unchanged", plan


def test_a_pending_gate_of_a_create_that_never_landed_is_taken_over_blocking() -> None:
    """No garbage collector deletes it (it has no owner): the next Environment of that name takes it."""
    opened = pending(uid=OLD_ENV_UID)
    raw = dict(opened.raw)
    raw["spec"] = {**raw["spec"], "allowedVersions": ["v1"]}
    [plan] = plan_gates(environment(uid=ENV_UID), [RolloutGate.from_raw(raw)])
    assert plan.action == "update"
    assert plan.patch is not None
    assert plan.patch["metadata"]["ownerReferences"] == [OUR_OWNER_REFERENCE]
    assert plan.allowed_after == ()


def test_a_pending_annotation_beside_an_environment_owner_counts_for_nothing() -> None:
    owned = pending(ownerReferences=[OUR_OWNER_REFERENCE])
    assert is_owned_by(owned, environment(uid=ENV_UID))
    assert not is_owned_by(
        pending(uid=OLD_ENV_UID, ownerReferences=[OUR_OWNER_REFERENCE]), environment(uid=OLD_ENV_UID)
    )


# plan_gates: creating


def test_environment_with_relationship_and_no_gates_plans_one_blocking_create() -> None:
    env = environment()
    [plan] = plan_gates(env, [])
    assert plan.action == "create"
    assert plan.gate == "prod-stagegate"
    assert plan.body == new_gate(env)
    assert plan.allowed_after == ()
    assert plan.patch is None


def test_environment_without_relationship_and_no_gates_plans_an_unrestricted_create() -> None:
    env = environment(relationship=None)
    [plan] = plan_gates(env, [])
    assert plan.action == "create"
    assert plan.body is not None
    assert "allowedVersions" not in plan.body["spec"]
    assert plan.allowed_after is None


def test_gates_of_other_environments_do_not_stop_the_create() -> None:
    staging_gate = gate(
        "staging-stagegate", owners=[env_owner("staging", "1d0f3c2b-aaaa-4bbb-8ccc-dddd00000001")]
    )
    [plan] = plan_gates(environment(), [staging_gate])
    assert (plan.action, plan.gate) == ("create", "prod-stagegate")


# plan_gates: adopting and conforming owned gates


def test_owned_gate_with_null_allowed_versions_and_relationship_is_patched_to_empty() -> None:
    [plan] = plan_gates(environment(), [gate(allowed=None, resource_version="42")])
    assert plan.action == "update"
    assert plan.patch == {"spec": {"allowedVersions": []}}
    assert (plan.allowed_before, plan.allowed_after) == (None, ())
    assert plan.resource_version == "42"


def test_owned_gate_without_allowed_versions_key_and_relationship_is_patched_to_empty() -> None:
    [plan] = plan_gates(environment(), [gate()])
    assert plan.action == "update"
    assert plan.patch == {"spec": {"allowedVersions": []}}


@pytest.mark.parametrize("allowed", [[], ["main-1779290372-b797408"]])
def test_removed_relationship_deletes_allowed_versions_with_an_explicit_null(allowed: list[str]) -> None:
    env = environment(relationship=None)
    [plan] = plan_gates(env, [gate(allowed=allowed, annotations=wanted_annotations(env))])
    assert plan.action == "update"
    assert plan.patch == {"spec": {"allowedVersions": None}}
    assert plan.allowed_after is None
    assert plan.allowed_before == tuple(allowed)


def test_owned_gate_with_allowed_versions_set_by_the_recompute_keeps_them() -> None:
    [plan] = plan_gates(environment(), [gate(allowed=["v1", "v2"])])
    assert plan.action == "unchanged"
    assert plan.patch is None
    assert plan.allowed_after == ("v1", "v2")


def test_fixing_metadata_of_an_owned_gate_does_not_touch_its_allowed_versions() -> None:
    [plan] = plan_gates(environment(), [gate(allowed=["v1"], labels={"team": "a"})])
    assert plan.action == "update"
    assert plan.patch == {"metadata": {"labels": {MANAGED_BY_LABEL: "stagegate"}}}
    assert plan.allowed_after == ("v1",)


def test_wrong_annotations_are_rewritten() -> None:
    [plan] = plan_gates(environment(), [gate(allowed=[], annotations={PRETTY_NAME_ANNOTATION: "old"})])
    assert plan.action == "update"
    assert plan.patch == {"metadata": {"annotations": wanted_annotations()}}


def test_already_conforming_gate_is_unchanged_with_no_patch() -> None:
    [plan] = plan_gates(environment(), [gate(allowed=[], resource_version="9")])
    assert plan.action == "unchanged"
    assert (plan.gate, plan.patch, plan.body) == ("prod-stagegate", None, None)
    assert (plan.allowed_before, plan.allowed_after) == ((), ())
    assert plan.resource_version == "9"


def test_gate_the_go_controller_made_is_adopted_instead_of_duplicated() -> None:
    go_gate = gate(
        "ghd-abc12",
        allowed=None,
        labels={},
        annotations={},
        owners=[env_owner("prod", ENV_UID)],
    )
    plans = plan_gates(environment(), [go_gate])
    assert [(p.action, p.gate) for p in plans] == [("update", "ghd-abc12")]
    assert plans[0].patch is not None
    assert plans[0].patch["spec"] == {"allowedVersions": []}
    assert plans[0].patch["metadata"]["labels"] == {MANAGED_BY_LABEL: "stagegate"}
    assert plans[0].patch["metadata"]["annotations"] == wanted_annotations()


def test_owner_reference_with_empty_uid_but_same_name_counts_as_owned() -> None:
    go_gate = gate("ghd-abc12", allowed=["v1"], owners=[env_owner("prod", "")])
    [plan] = plan_gates(environment(), [go_gate])
    assert (plan.action, plan.gate) == ("update", "ghd-abc12")
    assert plan.patch == {"metadata": {"ownerReferences": [OUR_OWNER_REFERENCE]}}
    assert plan.allowed_after == ("v1",)


def test_every_owned_gate_gets_its_own_plan_in_name_order() -> None:
    gates = [gate("prod-stagegate", allowed=[]), gate("ghd-abc12", allowed=None)]
    plans = plan_gates(environment(), gates)
    assert [(p.gate, p.action) for p in plans] == [("ghd-abc12", "update"), ("prod-stagegate", "unchanged")]


def test_owned_gate_being_deleted_under_another_name_does_not_stop_the_create() -> None:
    leaving = gate("ghd-abc12", allowed=["v1"], deleting=True)
    [plan] = plan_gates(environment(), [leaving])
    assert (plan.action, plan.gate) == ("create", "prod-stagegate")


def test_unrelated_owners_are_kept_and_a_foreign_controller_stays_the_controller() -> None:
    owners = [deployment_owner(), env_owner("prod", "")]
    [plan] = plan_gates(environment(), [gate(allowed=[], owners=owners)])
    assert plan.patch == {
        "metadata": {"ownerReferences": [deployment_owner(), {**OUR_OWNER_REFERENCE, "controller": False}]}
    }


def test_changed_rollout_points_the_gate_at_it_and_blocks_again() -> None:
    env = environment(rollout="myapp-v2")
    [plan] = plan_gates(env, [gate(rollout="myapp", allowed=["v1", "v2"])])
    assert plan.action == "update"
    assert plan.patch == {"spec": {"rolloutRef": {"name": "myapp-v2"}, "allowedVersions": []}}
    assert (plan.allowed_before, plan.allowed_after) == (("v1", "v2"), ())


def test_changed_rollout_without_relationship_only_repoints_the_gate() -> None:
    env = environment(rollout="myapp-v2", relationship=None)
    [plan] = plan_gates(env, [gate(rollout="myapp", annotations=wanted_annotations(env))])
    assert plan.patch == {"spec": {"rolloutRef": {"name": "myapp-v2"}}}


def test_gate_without_rollout_ref_gets_one_and_blocks() -> None:
    [plan] = plan_gates(environment(), [gate(rollout=None, allowed=None)])
    assert plan.patch == {"spec": {"rolloutRef": {"name": "myapp"}, "allowedVersions": []}}


def test_failing_gate_is_never_set_back_to_passing() -> None:
    [plan] = plan_gates(environment(), [gate(allowed=[], passing=False)])
    assert plan.action == "unchanged"
    assert plan.patch is None


def test_failing_gate_stays_failing_when_other_fields_are_fixed() -> None:
    [plan] = plan_gates(environment(), [gate(allowed=None, passing=False, labels={})])
    assert plan.action == "update"
    assert plan.patch is not None
    assert "passing" not in plan.patch["spec"]
    assert plan.patch["spec"] == {"allowedVersions": []}


def test_gate_without_passing_gets_the_crd_default_written_out() -> None:
    [plan] = plan_gates(environment(), [gate(allowed=[], passing=ABSENT)])
    assert plan.patch == {"spec": {"passing": True}}


# plan_gates: gates that are not ours

FALLBACK = "prod-stagegate-945da2f77e"  # fallback_gate_name of the `prod` fixture (uid ENV_UID)


def assert_refused_and_created_under_the_fallback(plans: list, env: Environment) -> None:
    """The foreign gate is refused untouched; a blocking gate is created under the fallback name."""
    assert [(p.action, p.gate) for p in plans] == [
        ("refuse", gate_name(env.name)),
        ("create", fallback_gate_name(env)),
    ]
    refusal, create = plans
    assert (refusal.patch, refusal.body) == (None, None)
    expected = new_gate(env)
    expected["metadata"]["name"] = fallback_gate_name(env)
    assert create.body == expected
    assert create.patch is None
    assert create.allowed_after == (None if env.relationship is None else ())


def test_same_named_gate_owned_by_a_deployment_is_refused_and_left_untouched() -> None:
    foreign = gate(allowed=["v9"], owners=[deployment_owner("web")])
    plans = plan_gates(environment(), [foreign])
    assert_refused_and_created_under_the_fallback(plans, environment())
    refusal = plans[0]
    assert (refusal.allowed_before, refusal.allowed_after) == (("v9",), ("v9",))
    assert "Deployment/web" in refusal.reason


def test_environment_whose_gate_name_is_taken_gets_a_blocking_gate_under_the_fallback_name() -> None:
    plans = plan_gates(environment(), [gate(allowed=["v9"], owners=[deployment_owner("web")])])
    create = plans[1]
    assert (create.action, create.gate) == ("create", FALLBACK)
    assert create.body is not None
    assert create.body["metadata"]["name"] == FALLBACK
    assert create.body["spec"]["allowedVersions"] == []
    assert create.body["metadata"]["ownerReferences"] == [OUR_OWNER_REFERENCE]
    assert "prod-stagegate is taken" in create.reason
    assert RolloutGate.from_raw(create.body).allowed_versions == ()


def test_environment_without_relationship_whose_gate_name_is_taken_gets_an_unrestricted_fallback() -> None:
    env = environment(relationship=None)
    plans = plan_gates(env, [gate(owners=[deployment_owner()])])
    assert_refused_and_created_under_the_fallback(plans, env)
    assert plans[1].body is not None
    assert "allowedVersions" not in plans[1].body["spec"]


def test_long_environment_whose_gate_name_is_taken_gets_the_long_fallback_name() -> None:
    env = environment("a" * 244)
    plans = plan_gates(env, [gate(gate_name(env.name), owners=[deployment_owner()])])
    assert_refused_and_created_under_the_fallback(plans, env)
    assert plans[1].gate == "a" * 232 + "-stagegate-945da2f77e"


def test_same_named_gate_without_owner_is_refused() -> None:
    plans = plan_gates(environment(), [gate(allowed=None, owners=[])])
    assert_refused_and_created_under_the_fallback(plans, environment())
    assert "nobody" in plans[0].reason


def test_same_named_gate_owned_by_another_environment_is_refused() -> None:
    other = gate(owners=[env_owner("staging", "1d0f3c2b-aaaa-4bbb-8ccc-dddd00000001")])
    plans = plan_gates(environment(), [other])
    assert_refused_and_created_under_the_fallback(plans, environment())
    assert "Environment/staging" in plans[0].reason


def test_same_named_gate_owned_by_an_environment_kind_of_another_group_is_refused() -> None:
    impostor = gate(owners=[env_owner("prod", OLD_ENV_UID, api_version="example.com/v1")])
    assert_refused_and_created_under_the_fallback(plan_gates(environment(), [impostor]), environment())


def test_same_named_gate_with_an_earlier_incarnation_and_another_owner_is_refused() -> None:
    shared_gate = gate(owners=[env_owner("prod", OLD_ENV_UID), deployment_owner()])
    assert_refused_and_created_under_the_fallback(plan_gates(environment(), [shared_gate]), environment())


@pytest.mark.parametrize(
    "owners",
    [[deployment_owner()], [], [env_owner("staging", "1d0f3c2b-aaaa-4bbb-8ccc-dddd00000001")]],
    ids=["deployment", "ownerless", "other-environment"],
)
def test_fallback_name_taken_by_a_gate_that_is_not_ours_leaves_only_the_refusal(owners: list[dict]) -> None:
    foreign = gate(allowed=["v9"], owners=[deployment_owner("web")])
    squatter = gate(FALLBACK, allowed=["v1"], owners=owners)
    plans = plan_gates(environment(), [foreign, squatter])
    assert [(p.action, p.gate) for p in plans] == [("refuse", "prod-stagegate")]
    assert (plans[0].patch, plans[0].body) == (None, None)


@pytest.mark.parametrize("owners", [None, [deployment_owner()]], ids=["ours", "someone-elses"])
def test_fallback_gate_being_deleted_is_retried_so_the_environment_gets_a_gate_again(
    owners: list[dict] | None,
) -> None:
    foreign = gate(owners=[deployment_owner("web")])
    leaving = (
        gate(FALLBACK, allowed=[], deleting=True)
        if owners is None
        else gate(FALLBACK, allowed=[], deleting=True, owners=owners)
    )
    with pytest.raises(RetryableError, match=f"{FALLBACK} is being deleted"):
        plan_gates(environment(), [foreign, leaving])


def test_fallback_gate_owned_by_the_environment_is_conformed_without_a_refusal() -> None:
    foreign = gate(allowed=["v9"], owners=[deployment_owner("web")])
    ours = gate(FALLBACK, allowed=None, labels={}, resource_version="31")
    [plan] = plan_gates(environment(), [foreign, ours])
    assert (plan.action, plan.gate) == ("update", FALLBACK)
    assert plan.patch == {
        "spec": {"allowedVersions": []},
        "metadata": {"labels": {MANAGED_BY_LABEL: "stagegate"}},
    }
    assert plan.resource_version == "31"


def test_created_fallback_gate_is_ours_and_planning_again_leaves_it_unchanged() -> None:
    env = environment()
    foreign_raw = gate_raw(allowed=["v9"], owners=[deployment_owner("web")])
    plans = plan_gates(env, [RolloutGate.from_raw(foreign_raw)])
    assert plans[1].body is not None
    created = RolloutGate.from_raw(plans[1].body)
    again = plan_gates(env, [RolloutGate.from_raw(foreign_raw), created])
    assert [(p.action, p.gate) for p in again] == [("unchanged", FALLBACK)]
    assert again[0].allowed_after == ()


def test_same_named_gate_of_another_incarnation_is_not_taken_over_under_the_fallback_name() -> None:
    # The fallback name hashes the uid, so a recreated Environment never meets its predecessor's.
    predecessor = gate("prod-stagegate-" + sha10(OLD_ENV_UID), owners=[env_owner("prod", OLD_ENV_UID)])
    foreign = gate(owners=[deployment_owner()])
    plans = plan_gates(environment(uid=ENV_UID), [foreign, predecessor])
    assert_refused_and_created_under_the_fallback(plans, environment(uid=ENV_UID))


def test_gate_of_an_earlier_environment_with_the_same_name_is_taken_over_and_blocks() -> None:
    leftover = gate(allowed=["v1", "v2"], owners=[env_owner("prod", OLD_ENV_UID)], resource_version="55")
    [plan] = plan_gates(environment(uid=ENV_UID), [leftover])
    assert (plan.action, plan.gate) == ("update", "prod-stagegate")
    assert plan.patch == {
        "spec": {"allowedVersions": []},
        "metadata": {"ownerReferences": [OUR_OWNER_REFERENCE]},
    }
    assert plan.allowed_after == ()
    assert plan.resource_version == "55"


def test_taken_over_gate_is_ours_afterwards() -> None:
    raw = gate_raw(allowed=["v1"], owners=[env_owner("prod", OLD_ENV_UID)])
    [plan] = plan_gates(environment(), [RolloutGate.from_raw(raw)])
    patched = RolloutGate.from_raw(merge_patch(raw, plan.patch))
    [again] = plan_gates(environment(), [patched])
    assert again.action == "unchanged"
    assert again.allowed_after == ()


@pytest.mark.parametrize(
    "owners",
    [[deployment_owner()], [], [env_owner("prod", ENV_UID)], [env_owner("prod", OLD_ENV_UID)]],
    ids=["foreign", "ownerless", "ours", "earlier-incarnation"],
)
def test_same_named_gate_being_deleted_is_retried(owners: list[dict]) -> None:
    leaving = gate(allowed=[], owners=owners, deleting=True)
    with pytest.raises(RetryableError, match="being deleted"):
        plan_gates(environment(), [leaving])


# plan_gates: allowed versions computed for another upstream


def env_now(
    *, name: str = "myapp", project: str = "myorg/myapp", relationship: tuple[str, str] = ("After", "staging")
) -> Environment:
    """The `prod` fixture with `spec.name`, `spec.backend.project` and the relationship replaced."""
    raw = environment_raw(relationship=relationship)
    raw["spec"]["name"] = name
    raw["spec"]["backend"]["project"] = project
    return Environment.from_raw(raw)


def recomputed_gate(env: Environment, allowed: list[str], computed: Environment | None = None) -> RolloutGate:
    """An owned gate in shape for `env` whose allowed list was computed for `computed`'s upstream."""
    return gate(
        allowed=allowed, annotations={**wanted_annotations(env), **computed_for(computed or environment())}
    )


UPSTREAM_CHANGES = {
    "relationship type": env_now(relationship=("Parallel", "staging")),
    "relationship environment": env_now(relationship=("After", "qa")),
    "spec.name": env_now(name="shop"),
    "backend.project": env_now(project="myorg/shop"),
}


@pytest.mark.parametrize("env", UPSTREAM_CHANGES.values(), ids=UPSTREAM_CHANGES.keys())
def test_owned_gate_computed_for_another_upstream_is_narrowed_to_empty_at_once(env: Environment) -> None:
    [plan] = plan_gates(env, [recomputed_gate(env, ["v1", "v2"])])
    assert plan.action == "update"
    assert plan.patch == {"spec": {"allowedVersions": []}}
    assert (plan.allowed_before, plan.allowed_after) == (("v1", "v2"), ())
    assert "myorg/myapp kuberik/myapp/staging After" in plan.reason
    assert str(upstream_key(env)) in plan.reason


@pytest.mark.parametrize("env", UPSTREAM_CHANGES.values(), ids=UPSTREAM_CHANGES.keys())
def test_gate_narrowed_for_a_new_upstream_stays_empty_without_another_write(env: Environment) -> None:
    raw = gate_raw(allowed=["v1"], annotations={**wanted_annotations(env), **computed_for()})
    [plan] = plan_gates(env, [RolloutGate.from_raw(raw)])
    [again] = plan_gates(env, [RolloutGate.from_raw(merge_patch(raw, plan.patch))])
    assert again.action == "unchanged"
    assert again.allowed_after == ()


@pytest.mark.parametrize(
    "env",
    [env_now(project="MyOrg/MyApp"), env_now(project="MYORG/MYAPP"), env_now(name="kuberik/myapp")],
    ids=["project-case", "project-upper", "name-with-kuberik-prefix"],
)
def test_owned_gate_computed_for_the_same_upstream_keeps_its_allowed_versions(env: Environment) -> None:
    [plan] = plan_gates(env, [recomputed_gate(env, ["v1", "v2"])])
    assert plan.action == "unchanged"
    assert plan.allowed_after == ("v1", "v2")


@pytest.mark.parametrize(
    "evidence",
    [{}, {EVIDENCE_ANNOTATION: "not json"}, {EVIDENCE_ANNOTATION: '{"upstream": null}'}],
    ids=["absent", "unreadable", "no-upstream"],
)
def test_owned_gate_whose_allowed_versions_nobody_vouches_for_is_narrowed_to_empty(
    evidence: dict[str, str],
) -> None:
    # A gate the Go controller recomputed carries no evidence: its list was computed for who knows what.
    [plan] = plan_gates(
        environment(), [gate(allowed=["v1"], annotations={**wanted_annotations(), **evidence})]
    )
    assert plan.patch == {"spec": {"allowedVersions": []}}
    assert "unknown" in plan.reason


@pytest.mark.parametrize("env", UPSTREAM_CHANGES.values(), ids=UPSTREAM_CHANGES.keys())
def test_empty_gate_computed_for_another_upstream_stays_empty_without_writing_allowed_versions(
    env: Environment,
) -> None:
    [plan] = plan_gates(env, [recomputed_gate(env, [])])
    assert plan.action == "unchanged"
    assert plan.patch is None
    [fixing_labels] = plan_gates(
        env, [gate(allowed=[], labels={}, annotations={**wanted_annotations(env), **computed_for()})]
    )
    assert fixing_labels.patch == {"metadata": {"labels": {MANAGED_BY_LABEL: "stagegate"}}}


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"upstream": "k", "vetoes": {"r": {"at": ["a", Infinity, "b"], "until": "2026-05-15T10:05:00Z"}}}',
    ],
    ids=["deep", "infinity"],
)
def test_owned_gate_with_evidence_that_breaks_the_decoder_is_narrowed_like_unreadable_evidence(
    text: str,
) -> None:
    [plan] = plan_gates(
        environment(), [gate(allowed=["v1"], annotations={**wanted_annotations(), EVIDENCE_ANNOTATION: text})]
    )
    assert plan.patch == {"spec": {"allowedVersions": []}}


# GatePlan.relaxes: which writes may only come from the Environment as the API has it now


def recompute_plan(before: list[str], *statuses: StatusRecord, annotations: Any = ABSENT) -> GatePlan:
    candidates = (ReleaseCandidate("v1", OID[:7]), ReleaseCandidate("v2", None))
    answer = results_for(candidates, {OID[:7]: lookup(OID[:7], deployment(1, 0, *statuses, tag="v1"))})
    current = gate(allowed=before, annotations=annotations)
    return plan_recompute(environment(), current, candidates, answer, epoch(100)).plan


def test_dropping_the_allowed_list_relaxes() -> None:
    env = environment(relationship=None)
    [plan] = plan_gates(env, [gate(allowed=["v1"], annotations=wanted_annotations(env))])
    assert plan.allowed_after is None
    assert plan.relaxes


def test_widening_the_allowed_list_relaxes() -> None:
    plan = recompute_plan([], succeeded(5))
    assert (plan.allowed_before, plan.allowed_after) == ((), ("v1",))
    assert plan.relaxes


def test_swapping_one_allowed_tag_for_another_relaxes() -> None:
    swap = GatePlan(
        action="update",
        gate="prod-stagegate",
        reason="swap",
        patch={"spec": {"allowedVersions": ["v2"]}},
        allowed_before=("v1",),
        allowed_after=("v2",),
    )
    assert swap.relaxes


@pytest.mark.parametrize("relationship", [("After", "staging"), None])
def test_pointing_the_gate_at_another_rollout_relaxes_even_when_it_blocks(relationship: Any) -> None:
    env = environment(rollout="myapp-v2", relationship=relationship)
    [plan] = plan_gates(
        env,
        [
            gate(
                rollout="myapp",
                allowed=["v1"] if relationship else ABSENT,
                annotations=wanted_annotations(env),
            )
        ],
    )
    assert plan.patch is not None
    assert "rolloutRef" in plan.patch["spec"]
    assert plan.relaxes


@pytest.mark.parametrize(
    "owners",
    [[env_owner("prod", "")], [env_owner("prod", OLD_ENV_UID)], [env_owner(controller=False)]],
    ids=["fill-in-uid", "takeover", "become-controller"],
)
def test_changing_the_owner_references_relaxes(owners: list[dict[str, Any]]) -> None:
    [plan] = plan_gates(environment(), [gate(allowed=[], owners=owners)])
    assert plan.patch is not None
    assert "ownerReferences" in plan.patch["metadata"]
    assert plan.relaxes


def test_creating_a_gate_does_not_relax() -> None:
    [plan] = plan_gates(environment(), [])
    assert plan.action == "create"
    assert not plan.relaxes


def test_narrowing_does_not_relax() -> None:
    assert not recompute_plan(["v1", "v2"], succeeded(5)).relaxes
    assert not recompute_plan(["v1"], failed(5)).relaxes
    [upstream_changed] = plan_gates(
        UPSTREAM_CHANGES["spec.name"], [recomputed_gate(UPSTREAM_CHANGES["spec.name"], ["v1"])]
    )
    assert upstream_changed.allowed_after == ()
    assert not upstream_changed.relaxes
    [null_to_empty] = plan_gates(environment(), [gate(allowed=None)])
    assert (null_to_empty.allowed_before, null_to_empty.allowed_after) == (None, ())
    assert not null_to_empty.relaxes


def test_writing_annotations_or_labels_only_does_not_relax() -> None:
    [annotations] = plan_gates(
        environment(), [gate(allowed=["v1"], annotations={PRETTY_NAME_ANNOTATION: "old", **computed_for()})]
    )
    assert annotations.patch is not None
    assert set(annotations.patch) == {"metadata"}
    assert not annotations.relaxes
    evidence_only = recompute_plan(["v1"], succeeded(5), annotations=wanted_annotations())
    assert evidence_only.patch is not None
    assert set(evidence_only.patch) == {"metadata"}
    assert not evidence_only.relaxes
    [labels] = plan_gates(environment(), [gate(allowed=["v1"], labels={})])
    assert not labels.relaxes


def test_writing_nothing_or_refusing_does_not_relax() -> None:
    [unchanged] = plan_gates(environment(), [gate(allowed=["v1"])])
    assert unchanged.action == "unchanged"
    assert not unchanged.relaxes
    refusal, _ = plan_gates(environment(), [gate(allowed=["v9"], owners=[deployment_owner()])])
    assert refusal.action == "refuse"
    assert not refusal.relaxes


@pytest.mark.parametrize(
    ("before", "after", "change"),
    [((), ("v1",), "opened"), (("v1",), None, "opened"), (("v1",), ("v2",), "opened"),
     (("v1", "v2"), ("v1",), "narrowed"), (None, (), "narrowed"), (("v1",), ("v1",), "other")],
)  # fmt: skip
def test_a_gate_write_is_named_by_what_it_does_to_the_allowed_versions(
    before: tuple[str, ...] | None, after: tuple[str, ...] | None, change: str
) -> None:
    """The label of `stagegate_gate_changes_total` and the `change` field of the log line."""
    plan = GatePlan("update", "prod-stagegate", "why", patch={}, allowed_before=before, allowed_after=after)
    assert plan.change == change
    assert GatePlan("create", "prod-stagegate", "why").change == "created"
    assert GatePlan("unchanged", "prod-stagegate", "why").change is None
