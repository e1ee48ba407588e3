"""`make demo`: the kuberik-demo incident, then the same story with stagegate's admission function.

What runs, all on loopback and all stopped at the end: etcd and a real kube-apiserver whose audit
webhook (blocking mode) is `k8s_audit_http`; the Pub/Sub emulator; `github_webhook`, `k8s_admission`
and the `reporter` (behind an ordered push subscription), served by functions-framework in their own
processes; a local stand-in for GitHub (the fake the tests use, not github.com) that delivers signed
`deployment_status` webhooks by itself, as a repository webhook does; and, as the rollout controller,
stagegate's model of kuberik's rollout controller as it is today (`stagegate_dev/rollout_model.py`:
it deploys by server-side applying the tag on each annotated Flux OCIRepository, and since commit
7cd0117 it ignores gates on a Rollout's first deploy). The "rollout controller" lines of the timeline
come from that model. Nothing in the chain is played by the demo: the model writes staging's Rollout
status history (deploying, baking, succeeded); `k8s_audit_http` hands each Rollout status change to
the reporter's Pub/Sub topic (`REPORT_TRANSPORT=pubsub`; as deployed, it holds no GitHub credentials
and opens no gate itself); the reporter records the history on GitHub as deployments and statuses, as
kuberik's environment controller would; GitHub (the stand-in) POSTs the signed webhook to
`github_webhook`, which opens prod's gate; the model deploys prod. The timeline prints each hop with
its latency.

The story, played twice: staging and prod Environments (prod `After staging`), their Rollouts and
their Flux OCIRepositories are created at the same moment, a new release is published, staging
deploys and bakes it. A sampler watches which tag prod's OCIRepository runs. Act 1 runs without the
admission function: prod deploys the release before staging baked it (the incident; its gate was `[]`
all along). Act 2 registers `k8s_admission` (`infra/k8s/admission.yaml`): prod's deploy is refused
until the bake succeeds, then prod deploys exactly the baked release, and a GitHub Actions job to
`production` that stagegate's deployment protection rule held is approved by the same delivery. The run
fails (exit 1) if act 2 ever ran an unbaked version, never deployed the baked one or never approved the
job, if a hop of the chain never happened or
a webhook was not answered 2xx, or if act 1 did not show the incident (then the demo itself is wrong).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from shared.gate import gate_name
from shared.report import BAKE_STATES
from stagegate.settings import APP_VARIABLES
from stagegate_dev import devstack
from stagegate_dev.commandline import no_arguments, stop_cleanly_on_signals
from stagegate_dev.fake_github import Delivery, FakeGitHub
from stagegate_dev.protection_app import APP_ID, ENVIRONMENT, protection_app
from stagegate_dev.rollout_model import Decision, RolloutModel

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
PUBSUB_PROJECT = "stagegate-demo"
HOP_TIMEOUT = 30.0


_PRINTING = threading.Lock()


class Stalled(RuntimeError):
    """A hop of the chain did not happen in time."""


@dataclass
class Timeline:
    """Events with times relative to the start of an act, printed as they happen."""

    start: float = field(default_factory=time.perf_counter)

    def now(self) -> float:
        return self.of(time.perf_counter())

    def of(self, moment: float) -> float:
        """A `time.perf_counter()` moment on this timeline (ms)."""
        return (moment - self.start) * 1000

    def mark(self, text: str, at: float | None = None) -> None:
        with _PRINTING:  # several watchers mark at once; one line each
            print(f"  +{self.now() if at is None else at:8.1f} ms  {text}", flush=True)


@dataclass
class Watcher:
    """A loop (`_run`) on its own thread from `start` until `stop`."""

    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        raise NotImplementedError


@dataclass
class Sampler(Watcher):
    """Reads what prod runs (its OCIRepository's tag) and its gate every few milliseconds."""

    custom: client.CustomObjectsApi
    namespace: str
    timeline: Timeline
    baked: set[str] = field(default_factory=set)
    violations: list[str] = field(default_factory=list)
    deployed: dict[str, float] = field(default_factory=dict)
    opened_at: float | None = None
    samples: int = 0

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


@dataclass
class HeldJob(Watcher):
    """A GitHub Actions job deploying to `production`, held by stagegate's protection rule; watches the
    run on the stand-in and prints what stagegate answered it, when."""

    fake: FakeGitHub
    repo: str
    timeline: Timeline
    run_id: int = 0
    approved_at: float | None = None
    verdict: str | None = None

    def start(self) -> None:
        self.run_id = self.fake.start_job(self.repo, ENVIRONMENT, REVISION, workflow="migrate-db")
        self.timeline.mark(
            f"GitHub Actions job migrate-db deploying {REVISION[:7]} to {ENVIRONMENT} starts (run "
            f"{self.run_id}): GitHub holds it on stagegate's deployment protection rule"
        )
        super().start()

    def _run(self) -> None:
        said = 0
        while not self._stop.is_set() and self.verdict is None:
            run = self.fake.workflow_run(self.repo, self.run_id)
            answers = [
                *(("status report", c) for c in run.reports),
                *((r.state, r.comment) for r in run.reviews),
            ]
            for kind, comment in answers[said:]:
                self.timeline.mark(f"stagegate answers the held job ({kind}): {comment}")
            said = len(answers)
            if run.reviews:
                self.verdict = run.reviews[0].state
                self.approved_at = self.timeline.now() if self.verdict == "approved" else None
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


def rollout_object(env: str) -> dict[str, Any]:
    """The environment's Rollout as git has it (the rollout controller fills its status)."""
    spec: dict[str, Any] = {"releasesImagePolicy": {"name": f"app-{env}"}}
    if env == "staging":
        spec["bakeTime"] = "10m"  # staging bakes; the model holds the bake until the story ends it
    return {"apiVersion": "kuberik.com/v1alpha1", "kind": "Rollout", "metadata": {"name": f"app-{env}"},
            "spec": spec}  # fmt: skip


def oci_repository_object(env: str) -> dict[str, Any]:
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
    custom: client.CustomObjectsApi


@dataclass
class Hops:
    """When staging's bake result reached each system (timeline ms)."""

    sent: float
    """The rollout controller sent its Rollout status write. Not when the write returned: the apiserver
    audits a write before answering it, so the reporter can record it on GitHub before that answer."""
    recorded: float
    """The reporter's status was recorded on GitHub."""
    delivered: float
    """github_webhook's answer to the stand-in's delivery arrived (it opens the gate before answering)."""
    answered: int | None

    def line(self, opened: float | None, deployed: float | None) -> str:
        """The chain in time order, each hop with its latency from the one before."""
        hops = [
            (self.sent, "Rollout status write sent"),
            (self.recorded, "reporter recorded it on GitHub"),
            (self.delivered, f"webhook delivery answered {self.answered}"),
        ]
        if opened is not None:
            hops.append((opened, "prod's gate opened (github_webhook, handling the delivery)"))
        late = deployed is not None and deployed < self.sent
        if deployed is not None and not late:
            hops.append((deployed, "prod deployed"))
        hops.sort()
        chain = hops[0][1] + "".join(
            f" -> {what} {at - before:.1f} ms" for (before, _), (at, what) in itertools.pairwise(hops)
        )
        already = f" (prod was already running it since +{deployed:.1f} ms)" if late else ""
        return f"  hops: {chain}; {hops[-1][0] - self.sent:.1f} ms in all{already}"


@dataclass
class Act:
    """One play of the story in its own namespace."""

    stack: Stack
    namespace: str
    timeline: Timeline = field(default_factory=Timeline)
    problems: list[str] = field(default_factory=list)

    def model_said(self, decision: Decision) -> None:
        """Print what the rollout controller (model) did to prod and staging, when it changed."""
        env = decision.rollout.removeprefix("app-")
        if decision.outcome == "deployed":
            self.timeline.mark(f"rollout controller deploys {decision.version} to {env} ({decision.reason})")
        elif decision.outcome == "failed" and decision.status_code != 409:
            # (A 409 is a conflict with the demo's own status writes, retried at once: no story event.)
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
                    *KUBERIK, ns, "rollouts", rollout_object(env)
                )
                for env in ("staging", "prod")
            ),
            *(
                lambda env=env: custom.create_namespaced_custom_object(
                    *OCI, ns, "ocirepositories", oci_repository_object(env)
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

    def delivery(self, env: str, bake: str, since: float) -> Delivery:
        """The stand-in's webhook delivery of the status the reporter recorded for `env`'s `bake`
        state (`BAKE_STATES`), recorded after `since` (perf_counter); `Stalled` if none comes."""
        fake, repo = self.stack.fake, REPOS[self.namespace]
        state, prefix = BAKE_STATES[bake]
        deadline = time.monotonic() + HOP_TIMEOUT
        while time.monotonic() < deadline:
            for delivery in fake.deliveries:
                if delivery.repo != repo or delivery.state != state or delivery.recorded_at < since:
                    continue
                with fake.state.locked():
                    status = fake.state.statuses[delivery.status_id]
                if status.environment == f"kuberik/app/{env}" and status.description.startswith(prefix):
                    return delivery
            time.sleep(0.005)
        raise Stalled(f"no {state} status ({prefix}) of {env} was recorded on GitHub and delivered")

    def hop(self, env: str, bake: str, sent: float | None, since: float, what: str) -> Hops:
        """Wait for the status the reporter records for `env`'s `bake` and its delivery; print both."""
        delivery = self.delivery(env, bake, since)
        recorded, delivered = self.timeline.of(delivery.recorded_at), self.timeline.of(delivery.delivered_at)
        state, prefix = BAKE_STATES[bake]
        after = "" if sent is None else f", {recorded - sent:.1f} ms after the Rollout status write was sent"
        self.timeline.mark(
            f"reporter records {what} on GitHub: status {state} ({prefix}) on {env}'s deployment of "
            f"{REVISION[:7]}{after}",
            at=recorded,
        )
        answer = delivery.status_code if delivery.ok else delivery.error
        self.timeline.mark(
            f"GitHub stand-in delivers the signed deployment_status webhook to github_webhook: answered "
            f"{answer}, {delivered - recorded:.1f} ms after recording it",
            at=delivered,
        )
        return Hops(recorded if sent is None else sent, recorded, delivered, delivery.status_code)

    def bake_staging(self, model: RolloutModel, sampler: Sampler) -> Hops:
        """Staging's bake, written by the rollout controller (model) into the Rollout's status history;
        the reporter, GitHub and github_webhook carry each change on by themselves."""
        since = time.perf_counter()
        sent = self.timeline.of(since)
        model.start_bake("app-staging")
        self.timeline.mark(
            f"staging bakes {TAG}: rollout controller writes Rollout status history[0].bakeStatus=InProgress",
            at=sent,
        )
        self.hop("staging", "InProgress", sent, since, "the bake")
        time.sleep(0.5)  # give the rollout controller a moment: prod must still not move
        since = time.perf_counter()
        sent = self.timeline.of(since)
        model.finish_bake("app-staging", "Succeeded")
        sampler.baked.add(TAG)
        self.timeline.mark(
            f"staging bake of {TAG} succeeded: rollout controller writes history[0].bakeStatus=Succeeded",
            at=sent,
        )
        return self.hop("staging", "Succeeded", sent, since, "the bake's success")

    def play(self, labels: dict[str, str], job: HeldJob | None = None) -> Sampler:
        """The story; returns the sampler that watched prod (and with `job`, an Actions job to
        production held until staging's bake)."""
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
            if job is not None:
                job.timeline = self.timeline
                job.start()
            # The model writes staging's history entry (bakeStatus Deploying) in the pass that deploys it.
            self.hop("staging", "Deploying", None, self.timeline.start, f"staging's deploy of {TAG}")
            time.sleep(1.0)  # let the rollout controller act on prod
            hops = self.bake_staging(model, sampler)
            deadline = time.monotonic() + 15
            while (TAG not in sampler.deployed or sampler.opened_at is None) and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.3)
        except Stalled as exc:
            hops = None
            self.timeline.mark(f"STALLED: {exc}")
            self.problems.append(f"{self.namespace}: {exc}")
        finally:
            if job is not None:  # the approval comes with the delivery that opens prod's gate
                deadline = time.monotonic() + HOP_TIMEOUT
                while job.verdict is None and sampler.opened_at is not None and time.monotonic() < deadline:
                    time.sleep(0.02)
                job.stop()
            stop.set()
            loop.join()
            sampler.stop()
        if sampler.opened_at is not None:
            after = (
                ""
                if hops is None
                else f", {sampler.opened_at - hops.recorded:.1f} ms after GitHub recorded it"
            )
            self.timeline.mark(f"prod's gate allows [{TAG}]{after}", at=sampler.opened_at)
        if hops is not None:
            print(hops.line(sampler.opened_at, sampler.deployed.get(TAG)))
        print(f"  prod sampled {sampler.samples} times; prod ran: {sorted(sampler.deployed) or 'nothing'}")
        return sampler


def act_without_admission(stack: Stack) -> list[str]:
    """Act 1: the incident. Returns problems with the demo itself (none: the incident reproduced)."""
    print("\nAct 1: without the admission function (gates only, as the rollout controller treats them today)")
    act = Act(stack, "incident")
    sampler = act.play({})
    if not sampler.violations:
        print("  verdict: the incident did not reproduce")
        return [
            *act.problems,
            "act 1: prod did not deploy the unbaked release; the demo's rollout controller is off",
        ]
    print(f"  verdict: INCIDENT REPRODUCED: {sampler.violations[0]} (its gate said [] all along)")
    return act.problems


def act_with_admission(stack: Stack, admission: devstack.FunctionServer) -> list[str]:
    """Act 2: the same story with `k8s_admission` registered. Returns the problems found."""
    print("\nAct 2: with k8s_admission registered (infra/k8s/admission.yaml; namespace opted in)")
    api = client.AdmissionregistrationV1Api(stack.kube.api_client())
    config = devstack.admission_configuration(
        admission.url, stack.kube.tls.ca_file, "stagegate-demo", DEMO_LABEL
    )
    api.create_validating_webhook_configuration(config)
    time.sleep(1.5)  # the apiserver picks new webhook configurations up asynchronously
    act = Act(stack, "kuberik-demo")
    job = HeldJob(stack.fake, REPOS["kuberik-demo"], act.timeline)
    sampler = act.play({**DEMO_LABEL, **GUARD_LABEL}, job)
    problems = [*act.problems, *sampler.violations]
    if TAG not in sampler.deployed:
        problems.append(f"prod never deployed {TAG} after staging baked it")
    if job.verdict != "approved" or job.approved_at is None:
        problems.append(f"the held Actions job was not approved after staging baked {TAG} ({job.verdict})")
    elif sampler.opened_at is not None:
        print(
            f"  the Actions job was approved {job.approved_at - sampler.opened_at:+.1f} ms from prod's gate "
            "opening: the same bake, the same delivery"
        )
    if problems:
        print("  verdict: FAIL: " + "; ".join(problems))
    else:
        at = sampler.deployed[TAG]
        print(f"  verdict: PASS: prod ran nothing staging had not baked, and deployed {TAG} at +{at:.1f} ms")
    return problems


def undelivered(fake: FakeGitHub) -> list[str]:
    """Webhook deliveries the receiver did not answer 2xx (GitHub would show them as failed)."""
    return [
        f"the {d.state} webhook of deployment {d.deployment_id} in {d.repo} failed: {d.error}"
        for d in fake.deliveries
        if not d.ok
    ]


STACK = (
    "etcd, kube-apiserver (audit webhook in blocking mode), k8s_audit_http, the Pub/Sub emulator, "
    "github_webhook, github_protection_rule, k8s_admission and the reporter (functions-framework), a "
    "GitHub stand-in (a local fake, not github.com) delivering its own webhooks and holding an Actions "
    "job on stagegate's protection rule, and a model of kuberik's rollout controller"
)


@contextlib.contextmanager
def pubsub_emulator() -> Iterator[devstack.PubSubEmulator]:
    """The Pub/Sub emulator, up before the apiserver's audit webhook needs it, stopped last."""
    procs = devstack.Processes(Path(tempfile.mkdtemp(prefix="stagegate-demo-pubsub-")))
    try:
        emulator = devstack.PubSubEmulator(procs)
        # The demo's own Pub/Sub clients (topic, subscription) and every function it starts use it.
        os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host
        yield emulator
    finally:
        procs.stop_all()
        shutil.rmtree(procs.log_dir, ignore_errors=True)


def report_topic() -> str:
    """A fresh topic for the reporter's Rollout changes."""
    from google.cloud import pubsub_v1

    topic = f"projects/{PUBSUB_PROJECT}/topics/reports-{uuid.uuid4().hex[:8]}"
    pubsub_v1.PublisherClient().create_topic(name=topic)
    return topic


def subscribe(topic: str, reporter: devstack.FunctionServer) -> None:
    """The reporter's push subscription, ordered (the ordering key is the Rollout)."""
    from google.cloud import pubsub_v1

    pubsub_v1.SubscriberClient().create_subscription(
        request={
            "name": topic.replace("/topics/", "/subscriptions/"),
            "topic": topic,
            "push_config": {"push_endpoint": reporter.url},
            "enable_message_ordering": True,
            "ack_deadline_seconds": 30,
        }
    )


def play() -> bool:
    """Start everything, play both acts, stop everything; print the verdict; True when it passed."""
    secret = secrets.token_urlsafe(16)
    print(f"Starting the local stack: {STACK} ...", flush=True)
    began = time.monotonic()

    def progress(what: str) -> None:
        print(f"  {what} (+{time.monotonic() - began:.1f} s)", flush=True)

    with pubsub_emulator() as emulator, FakeGitHub(repos=list(REPOS.values()), wall_clock=True) as fake:
        progress("Pub/Sub emulator and GitHub stand-in up")
        for repo in REPOS.values():  # the release's commit, so GitHub accepts deployments of it
            fake.set_ref(repo, "refs/heads/main", REVISION)
        github = {"GITHUB_TOKEN": fake.token, "GITHUB_API_URL": fake.url}
        topic = report_topic()
        reports = {"REPORT_TRANSPORT": "pubsub", "REPORT_PUBSUB_TOPIC": topic,
                   "PUBSUB_EMULATOR_HOST": emulator.host}  # fmt: skip
        # As deployed (infra/gcp/main.tf), k8s_audit_http has no GitHub credentials: in the apiserver's
        # request path it only makes gates and hands Rollout changes on, so github_webhook alone opens
        # prod's gate, on the stand-in's delivery.
        # Whatever GitHub credentials the caller's shell holds are blanked for it (an empty value counts as
        # unset), so it never asks a GitHub while the apiserver waits.
        no_github = dict.fromkeys((*APP_VARIABLES, "GITHUB_APP_PRIVATE_KEY_FILE", "GITHUB_TOKEN"), "")
        with devstack.audit_webhook_stack(function_env={**reports, **no_github}) as (kube, _audit):
            progress("etcd, kube-apiserver and its audit webhook k8s_audit_http up")
            functions = devstack.ROOT / "functions"
            kubeconfig = {"KUBECONFIG": str(kube.kubeconfig)}
            # Plain http on loopback: the stand-in posts webhooks with the system's CAs, which do
            # not include the stack's own.
            # github_webhook answers the held Actions job too, as the GitHub App whose protection rule
            # holds it (act 2's repository, production; GitHub lets only that App answer).
            rules = [(REPOS["kuberik-demo"], "kuberik/app/staging")]
            app = protection_app(fake, rules, installed=REPOS.values())
            as_app = {**github, "GITHUB_WEBHOOK_SECRET": secret, **app}
            webhook = devstack.FunctionServer(
                functions / "github_webhook" / "main.py", "github_webhook", {**kubeconfig, **as_app}, None,
                kube.procs,
            )  # fmt: skip
            rule = devstack.FunctionServer(
                functions / "github_protection_rule" / "main.py", "github_protection_rule", as_app, None,
                kube.procs,
            )  # fmt: skip
            reporter = devstack.FunctionServer(
                functions / "reporter" / "main.py", "reporter", {**kubeconfig, **github, **reports}, None,
                kube.procs,
            )  # fmt: skip
            subscribe(topic, reporter)
            admission = devstack.FunctionServer(
                functions / "k8s_admission" / "main.py", "k8s_admission", kubeconfig, kube.tls, kube.procs
            )
            fake.deliver_webhooks(webhook.url, secret)
            fake.app_webhook(APP_ID, rule.url, secret)
            progress("github_webhook, github_protection_rule, the reporter and k8s_admission served")
            stack = Stack(fake, kube, client.CustomObjectsApi(kube.api_client()))
            print("Stack is up. Timelines are in milliseconds from each act's first create call.", flush=True)
            problems = act_without_admission(stack) + act_with_admission(stack, admission)
            problems += undelivered(fake)
            if problems:  # what the stack said, so a failed run can be explained
                for name in ("kube-apiserver", _audit.name, reporter.name, webhook.name, rule.name):
                    print(f"--- last lines of {name}'s log ---\n{kube.procs.tail(name, 25)}")
    if problems:
        print("verdict: FAIL: " + "; ".join(problems))
        return False
    print(
        "verdict: PASS: without the admission function prod deployed an unbaked version (the incident); with "
        f"it, prod waited and deployed {TAG} once staging had baked it"
    )
    return True


def main() -> None:
    no_arguments(
        "make demo",
        f"Replay the incident on a local stack ({STACK}), without and with the admission function; print "
        "each act's timeline and a verdict. Exits 0 when act 2 deployed only what staging had baked (and "
        "act 1 showed the incident), 1 otherwise. Every process it starts is stopped.",
    )
    stop_cleanly_on_signals()
    try:
        passed = play()
    except KeyboardInterrupt:
        print("interrupted: everything the demo started is stopped", file=sys.stderr)
        sys.exit(130)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
