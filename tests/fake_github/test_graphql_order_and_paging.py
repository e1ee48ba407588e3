"""GraphQL connections on the fake: GitHub's default orders, `orderBy`, the `listing` knob, and paging.

A reader that pages through a connection must see every item exactly once, whichever way it pages
and whatever order the fake lists in; these tests prove the fake itself keeps that promise, so that
a reader's test against it means something.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from stagegate_dev.fake_github import FakeGitHub
from stagegate_dev.fake_github.connections import LISTINGS
from tests.fake_github.support import PRODUCTION, REPO, STAGING, deploy, post_graphql, sha

REPOSITORY_DEPLOYMENTS = """
query($orderBy: DeploymentOrder, $envs: [String!]) {
  repository(owner: "myorg", name: "myapp") {
    default: deployments(first: 100, environments: $envs) { nodes { databaseId } }
    ordered: deployments(first: 100, environments: $envs, orderBy: $orderBy) { nodes { databaseId } }
  }
}
"""

COMMIT_DEPLOYMENTS = """
query($sha: String!, $orderBy: DeploymentOrder, $envs: [String!]) {
  repository(owner: "myorg", name: "myapp") {
    object(expression: $sha) {
      ... on Commit {
        default: deployments(first: 100, environments: $envs) { nodes { databaseId } }
        ordered: deployments(first: 100, environments: $envs, orderBy: $orderBy) { nodes { databaseId } }
      }
    }
  }
}
"""

STATUSES = """
query($id: ID!, $first: Int, $after: String, $last: Int, $before: String) {
  node(id: $id) {
    ... on Deployment {
      latestStatus { id }
      statuses(first: $first, after: $after, last: $last, before: $before) {
        totalCount
        pageInfo { hasPreviousPage hasNextPage startCursor endCursor }
        edges { cursor node { id } }
        nodes { id state creator { login } }
      }
    }
  }
}
"""

DEPLOYMENTS_PAGE = """
query($first: Int, $after: String, $last: Int, $before: String) {
  repository(owner: "myorg", name: "myapp") {
    deployments(first: $first, after: $after, last: $last, before: $before) {
      pageInfo { hasPreviousPage hasNextPage startCursor endCursor }
      nodes { databaseId }
    }
  }
}
"""

DESC = {"field": "CREATED_AT", "direction": "DESC"}


def ids(connection: dict[str, Any], key: str = "databaseId") -> list[Any]:
    return [node[key] for node in connection["nodes"]]


def data(fake: FakeGitHub, query: str, **variables: Any) -> dict[str, Any]:
    answer = post_graphql(fake, query, **variables)
    assert "errors" not in answer, answer["errors"]
    result: dict[str, Any] = answer["data"]
    return result


def statuses(fake: FakeGitHub, node_id: str, **paging: Any) -> dict[str, Any]:
    connection: dict[str, Any] = data(fake, STATUSES, id=node_id, **paging)["node"]["statuses"]
    return connection


def with_statuses(fake: FakeGitHub, count: int) -> tuple[dict[str, Any], list[str]]:
    """A deployment with `count` statuses; their node ids, oldest first."""
    deployment = deploy(fake, 1)
    made = [
        fake.create_status(REPO, deployment["id"], "in_progress", f"step {i}")["node_id"]
        for i in range(count)
    ]
    return deployment, made


def page_backwards(fake: FakeGitHub, node_id: str, size: int = 100) -> list[str]:
    """Every status, read with `last`/`before` from the end, in the order the connection lists them."""
    seen: list[str] = []
    before = None
    while True:
        page = statuses(fake, node_id, last=size, before=before)
        assert len(page["nodes"]) <= size
        seen = ids(page, "id") + seen
        if not page["pageInfo"]["hasPreviousPage"]:
            return seen
        before = page["pageInfo"]["startCursor"]


def page_forwards(fake: FakeGitHub, node_id: str, size: int = 100) -> list[str]:
    """Every status, read with `first`/`after` from the start."""
    seen: list[str] = []
    after = None
    while True:
        page = statuses(fake, node_id, first=size, after=after)
        seen += ids(page, "id")
        if not page["pageInfo"]["hasNextPage"]:
            return seen
        after = page["pageInfo"]["endCursor"]


# GitHub's own orders -----------------------------------------------------------------------------


def test_deployments_of_repository_and_commit_list_oldest_first_by_default(fake: FakeGitHub) -> None:
    made = [deploy(fake, n % 2, STAGING if n % 3 else PRODUCTION)["id"] for n in range(6)]
    repository = data(fake, REPOSITORY_DEPLOYMENTS)["repository"]
    assert ids(repository["default"]) == made
    commit = data(fake, COMMIT_DEPLOYMENTS, sha=sha(1))["repository"]["object"]
    assert ids(commit["default"]) == made[1::2]
    staging = data(fake, COMMIT_DEPLOYMENTS, sha=sha(0), envs=[STAGING])["repository"]["object"]
    assert ids(staging["default"]) == [made[n] for n in (2, 4)]


def test_order_by_desc_lists_deployments_newest_first(fake: FakeGitHub) -> None:
    made = [deploy(fake, n % 2)["id"] for n in range(6)]
    repository = data(fake, REPOSITORY_DEPLOYMENTS, orderBy=DESC)["repository"]
    assert ids(repository["ordered"]) == made[::-1]
    ascending = data(fake, REPOSITORY_DEPLOYMENTS, orderBy={"field": "CREATED_AT", "direction": "ASC"})
    assert ids(ascending["repository"]["ordered"]) == made
    commit = data(fake, COMMIT_DEPLOYMENTS, sha=sha(0), orderBy=DESC)["repository"]["object"]
    assert ids(commit["ordered"]) == made[0::2][::-1]


def test_statuses_list_oldest_first_and_last_one_is_the_latest(fake: FakeGitHub) -> None:
    deployment, made = with_statuses(fake, 5)
    assert ids(statuses(fake, deployment["node_id"], first=10), "id") == made
    newest = data(fake, STATUSES, id=deployment["node_id"], last=1)["node"]
    assert ids(newest["statuses"], "id") == [made[-1]] == [newest["latestStatus"]["id"]]
    # REST keeps GitHub's REST order: newest first.
    assert [s["node_id"] for s in fake.statuses(REPO, deployment["id"])] == made[::-1]


def test_status_creator_login_is_served(fake: FakeGitHub) -> None:
    deployment = deploy(fake, 1)
    fake.create_status(REPO, deployment["id"], "success", "ok", creator="release-bot")
    page = statuses(fake, deployment["node_id"], last=1)
    assert page["nodes"][0]["creator"] == {"login": "release-bot"}


# the listing knob --------------------------------------------------------------------------------


@pytest.mark.parametrize("listing", LISTINGS)
def test_listing_sets_the_order_of_every_connection_whatever_order_by_says(
    make_fake: Callable[..., FakeGitHub], listing: str
) -> None:
    fake = make_fake(listing=listing, listing_seed=7)
    made = [deploy(fake, 1)["id"] for _ in range(12)]
    deployment, statuses_made = with_statuses(fake, 12)
    made.append(deployment["id"])

    repository = data(fake, REPOSITORY_DEPLOYMENTS, orderBy=DESC)["repository"]
    commit = data(fake, COMMIT_DEPLOYMENTS, sha=sha(1), orderBy=DESC)["repository"]["object"]
    listed_statuses = ids(statuses(fake, deployment["node_id"], first=100), "id")
    listings = [ids(repository["default"]), ids(repository["ordered"]), ids(commit["default"])]
    listings.append(ids(commit["ordered"]))

    if listing == "github":
        assert listings == [made, made[::-1], made, made[::-1]]
        assert listed_statuses == statuses_made
        return
    expected = {"oldest": made, "newest": made[::-1]}.get(listing)
    for listed in listings:
        assert sorted(listed) == made
        assert listed == (expected or listings[0])
    if listing == "shuffled":
        assert listings[0] not in (made, made[::-1])
        assert sorted(listed_statuses) == sorted(statuses_made)
        assert listed_statuses not in (statuses_made, statuses_made[::-1])
        # Stable between requests, and the seed decides it.
        assert ids(data(fake, REPOSITORY_DEPLOYMENTS)["repository"]["default"]) == listings[0]
        fake.listing_seed = 8
        assert ids(data(fake, REPOSITORY_DEPLOYMENTS)["repository"]["default"]) != listings[0]
    else:
        assert listed_statuses == (statuses_made if listing == "oldest" else statuses_made[::-1])


def test_an_unknown_listing_is_refused(assets: Any) -> None:
    with pytest.raises(ValueError, match="listing must be one of github, oldest, newest, shuffled"):
        FakeGitHub(assets=assets, listing="sorted")  # type: ignore[arg-type]


# paging ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("listing", LISTINGS)
def test_paging_backwards_through_250_statuses_sees_each_once(
    make_fake: Callable[..., FakeGitHub], listing: str
) -> None:
    fake = make_fake(listing=listing)
    deployment, made = with_statuses(fake, 250)
    seen = page_backwards(fake, deployment["node_id"])
    assert len(seen) == len(set(seen)) == 250
    assert set(seen) == set(made)
    # Backwards and forwards agree on the order, which is the listing's.
    assert seen == page_forwards(fake, deployment["node_id"], size=100)
    if listing in ("github", "oldest"):
        assert seen == made
    elif listing == "newest":
        assert seen == made[::-1]


@pytest.mark.parametrize("listing", LISTINGS)
def test_paging_forwards_through_250_statuses_sees_each_once(
    make_fake: Callable[..., FakeGitHub], listing: str
) -> None:
    fake = make_fake(listing=listing)
    deployment, made = with_statuses(fake, 250)
    seen = page_forwards(fake, deployment["node_id"], size=100)
    assert len(seen) == len(set(seen)) == 250
    assert set(seen) == set(made)
    assert seen == page_forwards(fake, deployment["node_id"], size=7)
    assert seen == page_backwards(fake, deployment["node_id"], size=33)


def test_page_info_follows_the_relay_specification(fake: FakeGitHub) -> None:
    deployment, made = with_statuses(fake, 5)
    node = deployment["node_id"]
    everything = statuses(fake, node, first=5)
    cursors = [edge["cursor"] for edge in everything["edges"]]
    assert [edge["node"]["id"] for edge in everything["edges"]] == made
    assert everything["totalCount"] == 5

    def page(**paging: Any) -> tuple[list[str], bool, bool]:
        found = statuses(fake, node, **paging)
        info = found["pageInfo"]
        if found["nodes"]:
            assert (info["startCursor"], info["endCursor"]) == (
                found["edges"][0]["cursor"],
                found["edges"][-1]["cursor"],
            )
        return ids(found, "id"), info["hasPreviousPage"], info["hasNextPage"]

    assert page(first=2) == (made[:2], False, True)
    assert page(first=5) == (made, False, False)
    assert page(first=2, after=cursors[1]) == (made[2:4], True, True)
    assert page(first=9, after=cursors[4]) == ([], True, False)
    assert page(last=2) == (made[3:], True, False)
    assert page(last=5) == (made, False, False)
    assert page(last=2, before=cursors[3]) == (made[1:3], True, True)
    assert page(last=9, before=cursors[1]) == (made[:1], False, True)
    assert page(last=9, before=cursors[0]) == ([], False, True)
    assert page(first=9, after=cursors[0], before=cursors[4]) == (made[1:4], True, False)
    # With both: `first` slices from the front, then `last` from the back of that.
    assert page(first=4, last=2) == (made[2:4], True, True)


def test_connections_keep_githubs_limits(fake: FakeGitHub) -> None:
    deployment, _ = with_statuses(fake, 1)
    for paging, error in (
        ({}, "MISSING_PAGINATION_BOUNDARIES"),
        ({"last": 101}, "EXCESSIVE_PAGINATION"),
        ({"first": 101}, "EXCESSIVE_PAGINATION"),
        ({"first": -1}, "INVALID_PAGINATION"),
        ({"first": 1, "after": "bm90IGEgY3Vyc29y"}, "INVALID_CURSOR_ARGUMENTS"),
    ):
        answer = post_graphql(fake, STATUSES, id=deployment["node_id"], **paging)
        assert answer["errors"][0]["type"] == error
        assert answer["data"]["node"]["statuses"] is None


def test_a_cursor_outlives_its_deleted_deployment(fake: FakeGitHub) -> None:
    made = [deploy(fake, n, state="failure")["id"] for n in range(6)]
    first = data(fake, DEPLOYMENTS_PAGE, first=3)["repository"]["deployments"]
    assert ids(first) == made[:3]
    fake.delete_deployment(REPO, made[2])
    rest = data(fake, DEPLOYMENTS_PAGE, first=3, after=first["pageInfo"]["endCursor"])["repository"]
    assert ids(rest["deployments"]) == made[3:]
    back = data(fake, DEPLOYMENTS_PAGE, last=3, before=first["pageInfo"]["endCursor"])["repository"]
    assert ids(back["deployments"]) == made[:2]


def test_new_items_do_not_disturb_a_paging_session(make_fake: Callable[..., FakeGitHub]) -> None:
    fake = make_fake(listing="shuffled", listing_seed=3)
    made = [deploy(fake, n)["id"] for n in range(20)]
    first = data(fake, DEPLOYMENTS_PAGE, first=10)["repository"]["deployments"]
    later = [deploy(fake, 100 + n)["id"] for n in range(20)]
    rest = data(fake, DEPLOYMENTS_PAGE, first=100, after=first["pageInfo"]["endCursor"])["repository"]
    seen = ids(first) + ids(rest["deployments"])
    # Every item listed before the session began is seen exactly once; new ones only where they sort.
    assert len(seen) == len(set(seen))
    assert set(made) <= set(seen) <= set(made + later)
    everything = data(fake, DEPLOYMENTS_PAGE, first=100)["repository"]["deployments"]
    assert [i for i in ids(everything) if i in seen] == seen
