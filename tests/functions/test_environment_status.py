"""The Environment `.status` kuberik's rollout-dashboard reads, written by `github_webhook` served by
functions-framework against real kube-apiservers (one per cluster) and the GitHub stand-in.

The expected statuses are written out whole: the fields and meaning of kuberik's environment
controller (`shared.env_status` says where and why stagegate differs)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from kubernetes import client

from shared.github_delivery import signature
from shared.views import Environment
from stagegate.cli import main
from stagegate.kube import KubeGates, api_client
from stagegate.pipeline_view import NO_ENVIRONMENT, NO_STATUS
from stagegate_dev import devstack
from stagegate_dev.fake_github import FakeGitHub
from tests.functions.test_github_webhook import CA, SECRET, App, rev, serve
from tests.kube_objects import ENV_ARGS, environment

AT = "2026-12-01T10:00:00Z"


class Pipeline(App):
    """An app whose Rollouts carry a history, as the rollout controller writes it."""

    def history(self, env: str, *entries: tuple[int, str, str, str | None]) -> None:
        """(entry id, tag, revision, bakeStatus), newest first."""
        history = [
            {
                "id": entry,
                "version": {"tag": tag, "revision": revision},
                "timestamp": AT,
                **({"bakeStatus": bake} if bake else {}),
            }
            for entry, tag, revision, bake in entries
        ]
        self.rollout_status(env, {"history": history})

    def env_status(self, env: str) -> dict[str, Any]:
        found = self.custom.get_namespaced_custom_object(*ENV_ARGS, self.namespace, "environments", env)
        return dict(found.get("status") or {})

    def record(
        self, env: str, entry: int, tag: str, revision: str, description: str, upstream: str | None
    ) -> int:
        """A deployment of history entry `entry` and its status, as the reporter writes them."""
        state = {"Bake succeeded": "success", "Bake failed": "failure"}.get(
            description.split(":", maxsplit=1)[0], "in_progress"
        )
        return self.bake(
            env, revision, state, description, tag, entry, upstream, f"https://dash.example/{env}"
        )


def entry(entry_id: int, tag: str, revision: str, bake: str | None = None, **more: str) -> dict[str, Any]:
    return {
        "id": entry_id,
        "version": {"tag": tag, "revision": revision},
        "timestamp": AT,
        **({"bakeStatus": bake} if bake else {}),
        **more,
    }


def deliver(url: str, fake: FakeGitHub, repo: str, status_id: int, ca: str | None = None) -> dict[str, Any]:
    headers, body = fake.deployment_status_event(repo, status_id)
    headers["X-Hub-Signature-256"] = signature(SECRET, body)
    answer = requests.post(url, data=body, headers=headers, verify=ca or CA[0], timeout=30)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def recorded(fake: FakeGitHub, repo: str, env: str) -> list[tuple[str, list[str]]]:
    """GitHub's times of each deployment to `env` (newest first) and of its statuses (newest first)."""
    api = f"{fake.url}/repos/{repo}"
    auth = {"Authorization": f"token {fake.token}"}
    deployments = requests.get(f"{api}/deployments", params={"environment": env}, headers=auth, timeout=10)
    return [
        (
            d["created_at"],
            [
                s["created_at"]
                for s in requests.get(
                    f"{api}/deployments/{d['id']}/statuses", headers=auth, timeout=10
                ).json()
            ],
        )
        for d in deployments.json()
    ]


@pytest.fixture(scope="module")
def url(kube_stack: devstack.KubeStack, procs: devstack.Processes, fake: FakeGitHub) -> str:
    CA[:] = [str(kube_stack.tls.ca_file)]
    return serve(kube_stack, procs, fake)


@pytest.fixture
def app(custom: client.CustomObjectsApi, gates: KubeGates, fake: FakeGitHub, namespace: str) -> Pipeline:
    return Pipeline(custom, gates, fake, namespace)


def test_a_delivery_writes_every_status_of_the_pipeline_as_the_go_controller_would(
    url, fake, app, kube_stack, monkeypatch
) -> None:
    app.environment("staging")
    app.environment("prod", upstream="staging")
    app.history("staging", (2, "v2", rev(2), "InProgress"), (1, "v1", rev(1), "Succeeded"))
    app.history("prod", (1, "v0", rev(0), "Succeeded"))
    app.candidates("prod", ("v1", rev(1)), ("v2", rev(2)))
    app.record("prod", 1, "v0", rev(0), "Bake succeeded", "staging")
    app.record("staging", 1, "v1", rev(1), "Bake succeeded", None)
    answer = deliver(url, fake, app.repo, app.record("staging", 2, "v2", rev(2), "Baking in progress", None))

    assert sorted(answer["statuses"]["written"]) == [f"{app.namespace}/prod", f"{app.namespace}/staging"]
    assert answer["statuses"]["githubRequests"] == 1, str(answer["statuses"])
    staging_info = {
        "environment": "staging",
        "environmentUrl": "https://dash.example/staging",
        "history": [entry(2, "v2", rev(2), "InProgress"), entry(1, "v1", rev(1), "Succeeded")],
    }
    prod_info = {
        "environment": "prod",
        "environmentUrl": "https://dash.example/prod",
        "relationship": {"environment": "staging", "type": "After"},
        "history": [entry(1, "v0", rev(0), "Succeeded")],
    }
    prod = app.env_status("prod")
    assert {k: v for k, v in prod.items() if k != "lastStatusChangeTime"} == {
        "currentVersion": rev(0),
        "rolloutGateRef": {"name": "prod-stagegate"},
        "environmentInfos": [staging_info, prod_info],
    }
    staging = app.env_status("staging")
    assert staging["currentVersion"] == rev(2)
    assert staging["rolloutGateRef"] == {"name": "staging-stagegate"}
    assert staging["environmentInfos"] == [staging_info, prod_info]

    # `stagegate status` shows the pipeline from what was written, ancestors first.
    out = io.StringIO()
    monkeypatch.setenv("KUBECONFIG", str(kube_stack.function_kubeconfig))
    assert main(["status", "myapp", "-n", app.namespace], out) == 0
    lines = [line.split() for line in out.getvalue().splitlines()[2:]]
    assert lines == [
        ["staging", "v2", f"({rev(2)[:7]})", "InProgress", "anything", "(no", "restriction)", "-"],
        ["prod", "v0", f"({rev(0)[:7]})", "Succeeded", '["v1"]', "staging", "to", "bake", "v2",
         f"({rev(2)[:7]}):", "InProgress", "(needs", "Succeeded)"],
    ]  # fmt: skip

    # The same delivery again changes nothing, not even the time of the last change.
    again = deliver(url, fake, app.repo, app.record("staging", 2, "v2", rev(2), "Baking in progress", None))
    assert again["statuses"]["written"] == []
    assert app.env_status("prod") == prod


def test_a_rollout_change_shows_at_the_next_update_and_moves_the_change_time(
    url, fake, app, kube_stack, monkeypatch
) -> None:
    app.environment("staging")
    monkeypatch.setenv("KUBECONFIG", str(kube_stack.function_kubeconfig))
    assert main(["status", "myapp", "-n", app.namespace], io.StringIO()) == NO_STATUS  # nothing ran yet
    assert main(["status", "other", "-n", app.namespace], io.StringIO()) == NO_ENVIRONMENT
    app.history("staging", (1, "v1", rev(1), "InProgress"))
    deliver(url, fake, app.repo, app.record("staging", 1, "v1", rev(1), "Baking in progress", None))
    before = app.env_status("staging")
    assert before["environmentInfos"][0]["history"] == [entry(1, "v1", rev(1), "InProgress")]
    app.history("staging", (1, "v1", rev(1), "Succeeded"))
    deliver(url, fake, app.repo, app.record("staging", 1, "v1", rev(1), "Bake succeeded", None))
    after = app.env_status("staging")
    assert after["environmentInfos"][0]["history"] == [entry(1, "v1", rev(1), "Succeeded")]
    assert after["lastStatusChangeTime"] >= before["lastStatusChangeTime"]


# --- two clusters, one GitHub -------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_cluster(
    crd_dir, procs: devstack.Processes, fake: FakeGitHub
) -> Iterator[tuple[devstack.KubeStack, str]]:
    """A second kube-apiserver with its own `github_webhook`, as prod's cluster."""
    with devstack.KubeStack(crd_dir) as stack:
        yield stack, serve(stack, procs, fake)


def test_an_environment_in_another_cluster_shows_with_its_history_and_relationship(
    url, fake, app, other_cluster
) -> None:
    stack, other_url = other_cluster
    here, there = CA[0], str(stack.tls.ca_file)
    client.CoreV1Api(stack.api_client()).create_namespace({"metadata": {"name": app.namespace}})
    prod_side = Pipeline(
        client.CustomObjectsApi(stack.api_client()),
        KubeGates(api_client(str(stack.function_kubeconfig)), timeout=10),
        fake,
        app.namespace,
    )
    prod_side.repo = app.repo
    app.environment("staging")  # cluster one: staging only
    prod_side.environment("prod", upstream="staging")  # cluster two: prod only
    app.history("staging", (1, "v1", rev(1), "Succeeded"))
    prod_side.history("prod", (3, "v1", rev(1), "InProgress"))
    staging_baked = app.record("staging", 1, "v1", rev(1), "Bake succeeded", None)
    prod_baking = prod_side.record("prod", 3, "v1", rev(1), "Baking in progress", "staging")
    # GitHub sends every delivery to each webhook of the repository: both clusters hear both.
    for status_id in (staging_baked, prod_baking):
        deliver(url, fake, app.repo, status_id, here)
        deliver(other_url, fake, app.repo, status_id, there)

    [(prod_recorded, [prod_baking_at])] = recorded(fake, app.repo, "kuberik/myapp/prod")
    [(staging_recorded, [staging_baked_at])] = recorded(fake, app.repo, "kuberik/myapp/staging")
    staging_here = {
        "environment": "staging",
        "environmentUrl": "https://dash.example/staging",
        "history": [entry(1, "v1", rev(1), "Succeeded")],
    }
    prod_there = {
        "environment": "prod",
        "environmentUrl": "https://dash.example/prod",
        "relationship": {"environment": "staging", "type": "After"},
        "history": [entry(3, "v1", rev(1), "InProgress")],
    }
    # Seen from staging's cluster, prod exists only on GitHub: its entry carries GitHub's times.
    assert app.env_status("staging")["environmentInfos"] == [
        staging_here,
        {
            **prod_there,
            "history": [
                {
                    **entry(3, "v1", rev(1), "InProgress"),
                    "timestamp": prod_recorded,
                    "bakeStartTime": prod_baking_at,
                }
            ],
        },
    ]
    # Seen from prod's cluster, staging exists only on GitHub.
    staging_there = {
        **staging_here,
        "history": [
            {
                **entry(1, "v1", rev(1), "Succeeded"),
                "timestamp": staging_recorded,
                "bakeEndTime": staging_baked_at,
            }
        ],
    }
    assert prod_side.env_status("prod")["environmentInfos"] == [staging_there, prod_there]

    # A replayed delivery answered by a lagging replica must not take staging's newer result back.
    before_failure = fake.snapshot()
    deliver(
        other_url,
        fake,
        app.repo,
        app.record("staging", 1, "v1", rev(1), "Bake failed: error rate", None),
        there,
    )
    [failed] = prod_side.env_status("prod")["environmentInfos"][0]["history"]
    assert (failed["bakeStatus"], failed["bakeStatusMessage"]) == ("Failed", "error rate")
    with fake.stale(before_failure):
        deliver(other_url, fake, app.repo, staging_baked, there)
    assert prod_side.env_status("prod")["environmentInfos"][0]["history"] == [failed]


# --- Events that tell the story ------------------------------------------------------------------


def told(kube_stack: devstack.KubeStack, namespace: str, name: str) -> list[tuple[str, str, str, int]]:
    """(type, reason, message, count) of stagegate's Events on the Environment, oldest first."""
    events = client.CoreV1Api(kube_stack.api_client()).list_namespaced_event(namespace).items
    mine = [e for e in events if e.involved_object.name == name and e.source.component == "stagegate"]
    mine.sort(key=lambda e: e.first_timestamp)
    return [(e.type, e.reason, e.message, e.count) for e in mine]


def test_gate_changes_are_told_on_the_environment_once_each_then_counted(url, fake, app, kube_stack) -> None:
    app.environment("staging")
    app.environment("prod", upstream="staging")
    app.candidates("prod", ("v1", rev(1)))
    deliver(url, fake, app.repo, app.bake("staging", rev(1)))
    [(kind, reason, message, count)] = told(kube_stack, app.namespace, "prod")
    assert (kind, reason, count) == ("Normal", "GateOpened", 1)
    assert message.startswith("prod-stagegate allows v1 (allowed: ")
    assert "bake result success (history entry 1, deployment " in message
    assert "in kuberik/myapp/staging" in message
    assert message.endswith("; it allows v1")
    deliver(url, fake, app.repo, app.bake("staging", rev(1), "failure", "Bake failed: error rate"))
    deliver(url, fake, app.repo, app.bake("staging", rev(1)))
    deliver(url, fake, app.repo, app.bake("staging", rev(1), "failure", "Bake failed: error rate"))
    story = told(kube_stack, app.namespace, "prod")
    # Opened, narrowed, opened, narrowed: each told (the same message again only counts up).
    assert {(k, r) for k, r, _, _ in story} == {("Normal", "GateOpened"), ("Normal", "GateNarrowed")}
    assert sum(count for *_, count in story) == 4
    assert all("no longer allows v1 (blocked: " in m for _, r, m, _ in story if r == "GateNarrowed")
    assert told(kube_stack, app.namespace, "staging") == []  # no relationship: nothing to tell


def test_the_same_event_again_counts_up_instead_of_adding_one(gates, custom, namespace, kube_stack) -> None:
    body = environment(namespace, "prod", upstream="staging")
    env = Environment.from_raw(
        custom.create_namespaced_custom_object(*ENV_ARGS, namespace, "environments", body)
    )
    for _ in range(3):
        gates.tell(env, "Normal", "GateOpened", "prod-stagegate allows v1")
    gates.tell(env, "Warning", "GateNotComputed", "its gate could not be computed: GitHub answered 502")
    assert sorted(told(kube_stack, namespace, "prod")) == [
        ("Normal", "GateOpened", "prod-stagegate allows v1", 3),
        ("Warning", "GateNotComputed", "its gate could not be computed: GitHub answered 502", 1),
    ]
