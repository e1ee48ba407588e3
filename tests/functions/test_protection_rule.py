"""GitHub Actions jobs held by stagegate's deployment protection rule, released by the same bake that
opens prod's RolloutGate: `github_protection_rule`, `github_webhook` and `resync_http` served by
functions-framework with GitHub App credentials, against the real kube-apiserver and the GitHub
stand-in, which holds the workflow runs and delivers the App's `deployment_protection_rule` events."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from kubernetes import client

from shared.github_delivery import signature
from stagegate.kube import KubeGates
from stagegate_dev import devstack
from stagegate_dev.fake_github import FakeGitHub
from stagegate_dev.fake_github.actions import WorkflowRun
from stagegate_dev.protection_app import APP_ID, protection_app
from tests.functions.metrics_support import scrape
from tests.functions.test_github_webhook import CA, SECRET, App, deliver, rev

REPO = "org-actions/myapp"
"""One repository for the module: the servers' PROTECTION_RULES name it; each test uses its own commits."""
FUNCTIONS = devstack.ROOT / "functions"


@dataclass(frozen=True)
class Served:
    protection: str
    webhook: str
    resync: str
    metrics: int
    """`github_protection_rule`'s metrics port."""


@pytest.fixture(scope="module")
def served(kube_stack: devstack.KubeStack, procs: devstack.Processes, fake: FakeGitHub) -> Served:
    fake.add_repo(REPO)
    env = {
        "KUBECONFIG": str(kube_stack.function_kubeconfig),
        "GITHUB_API_URL": fake.url,
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "RESYNC_TOKEN": "resync-token",
        # The App, its rule on production, and the tests' bakes (recorded with the stand-in's token) trusted.
        **protection_app(fake, [(REPO, "kuberik/myapp/staging")]),
    }
    fake.add_protection_rule(REPO, "qa", APP_ID)  # enabled on the environment, but in no PROTECTION_RULES
    CA[:] = [str(kube_stack.tls.ca_file)]
    # Plain http: the stand-in delivers the App's webhooks with the system's CAs.
    protection = devstack.FunctionServer(
        FUNCTIONS / "github_protection_rule" / "main.py",
        "github_protection_rule",
        {**env, "METRICS_PORT": str(metrics := devstack.free_port())},
        None,
        procs,
    )
    webhook = devstack.FunctionServer(
        FUNCTIONS / "github_webhook" / "main.py", "github_webhook", env, kube_stack.tls, procs
    )
    resync = devstack.FunctionServer(
        FUNCTIONS / "resync" / "main.py", "resync_http", env, kube_stack.tls, procs
    )
    fake.app_webhook(APP_ID, protection.url, SECRET)
    return Served(protection.url, webhook.url, resync.url, metrics)


@pytest.fixture
def app(
    custom: client.CustomObjectsApi, gates: KubeGates, fake: FakeGitHub, namespace: str, served: Served
) -> App:
    app = App(custom, gates, fake, namespace)
    app.repo = REPO
    app.environment("staging")
    app.environment("prod", upstream="staging")
    return app


def until(condition: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout:g} s: {what}")


def reported(fake: FakeGitHub, run_id: int) -> WorkflowRun:
    """The run once stagegate posted a status report on it."""
    found: WorkflowRun = until(
        lambda: (run := fake.workflow_run(REPO, run_id)).reports and run, f"a status report on run {run_id}"
    )
    return found


def completed(fake: FakeGitHub, run_id: int) -> WorkflowRun:
    """The run once it went on or failed (every rule answered)."""
    found: WorkflowRun = until(
        lambda: (run := fake.workflow_run(REPO, run_id)).status == "completed" and run,
        f"run {run_id} completes",
    )
    return found


def held_undelivered(fake: FakeGitHub, served: Served, sha: str) -> int:
    """A job to production held on the rule, whose delivery to stagegate was lost (nothing listened)."""
    fake.app_webhook(APP_ID, "http://127.0.0.1:9/", SECRET)
    try:
        run_id = fake.start_job(REPO, "production", sha)
        until(lambda: any(d.run_id == run_id and not d.ok for d in fake.app_deliveries), "the delivery fails")
    finally:
        fake.app_webhook(APP_ID, served.protection, SECRET)
    return run_id


def resync(served: Served) -> dict[str, Any]:
    answer = requests.post(
        served.resync, headers={"Authorization": "Bearer resync-token"}, verify=CA[0], timeout=60
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_a_job_waits_while_staging_bakes_and_the_bake_that_opens_prod_releases_it(
    fake: FakeGitHub, app: App, served: Served
) -> None:
    sha = rev(101)
    app.candidates("prod", ("v101", sha))
    baking = app.bake("staging", sha, "in_progress", "Baking in progress", tag="v101")
    run_id = fake.start_job(REPO, "production", sha)

    held = reported(fake, run_id)
    assert held.status == "waiting"
    assert held.reviews == []
    assert "Waiting for kuberik/myapp/staging to finish baking" in held.reports[0]
    assert app.gate("prod") == []

    deployment = deployment_of(fake, baking)
    fake.reset_calls()
    done = app.status(deployment, "success", "Bake succeeded")
    response = deliver(served.webhook, fake, app, done)

    assert response.status_code == 200, response.text
    released = response.json()["protectionRules"]["answered"]
    assert [(r["run"], r["status"]) for r in released] == [(run_id, "approved")]
    assert app.gate("prod") == ["v101"]  # the same bake, the same delivery
    run = fake.workflow_run(REPO, run_id)
    assert (run.status, run.conclusion) == ("completed", "success")
    assert [(r.environment, r.state) for r in run.reviews] == [("production", "approved")]
    assert "kuberik/myapp/staging baked" in run.reviews[0].comment
    calls = fake.call_counts()
    # The README's count: one list of waiting runs, one pending_deployments per run, one answer per run.
    assert calls[("GET", f"/repos/{REPO}/actions/runs")] == 1
    assert calls[("GET", f"/repos/{REPO}/actions/runs/{run_id}/pending_deployments")] == 1
    assert calls[("POST", f"/repos/{REPO}/actions/runs/{run_id}/deployment_protection_rule")] == 1


def deployment_of(fake: FakeGitHub, status_id: int) -> int:
    """The deployment a status the stand-in recorded belongs to."""
    with fake.state.locked():
        return fake.state.statuses[status_id].deployment_id


def test_a_job_is_approved_at_once_when_staging_already_baked_its_commit(
    fake: FakeGitHub, app: App, served: Served
) -> None:
    sha = rev(102)
    app.bake("staging", sha, tag="v102")
    fake.reset_calls()
    run_id = fake.start_job(REPO, "production", sha)

    run = completed(fake, run_id)
    assert run.conclusion == "success"
    assert run.reports == []
    calls = fake.call_counts()
    # Per decision: one GraphQL read of the commit's bake records, one answer (and the App's token once).
    assert calls[("POST", f"/repos/{REPO}/actions/runs/{run_id}/deployment_protection_rule")] == 1
    assert calls[("POST", "/graphql")] == 1
    # Counted once GitHub took the answer, which is after the stand-in completed the run: wait for it.
    until(
        lambda: scrape(served.metrics).get('stagegate_protection_answers_total{verdict="approved"}', 0) >= 1,
        "github_protection_rule counts the approval",
    )


def test_a_job_is_rejected_with_the_reason_when_the_newest_bake_failed(fake: FakeGitHub, app: App) -> None:
    sha = rev(103)
    app.bake("staging", sha, "failure", "Bake failed: error rate 7% over 5%", tag="v103")
    run_id = fake.start_job(REPO, "production", sha)

    run = completed(fake, run_id)
    assert run.conclusion == "failure"
    assert [r.state for r in run.reviews] == ["rejected"]
    assert "error rate 7% over 5%" in run.reviews[0].comment


def test_an_untrusted_creators_success_releases_nothing(fake: FakeGitHub, app: App, served: Served) -> None:
    sha = rev(104)
    app.creator = "someone-with-write-access"
    forged = app.bake("staging", sha, tag="v104")
    run_id = fake.start_job(REPO, "production", sha)

    held = reported(fake, run_id)
    assert "no bake of it recorded yet" in held.reports[0]
    response = deliver(served.webhook, fake, app, forged)
    assert response.status_code == 200, response.text
    assert response.json()["protectionRules"]["answered"] == []
    resync(served)
    run = fake.workflow_run(REPO, run_id)
    assert (run.status, run.reviews) == ("waiting", [])


def test_a_lost_delivery_is_answered_by_the_resync_and_a_duplicate_changes_nothing(
    fake: FakeGitHub, app: App, served: Served
) -> None:
    sha = rev(105)
    run_id = held_undelivered(fake, served, sha)
    app.bake("staging", sha, tag="v105")  # recorded; its deployment_status delivery is not sent here
    assert fake.workflow_run(REPO, run_id).status == "waiting"

    summary = resync(served)

    assert [(r["run"], r["status"]) for r in summary["protectionRules"]] == [(run_id, "approved")]
    assert fake.workflow_run(REPO, run_id).conclusion == "success"
    headers, body = fake.protection_rule_event(REPO, run_id, "production", APP_ID)
    headers["X-Hub-Signature-256"] = signature(SECRET, body)
    late = requests.post(served.protection, data=body, headers=headers, timeout=30)
    assert late.status_code == 200, late.text
    assert late.json()["status"] == "not waiting"
    assert len(fake.workflow_run(REPO, run_id).reviews) == 1


def test_an_environment_stagegate_has_no_rule_for_is_rejected_naming_the_fix(
    fake: FakeGitHub, app: App
) -> None:
    run_id = fake.start_job(REPO, "qa", rev(106))

    run = completed(fake, run_id)
    assert run.conclusion == "failure"
    assert f"{REPO}:qa=kuberik/<name>/<environment>" in run.reviews[0].comment


def test_a_forged_delivery_is_refused_and_answers_nothing(fake: FakeGitHub, app: App, served: Served) -> None:
    sha = rev(107)
    app.bake("staging", sha, tag="v107")
    run_id = held_undelivered(fake, served, sha)
    headers, body = fake.protection_rule_event(REPO, run_id, "production", APP_ID)
    headers["X-Hub-Signature-256"] = signature("not-the-secret", body)

    refused = requests.post(served.protection, data=body, headers=headers, timeout=30)

    assert refused.status_code == 401
    assert fake.workflow_run(REPO, run_id).reviews == []


def test_a_delivery_whose_callback_names_another_repository_is_refused_and_answers_nothing(
    fake: FakeGitHub, app: App, served: Served
) -> None:
    sha = rev(108)
    app.bake("staging", sha, tag="v108")
    run_id = held_undelivered(fake, served, sha)
    headers, body = fake.protection_rule_event(REPO, run_id, "production", APP_ID)
    payload = json.loads(body)
    payload["deployment_callback_url"] = payload["deployment_callback_url"].replace(REPO, "other/repo")
    body = json.dumps(payload).encode()
    headers["X-Hub-Signature-256"] = signature(SECRET, body)

    refused = requests.post(served.protection, data=body, headers=headers, timeout=30)

    assert refused.status_code == 400
    assert "another repository" in refused.json()["error"]
    assert fake.workflow_run(REPO, run_id).reviews == []
