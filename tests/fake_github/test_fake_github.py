"""The fake GitHub itself, over real HTTP: PyGithub against it, GraphQL, webhooks, faults, drift checks.

Every test's fake must end with no schema errors: whatever it answered matched GitHub's published
descriptions. Outside CI, missing octokit assets (no npm, no registry) skip these tests with the
reason; in CI that is a failure.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from github import Auth, Github, GithubException
from github.GithubException import BadCredentialsException, RateLimitExceededException, UnknownObjectException

from stagegate_dev.fake_github import (
    ContractViolation,
    FakeGitHub,
    NoDelivery,
    ValidationFailed,
    rest,
    signature_256,
)
from stagegate_dev.fake_github.contracts import ASSETS_ENV, load_contracts
from tests.fake_github.support import PRODUCTION, REPO, STAGING, TASK, client, deploy, graphql, http, sha
from tests.octokit import require_octokit

# assets ------------------------------------------------------------------------------------------


def test_missing_assets_fail_in_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ASSETS_ENV, str(tmp_path / "nothing-here"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="octokit npm assets unavailable"):
        require_octokit()


def test_missing_assets_skip_outside_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ASSETS_ENV, str(tmp_path / "nothing-here"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_octokit()


# REST through PyGithub ---------------------------------------------------------------------------


def test_pygithub_creates_and_reads_a_deployment_and_its_statuses(fake: FakeGitHub, gh: Github) -> None:
    fake.set_ref(REPO, "main", sha(7))
    repo = gh.get_repo(REPO)
    payload = {
        "id": "x",
        "relationship": {"type": "After", "environment": "staging"},
        "version": {"tag": "v7"},
    }
    created = repo.create_deployment(
        "main", task=TASK, payload=payload, environment=PRODUCTION, required_contexts=[], auto_merge=False
    )
    pending = created.create_status("pending", description="Deploying")
    done = created.create_status("success", description="Bake succeeded")

    read = repo.get_deployment(created.id)
    assert (read.sha, read.ref, read.task, read.environment) == (sha(7), "main", TASK, PRODUCTION)
    assert read.payload == payload
    assert read.creator.login == "stagegate-bot"
    statuses = list(read.get_statuses())
    assert [(s.id, s.state, s.description) for s in statuses] == [
        (done.id, "success", "Bake succeeded"),
        (pending.id, "pending", "Deploying"),
    ]
    assert done.id > pending.id
    assert read.get_status(pending.id).description == "Deploying"


def test_a_reference_created_makes_its_commit_known_as_a_push_would(fake: FakeGitHub, gh: Github) -> None:
    repo = gh.get_repo(REPO)
    ref = repo.create_git_ref("refs/tags/v9", sha(9))
    assert (ref.ref, ref.object.sha, ref.object.type) == ("refs/tags/v9", sha(9), "commit")
    assert repo.create_deployment("v9", environment=STAGING, required_contexts=[]).sha == sha(9)
    with pytest.raises(GithubException) as taken:
        repo.create_git_ref("refs/tags/v9", sha(9))
    assert (taken.value.status, taken.value.data["message"]) == (422, "Reference already exists")
    for bad_ref, bad_sha in (("v10", sha(10)), ("refs/v10", sha(10)), ("refs/tags/v10", "abc")):
        with pytest.raises(GithubException) as refused:
            repo.create_git_ref(bad_ref, bad_sha)
        assert refused.value.status == 422


def test_repository_names_are_case_insensitive_and_answered_canonically(gh: Github) -> None:
    repo = gh.get_repo("MyOrg/MYAPP")
    assert repo.full_name == REPO
    assert repo.owner.login == "myorg"


def test_unknown_repository_and_deployment_are_404(gh: Github) -> None:
    with pytest.raises(UnknownObjectException):
        gh.get_repo("myorg/nope")
    with pytest.raises(UnknownObjectException):
        gh.get_repo(REPO).get_deployment(42)


def test_requests_without_the_token_get_githubs_401(fake: FakeGitHub, assets: Path) -> None:
    missing = http(fake, "GET", f"/repos/{REPO}", token=None)
    wrong = http(fake, "GET", f"/repos/{REPO}", token="ghp_wrong")
    assert (missing.status_code, missing.json()["message"]) == (401, "Requires authentication")
    assert (wrong.status_code, wrong.json()["message"]) == (401, "Bad credentials")
    bearer = requests.get(
        f"{fake.url}/repos/{REPO}", headers={"Authorization": f"Bearer {fake.token}"}, timeout=5
    )
    assert bearer.status_code == 200
    graphql_missing = requests.post(f"{fake.url}/graphql", json={"query": "{viewer{login}}"}, timeout=5)
    assert graphql_missing.status_code == 401
    with pytest.raises(BadCredentialsException):
        Github(auth=Auth.Token("ghp_wrong"), base_url=fake.url, retry=None).get_repo(REPO).full_name  # noqa: B018


def test_invalid_writes_get_422_like_github(fake: FakeGitHub, gh: Github) -> None:
    repo = gh.get_repo(REPO)
    with pytest.raises(GithubException) as unknown_ref:
        repo.create_deployment("no-such-branch", required_contexts=[])
    assert unknown_ref.value.status == 422
    assert unknown_ref.value.data["message"] == "No ref found for: no-such-branch"

    deployment = repo.create_deployment(sha(1), environment=STAGING, required_contexts=[])
    with pytest.raises(GithubException) as too_long:
        deployment.create_status("failure", description="x" * 141)
    assert too_long.value.status == 422
    bad_state = http(
        fake, "POST", f"/repos/{REPO}/deployments/{deployment.id}/statuses", json={"state": "bogus"}
    )
    assert bad_state.status_code == 422
    assert bad_state.json()["message"].startswith("Invalid request.")
    assert http(fake, "POST", f"/repos/{REPO}/deployments", data=b"{not json").status_code == 400
    with pytest.raises(ValidationFailed):
        fake.create_status(REPO, deployment.id, "success", "y" * 141)


def test_listing_250_deployments_pages_like_github(fake: FakeGitHub, assets: Path) -> None:
    ids = [deploy(fake, n, STAGING if n % 5 else PRODUCTION)["id"] for n in range(250)]
    fake.reset_calls()
    gh = client(fake, per_page=100)
    listed = gh.get_repo(REPO).get_deployments()
    assert [d.id for d in listed] == list(reversed(ids))
    assert listed.totalCount == 250
    assert sum(1 for method, path in fake.calls if method == "GET" and path.endswith("/deployments")) == 4

    first = http(fake, "GET", f"/repos/{REPO}/deployments", params={"per_page": 100})
    repo_id = fake.state.repo(REPO).id
    assert first.headers["Link"] == (
        f'<{fake.url}/repositories/{repo_id}/deployments?per_page=100&page=2>; rel="next", '
        f'<{fake.url}/repositories/{repo_id}/deployments?per_page=100&page=3>; rel="last"'
    )
    production = list(gh.get_repo(REPO).get_deployments(environment=PRODUCTION))
    assert [d.id for d in production] == [i for n, i in reversed(list(enumerate(ids))) if n % 5 == 0]
    only = list(gh.get_repo(REPO).get_deployments(sha=sha(17)))
    assert [d.id for d in only] == [ids[17]]


def test_statuses_are_listed_newest_first_across_pages(fake: FakeGitHub, gh: Github) -> None:
    deployment = deploy(fake, 1)
    made = [fake.create_status(REPO, deployment["id"], "in_progress", f"step {i}")["id"] for i in range(45)]
    statuses = gh.get_repo(REPO).get_deployment(deployment["id"]).get_statuses()
    assert [s.id for s in statuses] == list(reversed(made))


def test_rate_limit_endpoint_answers_and_counts_down(fake: FakeGitHub, gh: Github) -> None:
    gh.get_repo(REPO)
    before = http(fake, "GET", "/rate_limit").json()["resources"]["core"]
    http(fake, "GET", f"/repos/{REPO}")
    after = http(fake, "GET", "/rate_limit").json()["resources"]["core"]
    assert after["remaining"] == before["remaining"] - 1
    assert gh.get_rate_limit().resources.core.limit == 5000


def test_conditional_get_answers_304_until_something_changes(fake: FakeGitHub) -> None:
    deployment = deploy(fake, 1, state="pending")
    path = f"/repos/{REPO}/deployments/{deployment['id']}/statuses"
    first = http(fake, "GET", path)
    etag = first.headers["ETag"]
    assert etag.startswith('W/"')
    again = http(fake, "GET", path, headers={"If-None-Match": etag})
    assert (again.status_code, again.content, again.headers["ETag"]) == (304, b"", etag)
    assert again.headers["X-RateLimit-Remaining"] == first.headers["X-RateLimit-Remaining"]
    fake.create_status(REPO, deployment["id"], "success", "Bake succeeded")
    changed = http(fake, "GET", path, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag


def test_timestamps_and_ids_only_grow(fake: FakeGitHub) -> None:
    a = deploy(fake, 1, state="success")
    b = deploy(fake, 2, state="failure")
    assert b["id"] > a["id"]
    assert b["created_at"] > a["created_at"]
    statuses = fake.statuses(REPO, a["id"]) + fake.statuses(REPO, b["id"])
    assert len({s["id"] for s in statuses}) == len(statuses)


def test_status_environment_moves_the_deployment(fake: FakeGitHub, gh: Github) -> None:
    deployment = deploy(fake, 1, STAGING)
    fake.create_status(REPO, deployment["id"], "success", "ok", environment=PRODUCTION)
    read = gh.get_repo(REPO).get_deployment(deployment["id"])
    assert (read.environment, read.original_environment) == (PRODUCTION, STAGING)


# GitHub's automatic inactive statuses ------------------------------------------------------------


def test_success_makes_older_successful_deployments_of_the_environment_inactive(fake: FakeGitHub) -> None:
    succeeded = deploy(fake, 1, state="success")
    failed = deploy(fake, 2, state="failure")
    elsewhere = deploy(fake, 3, PRODUCTION, state="success")
    newest = deploy(fake, 4)
    fake.create_status(REPO, newest["id"], "success", "Bake succeeded")

    inactive = fake.statuses(REPO, succeeded["id"])[0]
    assert (inactive["state"], inactive["description"]) == ("inactive", "")
    assert [s["state"] for s in fake.statuses(REPO, failed["id"])] == ["failure"]
    assert [s["state"] for s in fake.statuses(REPO, elsewhere["id"])] == ["success"]
    assert [s["state"] for s in fake.statuses(REPO, newest["id"])] == ["success"]
    # Again: an already inactive deployment gets no second automatic status.
    fake.create_status(REPO, deploy(fake, 5)["id"], "success", "Bake succeeded")
    assert [s["state"] for s in fake.statuses(REPO, succeeded["id"])] == ["inactive", "success"]


def test_auto_inactive_false_leaves_older_deployments_alone(fake: FakeGitHub, gh: Github) -> None:
    older = deploy(fake, 1, state="success")
    newer = gh.get_repo(REPO).get_deployment(deploy(fake, 2)["id"])
    newer.create_status("success", description="Bake succeeded", auto_inactive=False)
    assert [s["state"] for s in fake.statuses(REPO, older["id"])] == ["success"]


def test_scope_all_makes_every_older_deployment_not_yet_inactive_inactive(assets: Path) -> None:
    with FakeGitHub(repos=[REPO], assets=assets, auto_inactive_scope="all") as fake:
        failed = deploy(fake, 1, state="failure")
        untouched = deploy(fake, 2)
        fake.create_status(REPO, deploy(fake, 3)["id"], "success", "ok")
        assert fake.statuses(REPO, failed["id"])[0]["state"] == "inactive"
        assert fake.statuses(REPO, untouched["id"])[0]["state"] == "inactive"
        assert fake.schema_errors == []


# GraphQL -----------------------------------------------------------------------------------------


def test_pygithub_finds_graphql_under_the_base_url(fake: FakeGitHub, gh: Github) -> None:
    assert gh.requester.graphql_url == f"{fake.url}/graphql"
    ghes = client(fake, base_url=f"{fake.url}/api/v3")
    assert ghes.requester.graphql_url == f"{fake.url}/api/graphql"
    assert ghes.get_repo(REPO).full_name == REPO
    _, data = ghes.requester.graphql_query("{ viewer { login } }", {})
    assert data["data"]["viewer"]["login"] == "stagegate-bot"


def test_graphql_pages_through_250_deployments_newest_first(fake: FakeGitHub, gh: Github) -> None:
    ids = [deploy(fake, n, STAGING if n % 2 else PRODUCTION)["id"] for n in range(250)]
    fake.create_status(REPO, ids[-1], "success", "Bake succeeded")
    seen: list[int] = []
    after = None
    while True:
        variables = {"owner": "MyOrg", "name": "myapp", "first": 100, "after": after, "direction": "DESC"}
        page = graphql(gh, variables)["data"]["repository"]["deployments"]
        assert page["totalCount"] == 250
        seen += [node["databaseId"] for node in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == list(reversed(ids))

    staging = graphql(
        gh, {"owner": "myorg", "name": "myapp", "envs": [STAGING], "first": 100, "direction": "ASC"}
    )
    connection = staging["data"]["repository"]["deployments"]
    assert connection["totalCount"] == 125
    assert [n["databaseId"] for n in connection["nodes"]] == ids[1::2][:100]


def test_graphql_deployment_fields_match_rest(fake: FakeGitHub, gh: Github) -> None:
    deployment = deploy(fake, 9)
    pending = fake.create_status(REPO, deployment["id"], "pending", "Deploying")
    success = fake.create_status(REPO, deployment["id"], "success", "Bake succeeded")
    data = graphql(
        gh, {"owner": "myorg", "name": "myapp", "envs": [STAGING], "first": 5, "direction": "DESC"}
    )
    (node,) = data["data"]["repository"]["deployments"]["nodes"]
    assert node["id"] == deployment["node_id"]
    assert node["databaseId"] == deployment["id"]
    assert node["commitOid"] == sha(9)
    assert json.loads(node["payload"]) == deployment["payload"]
    assert (node["task"], node["environment"], node["createdAt"]) == (TASK, STAGING, deployment["created_at"])
    assert node["state"] == "ACTIVE"
    # GraphQL lists a deployment's statuses oldest first (REST newest first).
    assert [(s["id"], s["state"], s["description"]) for s in node["statuses"]["nodes"]] == [
        (pending["node_id"], "PENDING", "Deploying"),
        (success["node_id"], "SUCCESS", "Bake succeeded"),
    ]
    assert node["latestStatus"] == {
        "state": "SUCCESS",
        "description": "Bake succeeded",
        "createdAt": success["created_at"],
    }


def test_graphql_answers_invalid_queries_like_github(fake: FakeGitHub, gh: Github) -> None:
    def post(query: str) -> requests.Response:
        return http(fake, "POST", "/graphql", json={"query": query})

    unknown = post(
        '{ repository(owner: "myorg", name: "myapp") { deployments(first: 1) { nodes { nope } } } }'
    )
    assert unknown.status_code == 200
    assert "data" not in unknown.json()
    assert "nope" in unknown.json()["errors"][0]["message"]

    unbounded = post('{ repository(owner: "myorg", name: "myapp") { deployments { totalCount } } }').json()
    assert unbounded["errors"][0]["type"] == "MISSING_PAGINATION_BOUNDARIES"
    excessive = post(
        '{ repository(owner: "myorg", name: "myapp") { deployments(first: 101) { totalCount } } }'
    )
    assert excessive.json()["errors"][0]["type"] == "EXCESSIVE_PAGINATION"

    missing = post('{ repository(owner: "myorg", name: "gone") { id } }').json()
    assert missing["data"] == {"repository": None}
    assert missing["errors"][0]["type"] == "NOT_FOUND"
    with pytest.raises(UnknownObjectException):
        gh.requester.graphql_query('{ repository(owner: "myorg", name: "gone") { id } }', {})

    mutation = post('mutation { addStar(input: {starrableId: "x"}) { clientMutationId } }').json()
    assert "queries only" in mutation["errors"][0]["message"]
    ref_query = (
        '{ repository(owner: "myorg", name: "myapp") { deployments(first: 1) { nodes { ref { name } } } } }'
    )
    assert "errors" not in post(ref_query).json()  # no deployment yet, so nothing to resolve
    deploy(fake, 1)
    ref = post(ref_query)
    assert "does not implement Deployment.ref" in ref.json()["errors"][0]["message"]
    assert http(fake, "POST", "/graphql", data=b"{oops").status_code == 400


# webhooks ----------------------------------------------------------------------------------------


def test_deployment_status_delivery_is_what_github_sends(fake: FakeGitHub) -> None:
    deployment = deploy(fake, 3)
    status = fake.create_status(REPO, deployment["id"], "success", "Bake succeeded")
    headers, body = fake.deployment_status_event(REPO, status["id"])

    assert headers["X-GitHub-Event"] == "deployment_status"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("GitHub-Hookshot/")
    assert headers["X-GitHub-Hook-ID"] == str(fake.hook_id)
    assert len(headers["X-GitHub-Delivery"]) == 36
    assert "X-Hub-Signature-256" not in headers
    payload = json.loads(body)
    assert payload["action"] == "created"
    assert payload["deployment_status"]["id"] == status["id"]
    assert payload["deployment_status"]["state"] == "success"
    assert payload["deployment"]["id"] == deployment["id"]
    assert payload["deployment"]["payload"] == deployment["payload"]
    assert payload["repository"]["full_name"] == REPO
    assert payload["sender"]["login"] == "stagegate-bot"
    assert (
        load_contracts(fake.contracts.assets).webhook_errors("deployment_status", "created", headers, payload)
        == []
    )
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert signature_256("s3cret", body) == expected


def test_no_delivery_for_inactive_statuses(fake: FakeGitHub) -> None:
    older = deploy(fake, 1, state="success")
    fake.create_status(REPO, deploy(fake, 2)["id"], "success", "ok")
    automatic = fake.statuses(REPO, older["id"])[0]
    with pytest.raises(NoDelivery):
        fake.deployment_status_event(REPO, automatic["id"])


def test_the_webhook_validator_accepts_githubs_own_recent_examples(fake: FakeGitHub) -> None:
    headers = {
        "User-Agent": "GitHub-Hookshot/0",
        "X-GitHub-Hook-ID": "1",
        "X-GitHub-Event": "deployment_status",
        "X-GitHub-Hook-Installation-Target-ID": "1",
        "X-GitHub-Hook-Installation-Target-Type": "repository",
        "X-GitHub-Delivery": "0",
    }
    examples = fake.contracts.webhook_examples("deployment_status")
    verdicts = [fake.contracts.webhook_errors("deployment_status", "created", headers, e) for e in examples]
    assert len(examples) >= 2
    assert [] in verdicts  # older captures lack fields added since; the newest ones pass
    assert fake.contracts.webhook_errors("deployment_status", "created", {}, {})  # and nonsense fails


# drift detection ---------------------------------------------------------------------------------


def test_a_rest_answer_that_drifts_from_the_openapi_description_is_caught(
    fake: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = deploy(fake, 1)
    original = rest.deployment_json

    def without_sha(*args: Any) -> dict[str, Any]:
        body = original(*args)
        del body["sha"]
        return body

    monkeypatch.setattr(rest, "deployment_json", without_sha)
    answer = http(fake, "GET", f"/repos/{REPO}/deployments/{deployment['id']}")
    assert answer.status_code == 500
    assert any("'sha' is a required property" in e for e in answer.json()["errors"])
    assert any("'sha' is a required property" in e for e in fake.schema_errors)
    with pytest.raises(ContractViolation, match="'sha' is a required property"):
        deploy(fake, 2)
    fake.schema_errors.clear()


def test_a_webhook_payload_that_drifts_from_githubs_schemas_is_caught(
    fake: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    status = fake.create_status(REPO, deploy(fake, 1)["id"], "failure", "Bake failed")
    original = rest.repository_json

    def numeric_name(*args: Any) -> dict[str, Any]:
        return {**original(*args), "name": 42}

    monkeypatch.setattr(rest, "repository_json", numeric_name)
    with pytest.raises(ContractViolation) as caught:
        fake.deployment_status_event(REPO, status["id"])
    assert any(e.startswith("official:") for e in caught.value.errors)
    assert any(e.startswith("community:") for e in caught.value.errors)
    fake.schema_errors.clear()


# faults ------------------------------------------------------------------------------------------


def test_fail_next_answers_5xx_then_recovers(fake: FakeGitHub, gh: Github) -> None:
    fake.fail_next(2, status=503)
    assert http(fake, "GET", f"/repos/{REPO}").status_code == 503
    with pytest.raises(GithubException) as failed:
        gh.get_repo(REPO)
    assert failed.value.status == 503
    assert gh.get_repo(REPO).full_name == REPO


def test_fail_next_after_effect_loses_only_the_answer(fake: FakeGitHub, gh: Github) -> None:
    fake.fail_next(1, status=502, after_effect=True)
    with pytest.raises(GithubException) as failed:
        client(fake, lazy=True).get_repo(REPO).create_deployment(
            sha(5), environment=STAGING, required_contexts=[]
        )
    assert failed.value.status == 502
    assert [d.sha for d in gh.get_repo(REPO).get_deployments()] == [sha(5)]


def test_faults_can_target_graphql_only(fake: FakeGitHub, gh: Github) -> None:
    fake.fail_next(1, status=500, api="graphql")
    assert gh.get_repo(REPO).full_name == REPO
    with pytest.raises(GithubException) as failed:
        gh.requester.graphql_query("{ viewer { login } }", {})
    assert failed.value.status == 500


def test_hang_next_makes_clients_time_out(fake: FakeGitHub) -> None:
    fake.hang_next(1, seconds=30)
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        requests.get(
            f"{fake.url}/repos/{REPO}", headers={"Authorization": f"token {fake.token}"}, timeout=0.3
        )
    assert time.monotonic() - started < 5
    assert http(fake, "GET", f"/repos/{REPO}").status_code == 200


def test_secondary_rate_limit_is_403_with_retry_after(fake: FakeGitHub, gh: Github) -> None:
    fake.rate_limit_next(2, kind="secondary")
    answer = http(fake, "GET", f"/repos/{REPO}/deployments")
    assert answer.status_code == 403
    assert answer.headers["Retry-After"] == "60"
    assert answer.json()["message"].startswith("You have exceeded a secondary rate limit.")
    with pytest.raises(RateLimitExceededException):
        gh.requester.graphql_query("{ viewer { login } }", {})
    assert http(fake, "GET", f"/repos/{REPO}/deployments").status_code == 200


def test_primary_rate_limit_rest_and_graphql(fake: FakeGitHub, gh: Github) -> None:
    fake.rate_limit_next(1, kind="primary", api="rest")
    fake.rate_limit_next(1, kind="primary", api="rest", status=429, reset_in=60)
    fake.rate_limit_next(1, kind="primary", api="graphql")
    with pytest.raises(RateLimitExceededException) as limited:
        gh.get_repo(REPO)
    assert limited.value.status == 403
    headers = limited.value.headers or {}
    assert headers["x-ratelimit-remaining"] == "0"
    assert int(headers["x-ratelimit-reset"]) > time.time()
    too_many = http(fake, "GET", f"/repos/{REPO}")
    assert too_many.status_code == 429
    assert too_many.json()["message"].startswith("API rate limit exceeded")
    graphql_limited = http(fake, "POST", "/graphql", json={"query": "{ viewer { login } }"})
    assert graphql_limited.status_code == 200
    assert graphql_limited.headers["X-RateLimit-Remaining"] == "0"
    assert graphql_limited.json()["errors"][0]["type"] == "RATE_LIMIT"


def test_concurrent_writes_get_distinct_ids_and_all_land(fake: FakeGitHub) -> None:
    deployment = deploy(fake, 1)
    path = f"/repos/{REPO}/deployments/{deployment['id']}/statuses"

    def post(i: int) -> int:
        answer = http(fake, "POST", path, json={"state": "in_progress", "description": f"step {i}"})
        assert answer.status_code == 201
        status_id: int = answer.json()["id"]
        return status_id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(post, range(40)))
    assert len(set(ids)) == 40
    assert sorted(s["id"] for s in fake.statuses(REPO, deployment["id"])) == sorted(ids)


def test_calls_are_recorded_and_can_be_reset(fake: FakeGitHub, gh: Github) -> None:
    gh.get_repo(REPO).get_deployments().totalCount  # noqa: B018
    graphql(gh, {"owner": "myorg", "name": "myapp", "first": 1, "direction": "DESC"})
    assert fake.call_counts() == {
        ("GET", f"/repos/{REPO}"): 1,
        ("GET", f"/repos/{REPO}/deployments"): 1,
        ("POST", "/graphql"): 1,
    }
    fake.reset_calls()
    assert fake.calls == []


# GitHub Apps -------------------------------------------------------------------------------------

APP_ID = 424242
INSTALLATION_ID = 77001
ACCESS_TOKENS = f"/app/installations/{INSTALLATION_ID}/access_tokens"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def app_jwt(key: rsa.RSAPrivateKey, iss: str = str(APP_ID), iat: int = -60, exp: int = 300) -> str:
    now = int(time.time())
    return jwt.encode({"iat": now + iat, "exp": now + exp, "iss": iss}, key, algorithm="RS256")


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa_key()


@pytest.fixture
def installed(fake: FakeGitHub, app_key: rsa.RSAPrivateKey) -> FakeGitHub:
    fake.add_repo("myorg/secret")
    fake.add_app(APP_ID, public_pem(app_key), INSTALLATION_ID, [REPO])
    return fake


def access_tokens(fake: FakeGitHub, token: str, path: str = ACCESS_TOKENS) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}
    return requests.post(fake.url + path, json={"permissions": {}}, headers=headers, timeout=5)


def test_an_app_jwt_buys_an_installation_token_that_reads_only_the_installation(
    installed: FakeGitHub, app_key: rsa.RSAPrivateKey
) -> None:
    deploy(installed, 1, state="success")
    answer = access_tokens(installed, app_jwt(app_key))
    assert answer.status_code == 201, answer.text
    body = answer.json()
    template = "/app/installations/{installation_id}/access_tokens"
    assert installed.contracts.rest_response_errors("POST", template, 201, body) == []
    assert body["token"].startswith("ghs_")
    expires = datetime.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((expires - datetime.now(UTC)).total_seconds() - 3600) < 60
    assert body["repository_selection"] == "selected"
    token = body["token"]
    assert http(installed, "GET", f"/repos/{REPO}", token=token).status_code == 200
    assert http(installed, "GET", "/repos/myorg/secret", token=token).status_code == 404
    gh = Github(auth=Auth.Token(token), base_url=installed.url, retry=None)
    data = graphql(
        gh, {"owner": "myorg", "name": "myapp", "envs": [STAGING], "first": 5, "direction": "DESC"}
    )
    assert [n["commitOid"] for n in data["data"]["repository"]["deployments"]["nodes"]] == [sha(1)]
    with pytest.raises(UnknownObjectException):
        graphql(gh, {"owner": "myorg", "name": "secret", "envs": [], "first": 5, "direction": "DESC"})


def test_pygithub_app_installation_auth_fetches_the_token_once(
    installed: FakeGitHub, app_key: rsa.RSAPrivateKey
) -> None:
    pem = app_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    auth = Auth.AppAuth(APP_ID, pem).get_installation_auth(INSTALLATION_ID)
    gh = Github(auth=auth, base_url=installed.url, retry=None)
    assert gh.get_repo(REPO).full_name == REPO
    assert gh.get_repo(REPO).full_name == REPO
    assert installed.call_counts()[("POST", ACCESS_TOKENS)] == 1


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong key", "A JSON web token could not be decoded"),
        ("expired", "'Expiration time' claim ('exp') must be a numeric value"),
        ("too long", "'Expiration time' claim ('exp') is too far in the future"),
        ("issued in the future", "'Issued at' claim ('iat')"),
        ("wrong iss", "Integration not found"),
        ("iss not a number", "'Issuer' claim ('iss') must be an Integer"),
        ("not a JWT", "A JSON web token could not be decoded"),
    ],
)
def test_a_bad_app_jwt_gets_githubs_401(
    installed: FakeGitHub, app_key: rsa.RSAPrivateKey, case: str, message: str
) -> None:
    token = {
        "wrong key": lambda: app_jwt(rsa_key()),
        "expired": lambda: app_jwt(app_key, iat=-700, exp=-10),
        "too long": lambda: app_jwt(app_key, exp=1200),
        "issued in the future": lambda: app_jwt(app_key, iat=120),
        "wrong iss": lambda: app_jwt(app_key, iss=str(APP_ID + 1)),
        "iss not a number": lambda: app_jwt(app_key, iss="someone"),
        "not a JWT": lambda: installed.token,
    }[case]()
    answer = access_tokens(installed, token)
    assert answer.status_code == 401, answer.text
    assert answer.json()["message"].startswith(message)
    assert installed.call_counts()[("POST", ACCESS_TOKENS)] == 1


def test_an_app_jwt_is_no_token_and_other_installations_are_404(
    installed: FakeGitHub, app_key: rsa.RSAPrivateKey
) -> None:
    assert http(installed, "GET", f"/repos/{REPO}", token=app_jwt(app_key)).status_code == 401
    other = access_tokens(installed, app_jwt(app_key), "/app/installations/1/access_tokens")
    assert other.status_code == 404
    missing = requests.post(installed.url + ACCESS_TOKENS, json={}, timeout=5)
    assert missing.status_code == 401


def test_the_local_stacks_clock_stamps_records_when_they_are_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """`wall=True` (make dev, the demo): a record made after a quiet minute says so, where a test's
    clock moves one second per event; both still increase strictly within a burst."""
    from stagegate_dev.fake_github import state

    start = datetime(2026, 12, 8, 16, 0, tzinfo=UTC)
    machine = [start]
    monkeypatch.setattr(state, "_utc_now", lambda: machine[0])
    wall, test = state.Clock(wall=True), state.Clock(start)
    assert [wall.tick(), wall.tick()] == [start + timedelta(seconds=s) for s in (1, 2)]
    machine[0] = start + timedelta(minutes=1)
    assert wall.now() == machine[0]
    assert wall.tick() == machine[0] + timedelta(seconds=1)
    assert test.tick() == start + timedelta(seconds=1)  # a test's clock ignores the machine's
