"""Kubernetes audit events (`audit.k8s.io/v1`) as typed views, and which of them stagegate acts on.

The kube-apiserver audit webhook posts an `EventList`; Pub/Sub messages carry an `Event` or an
`EventList`, or on GKE a Cloud Audit Logs `LogEntry` from a Logging sink (read as the Metadata-level
Event it records, `shared.cloud_audit_log`). A document is parsed whole before anything is acted on,
so one bad item rejects the delivery and changes nothing. Routing is a table keyed on (group,
resource, verb); everything that is not in it is ignored with a reason that gets counted, never
treated as an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.cloud_audit_log import audit_event_from_log_entry, is_log_entry
from shared.errors import BadEvent, PayloadTooLarge
from shared.json_input import decode_json
from shared.views import ENVIRONMENT_GROUP, GATE_GROUP

AUDIT_API_VERSION = "audit.k8s.io/v1"

Route = Literal["environment", "rollout"]

# (group, resource, subresource, verb) -> route. Environments: a spec change may change the gate's
# shape. Rollouts: a status change may list a candidate whose revision was baked before.
ROUTES: Mapping[tuple[str, str, str | None, str], Route] = {
    **{
        (ENVIRONMENT_GROUP, "environments", None, verb): "environment"
        for verb in ("create", "update", "patch")
    },
    **{(GATE_GROUP, "rollouts", "status", verb): "rollout" for verb in ("update", "patch")},
}


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """The object an audit event is about."""

    resource: str
    api_group: str
    namespace: str | None
    name: str | None
    subresource: str | None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One `audit.k8s.io/v1` Event."""

    audit_id: str
    stage: str
    verb: str
    object_ref: ObjectRef | None
    status_code: int | None
    response_object: Mapping[str, Any] | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_raw(cls, raw: object, where: str = "event") -> AuditEvent:
        """Read one event strictly; raise `BadEvent` naming the first bad field."""
        if not isinstance(raw, Mapping):
            raise BadEvent(f"{where} must be an object")
        for key in ("auditID", "stage", "verb"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise BadEvent(f"{where}.{key} is required and must be a non-empty string")
        status = raw.get("responseStatus")
        code = status.get("code") if isinstance(status, Mapping) else None
        if code is not None and not isinstance(code, int):
            raise BadEvent(f"{where}.responseStatus.code must be an integer")
        response = raw.get("responseObject")
        if response is not None and not isinstance(response, Mapping):
            raise BadEvent(f"{where}.responseObject must be an object")
        return cls(
            audit_id=raw["auditID"],
            stage=raw["stage"],
            verb=raw["verb"],
            object_ref=_object_ref(raw.get("objectRef"), where),
            status_code=code,
            response_object=response,
            raw=raw,
        )


def _object_ref(raw: object, where: str) -> ObjectRef | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise BadEvent(f"{where}.objectRef must be an object")
    values = {k: raw.get(k) for k in ("resource", "apiGroup", "namespace", "name", "subresource")}
    for key, value in values.items():
        if value is not None and not isinstance(value, str):
            raise BadEvent(f"{where}.objectRef.{key} must be a string")
    return ObjectRef(
        resource=values["resource"] or "",
        api_group=values["apiGroup"] or "",
        namespace=values["namespace"] or None,
        name=values["name"] or None,
        subresource=values["subresource"] or None,
    )


def parse_audit_json(body: bytes, max_events: int | None = None) -> list[AuditEvent]:
    """Parse a JSON `Event`, `EventList` or GKE audit `LogEntry`; raise `BadEvent` on anything else."""
    return parse_audit_document(decode_json(body, "body"), max_events)


def parse_audit_document(document: object, max_events: int | None = None) -> list[AuditEvent]:
    """Turn a decoded `Event`, `EventList` or GKE audit `LogEntry` into events, all or nothing.

    An `EventList` of more than `max_events` items is refused whole (`PayloadTooLarge`) before any
    item is read: each event may cost a Kubernetes write, so the count bounds a delivery's work.
    """
    if not isinstance(document, Mapping):
        raise BadEvent("audit document must be a JSON object")
    if is_log_entry(document):
        return [AuditEvent.from_raw(audit_event_from_log_entry(document), "LogEntry")]
    api_version, kind = document.get("apiVersion"), document.get("kind")
    if api_version != AUDIT_API_VERSION:
        raise BadEvent(f"expected apiVersion {AUDIT_API_VERSION}, got {api_version!r}")
    if kind == "Event":
        return [AuditEvent.from_raw(document)]
    if kind == "EventList":
        items = document.get("items")
        if items is None:
            return []
        if not isinstance(items, list):
            raise BadEvent("EventList.items must be a list")
        if max_events is not None and len(items) > max_events:
            raise PayloadTooLarge(
                f"EventList carries {len(items)} events, more than the {max_events} one delivery may carry"
            )
        return [AuditEvent.from_raw(item, f"items[{i}]") for i, item in enumerate(items)]
    raise BadEvent(f"expected kind Event or EventList, got {kind!r}")


@dataclass(frozen=True, slots=True)
class Routed:
    """An event stagegate acts on, with the object it names."""

    route: Route
    event: AuditEvent
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """An event stagegate does not act on, and why (counted in the answer)."""

    reason: str


def route(event: AuditEvent) -> Routed | Ignored:
    """Decide whether an event is one stagegate acts on: a completed, successful change it routes."""
    ref = event.object_ref
    if ref is None:
        return Ignored("no objectRef")
    handler = ROUTES.get((ref.api_group, ref.resource, ref.subresource, event.verb))
    if handler is None:
        if ref.subresource is not None and (ref.api_group, ref.resource, None, event.verb) in ROUTES:
            return Ignored(f"subresource {ref.subresource}")
        where = f"{ref.resource or '-'}{'/' + ref.subresource if ref.subresource else ''}"
        return Ignored(f"not routed: {where}.{ref.api_group or 'core'} {event.verb}")
    if event.stage != "ResponseComplete":
        return Ignored(f"stage {event.stage}")
    if event.status_code is None or not 200 <= event.status_code < 300:
        return Ignored(f"response status {event.status_code}")
    namespace, name = ref.namespace, ref.name
    if isinstance(event.response_object, Mapping):
        meta = event.response_object.get("metadata")
        if isinstance(meta, Mapping):
            namespace = namespace or meta.get("namespace")
            name = name or meta.get("name")
    if not (isinstance(namespace, str) and namespace and isinstance(name, str) and name):
        return Ignored("names no namespace/name")
    return Routed(route=handler, event=event, namespace=namespace, name=name)


HAND_OFF_ANNOTATION = "stagegate.kuberik.com/hand-off"
HAND_OFF_USER = "stagegate:hand-off"


def look_again(namespace: str, name: str, why: str, audit_id: str, route_to: Route = "rollout") -> Routed:
    """A "look again at the gates governed by this Rollout" (or, with `route_to="environment"`, at this
    Environment's gates) in the shape the audit path carries.

    stagegate hands work it could not finish in time (a revocation fanning out past a webhook's
    deadline) to the durable audit transport as such events, and the follower (`stagegate.follower`)
    turns the changes it watches into them. Like every event, it only says "look again": its consumer
    reads the Environments, gates and Rollout from the API and recomputes, so it claims nothing about
    what changed. It says who made it (`user`) and why (an annotation), for logs.
    """
    group, resource, subresource, verb = next(
        key for key, to in ROUTES.items() if to == route_to and key[3] == "patch"
    )
    raw = {
        "apiVersion": AUDIT_API_VERSION,
        "kind": "Event",
        "level": "Metadata",
        "auditID": audit_id,
        "stage": "ResponseComplete",
        "verb": verb,
        "user": {"username": HAND_OFF_USER},
        "objectRef": {
            "resource": resource,
            "subresource": subresource,
            "namespace": namespace,
            "name": name,
            "apiGroup": group,
            "apiVersion": "v1alpha1",
        },
        "responseStatus": {"metadata": {}, "code": 200},
        "annotations": {HAND_OFF_ANNOTATION: why},
    }
    routed = route(AuditEvent.from_raw(raw))
    assert isinstance(routed, Routed), routed  # the table routes what it lists
    return routed
