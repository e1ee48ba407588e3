"""One follower at a time: a Lease held by the replica that follows changes, judged on its own clock.

Every replica of the in-cluster Deployment runs a follower; only the one holding the Lease
`stagegate-follower` (in the install's namespace) watches and acts, so two replicas never both handle
one change. As client-go's leader election does, and for the reason `stagegate.lease_watch` gives,
nothing compares two machines' clocks:

* a challenger takes the Lease from another holder only when it has seen the very same Lease record
  (same resourceVersion) for `leaseDurationSeconds` on its own monotonic clock (`LeaseWatch`); a
  released Lease (no holder) or one held under this replica's own identity (the same pod, restarted)
  is taken at once;
* the holder renews it every `duration / 3` seconds and stops acting (`leading()` turns false) when its
  last successful renewal *began* more than `LEAD_FRACTION` of the duration ago on its own clock. A
  challenger's count starts after that renewal was stored, so the holder has stopped before anyone
  can take over, even if the two clocks run at slightly different rates;
* every write is conditional on the resourceVersion read: of two writers, one gets 409 and loses.

The Lease also carries the follower's resume point (`shared.follow.RESUME_ANNOTATION`), written at
each renewal, so the next holder resumes the watch where this one had handled everything.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from shared.errors import StagegateError
from shared.follow import read_resume, resume_annotation
from stagegate.kube import FIELD_MANAGER, KubeConflict, KubeNotFound
from stagegate.kube_http import time_rfc3339
from stagegate.lease_watch import LeaseWatch
from stagegate.logs import get_logger

log = get_logger("leader")

LEASE_NAME = "stagegate-follower"
LEAD_FRACTION = 0.8
"""The share of the Lease's duration a holder keeps acting after its last renewal began."""


class LeaseStore(Protocol):
    """The Lease calls (`stagegate.kube.KubeGates`)."""

    def create_lease(self, body: Mapping[str, Any]) -> dict[str, Any]: ...
    def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def replace_lease(self, lease: Mapping[str, Any]) -> dict[str, Any]: ...


class Leadership:
    """This replica's claim on the follower Lease: `step()` takes or renews it, `leading()` says whether
    to act now, `resume` is where the watch resumes, `release()` gives it back on a clean stop."""

    def __init__(
        self,
        kube: LeaseStore,
        namespace: str,
        identity: str,
        duration: int = 15,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
        name: str = LEASE_NAME,
    ) -> None:
        self.kube, self.namespace, self.identity, self.duration = kube, namespace, identity, duration
        self.name = name
        self._monotonic, self._clock = monotonic, clock
        self._watch = LeaseWatch(monotonic)
        self._lease: dict[str, Any] | None = None
        self._renewed_at: float | None = None
        self.resume: dict[str, str] = {}
        """The resume point found on the Lease when it was taken."""
        self.terms = 0
        """How often this replica became the follower (each is a new term: streams start afresh)."""

    @property
    def renew_every(self) -> float:
        return self.duration / 3

    def leading(self) -> bool:
        """Whether this replica may act now: it holds the Lease and renewed it recently enough."""
        started = self._renewed_at
        return started is not None and self._monotonic() - started < self.duration * LEAD_FRACTION

    def step(self, resume: Mapping[str, str]) -> bool:
        """Renew (keeping `resume` on the Lease) or try to take the Lease; whether this replica leads.
        A failed call only means not leading now: the next step tries again."""
        began = self._monotonic()
        try:
            if self._lease is not None:
                self._lease = self.kube.replace_lease(self._claimed(self._lease, resume))
                self._renewed_at = began
            else:
                self._take(began)
        except (KubeConflict, KubeNotFound):
            self._lost("another replica wrote the Lease")
        except StagegateError as exc:
            log.warning(
                "the follower Lease could not be renewed or read", extra={"fields": {"reason": str(exc)}}
            )
            if not self.leading():
                self._lost(str(exc))
        return self.leading()

    def release(self, resume: Mapping[str, str]) -> None:
        """Give the Lease back (keeping the resume point), so another replica takes over at once."""
        if self._lease is None:
            return
        spec = {k: v for k, v in self._claimed(self._lease, resume)["spec"].items() if k != "holderIdentity"}
        try:
            self.kube.replace_lease({**self._claimed(self._lease, resume), "spec": spec})
            log.info("gave the follower Lease back", extra={"fields": {"identity": self.identity}})
        except StagegateError as exc:
            log.warning(
                "could not give the follower Lease back; it runs out", extra={"fields": {"reason": str(exc)}}
            )
        self._lease, self._renewed_at = None, None

    def _take(self, began: float) -> None:
        current = self.kube.read_lease(self.namespace, self.name)
        if current is None:
            self._won(self.kube.create_lease(self._claimed(self._new(), {})), began)
            return
        spec, meta = current.get("spec") or {}, current.get("metadata") or {}
        holder = spec.get("holderIdentity")
        if holder and holder != self.identity:
            key = (self.namespace, self.name, str(meta.get("uid") or ""))
            claimed = spec.get("leaseDurationSeconds")
            duration = (
                claimed if isinstance(claimed, int) and not isinstance(claimed, bool) else self.duration
            )
            if not self._watch.ran_out(key, str(meta.get("resourceVersion") or ""), duration):
                return
            log.warning(
                "the follower Lease ran out unrenewed; taking it over",
                extra={"fields": {"from": holder, "identity": self.identity}},
            )
        self._won(
            self.kube.replace_lease(self._claimed(current, read_resume(meta.get("annotations")))), began
        )

    def _won(self, lease: dict[str, Any], began: float) -> None:
        self._lease, self._renewed_at = lease, began
        self.resume = read_resume((lease.get("metadata") or {}).get("annotations"))
        self.terms += 1
        log.info(
            "this replica follows changes now",
            extra={"fields": {"identity": self.identity, "resume": self.resume or "list everything"}},
        )

    def _lost(self, why: str) -> None:
        if self._lease is not None:
            log.warning("this replica no longer follows changes", extra={"fields": {"reason": why}})
        self._lease, self._renewed_at = None, None

    def _new(self) -> dict[str, Any]:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/managed-by": FIELD_MANAGER},
            },
            "spec": {},
        }

    def _claimed(self, lease: Mapping[str, Any], resume: Mapping[str, str]) -> dict[str, Any]:
        """The Lease held by this replica from now, with the resume point (kept as is when empty)."""
        stamp = time_rfc3339(datetime.datetime.fromtimestamp(self._clock(), datetime.UTC), micro=True)
        spec = dict(lease.get("spec") or {})
        if spec.get("holderIdentity") != self.identity:
            spec.update(acquireTime=stamp, leaseTransitions=int(spec.get("leaseTransitions") or 0) + 1)
        spec.update(holderIdentity=self.identity, leaseDurationSeconds=self.duration, renewTime=stamp)
        meta = dict(lease.get("metadata") or {})
        if resume:
            meta["annotations"] = {**(meta.get("annotations") or {}), **resume_annotation(resume)}
        return {**lease, "metadata": meta, "spec": spec}
