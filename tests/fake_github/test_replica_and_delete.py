"""A lagging read replica (`snapshot`/`stale`) and deleting deployments, on the fake GitHub."""

from __future__ import annotations

import pytest
from github import Github

from stagegate_dev.fake_github import FakeGitHub, NotFound, ValidationFailed
from tests.fake_github.support import PRODUCTION, REPO, deploy, graphql, http, post_graphql

LATEST = """
query($id: ID!) {
  node(id: $id) { ... on Deployment { statuses(last: 100) { nodes { state } } latestStatus { state } } }
}
"""


def graphql_states(fake: FakeGitHub, node_id: str) -> list[str]:
    answer = post_graphql(fake, LATEST, id=node_id)
    assert "errors" not in answer, answer["errors"]
    return [n["state"] for n in answer["data"]["node"]["statuses"]["nodes"]]


def rest_states(fake: FakeGitHub, deployment_id: int) -> list[str]:
    answer = http(fake, "GET", f"/repos/{REPO}/deployments/{deployment_id}/statuses")
    assert answer.status_code == 200
    return [s["state"] for s in answer.json()]


# a lagging replica -------------------------------------------------------------------------------


def test_a_status_added_after_the_snapshot_is_invisible_while_stale(fake: FakeGitHub) -> None:
    deployment = deploy(fake, 1, state="pending")
    path = f"/repos/{REPO}/deployments/{deployment['id']}"
    before = http(fake, "GET", path).json()
    snapshot = fake.snapshot()
    fake.create_status(REPO, deployment["id"], "success", "baked")
    with fake.stale(snapshot):
        assert graphql_states(fake, deployment["node_id"]) == ["PENDING"]
        assert rest_states(fake, deployment["id"]) == ["pending"]
        assert http(fake, "GET", path).json() == before
        # The Python helpers read the live state.
        assert [s["state"] for s in fake.statuses(REPO, deployment["id"])] == ["success", "pending"]
    assert graphql_states(fake, deployment["node_id"]) == ["PENDING", "SUCCESS"]
    assert rest_states(fake, deployment["id"]) == ["success", "pending"]


def test_writes_while_stale_land_live_and_show_once_the_replica_catches_up(fake: FakeGitHub) -> None:
    deployment = deploy(fake, 1, state="pending")
    with fake.stale() as snapshot:
        posted = http(
            fake, "POST", f"/repos/{REPO}/deployments/{deployment['id']}/statuses", json={"state": "failure"}
        )
        assert posted.status_code == 201
        new = fake.create_deployment(REPO, sha="f" * 40, ref="f" * 40, environment=PRODUCTION)
        assert rest_states(fake, deployment["id"]) == ["pending"]
        assert http(fake, "GET", f"/repos/{REPO}/deployments/{new['id']}").status_code == 404
        listed = http(fake, "GET", f"/repos/{REPO}/deployments").json()
        assert [d["id"] for d in listed] == [deployment["id"]]
        missing = post_graphql(fake, LATEST, id=new["node_id"])
        assert missing["errors"][0]["type"] == "NOT_FOUND"
        assert snapshot.taken_at <= fake.state.clock.now()
    assert rest_states(fake, deployment["id"]) == ["failure", "pending"]
    assert http(fake, "GET", f"/repos/{REPO}/deployments/{new['id']}").status_code == 200


def test_a_snapshot_is_a_deep_copy(fake: FakeGitHub, gh: Github) -> None:
    deployment = deploy(fake, 1)
    snapshot = fake.snapshot()
    fake.create_status(REPO, deployment["id"], "success", "moved", environment=PRODUCTION)
    assert snapshot.state.deployments[deployment["id"]].environment != PRODUCTION
    assert snapshot.state.deployments[deployment["id"]].statuses == []
    with fake.stale(snapshot):
        data = graphql(gh, {"owner": "myorg", "name": "myapp", "first": 5, "direction": "ASC"})
        (node,) = data["data"]["repository"]["deployments"]["nodes"]
        assert (node["state"], node["latestStatus"]) == ("PENDING", None)


def test_stale_contexts_nest(fake: FakeGitHub) -> None:
    deployment = deploy(fake, 1, state="pending")
    older = fake.snapshot()
    fake.create_status(REPO, deployment["id"], "in_progress", "")
    with fake.stale():
        fake.create_status(REPO, deployment["id"], "failure", "")
        with fake.stale(older):
            assert rest_states(fake, deployment["id"]) == ["pending"]
        assert rest_states(fake, deployment["id"]) == ["in_progress", "pending"]
    assert rest_states(fake, deployment["id"]) == ["failure", "in_progress", "pending"]


# deleting deployments ----------------------------------------------------------------------------


def test_the_only_deployment_can_be_deleted_whatever_its_state(fake: FakeGitHub) -> None:
    deployment = deploy(fake, 1, state="success")
    answer = http(fake, "DELETE", f"/repos/{REPO}/deployments/{deployment['id']}")
    assert (answer.status_code, answer.content) == (204, b"")
    assert http(fake, "GET", f"/repos/{REPO}/deployments/{deployment['id']}").status_code == 404
    assert http(fake, "GET", f"/repos/{REPO}/deployments").json() == []
    assert fake.state.statuses == {}


def test_an_active_deployment_is_refused_with_422_while_others_exist(fake: FakeGitHub) -> None:
    active = deploy(fake, 1, state="success")
    failed = deploy(fake, 2, state="failure")
    refused = http(fake, "DELETE", f"/repos/{REPO}/deployments/{active['id']}")
    assert refused.status_code == 422
    assert "active deployment" in refused.json()["message"]
    assert refused.json()["documentation_url"].endswith("#delete-a-deployment")
    # Inactive (latest status not `success`): deletable; then the active one is the only one left.
    assert http(fake, "DELETE", f"/repos/{REPO}/deployments/{failed['id']}").status_code == 204
    assert http(fake, "DELETE", f"/repos/{REPO}/deployments/{active['id']}").status_code == 204


def test_a_deployment_made_inactive_by_a_newer_success_can_be_deleted(fake: FakeGitHub) -> None:
    older = deploy(fake, 1, state="success")
    newer = deploy(fake, 2, state="success")  # adds `inactive` to the older one
    assert http(fake, "DELETE", f"/repos/{REPO}/deployments/{newer['id']}").status_code == 422
    assert http(fake, "DELETE", f"/repos/{REPO}/deployments/{older['id']}").status_code == 204
    listed = http(fake, "GET", f"/repos/{REPO}/deployments").json()
    assert [d["id"] for d in listed] == [newer["id"]]


def test_deleting_an_unknown_deployment_is_404(fake: FakeGitHub) -> None:
    assert http(fake, "DELETE", f"/repos/{REPO}/deployments/42").status_code == 404
    assert http(fake, "DELETE", "/repos/myorg/nope/deployments/42").status_code == 404


def test_the_facade_deletes_under_the_same_rule(fake: FakeGitHub) -> None:
    active = deploy(fake, 1, state="success")
    pending = deploy(fake, 2)
    with pytest.raises(ValidationFailed, match="active deployment"):
        fake.delete_deployment(REPO, active["id"])
    fake.delete_deployment(REPO, pending["id"])
    with pytest.raises(NotFound):
        fake.delete_deployment(REPO, pending["id"])
    fake.delete_deployment(REPO, active["id"])
    assert fake.state.deployments == {}
