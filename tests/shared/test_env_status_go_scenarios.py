"""kuberik environment controller's status scenarios, ported to `shared.env_status`.

Each test names the Go test it ports (`internal/controller/githubenvironment_*_test.go`, v0.1.5): the
data and the expectations are the Go test's, the setup is ours. Where `shared.env_status` differs from
the Go controller on purpose (its module docstring lists where), the test expects our behaviour and a
comment says what Go does instead.

How the Go setups map onto a `Pipeline`:
- an Environment resource in the cluster is a local `Environment`; its Rollout goes in `rollouts`
  (then its history is the Rollout's, whatever GitHub holds) or is left out (then GitHub's records
  are its history, as the Go controller reads them after syncing the Rollout to GitHub);
- an environment only on GitHub (another cluster, or a deployment the Go test creates by hand) appears
  only in `records`;
- the Go tests stamp `metav1.Now()` on every entry; here every time is a fixed GitHub time (`at`).

`spec.name` is `myapp`, as users write it; the pipeline is keyed by the GitHub deployment name
`kuberik/myapp` (as `stagegate.status_service` keys it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from shared.bake import DeploymentRecord, StatusRecord
from shared.env_status import Pipeline, compute_status, environments_to_ask, updated_status
from shared.views import Environment

NAME = "kuberik/myapp"
SPEC_NAME = "myapp"
TASK = "deploy:kuberik/myapp"
PROJECT = "kuberik/environment-controller-testing"
# The commits the Go tests deploy.
REV1 = "0a9c600d3a75bcb7ec54dcef3b03e0d7fe0598d7"
REV2 = "8bd1ffbf07d9f04b9aba8757303a0f4c328c1743"
REV3 = "5220a27a5410a6a5182b9fadf537c6437fcca0b7"

Raw = dict[str, Any]


# --- builders -------------------------------------------------------------------------------------


def at(second: int) -> str:
    """A GitHub time: `second` seconds after midnight on 1 January 2026."""
    return f"2026-01-01T00:{second // 60:02d}:{second % 60:02d}Z"


def rev(n: int) -> str:
    """A synthetic commit id for the Go tests' `rev-<n>` revisions."""
    return f"{n:040x}"


def rollout_name(environment: str) -> str:
    return f"myapp-{environment}"


def environment(
    name: str,
    *,
    upstream: str | None = None,
    kind: str = "After",
    status: Mapping[str, Any] | None = None,
    spec_name: str = SPEC_NAME,
) -> Environment:
    """The Environment of `name` (Rollout `myapp-<name>`), `kind upstream` when an upstream is given."""
    spec: Raw = {
        "name": spec_name,
        "environment": name,
        "rolloutRef": {"name": rollout_name(name)},
        "backend": {"type": "github", "project": PROJECT},
    }
    if upstream is not None:
        spec["relationship"] = {"type": kind, "environment": upstream}
    raw: Raw = {
        "apiVersion": "environments.kuberik.com/v1alpha1",
        "kind": "Environment",
        "metadata": {"name": f"myapp-{name}", "namespace": "default", "uid": f"uid-{name}"},
        "spec": spec,
    }
    if status is not None:
        raw["status"] = dict(status)
    return Environment.from_raw(raw)


def entry(entry_id: int, tag: str, revision: str | None, *, at_s: int = 0, **more: str) -> Raw:
    """A Rollout history entry; also the entry a status shows for it (from the Rollout, or from GitHub
    when its record was created at the same time and carries no bake)."""
    version = {"tag": tag} | ({"revision": revision} if revision else {})
    return {"id": entry_id, "version": version, "timestamp": at(at_s), **more}


def rollout(*entries: Raw, limit: int | None = None) -> Raw:
    raw: Raw = {"apiVersion": "kuberik.com/v1alpha1", "kind": "Rollout", "status": {"history": list(entries)}}
    if limit is not None:
        raw["spec"] = {"versionHistoryLimit": limit}
    return raw


def rollouts(by_environment: Mapping[str, Raw]) -> dict[str, Raw]:
    """Rollouts keyed by their name, from Rollouts keyed by their environment."""
    return {rollout_name(env): raw for env, raw in by_environment.items()}


def status(state: str, description: str | None, at_s: int, url: str | None = None) -> StatusRecord:
    return StatusRecord(state, description, at(at_s), creator="bot", environment_url=url)


def document(history_entry: Raw, upstream: str | None = None) -> Raw:
    """The payload kuberik writes for a history entry: `{"id": "<id>", "relationship"?, "version"}`."""
    doc: Raw = {"id": str(history_entry["id"])}
    if upstream is not None:
        doc["relationship"] = {"environment": upstream, "type": "After"}
    doc["version"] = dict(history_entry["version"])
    return doc


def record(history_entry: Raw, *statuses: StatusRecord, upstream: str | None = None) -> DeploymentRecord:
    """GitHub's deployment of a history entry, created at the entry's timestamp (deployment id 1000+id)."""
    return DeploymentRecord(
        id=1000 + history_entry["id"],
        sha=history_entry["version"].get("revision") or REV1,
        payload=document(history_entry, upstream),
        created_at=history_entry["timestamp"],
        statuses=statuses,
        creator="bot",
        task=TASK,
    )


def recorded(entries: Sequence[Raw], upstream: str | None = None) -> tuple[DeploymentRecord, ...]:
    """GitHub's records of these entries, without statuses."""
    return tuple(record(e, upstream=upstream) for e in entries)


def pipeline(
    *local: Environment,
    rollouts: Mapping[str, Raw] | None = None,
    records: Mapping[str, tuple[DeploymentRecord, ...]] | None = None,
) -> Pipeline:
    return Pipeline(name=NAME, local=local, rollouts=rollouts or {}, records=records or {})


def from_source(env: Environment, entries: Sequence[Raw], source: str) -> Pipeline:
    """`env` alone, its history in its Rollout, or (Rollout left out) only in GitHub's records."""
    if source == "rollout":
        return pipeline(env, rollouts={env.rollout_name: rollout(*entries)})
    assert env.environment is not None
    return pipeline(env, records={env.environment: recorded(entries)})


def local_pipeline(layout: Mapping[str, tuple[str | None, Sequence[int]]]) -> Pipeline:
    """Local Environments `name: (upstream, history entry ids)`, each Rollout's entries tagged `v<id>`."""
    envs = tuple(environment(name, upstream=upstream) for name, (upstream, _) in layout.items())
    return pipeline(
        *envs,
        rollouts=rollouts(
            {
                name: rollout(*(entry(i, f"v{i}", rev(i)) for i in sorted(ids, reverse=True)))
                for name, (_, ids) in layout.items()
            }
        ),
    )


def status_of(current: str, p: Pipeline, gate: str | None = None) -> Raw:
    env = next(e for e in p.local if e.environment == current)
    return compute_status(env, p, gate)


def infos(computed: Mapping[str, Any]) -> list[Raw]:
    return list(computed.get("environmentInfos", []))


def after(upstream: str) -> Raw:
    return {"environment": upstream, "type": "After"}


# --- the Environment's own history and currentVersion ---------------------------------------------


@pytest.mark.parametrize("gate", ["ghd-3f2a9c", None])
@pytest.mark.parametrize(
    "history",
    [
        # "Should update Deployment status with deployment information"
        pytest.param([entry(1, "v1.0.0", REV1, at_s=1)], id="update-deployment-status"),
        # "Should track deployment statuses and update DeploymentStatuses"
        pytest.param(
            [entry(2, "v1.1.0", REV2, at_s=2), entry(1, "v1.0.0", REV1, at_s=1)],
            id="track-deployment-statuses",
        ),
    ],
)
def test_own_history_and_current_version_come_from_the_rollout(history: list[Raw], gate: str | None) -> None:
    production = environment("production")
    computed = compute_status(production, from_source(production, history, "rollout"), gate)

    expected: Raw = {
        "currentVersion": history[0]["version"]["revision"],
        "environmentInfos": [{"environment": "production", "history": history}],
    }
    if gate is not None:
        # Go sets rolloutGateRef in createOrUpdateRolloutGate (`ghd-<hash>`); ours is given the gate's name.
        expected["rolloutGateRef"] = {"name": gate}
    assert computed == expected


@pytest.mark.parametrize("source", ["rollout", "github"])
def test_current_version_is_the_revision_of_the_highest_history_id(source: str) -> None:
    # "Preserve EnvironmentInfos / Should select CurrentVersion by highest history ID": listed oldest
    # first on purpose, the newer id still wins. (Go's entries have no tag; kuberik's always have one,
    # and ours needs it, so the port gives them tags.)
    old, new = entry(10, "v-old", "old-rev", at_s=10), entry(20, "v-new", "new-rev", at_s=20)
    env = environment("current-version-env")

    computed = compute_status(env, from_source(env, [old, new], source), None)

    assert computed["currentVersion"] == "new-rev"
    assert infos(computed) == [{"environment": "current-version-env", "history": [new, old]}]


@pytest.mark.parametrize("source", ["rollout", "github"])
@pytest.mark.parametrize(
    ("given", "shown"),
    [
        # "Should sort history entries descending by ID" (Preserve EnvironmentInfos and
        # updateEnvironmentInfoWithHistory sorting): Go's entries have only ids, these have tags.
        pytest.param([(10, "v10"), (30, "v30"), (20, "v20")], [30, 20, 10], id="sorted-descending-by-id"),
        # TestUpdateEnvironmentInfoWithHistory_RemovesDuplicates: of two entries of v1.0.0, the newer stays.
        pytest.param([(10, "v1.0.0"), (20, "v1.0.1"), (15, "v1.0.0")], [20, 15], id="one-entry-per-tag"),
    ],
)
def test_history_is_newest_id_first_one_entry_per_tag(
    given: list[tuple[int, str]], shown: list[int], source: str
) -> None:
    entries = {i: entry(i, tag, rev(i), at_s=i) for i, tag in given}
    env = environment("env")

    computed = compute_status(env, from_source(env, list(entries.values()), source), None)

    assert infos(computed) == [{"environment": "env", "history": [entries[i] for i in shown]}]
    assert computed["currentVersion"] == rev(shown[0])


@pytest.mark.parametrize("source", ["rollout", "github"])
def test_entries_without_a_revision_are_left_out(source: str) -> None:
    # "Relevant Versions Logic / Should handle empty revisions in history entries": only entries with a
    # revision count (Go's buildEnvironmentInfos and buildHistoryFromDeployments skip the others). Here
    # the entry without one is the newest, so it must not make the currentVersion either.
    without, with_revision = entry(2, "v2", None, at_s=2), entry(1, "v1", "rev1", at_s=1)
    env = environment("dev")

    computed = compute_status(env, from_source(env, [without, with_revision], source), None)

    assert computed == {
        "currentVersion": "rev1",
        "environmentInfos": [{"environment": "dev", "history": [with_revision]}],
    }


def test_an_existing_info_is_updated_in_place_not_added_again() -> None:
    # "updateEnvironmentInfoWithHistory sorting / Should update existing entry and sort history": the
    # stored dev entry (history [10]) gets the new URL and the new history [15, 5], nothing is appended.
    stored = {
        "environmentInfos": [
            {
                "environment": "dev",
                "environmentUrl": "https://dev.com",
                "history": [entry(10, "v10", rev(10))],
            }
        ]
    }
    dev = environment("dev", status=stored)
    five, fifteen = entry(5, "v5", rev(5), at_s=5), entry(15, "v15", rev(15), at_s=15)
    github = (record(fifteen, status("success", None, 16, url="https://dev-updated.com")),)

    computed = compute_status(
        dev, pipeline(dev, rollouts={dev.rollout_name: rollout(five, fifteen)}, records={"dev": github}), None
    )

    assert infos(computed) == [
        {"environment": "dev", "environmentUrl": "https://dev-updated.com", "history": [fifteen, five]}
    ]


# --- related environments ---------------------------------------------------------------------------


def test_an_upstream_only_on_github_is_shown_from_its_records() -> None:
    # "Should update DeploymentStatuses for related environments based on relationships": staging has no
    # Environment here, only the deployment the Go test creates (entry 100, no relationship in its
    # payload) with a `success` status "Deployment successful": no kuberik prefix, so no bakeStatus
    # (the same in Go: extractBakeStatusFromDescription knows no such prefix).
    own = entry(1, "v1.0.0", REV1, at_s=1)
    staging_entry = entry(100, "v1.0.0-staging", REV1, at_s=5)
    production = environment("production", upstream="staging")
    p = pipeline(
        production,
        rollouts={production.rollout_name: rollout(own)},
        records={"staging": (record(staging_entry, status("success", "Deployment successful", 6)),)},
    )

    assert compute_status(production, p, None) == {
        "currentVersion": REV1,
        "environmentInfos": [
            {"environment": "staging", "history": [staging_entry]},
            {"environment": "production", "relationship": after("staging"), "history": [own]},
        ],
    }


@pytest.mark.parametrize(
    ("staging_id", "production_id", "steps"),
    [
        pytest.param(
            200,
            300,
            [("Deploying", None), ("Succeeded", "Bake completed successfully")],
            id="update-history-for-related-environments-with-environment-resources",
        ),
        pytest.param(
            300,
            400,
            [
                ("Deploying", None),
                ("InProgress", "Bake in progress"),
                ("Succeeded", "Bake completed successfully"),
            ],
            id="update-existing-history-entries-when-their-status-changes",
        ),
    ],
)
def test_a_local_upstream_shows_its_rollouts_bake_as_it_changes(
    staging_id: int, production_id: int, steps: list[tuple[str, str | None]]
) -> None:
    # Both Environments are in the cluster and both Rollouts are given: in Go the staging Rollout's bake
    # is synced to GitHub and read back; ours reads the Rollout itself (same data, no round trip).
    # Every change is written with a new lastStatusChangeTime; recomputing unchanged writes nothing.
    own = entry(production_id, "v1.0.0", REV1, at_s=1)
    stored: Raw | None = None
    p = pipeline()
    for step, (bake, message) in enumerate(steps):
        staging_entry = entry(
            staging_id,
            "v1.0.0-staging",
            REV1,
            at_s=0,
            bakeStatus=bake,
            **({"bakeStatusMessage": message} if message else {}),
        )
        production = environment("production", upstream="staging", status=stored)
        p = pipeline(
            production,
            environment("staging"),
            rollouts=rollouts({"staging": rollout(staging_entry), "production": rollout(own)}),
        )

        computed = compute_status(production, p, None)

        assert infos(computed) == [
            {"environment": "staging", "history": [staging_entry]},
            {"environment": "production", "relationship": after("staging"), "history": [own]},
        ]
        written = updated_status(stored, computed, at(100 + step))
        assert written == {**computed, "lastStatusChangeTime": at(100 + step)}
        stored = written

    again = compute_status(environment("production", upstream="staging", status=stored), p, None)
    assert updated_status(stored, again, at(999)) is None


def test_an_upstream_on_another_cluster_shows_its_bake_as_github_records_it() -> None:
    # The same scenario ("Should update existing history entries when their status changes") with
    # staging in another cluster: its bake is read from the statuses kuberik wrote on GitHub. Times are
    # GitHub's (documented difference: Go stamps its own clock on every read and keeps no bake times).
    staging_entry = entry(300, "v1.0.0-staging", REV1, at_s=5)
    production = environment("production", upstream="staging")
    statuses: list[StatusRecord] = []
    steps = [
        (status("pending", "Deploying", 6), {"bakeStatus": "Deploying"}),
        (
            status("in_progress", "Baking in progress: Bake in progress", 7),
            {"bakeStatus": "InProgress", "bakeStatusMessage": "Bake in progress", "bakeStartTime": at(7)},
        ),
        (
            status("success", "Bake succeeded: Bake completed successfully", 8),
            {
                "bakeStatus": "Succeeded",
                "bakeStatusMessage": "Bake completed successfully",
                "bakeStartTime": at(7),
                "bakeEndTime": at(8),
            },
        ),
    ]
    for new_status, bake in steps:
        statuses.append(new_status)
        p = pipeline(
            production,
            rollouts={production.rollout_name: rollout(entry(400, "v1.0.0", REV1, at_s=1))},
            records={"staging": (record(staging_entry, *statuses),)},
        )

        computed = compute_status(production, p, None)

        assert infos(computed)[0] == {"environment": "staging", "history": [{**staging_entry, **bake}]}


@pytest.mark.parametrize(
    "qa",
    [
        # As the Go test creates it: no payload at all.
        pytest.param(
            DeploymentRecord(
                id=7000,
                sha=REV3,
                payload=None,
                created_at=at(7),
                statuses=(status("success", "Deployment successful", 8),),
                creator="bot",
                task=TASK,
            ),
            id="qa-without-payload",
        ),
        pytest.param(record(entry(7, "v0.9.0", REV3, at_s=7)), id="qa-with-a-history-entry"),
    ],
)
def test_an_unrelated_environment_is_not_shown(qa: DeploymentRecord) -> None:
    # "Should only track relevant versions based on relationship graph": production is After staging,
    # qa is related to neither. Go tolerates qa in the list with an empty history (its buildEnvironmentInfos
    # lists every environment of the name found on GitHub, so qa with a history entry would show it);
    # ours lists only the environments connected to this one, so qa is absent either way.
    own = entry(1, "v1.0.0", REV1, at_s=1)
    staging_entry = entry(100, "v1.0.0-staging", REV1, at_s=5)
    production = environment("production", upstream="staging")
    p = pipeline(
        production,
        rollouts={production.rollout_name: rollout(own)},
        records={
            "staging": (record(staging_entry, status("success", "Deployment successful", 6)),),
            "qa": (qa,),
        },
    )

    assert infos(compute_status(production, p, None)) == [
        {"environment": "staging", "history": [staging_entry]},
        {"environment": "production", "relationship": after("staging"), "history": [own]},
    ]


def test_related_environments_keep_their_whole_history() -> None:
    # "Relevant Versions Logic / Should build relevantVersions from all relevant environments' history":
    # dev and staging are relevant and keep all their entries (revisions shared between them or not);
    # prod is related to neither, so none of its entries (rev3 shared with staging, rev4) is shown.
    dev_history = [entry(2, "v2", rev(2), at_s=2), entry(1, "v1", rev(1), at_s=1)]
    staging_history = [entry(4, "v3", rev(3), at_s=4), entry(3, "v2", rev(2), at_s=3)]
    prod_history = [entry(6, "v4", rev(4), at_s=6), entry(5, "v3", rev(3), at_s=5)]
    dev = environment("dev")
    p = pipeline(
        dev,
        rollouts={dev.rollout_name: rollout(*dev_history)},
        records={"staging": recorded(staging_history, upstream="dev"), "prod": recorded(prod_history)},
    )

    assert infos(compute_status(dev, p, None)) == [
        {"environment": "dev", "history": dev_history},
        {"environment": "staging", "relationship": after("dev"), "history": staging_history},
    ]


@pytest.mark.parametrize(
    ("current", "shown_ids"),
    [
        # TestBuildEnvironmentInfos_LimitsHistoryForIndirectConnections: env-c is two steps from env-a.
        pytest.param("env-a", {"env-a": [3, 2, 1], "env-b": [3, 2, 1], "env-c": [3]}, id="from-env-a"),
        # The same rule seen from the other two (not in the Go test): both neighbours are direct.
        pytest.param("env-b", {"env-a": [3, 2, 1], "env-b": [3, 2, 1], "env-c": [3, 2, 1]}, id="from-env-b"),
        pytest.param("env-c", {"env-a": [3], "env-b": [3, 2, 1], "env-c": [3, 2, 1]}, id="from-env-c"),
    ],
)
def test_environments_not_directly_connected_show_only_their_newest_entry(
    current: str, shown_ids: dict[str, list[int]]
) -> None:
    # Go's relationships have no type; ours need one (After).
    p = local_pipeline(
        {"env-a": (None, [1, 2, 3]), "env-b": ("env-a", [1, 2, 3]), "env-c": ("env-b", [1, 2, 3])}
    )

    computed = status_of(current, p)

    assert [(i["environment"], [e["id"] for e in i["history"]]) for i in infos(computed)] == list(
        shown_ids.items()
    )


# --- order of environmentInfos ---------------------------------------------------------------------------


def test_environment_infos_list_ancestors_first() -> None:
    # "Preserve EnvironmentInfos / Should sort environmentInfos by relationship (ancestor first)":
    # the descendants' higher history ids do not move them before their ancestors.
    p = local_pipeline({"prod": ("staging", [50]), "dev": (None, [10]), "staging": ("dev", [30])})

    assert [i["environment"] for i in infos(status_of("dev", p))] == ["dev", "staging", "prod"]


def test_environment_infos_of_a_branching_pipeline_follow_go_order() -> None:
    # "Preserve EnvironmentInfos / Should handle complex branching (dev -> staging, dev -> test,
    # staging -> prod)": Go's order is dev, staging, prod, test (prod 30 > test 15, and staging is
    # prod's ancestor). Go's Environment has no spec.environment; dev (the root) is the current one here.
    p = local_pipeline(
        {"prod": ("staging", [30]), "staging": ("dev", [20]), "test": ("dev", [15]), "dev": (None, [10])}
    )

    assert [i["environment"] for i in infos(status_of("dev", p))] == ["dev", "staging", "prod", "test"]


def test_environment_infos_without_history_are_ordered_by_name() -> None:
    # "updateStatus sorting via buildEnvironmentInfos / Should sort environmentInfos alphabetically by
    # name": Go's entries have no revision, so no history, and the name decides. Go lists the three
    # although none is related to another; ours lists only connected environments, so the port makes
    # prod and staging After dev (the same depth) and dev the current one. The URLs are GitHub's.
    def url_only(deployment_id: int, env: str) -> tuple[DeploymentRecord, ...]:
        no_version = {"id": "1"}
        return (
            DeploymentRecord(
                id=deployment_id,
                sha=REV1,
                payload=no_version,
                created_at=at(1),
                statuses=(status("success", None, 2, url=f"https://{env}.com"),),
                creator="bot",
                task=TASK,
            ),
        )

    envs = (environment("staging", upstream="dev"), environment("dev"), environment("prod", upstream="dev"))
    p = pipeline(*envs, records={env: url_only(i, env) for i, env in enumerate(("prod", "dev", "staging"))})

    assert infos(status_of("dev", p)) == [
        {"environment": "dev", "environmentUrl": "https://dev.com"},
        {"environment": "prod", "environmentUrl": "https://prod.com", "relationship": after("dev")},
        {"environment": "staging", "environmentUrl": "https://staging.com", "relationship": after("dev")},
    ]


# --- bakeStatus read from GitHub ---------------------------------------------------------------------------


@pytest.mark.parametrize("rollout_given", [False, True], ids=["rollout-left-out", "rollout-given"])
def test_bake_status_of_every_entry_from_github_statuses(rollout_given: bool) -> None:
    # "Should set bakeStatus for all history entries from GitHub deployment statuses": the Rollout has
    # three entries without a bake; the controller recorded each (pending "Deploying"), then the test
    # wrote a status per entry. Left out of the pipeline, the Rollout's history is read from GitHub, as
    # Go does: each entry gets its own bake. Given (documented difference), the history is the
    # Rollout's own, which GitHub's record is made from: no bake, since the Rollout has none.
    history = [
        entry(3, "v1.2.0", REV3, at_s=3),
        entry(2, "v1.1.0", REV2, at_s=2),
        entry(1, "v1.0.0", REV1, at_s=1),
    ]
    written = {
        3: status("success", "Bake succeeded: Deployment v1.2.0 successful", 13),
        2: status("failure", "Bake failed: Deployment v1.1.0 failed", 12),
        1: status("pending", "Deploying: Deployment v1.0.0 in progress", 11),
    }
    production = environment("production")
    p = pipeline(
        production,
        rollouts={production.rollout_name: rollout(*history)} if rollout_given else {},
        records={
            "production": tuple(
                record(e, status("pending", "Deploying", 5), written[e["id"]]) for e in history
            )
        },
    )

    shown = infos(compute_status(production, p, None))[0]["history"]

    if rollout_given:
        assert shown == history
    else:
        assert shown == [
            {
                **history[0],
                "bakeStatus": "Succeeded",
                "bakeStatusMessage": "Deployment v1.2.0 successful",
                "bakeEndTime": at(13),
            },
            {
                **history[1],
                "bakeStatus": "Failed",
                "bakeStatusMessage": "Deployment v1.1.0 failed",
                "bakeEndTime": at(12),
            },
            {**history[2], "bakeStatus": "Deploying", "bakeStatusMessage": "Deployment v1.0.0 in progress"},
        ]


@pytest.mark.parametrize(
    ("statuses", "bake"),
    [
        pytest.param(
            [
                status("failure", "Bake failed: A HealthCheck reported an error after deployment.", 10),
                status("inactive", "This deployment is inactive", 11),
            ],
            {
                "bakeStatus": "Failed",
                "bakeStatusMessage": "A HealthCheck reported an error after deployment.",
                "bakeEndTime": at(10),
            },
            id="preserve-bakeStatus-when-inactive-status-without-meaningful-description-is-present",
        ),
        pytest.param(
            [
                status(
                    "success",
                    "Bake succeeded: Bake time completed successfully (no errors within bake time).",
                    10,
                ),
                status("inactive", "Deployment cancelled", 11),
                status("inactive", "This deployment is inactive", 12),
            ],
            {
                "bakeStatus": "Succeeded",
                "bakeStatusMessage": "Bake time completed successfully (no errors within bake time).",
                "bakeEndTime": at(10),
            },
            id="multiple-inactive-statuses-find-the-most-recent-meaningful-status",
        ),
        # applyGitHubStatusToEntry: an inactive status counts when it says "Bake cancelled".
        pytest.param(
            [
                status("in_progress", "Baking in progress", 10),
                status("inactive", "Bake cancelled: superseded", 11),
            ],
            {
                "bakeStatus": "Cancelled",
                "bakeStatusMessage": "superseded",
                "bakeStartTime": at(10),
                "bakeEndTime": at(11),
            },
            id="inactive-bake-cancelled",
        ),
        # extractBakeStatusFromDescription: an unknown prefix or no description carries no bake ...
        pytest.param([status("success", "Deployment successful", 10)], {}, id="no-kuberik-prefix"),
        pytest.param([status("success", None, 10)], {}, id="no-description"),
        # ... a prefix alone carries no message, and a message is cut at 140 characters.
        pytest.param(
            [status("success", "Bake succeeded", 10)],
            {"bakeStatus": "Succeeded", "bakeEndTime": at(10)},
            id="prefix-without-message",
        ),
        pytest.param(
            [status("failure", "Bake failed: " + "x" * 200, 10)],
            {"bakeStatus": "Failed", "bakeStatusMessage": "x" * 140, "bakeEndTime": at(10)},
            id="message-cut-at-140",
        ),
        # Documented difference: Go reads the description only (Succeeded); a state contradicting it
        # shows as Failed, as the gates read it.
        pytest.param(
            [status("failure", "Bake succeeded: all good", 10)],
            {
                "bakeStatus": "Failed",
                "bakeStatusMessage": (
                    "status 'failure' contradicts its description 'Bake succeeded: all good'"
                ),
                "bakeEndTime": at(10),
            },
            id="state-contradicts-description",
        ),
    ],
)
def test_the_newest_status_carrying_a_bake_decides(statuses: list[StatusRecord], bake: Raw) -> None:
    # The two top-level Go tests of applyGitHubStatusToEntry, and its rules: GitHub's automatic inactive
    # statuses (and any status without one of kuberik's prefixes) are skipped.
    history_entry = entry(1, "v1.0.0", "abc123", at_s=1)
    production = environment("production")
    p = pipeline(production, records={"production": (record(history_entry, *statuses),)})

    assert infos(compute_status(production, p, None)) == [
        {"environment": "production", "history": [{**history_entry, **bake}]}
    ]


# --- environments no longer found -------------------------------------------------------------------------


DEV_URL, STAGING_URL = "https://dev.example.com", "https://staging.example.com"
DEV_ENTRY = entry(50, "v50", "dev-rev-50", at_s=50)
STORED_STAGING = {
    "environment": "staging",
    "environmentUrl": STAGING_URL,
    "relationship": after("dev"),
    "history": [entry(25, "v25", "staging-rev-25", at_s=25)],
}


@pytest.mark.parametrize(
    ("staging_records", "staging_shown"),
    [
        # Documented difference: Go keeps an environment it did not find (its 100 newest deployments of
        # the name may not include it); ours reads each environment by name, and one with no record
        # left anywhere is dropped.
        pytest.param(None, None, id="no-record-left"),
        # A lagging answer (older than what the status shows) does not replace the stored entry.
        pytest.param(
            (
                record(
                    entry(24, "v24", "staging-rev-24", at_s=24),
                    status("success", None, 24, STAGING_URL),
                    upstream="dev",
                ),
            ),
            STORED_STAGING,
            id="older-answer",
        ),
        # A newer one does.
        pytest.param(
            (
                record(
                    entry(26, "v26", "staging-rev-26", at_s=26),
                    status("success", None, 26, STAGING_URL),
                    upstream="dev",
                ),
            ),
            {**STORED_STAGING, "history": [entry(26, "v26", "staging-rev-26", at_s=26)]},
            id="newer-answer",
        ),
    ],
)
def test_a_shown_environment_absent_from_this_read(
    staging_records: tuple[DeploymentRecord, ...] | None, staging_shown: Raw | None
) -> None:
    # "Preserve EnvironmentInfos / Should preserve existing environmentInfos when environment is not
    # discovered in current run": dev and staging were shown; staging has no Environment here.
    dev_info = {"environment": "dev", "environmentUrl": DEV_URL, "history": [DEV_ENTRY]}
    dev = environment(
        "dev", status={"currentVersion": "dev-rev-50", "environmentInfos": [dev_info, STORED_STAGING]}
    )
    records: dict[str, tuple[DeploymentRecord, ...]] = {
        "dev": (record(DEV_ENTRY, status("success", None, 51, DEV_URL)),)
    }
    if staging_records is not None:
        records["staging"] = staging_records
    p = pipeline(dev, rollouts={dev.rollout_name: rollout(DEV_ENTRY)}, records=records)

    shown = infos(compute_status(dev, p, None))

    assert shown == [dev_info] + ([staging_shown] if staging_shown is not None else [])


def test_a_local_related_environment_does_not_depend_on_github_finding_it() -> None:
    # "Should preserve existing environmentInfos when environment is not discovered due to pagination":
    # staging has an Environment and a Rollout here, so its entry comes from the Rollout whatever GitHub
    # answers (here: nothing at all); reconciling again changes nothing and writes nothing.
    staging_entry, dev_entry = entry(10, "v1.10.0", REV1, at_s=10), entry(20, "v1.20.0", REV2, at_s=20)
    by_env = rollouts({"staging": rollout(staging_entry), "dev": rollout(dev_entry)})
    expected = [
        {"environment": "dev", "history": [dev_entry]},
        {"environment": "staging", "relationship": after("dev"), "history": [staging_entry]},
    ]

    first = status_of(
        "dev", pipeline(environment("dev"), environment("staging", upstream="dev"), rollouts=by_env)
    )
    assert infos(first) == expected
    stored = updated_status(None, first, at(100))
    assert stored == {**first, "lastStatusChangeTime": at(100)}

    dev = environment("dev", status=stored)
    second = compute_status(dev, pipeline(dev, environment("staging", upstream="dev"), rollouts=by_env), None)
    assert infos(second) == expected
    assert updated_status(stored, second, at(200)) is None


# --- lastStatusChangeTime -------------------------------------------------------------------------------


STORED: Raw = {
    "currentVersion": REV1,
    "rolloutGateRef": {"name": "ghd-1"},
    "environmentInfos": [{"environment": "production", "history": [entry(1, "v1.0.0", REV1)]}],
    "lastStatusChangeTime": at(1),
    "conditions": [{"type": "Ready", "status": "True"}],
}


@pytest.mark.parametrize(
    ("change", "moved"),
    [
        pytest.param({}, False, id="nothing-changed"),
        pytest.param({"currentVersion": REV2}, True, id="currentVersion"),
        pytest.param(
            {"environmentInfos": [{"environment": "production", "history": [entry(2, "v1.1.0", REV2)]}]},
            True,
            id="environmentInfos",
        ),
        # Go's updateStatus compares only currentVersion and environmentInfos (createOrUpdateRolloutGate
        # writes rolloutGateRef without moving the time); ours compares rolloutGateRef too.
        pytest.param({"rolloutGateRef": {"name": "ghd-2"}}, True, id="rolloutGateRef"),
    ],
)
def test_last_status_change_time_moves_only_when_the_status_changed(change: Raw, moved: bool) -> None:
    # updateStatus: the time is set only when the status changed; other fields (conditions) are kept.
    computed = {
        k: v for k, v in STORED.items() if k in ("currentVersion", "rolloutGateRef", "environmentInfos")
    }
    computed.update(change)

    written = updated_status(STORED, computed, at(60))

    assert written == ({**STORED, **change, "lastStatusChangeTime": at(60)} if moved else None)


# --- the pipeline's name --------------------------------------------------------------------------------


SPELLINGS = pytest.mark.parametrize(
    ("spec_name", "member"), [("myapp", True), ("kuberik/myapp", True), ("otherapp", False)]
)


@SPELLINGS
def test_an_environment_belongs_to_the_pipeline_of_its_name_with_or_without_the_prefix(
    spec_name: str, member: bool
) -> None:
    # The Go tests name their Environments without the prefix ("test-deployment-status"); the
    # controller adds it (ensureKuberikPrefix) for GitHub. Ported data of "Should update Deployment
    # status with deployment information"; an Environment of another name has no part in this pipeline.
    own = entry(1, "v1.0.0", REV1, at_s=1)
    production = environment("production", spec_name=spec_name)
    p = pipeline(production, rollouts={production.rollout_name: rollout(own)})

    expected = {"currentVersion": REV1, "environmentInfos": [{"environment": "production", "history": [own]}]}
    assert compute_status(production, p, None) == (expected if member else {})


@SPELLINGS
def test_environments_to_ask_include_those_of_the_name_with_or_without_the_prefix(
    spec_name: str, member: bool
) -> None:
    # buildRelationshipGraph discovers the environments of the name from the Environment resources too.
    local = [
        environment("staging", spec_name=spec_name),
        environment("production", upstream="staging", spec_name=spec_name),
    ]

    asked = environments_to_ask(NAME, local, {"known"})
    assert asked == (frozenset({"staging", "production", "known"}) if member else frozenset({"known"}))
