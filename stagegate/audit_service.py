"""What the audit functions do with a parsed delivery: route each event, then act once per object.

Both transports end here (the webhook posts an EventList, Pub/Sub carries an Event or EventList).
Events for one object collapse to the newest in the delivery, since each only says "look again".
An Environment change ensures its gates exist and have the right shape. The object in the event
(`responseObject`, policy level RequestResponse) is used as is to tighten (that keeps a create at one
API call), but it may be old or of an earlier incarnation: whatever would relax a gate (lift the
list, move it, change its owners) acts only on the Environment read from the API, with the same uid.
A Rollout status change recomputes the gates of the Environments that govern it (its
release candidates may now include a revision baked upstream before). When an Environment change
withdrew what its gate allowed (a new upstream or Rollout), the gate is recomputed right away.

Two ways through a delivery. `handle_audit_events` works through it in order, as long as it takes:
the durable transports (Pub/Sub, SQS) are redelivered on failure. `handle_audit_delivery` is the
blocking webhook's: it answers within the deadline, and nothing queued may delay an Environment's gate
past it (issue 10, item 3), so Environment changes run in a lane of their own ahead of recomputes,
one-object deliveries (what blocking mode sends) ahead of batches, and work that has not started by the
deadline never starts.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from shared.audit import AuditEvent, Ignored, Route, Routed, route
from shared.errors import BadEvent, PartialFailure, PermanentError, RetryableError
from shared.trust import RepositoryPolicy
from shared.views import Environment
from stagegate.abandon import abandonable
from stagegate.lanes import Lane, LaneFull, Priority
from stagegate.logs import get_logger
from stagegate.recompute_service import ANY_REPOSITORY, RecomputeStore, Upstream, recompute
from stagegate.reconcile import GateOutcome, NeedsCurrentState, ensure_gates

log = get_logger("audit")

T = TypeVar("T")

NO_GITHUB = "rollout change, but no GitHub credentials are configured here"


@dataclass
class AuditSummary:
    """The answer to one delivery: what was acted on, what was ignored and why."""

    events: int = 0
    acted: int = 0
    ignored: Counter[str] = field(default_factory=Counter)
    gates: list[GateOutcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "acted": self.acted,
            "ignored": dict(self.ignored),
            "gates": [g.to_json() for g in self.gates],
            "errors": self.errors,
        }


@dataclass(frozen=True)
class AuditContext:
    """What the handlers work with: Kubernetes, GitHub when configured, the retry budget."""

    kube: RecomputeStore
    upstream: Upstream | None
    attempts: int
    repositories: RepositoryPolicy = ANY_REPOSITORY


class _Ignore(Exception):
    """Raised by a handler that has nothing to do for a good reason (counted, not an error)."""


def _environment_changed(routed: Routed, ctx: AuditContext) -> list[GateOutcome]:
    outcomes, withdrawn = _environment_gates(routed, ctx)
    if withdrawn is not None and ctx.upstream is not None:
        outcomes += _recomputed([withdrawn], ctx, ctx.upstream)  # what the new upstream or Rollout justifies
    return outcomes


def _environment_gates(routed: Routed, ctx: AuditContext) -> tuple[list[GateOutcome], Environment | None]:
    """The gate part of an Environment change: its outcomes, and the Environment (as the API has it)
    when the change withdrew what its gate allowed and the gate must be recomputed."""
    response = routed.event.response_object
    copy = (
        Environment.from_raw(response)
        if response is not None and response.get("kind") == "Environment"
        else None
    )
    outcomes: list[GateOutcome] | None = None
    if copy is not None:
        try:
            outcomes = ensure_gates(
                copy, ctx.kube, fresh=routed.event.verb == "create", attempts=ctx.attempts, current=False
            )
        except NeedsCurrentState as exc:
            log.info(
                "the event's copy would relax a gate; reading the Environment",
                extra={"fields": {"environment": copy.key, "wanted": str(exc)}},
            )
        if outcomes is not None and not _withdrawn(outcomes):
            return outcomes, None
    env = ctx.kube.get_environment(routed.namespace, routed.name)
    if env is None or (copy is not None and env.uid != copy.uid):
        if outcomes is not None:
            return outcomes, None
        raise _Ignore("the Environment no longer exists (deleted, or recreated since the event)")
    if outcomes is None:
        fresh = copy is None and routed.event.verb == "create"  # a 409 tells if it is not that new
        outcomes = ensure_gates(env, ctx.kube, fresh=fresh, attempts=ctx.attempts)
    return outcomes, env if _withdrawn(outcomes) and env.relationship is not None else None


def _withdrawn(outcomes: list[GateOutcome]) -> bool:
    """True when a gate that allowed versions was just closed (new upstream or Rollout)."""
    return any(o.allowed_before and o.allowed_after == [] for o in outcomes)


def _rollout_changed(routed: Routed, ctx: AuditContext) -> list[GateOutcome]:
    if ctx.upstream is None:
        raise _Ignore(NO_GITHUB)
    governing = [
        env
        for env in ctx.kube.list_environments([routed.namespace])
        if env.rollout_name == routed.name and env.relationship is not None
    ]
    if not governing:
        raise _Ignore("rollout governed by no Environment with a relationship")
    return _recomputed(governing, ctx, ctx.upstream)


def _recomputed(environments: list[Environment], ctx: AuditContext, upstream: Upstream) -> list[GateOutcome]:
    """Recompute, raising the first failure (the delivery is retried or refused as a whole)."""
    report = recompute(environments, ctx.kube, upstream, ctx.attempts, ctx.repositories)
    if report.errors:
        reasons = "; ".join(f"{key}: {why}" for key, why in report.errors.items())
        raise (RetryableError if report.retryable else PermanentError)(reasons)
    return report.outcomes


HANDLERS: Mapping[Route, Callable[[Routed, AuditContext], list[GateOutcome]]] = {
    "environment": _environment_changed,
    "rollout": _rollout_changed,
}


def _newest(events: Sequence[AuditEvent], summary: AuditSummary) -> list[Routed]:
    """The objects the events changed, each with its newest event; the rest counted as ignored."""
    newest: dict[tuple[Route, str, str], Routed] = {}
    for event in events:
        decision = route(event)
        if isinstance(decision, Ignored):
            summary.ignored[decision.reason] += 1
        else:
            newest[(decision.route, decision.namespace, decision.name)] = decision
    return list(newest.values())


def _key(routed: Routed) -> str:
    return f"{routed.route} {routed.namespace}/{routed.name}"


def _settle(summary: AuditSummary, retry: list[str], key: str, call: Callable[[], T]) -> T | None:
    """`call()`, or None with its failure recorded: ignored, an error, or an error to retry."""
    try:
        return call()
    except _Ignore as exc:
        summary.ignored[str(exc)] += 1
    except (BadEvent, PermanentError) as exc:
        summary.errors.append(f"{key}: {exc}")
        log.error("cannot act on this object", extra={"fields": {"object": key, "reason": str(exc)}})
    except RetryableError as exc:
        summary.errors.append(f"{key}: {exc}")
        retry.append(key)
    return None


def handle_audit_events(events: Sequence[AuditEvent], ctx: AuditContext) -> AuditSummary:
    """Act on every object the events changed, Environments first; raise `PartialFailure` if any must be
    retried. The Rollout changes of a delivery are recomputed together: one GitHub read per upstream,
    however many Rollouts (a hand-off of a hundred look-agains is one delivery, `stagegate.handoff`)."""
    summary = AuditSummary(events=len(events))
    retry: list[str] = []
    newest = _newest(events, summary)
    for routed in (r for r in newest if r.route == "environment"):
        outcomes = _settle(summary, retry, _key(routed), partial(HANDLERS[routed.route], routed, ctx))
        if outcomes is not None:
            summary.gates += outcomes
            summary.acted += 1
    rollouts = [r for r in newest if r.route == "rollout"]
    if rollouts:
        _rollouts_changed(rollouts, ctx, summary, retry)
    if retry:
        raise PartialFailure(f"will retry: {', '.join(retry)}", summary.to_json())
    return summary


def _rollouts_changed(
    rollouts: Sequence[Routed], ctx: AuditContext, summary: AuditSummary, retry: list[str]
) -> None:
    """Recompute the Environments governing these Rollouts in one go; account for each Rollout."""
    if ctx.upstream is None:
        summary.ignored[NO_GITHUB] += len(rollouts)
        return
    keys = {(r.namespace, r.name): _key(r) for r in rollouts}
    governing: list[Environment] = []
    unread: set[str] = set()
    for namespace in sorted({ns for ns, _ in keys}):
        mine = ", ".join(key for (ns, _), key in keys.items() if ns == namespace)
        found = _settle(summary, retry, mine, partial(ctx.kube.list_environments, [namespace]))
        if found is None:
            unread.add(namespace)
        governing += [
            env
            for env in found or []
            if (env.namespace, env.rollout_name) in keys and env.relationship is not None
        ]
    governed = {(env.namespace, env.rollout_name) for env in governing}
    ungoverned = [key for key in keys if key not in governed and key[0] not in unread]
    summary.ignored["rollout governed by no Environment with a relationship"] += len(ungoverned)
    report = recompute(governing, ctx.kube, ctx.upstream, ctx.attempts, ctx.repositories)
    summary.gates += report.outcomes
    failed: set[tuple[str, str]] = set()
    for env in governing:
        why = report.errors.get(env.key)
        if why is None:
            continue
        key = keys[(env.namespace, env.rollout_name)]
        failed.add((env.namespace, env.rollout_name))
        summary.errors.append(f"{key}: {env.key}: {why}")
        if env.key in report.retryable and key not in retry:
            retry.append(key)
    summary.acted += len(governed - failed)


# --- the blocking webhook ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditLanes:
    """Where `handle_audit_delivery` runs work, kept apart so that no kind of work waits behind another."""

    gates: Lane
    """Environment changes: the gate writes the apiserver waits for (one to three Kubernetes calls each)."""
    recomputes: Lane
    """Rollout changes and the recompute after an Environment changed upstream (GitHub, then Kubernetes)."""
    slow: threading.BoundedSemaphore
    """Slots for deliveries that are not the blocking path (a batch, a recompute, a large body): without
    one free a delivery is refused at once, so such deliveries never hold every request thread of the
    server, nor its CPU with parsing."""
    blocking_body_bytes: int = 256 * 1024
    """A larger body (or one of undeclared length) needs a slot before it is even read: one event of a
    blocking-mode delivery is far smaller (the apiserver truncates events at 100 KiB by default)."""

    @classmethod
    def default(cls) -> AuditLanes:
        """Sized for one function instance: 4 gate writers, 4 recomputes, 2 slow deliveries at a time."""
        return cls(
            gates=Lane("audit-gates", workers=4, limit=1024),
            recomputes=Lane("audit-recomputes", workers=4, limit=64),
            slow=threading.BoundedSemaphore(2),
        )

    @contextlib.contextmanager
    def admission(self, body_bytes: int | None) -> Iterator[Admission]:
        """One delivery's claim on a slow slot, released when it is answered; taken here already for a
        body over `blocking_body_bytes` or of unknown size (`RetryableError` when none is free)."""
        claim = Admission(self.slow)
        try:
            if body_bytes is None or body_bytes > self.blocking_body_bytes:
                claim.take()
            yield claim
        finally:
            claim.release()


BUSY = "busy with other batches or recomputes: refused before anything was done"


class Admission:
    """Whether one delivery holds a slow slot."""

    def __init__(self, slots: threading.BoundedSemaphore) -> None:
        self._slots = slots
        self.held = False

    def take(self) -> None:
        """Hold a slot (if not yet); `RetryableError` when none is free."""
        if not self.held:
            if not self._slots.acquire(blocking=False):
                raise RetryableError(BUSY)
            self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self._slots.release()


def handle_audit_delivery(
    events: Sequence[AuditEvent],
    ctx: AuditContext,
    lanes: AuditLanes,
    seconds: float,
    started: float | None = None,
    admission: Admission | None = None,
) -> AuditSummary:
    """Act on a webhook delivery within `seconds` of `started` (`time.monotonic()`, default now).

    * One Environment change (what blocking mode sends, one event per request) is the blocking path: its
      work goes to the gate lane ahead of queued work of larger deliveries (fewer objects first, then
      creates before updates, then first come).
    * Anything more (a batch, or a Rollout change that needs GitHub) first takes a `slow` slot (unless
      `admission` holds one already, see `AuditLanes.admission`) or is refused at once (`RetryableError`,
      nothing done). Its Environment changes go to the gate lane, creates first; its Rollout changes to
      the recompute lane once those are done.
    * At the deadline every object not finished is named in the `PartialFailure` (503): what had not
      started is withdrawn and never runs, what runs is abandoned: it makes no further call
      (`stagegate.abandon`), so nothing is written after the answer. In batch mode the apiserver sends
      the batch again on that 503; in blocking mode it retries too, holding the API request meanwhile
      (up to its request timeout), which is what a gate's create wants and a Rollout write does not: a
      one-event delivery about a Rollout that could not be finished is answered 200 instead, and left to
      the scheduled resync.
    """
    started = time.monotonic() if started is None else started
    summary = AuditSummary(events=len(events))
    objects = _newest(events, summary)
    environments = [r for r in objects if r.route == "environment"]
    rollouts = [r for r in objects if r.route == "rollout"]
    if rollouts and ctx.upstream is None:
        summary.ignored[NO_GITHUB] += len(rollouts)
        rollouts = []
    claim = Admission(lanes.slow) if admission is None else admission
    try:
        if len(environments) > 1 or rollouts:
            claim.take()
        return _Delivery(summary, ctx, lanes, seconds, started + seconds).run(environments, rollouts)
    except RetryableError as exc:
        if len(events) != 1 or environments:
            raise
        # Blocking mode's shape (one event) about a Rollout: the apiserver holds that Rollout write while
        # it retries a failed answer with backoff (measured: up to its 60 s request timeout), so a slow
        # GitHub would stall the rollout controller. Answer 200; the resync recomputes the gates.
        if not isinstance(exc, PartialFailure):
            summary.errors.append(f"{_some([_key(r) for r in rollouts])}: {exc}")
        log.warning(
            "a Rollout change was not acted on in time; answered 200 so the apiserver does not hold the "
            "write, and left to the scheduled resync",
            extra={"fields": {"reason": str(exc)}},
        )
        return summary
    finally:
        if admission is None:
            claim.release()


def _some(keys: list[str], shown: int = 10) -> str:
    """Objects named in a message: the first few, and how many more (the summary lists each)."""
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


class _Delivery:
    """The state of one `handle_audit_delivery`: the work submitted and not yet collected."""

    def __init__(
        self, summary: AuditSummary, ctx: AuditContext, lanes: AuditLanes, seconds: float, deadline: float
    ) -> None:
        self.summary, self.ctx, self.lanes = summary, ctx, lanes
        self.seconds, self.deadline = seconds, deadline
        self.retry: list[str] = []
        self.pending: dict[Future[Any], tuple[str, bool]] = {}  # -> (object, is the gate step)
        self.flags: list[threading.Event] = []  # set at the deadline: running work makes no further call

    def run(self, environments: list[Routed], rollouts: list[Routed]) -> AuditSummary:
        size = len(environments) + len(rollouts)
        for routed in sorted(environments, key=lambda r: r.event.verb != "create"):
            priority = (size, 0 if routed.event.verb == "create" else 1)
            self._submit(
                self.lanes.gates, _key(routed), True, partial(_environment_gates, routed, self.ctx), priority
            )
        try:
            while self.pending or rollouts:
                if rollouts and not any(gate for _, gate in self.pending.values()):
                    for routed in rollouts:
                        work = partial(_rollout_changed, routed, self.ctx)
                        self._submit(self.lanes.recomputes, _key(routed), False, work, (size,))
                    rollouts = []
                    continue
                remaining = self.deadline - time.monotonic()
                done = wait(self.pending, timeout=max(remaining, 0), return_when=FIRST_COMPLETED)[0]
                if not done:
                    break
                for future in done:
                    self._collect(future, size)
        except BaseException:
            self._withdraw()
            raise
        unfinished = [key for key, _ in self.pending.values()] + [_key(r) for r in rollouts]
        self._withdraw()
        for key in unfinished:
            self.summary.errors.append(f"{key}: not finished within {self.seconds:g}s")
        if unfinished:
            log.warning(
                f"delivery not finished within {self.seconds:g}s; what had not started never will",
                extra={"fields": {"objects": _some(unfinished)}},
            )
        if self.retry or unfinished:
            reasons = [f"not finished within {self.seconds:g}s: {_some(unfinished)}"] if unfinished else []
            reasons += [f"will retry: {_some(self.retry)}"] if self.retry else []
            raise PartialFailure("; ".join(reasons), self.summary.to_json())
        return self.summary

    def _submit(self, lane: Lane, key: str, gate: bool, work: Callable[[], Any], priority: Priority) -> None:
        run, flag = abandonable(work)
        self.flags.append(flag)
        try:
            self.pending[lane.submit(run, priority)] = (key, gate)
        except LaneFull as exc:
            self.summary.errors.append(f"{key}: {exc}")
            self.retry.append(key)

    def _collect(self, future: Future[Any], size: int) -> None:
        key, gate = self.pending.pop(future)
        result = _settle(self.summary, self.retry, key, future.result)
        if result is None:
            return
        if not gate:
            self.summary.gates += result
            self.summary.acted += 1
            return
        outcomes, withdrawn = result
        self.summary.gates += outcomes
        if withdrawn is None or self.ctx.upstream is None:
            self.summary.acted += 1
            return
        work = partial(_recomputed, [withdrawn], self.ctx, self.ctx.upstream)
        self._submit(self.lanes.recomputes, key, False, work, (size,))

    def _withdraw(self) -> None:
        for flag in self.flags:
            flag.set()
        for future in self.pending:
            future.cancel()
        self.pending.clear()
