"""A stateful property test of the whole decision: every service, random interleavings, three invariants.

The real core and shell run against an in-memory Kubernetes (`tests.model.store`) and, over HTTP,
the real GitHub reader against the fake GitHub listing every connection shuffled (so nothing may
depend on GitHub's order). Hypothesis drives random interleavings of:

- Environments created, changed (relationship type and upstream, Rollout, relationship removed and
  added), deleted and created again (new uid); each change's audit event is delivered at once when
  the audit webhook blocks (always when the change gives the Environment a relationship: DESIGN.md
  invariant 2 relies on the blocking webhook) and is also queued for the durable path;
- Rollout release candidates changing (tags with full commit ids, a tag listed twice, no revision,
  a branch name), each with a Rollout status audit event;
- deployments and statuses on GitHub (success, failure, error, in progress, pending, `Bake
  cancelled`, GitHub's own description-less `inactive`, two statuses within one second), each
  non-inactive status queuing a signed `deployment_status` webhook;
- deliveries in order, out of order, twice, never, and old audit events replayed late; failed
  audit deliveries are queued again (Pub/Sub redelivers), failed webhooks are not (GitHub does not);
- a lagging GitHub replica: a snapshot taken at one step answers later reads;
- two deliveries overlapping: a second action runs after the first one's GitHub read and before its
  gate writes (another delivery, an Environment edit, a Rollout change, a new status, a resync);
- the scheduled resync, and the garbage collector deleting gates of deleted Environments later.

Assumption about GitHub (documented in `shared.evidence`): a replica lags at most
`VETO_TTL_SECONDS`. A snapshot therefore answers a read only while it is younger than that on the
fake's clock; an older one stands for a replica that has caught up, and the read is served live.

Invariants, after every step:
1. no gate owned by an existing Environment with a relationship has `allowedVersions: null`;
2. safety: every write that set a gate's allowed set from bake results allowed only tags the model
   justifies for the Rollout the gate restricts, from the candidates that computation read and from
   what the reader had answered for that Environment's upstream (repository, GitHub environment);
   every other write only narrowed. Events are lost, so a gate may lag behind GitHub and the Rollout
   until the next trigger: what is checked is what each write put there, at the moment it wrote.
   "What the reader had answered" is the union of every answer for that upstream (as specified)
   when MODEL_FIND_KNOWN_BUGS=per-gate-vetoes; by default, while that known bug stands, it is what
   this write's computation was answered plus what earlier computations that wrote this gate were
   answered about its candidates while it followed the same upstream (the scope of its evidence);
3. after a resync with GitHub quiet and no replica lag, every gate is exactly what the model
   justifies from the fake's live state (an Environment without relationship: `allowedVersions`
   absent).
Services may only fail with stagegate's own error types; anything else fails the test.

stagegate's clock is the fake GitHub's (`clock=`), so "now" and GitHub's timestamps agree and a run
is reproducible from its Hypothesis seed.

Bugs the model found are reproduced at the end of this module as regression tests (all fixed). One
known limit remains (`AVOID_BUG_VETOES_ARE_PER_GATE`, see there); MODEL_FIND_KNOWN_BUGS=all (or
`per-gate-vetoes`) makes the machine check against it anyway.
Environment: MODEL_EXAMPLES (default 170, about 12,000-14,000 steps), MODEL_NO_SHRINK=1 (report the first
failure as found, for trying out a deliberately broken core).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import graphql
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from shared.audit import parse_audit_document
from shared.bake import CommitLookup, DeploymentRecord, StatusRecord
from shared.errors import RetryableError, StagegateError
from shared.evidence import EVIDENCE_ANNOTATION, VETO_TTL_SECONDS
from shared.github_delivery import signature, verify_delivery
from shared.views import Environment, RolloutGate
from stagegate.audit_service import AuditContext, handle_audit_events
from stagegate.github import GitHubDeployments, github_client
from stagegate.resync_service import resync
from stagegate.webhook_service import on_delivery
from stagegate_dev.fake_github import FakeGitHub, Snapshot, graphql_api
from stagegate_dev.fake_github.state import Clock, GitHubState
from tests.kube_objects import delivery, environment, rollout_status_delivery
from tests.model import oracle
from tests.model.store import GateWrite, InMemoryKube, Key

NS = "default"
SECRET = "model-webhook-secret"
ENV_NAMES = ("prod", "qa")
ROLLOUTS = ("app-a", "app-b")
UPSTREAMS = ("staging", "canary")
KINDS = ("After", "Parallel")
TAGS = ("v1", "v2", "v3")
SHAS = tuple(hashlib.sha256(f"commit {n}".encode()).hexdigest()[:40] for n in range(4))
UNLISTED_SHA = hashlib.sha256(b"never a candidate").hexdigest()[:40]
NOISE_ENVIRONMENT = "kuberik/myapp/other"
ATTEMPTS = 5

STATUSES = (  # what the environment controller writes (success most often), and GitHub's own inactive
    ("success", "Bake succeeded"),
    ("success", "Bake succeeded"),
    ("success", "Bake succeeded"),
    ("success", "Bake succeeded: healthy for 10m"),
    ("success", "Bake succeeded: healthy for 10m"),
    ("failure", "Bake failed: error rate above 2%"),
    ("error", ""),
    ("in_progress", "Baking in progress"),
    ("in_progress", "Deploying"),
    ("pending", "Deploying"),
    ("queued", ""),
    ("inactive", "Bake cancelled: superseded by a newer version"),
    ("inactive", ""),
    ("success", "Deployment successful"),  # a deploy tool's, not a bake: says nothing
    ("failure", "Bake succeeded"),  # contradicts itself
)


def avoid(bug: str) -> bool:
    """Whether the model steers around a known bug: yes, unless MODEL_FIND_KNOWN_BUGS names it (or `all`)."""
    return not {bug, "all"} & set(os.environ.get("MODEL_FIND_KNOWN_BUGS", "").split(","))


# KNOWN LIMIT: the guard against lagging replicas lives on each gate (the functions keep no state of
# their own). A recompute records the vetoes of its whole answer on every gate of the upstream it
# writes (`test_a_lagging_answer_does_not_reopen_what_another_gate_of_the_upstream_saw_fail`), but a
# gate that took part in no recompute that saw a failure cannot know of it. So each gate's writes are
# checked against what that gate (and the write's own computation) saw; MODEL_FIND_KNOWN_BUGS=
# per-gate-vetoes checks against the union of every answer per repository and GitHub environment.
AVOID_BUG_VETOES_ARE_PER_GATE = avoid("per-gate-vetoes")
MIN_STEPS = 10_000
SETTINGS = settings(
    max_examples=int(os.environ.get("MODEL_EXAMPLES", "170")),
    stateful_step_count=100,
    deadline=None,
    database=None,
    # MODEL_NO_SHRINK=1 reports the first failing run as found (quicker when trying out a broken core).
    phases=[Phase.explicit, Phase.generate] if os.environ.get("MODEL_NO_SHRINK") == "1" else list(Phase),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


@dataclass
class World:
    """The fake GitHub (started once for the module) and the real reader pointed at it."""

    fake: FakeGitHub
    reader: GitHubDeployments
    examples: int = 0


@dataclass
class ModelRun:
    """What the module shares between the fixture, the machine's examples and the closing test."""

    world: World | None = None
    steps: int = 0
    stats: Counter[str] = field(default_factory=Counter)


RUN = ModelRun()
STATS = RUN.stats


def github_environment(upstream: str) -> str:
    return f"kuberik/myapp/{upstream}"


# The fake GitHub and its reader, started once for the module ---------------------------------------


class MemoGraphQL:
    """`graphql` with `parse` and `validate` remembered per query text, installed in the fake only.

    The reader sends a handful of distinct query texts (they differ in the number of aliases);
    parsing and validating each against GitHub's schema once instead of on every request makes a
    read several times cheaper. Each text is still validated, and every request is still executed.
    """

    def __init__(self, real: Any) -> None:
        self._real = real
        self._parsed: dict[str, Any] = {}
        self._problems: dict[tuple[int, int], Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def parse(self, source: str, *args: Any, **kwargs: Any) -> Any:
        if source not in self._parsed:
            self._parsed[source] = self._real.parse(source, *args, **kwargs)
        return self._parsed[source]

    def validate(self, schema: Any, document: Any, *args: Any, **kwargs: Any) -> Any:
        key = (id(schema), id(document))
        if key not in self._problems:
            self._problems[key] = self._real.validate(schema, document, *args, **kwargs)
        return self._problems[key]


CONTRACT_SAMPLES = 50


def sampled(check: Callable[..., list[str]], key_args: int) -> Callable[..., list[str]]:
    """A contract check of the fake's answers that checks each kind of answer its first few times.

    The fake checks every REST answer and webhook payload it builds against GitHub's published
    schemas; the shapes do not depend on what the model does, and thousands of checks would cost
    more than the model itself. Its own tests check them all. A kind is the first `key_args`
    arguments (REST: method, path template, status; webhooks: event, action).
    """
    seen: Counter[tuple[Any, ...]] = Counter()

    def checked(*args: Any) -> list[str]:
        seen[args[:key_args]] += 1
        return check(*args) if seen[args[:key_args]] <= CONTRACT_SAMPLES else []

    return checked


@pytest.fixture(scope="module")
def world(octokit: Path) -> Iterator[World]:
    logs = logging.getLogger("stagegate")
    level = logs.level
    # Thousands of recomputes: their JSON log lines would cost more than the model itself.
    logs.setLevel(logging.CRITICAL)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(graphql_api, "graphql", MemoGraphQL(graphql))
            with FakeGitHub(assets=octokit, listing="shuffled") as fake:
                contracts = fake.contracts
                patch.setattr(contracts, "rest_response_errors", sampled(contracts.rest_response_errors, 3))
                patch.setattr(contracts, "webhook_errors", sampled(contracts.webhook_errors, 2))
                RUN.world = World(fake, GitHubDeployments(github_client(fake.token, fake.url, 10)))
                try:
                    yield RUN.world
                finally:
                    RUN.world = None
                assert fake.schema_errors == []
    finally:
        logs.setLevel(level)


@contextmanager
def same_second(clock: Clock) -> Iterator[None]:
    """GitHub writes inside get the time of the latest event (a tie within GitHub's one second)."""
    clock.tick = clock.now  # type: ignore[method-assign]
    try:
        yield
    finally:
        del clock.tick


# Events ---------------------------------------------------------------------------------------------


def rollout_status_event(namespace: str, name: str) -> dict[str, Any]:
    """The audit EventList for a Rollout status patch (Metadata level: no object in it)."""
    return rollout_status_delivery(namespace, name, audit_id=f"rollout-{time.monotonic_ns()}")


class AuditItem:
    """An audit EventList on its way (the blocking webhook, or the durable Pub/Sub path)."""

    def __init__(self, document: Mapping[str, Any], label: str) -> None:
        self.document = document
        self.label = label

    def __repr__(self) -> str:
        return f"AuditItem({self.label!r})"


@dataclass(frozen=True)
class WebhookItem:
    """A `deployment_status` webhook GitHub is sending."""

    status_id: int
    label: str


Item = AuditItem | WebhookItem


@dataclass
class Frame:
    """One service call: the Rollouts it read and what GitHub answered it (what its writes used)."""

    rollouts: dict[Key, Mapping[str, Any] | None] = field(default_factory=dict)
    answers: list[tuple[str, str, Mapping[str, Any]]] = field(default_factory=list)


def candidates_of(rollout: Mapping[str, Any] | None) -> list[tuple[str, str | None]]:
    if rollout is None:
        return []
    raw = (rollout.get("status") or {}).get("releaseCandidates") or []
    return [(c["tag"], c.get("revision") or None) for c in raw]


def owned_by(raw: Mapping[str, Any], uid: str) -> bool:
    return any(r.get("uid") == uid for r in raw["metadata"].get("ownerReferences") or [])


class RecordingReader:
    """The real reader, remembering every answer; a lagging replica answers while the model says so.

    When the model armed an interleaving, it runs right after the first read: the service holds
    its answer and the gates' versions it read, and has written nothing yet.
    """

    def __init__(self, inner: GitHubDeployments, machine: GateModel) -> None:
        self.inner = inner
        self.machine = machine

    def commit_deployments(self, repository: str, environment: str, revisions: Any) -> Any:
        machine = self.machine
        snapshot = machine.read_snapshot
        if snapshot is not None and machine.age(snapshot) >= VETO_TTL_SECONDS:
            snapshot = None  # the replica has caught up: a replica lags less than the bound
        if snapshot is None:
            answer = self.inner.commit_deployments(repository, environment, revisions)
        else:
            STATS["stale reads"] += 1
            with machine.fake.stale(snapshot):
                answer = self.inner.commit_deployments(repository, environment, revisions)
        STATS["reads"] += 1
        machine.knowledge.add(repository, environment, answer)
        if machine.frames:
            machine.frames[-1].answers.append((repository, environment, answer))
        hook, machine.hook = machine.hook, None
        if hook is not None:
            STATS["interleaved"] += 1
            hook()
        return answer


# The machine ------------------------------------------------------------------------------------------

candidate = st.tuples(st.sampled_from(TAGS), st.sampled_from((*SHAS, *SHAS, *SHAS, None, "main")))
relationship = st.sampled_from(
    (("After", "staging"), None, ("Parallel", "staging"), ("After", "canary"), ("Parallel", "canary"))
)
candidates = st.lists(candidate, min_size=1, max_size=4)
rarely = st.sampled_from((False, False, False, True))
entries = st.sampled_from((1, 2, 2, 3, 3, 4, None))
"""History entry ids: mostly distinct, sometimes shared (a duplicate) or missing (not kuberik's)."""


class GateModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        world = RUN.world
        assert world is not None, "the `world` fixture starts the fake GitHub"
        world.examples += 1
        self.fake = world.fake
        # A fresh GitHub per example (same clock, so time only moves on) keeps snapshots small.
        self.fake.state = GitHubState(clock=self.fake.state.clock)
        self.fake.listing_seed = world.examples
        self.repo = f"model/app-{world.examples}"
        self.fake.add_repo(self.repo)
        self.kube = InMemoryKube(on_gate_write=self._check_write, on_rollout_read=self._rollout_read)
        self.reader = RecordingReader(world.reader, self)
        self.knowledge = oracle.Knowledge()
        self.queue: list[Item] = []
        self.delivered_audit: list[AuditItem] = []
        self.snapshots: list[Snapshot] = []
        self.deployments: list[int] = []
        self.webhooks: dict[int, tuple[dict[str, str], bytes]] = {}
        self.read_snapshot: Snapshot | None = None
        self.hook: Callable[[], None] | None = None
        self.frames: list[Frame] = []
        self.violations: list[str] = []
        self.gate_knowledge: dict[Key, tuple[tuple[str, str, str], oracle.Knowledge]] = {}
        self.since_quiet = 0

    @initialize(
        history=st.lists(
            st.tuples(
                st.sampled_from(UPSTREAMS),
                st.sampled_from(SHAS),
                st.lists(st.sampled_from(STATUSES), min_size=1, max_size=3),
                st.sampled_from(TAGS),
                entries,
            ),
            max_size=6,
        ),
        prod=relationship,
        qa=relationship,
        a=candidates,
        b=candidates,
        qa_rollout=st.sampled_from(ROLLOUTS),
    )
    def start_with_a_history_two_environments_and_their_rollouts(
        self,
        history: list[tuple[str, str, list[tuple[str, str]], str, int | None]],
        prod: tuple[str, str] | None,
        qa: tuple[str, str] | None,
        a: list[tuple[str, str | None]],
        b: list[tuple[str, str | None]],
        qa_rollout: str,
    ) -> None:
        """Bakes recorded before stagegate ran (no webhooks), then two Environments and their Rollouts."""
        for upstream, sha, statuses, tag, entry in history:
            payload = {
                **({} if entry is None else {"id": str(entry)}),
                "version": {"tag": tag, "revision": sha},
            }
            created = self.fake.create_deployment(
                self.repo, sha=sha, ref=sha, environment=github_environment(upstream),
                task="deploy:kuberik/myapp", payload=payload,
            )  # fmt: skip
            self.deployments.append(int(created["id"]))
            for state, description in statuses:
                self.fake.create_status(self.repo, created["id"], state, description)
        self._set_candidates("app-a", a, False)
        self._set_candidates("app-b", b, False)
        self._put_environment("prod", prod, "app-a", "create", True)
        self._put_environment("qa", qa, qa_rollout, "create", True)

    def step(self, name: str) -> None:
        """Count a step actually run (the closing test checks the total)."""
        RUN.steps += 1
        STATS[name] += 1
        self.since_quiet += 1

    # time and GitHub ---------------------------------------------------------------------------

    def age(self, snapshot: Snapshot) -> float:
        return (self.fake.state.clock.now() - snapshot.taken_at).total_seconds()

    def _young_snapshot(self, data: st.DataObject, stale: bool) -> Snapshot | None:
        young = [s for s in self.snapshots if self.age(s) < VETO_TTL_SECONDS]
        if not stale or not young:
            return None
        return data.draw(st.sampled_from(young), label="snapshot")

    def _webhook(self, status_id: int) -> tuple[dict[str, str], bytes]:
        if status_id not in self.webhooks:
            headers, body = self.fake.deployment_status_event(self.repo, status_id)
            self.webhooks[status_id] = ({**headers, "X-Hub-Signature-256": signature(SECRET, body)}, body)
        return self.webhooks[status_id]

    # running the services ----------------------------------------------------------------------

    def _run(self, call: Callable[[], object], snapshot: Snapshot | None) -> StagegateError | None:
        """Run one service call; stagegate's own errors are answers, anything else fails the test."""
        saved, self.read_snapshot = self.read_snapshot, snapshot
        self.frames.append(Frame())
        try:
            call()
        except StagegateError as exc:
            STATS[f"service answered {type(exc).__name__}: {str(exc)[:60]}"] += 1
            return exc
        finally:
            self.frames.pop()
            self.read_snapshot = saved
        return None

    def _deliver(self, item: Item, snapshot: Snapshot | None, *, redeliver: bool) -> None:
        if isinstance(item, AuditItem):
            self.delivered_audit = [*self.delivered_audit[-30:], item]
            events = parse_audit_document(copy.deepcopy(item.document))
            ctx = AuditContext(self.kube, self.reader, ATTEMPTS)
            error = self._run(lambda: handle_audit_events(events, ctx), snapshot)
            if redeliver and isinstance(error, RetryableError):
                self.queue.append(item)  # Pub/Sub delivers it again
            return
        headers, body = self._webhook(item.status_id)
        verified = verify_delivery(headers, body, [SECRET])
        self._run(lambda: on_delivery(verified, self.kube, self.reader, [NS]), snapshot)

    def _resync(self, snapshot: Snapshot | None) -> StagegateError | None:
        return self._run(lambda: resync(self.kube, self.reader, [NS], ATTEMPTS), snapshot)

    # changes -----------------------------------------------------------------------------------

    def _put_environment(
        self, name: str, rel: tuple[str, str] | None, rollout: str, verb: str, blocking: bool
    ) -> None:
        old = self.kube.environments.get((NS, name))
        kind, upstream = rel if rel is not None else ("After", None)
        body = environment(NS, name, upstream=upstream, kind=kind, rollout=rollout)
        body["spec"]["backend"]["project"] = self.repo
        stored = self.kube.put_environment(body)
        verb = "create" if old is None else verb
        item = AuditItem(delivery(stored, verb), f"{verb} {name} {rel} {rollout}")
        self.queue.append(item)
        gains = rel is not None and (old is None or "relationship" not in old["spec"])
        if blocking or gains:
            # The blocking audit webhook: the gate is fixed before the API answers the change.
            self._deliver(item, None, redeliver=False)

    def _set_candidates(self, rollout: str, candidates: list[tuple[str, str | None]], blocking: bool) -> None:
        entries = [{"tag": tag, **({"revision": rev} if rev else {})} for tag, rev in candidates]
        self.kube.put_rollout_status(NS, rollout, entries)
        item = AuditItem(rollout_status_event(NS, rollout), f"rollout {rollout} {candidates}")
        self.queue.append(item)
        if blocking:
            self._deliver(item, None, redeliver=False)

    def _status(self, deployment: int, state: str, description: str, tie: bool, prompt: bool = False) -> None:
        clock = self.fake.state.clock
        with same_second(clock) if tie else _nothing():
            created = self.fake.create_status(self.repo, deployment, state, description)
        if state == "inactive":  # GitHub sends no webhook for inactive statuses
            return
        item = WebhookItem(created["id"], f"{state} on {deployment}")
        if prompt:
            self._deliver(item, None, redeliver=False)
        else:
            self.queue.append(item)

    # rules ---------------------------------------------------------------------------------------

    @rule(
        name=st.sampled_from(ENV_NAMES),
        rel=relationship,
        rollout=st.sampled_from(ROLLOUTS),
        verb=st.sampled_from(("update", "patch")),
        blocking=st.booleans(),
    )
    def put_environment(
        self, name: str, rel: tuple[str, str] | None, rollout: str, verb: str, blocking: bool
    ) -> None:
        self.step("put environment")
        self._put_environment(name, rel, rollout, verb, blocking)

    @precondition(lambda self: self.kube.environments)
    @rule(data=st.data())
    def delete_environment(self, data: st.DataObject) -> None:
        self.step("delete environment")
        name = data.draw(st.sampled_from(sorted(n for _, n in self.kube.environments)), label="name")
        gone = self.kube.delete_environment(NS, name)
        self.queue.append(AuditItem(delivery(gone, "delete"), f"delete {name}"))

    @rule(
        rollout=st.sampled_from(ROLLOUTS),
        candidates=candidates,
        blocking=st.booleans(),
    )
    def set_candidates(self, rollout: str, candidates: list[tuple[str, str | None]], blocking: bool) -> None:
        self.step("set candidates")
        self._set_candidates(rollout, candidates, blocking)

    @rule(
        upstream=st.sampled_from((*UPSTREAMS, "staging", "other")),
        sha=st.sampled_from((*SHAS, UNLISTED_SHA)),
        claim=st.sampled_from(("full", "full", "short", "none", "other")),
        tag=st.sampled_from((*TAGS, "rebuild")),
        entry=entries,
        tie=rarely,
        statuses=st.lists(st.sampled_from(STATUSES), max_size=3),
        prompt=st.booleans(),
    )
    def create_deployment(
        self,
        upstream: str,
        sha: str,
        claim: str,
        tag: str,
        entry: int | None,
        tie: bool,
        statuses: list[tuple[str, str]],
        prompt: bool,
    ) -> None:
        """A record of a build (tag) of a commit, for a history entry (usually the next one; sometimes a
        duplicate or a late record of an older one, or none), and its first statuses (their webhooks
        delivered at once, or queued)."""
        self.step("create deployment")
        claimed = {"full": sha, "short": sha[:7], "none": None, "other": UNLISTED_SHA}[claim]
        version: dict[str, Any] = {"tag": tag}
        if claimed is not None:
            version["revision"] = claimed
        where = NOISE_ENVIRONMENT if upstream == "other" else github_environment(upstream)
        with same_second(self.fake.state.clock) if tie else _nothing():
            created = self.fake.create_deployment(
                self.repo, sha=sha, ref=sha, environment=where, task="deploy:kuberik/myapp",
                payload={**({} if entry is None else {"id": str(entry)}), "version": version},
            )  # fmt: skip
        self.deployments.append(int(created["id"]))
        for state, description in statuses:
            self._status(int(created["id"]), state, description, False, prompt)

    @precondition(lambda self: self.deployments)
    @rule(data=st.data(), status=st.sampled_from(STATUSES), tie=rarely, prompt=st.booleans())
    def create_status(self, data: st.DataObject, status: tuple[str, str], tie: bool, prompt: bool) -> None:
        """A status; its webhook is queued, or (`prompt`) delivered at once as it usually is."""
        self.step("create status")
        deployment = data.draw(st.sampled_from(self.deployments), label="deployment")
        self._status(deployment, *status, tie, prompt)

    @precondition(lambda self: self.deployments)
    @rule(data=st.data(), first=st.sampled_from(STATUSES), second=st.sampled_from(STATUSES))
    def create_statuses_in_one_second(
        self, data: st.DataObject, first: tuple[str, str], second: tuple[str, str]
    ) -> None:
        self.step("create tied statuses")
        deployment = data.draw(st.sampled_from(self.deployments), label="deployment")
        self.fake.advance(1)  # a new second, shared by both (and by any inactive marks GitHub adds)
        self._status(deployment, *first, True)
        self._status(deployment, *second, True)

    @precondition(lambda self: self.deployments)
    @rule(
        data=st.data(),
        status=st.sampled_from(STATUSES),
        then=st.sampled_from(("webhook", "resync", "racing")),
    )
    def read_through_a_lagging_replica_after_a_new_status(
        self, data: st.DataObject, status: tuple[str, str], then: str
    ) -> None:
        """A new status is acted on at once, and the next read comes from a replica without it; or
        (`racing`) a resync answered by that replica is still writing when the status's webhook,
        answered live, has been handled."""
        self.step("lagging replica after a new status")
        deployment = data.draw(st.sampled_from(self.deployments), label="deployment")
        before = self.fake.snapshot()
        self.snapshots = [*self.snapshots[-2:], before]
        if then == "racing":
            queued = len(self.queue)
            self._status(deployment, *status, False)
            webhook = self.queue.pop() if len(self.queue) > queued else None
            live = (lambda: self._deliver(webhook, None, redeliver=False)) if webhook else None
            self.hook = live or (lambda: self._resync_quietly_failing(None))
            self._resync(before)
            if self.hook is not None:
                self.hook = None
                (live or (lambda: self._resync_quietly_failing(None)))()
            return
        self._status(deployment, *status, False, prompt=True)
        if then == "resync" or not self.queue:
            self._resync(before)
        else:
            self._deliver(self.queue[-1], before, redeliver=False)

    @precondition(lambda self: self.queue)
    @rule(data=st.data(), in_order=st.booleans(), twice=rarely, stale=st.booleans())
    def deliver(self, data: st.DataObject, in_order: bool, twice: bool, stale: bool) -> None:
        self.step("deliver")
        index = 0 if in_order else data.draw(st.integers(0, len(self.queue) - 1), label="index")
        item = self.queue[index] if twice else self.queue.pop(index)
        self._deliver(item, self._young_snapshot(data, stale), redeliver=not twice)

    @precondition(lambda self: self.queue)
    @rule(data=st.data())
    def lose(self, data: st.DataObject) -> None:
        self.step("lose")
        self.queue.pop(data.draw(st.integers(0, len(self.queue) - 1), label="index"))

    @precondition(lambda self: self.delivered_audit)
    @rule(data=st.data(), stale=st.booleans())
    def replay_old_audit_event(self, data: st.DataObject, stale: bool) -> None:
        self.step("replay audit event")
        item = data.draw(st.sampled_from(self.delivered_audit), label="old event")
        self._deliver(item, self._young_snapshot(data, stale), redeliver=False)

    @precondition(lambda self: not self.snapshots or self.age(self.snapshots[-1]) > 0)
    @rule()
    def take_snapshot(self) -> None:
        self.step("take snapshot")
        self.snapshots = [*self.snapshots[-2:], self.fake.snapshot()]

    @rule(seconds=st.sampled_from((1, 5, 30, 120, 250, 299, 301, 400)))
    def let_time_pass(self, seconds: int) -> None:
        self.step("advance clock")
        self.fake.advance(seconds)

    @rule(data=st.data(), stale=st.booleans())
    def run_resync(self, data: st.DataObject, stale: bool) -> None:
        self.step("resync")
        self._resync(self._young_snapshot(data, stale))

    @precondition(lambda self: self.kube.orphans())
    @rule(data=st.data(), finalizer=st.booleans())
    def collect_garbage(self, data: st.DataObject, finalizer: bool) -> None:
        self.step("garbage collection")
        key = data.draw(st.sampled_from(self.kube.orphans()), label="gate")
        self.kube.collect(key, finalizer=finalizer)

    @rule(
        data=st.data(),
        first=st.sampled_from(("delivery", "resync")),
        stale=st.booleans(),
        other=st.sampled_from(("deliver", "environment", "candidates", "status", "resync")),
    )
    def overlap(self, data: st.DataObject, first: str, stale: bool, other: str) -> None:
        """A delivery (or a resync) with a second action between its GitHub read and its gate writes."""
        self.step("overlap")
        snapshot = self._young_snapshot(data, stale)
        item = None
        if first == "delivery" and self.queue:
            item = self.queue.pop(data.draw(st.integers(0, len(self.queue) - 1), label="first"))
        second = self._second_action(data, other)
        self.hook = second
        if item is None:
            self._resync(snapshot)
        else:
            self._deliver(item, snapshot, redeliver=True)
        if self.hook is not None:  # the first never asked GitHub: the second runs after it instead
            self.hook = None
            second()

    def _second_action(self, data: st.DataObject, other: str) -> Callable[[], None]:
        if other == "deliver" and self.queue:
            index = data.draw(st.integers(0, len(self.queue) - 1), label="second")
            snapshot = self._young_snapshot(data, data.draw(st.booleans(), label="second stale"))
            return lambda: self._deliver_another(index, snapshot)
        if other == "environment":
            name = data.draw(st.sampled_from(ENV_NAMES), label="name")
            rel = data.draw(relationship, label="relationship")
            rollout = data.draw(st.sampled_from(ROLLOUTS), label="rollout")
            return lambda: self._put_environment(name, rel, rollout, "update", True)
        if other == "candidates":
            rollout = data.draw(st.sampled_from(ROLLOUTS), label="rollout")
            chosen = data.draw(candidates, label="candidates")
            blocking = data.draw(st.booleans(), label="blocking")
            return lambda: self._set_candidates(rollout, chosen, blocking)
        if other == "status" and self.deployments:
            deployment = data.draw(st.sampled_from(self.deployments), label="deployment")
            status = data.draw(st.sampled_from(STATUSES), label="status")
            return lambda: self._status(deployment, *status, False)
        snapshot = self._young_snapshot(data, data.draw(st.booleans(), label="resync stale"))
        return lambda: self._resync_quietly_failing(snapshot)

    def _deliver_another(self, index: int, snapshot: Snapshot | None) -> None:
        if self.queue:
            self._deliver(self.queue.pop(min(index, len(self.queue) - 1)), snapshot, redeliver=True)

    def _resync_quietly_failing(self, snapshot: Snapshot | None) -> None:
        self._resync(snapshot)

    @precondition(lambda self: self.since_quiet >= 10)
    @rule()
    def quiet_resync_makes_every_gate_exact(self) -> None:
        """GitHub quiet, no replica lag, nothing delivered: a resync leaves exactly the justified sets."""
        self.step("quiet resync")
        self.since_quiet = 0
        for key in self.kube.orphans():  # the garbage collector finishes deleting what it started
            if self.kube.gates[key]["metadata"].get("deletionTimestamp"):
                self.kube.collect(key, finalizer=False)
        error = self._resync(None)
        assert error is None, f"a resync with nothing going on failed: {error!r}"
        for env in self.kube.list_environments([NS]):
            gates = [raw for raw in self.kube.gates.values() if owned_by(raw, env.uid)]
            assert gates, f"{env.key} has no gate after a resync"
            for raw in gates:
                spec = raw["spec"]
                assert spec.get("rolloutRef") == {"name": env.rollout_name}, raw
                assert spec.get("passing") is True, raw
                rel = env.relationship
                if rel is None:
                    assert "allowedVersions" not in spec, f"{env.key} has no relationship: {spec}"
                    continue
                live = oracle.live_deployments(
                    self.fake.state, self.repo, github_environment(rel.environment)
                )
                rollout = self.kube.rollouts.get((NS, env.rollout_name))
                verdict = functools.partial(oracle.verdict, live)
                want = oracle.allowed(rel.type, candidates_of(rollout), verdict)
                assert spec.get("allowedVersions") == want, (
                    f"after a quiet resync, gate {raw['metadata']['name']} of {env.key} "
                    f"({rel.type} {rel.environment}) allows {spec.get('allowedVersions')}, the live "
                    f"state justifies {want}; candidates {candidates_of(rollout)}"
                )
        STATS["exact after quiet resync"] += 1
        STATS["quiet resyncs with a gate allowing tags"] += any(
            raw["spec"].get("allowedVersions") for raw in self.kube.gates.values()
        )

    # write-time checks ---------------------------------------------------------------------------

    def _rollout_read(self, key: Key, raw: Mapping[str, Any] | None) -> None:
        if self.frames:
            self.frames[-1].rollouts[key] = raw

    def _check_write(self, write: GateWrite) -> None:
        """Invariant 2 at the moment of each write, for a gate of an existing Environment."""
        owner = next(
            (raw for raw in self.kube.environments.values() if owned_by(write.after, raw["metadata"]["uid"])),
            None,
        )
        if owner is None:
            return
        env = Environment.from_raw(owner)
        rel = env.relationship
        if rel is None:
            return
        gate = RolloutGate.from_raw(write.after)
        label = f"gate {write.name} of {env.key} ({rel.type} {rel.environment})"
        after = gate.allowed_versions
        if after is None:
            self.violations.append(f"{label} was written with allowedVersions null")
            return
        patch = write.patch or {}
        recomputed = EVIDENCE_ANNOTATION in ((patch.get("metadata") or {}).get("annotations") or {}) or bool(
            (patch.get("spec") or {}).get("allowedVersions")
        )
        if write.before is None:
            self.gate_knowledge.pop((write.namespace, write.name), None)  # a new gate knows nothing
        if not recomputed:
            before = None if write.before is None else RolloutGate.from_raw(write.before).allowed_versions
            if write.before is None and after != ():
                self.violations.append(f"{label} was created allowing {list(after)}")
            elif before is not None and not set(after) <= set(before):
                self.violations.append(
                    f"{label} widened from {list(before)} to {list(after)} without bake results"
                )
            return
        STATS["recompute writes checked"] += 1
        frame = self.frames[-1] if self.frames else Frame()
        project, where = (env.project or "").lower(), github_environment(rel.environment)
        upstream = (project, where, rel.type)
        answered = [(r, e, a) for r, e, a in frame.answers if (r.lower(), e) == (project, where)]
        # What this gate learnt before, while it followed this same upstream (its evidence's scope).
        prior = self.gate_knowledge.get((write.namespace, write.name))
        learnt = prior[1].copy() if prior is not None and prior[0] == upstream else oracle.Knowledge()
        if AVOID_BUG_VETOES_ARE_PER_GATE:
            known_to = learnt.copy()
            for answer in answered:
                known_to.add(*answer)
            known = known_to.deployments(project, where)
        else:
            known = self.knowledge.deployments(project, where)
        # The rollout controller applies the gate to the Rollout the gate names: that Rollout's
        # candidates are what the allowed tags must be justified for.
        key = (env.namespace, gate.rollout_name or "")
        rollout = frame.rollouts[key] if key in frame.rollouts else self.kube.rollouts.get(key)
        candidates = candidates_of(rollout)
        justified = oracle.allowed(rel.type, candidates, lambda c: oracle.verdict(known, c))
        STATS["recompute writes allowing tags"] += bool(after)
        vetoes = '"vetoes":{}' not in gate.annotations.get(EVIDENCE_ANNOTATION, "")
        STATS["recompute writes with vetoes in the evidence"] += vetoes
        extra = sorted(set(after) - set(justified))
        if extra:
            why = {
                tag: [(rev, oracle.verdict(known, (t, rev)).word) for t, rev in candidates if t == tag]
                for tag in extra
            }
            self.violations.append(
                f"{label} allows {extra}, which what the reader had answered does not justify: {why} "
                f"(candidates {candidates}, allowed {list(after)}, justified {justified})"
            )
        # The gate now remembers this computation's answers for its own candidates' revisions.
        own = (env.namespace, env.rollout_name)
        mine = {rev for _, rev in candidates_of(frame.rollouts.get(own, self.kube.rollouts.get(own)))}
        for answer in answered:
            learnt.add(*answer, revisions=mine)
        self.gate_knowledge[(write.namespace, write.name)] = (upstream, learnt)

    # invariants ---------------------------------------------------------------------------------

    @invariant()
    def no_gate_of_a_relationship_is_null(self) -> None:
        for env_raw in self.kube.environments.values():
            if "relationship" not in env_raw["spec"]:
                continue
            for gate in self.kube.gates.values():
                if owned_by(gate, env_raw["metadata"]["uid"]):
                    assert gate["spec"].get("allowedVersions") is not None, (
                        f"gate {gate['metadata']['name']} of {env_raw['metadata']['name']} "
                        f"({env_raw['spec']['relationship']}) is null: {gate['spec']}"
                    )

    @invariant()
    def every_write_allowed_only_justified_tags(self) -> None:
        assert not self.violations, "\n".join(self.violations)

    @invariant()
    def the_api_refused_no_write(self) -> None:
        assert not self.kube.rejected, self.kube.rejected


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@pytest.mark.timeout(1200)  # minutes under coverage on a loaded 2-core machine; seconds alone
def test_random_interleavings_keep_gates_safe_and_resync_makes_them_exact(world: World) -> None:
    started, cpu = time.monotonic(), time.process_time()
    run_state_machine_as_test(GateModel, settings=SETTINGS)
    STATS["seconds"] = round(time.monotonic() - started)
    STATS["cpu seconds (this process, fake GitHub included)"] = round(time.process_time() - cpu)
    STATS["examples"] = world.examples


def test_the_model_ran_at_least_ten_thousand_steps() -> None:
    if "examples" not in STATS:
        pytest.skip("the state machine did not run in this session")
    print(f"\nstate machine: {RUN.steps} steps in {STATS['examples']} examples, {STATS['seconds']} s")
    print(json.dumps(dict(sorted(STATS.items())), indent=1))
    assert RUN.steps >= MIN_STEPS


# Bugs the model found, as minimal reproductions (no Hypothesis, no HTTP) -------------------------


WORDS = {"success": "Bake succeeded", "failure": "Bake failed", "in_progress": "Baking in progress"}


class StubUpstream:
    """Bake results by (GitHub environment, revision): one record of the build `v1` (history entry 1)
    with statuses (state, createdAt) (a bare state: one status), written as kuberik writes them; runs
    `interfere` once, right after its first answer. It gives no `Date`: GitHub's time is then the
    newest `createdAt` it shows."""

    def __init__(
        self,
        results: Mapping[tuple[str, str], str | tuple[tuple[str, str], ...]],
        interfere: Callable[[], None] | None = None,
    ) -> None:
        self.results = results
        self.interfere = interfere

    def commit_deployments(self, repository: str, environment: str, revisions: Any) -> dict[str, Any]:
        answer = {}
        for i, revision in enumerate(sorted(set(revisions))):
            found = self.results.get((environment, revision))
            deployments: tuple[DeploymentRecord, ...] = ()
            if found is not None:
                statuses = ((found, "2026-05-15T10:00:02Z"),) if isinstance(found, str) else found
                deployments = (
                    DeploymentRecord(
                        1000 + i,
                        revision,
                        {"id": "1", "version": {"tag": "v1", "revision": revision}},
                        "2026-05-15T10:00:01Z",
                        tuple(StatusRecord(state, WORDS[state], at) for state, at in statuses),
                    ),
                )
            answer[revision] = CommitLookup(revision, revision, deployments)
        interfere, self.interfere = self.interfere, None
        if interfere is not None:
            interfere()
        return answer


def _prod(rollout: str, upstream: str) -> dict[str, Any]:
    body = environment(NS, "prod", upstream=upstream, rollout=rollout)
    body["spec"]["backend"]["project"] = "myorg/myapp"
    return body


def test_resync_moves_the_gate_when_an_environment_changed_rollout_unseen() -> None:
    kube = InMemoryKube()
    kube.put_rollout_status(NS, "app-a", [{"tag": "v1", "revision": SHAS[0]}])  # never baked
    kube.put_rollout_status(NS, "app-b", [{"tag": "v1", "revision": SHAS[1]}])  # baked in staging
    upstream = StubUpstream({(github_environment("staging"), SHAS[1]): "success"})
    kube.put_environment(_prod("app-a", "staging"))
    resync(kube, upstream, [NS], ATTEMPTS)
    assert kube.gates[(NS, "prod-stagegate")]["spec"]["allowedVersions"] == []

    kube.put_environment(_prod("app-b", "staging"))  # its audit event is lost
    resync(kube, upstream, [NS], ATTEMPTS)

    spec = kube.gates[(NS, "prod-stagegate")]["spec"]
    # Observed: {'rolloutRef': {'name': 'app-a'}, 'allowedVersions': ['v1'], ...}: app-a may now deploy
    # v1, whose revision was never baked, and app-b has no gate at all.
    assert spec["rolloutRef"] == {"name": "app-b"}, spec
    assert spec["allowedVersions"] == ["v1"], spec


def test_a_recompute_that_lost_a_race_to_an_environment_change_uses_the_new_upstream() -> None:
    kube = InMemoryKube()
    kube.put_rollout_status(NS, "app-a", [{"tag": "v1", "revision": SHAS[0]}])
    baked = {(github_environment("staging"), SHAS[0]): "success"}  # canary never deployed it
    kube.put_environment(_prod("app-a", "staging"))
    resync(kube, StubUpstream({}), [NS], ATTEMPTS)  # nothing baked yet
    assert kube.gates[(NS, "prod-stagegate")]["spec"]["allowedVersions"] == []

    def switch_to_canary() -> None:
        """While the resync holds staging's answer, prod now follows canary (blocking audit webhook)."""
        stored = kube.put_environment(_prod("app-a", "canary"))
        ctx = AuditContext(kube, StubUpstream(baked), ATTEMPTS)
        handle_audit_events(parse_audit_document(delivery(stored, "update")), ctx)
        assert kube.gates[(NS, "prod-stagegate")]["spec"]["allowedVersions"] == []

    resync(kube, StubUpstream(baked, interfere=switch_to_canary), [NS], ATTEMPTS)

    gate = kube.gates[(NS, "prod-stagegate")]
    # Observed: ['v1'] with evidence for "... kuberik/myapp/staging After": staging's answer (v1 baked)
    # met a 409, and the retry planned again with the Environment read before it (After staging),
    # though prod follows canary now, which never deployed v1's revision.
    assert gate["spec"]["allowedVersions"] == [], gate["metadata"]["annotations"][EVIDENCE_ANNOTATION]


def test_a_lagging_answer_does_not_reopen_what_another_gate_of_the_upstream_saw_fail() -> None:
    kube = InMemoryKube()
    staging = github_environment("staging")
    baked = ("success", "2026-05-15T10:00:02Z")
    failed = ("failure", "2026-05-15T10:00:03Z")
    qa = _prod("app-b", "staging")
    qa["metadata"]["name"] = "qa"
    kube.put_environment(qa)
    kube.put_environment(_prod("app-a", "staging"))
    kube.put_rollout_status(NS, "app-b", [{"tag": "v1", "revision": SHAS[0]}])
    resync(kube, StubUpstream({(staging, SHAS[0]): (baked,)}), [NS], ATTEMPTS)
    resync(kube, StubUpstream({(staging, SHAS[0]): (baked, failed)}), [NS], ATTEMPTS)
    assert kube.gates[(NS, "qa-stagegate")]["spec"]["allowedVersions"] == []  # it saw the failure

    kube.put_rollout_status(NS, "app-a", [{"tag": "v1", "revision": SHAS[0]}])  # prod lists v1 too
    lagging = StubUpstream({(staging, SHAS[0]): (baked,)})  # a replica from before the failure
    resync(kube, lagging, [NS], ATTEMPTS)

    assert kube.gates[(NS, "qa-stagegate")]["spec"]["allowedVersions"] == []  # held back: a veto
    # Observed: ['v1']: the same answer, in the same recompute of the same upstream, opens v1 for prod.
    assert kube.gates[(NS, "prod-stagegate")]["spec"]["allowedVersions"] == []


def test_a_late_create_event_does_not_give_an_environment_with_a_relationship_a_null_gate() -> None:
    kube = InMemoryKube()
    ctx = AuditContext(kube, StubUpstream({}), ATTEMPTS)
    earlier = kube.put_environment(_prod("app-a", "staging"))
    handle_audit_events(parse_audit_document(delivery(earlier, "create")), ctx)
    kube.delete_environment(NS, "prod")
    kube.collect((NS, "prod-stagegate"), finalizer=True)  # the garbage collector has started on it

    without = _prod("app-a", "staging")
    del without["spec"]["relationship"]
    created = kube.put_environment(without)  # created again; this create event is delayed
    updated = kube.put_environment(_prod("app-a", "staging"))  # a relationship: the blocking webhook
    with pytest.raises(RetryableError, match="will retry"):  # "being deleted; created on retry"
        handle_audit_events(parse_audit_document(delivery(updated, "update")), ctx)
    kube.collect((NS, "prod-stagegate"), finalizer=False)  # the garbage collector finishes
    handle_audit_events(parse_audit_document(delivery(created, "create")), ctx)  # the late event

    # Observed: {'rolloutRef': {'name': 'app-a'}, 'passing': True}: no allowedVersions at all (no
    # restriction), created from the late event's copy, for an Environment that follows staging.
    assert kube.gates[(NS, "prod-stagegate")]["spec"].get("allowedVersions") == []
