"""GitHub Actions' custom deployment protection rules on the fake GitHub, over real HTTP.

A job that targets an environment with a rule waits; the rule's App gets a signed
`deployment_protection_rule` delivery naming the run's callback and answers there with its installation
token. Every answer the fake gave is checked against GitHub's OpenAPI description (the `fake` fixture
ends with no schema errors), and the last tests prove that check would catch a drifting builder.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
import requests

from stagegate.settings import APP_VARIABLES
from stagegate_dev import github_cli
from stagegate_dev.fake_github import ContractViolation, FakeGitHub, NoDelivery, NotFound, rest
from tests.fake_github import test_webhook_delivery
from tests.fake_github.support import REPO, http, installed_app, sha
from tests.fake_github.test_webhook_delivery import Receiver

APP_ID = 515151
OTHER_APP = 626262
ENV = "production"
SECRET = "app-s3cret"
BOT = f"app-{APP_ID}[bot]"

hook = test_webhook_delivery.receiver
"""A webhook receiver on loopback (pytest names a fixture by the attribute that holds it)."""


@pytest.fixture
def token(fake: FakeGitHub) -> str:
    """The installation token of the App whose rule is enabled on `ENV`."""
    issued = installed_app(fake, APP_ID, 88001, [REPO])
    fake.add_protection_rule(REPO, ENV, APP_ID)
    return issued


def answer(fake: FakeGitHub, run_id: int, token: str, **body: Any) -> requests.Response:
    path = f"/repos/{REPO}/actions/runs/{run_id}/deployment_protection_rule"
    return http(fake, "POST", path, token=token, json={"environment_name": ENV, **body})


def get(fake: FakeGitHub, path: str) -> Any:
    got = http(fake, "GET", f"/repos/{REPO}/actions/runs{path}")
    assert got.status_code == 200, got.text
    return got.json()


def run_of(fake: FakeGitHub, run_id: int) -> tuple[str, str | None]:
    run = get(fake, f"/{run_id}")
    return run["status"], run["conclusion"]


def pending(fake: FakeGitHub, run_id: int) -> list[str]:
    return [p["environment"]["name"] for p in get(fake, f"/{run_id}/pending_deployments")]


def deployment_states(fake: FakeGitHub, run_id: int) -> list[str]:
    return [s["state"] for s in fake.statuses(REPO, fake.workflow_run(REPO, run_id).deployment_id)]


# a held job and the App's delivery ----------------------------------------------------------------


def test_a_job_on_a_protected_environment_waits_and_the_app_gets_a_signed_delivery(
    fake: FakeGitHub, token: str, hook: Receiver
) -> None:
    fake.app_webhook(APP_ID, hook.url, SECRET)

    run_id = fake.start_job(REPO, ENV, sha(1), ref="release", event="workflow_dispatch")
    [delivery] = fake.wait_for_app_deliveries(1)

    run = get(fake, f"/{run_id}")
    assert (run["id"], run["status"], run["conclusion"]) == (run_id, "waiting", None)
    assert (run["head_sha"], run["head_branch"], run["event"]) == (sha(1), "release", "workflow_dispatch")
    assert pending(fake, run_id) == [ENV]
    [got] = hook.received
    expected = "sha256=" + hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(got.headers["X-Hub-Signature-256"], expected)
    assert got.headers["X-Github-Event"] == "deployment_protection_rule"
    assert got.headers["X-Github-Hook-Installation-Target-Type"] == "integration"
    assert got.headers["X-Github-Hook-Installation-Target-Id"] == str(APP_ID)
    payload = got.payload
    assert (payload["action"], payload["environment"], payload["event"]) == (
        "requested",
        ENV,
        "workflow_dispatch",
    )
    callback = f"{fake.url}/repos/{REPO}/actions/runs/{run_id}/deployment_protection_rule"
    assert payload["deployment_callback_url"] == callback
    assert payload["installation"]["id"] == 88001
    assert payload["repository"]["full_name"] == REPO
    deployment = payload["deployment"]
    assert (deployment["sha"], deployment["ref"], deployment["environment"]) == (sha(1), "release", ENV)
    assert (deployment["creator"]["login"], deployment["creator"]["type"]) == ("github-actions[bot]", "Bot")
    assert deployment["id"] == fake.workflow_run(REPO, run_id).deployment_id
    assert deployment_states(fake, run_id) == []  # GitHub's REST API has no `waiting` status to show
    assert (delivery.app_id, delivery.repo, delivery.run_id, delivery.environment) == (
        APP_ID,
        REPO,
        run_id,
        ENV,
    )
    assert (delivery.deployment_id, delivery.guid, delivery.ok) == (
        deployment["id"],
        got.headers["X-Github-Delivery"],
        True,
    )
    assert fake.deliveries == []  # the repository's hook is another one, and none is set


def test_the_delivery_can_be_had_again_to_post_it_by_hand(fake: FakeGitHub, token: str) -> None:
    run_id = fake.start_job(REPO, ENV, sha(1))

    headers, body = fake.protection_rule_event(REPO, run_id, "Production", APP_ID)  # any letter case

    assert headers["X-GitHub-Event"] == "deployment_protection_rule"
    assert "X-Hub-Signature-256" not in headers
    assert json.loads(body)["deployment_callback_url"].endswith(f"/runs/{run_id}/deployment_protection_rule")
    installed_app(fake, OTHER_APP, 88002, [REPO])
    for environment, app_id in (("staging", APP_ID), (ENV, OTHER_APP)):
        with pytest.raises(NoDelivery):
            fake.protection_rule_event(REPO, run_id, environment, app_id)
    with pytest.raises(NotFound):
        fake.protection_rule_event(REPO, run_id + 1, ENV, APP_ID)


# answering the rule -------------------------------------------------------------------------------


def test_the_apps_approval_lets_the_job_deploy_and_a_second_one_is_422(fake: FakeGitHub, token: str) -> None:
    run_id = fake.start_job(REPO, ENV, sha(1))

    approved = answer(fake, run_id, token, state="approved", comment="Bake succeeded")

    assert (approved.status_code, approved.content) == (204, b"")
    assert run_of(fake, run_id) == ("completed", "success")
    assert pending(fake, run_id) == []
    assert deployment_states(fake, run_id) == ["success", "in_progress"]  # newest first
    assert fake.workflow_run(REPO, run_id).reviews == [(APP_ID, ENV, "approved", "Bake succeeded")]
    again = answer(fake, run_id, token, state="approved")
    assert again.status_code == 422
    assert "No pending deployment protection rule" in again.json()["message"]
    assert len(fake.workflow_run(REPO, run_id).reviews) == 1


def test_every_rule_must_approve_and_one_rejection_fails_the_run(fake: FakeGitHub, token: str) -> None:
    other = installed_app(fake, OTHER_APP, 88002, [REPO])
    fake.add_protection_rule(REPO, ENV, OTHER_APP)
    passes, fails = fake.start_job(REPO, ENV, sha(1)), fake.start_job(REPO, ENV, sha(2))

    assert answer(fake, passes, token, state="approved").status_code == 204
    assert (run_of(fake, passes), pending(fake, passes)) == (("waiting", None), [ENV])
    assert answer(fake, passes, other, state="approved").status_code == 204
    assert run_of(fake, passes) == ("completed", "success")

    assert answer(fake, fails, other, state="rejected", comment="Bake failed").status_code == 204
    assert (run_of(fake, fails), pending(fake, fails)) == (("completed", "failure"), [])
    assert deployment_states(fake, fails) == ["failure"]
    late = answer(fake, fails, token, state="approved")  # the run no longer waits on anything
    assert late.status_code == 422
    assert fake.workflow_run(REPO, fails).reviews == [(OTHER_APP, ENV, "rejected", "Bake failed")]


def test_status_reports_are_kept_up_to_ten_per_deployment_of_up_to_1024_characters(
    fake: FakeGitHub, token: str
) -> None:
    run_id = fake.start_job(REPO, ENV, sha(1))
    reports = [f"**check {n}**: staging is baking" for n in range(9)] + ["x" * 1024]

    assert answer(fake, run_id, token, comment="x" * 1025).status_code == 422
    assert [answer(fake, run_id, token, comment=c).status_code for c in reports] == [204] * 10
    eleventh = answer(fake, run_id, token, comment="one more")

    assert eleventh.status_code == 422
    assert "limited to 10" in eleventh.json()["message"]
    view = fake.workflow_run(REPO, run_id)
    assert (view.status, view.reports, view.reviews) == ("waiting", reports, [])
    log = get(fake, f"/{run_id}/approvals")
    assert [(e["state"], e["user"]["login"], e["comment"]) for e in log] == [
        ("pending", BOT, c) for c in reports
    ]
    assert answer(fake, run_id, token, state="approved", comment="Baked").status_code == 204
    assert get(fake, f"/{run_id}/approvals")[-1]["state"] == "approved"


def test_only_the_rules_own_app_may_answer_and_only_what_is_pending(fake: FakeGitHub, token: str) -> None:
    run_id = fake.start_job(REPO, ENV, sha(1))
    other = installed_app(fake, OTHER_APP, 88002, [REPO])  # installed, but no rule on ENV

    for who in (fake.token, other):  # a user's token, another App's
        refused = answer(fake, run_id, who, state="approved")
        assert refused.status_code == 403, refused.text
        assert "can only review their own" in refused.json()["message"]
    assert answer(fake, run_id, token, environment_name="staging", state="approved").status_code == 422
    assert answer(fake, run_id + 1, token, state="approved").status_code == 404
    invalid = answer(fake, run_id, token)  # neither a state nor a comment: GitHub's request schema
    assert invalid.status_code == 422
    assert invalid.json()["message"].startswith("Invalid request")
    assert run_of(fake, run_id) == ("waiting", None)
    assert answer(fake, run_id, token, environment_name="PRODUCTION", state="approved").status_code == 204


def test_a_rule_needs_the_apps_installation_and_an_environment_takes_six(fake: FakeGitHub) -> None:
    with pytest.raises(ValueError, match="add_app"):
        fake.add_protection_rule(REPO, ENV, APP_ID)
    installed_app(fake, APP_ID, 88001, ["myorg/elsewhere"])
    with pytest.raises(ValueError, match="not installed"):
        fake.add_protection_rule(REPO, ENV, APP_ID)
    for n in range(6):
        installed_app(fake, 700 + n, 9700 + n, None)
        fake.add_protection_rule(REPO, ENV, 700 + n)
    fake.add_protection_rule(REPO, ENV.upper(), 700)  # the same rule on the same environment: no change
    installed_app(fake, 706, 9706, None)
    with pytest.raises(ValueError, match="6 protection rules"):
        fake.add_protection_rule(REPO, ENV, 706)
    assert fake.workflow_run(REPO, fake.start_job(REPO, ENV, sha(1))).waiting_on == list(range(700, 706))


def test_a_job_without_rules_deploys_at_once_and_nothing_is_delivered(
    fake: FakeGitHub, token: str, hook: Receiver
) -> None:
    fake.app_webhook(APP_ID, hook.url, SECRET)

    free = fake.start_job(REPO, "staging", sha(1))
    held = fake.start_job(REPO, ENV, sha(2))  # the sentinel: deliveries go in order
    [delivery] = fake.wait_for_app_deliveries(1)

    assert (run_of(fake, free), pending(fake, free)) == (("completed", "success"), [])
    assert deployment_states(fake, free) == ["success", "in_progress"]
    assert delivery.run_id == held


def test_the_actions_deployments_statuses_go_to_the_repository_webhook(
    fake: FakeGitHub, token: str, hook: Receiver
) -> None:
    fake.deliver_webhooks(hook.url, "repo-s3cret")
    run_id = fake.start_job(REPO, ENV, sha(1))
    answer(fake, run_id, token, state="approved")

    deliveries = fake.wait_for_deliveries(2)

    assert [d.state for d in deliveries] == ["in_progress", "success"]
    assert {d.deployment_id for d in deliveries} == {fake.workflow_run(REPO, run_id).deployment_id}
    assert hook.received[0].payload["deployment_status"]["creator"]["login"] == "github-actions[bot]"


# listing -------------------------------------------------------------------------------------------


def test_runs_are_listed_newest_first_filtered_by_status_and_head_sha_and_paged(
    fake: FakeGitHub, token: str
) -> None:
    waiting = [fake.start_job(REPO, ENV, sha(1)) for _ in range(5)]
    other_commit = [fake.start_job(REPO, ENV, sha(2)) for _ in range(2)]
    done = [fake.start_job(REPO, "staging", sha(1)) for _ in range(3)]

    first = http(fake, "GET", f"/repos/{REPO}/actions/runs?status=waiting&head_sha={sha(1)}&per_page=2")
    seen, page = [], first
    while True:
        assert page.status_code == 200, page.text
        assert page.json()["total_count"] == 5
        seen += [r["id"] for r in page.json()["workflow_runs"]]
        if "next" not in page.links:
            break
        page = requests.get(
            page.links["next"]["url"], headers={"Authorization": f"token {fake.token}"}, timeout=5
        )

    assert seen == waiting[::-1]
    assert len(first.json()["workflow_runs"]) == 2
    assert set(first.links) == {"next", "last"}
    assert [r["id"] for r in get(fake, "?status=success")["workflow_runs"]] == done[::-1]  # a conclusion
    assert [
        r["id"] for r in get(fake, f"?status=waiting&head_sha={sha(2)}")["workflow_runs"]
    ] == other_commit[::-1]
    everything = get(fake, "?per_page=100")
    assert everything["total_count"] == 10
    runs = everything["workflow_runs"][::-1]
    assert [r["id"] for r in runs] == waiting + other_commit + done
    assert all(r["id"] > 2**32 for r in runs)
    assert [r["run_number"] for r in runs] == list(range(1, 11))


def test_reads_of_runs_can_lag_like_any_read(fake: FakeGitHub, token: str) -> None:
    run_id = fake.start_job(REPO, ENV, sha(1))

    with fake.stale():
        assert answer(fake, run_id, token, state="approved").status_code == 204  # writes land
        assert (run_of(fake, run_id), pending(fake, run_id)) == (("waiting", None), [ENV])

    assert (run_of(fake, run_id), pending(fake, run_id)) == (("completed", "success"), [])


# faults, counting, drift ------------------------------------------------------------------------


def test_faults_and_call_counts_apply_to_the_actions_endpoints(fake: FakeGitHub, token: str) -> None:
    run_id = fake.start_job(REPO, ENV, sha(1))
    callback = f"/repos/{REPO}/actions/runs/{run_id}/deployment_protection_rule"
    fake.reset_calls()

    fake.fail_next(1)
    assert answer(fake, run_id, token, state="approved").status_code == 502
    assert run_of(fake, run_id) == ("waiting", None)
    fake.fail_next(1, after_effect=True)  # the approval lands, only the answer is lost
    assert answer(fake, run_id, token, state="approved").status_code == 502
    assert run_of(fake, run_id) == ("completed", "success")
    assert answer(fake, run_id, token, state="approved").status_code == 422  # so a retry sees 422
    fake.rate_limit_next(1)
    limited = http(fake, "GET", f"/repos/{REPO}/actions/runs/{run_id}/pending_deployments")
    assert (limited.status_code, limited.headers["Retry-After"]) == (403, "60")

    assert fake.call_counts()[("POST", callback)] == 3
    assert fake.call_counts()[("GET", f"/repos/{REPO}/actions/runs/{run_id}")] == 2


def test_a_workflow_run_that_drifts_from_the_openapi_description_is_caught(
    fake: FakeGitHub, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = fake.start_job(REPO, ENV, sha(1))
    original = rest.workflow_run_json

    def without_head_sha(*args: Any) -> dict[str, Any]:
        body = original(*args)
        del body["head_sha"]
        return body

    monkeypatch.setattr(rest, "workflow_run_json", without_head_sha)
    for path in (f"/{run_id}", "?status=waiting"):
        drifted = http(fake, "GET", f"/repos/{REPO}/actions/runs{path}")
        assert drifted.status_code == 500
        assert any("'head_sha' is a required property" in e for e in drifted.json()["errors"])
    assert len(fake.schema_errors) == 2
    fake.schema_errors.clear()


def test_a_protection_rule_payload_that_drifts_from_githubs_schemas_is_caught(
    fake: FakeGitHub, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = fake.start_job(REPO, ENV, sha(1))
    original = rest.deployment_json

    def numeric_sha(*args: Any) -> dict[str, Any]:
        return {**original(*args), "sha": 42}

    monkeypatch.setattr(rest, "deployment_json", numeric_sha)
    with pytest.raises(ContractViolation) as caught:
        fake.protection_rule_event(REPO, run_id, ENV, APP_ID)
    assert any(e.startswith("official:") for e in caught.value.errors)
    assert any(e.startswith("community:") for e in caught.value.errors)
    fake.schema_errors.clear()


# the stand-in's own endpoint, the CLI, the hook's lifecycle ----------------------------------------


def test_the_stand_in_endpoint_starts_a_job_outside_githubs_ways(fake: FakeGitHub, token: str) -> None:
    fake.fail_next(1)  # armed for GitHub's API: the stand-in's own endpoint does not take it
    jobs = f"/_stand-in/repos/{REPO}/jobs"

    started = http(fake, "POST", jobs, json={"environment": ENV, "sha": sha(3), "ref": "hotfix"})

    assert started.status_code == 201, started.text
    run = fake.workflow_run(REPO, started.json()["id"])
    assert (run.status, run.head_branch, run.actor.login) == ("waiting", "hotfix", fake.user.login)
    assert fake.faults.pending() == 1
    fake.faults.clear()
    assert http(fake, "POST", jobs, token=None, json={"environment": ENV, "sha": sha(3)}).status_code == 401
    assert http(fake, "POST", jobs, json={"environment": ENV, "sha": "HEAD"}).status_code == 422
    assert http(fake, "POST", f"/_stand-in/repos/{REPO}/nothing").status_code == 404


def test_github_cli_starts_a_job_and_shows_its_run_with_githubs_api(
    fake: FakeGitHub, token: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_API_URL", fake.url)
    monkeypatch.setenv("GITHUB_TOKEN", fake.token)
    for name in (*APP_VARIABLES, "GITHUB_APP_PRIVATE_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)

    assert github_cli.main(["job", "start", "--repo", REPO, "--environment", ENV, "--sha", sha(4)]) == 0
    run_id = int(capsys.readouterr().out)
    assert github_cli.main(["job", "show", "--repo", REPO, "--run", str(run_id)]) == 0
    waiting = capsys.readouterr().out.splitlines()
    answer(fake, run_id, token, comment="Waiting for staging's bake")
    answer(fake, run_id, token, state="approved", comment="Baked")
    assert github_cli.main(["job", "show", "--repo", REPO, "--run", str(run_id)]) == 0
    done = capsys.readouterr().out.splitlines()

    head = f"run {run_id} of deploy (push on main at {sha(4)[:7]})"
    assert waiting == [f"{head}: waiting", f"  waiting on: {ENV}"]
    assert done == [
        f"{head}: completed, success",
        f"  status report by {BOT} on {ENV}: Waiting for staging's bake",
        f"  approved by {BOT} on {ENV}: Baked",
    ]
    assert github_cli.main(["job", "show", "--repo", REPO, "--run", "1"]) == 2
    assert "HTTP 404" in capsys.readouterr().err


def test_stopping_and_closing_end_the_apps_deliveries(
    make_fake: Callable[..., FakeGitHub], hook: Receiver
) -> None:
    fake = make_fake()
    installed_app(fake, APP_ID, 88001, [REPO])
    fake.add_protection_rule(REPO, ENV, APP_ID)
    fake.app_webhook(APP_ID, hook.url, SECRET)
    fake.start_job(REPO, ENV, sha(1))
    fake.wait_for_app_deliveries(1)

    fake.stop_app_webhooks()
    fake.start_job(REPO, ENV, sha(2))
    with pytest.raises(TimeoutError, match="1 of 2"):
        fake.wait_for_app_deliveries(2, timeout=0.5)
    fake.close()

    assert len(hook.received) == 1
    assert not any(t.name == "fake-github-app-hookshot" and t.is_alive() for t in threading.enumerate())
