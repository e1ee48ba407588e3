"""`github_webhook` served by functions-framework, against the real kube-apiserver and the fake GitHub
(REST and GraphQL checked against GitHub's published descriptions): bake results open exactly the
baked versions, and nothing else ever does."""

from __future__ import annotations

import datetime
import json
import secrets
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client

from shared.errors import PartialFailure, RetryableError
from shared.github_delivery import signature, verify_delivery
from shared.trust import RepositoryPolicy
from shared.views import Environment
from stagegate.github import GitHubDeployments, github_client
from stagegate.kube import KubeGates
from stagegate.reconcile import ensure_gates
from stagegate.webhook_service import on_delivery
from stagegate_dev import devstack
from stagegate_dev.fake_github import FakeGitHub
from tests.kube_objects import ENV_ARGS, GATE_ARGS, environment, list_gates

SOURCE = devstack.ROOT / "functions" / "github_webhook" / "main.py"
SECRET = "webhook-secret-for-tests"


def serve(kube_stack: devstack.KubeStack, procs: devstack.Processes, fake: FakeGitHub, **env: str) -> str:
    settings = {
        "KUBECONFIG": str(kube_stack.function_kubeconfig),
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "GITHUB_TOKEN": fake.token,
        "GITHUB_API_URL": fake.url,
        **env,
    }
    return devstack.FunctionServer(SOURCE, "github_webhook", settings, kube_stack.tls, procs).url


CA: list[str] = []  # the serving CA of the current stack, for `post`


@pytest.fixture(scope="module")
def url(kube_stack: devstack.KubeStack, procs: devstack.Processes, fake: FakeGitHub) -> str:
    CA[:] = [str(kube_stack.tls.ca_file)]
    return serve(kube_stack, procs, fake)


class App:
    """One app's environments, Rollouts and GitHub repository, unique to a test."""

    def __init__(
        self, custom: client.CustomObjectsApi, gates: KubeGates, fake: FakeGitHub, namespace: str
    ) -> None:
        self.custom, self.gates, self.fake, self.namespace = custom, gates, fake, namespace
        self.repo = f"org-{namespace}/myapp"
        self.creator: str | None = None  # who records bake results (None: the fake's token user)
        self.builds: dict[str, str] = {}  # revision -> the tag the Rollouts list it under
        self.entries = 0  # the history entries recorded so far (kuberik numbers them per Rollout)
        fake.add_repo(self.repo)

    def environment(self, name: str, upstream: str | None = None, kind: str = "After") -> None:
        body = environment(self.namespace, name, upstream=upstream, kind=kind, rollout=f"myapp-{name}")
        body["spec"]["backend"]["project"] = self.repo
        created = self.custom.create_namespaced_custom_object(*ENV_ARGS, self.namespace, "environments", body)
        ensure_gates(Environment.from_raw(created), self.gates, fresh=True)  # what the audit webhook does
        rollout = {
            "apiVersion": "kuberik.com/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": f"myapp-{name}"},
        }
        self.custom.create_namespaced_custom_object(
            "kuberik.com", "v1alpha1", self.namespace, "rollouts", rollout
        )

    def candidates(self, env: str, *pairs: tuple[str, str | None]) -> None:
        """Write the Rollout's status the way the rollout controller does."""
        items = [{"tag": tag, **({"revision": rev} if rev else {})} for tag, rev in pairs]
        self.builds.update({rev: tag for tag, rev in pairs if rev})
        self.rollout_status(env, {"releaseCandidates": items})

    def rollout_status(self, env: str, status: dict[str, Any]) -> None:
        """Merge `status` into the Rollout's status, as the rollout controller writes it."""
        self.custom.patch_namespaced_custom_object_status(
            "kuberik.com", "v1alpha1", self.namespace, "rollouts", f"myapp-{env}", {"status": status}
        )

    def bake(
        self,
        env: str,
        revision: str,
        state: str = "success",
        description: str = "Bake succeeded",
        tag: str | None = None,
        entry: int | None = None,
        upstream: str | None = None,
        environment_url: str = "",
    ) -> int:
        """Record a deployment of the build `tag` of `revision` (default: the tag the Rollouts list
        `revision` under) to `env` (`After upstream`, if given) for history entry `entry` (default: a
        new one), and its status, as the environment controller does."""
        self.entries = max(self.entries + 1, entry or 0)
        relationship = {"relationship": {"environment": upstream, "type": "After"}} if upstream else {}
        deployment = self.fake.create_deployment(
            self.repo,
            sha=revision,
            ref=revision,
            environment=f"kuberik/myapp/{env}",
            task="deploy:kuberik/myapp",
            payload={
                "id": str(entry or self.entries),
                **relationship,
                "version": {
                    "tag": tag or self.builds.get(revision, f"tag-{revision[:7]}"),
                    "revision": revision,
                },
            },
            creator=self.creator,
        )
        return self.status(deployment["id"], state, description, environment_url)

    def status(self, deployment_id: int, state: str, description: str, environment_url: str = "") -> int:
        status: dict[str, Any] = self.fake.create_status(
            self.repo,
            deployment_id,
            state,
            description,
            creator=self.creator,
            environment_url=environment_url,
        )
        return int(status["id"])

    def gate(self, env: str) -> list[str] | None:
        gates = [
            g for g in list_gates(self.custom, self.namespace) if g["metadata"]["name"] == f"{env}-stagegate"
        ]
        return gates[0]["spec"].get("allowedVersions") if gates else None


@pytest.fixture
def app(custom: client.CustomObjectsApi, gates: KubeGates, fake: FakeGitHub, namespace: str) -> App:
    return App(custom, gates, fake, namespace)


def rev(n: int) -> str:
    return f"{n:040x}"


def deliver(url: str, fake: FakeGitHub, app: App, status_id: int, secret: str = SECRET) -> requests.Response:
    headers, body = fake.deployment_status_event(app.repo, status_id)
    headers["X-Hub-Signature-256"] = signature(secret, body)
    return post(url, body, headers)


def post(url: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(url, data=body, headers=headers, verify=CA[0], timeout=30)


def test_staging_success_opens_exactly_that_tag_in_prod(url, fake, app) -> None:
    app.environment("staging")
    app.environment("prod", upstream="staging")
    app.candidates("prod", ("v1", rev(1)), ("v2", rev(2)))
    response = deliver(url, fake, app, app.bake("staging", rev(1)))
    assert response.status_code == 200, response.text
    assert app.gate("prod") == ["v1"]
    [gate] = response.json()["gates"]
    assert (gate["allowedVersionsBefore"], gate["allowedVersionsAfter"]) == ([], ["v1"])


BAKED = "main-1779290372-b797408"
REBUILT = "main-1779299999-b797408"  # a CI re-run of the same commit: another image


def test_a_rebuild_of_a_baked_commit_is_not_allowed_until_it_bakes_itself(url, fake, app) -> None:
    app.environment("staging")
    app.environment("prod", upstream="staging")
    app.candidates("prod", (BAKED, rev(1)), (REBUILT, rev(1)))
    assert deliver(url, fake, app, app.bake("staging", rev(1), tag=BAKED)).status_code == 200
    assert app.gate("prod") == [BAKED]
    assert deliver(url, fake, app, app.bake("staging", rev(1), tag=REBUILT)).status_code == 200
    assert app.gate("prod") == [BAKED, REBUILT]


def test_a_deploy_tools_success_does_not_open_the_gate(url, fake, app) -> None:
    app.environment("staging")
    app.environment("prod", upstream="staging")
    app.candidates("prod", ("v1", rev(1)))
    response = deliver(url, fake, app, app.bake("staging", rev(1), "success", "Deployment successful"))
    assert response.status_code == 200, response.text
    assert app.gate("prod") == []


def test_a_late_duplicate_of_an_older_entry_cannot_reopen_a_build_whose_newest_bake_failed(
    url, fake, app
) -> None:
    app.environment("staging")
    app.environment("prod", upstream="staging")
    app.candidates("prod", ("v1", rev(1)))
    deliver(url, fake, app, app.bake("staging", rev(1), entry=5))
    assert app.gate("prod") == ["v1"]
    deliver(url, fake, app, app.bake("staging", rev(1), "failure", "Bake failed: error rate", entry=7))
    assert app.gate("prod") == []
    # Two reporters raced: a duplicate record of entry 5, created after entry 7, says success.
    response = deliver(url, fake, app, app.bake("staging", rev(1), entry=5))
    assert response.status_code == 200, response.text
    assert app.gate("prod") == []


def test_a_later_failure_revokes_the_tag(url, fake, app) -> None:
    app.environment("staging")
    app.environment("prod", upstream="staging")
    app.candidates("prod", ("v1", rev(1)))
    deliver(url, fake, app, app.bake("staging", rev(1)))
    assert app.gate("prod") == ["v1"]
    deliver(url, fake, app, app.bake("staging", rev(1), "failure", "Bake failed: error rate"))
    assert app.gate("prod") == []


def test_in_progress_bake_opens_parallel_but_not_after(url, fake, app) -> None:
    app.environment("staging")
    app.environment("prod", upstream="staging", kind="After")
    app.environment("canary", upstream="staging", kind="Parallel")
    app.candidates("prod", ("v1", rev(1)))
    app.candidates("canary", ("v1", rev(1)))
    deliver(url, fake, app, app.bake("staging", rev(1), "in_progress", "Baking in progress"))
    assert (app.gate("prod"), app.gate("canary")) == ([], ["v1"])


def test_chain_opens_one_link_at_a_time(url, fake, app) -> None:
    app.environment("dev")
    app.environment("staging", upstream="dev")
    app.environment("prod", upstream="staging")
    app.candidates("staging", ("v1", rev(1)))
    app.candidates("prod", ("v1", rev(1)))
    deliver(url, fake, app, app.bake("dev", rev(1)))
    assert (app.gate("staging"), app.gate("prod")) == (["v1"], [])
    deliver(url, fake, app, app.bake("staging", rev(1)))
    assert (app.gate("staging"), app.gate("prod")) == (["v1"], ["v1"])


def test_fan_out_opens_every_downstream(url, fake, app) -> None:
    app.environment("staging")
    for region in ("prod-eu", "prod-us"):
        app.environment(region, upstream="staging")
        app.candidates(region, ("v1", rev(1)), ("v0", rev(0)))
    response = deliver(url, fake, app, app.bake("staging", rev(1)))
    assert sorted(response.json()["environments"]) == [f"{app.namespace}/prod-eu", f"{app.namespace}/prod-us"]
    assert (app.gate("prod-eu"), app.gate("prod-us")) == (["v1"], ["v1"])


def test_fan_out_reads_the_upstream_once_for_every_downstream(fake, app, gates) -> None:
    app.environment("staging")
    for n in range(6):
        app.environment(f"prod-{n}", upstream="staging")
        app.candidates(f"prod-{n}", ("v1", rev(1)), (f"only-{n}", rev(100 + n)))
    status = app.bake("staging", rev(1))
    headers, body = fake.deployment_status_event(app.repo, status)
    headers["X-Hub-Signature-256"] = signature(SECRET, body)
    upstream = GitHubDeployments(github_client(fake.token, fake.url, 10))
    upstream.trusted_creators()  # who the credentials are: asked once per process
    before = upstream.calls
    on_delivery(verify_delivery(headers, body, [SECRET]), gates, upstream, [app.namespace])
    assert upstream.calls - before == 1
    assert [app.gate(f"prod-{n}") for n in range(6)] == [["v1"]] * 6


def test_one_broken_downstream_does_not_stop_the_others(fake, app, gates) -> None:
    app.environment("staging")
    for name in ("prod-eu", "prod-us", "prod-ap"):
        app.environment(name, upstream="staging")
        app.candidates(name, ("v1", rev(1)))

    class Failing(KubeGates):
        """One Rollout's status cannot be read; writing another's gate times out once."""

        def list_rollouts(self, namespace):  # type: ignore[no-untyped-def]
            listed = super().list_rollouts(namespace)
            for rollout in listed:
                if rollout["metadata"]["name"] == "myapp-prod-us":
                    rollout["status"]["releaseCandidates"] = [{"revision": "no tag"}]
            return listed

        def patch_gate(self, namespace, name, patch, resource_version):  # type: ignore[no-untyped-def]
            if name == "prod-ap-stagegate" and not self.retried:
                self.retried = True
                raise RetryableError(f"patch RolloutGate {namespace}/{name}: timed out")
            return super().patch_gate(namespace, name, patch, resource_version)

    store = Failing(gates.api, gates.timeout)
    store.retried = False
    status = app.bake("staging", rev(1))
    headers, body = fake.deployment_status_event(app.repo, status)
    headers["X-Hub-Signature-256"] = signature(SECRET, body)
    upstream = GitHubDeployments(github_client(fake.token, fake.url, 10))
    with pytest.raises(PartialFailure) as caught:  # 503: the timed-out one is worth retrying
        on_delivery(verify_delivery(headers, body, [SECRET]), store, upstream, [app.namespace])
    assert (app.gate("prod-eu"), app.gate("prod-us"), app.gate("prod-ap")) == (["v1"], [], [])
    assert sorted(caught.value.summary["errors"]) == [f"{app.namespace}/prod-ap", f"{app.namespace}/prod-us"]
    summary = on_delivery(verify_delivery(headers, body, [SECRET]), store, upstream, [app.namespace])
    assert list(summary["errors"]) == [f"{app.namespace}/prod-us"]  # permanent: reported, answered 200
    assert (app.gate("prod-eu"), app.gate("prod-us"), app.gate("prod-ap")) == (["v1"], [], ["v1"])


def test_an_environment_naming_a_repository_outside_the_allowlist_is_refused(
    fake, app, gates, kube_stack
) -> None:
    app.environment("staging")
    app.environment("prod", upstream="staging")
    app.candidates("prod", ("v1", rev(1)))
    status = app.bake("staging", rev(1))
    headers, body = fake.deployment_status_event(app.repo, status)
    headers["X-Hub-Signature-256"] = signature(SECRET, body)
    upstream = GitHubDeployments(github_client(fake.token, fake.url, 10))
    delivery = verify_delivery(headers, body, [SECRET])
    elsewhere = RepositoryPolicy.parse(f"{app.namespace}-other=org-{app.namespace}/*, someorg/*")
    summary = on_delivery(delivery, gates, upstream, [app.namespace], repositories=elsewhere)
    assert app.gate("prod") == []
    assert "not in GITHUB_REPOSITORIES" in summary["errors"][f"{app.namespace}/prod"]
    assert upstream.calls == 0
    events = client.CoreV1Api(kube_stack.api_client()).list_namespaced_event(app.namespace).items
    assert [(e.reason, e.involved_object.name) for e in events] == [("RepositoryNotAllowed", "prod")]
    mine = RepositoryPolicy.parse(f"{app.namespace}=org-{app.namespace}/*")
    on_delivery(delivery, gates, upstream, [app.namespace], repositories=mine)
    assert app.gate("prod") == ["v1"]


def test_a_gate_deleted_mid_flight_is_made_again_blocking(fake, app, gates, custom) -> None:
    app.environment("staging")
    app.environment("prod", upstream="staging")
    app.candidates("prod", ("v1", rev(1)))
    status = app.bake("staging", rev(1))

    class DeletingGates(KubeGates):
        deleted = False

        def patch_gate(self, namespace, name, patch, resource_version):  # type: ignore[no-untyped-def]
            if not self.deleted:
                self.deleted = True
                custom.delete_namespaced_custom_object(*GATE_ARGS, namespace, "rolloutgates", name)
            return super().patch_gate(namespace, name, patch, resource_version)

    headers, body = fake.deployment_status_event(app.repo, status)
    headers["X-Hub-Signature-256"] = signature(SECRET, body)
    upstream = GitHubDeployments(github_client(fake.token, fake.url, 10))
    store = DeletingGates(gates.api, gates.timeout)
    summary = on_delivery(verify_delivery(headers, body, [SECRET]), store, upstream, [app.namespace])
    assert store.deleted
    assert summary["errors"] == {}
    assert app.gate("prod") == ["v1"]  # made again (blocking), then recomputed


def test_a_lagging_github_replica_cannot_reopen_a_revoked_tag(url, fake, app) -> None:
    app.environment("staging")
    app.environment("prod", upstream="staging")
    app.candidates("prod", ("v1", rev(1)))
    succeeded = app.bake("staging", rev(1))
    deliver(url, fake, app, succeeded)
    assert app.gate("prod") == ["v1"]
    before_the_failure = fake.snapshot()
    deliver(url, fake, app, app.bake("staging", rev(1), "failure", "Bake failed: error rate"))
    assert app.gate("prod") == []
    with fake.stale(before_the_failure):  # a replica that has not seen the failure yet
        response = deliver(url, fake, app, succeeded)
    assert response.status_code == 200, response.text
    assert app.gate("prod") == []


@pytest.fixture(scope="module")
def behind(octokit: Path) -> Iterator[FakeGitHub]:
    """A GitHub whose clock is ten minutes behind this machine's: stagegate's clock runs ahead of it."""
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=10)
    with FakeGitHub(assets=octokit, start_time=start) as server:
        yield server
        assert server.schema_errors == []


def test_a_lagging_replica_cannot_reopen_a_revoked_tag_when_our_clock_runs_ahead_of_githubs(
    url,
    kube_stack: devstack.KubeStack,
    procs: devstack.Processes,
    behind: FakeGitHub,
    gates,
    custom,
    namespace,
) -> None:
    # Judged on stagegate's clock, the failure's veto expired the moment it was made (its status is
    # ten minutes old by our clock), and the lagging answer re-allowed v1. GitHub's own `Date` says
    # the failure is seconds old.
    served = serve(kube_stack, procs, behind)
    app = App(custom, gates, behind, namespace)
    app.environment("staging")
    app.environment("prod", upstream="staging")
    app.candidates("prod", ("v1", rev(1)))
    succeeded = app.bake("staging", rev(1))
    deliver(served, behind, app, succeeded)
    assert app.gate("prod") == ["v1"]
    before_the_failure = behind.snapshot()
    deliver(served, behind, app, app.bake("staging", rev(1), "failure", "Bake failed: error rate"))
    assert app.gate("prod") == []
    with behind.stale(before_the_failure):
        response = deliver(served, behind, app, succeeded)
    assert response.status_code == 200, response.text
    assert app.gate("prod") == []


def test_newest_of_thirty_statuses_decides_although_github_lists_statuses_oldest_first(
    url, fake, app
) -> None:
    app.environment("staging")
    app.environment("prod", upstream="staging")
    app.candidates("prod", ("v1", rev(1)), ("v2", rev(2)))
    failing = _deployment_of(fake, app.bake("staging", rev(1)))
    baking = _deployment_of(fake, app.bake("staging", rev(2), "failure", "Bake failed: flaky"))
    for _ in range(28):
        app.status(failing, "success", "Bake succeeded")
        app.status(baking, "failure", "Bake failed: flaky")
    deliver(url, fake, app, app.status(failing, "failure", "Bake failed: error rate"))
    deliver(url, fake, app, app.status(baking, "success", "Bake succeeded"))
    assert app.gate("prod") == ["v2"]


def _deployment_of(fake: FakeGitHub, status_id: int) -> int:
    return int(fake.state.statuses[status_id].deployment_id)


def test_candidate_without_revision_stays_blocked(url, fake, app) -> None:
    app.environment("staging")
    app.environment("prod", upstream="staging")
    app.candidates("prod", ("v1", None), ("v2", rev(2)))
    deliver(url, fake, app, app.bake("staging", rev(2)))
    assert app.gate("prod") == ["v2"]


def test_githubs_own_inactive_mark_does_not_revoke_a_success(url, fake, app) -> None:
    app.environment("staging")
    app.environment("prod", upstream="staging")
    app.candidates("prod", ("v1", rev(1)), ("v2", rev(2)))
    app.bake("staging", rev(1))
    status = app.bake("staging", rev(2))  # GitHub marks rev 1's deployment inactive, without a description
    deliver(url, fake, app, status)
    assert app.gate("prod") == ["v1", "v2"]


def test_duplicate_and_reordered_deliveries_reach_the_same_state(url, fake, app) -> None:
    app.environment("staging")
    app.environment("prod", upstream="staging")
    app.candidates("prod", ("v1", rev(1)), ("v2", rev(2)))
    first = app.bake("staging", rev(1))
    second = app.bake("staging", rev(2), "failure", "Bake failed")
    for status in (second, first, second, first):
        assert deliver(url, fake, app, status).status_code == 200
    assert app.gate("prod") == ["v1"]


def test_fifty_concurrent_deliveries_end_where_a_sequential_recompute_does(url, fake, app) -> None:
    app.environment("staging")
    app.environment("prod", upstream="staging")
    app.candidates("prod", *((f"v{i}", rev(i)) for i in range(10)))
    statuses = [app.bake("staging", rev(i), "success" if i % 3 else "failure") for i in range(10)]
    with ThreadPoolExecutor(max_workers=25) as pool:
        answers = list(pool.map(lambda i: deliver(url, fake, app, statuses[i % 10]), range(50)))
    assert [a.status_code for a in answers] == [200] * 50
    concurrent = app.gate("prod")
    deliver(url, fake, app, statuses[0])
    assert concurrent == app.gate("prod") == sorted(f"v{i}" for i in range(10) if i % 3)


@pytest.mark.parametrize(
    "fault",
    [
        lambda fake: fake.fail_next(1, status=502),
        lambda fake: fake.rate_limit_next(1, kind="secondary"),
        lambda fake: fake.rate_limit_next(1, kind="primary"),
    ],
    ids=["502", "secondary rate limit", "primary rate limit"],
)
def test_github_failure_answers_5xx_and_leaves_the_gate(fault, url, fake, app) -> None:
    app.environment("staging")
    app.environment("prod", upstream="staging")
    app.candidates("prod", ("v1", rev(1)), ("v2", rev(2)))
    deliver(url, fake, app, app.bake("staging", rev(1)))
    status = app.bake("staging", rev(2))
    fault(fake)
    response = deliver(url, fake, app, status)
    assert response.status_code == 503, response.text
    assert app.gate("prod") == ["v1"]


def test_slow_github_answers_within_the_deadline_and_never_widens(kube_stack, procs, fake, app) -> None:
    slow_url = serve(kube_stack, procs, fake, GITHUB_WEBHOOK_DEADLINE_SECONDS="1")
    app.environment("staging")
    app.environment("prod", upstream="staging")
    app.candidates("prod", ("v1", rev(1)))
    status = app.bake("staging", rev(1), "failure", "Bake failed")
    fake.hang_next(5, seconds=3)
    response = deliver(slow_url, fake, app, status)
    assert response.status_code == 503
    assert app.gate("prod") == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong secret", 401),
        ("no signature", 401),
        ("not JSON", 400),
        ("missing fields", 400),
        ("too large", 413),
    ],
)
def test_bad_deliveries_get_4xx_and_change_nothing(case, expected, url, fake, app) -> None:
    app.environment("staging")
    app.environment("prod", upstream="staging")
    app.candidates("prod", ("v1", rev(1)))
    headers, body = fake.deployment_status_event(app.repo, app.bake("staging", rev(1)))
    if case == "not JSON":
        body = b"{not json"
    elif case == "missing fields":
        payload = json.loads(body)
        del payload["deployment"]
        body = json.dumps(payload).encode()
    elif case == "too large":
        body = b" " * (6 * 1024 * 1024)
    headers["X-Hub-Signature-256"] = signature("not-the-secret" if case == "wrong secret" else SECRET, body)
    if case == "no signature":
        del headers["X-Hub-Signature-256"]
    response = post(url, body, headers)
    assert response.status_code == expected, response.text
    assert response.json()["error"]
    assert app.gate("prod") == []


def test_form_encoded_delivery_is_accepted(url, fake, app) -> None:
    from urllib.parse import urlencode

    app.environment("staging")
    app.environment("prod", upstream="staging")
    app.candidates("prod", ("v1", rev(1)))
    headers, body = fake.deployment_status_event(app.repo, app.bake("staging", rev(1)))
    form = urlencode({"payload": body.decode()}).encode()
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    headers["X-Hub-Signature-256"] = signature(SECRET, form)
    assert post(url, form, headers).status_code == 200
    assert app.gate("prod") == ["v1"]


def test_without_a_secret_every_delivery_is_refused_and_logged(kube_stack, procs, fake, app) -> None:
    open_url = serve(kube_stack, procs, fake, GITHUB_WEBHOOK_SECRET="")
    headers, body = fake.deployment_status_event(app.repo, app.bake("staging", rev(1)))
    headers["X-Hub-Signature-256"] = signature("", body)
    response = post(open_url, body, headers)
    assert response.status_code == 401
    assert (
        "GITHUB_WEBHOOK_SECRET is not configured"
        in (procs.log_dir / "function-github_webhook.log").read_text()
    )


def test_ping_answers_pong(url) -> None:
    body = json.dumps({"zen": "Design for failure.", "hook_id": 1}).encode()
    headers = {
        "X-GitHub-Event": "ping",
        "Content-Type": "application/json",
        "X-Hub-Signature-256": signature(SECRET, body),
    }
    response = post(url, body, headers)
    assert (response.status_code, response.json()["status"]) == (200, "pong")


def example_deliveries(octokit_dir: Path) -> list[tuple[str, int, dict[str, Any]]]:
    index = json.loads(
        (octokit_dir / "@octokit" / "webhooks-examples" / "api.github.com" / "index.json").read_text()
    )
    return [(group["name"], i, example) for group in index for i, example in enumerate(group["examples"])]


def test_every_published_example_payload_gets_a_2xx_or_documented_4xx_and_changes_no_gate(
    url, octokit, custom, kube_stack
) -> None:
    before = {
        (g["metadata"]["namespace"], g["metadata"]["name"]): g["metadata"]["resourceVersion"]
        for g in custom.list_cluster_custom_object(*GATE_ARGS, "rolloutgates")["items"]
    }
    examples = example_deliveries(octokit)
    assert len(examples) > 200
    statuses: dict[int, list[str]] = {}
    for event, i, payload in examples:
        body = json.dumps(payload).encode()
        headers = {
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "Content-Type": "application/json",
            "X-Hub-Signature-256": signature(SECRET, body),
        }
        response = post(url, body, headers)
        statuses.setdefault(response.status_code, []).append(f"{event}[{i}]")
    assert set(statuses) <= {200, 400}, {code: names[:5] for code, names in statuses.items()}
    after = {
        (g["metadata"]["namespace"], g["metadata"]["name"]): g["metadata"]["resourceVersion"]
        for g in custom.list_cluster_custom_object(*GATE_ARGS, "rolloutgates")["items"]
    }
    assert after == before


def test_random_garbage_with_a_valid_signature_is_a_4xx(url) -> None:
    for _ in range(20):
        body = secrets.token_bytes(200)
        headers = {"X-GitHub-Event": "deployment_status", "X-Hub-Signature-256": signature(SECRET, body)}
        assert post(url, body, headers).status_code == 400
