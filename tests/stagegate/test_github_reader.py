"""The GitHub reader against the fake over real HTTP, in every order the fake can list connections.

GitHub lists `Commit.deployments` oldest first by default and gives `Deployment.statuses` no order
at all; the reader must not care. Each scenario is read with the fake listing as GitHub does, oldest
first, newest first and shuffled, and the bake results must be the same every time, and right.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.bake import ReleaseCandidate, VersionResult, is_justified, results_for
from shared.report import BAKE_STATES
from stagegate.github import PAGE, GitHubDeployments, github_client
from stagegate_dev.fake_github import FakeGitHub

REPO = "myorg/myapp"
STAGING = "kuberik/myapp/staging"
LISTINGS = ("github", "oldest", "newest", "shuffled")
ENTRIES = itertools.count(1)
DESCRIPTION = dict(BAKE_STATES.values()) | {"error": "Bake failed"}
"""What kuberik writes with each state."""


def sha(n: int) -> str:
    return f"{n:040x}"


@pytest.fixture
def fake(octokit: Path) -> Iterator[FakeGitHub]:
    with FakeGitHub(assets=octokit, repos=[REPO]) as server:
        yield server
        assert server.schema_errors == []


def deploy(
    fake: FakeGitHub, revision: str, *states: str, environment: str = STAGING, creator: str | None = None
) -> int:
    """One deployment of `revision` with `states` recorded in order (oldest first), by `creator`: a new
    history entry each time."""
    deployment = fake.create_deployment(
        REPO, sha=revision, ref=revision, environment=environment, task="deploy:kuberik/myapp",
        payload={"id": str(next(ENTRIES)), "version": {"tag": f"tag-{revision[:7]}", "revision": revision}},
        creator=creator,
    )  # fmt: skip
    for state in states:
        fake.create_status(
            REPO, deployment["id"], state, DESCRIPTION[state], auto_inactive=False, creator=creator
        )
    return int(deployment["id"])


def build(revision: str) -> ReleaseCandidate:
    """The candidate `deploy` records: the build `tag-<commit>` of the revision."""
    return ReleaseCandidate(f"tag-{revision.lower()[:7]}", revision)


def read(fake: FakeGitHub, revisions: list[str]) -> tuple[dict[str, VersionResult], dict[str, int]]:
    """Per revision, the result of its build in each listing order (they must agree), and the requests
    each read took."""
    answers, calls = {}, {}
    for listing in LISTINGS:
        fake.listing = listing
        reader = GitHubDeployments(github_client(fake.token, fake.url, 10))
        reader.trusted_creators()  # once per process: who the credentials are
        before = reader.calls
        found = results_for(map(build, revisions), reader.commit_deployments(REPO, STAGING, revisions))
        answers[listing] = {candidate.revision or "": result for candidate, result in found.items()}
        calls[listing] = reader.calls - before
    first = answers["github"]
    for listing, answer in answers.items():
        assert answer == first, f"listing {listing} changed the answer"
    return first, calls


def test_newest_of_thirty_statuses_decides_whatever_the_order(fake: FakeGitHub) -> None:
    failed_last, succeeded_last = sha(1), sha(2)
    deploy(fake, failed_last, *["success"] * 29, "failure")
    deploy(fake, succeeded_last, *["failure"] * 29, "success")
    results, calls = read(fake, [failed_last, succeeded_last])
    assert results[failed_last].result == "failure"
    assert not is_justified("After", results[failed_last])
    assert results[succeeded_last].result == "success"
    assert is_justified("After", results[succeeded_last])
    assert set(calls.values()) == {2}  # 30 statuses > one page of PAGE: one follow-up round


def test_more_statuses_than_a_follow_up_page_are_all_read(fake: FakeGitHub) -> None:
    revision = sha(3)
    deploy(fake, revision, *["in_progress"] * 150, "success", "failure")
    results, calls = read(fake, [revision])
    assert results[revision].result == "failure"
    assert set(calls.values()) == {3}  # 20, then 100, then the last 32


def test_newest_of_many_deployments_of_one_commit_decides(fake: FakeGitHub) -> None:
    revision = sha(4)
    for _ in range(PAGE + 5):
        deploy(fake, revision, "success")
    newest = deploy(fake, revision, "failure")
    results, _ = read(fake, [revision])
    assert results[revision].result == "failure"
    position = results[revision].position
    assert position is not None
    assert position[2] == newest


def test_candidates_never_deployed_cost_nothing_extra_whatever_the_history(fake: FakeGitHub) -> None:
    baked = [sha(100 + n) for n in range(60)]
    for revision in baked:
        deploy(fake, revision, "in_progress", "success")
    never = [sha(9000 + n) for n in range(5)]
    results, calls = read(fake, [baked[0], baked[-1], *never])
    assert set(calls.values()) == {1}
    assert [results[r].result for r in (baked[0], baked[-1])] == ["success", "success"]
    assert all(not results[r].deployed and results[r].note for r in never)


def test_abbreviated_revision_finds_its_commit_and_an_ambiguous_one_stays_blocked(fake: FakeGitHub) -> None:
    one, two, three = "abcdef1" + "1" * 33, "abcdef2" + "2" * 33, "abcdef2" + "3" * 33
    for revision in (one, two, three):
        deploy(fake, revision, "success")
    results, calls = read(fake, ["ABCDEF1", "abcdef2", one])
    assert is_justified("After", results["ABCDEF1"])
    assert (
        results["abcdef2"].note
        == "revision abcdef2 names no commit GitHub knows (not pushed, or an ambiguous short id)"
    )
    assert not is_justified("After", results["abcdef2"])
    assert set(calls.values()) == {1}


def test_revision_that_is_not_a_commit_id_is_not_asked_and_stays_blocked(fake: FakeGitHub) -> None:
    fake.state.set_ref(REPO, "main", sha(7))
    deploy(fake, sha(7), "success")
    results, calls = read(fake, ["main", "main@sha1:" + sha(7)])
    assert all(r.note.endswith("is not a commit id (7 to 40 hex digits)") for r in results.values())
    assert set(calls.values()) == {0}


def test_deployments_of_other_environments_do_not_count(fake: FakeGitHub) -> None:
    revision = sha(8)
    deploy(fake, revision, "success", environment="kuberik/myapp/canary")
    deploy(fake, revision, "success", environment="kuberik/otherapp/staging")
    results, _ = read(fake, [revision])
    assert not results[revision].deployed


def test_payload_naming_another_revision_does_not_count(fake: FakeGitHub) -> None:
    revision = sha(9)
    deployment = fake.create_deployment(
        REPO, sha=revision, ref=revision, environment=STAGING, task="deploy:kuberik/myapp",
        payload={"version": {"revision": sha(10)}},
    )  # fmt: skip
    fake.create_status(REPO, deployment["id"], "success", "Bake succeeded")
    results, _ = read(fake, [revision])
    assert not results[revision].deployed


def test_bake_records_of_untrusted_identities_do_not_count(fake: FakeGitHub) -> None:
    forged, mixed = sha(11), sha(12)
    deploy(fake, forged, "success", creator="mallory")
    trusted = deploy(fake, mixed, "success")
    fake.create_status(REPO, trusted, "success", "Bake succeeded", creator="mallory")
    fake.create_status(REPO, trusted, "failure", "Bake failed")
    fake.create_status(REPO, trusted, "success", "Bake succeeded", creator="mallory")
    results, _ = read(fake, [forged, mixed])
    assert not results[forged].deployed
    assert results[mixed].result == "failure"  # mallory's later success is ignored


def test_configured_identities_are_trusted_besides_the_credentials_own(fake: FakeGitHub) -> None:
    revision = sha(13)
    deploy(fake, revision, "success", creator="go-environment-controller")
    reader = GitHubDeployments(github_client(fake.token, fake.url, 10), trusted=["Go-Environment-Controller"])
    [lookup] = reader.commit_deployments(REPO, STAGING, [revision]).values()
    assert results_for([build(revision)], {revision: lookup})[build(revision)].result == "success"
    assert reader.trusted_creators() == {"go-environment-controller", fake.user.login.lower()}
