"""Prod deploys only what staging baked, whatever the order things are created in and whichever
rollout-controller semantics runs: on the real kube-apiserver with `k8s_admission` registered.

The kube-apiserver calls `k8s_admission` over TLS (the shipped `infra/k8s/admission.yaml`, pointed at
a functions-framework server with the stack's CA, selecting only this module's namespaces, which also
opt in with `stagegate.kuberik.com/guard: enabled`). `github_webhook` is served too, and the fake
GitHub holds staging's bake records. The rollout controller is stagegate's model of kuberik's
(`stagegate_dev/rollout_model.py`), as it is today (`current`: gates ignored on a first deploy,
since 7cd0117) and as it was before, driven pass by pass with `reconcile` so every case is
deterministic. Each test plays one story in its own namespace with its own GitHub repository:

1. staging and prod (`After staging`) are created in one of three orders: Environments first;
   Rollouts and OCIRepositories first, reconciled by the model, then the Environments; all at once
   (each Rollout published and reconciled the moment it exists, racing the Environments' admission);
2. releases are published; staging deploys the newest and starts baking, GitHub records it as
   `in_progress`, and stagegate is told; a newer release is published. Several passes later prod has
   deployed nothing: its OCIRepository has no tag and its Rollout no history entry (DESIGN.md,
   invariant 9, and the first-deploy fact: under `current` the model tries and the guard refuses);
3. staging's bake succeeds (recorded by the fake's token user) and the signed `deployment_status`
   webhook is delivered; the model's next passes deploy exactly the baked release to prod, not the
   newer unbaked one (no first-deploy deadlock).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import requests
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from shared.github_delivery import signature
from stagegate_dev import devstack
from stagegate_dev.demo import oci_repository_object, rollout_object
from stagegate_dev.fake_github import FakeGitHub
from stagegate_dev.rollout_model import Decision, RolloutModel, Semantics
from tests.functions.admission_support import GUARD_LABEL, labelled_namespace
from tests.kube_objects import ENV_ARGS, environment

WEBHOOK = devstack.ROOT / "functions" / "github_webhook" / "main.py"
SECRET = "orderings-webhook-secret"
KUBERIK = ("kuberik.com", "v1alpha1")
OCI = ("source.toolkit.fluxcd.io", "v1")
SEMANTICS: list[Semantics] = ["current", "before-7cd0117"]
ORDERINGS = ["environment-first", "rollout-first", "at-once"]
ENVS = ("staging", "prod")
PASSES = 3

OLD, OLD_REV = "main-1779280000-a1b2c3d", "a1b2c3d" + "0" * 33
TAG, REV = "main-1779290372-b797408", "b797408" + "0" * 33  # what staging deploys and bakes
NEWER, NEWER_REV = "main-1779299999-c0ffee1", "c0ffee1" + "0" * 33  # published later, never baked


# --- the stack: admission webhook registered, github_webhook served -------------------------------


def _namespace(kube_stack: devstack.KubeStack, labels: dict[str, str], prefix: str = "o") -> str:
    return labelled_namespace(kube_stack, labels, prefix)


@pytest.fixture(scope="module")
def webhook_url(kube_stack: devstack.KubeStack, procs: devstack.Processes, fake: FakeGitHub) -> str:
    settings = {
        "KUBECONFIG": str(kube_stack.function_kubeconfig),
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "GITHUB_TOKEN": fake.token,
        "GITHUB_API_URL": fake.url,
    }
    return devstack.FunctionServer(WEBHOOK, "github_webhook", settings, kube_stack.tls, procs).url


@pytest.fixture(scope="module")
def flux(kube_stack: devstack.KubeStack) -> None:
    api = client.ApiextensionsV1Api(kube_stack.api_client())
    names = {c.metadata.name for c in api.list_custom_resource_definition().items}
    if "ocirepositories.source.toolkit.fluxcd.io" not in names:
        pytest.skip("this stack has no Flux OCIRepository CRD installed")


# --- one story in its own namespace ---------------------------------------------------------------


def _environment(namespace: str, env: str, repo: str) -> dict[str, Any]:
    body = environment(namespace, env, upstream="staging" if env == "prod" else None, rollout=f"app-{env}")
    body["spec"]["name"] = "app"
    body["spec"]["backend"]["project"] = repo
    return body


def _in_parallel(*calls: Callable[[], object]) -> None:
    """Start every call at the same instant; re-raise the first failure once all are done."""
    barrier = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        barrier.wait()
        try:
            call()
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


class Story:
    """staging and prod (`After staging`) of app `app`, their Rollouts, OCIRepositories and GitHub repo."""

    def __init__(
        self,
        kube_stack: devstack.KubeStack,
        fake: FakeGitHub,
        webhook_url: str,
        namespace: str,
        semantics: Semantics,
    ) -> None:
        self.custom = client.CustomObjectsApi(kube_stack.api_client())
        self.fake, self.url, self.ns = fake, webhook_url, namespace
        self.ca = str(kube_stack.tls.ca_file)
        self.repo = f"org-{namespace}/app"
        fake.add_repo(self.repo)
        self.model = RolloutModel(kube_stack.api_client(), namespace, semantics=semantics, bake="spec")
        self.decisions: dict[str, list[Decision]] = {env: [] for env in ENVS}
        self.deployment: int | None = None

    # creation

    def create_environment(self, env: str) -> None:
        body = _environment(self.ns, env, self.repo)
        self.custom.create_namespaced_custom_object(*ENV_ARGS, self.ns, "environments", body)

    def create_rollout(self, env: str) -> None:
        self.custom.create_namespaced_custom_object(
            *OCI, self.ns, "ocirepositories", oci_repository_object(env)
        )
        self.custom.create_namespaced_custom_object(*KUBERIK, self.ns, "rollouts", rollout_object(env))

    def publish(self, env: str, *releases: tuple[str, str]) -> None:
        for tag, revision in releases:
            self.model.publish(f"app-{env}", tag, revision)

    def reconcile(self, env: str) -> Decision:
        decision = self.model.reconcile(f"app-{env}")
        assert decision is not None, f"Rollout app-{env} is missing"
        self.decisions[env].append(decision)
        return decision

    def passes(self, *envs: str, n: int = PASSES) -> None:
        for _ in range(n):
            for env in envs:
                self.reconcile(env)

    def create(self, ordering: str) -> None:
        """Create both environments' objects in `ordering`; releases OLD and TAG are published."""
        if ordering == "environment-first":
            for env in ENVS:
                self.create_environment(env)
            for env in ENVS:
                self.create_rollout(env)
                self.publish(env, (OLD, OLD_REV), (TAG, REV))
        elif ordering == "rollout-first":
            for env in ENVS:
                self.create_rollout(env)
                self.publish(env, (OLD, OLD_REV), (TAG, REV))
            self.passes(*ENVS)
            # No Environment governs either Rollout yet (so no gate exists): in a namespace that opted
            # in, the guard refuses every deploy, under both semantics.
            for env in ENVS:
                assert {(d.outcome, d.status_code) for d in self.decisions[env]} == {("failed", 403)}
                assert "no Environment governs Rollout" in (self.decisions[env][-1].error or "")
            for env in ENVS:
                self.create_environment(env)
        elif ordering == "at-once":

            def rollout_side(env: str) -> Callable[[], None]:
                def run() -> None:
                    self.create_rollout(env)
                    self.publish(env, (OLD, OLD_REV), (TAG, REV))
                    self.reconcile(env)  # the controller acts the moment it sees a release

                return run

            _in_parallel(
                *(lambda env=env: self.create_environment(env) for env in ENVS),
                *(rollout_side(env) for env in ENVS),
            )
        else:
            raise AssertionError(ordering)

    # reading back

    def prod_tag(self) -> str | None:
        repo = self.custom.get_namespaced_custom_object(*OCI, self.ns, "ocirepositories", "app-prod")
        tag: str | None = ((repo.get("spec") or {}).get("ref") or {}).get("tag")
        return tag

    def history(self, env: str) -> list[str]:
        rollout = self.custom.get_namespaced_custom_object(*KUBERIK, self.ns, "rollouts", f"app-{env}")
        return [e["version"]["tag"] for e in (rollout.get("status") or {}).get("history") or []]

    def prod_gate(self) -> list[str] | None:
        try:
            gate = self.custom.get_namespaced_custom_object(
                *KUBERIK, self.ns, "rolloutgates", "prod-stagegate"
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        allowed: list[str] | None = gate["spec"].get("allowedVersions")
        return allowed

    # GitHub: staging's bake as the environment controller records it, then the signed webhook

    def record_staging(self, state: str, description: str) -> dict[str, Any]:
        if self.deployment is None:
            deployment = self.fake.create_deployment(
                self.repo, sha=REV, ref=REV, environment="kuberik/app/staging", task="deploy:kuberik/app",
                payload={"id": "1", "relationship": None, "version": {"tag": TAG, "revision": REV}},
            )  # fmt: skip
            self.deployment = int(deployment["id"])
        status: dict[str, Any] = self.fake.create_status(self.repo, self.deployment, state, description)
        return status

    def deliver(self, status: dict[str, Any]) -> dict[str, Any]:
        headers, body = self.fake.deployment_status_event(self.repo, status["id"])
        headers["X-Hub-Signature-256"] = signature(SECRET, body)
        response = requests.post(self.url, data=body, headers=headers, verify=self.ca, timeout=30)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        assert answer["environments"] == [f"{self.ns}/prod"], answer
        return answer


def _assert_prod_deployed_nothing(story: Story, semantics: str) -> None:
    assert story.prod_tag() is None
    assert story.history("prod") == []
    assert story.prod_gate() == []
    prod = story.decisions["prod"]
    assert prod, "the model never reconciled prod"
    assert all(d.outcome != "deployed" for d in prod), prod
    # every refused write was the guard's answer (403), never something else failing
    assert {d.status_code for d in prod if d.outcome == "failed"} <= {403}, prod
    if semantics == "current":
        # on an empty history the controller ignores the `[]` gate and tries the newest raw candidate:
        # only the deploy guard keeps it from running
        assert (prod[-1].outcome, prod[-1].status_code) == ("failed", 403), prod[-1]
        assert prod[-1].version == prod[-1].candidates[0], prod[-1]
    else:
        assert prod[-1].outcome == "blocked", prod[-1]


@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("semantics", SEMANTICS)
def test_prod_deploys_nothing_until_staging_bakes_then_exactly_the_baked_version(
    flux: None,
    registered: dict[str, Any],
    kube_stack: devstack.KubeStack,
    fake: FakeGitHub,
    webhook_url: str,
    isolation: dict[str, str],
    semantics: Semantics,
    ordering: str,
) -> None:
    story = Story(
        kube_stack, fake, webhook_url, _namespace(kube_stack, {**isolation, **GUARD_LABEL}), semantics
    )
    story.create(ordering)

    # (a) staging deploys TAG and starts baking; GitHub says in_progress; a newer release comes out
    story.passes(*ENVS)
    assert story.history("staging") == [TAG]
    assert story.decisions["staging"][-1].outcome == "blocked"  # its bake of TAG is Deploying
    story.deliver(story.record_staging("in_progress", "Baking in progress"))
    story.publish("staging", (NEWER, NEWER_REV))
    story.publish("prod", (NEWER, NEWER_REV))
    story.passes(*ENVS)
    assert story.history("staging") == [TAG]
    _assert_prod_deployed_nothing(story, semantics)

    # (b) staging's bake of TAG succeeds; GitHub tells stagegate; prod deploys TAG, not NEWER
    story.model.finish_bake("app-staging", "Succeeded")
    answer = story.deliver(story.record_staging("success", "Bake succeeded"))
    assert answer["errors"] == {}, answer
    assert story.prod_gate() == [TAG]
    before = len(story.decisions["prod"])
    story.passes("prod")
    after = story.decisions["prod"][before:]
    assert after, "the model never reconciled prod after the bake"
    deployed = after[0]
    assert (deployed.outcome, deployed.version) == ("deployed", TAG), after
    assert deployed.applied == ("OCIRepository/app-prod",), deployed
    assert all(d.outcome != "deployed" for d in after[1:]), after  # NEWER stays out
    assert story.prod_tag() == TAG
    assert story.history("prod") == [TAG]
