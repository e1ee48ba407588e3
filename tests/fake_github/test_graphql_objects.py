"""`Repository.object` and `Query.node` on the fake: commits by sha, abbreviation or ref; objects by id."""

from __future__ import annotations

import base64
from typing import Any

from stagegate_dev.fake_github import FakeGitHub
from tests.fake_github.support import PRODUCTION, REPO, STAGING, post_graphql

A = "a1b2c3d4" + "0" * 32
B = "a1b2ffff" + "1" * 32  # shares "a1b2" with A
C = "c0ffee00" + "2" * 32
UNKNOWN = "d" * 40

OBJECT = """
query($expression: String, $oid: GitObjectID) {
  repository(owner: "myorg", name: "myapp") {
    object(expression: $expression, oid: $oid) {
      __typename oid abbreviatedOid id commitUrl
      ... on Commit { deployments(first: 10) { totalCount nodes { databaseId environment } } }
    }
  }
}
"""

NODE = """
query($id: ID!) {
  node(id: $id) {
    __typename id
    ... on Deployment { databaseId commitOid statuses(last: 1) { nodes { state creator { login } } } }
    ... on DeploymentStatus { state deployment { databaseId } }
    ... on Repository { nameWithOwner }
    ... on Commit { oid }
  }
}
"""


def deploy_at(fake: FakeGitHub, commit: str, environment: str = STAGING) -> dict[str, Any]:
    return fake.create_deployment(REPO, sha=commit, ref=commit, environment=environment)


def resolve(fake: FakeGitHub, **arguments: str) -> dict[str, Any] | None:
    answer = post_graphql(fake, OBJECT, **arguments)
    assert "errors" not in answer, answer["errors"]
    found: dict[str, Any] | None = answer["data"]["repository"]["object"]
    return found


def oid_of(fake: FakeGitHub, **arguments: str) -> str | None:
    found = resolve(fake, **arguments)
    return found["oid"] if found else None


def node(fake: FakeGitHub, node_id: str) -> dict[str, Any]:
    return post_graphql(fake, NODE, id=node_id)


def test_object_by_oid_is_a_commit_the_repository_knows(fake: FakeGitHub) -> None:
    first = deploy_at(fake, A)
    second = deploy_at(fake, A, PRODUCTION)
    deploy_at(fake, B)
    commit = resolve(fake, oid=A)
    assert commit is not None
    assert commit["__typename"] == "Commit"
    assert (commit["oid"], commit["abbreviatedOid"]) == (A, A[:7])
    assert commit["commitUrl"] == f"https://github.com/{REPO}/commit/{A}"
    assert commit["deployments"]["totalCount"] == 2
    assert [n["databaseId"] for n in commit["deployments"]["nodes"]] == [first["id"], second["id"]]
    assert resolve(fake, oid=UNKNOWN) is None
    assert resolve(fake, oid=A[:12]) is None  # a full sha only


def test_object_expression_resolves_like_rev_parse(fake: FakeGitHub) -> None:
    deploy_at(fake, A)
    deploy_at(fake, B)
    fake.set_ref(REPO, "main", C)
    fake.set_ref(REPO, "refs/tags/v1", B)

    assert oid_of(fake, expression=A) == A
    assert oid_of(fake, expression=A.upper()) == A
    assert oid_of(fake, expression="a1b2c") == A  # unique abbreviation
    assert oid_of(fake, expression="c0ff") == C  # the target of a ref is a known commit too
    assert oid_of(fake, expression="main") == C
    assert oid_of(fake, expression="refs/heads/main") == C
    assert oid_of(fake, expression="HEAD") == C
    assert oid_of(fake, expression="v1") == B
    assert oid_of(fake, expression="refs/tags/v1") == B


def test_ambiguous_short_and_unknown_expressions_are_null_without_error(fake: FakeGitHub) -> None:
    deploy_at(fake, A)
    deploy_at(fake, B)
    assert oid_of(fake, expression="a1b2") is None  # names both A and B
    assert oid_of(fake, expression="a1b") is None  # shorter than git's minimum of 4
    assert oid_of(fake, expression="deadbeef") is None
    assert oid_of(fake, expression=UNKNOWN) is None
    assert oid_of(fake, expression="no-such-branch") is None
    assert oid_of(fake, expression="main~1") is None
    assert resolve(fake) is None


def test_commit_deployments_filter_by_environment(fake: FakeGitHub) -> None:
    deploy_at(fake, A)
    production = deploy_at(fake, A, PRODUCTION)
    query = """
    query($envs: [String!]) {
      repository(owner: "myorg", name: "myapp") {
        object(expression: "a1b2c3") {
          ... on Commit { deployments(environments: $envs, last: 5) { nodes { databaseId } } }
        }
      }
    }
    """
    answer = post_graphql(fake, query, envs=[PRODUCTION])
    nodes = answer["data"]["repository"]["object"]["deployments"]["nodes"]
    assert [n["databaseId"] for n in nodes] == [production["id"]]


def test_commit_fields_the_fake_lacks_are_errors_naming_them(fake: FakeGitHub) -> None:
    deploy_at(fake, A)
    query = (
        '{ repository(owner: "myorg", name: "myapp") { object(oid: "%s") { ... on Commit { message } } } }'
    )
    answer = post_graphql(fake, query % A)
    assert "does not implement Commit.message" in answer["errors"][0]["message"]


def test_deployment_commit_is_its_commit(fake: FakeGitHub) -> None:
    deploy_at(fake, A)
    query = (
        '{ repository(owner: "myorg", name: "myapp") { deployments(first: 1) { nodes { commit { oid } } } } }'
    )
    answer = post_graphql(fake, query)
    assert answer["data"]["repository"]["deployments"]["nodes"] == [{"commit": {"oid": A}}]


def test_node_finds_a_deployment_and_pages_its_statuses(fake: FakeGitHub) -> None:
    deployment = deploy_at(fake, A)
    fake.create_status(REPO, deployment["id"], "in_progress", "baking")
    fake.create_status(REPO, deployment["id"], "success", "baked", creator="release-bot")
    answer = node(fake, deployment["node_id"])
    assert "errors" not in answer
    found = answer["data"]["node"]
    assert (found["__typename"], found["id"], found["databaseId"]) == (
        "Deployment",
        deployment["node_id"],
        deployment["id"],
    )
    assert found["commitOid"] == A
    assert found["statuses"]["nodes"] == [{"state": "SUCCESS", "creator": {"login": "release-bot"}}]


def test_node_finds_statuses_repositories_and_commits(fake: FakeGitHub) -> None:
    deployment = deploy_at(fake, A)
    status = fake.create_status(REPO, deployment["id"], "failure", "broke")
    found = node(fake, status["node_id"])["data"]["node"]
    assert found == {
        "__typename": "DeploymentStatus",
        "id": status["node_id"],
        "state": "FAILURE",
        "deployment": {"databaseId": deployment["id"]},
    }
    repository = fake.state.repo(REPO)
    repo_node = node(fake, base64.b64encode(f"010:Repository{repository.id}".encode()).decode())
    assert repo_node["data"]["node"]["nameWithOwner"] == REPO
    commit = resolve(fake, oid=A)
    assert commit is not None
    assert node(fake, commit["id"])["data"]["node"] == {"__typename": "Commit", "id": commit["id"], "oid": A}


def test_unknown_node_ids_are_null_with_not_found(fake: FakeGitHub) -> None:
    deployment = deploy_at(fake, A)
    gone = deployment["node_id"]
    fake.delete_deployment(REPO, deployment["id"])
    unknown_commit = base64.b64encode(f"06:Commit{fake.state.repo(REPO).id}:{UNKNOWN}".encode()).decode()
    for node_id in (gone, "not-a-node-id", unknown_commit, base64.b64encode(b"010:Deployment").decode()):
        answer = node(fake, node_id)
        assert answer["data"] == {"node": None}
        assert answer["errors"][0]["type"] == "NOT_FOUND"
        assert (
            answer["errors"][0]["message"] == f"Could not resolve to a node with the global id of '{node_id}'"
        )


def test_node_ids_of_types_the_fake_does_not_serve_are_errors_naming_them(fake: FakeGitHub) -> None:
    answer = node(fake, fake.user.node_id)
    assert "does not implement node(id:) for User ids" in answer["errors"][0]["message"]
