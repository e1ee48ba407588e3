"""The admission core: reading AdmissionReviews, what the gates and overrides say about a deploy, the
gate at admission.

Pure: no Kubernetes, no network (the conftest guard fails any connection). What a write of a Flux object
changes (and so what is judged) is tested in `test_deploy_guard.py`; here each row of the decision
table in `shared/deploy_guard.py` has a test; `test_guard_never_allows_what_a_gate_refuses` checks the
safety rule over generated gates, tags and overrides.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.admission import (
    ROUTES,
    AdmissionRequest,
    Decision,
    parse_admission_review,
    review_response,
)
from shared.deploy_guard import (
    Deploy,
    Finding,
    Governance,
    RolloutOverrides,
    governance,
    guard_decision,
    judge,
    needs,
    opted_in,
    refused_rollouts,
    unavailable,
    unchanged,
    unknown_version,
    unreadable_object,
)
from shared.errors import BadEvent
from shared.gate_admission import (
    GateWork,
    duplicate_create,
    environment_step,
    gate_failed,
    gates_ensured,
    relax_later,
)
from shared.views import Environment, RolloutGate
from tests.shared.admission_builders import (
    kustomization,
    namespace_object,
    oci_repository,
    review,
    rollout,
)
from tests.shared.builders import OLD_ENV_UID, env_owner, environment, environment_raw, gate

LABEL = ("stagegate.kuberik.com/guard", "enabled")


def parsed(*args: Any, **kwargs: Any) -> AdmissionRequest:
    return parse_admission_review(json.dumps(review(*args, **kwargs)).encode())


# --- reading the review --------------------------------------------------------------------------


def test_a_review_is_read_into_a_typed_request() -> None:
    body = review(oci_repository(tag="v2"), oci_repository(tag="v1"), dry_run=True)
    request = parse_admission_review(json.dumps(body))
    assert request.uid == body["request"]["uid"]
    assert (request.resource.group, request.resource.version, request.resource.resource) == (
        "source.toolkit.fluxcd.io",
        "v1",
        "ocirepositories",
    )
    assert (request.operation, request.namespace, request.name, request.dry_run) == (
        "UPDATE",
        "default",
        "web",
        True,
    )
    assert request.username == "system:serviceaccount:kuberik-system:rollout-controller"
    assert request.object is not None
    assert request.object["spec"]["ref"]["tag"] == "v2"
    assert request.old_object is not None
    assert request.old_object["spec"]["ref"]["tag"] == "v1"
    assert request.route == "deploy"
    assert request.version_known
    assert request.key == "default/web"


def _broken(mutate: Any) -> bytes:
    body = review(oci_repository(tag="v2"), oci_repository(tag="v1"))
    mutate(body)
    return json.dumps(body).encode()


MALFORMED: dict[str, tuple[bytes, str]] = {
    "not JSON": (b"{nope", "not JSON"),
    "a list": (b"[]", "JSON object"),
    "NaN": (b'{"apiVersion": NaN}', "not a JSON number"),
    "v1beta1 review": (_broken(lambda b: b.update(apiVersion="admission.k8s.io/v1beta1")), "apiVersion"),
    "wrong kind": (_broken(lambda b: b.update(kind="AdmissionResponse")), "kind"),
    "no request": (_broken(lambda b: b.pop("request")), "request is required"),
    "no uid": (_broken(lambda b: b["request"].pop("uid")), "request.uid"),
    "empty uid": (_broken(lambda b: b["request"].update(uid="")), "request.uid"),
    "numeric uid": (_broken(lambda b: b["request"].update(uid=7)), "request.uid"),
    "bad operation": (_broken(lambda b: b["request"].update(operation="PATCH")), "request.operation"),
    "no resource": (_broken(lambda b: b["request"].pop("resource")), "request.resource"),
    "no resource name": (_broken(lambda b: b["request"]["resource"].pop("resource")), "request.resource"),
    "group not a string": (_broken(lambda b: b["request"]["resource"].update(group=1)), "group"),
    "dryRun not a boolean": (_broken(lambda b: b["request"].update(dryRun="yes")), "dryRun"),
    "no object on UPDATE": (_broken(lambda b: b["request"].update(object=None)), "request.object"),
    "no oldObject on UPDATE": (_broken(lambda b: b["request"].pop("oldObject")), "request.oldObject"),
    "object not an object": (_broken(lambda b: b["request"].update(object=[1])), "request.object"),
    "userInfo not an object": (_broken(lambda b: b["request"].update(userInfo="me")), "userInfo"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_review_is_bad_input_with_the_reason(case: str) -> None:
    body, reason = MALFORMED[case]
    with pytest.raises(BadEvent, match=reason):
        parse_admission_review(body)


def test_the_answer_echoes_the_uid_and_says_why_when_refusing() -> None:
    request = parsed(oci_repository(tag="v1"))
    allowed = review_response(request, Decision(True, "fine", warnings=("careful\nnow\x00",)))
    assert allowed == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": request.uid, "allowed": True, "warnings": ["careful now"]},
    }
    denied = review_response(request, Decision(False, "log reason", message="not baked"))
    assert denied["response"] == {
        "uid": request.uid,
        "allowed": False,
        "status": {"code": 403, "reason": "Forbidden", "message": "not baked"},
    }


def test_warnings_stay_within_what_the_apiserver_passes_on_whole() -> None:
    request = parsed(oci_repository(tag="v1"))
    [warning] = review_response(request, Decision(True, "r", warnings=("x" * 1000,)))["response"]["warnings"]
    assert len(warning) == 256
    assert warning.endswith("...")


def test_the_route_table_covers_exactly_the_writes_stagegate_checks() -> None:
    assert set(ROUTES) == {
        *(
            (group, resource, op)
            for group, resource in (
                ("source.toolkit.fluxcd.io", "ocirepositories"),
                ("kustomize.toolkit.fluxcd.io", "kustomizations"),
            )
            for op in ("CREATE", "UPDATE", "DELETE")
        ),
        ("environments.kuberik.com", "environments", "CREATE"),
        ("environments.kuberik.com", "environments", "UPDATE"),
        ("", "namespaces", "UPDATE"),
    }
    assert parsed(kustomization(substitute={"version": "v1"})).route == "deploy"
    assert parsed(None, oci_repository(tag="v1"), operation="DELETE").route == "deploy"
    assert parsed(environment_raw()).route == "environment"
    assert parsed(namespace_object(), namespace_object(labels={})).route == "namespace"


def test_a_delete_is_read_from_its_old_object() -> None:
    request = parsed(None, kustomization(), operation="DELETE")
    assert (request.object, request.key) == (None, "default/web")
    body = review(None, kustomization(), operation="DELETE")
    del body["request"]["oldObject"]
    with pytest.raises(BadEvent, match=r"request\.oldObject is required"):
        parse_admission_review(json.dumps(body))


@pytest.mark.parametrize(
    "request_",
    [
        review(oci_repository(tag="v2"), oci_repository(tag="v1"), sub_resource="status"),
        review(None, environment_raw(), operation="DELETE"),
        review(namespace_object(), operation="CREATE"),
        review(namespace_object(), namespace_object(), sub_resource="finalize"),
        review(oci_repository(tag="v1"), operation="CONNECT"),
        review(oci_repository(tag="v1"), resource=("apps", "v1", "deployments", "Deployment")),
    ],
    ids=[
        "status subresource",
        "environment delete",
        "namespace create",
        "namespace finalize",
        "connect",
        "another resource",
    ],
)
def test_everything_else_has_no_route(request_: dict[str, Any]) -> None:
    assert parse_admission_review(json.dumps(request_)).route is None


def test_versions_are_known_as_the_real_crds_serve_them() -> None:
    assert parsed(oci_repository(tag="v1", api_version="source.toolkit.fluxcd.io/v1beta2")).version_known
    assert parsed(kustomization(api_version="kustomize.toolkit.fluxcd.io/v1beta1")).version_known
    assert not parsed(oci_repository(tag="v1", api_version="source.toolkit.fluxcd.io/v2")).version_known


# --- who governs the Rollout ---------------------------------------------------------------------


def test_environments_are_sorted_by_what_they_restrict() -> None:
    raws = [
        environment_raw("prod"),
        environment_raw("staging", uid=OLD_ENV_UID, relationship=None),
        environment_raw("other", rollout="otherapp"),
        {
            **environment_raw("broken"),
            "spec": {"rolloutRef": {"name": "myapp"}, "relationship": {"type": "X"}},
        },
        {"metadata": {"name": "garbled"}, "spec": "?"},
    ]
    governed = governance(raws, {"myapp", "lonely"})
    assert [e.name for e in governed["myapp"].restricting] == ["prod"]
    assert [e.name for e in governed["myapp"].unrestricting] == ["staging"]
    assert [u.split(":")[0] for u in governed["myapp"].unreadable] == ["broken", "garbled"]
    # one whose Rollout cannot be told may govern any of them
    assert [u.split(":")[0] for u in governed["lonely"].unreadable] == ["garbled"]
    assert governance([environment_raw("prod")], {"lonely"})["lonely"].governed is False


def test_labels_opt_a_namespace_in() -> None:
    assert opted_in({"stagegate.kuberik.com/guard": "enabled"}, LABEL)
    assert not opted_in({"stagegate.kuberik.com/guard": "disabled"}, LABEL)
    assert not opted_in({}, LABEL)
    assert not opted_in(None, LABEL)


KEY = ("default", "myapp")


def test_reads_are_needed_only_for_what_decides() -> None:
    deploy = Deploy("myapp", "OCIRepository default/web", "spec.ref.tag", "v1")
    prod, staging = environment("prod"), environment("staging", uid=OLD_ENV_UID, relationship=None)
    gated = needs([deploy], {KEY: Governance("myapp", restricting=(prod,))}, "default")
    assert (gated.gates, gated.namespace) == (("default",), False)
    only_free = needs([deploy], {KEY: Governance("myapp", unrestricting=(staging,))}, "default")
    assert (only_free.gates, only_free.namespace) == ((), False)
    lonely = needs([deploy], {KEY: Governance("myapp")}, "default")
    assert (lonely.gates, lonely.namespace) == ((), True)
    elsewhere = Deploy("myapp", "Kustomization default/web", "spec.ref.tag", "v1", rollout_namespace="other")
    governed = {("other", "myapp"): Governance("myapp", restricting=(prod,))}
    assert needs([elsewhere], governed, "default").gates == ("other",)


# --- what the gates say --------------------------------------------------------------------------

DEPLOY_V1 = Deploy("myapp", "OCIRepository default/web", "spec.ref.tag", "v1")
PROD = environment("prod")
GOVERNED = Governance("myapp", restricting=(PROD,))


def owned(allowed: Any, **kwargs: Any) -> RolloutGate:
    return gate(allowed=allowed, **kwargs)


def test_a_gate_that_allows_the_tag_lets_it_run() -> None:
    finding = judge(DEPLOY_V1, GOVERNED, [owned(["v0", "v1"])], False)
    assert finding.allowed
    assert "prod-stagegate" in finding.reason


GATE_REFUSALS: dict[str, tuple[list[RolloutGate], str]] = {
    "tag not allowed": ([owned(["v0"])], "does not allow it"),
    "nothing allowed yet": ([owned([])], "none yet"),
    "not passing": ([owned(["v1"], passing=False)], "not passing"),
    "null list on a relationship": ([owned(None)], "no allowedVersions list"),
    "no gate at all": ([], "has no RolloutGate"),
    "gate owned by someone else": (
        [owned(["v1"], owners=[env_owner(uid=OLD_ENV_UID)])],
        "has no RolloutGate",
    ),
    "gate owned by nobody": ([owned(["v1"], owners=[])], "has no RolloutGate"),
    "gate for another Rollout": ([owned(["v1"], rollout="otherapp")], "has no RolloutGate"),
    "gate being deleted": ([owned(["v1"], deleting=True)], "has no RolloutGate"),
    "adopted gate refuses": ([owned(["v1"]), owned(["v0"], name="ghd-x7k2p")], "ghd-x7k2p"),
}


@pytest.mark.parametrize("case", sorted(GATE_REFUSALS))
def test_a_governed_deploy_is_refused_unless_every_own_gate_allows_the_tag(case: str) -> None:
    gates, reason = GATE_REFUSALS[case]
    finding = judge(DEPLOY_V1, GOVERNED, gates, False)
    assert not finding.allowed
    assert reason in finding.reason
    assert finding.needs_override


def test_every_environment_with_a_relationship_must_allow() -> None:
    canary = environment("canary", uid=OLD_ENV_UID, relationship=("After", "staging"))
    both = Governance("myapp", restricting=(PROD, canary))
    canary_gate = owned(["v1"], name="canary-stagegate", owners=[env_owner("canary", OLD_ENV_UID)])
    assert not judge(DEPLOY_V1, both, [owned(["v1"])], False).allowed
    assert not judge(DEPLOY_V1, both, [owned(["v0"]), canary_gate], False).allowed
    assert judge(DEPLOY_V1, both, [owned(["v1"]), canary_gate], False).allowed


def test_environments_without_a_relationship_restrict_nothing() -> None:
    staging = environment("staging", relationship=None)
    finding = judge(DEPLOY_V1, Governance("myapp", unrestricting=(staging,)), [], True)
    assert finding.allowed
    assert "without a relationship" in finding.reason


def test_an_ungoverned_rollout_is_refused_only_where_the_namespace_opted_in() -> None:
    assert judge(DEPLOY_V1, Governance("myapp"), [], False).allowed
    refused = judge(DEPLOY_V1, Governance("myapp"), [], True)
    assert not refused.allowed
    assert "no Environment governs Rollout myapp yet" in refused.reason
    assert refused.needs_override


def test_an_unreadable_environment_that_may_govern_refuses() -> None:
    finding = judge(
        DEPLOY_V1, Governance("myapp", unreadable=("prod: spec.relationship.type ...",)), [], False
    )
    assert not finding.allowed
    assert "cannot be read" in finding.reason


def test_an_unverifiable_version_is_refused_where_a_gate_applies_and_cannot_be_overridden() -> None:
    removed = Deploy("myapp", "OCIRepository default/web", "spec.ref.tag", None, "Flux pulls latest")
    finding = judge(removed, GOVERNED, [owned(["v1"])], False)
    assert (finding.allowed, finding.reason, finding.needs_override) == (False, "Flux pulls latest", False)
    free = Governance("myapp", unrestricting=(environment("staging", relationship=None),))
    assert judge(removed, free, [], False).allowed
    assert judge(removed, Governance("myapp"), [], False).allowed
    assert not judge(removed, Governance("myapp"), [], True).needs_override


# --- overrides and the answer --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"wanted_version": "v1"}, "spec.wantedVersion"),
        ({"force_deploy": "v1"}, "annotation rollout.kuberik.com/force-deploy"),
        ({"bypass_gates": "v1"}, "annotation rollout.kuberik.com/bypass-gates"),
        ({"wanted_version": "v2", "force_deploy": "v0", "bypass_gates": "v9"}, None),
        ({"force_deploy": "", "bypass_gates": ""}, None),
        ({}, None),
    ],
)
def test_an_override_counts_only_when_it_names_exactly_that_tag(
    overrides: dict[str, str], named: str | None
) -> None:
    assert RolloutOverrides.from_raw(rollout(**overrides)).naming("v1") == named


def test_a_malformed_rollout_is_bad_input() -> None:
    with pytest.raises(BadEvent):
        RolloutOverrides.from_raw({**rollout(), "spec": {"wantedVersion": 3}})
    with pytest.raises(BadEvent):
        RolloutOverrides.from_raw({"metadata": {}})


def refused(reason: str = "RolloutGate prod-stagegate of Environment prod does not allow it") -> Finding:
    return Finding(DEPLOY_V1, False, reason)


def test_a_refusal_says_what_is_missing_and_how_to_override_in_one_sentence() -> None:
    decision = guard_decision([refused()], {KEY: None}, "default")
    assert not decision.allowed
    assert decision.message == (
        "OCIRepository default/web may not run v1 for Rollout myapp (spec.ref.tag): RolloutGate "
        "prod-stagegate of Environment prod does not allow it; to deploy it anyway set spec.wantedVersion, "
        "or the annotation rollout.kuberik.com/force-deploy or rollout.kuberik.com/bypass-gates, on "
        "Rollout myapp to v1"
    )
    assert "\n" not in decision.message
    assert ". " not in decision.message


def test_an_override_naming_the_tag_lets_it_through_with_a_warning_and_an_event() -> None:
    overrides = RolloutOverrides.from_raw(rollout(force_deploy="v1"))
    decision = guard_decision([refused()], {KEY: overrides}, "default", "alice")
    assert decision.allowed
    assert decision.warnings == (
        "stagegate: Rollout myapp runs v1 by human override (annotation rollout.kuberik.com/force-deploy), "
        "not because its upstream baked it",
    )
    [event] = decision.events
    assert (event.kind, event.name, event.uid, event.namespace, event.reason) == (
        "Rollout",
        "myapp",
        overrides.uid,
        "default",
        "DeployOverride",
    )
    assert "alice" in event.message
    assert "does not allow it" in event.message


def test_an_override_of_another_tag_does_not_help() -> None:
    decision = guard_decision(
        [refused()], {("d", "myapp"): RolloutOverrides.from_raw(rollout(wanted_version="v2"))}, "d"
    )
    assert not decision.allowed


def test_an_unverifiable_version_gets_no_override_advice() -> None:
    removed = Deploy("myapp", "OCIRepository default/web", "spec.ref.tag", None, "Flux pulls latest")
    finding = Finding(removed, False, "Flux pulls latest", overridable=False)
    assert refused_rollouts([finding], "default") == []
    decision = guard_decision([finding], {}, "default")
    assert not decision.allowed
    assert "to deploy it anyway" not in decision.message


def test_one_refused_deploy_refuses_the_write() -> None:
    other = Finding(
        Deploy("frontend", "Kustomization default/web", "spec.postBuild.substitute.f", "f2"), True, "ok"
    )
    decision = guard_decision([other, refused(), refused("second")], {}, "default")
    assert not decision.allowed
    assert decision.message.endswith("(1 more refused)")
    assert refused_rollouts([other, refused()], "default") == [KEY]


def test_all_allowed_is_allowed_without_warnings() -> None:
    decision = guard_decision(
        [Finding(DEPLOY_V1, True, "allowed by RolloutGate prod-stagegate")], {}, "default"
    )
    assert decision == Decision(True, "myapp v1: allowed by RolloutGate prod-stagegate")


def test_failures_of_the_check_refuse_with_a_sentence() -> None:
    request = parsed(oci_repository(tag="v2"), oci_repository(tag="v1"))
    for decision in (
        unavailable(request, "Kubernetes did not answer within 3s"),
        unreadable_object(request, "spec.ref must be an object"),
        unknown_version(parsed(oci_repository(tag="v1", api_version="source.toolkit.fluxcd.io/v2"))),
    ):
        assert not decision.allowed
        assert decision.message.startswith("stagegate ")
        assert "default/web" in decision.message


_tags = st.sampled_from(["v1", "v2", "v3"])


@given(
    tag=_tags,
    allowed=st.one_of(st.none(), st.lists(_tags, max_size=3)),
    passing=st.sampled_from([True, False, None]),
    own=st.booleans(),
    override=st.sampled_from([None, "wanted_version", "force_deploy", "bypass_gates"]),
    override_tag=_tags,
)
def test_guard_never_allows_what_a_gate_refuses(
    tag: str,
    allowed: list[str] | None,
    passing: bool | None,
    own: bool,
    override: str | None,
    override_tag: str,
) -> None:
    deploy = Deploy("myapp", "OCIRepository default/web", "spec.ref.tag", tag)
    owners = [env_owner()] if own else [env_owner(uid=OLD_ENV_UID)]
    the_gate = gate(allowed=allowed, passing=passing, owners=owners)
    finding = judge(deploy, GOVERNED, [the_gate], True)
    the_rollout = RolloutOverrides.from_raw(rollout(**({override: override_tag} if override else {})))
    decision = guard_decision([finding], {KEY: the_rollout}, "default")
    gate_allows = own and passing is not False and allowed is not None and tag in allowed
    overridden = override is not None and override_tag == tag
    assert decision.allowed == (gate_allows or overridden)
    assert bool(decision.warnings) == (overridden and not gate_allows)


# --- the gate at admission -----------------------------------------------------------------------


def test_a_dry_run_writes_nothing() -> None:
    step = environment_step(parsed(environment_raw(), dry_run=True))
    assert isinstance(step, Decision)
    assert step.allowed
    assert "dry run" in step.reason


def test_an_environment_being_deleted_gets_no_gate() -> None:
    raw = environment_raw()
    raw["metadata"]["deletionTimestamp"] = "2026-05-15T10:00:00Z"
    step = environment_step(parsed(raw, environment_raw()))
    assert isinstance(step, Decision)
    assert step.allowed
    assert not step.warnings


def test_an_unreadable_environment_is_allowed_with_a_warning() -> None:
    raw = environment_raw()
    raw["spec"]["relationship"] = {"type": "Sometime", "environment": "staging"}
    step = environment_step(parsed(raw))
    assert isinstance(step, Decision)
    assert step.allowed
    assert "cannot read Environment default/prod" in step.warnings[0]


def test_a_create_ensures_the_gate_from_the_requests_copy_with_its_new_uid() -> None:
    raw = environment_raw()
    del raw["metadata"]["namespace"]
    body = review(raw)
    body["request"]["namespace"] = "default"
    step = environment_step(parse_admission_review(json.dumps(body)))
    assert step == GateWork(Environment.from_raw(environment_raw()), creating=True)


def test_an_update_ensures_the_gate_but_is_not_fresh() -> None:
    step = environment_step(parsed(environment_raw(), environment_raw(relationship=None)))
    assert isinstance(step, GateWork)
    assert not step.creating


class Result:
    def __init__(self, gate: str, action: str, reason: str) -> None:
        self.gate, self.action, self.reason = gate, action, reason


def test_every_environment_answer_is_allowed() -> None:
    env = environment()
    request = parsed(environment_raw())
    answers = {
        "duplicate": duplicate_create(env, OLD_ENV_UID),
        "ensured": gates_ensured(env, [Result("prod-stagegate", "create", "new gate")]),
        "refused same-named": gates_ensured(
            env, [Result("prod-stagegate", "refuse", "owned by Deployment/web"), Result("x", "create", "r")]
        ),
        "relax later": relax_later(
            env, "no relationship: the gate does not restrict versions", restricting=True
        ),
        "create unrestricted later": relax_later(
            env, "prod-stagegate create: no restriction", restricting=False
        ),
        "failed": gate_failed(request, "Kubernetes did not answer within 3s"),
    }
    assert all(a.allowed for a in answers.values())
    assert not answers["duplicate"].warnings
    assert OLD_ENV_UID in answers["duplicate"].reason
    assert not answers["ensured"].warnings
    assert "belongs to someone else" in answers["refused same-named"].warnings[0]
    assert "keeps its restriction" in answers["relax later"].warnings[0]
    assert not answers["create unrestricted later"].warnings
    assert "refused until the gate exists" in answers["failed"].warnings[0]


def test_small_answers_and_edges() -> None:
    body = review(oci_repository(tag="v1"))
    del body["request"]["name"]
    request = parse_admission_review(json.dumps(body))
    assert request.key == "default/web"  # from the object when the request names none
    assert unchanged().allowed
    assert "nothing that decides what runs changed" in unchanged().reason
    assert Decision(False, "why", message="no", warnings=("w",)).to_log() == {
        "allowed": False,
        "reason": "why",
        "denial": "no",
        "warnings": ["w"],
    }
    assert governance(["not an object"], {"myapp"})["myapp"].unreadable == (
        "?: Environment must be an object, got str",
    )
