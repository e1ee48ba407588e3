"""The pure core of the deployment protection rule: its configuration, the delivery, the decision."""

from __future__ import annotations

from typing import Any

import pytest

from shared.bake import CommitLookup, DeploymentRecord, StatusRecord
from shared.errors import BadEvent
from shared.github_delivery import BakeTarget
from shared.protection import MAX_COMMENT, Decision, ProtectionRequest, ProtectionRules, decide, unconfigured

SHA = "ab" * 20
RULES = ProtectionRules.parse(
    """
    # the production environment of myorg/myapp waits for staging's bake
    myorg/MyApp:production=kuberik/myapp/staging
    myorg/db:Prod EU=kuberik/db/staging
    """
)
RULE = RULES.rules[0]


def test_rules_are_read_one_per_line_and_matched_as_github_matches_names() -> None:
    assert [str(r) for r in RULES.rules] == [
        "myorg/myapp:production=kuberik/myapp/staging",
        "myorg/db:Prod EU=kuberik/db/staging",
    ]
    assert RULES.rule_for("MYORG/myapp", "Production") is RULE
    assert RULES.rule_for("myorg/db", "prod eu") is RULES.rules[1]
    assert RULES.rule_for("myorg/myapp", "staging") is None
    assert RULES.waiting_on("myorg/myapp", BakeTarget("myapp", "staging")) == (RULE,)
    assert RULES.waiting_on("myorg/other", BakeTarget("myapp", "staging")) == ()
    assert ProtectionRules.parse("a/b:p=kuberik/x/s; c/d:p=kuberik/y/s").repositories() == ("a/b", "c/d")
    assert not ProtectionRules.parse("  \n# nothing\n")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("myorg/myapp=kuberik/myapp/staging", "is not owner/repo:environment"),
        ("myorg:production=kuberik/myapp/staging", "is not owner/repo:environment"),
        ("myorg/*:production=kuberik/myapp/staging", "is not owner/repo:environment"),
        ("myorg/myapp: =kuberik/myapp/staging", "names no GitHub environment"),
        ("myorg/myapp:production=myapp/staging", "is not a kuberik/<name>/<environment>"),
        ("a/b:production=kuberik/x/s\na/b:PRODUCTION=kuberik/y/s", "has two rules"),
    ],
)
def test_a_bad_rule_is_refused_naming_it(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        ProtectionRules.parse(text)


def payload(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "action": "requested",
        "environment": "production",
        "deployment_callback_url": "https://api.github.com/repos/myorg/myapp/actions/runs/4242/deployment_protection_rule",
        "deployment": {"id": 77, "sha": SHA.upper()},
        "repository": {"full_name": "myorg/myapp"},
    }
    body.update(changes)
    return body


def test_the_request_names_the_run_of_its_own_repository() -> None:
    request = ProtectionRequest.from_payload(payload())
    assert (request.run_id, request.sha, request.deployment_id) == (4242, SHA, 77)


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"deployment_callback_url": "https://evil.example/repos/myorg/myapp/actions/runs/1/other"}, "not a"),
        (
            {
                "deployment_callback_url": "https://api.github.com/repos/other/repo/actions/runs/1/deployment_protection_rule"
            },
            "another repository",
        ),
        ({"deployment_callback_url": None}, "not a"),
        ({"deployment": {"sha": "main"}}, "40-digit commit id"),
        ({"deployment": None}, "payload.deployment"),
        ({"environment": ""}, "payload.environment"),
        ({"repository": {"full_name": 7}}, "owner/repo"),
    ],
)
def test_a_malformed_request_is_a_bad_event(changes: dict[str, Any], says: str) -> None:
    with pytest.raises(BadEvent, match=says):
        ProtectionRequest.from_payload(payload(**changes))


def record(
    deployment_id: int, tag: str, entry: int, *statuses: tuple[str, str, str], sha: str = SHA
) -> DeploymentRecord:
    return DeploymentRecord(
        id=deployment_id,
        sha=sha,
        payload={"id": entry, "version": {"tag": tag, "revision": sha}},
        created_at="2026-12-08T00:00:00Z",
        statuses=tuple(StatusRecord(state, description, at) for state, description, at in statuses),
    )


def lookup(*records: DeploymentRecord) -> CommitLookup:
    return CommitLookup(SHA, SHA, records)


SUCCEEDED = ("success", "Bake succeeded", "2026-12-08T00:10:00Z")
FAILED = ("failure", "Bake failed: error rate 7% over 5%", "2026-12-08T00:10:00Z")
BAKING = ("in_progress", "Baking in progress", "2026-12-08T00:05:00Z")


def test_approved_when_the_commit_baked_successfully() -> None:
    decision = decide(RULE, SHA, lookup(record(10, "v1", 1, BAKING, SUCCEEDED)))
    assert decision.verdict == "approved"
    assert "kuberik/myapp/staging baked ababab" in decision.comment
    assert "v1" in decision.comment


def test_rejected_with_the_reason_when_the_newest_bake_failed() -> None:
    decision = decide(RULE, SHA, lookup(record(10, "v1", 1, BAKING, FAILED)))
    assert decision.verdict == "rejected"
    assert "error rate 7% over 5%" in decision.comment


@pytest.mark.parametrize(
    ("records", "says"),
    [
        ((), "no bake of it recorded yet"),
        ((record(10, "v1", 1, BAKING),), "finish baking"),
        ((record(10, "v1", 1, ("inactive", "Bake cancelled", "2026-12-08T00:10:00Z")),), "finish baking"),
        ((record(10, "v1", 1, SUCCEEDED, ("failure", "Bake failed", SUCCEEDED[2])),), "ambiguous"),
        ((record(10, "v1", 1, ("success", "Deployment successful", SUCCEEDED[2])),), "none yet"),
        ((record(10, "v1", 1, SUCCEEDED, sha="cd" * 20),), "no bake of it recorded yet"),
    ],
)
def test_waiting_while_nothing_decided(records: tuple[DeploymentRecord, ...], says: str) -> None:
    decision = decide(RULE, SHA, lookup(*records))
    assert decision.verdict == "waiting"
    assert says in decision.comment


def test_waiting_while_github_knows_no_such_commit() -> None:
    assert decide(RULE, SHA, CommitLookup(SHA, None)).verdict == "waiting"


def test_the_newest_build_decides_by_githubs_own_sequence() -> None:
    baked = record(10, "v1", 1, SUCCEEDED)
    rebuilt_failed = record(11, "v1-rebuild", 2, FAILED)
    assert decide(RULE, SHA, lookup(baked, rebuilt_failed)).verdict == "rejected"
    failed = record(10, "v1", 1, FAILED)
    rebuilt_baked = record(11, "v1-rebuild", 2, SUCCEEDED)
    assert decide(RULE, SHA, lookup(failed, rebuilt_baked)).verdict == "approved"
    # Listed in another order, or with the entry ids of a re-created Rollout: the same answer.
    restarted = record(12, "v1-again", 1, BAKING)
    assert decide(RULE, SHA, lookup(restarted, failed, rebuilt_baked)).verdict == "waiting"


def test_a_record_without_kuberiks_history_entry_vouches_for_nothing() -> None:
    untagged = DeploymentRecord(
        id=10,
        sha=SHA,
        payload={"version": {"tag": "v1"}},
        created_at="2026-12-08T00:00:00Z",
        statuses=(StatusRecord(*SUCCEEDED),),
    )
    assert decide(RULE, SHA, lookup(untagged)).verdict == "waiting"


def test_the_answer_body_is_a_review_or_a_status_report_within_githubs_limit() -> None:
    assert Decision("approved", "ok").body("production") == {
        "environment_name": "production",
        "comment": "ok",
        "state": "approved",
    }
    report = Decision("waiting", "x" * 5000).body("production")
    assert "state" not in report
    assert len(report["comment"]) == MAX_COMMENT


def test_an_environment_without_a_rule_is_rejected_with_the_fix() -> None:
    decision = unconfigured("MyOrg/MyApp", "production")
    assert decision.verdict == "rejected"
    assert "myorg/myapp:production=kuberik/<name>/<environment>" in decision.comment
    assert "PROTECTION_RULES" in decision.comment
