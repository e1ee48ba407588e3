"""What the follower makes of a watch: which events are changes worth acting on, and where to resume.

On a cluster with no audit webhook (GKE, EKS, AKS without our sinks, any in-cluster install), the
follower (`stagegate.follower`) lists and watches Rollouts and Environments as kuberik's Go controller
does, and turns each change into the "look again" the audit paths act on (`shared.audit.look_again`).
This module is its pure part:

* `Seen` remembers, per object, a fingerprint of what stagegate reads from it (a Rollout's `status`; an
  Environment's spec, labels, annotations and uid), so the writes that change nothing stagegate reads
  (stagegate's own status writes on Environments, `managedFields`, a Rollout's spec) cost nothing. It
  holds one short digest per object (bounded by the cluster's Rollouts and Environments) and forgets
  deleted ones; after a relist it starts again from the listing.
* `parse_event` reads one watch line: a change, a bookmark (a newer resourceVersion with nothing
  changed), or `Expired` (the `ERROR` event with code 410: the version is older than the server keeps).
* The resume point: the resourceVersion each stream had reached when every change before it was
  handled, kept in the follower's Lease (`RESUME_ANNOTATION`) so a restarted or newly elected follower
  resumes there instead of losing what changed meanwhile. resourceVersions are opaque (the API
  conventions forbid comparing them), so they are only stored and handed back, never ordered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.audit import Route
from shared.errors import BadEvent, StagegateError
from shared.gate import plan_gates
from shared.views import Environment, RolloutGate

RESUME_ANNOTATION = "stagegate.kuberik.com/resume-from"
"""On the follower's Lease: JSON `{stream: resourceVersion}` (streams as `stream_key` names them)."""

CHANGES = ("ADDED", "MODIFIED", "DELETED")


@dataclass(frozen=True, order=True, slots=True)
class Change:
    """An object to look at again: a Rollout whose status changed, or a changed Environment."""

    route: Route
    namespace: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.route} {self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One line of a watch: `type` (ADDED, MODIFIED, DELETED, BOOKMARK), the object, its version."""

    type: str
    object: Mapping[str, Any]
    resource_version: str


@dataclass(frozen=True, slots=True)
class Expired:
    """The watch cannot resume from the version it was given: list again."""

    message: str


def parse_event(raw: Any) -> WatchEvent | Expired:
    """A watch line as the API server sends it; `BadEvent` for anything else (an `ERROR` other than
    410 among them: the watch is started again)."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("object"), Mapping):
        raise BadEvent("a watch line is not an event with an object")
    kind, obj = raw.get("type"), raw["object"]
    if kind == "ERROR":
        message = str(obj.get("message") or "no message")
        if obj.get("code") == 410:
            return Expired(message)
        raise BadEvent(f"the watch ended with an error: {obj.get('code')} {message}")
    meta = obj.get("metadata")
    version = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    if kind not in (*CHANGES, "BOOKMARK") or not isinstance(version, str) or not version:
        raise BadEvent(f"a watch event of type {kind!r} without a resourceVersion")
    return WatchEvent(str(kind), obj, version)


def fingerprint(route: Route, obj: Mapping[str, Any]) -> str:
    """A digest of what stagegate reads from the object: equal digests, nothing to do."""
    meta = obj.get("metadata") or {}
    if route == "rollout":
        read: Any = obj.get("status")
    else:
        annotations = dict(meta.get("annotations") or {})
        annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
        read = [obj.get("spec"), meta.get("labels"), annotations, meta.get("uid")]
    return hashlib.sha256(json.dumps(read, sort_keys=True, default=str).encode()).hexdigest()[:32]


class Seen:
    """The fingerprint of every object of one stream as last offered, to tell changes from echoes."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self._prints: dict[tuple[str, str], str] = {}

    def __len__(self) -> int:
        return len(self._prints)

    def relisted(self, objects: list[Mapping[str, Any]]) -> list[Change]:
        """Start again from a listing: every object in it is a change (nothing is known of what happened
        while the watch was away)."""
        self._prints.clear()
        changes = []
        for obj in objects:
            change = self.changed(WatchEvent("ADDED", obj, ""))
            if change is not None:
                changes.append(change)
        return changes

    def changed(self, event: WatchEvent) -> Change | None:
        """The change this event is, or None: a deletion (the gates go with their Environment; a gone
        Rollout has nothing to report), or a write that left what stagegate reads as it was."""
        meta = event.object.get("metadata") or {}
        namespace, name = meta.get("namespace"), meta.get("name")
        if not (isinstance(namespace, str) and namespace and isinstance(name, str) and name):
            return None
        key = (namespace, name)
        if event.type == "DELETED":
            self._prints.pop(key, None)
            return None
        digest = fingerprint(self.route, event.object)
        if self._prints.get(key) == digest:
            return None
        self._prints[key] = digest
        return Change(self.route, namespace, name)


def needing_gate_work(
    changes: list[Change], objects: list[Mapping[str, Any]], gates: list[RolloutGate]
) -> list[Change]:
    """Of the Environment changes a relist made, those whose gates are not what the Environment asks
    for now (missing, or to be moved, narrowed or closed): the others need no work of their own, so a
    relist of a thousand Environments costs one list of gates, not a thousand. Their recompute comes
    with their Rollout's changes. One that cannot be planned here is kept, for the handler to report."""
    by_namespace: dict[str, list[RolloutGate]] = {}
    for gate in gates:
        by_namespace.setdefault(gate.namespace, []).append(gate)
    listed = {(str((o.get("metadata") or {}).get("namespace")), str((o.get("metadata") or {}).get("name"))): o
              for o in objects}  # fmt: skip
    kept = []
    for change in changes:
        try:
            env = Environment.from_raw(listed[(change.namespace, change.name)])
            if all(
                plan.action == "unchanged" for plan in plan_gates(env, by_namespace.get(env.namespace, []))
            ):
                continue
        except (KeyError, StagegateError):
            pass
        kept.append(change)
    return kept


def stream_key(plural: str, namespace: str | None) -> str:
    """A stream's name in the resume point: `rollouts`, or `rollouts/NAMESPACE` per namespace."""
    return plural if namespace is None else f"{plural}/{namespace}"


def read_resume(annotations: Mapping[str, Any] | None) -> dict[str, str]:
    """The resume point kept on the Lease; empty (list everything again) when absent or unreadable."""
    raw = (annotations or {}).get(RESUME_ANNOTATION)
    if not isinstance(raw, str):
        return {}
    try:
        doc = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(doc, Mapping):
        return {}
    return {k: v for k, v in doc.items() if isinstance(k, str) and isinstance(v, str) and v}


def resume_annotation(points: Mapping[str, str]) -> dict[str, str]:
    """The annotation that keeps `points` (sorted, compact: it is rewritten at every renewal)."""
    return {RESUME_ANNOTATION: json.dumps(dict(sorted(points.items())), separators=(",", ":"))}
