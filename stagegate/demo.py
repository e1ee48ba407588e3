"""`make demo`: the kuberik-demo incident, then the same story with stagegate's admission function.

What runs, all on loopback and all stopped at the end: etcd and a real kube-apiserver whose audit
webhook (blocking mode) is `k8s_audit_http`; `github_webhook` and `k8s_admission`, served by
functions-framework in their own processes; a local stand-in for GitHub (the fake the tests use, not
github.com); and, as the rollout controller, stagegate's model of kuberik's rollout controller as it is
today (`stagegate/devtools/rollout_model.py`: it deploys by server-side applying the tag on each
annotated Flux OCIRepository, and since commit 7cd0117 it ignores gates on a Rollout's first deploy).
The "rollout controller" lines of the timeline come from that model; the GitHub records of staging's
bake are written the way kuberik's environment controller writes them.

The story, played twice: staging and prod Environments (prod `After staging`), their Rollouts and
their Flux OCIRepositories are created at the same moment, a new release is published, staging
deploys and bakes it, GitHub tells stagegate with a signed `deployment_status` webhook. A sampler
watches which tag prod's OCIRepository runs. Act 1 runs without the admission function: prod deploys
the release before staging baked it (the incident; its gate was `[]` all along). Act 2 registers
`k8s_admission` (`infra/k8s/admission.yaml`): prod's deploy is refused until the bake succeeds, then
prod deploys exactly the baked release. The run fails (exit 1) if act 2 ever ran an unbaked version or
never deployed the baked one, or if act 1 did not show the incident (then the demo itself is wrong).
"""

from __future__ import annotations

import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from kubernetes import client

from shared.gate import gate_name
from shared.github_delivery import signature
from stagegate import devstack
from stagegate.devtools.rollout_model import Decision, RolloutModel
from stagegate.fake_github import FakeGitHub

REPOS = {"incident": "kuberik-demo/app-incident", "kuberik-demo": "kuberik-demo/app"}  # one per act
TAG = "main-1779290372-b797408"
REVISION = "b797408" + "0" * 33
OLD_TAG = "main-1779280000-a1b2c3d"
OLD_REVISION = "a1b2c3d" + "0" * 33
ENVIRONMENTS = ("environments.kuberik.com", "v1alpha1")
KUBERIK = ("kuberik.com", "v1alpha1")
OCI = ("source.toolkit.fluxcd.io", "v1")
DEMO_LABEL = {"stagegate-demo": "admission"}
GUARD_LABEL = {"stagegate.kuberik.com/guard": "enabled"}


@dataclass
class Timeline:
    """Events with times relative to the start of an act, printed as they happen."""

    start: float = field(default_factory=time.perf_counter)

    def now(self) -> float:
        return (time.perf_counter() - self.start) * 1000

    def mark(self, text: str, at: float | None = None) -> None:
        print(f"  +{self.now() if at is None else at:8.1f} ms  {text}", flush=True)


@dataclass
class Sampler:
    """Reads what prod runs (its OCIRepository's tag) and its gate every few milliseconds."""

    custom: client.CustomObjectsApi
    namespace: str
    timeline: Timeline
    baked: set[str] = field(default_factory=set)
    violations: list[str] = field(default_factory=list)
    deployed: dict[str, float] = field(default_factory=dict)
    opened_at: float | None = None
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _read(self, group_version: tuple[str, str], plural: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.custom.get_namespaced_custom_object(
                *group_version, self.namespace, plural, name
            )
        except client.exceptions.ApiException:
            return None
        return found

    def _run(self) -> None:
        while not self._stop.is_set():
            repo = self._read(OCI, "ocirepositories", "app-prod")
            gate = self._read(KUBERIK, "rolloutgates", gate_name("prod"))
            at = self.timeline.now()
            self.samples += 1
            tag = ((repo or {}).get("spec") or {}).get("ref", {}).get("tag")
            if tag and tag not in self.deployed:
                self.deployed[tag] = at
                if tag not in self.baked:
                    self.violations.append(f"+{at:.1f} ms: prod runs {tag}, which staging had not baked")
            allowed = None if gate is None else gate["spec"].get("allowedVersions")
            if gate is not None and allowed is None:
                self.violations.append(f"+{at:.1f} ms: prod's gate has no restriction (null)")
            if allowed and TAG in allowed and self.opened_at is None:
                self.opened_at = at
            time.sleep(0.005)


def _in_parallel(*calls: Callable[[], Any]) -> list[float]:
    """Run the calls at the same moment; return when each returned (perf_counter)."""
    done = [0.0] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(i: int) -> None:
        barrier.wait()
        calls[i]()
        done[i] = time.perf_counter()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done


def _environment(namespace: str, name: str, upstream: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "app",
        "environment": name,
        "rolloutRef": {"name": f"app-{name}"},
        "backend": {"type": "github", "project": REPOS[namespace]},
    }
    if upstream:
        spec["relationship"] = {"type": "After", "environment": upstream}
    return {"apiVersion": "environments.kuberik.com/v1alpha1", "kind": "Environment",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}  # fmt: skip


def _rollout(env: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"releasesImagePolicy": {"name": f"app-{env}"}}
    if env == "staging":
        spec["bakeTime"] = "10m"  # staging bakes; the model holds the bake until the story ends it
    return {"apiVersion": "kuberik.com/v1alpha1", "kind": "Rollout", "metadata": {"name": f"app-{env}"},
            "spec": spec}  # fmt: skip


def _oci_repository(env: str) -> dict[str, Any]:
    """What Flux runs for the environment: no tag in git (the rollout controller sets it)."""
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "OCIRepository",
        "metadata": {"name": f"app-{env}", "annotations": {"rollout.kuberik.com/rollout": f"app-{env}"}},
        "spec": {"interval": "1m", "url": "oci://registry.example/kuberik-demo/app-manifests"},
    }


@dataclass
class Stack:
    """The running stack shared by both acts."""

    fake: FakeGitHub
    kube: devstack.KubeStack
    webhook: devstack.FunctionServer
    secret: str
    custom: client.CustomObjectsApi


@dataclass
class Act:
    """One play of the story in its own namespace."""

    stack: Stack
    namespace: str
    timeline: Timeline = field(default_factory=Timeline)

    def model_said(self, decision: Decision) -> None:
        """Print what the rollout controller (model) did to prod and staging, when it changed."""
        env = decision.rollout.removeprefix("app-")
        if decision.outcome == "deployed":
            self.timeline.mark(f"rollout controller deploys {decision.version} to {env} ({decision.reason})")
        elif decision.outcome == "failed":
            error = (decision.error or "").split(": ", 1)[-1]
            self.timeline.mark(f"rollout controller cannot deploy {decision.version} to {env}: {error}")
        elif decision.outcome == "blocked":
            self.timeline.mark(f"rollout controller holds {env}: {decision.reason}")

    def create_all_at_once(self) -> float:
        """Environments, Rollouts and OCIRepositories of both environments in one instant."""
        custom, ns = self.stack.custom, self.namespace
        self.timeline.mark("create staging + prod Environments, Rollouts and OCIRepositories, all at once")
        calls = [
            lambda: custom.create_namespaced_custom_object(
                *ENVIRONMENTS, ns, "environments", _environment(ns, "staging", None)
            ),
            lambda: custom.create_namespaced_custom_object(
                *ENVIRONMENTS, ns, "environments", _environment(ns, "prod", "staging")
            ),
            *(
                lambda env=env: custom.create_namespaced_custom_object(
                    *KUBERIK, ns, "rollouts", _rollout(env)
                )
                for env in ("staging", "prod")
            ),
            *(
                lambda env=env: custom.create_namespaced_custom_object(
                    *OCI, ns, "ocirepositories", _oci_repository(env)
                )
                for env in ("staging", "prod")
            ),
        ]
        returned = _in_parallel(*calls)
        return (returned[1] - self.timeline.start) * 1000

    def prod_allowed(self) -> list[str] | None:
        gate = self.stack.custom.get_namespaced_custom_object(
            *KUBERIK, self.namespace, "rolloutgates", gate_name("prod")
        )
        allowed: list[str] | None = gate["spec"].get("allowedVersions")
        return allowed

    def bake_staging(self, model: RolloutModel, sampler: Sampler) -> None:
        """Staging's bake, recorded on GitHub as the environment controller records it, and delivered."""
        fake, repo = self.stack.fake, REPOS[self.namespace]
        deployment = fake.create_deployment(
            repo, sha=REVISION, ref=REVISION, environment="kuberik/app/staging", task="deploy:kuberik/app",
            payload={"id": "1", "relationship": None, "version": {"tag": TAG, "revision": REVISION}},
        )  # fmt: skip
        in_progress = fake.create_status(repo, deployment["id"], "in_progress", "Baking in progress")
        code = self.deliver(in_progress)
        self.timeline.mark(f"staging bakes {TAG}: GitHub records in_progress, webhook answered {code}")
        time.sleep(0.5)  # give the rollout controller a moment: prod must still not move
        model.finish_bake("app-staging", "Succeeded")
        success = fake.create_status(repo, deployment["id"], "success", "Bake succeeded")
        sampler.baked.add(TAG)
        self.timeline.mark(f"staging bake of {TAG} succeeded: GitHub records status success")
        arrived = self.timeline.now()
        code = self.deliver(success)
        self.timeline.mark(
            f"signed deployment_status webhook reaches github_webhook (answered {code})", at=arrived
        )

    def deliver(self, status: dict[str, Any]) -> int:
        headers, body = self.stack.fake.deployment_status_event(REPOS[self.namespace], status["id"])
        headers["X-Hub-Signature-256"] = signature(self.stack.secret, body)
        ca = str(self.stack.kube.tls.ca_file)
        response = requests.post(self.stack.webhook.url, data=body, headers=headers, verify=ca, timeout=30)
        return response.status_code

    def play(self, labels: dict[str, str]) -> Sampler:
        """The story; returns the sampler that watched prod."""
        core = client.CoreV1Api(self.stack.kube.api_client())
        core.create_namespace({"metadata": {"name": self.namespace, "labels": labels}})
        model = RolloutModel(self.stack.kube.api_client(), self.namespace, semantics="current", bake="spec")
        self.timeline = Timeline()
        sampler = Sampler(self.stack.custom, self.namespace, self.timeline)
        stop = threading.Event()
        loop = threading.Thread(target=model.run, args=(stop, 0.05, self.model_said), daemon=True)
        sampler.start()
        loop.start()
        try:
            returned = self.create_all_at_once()
            self.timeline.mark(
                f"prod Environment create returned; its gate exists, allowedVersions={self.prod_allowed()}",
                at=returned,
            )
            for env in ("staging", "prod"):
                model.publish(f"app-{env}", OLD_TAG, OLD_REVISION)
                model.publish(f"app-{env}", TAG, REVISION)
            self.timeline.mark(f"a new release is published: {TAG} (after {OLD_TAG})")
            time.sleep(1.0)  # let the rollout controller act on it
            self.bake_staging(model, sampler)
            deadline = time.monotonic() + 15
            while TAG not in sampler.deployed and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.3)
        finally:
            stop.set()
            loop.join()
            sampler.stop()
        if sampler.opened_at is not None:
            self.timeline.mark(f"prod's gate allows [{TAG}]", at=sampler.opened_at)
        print(f"  prod sampled {sampler.samples} times; prod ran: {sorted(sampler.deployed) or 'nothing'}")
        return sampler


def act_without_admission(stack: Stack) -> list[str]:
    """Act 1: the incident. Returns problems with the demo itself (none: the incident reproduced)."""
    print("\nAct 1: without the admission function (gates only, as the rollout controller treats them today)")
    sampler = Act(stack, "incident").play({})
    if not sampler.violations:
        print("  verdict: the incident did not reproduce")
        return ["act 1: prod did not deploy the unbaked release; the demo's rollout controller is off"]
    print(f"  verdict: INCIDENT REPRODUCED: {sampler.violations[0]} (its gate said [] all along)")
    return []


def act_with_admission(stack: Stack, admission: devstack.FunctionServer) -> list[str]:
    """Act 2: the same story with `k8s_admission` registered. Returns the problems found."""
    print("\nAct 2: with k8s_admission registered (infra/k8s/admission.yaml; namespace opted in)")
    api = client.AdmissionregistrationV1Api(stack.kube.api_client())
    config = devstack.admission_configuration(
        admission.url, stack.kube.tls.ca_file, "stagegate-demo", DEMO_LABEL
    )
    api.create_validating_webhook_configuration(config)
    time.sleep(1.5)  # the apiserver picks new webhook configurations up asynchronously
    sampler = Act(stack, "kuberik-demo").play({**DEMO_LABEL, **GUARD_LABEL})
    problems = list(sampler.violations)
    if TAG not in sampler.deployed:
        problems.append(f"prod never deployed {TAG} after staging baked it")
    if problems:
        print("  verdict: FAIL: " + "; ".join(problems))
    else:
        at = sampler.deployed[TAG]
        print(f"  verdict: PASS: prod ran nothing staging had not baked, and deployed {TAG} at +{at:.1f} ms")
    return problems


STACK = (
    "etcd, kube-apiserver (audit webhook in blocking mode), k8s_audit_http, github_webhook and "
    "k8s_admission (functions-framework), a GitHub stand-in (a local fake, not github.com), and a model "
    "of kuberik's rollout controller"
)


def play() -> bool:
    """Start everything, play both acts, stop everything; print the verdict; True when it passed."""
    secret = secrets.token_urlsafe(16)
    print(f"Starting the local stack: {STACK} ...", flush=True)
    with FakeGitHub(repos=list(REPOS.values())) as fake:
        extra = {"GITHUB_TOKEN": fake.token, "GITHUB_API_URL": fake.url, "GITHUB_WEBHOOK_SECRET": secret}
        with devstack.audit_webhook_stack(function_env=extra) as (kube, _audit):
            functions = devstack.ROOT / "functions"
            env = {"KUBECONFIG": str(kube.kubeconfig), **extra}
            webhook = devstack.FunctionServer(
                functions / "github_webhook" / "main.py", "github_webhook", env, kube.tls, kube.procs
            )
            admission = devstack.FunctionServer(
                functions / "k8s_admission" / "main.py", "k8s_admission",
                {"KUBECONFIG": str(kube.kubeconfig)}, kube.tls, kube.procs,
            )  # fmt: skip
            stack = Stack(fake, kube, webhook, secret, client.CustomObjectsApi(kube.api_client()))
            print("Stack is up. Timelines are in milliseconds from each act's first create call.", flush=True)
            problems = act_without_admission(stack) + act_with_admission(stack, admission)
    if problems:
        print("verdict: FAIL: " + "; ".join(problems))
        return False
    print(
        "verdict: PASS: without the admission function prod deployed an unbaked version (the incident); with "
        f"it, prod waited and deployed {TAG} once staging had baked it"
    )
    return True


def main() -> None:
    sys.exit(0 if play() else 1)


if __name__ == "__main__":
    main()
