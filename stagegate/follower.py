"""The follower: Rollout and Environment changes reach the reporter and the gates on any cluster.

Managed clusters (GKE, EKS, AKS) take no audit webhook, and the in-cluster install has no Pub/Sub or
SQS: without this, a Rollout's bake reached GitHub, and the gates downstream of it, only at the next
resync. The follower runs beside the functions (`python -m stagegate.follower`, one container of the
in-cluster Deployment) and does what kuberik's Go controller does to react at once, better:

* it lists, then watches, Rollouts and Environments (cluster-wide, or per `STAGEGATE_NAMESPACES`
  namespace), with bookmarks, resuming each watch from the last resourceVersion it saw and listing
  again when the server answers 410 (the version is too old);
* only the replica holding the Lease `stagegate-follower` follows (`stagegate.leader`), so two replicas
  never both handle a change; a standby takes over when the Lease is released (a rollout of the
  Deployment, SIGTERM) or has run out on its own clock (a killed pod);
* no change is lost across restarts: the Lease keeps the resourceVersion each stream had reached when
  every change before it was handled (`shared.follow`), and the next holder resumes its watch from
  there (or lists everything again if that is too old); a change made while no follower ran is then
  handled within seconds of one being back, and the resync stays the healer of last resort;
* changes are coalesced per object (`Pending`: memory bounded by the number of objects, one entry each)
  and handled in batches by `stagegate.follow_service`, Environments first; a change whose handling
  may pass later is retried with backoff, and the resume point does not move past it meanwhile.

Admission on `rollouts/status` was weighed and not chosen: it sees writes that are later refused and
dry runs, it adds a call to every status write of the rollout controller, and what it hands on lives
in memory only, so a restart loses it. A watch sees only what was stored, costs the writer nothing,
and resumes. README "Rollout changes on every cluster" has the measurements.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType

from shared.audit import Route
from shared.errors import StagegateError
from shared.follow import Change, Expired, Seen, needing_gate_work, parse_event, stream_key
from stagegate import metrics
from stagegate.audit_service import AuditContext
from stagegate.follow_service import FollowContext, handle_changes
from stagegate.github import github_reader
from stagegate.kube import ENVIRONMENTS, ROLLOUTS, KubeGates, KubeGone, Watched, api_client
from stagegate.leader import Leadership
from stagegate.logs import get_logger
from stagegate.report_service import Limits
from stagegate.settings import ConfigError, Settings

log = get_logger("follower")

WATCH_SECONDS = 60
"""How long one watch request lasts before it is started again from its last version (bookmarks keep
that version fresh while nothing changes)."""
BATCH = 100
"""Changes handled in one go at most (one GitHub read per upstream for all of them)."""
SETTLE_SECONDS = 0.05
"""How long a batch waits for more changes once one arrived (the rollout controller writes in bursts)."""
RETRY_SECONDS = (1.0, 2.0, 5.0, 15.0, 30.0, 60.0)
"""Backoff of a change whose handling failed in a way that may pass (a GitHub outage)."""
STANDBY_SECONDS = 1.0
"""How often a replica that does not follow tries the Lease."""
KINDS: tuple[tuple[Watched, Route], ...] = ((ENVIRONMENTS, "environment"), (ROLLOUTS, "rollout"))


class Pending:
    """Changes not yet handled, each object once, and where each stream's events have reached; the
    resume point advances to those versions only when nothing taken before them is left to handle.

    Nothing is taken before every stream in `streams` has resumed or listed: after a list, Environment
    changes must go first (their gates), not whichever stream's list came back first. Then Environment
    changes are taken before Rollout changes."""

    def __init__(
        self,
        resume: Mapping[str, str],
        monotonic: Callable[[], float] = time.monotonic,
        streams: Sequence[str] = (),
    ) -> None:
        self._monotonic = monotonic
        self._streams = tuple(streams)
        self._ready = threading.Condition()
        self._due: dict[Change, float] = {}
        self._attempts: dict[Change, int] = {}
        self._received: dict[str, str] = dict(resume)
        self._resume: dict[str, str] = dict(resume)

    def offer(self, stream: str, changes: Sequence[Change], version: str) -> None:
        """Changes seen on `stream` up to `version` (a bookmark offers none); each is due now."""
        with self._ready:
            for change in changes:
                self._due[change] = 0.0
            self._received[stream] = version
            self._ready.notify_all()

    def take(self, limit: int, wait: float) -> tuple[list[Change], dict[str, str] | None]:
        """Up to `limit` due changes, waiting up to `wait` seconds for one, and the versions handling
        them all reaches (None while other changes stay pending)."""
        with self._ready:
            self._ready.wait_for(self._any_due, timeout=wait)
            if self._due and self._any_due():
                self._ready.wait(SETTLE_SECONDS)  # let a burst of writes arrive
            listing = not self._listed()
            now = self._monotonic()
            due = [] if listing else [c for c, at in self._due.items() if at <= now]
            batch = sorted(due, key=lambda c: c.route != "environment")[:limit]
            for change in batch:
                del self._due[change]
            marks = None if self._due or listing else dict(self._received)
            if not batch and marks is not None:
                self._resume = marks  # nothing pending: bookmarks move the resume point on
            return batch, marks

    def done(self, batch: Sequence[Change], retry: set[Change], marks: dict[str, str] | None) -> None:
        """Record a batch handled: `retry` comes back later (unless changed again meanwhile)."""
        with self._ready:
            now = self._monotonic()
            for change in batch:
                if change not in retry:
                    self._attempts.pop(change, None)
                elif change not in self._due:
                    attempt = self._attempts.get(change, 0)
                    self._attempts[change] = attempt + 1
                    self._due[change] = now + RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
            if marks is not None and not retry:
                self._resume = marks

    def resume(self) -> dict[str, str]:
        """Where a follower taking over would resume: every change before these versions is handled."""
        with self._ready:
            return dict(self._resume)

    def __len__(self) -> int:
        with self._ready:
            return len(self._due)

    def _listed(self) -> bool:
        return all(stream in self._received for stream in self._streams)

    def _any_due(self) -> bool:
        if not self._listed():
            return False
        now = self._monotonic()
        return any(due <= now for due in self._due.values())


@dataclass
class Term:
    """One stretch of following, from taking the Lease to losing or giving it back."""

    pending: Pending
    ended: threading.Event = field(default_factory=threading.Event)
    handler: threading.Thread | None = None


class Follower:
    """Follows changes while this replica holds the Lease (`run`)."""

    def __init__(
        self, kube: KubeGates, context: FollowContext, leadership: Leadership, namespaces: Sequence[str] = ()
    ) -> None:
        self.kube, self.context, self.leadership = kube, context, leadership
        self.streams: list[tuple[Watched, Route, str | None]] = [
            (kind, route, namespace) for kind, route in KINDS for namespace in _scopes(namespaces)
        ]
        self.handled = 0
        """Changes handled since start (all terms), for tests and the log."""

    def run(self, stop: threading.Event) -> None:
        """Take or renew the Lease until `stop`; follow while holding it; give it back at the end."""
        term: Term | None = None
        while not stop.is_set():
            leading = self.leadership.step(term.pending.resume() if term else {})
            if leading and term is None:
                term = self._start()
            elif not leading and term is not None:
                term.ended.set()
                term = None
            stop.wait(self.leadership.renew_every if leading else STANDBY_SECONDS)
        if term is not None:
            term.ended.set()
            if term.handler is not None:
                term.handler.join(timeout=20)  # the batch being handled (within the pod's 30 s grace)
            self.leadership.release(term.pending.resume())

    def _start(self) -> Term:
        keys = {stream_key(kind.plural, namespace) for kind, _, namespace in self.streams}
        # A resume point of streams no longer configured (STAGEGATE_NAMESPACES changed) is dropped.
        resume = {k: v for k, v in self.leadership.resume.items() if k in keys}
        term = Term(Pending(resume, streams=sorted(keys)))
        for kind, route, namespace in self.streams:
            name = f"follow-{stream_key(kind.plural, namespace)}"
            threading.Thread(
                target=self._follow, args=(term, kind, route, namespace), name=name, daemon=True
            ).start()
        term.handler = threading.Thread(target=self._handle, args=(term,), name="follow-handle", daemon=True)
        term.handler.start()
        return term

    def _follow(self, term: Term, kind: Watched, route: Route, namespace: str | None) -> None:
        """List (unless resuming), then watch, again and again, until the term ends."""
        key = stream_key(kind.plural, namespace)
        seen = Seen(route)
        version = term.pending.resume().get(key)
        delay = 1.0
        while not term.ended.is_set():
            try:
                if version is None:
                    objects, version = self.kube.list_objects(kind, namespace)
                    changes = seen.relisted(objects)
                    if route == "environment":
                        changes = needing_gate_work(changes, objects, self.kube.list_gates(namespace))
                    term.pending.offer(key, changes, version)
                    fields = {"stream": key, "objects": len(objects), "changes": len(changes)}
                    log.info("follower listed", extra={"fields": fields})
                version = self._watch(term, kind, namespace, key, seen, version)
                delay = 1.0
            except KubeGone:
                version = None
            except StagegateError as exc:
                log.warning(
                    "follower watch failed; resuming", extra={"fields": {"stream": key, "reason": str(exc)}}
                )
                term.ended.wait(delay)
                delay = min(delay * 2, 30.0)
            except Exception:  # a defect: logged whole; list again rather than stop following
                log.exception(
                    "follower watch failed unexpectedly; listing again", extra={"fields": {"stream": key}}
                )
                version = None
                term.ended.wait(delay)
                delay = min(delay * 2, 30.0)

    def _watch(
        self, term: Term, kind: Watched, namespace: str | None, key: str, seen: Seen, version: str
    ) -> str | None:
        """One watch request; the version to resume from (None: list again)."""
        for raw in self.kube.watch(kind, namespace, version, WATCH_SECONDS):
            if term.ended.is_set():
                break
            event = parse_event(raw)
            if isinstance(event, Expired):
                log.info(
                    "follower watch expired; listing again",
                    extra={"fields": {"stream": key, "reason": event.message}},
                )
                return None
            change = seen.changed(event) if event.type != "BOOKMARK" else None
            term.pending.offer(key, [change] if change else [], event.resource_version)
            version = event.resource_version
        return version

    def _handle(self, term: Term) -> None:
        """Handle batches until the term ends; a batch taken is finished (the reports' Leases keep a
        takeover meanwhile from reporting the same Rollout twice). When nothing is left pending it logs
        "follower caught up" with how long that took (after a list: how long a relist costs)."""
        busy: tuple[float, int] | None = None  # since when, and how many changes
        while not term.ended.is_set():
            batch, marks = term.pending.take(BATCH, wait=0.5)
            if not batch:
                continue
            if not self.leadership.leading():
                term.pending.done(batch, set(batch), None)
                continue
            started = time.monotonic()
            busy = (busy[0] if busy else started, (busy[1] if busy else 0) + len(batch))
            github = self.context.github
            kube, reads, writes = self.kube.api.calls, github.calls, github.writes
            handled = handle_changes(batch, self.context)
            term.pending.done(batch, handled.retry, marks)
            self.handled += len(batch) - len(handled.retry)
            fields = {
                "changes": [c.key for c in batch[:20]],
                "retry": sorted(c.key for c in handled.retry),
                "seconds": round(time.monotonic() - started, 3),
                # What the batch cost (Kubernetes counts the Lease's renewals meanwhile too).
                "calls": {
                    "kubernetes": self.kube.api.calls - kube,
                    "githubReads": github.calls - reads,
                    "githubWrites": github.writes - writes,
                },
                "summary": handled.summary,
            }
            log.info(f"follower handled {len(batch)} changes", extra={"fields": fields})
            if not len(term.pending):
                caught_up = {"changes": busy[1], "seconds": round(time.monotonic() - busy[0], 3)}
                log.info("follower caught up", extra={"fields": caught_up})
                busy = None


def _scopes(namespaces: Sequence[str]) -> list[str | None]:
    """One stream per namespace in scope, or one for the cluster."""
    return list(namespaces) or [None]


def follower_from(settings: Settings, identity: str) -> Follower:
    """The follower as configured; `ConfigError` without GitHub credentials (it reports and recomputes)."""
    settings.github_credentials()
    kube = KubeGates(api_client(settings.kubeconfig), timeout=settings.github_deadline_seconds)
    github = github_reader(settings, settings.github_deadline_seconds)
    audit = AuditContext(kube, github, settings.kube_conflict_retries, settings.github_repositories)
    limits = Limits.from_settings(settings)
    context = FollowContext(audit, kube, github, limits, settings.namespaces, settings.follow_reports)
    leadership = Leadership(kube, settings.follow_namespace, identity, settings.follow_lease_seconds)
    return Follower(kube, context, leadership, settings.namespaces)


def identity_from(environ: Mapping[str, str]) -> str:
    """`POD_NAME` (the downward API: a restarted container keeps it, and takes its Lease back at once),
    else the host name and process id."""
    return environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m stagegate.follower",
        description="Follow Rollout and Environment changes (list and watch) and hand them to the reporter "
        "and the gates, on clusters without an audit webhook. One replica follows at a time (the Lease "
        "stagegate-follower in FOLLOW_LEASE_NAMESPACE). Runs until SIGTERM or SIGINT; exit 2 on a "
        "configuration error.",
    ).parse_args(argv)
    try:
        settings = Settings.from_env()
        follower = follower_from(settings, identity_from(os.environ))
    except ConfigError as exc:
        print(f"stagegate follower: {exc}", file=sys.stderr)
        return 2
    metrics.serve(settings.metrics_port)
    stop = threading.Event()

    def stopping(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    log.info("follower started", extra={"fields": {"identity": follower.leadership.identity}})
    follower.run(stop)
    log.info("follower stopped", extra={"fields": {"handled": follower.handled}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
