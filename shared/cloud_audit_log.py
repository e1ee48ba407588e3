"""GKE's Kubernetes audit entries (Cloud Audit Logs `LogEntry`s) as `audit.k8s.io/v1` Events.

On GKE nobody can set the kube-apiserver's audit webhook flags. GKE writes the apiserver's audit
events to Cloud Logging instead, as `LogEntry`s whose `protoPayload` is a `google.cloud.audit.AuditLog`
(`@type` `type.googleapis.com/google.cloud.audit.AuditLog`, `serviceName` `k8s.io`); a Logging sink
routes them to Pub/Sub, one entry (as JSON) per message. This module turns one such entry into the
`audit.k8s.io/v1` Event stagegate already understands, so `shared.audit.route` and the services after
it treat both sources alike.

It reads only what an entry reliably carries:

* the verb: the last dot-segment of `protoPayload.methodName` (`io.k8s.core.v1.pods.create`,
  `io.k8s.core.v1.nodes.status.patch`). The group in a method name is not parsed: a group's dots and
  the method's dots cannot be told apart;
* the object: `protoPayload.resourceName`, `<group>/<version>/namespaces/<ns>/<resource>/<name>[/<sub>]`
  for namespaced objects, `<group>/<version>/<resource>/<name>[/<sub>]` for cluster-scoped ones, the
  core group written `core` (`core/v1/namespaces/default/pods/nginx`,
  `apps/v1/namespaces/kube-system/deployments/coredns/scale`, `core/v1/nodes/NAME/status`);
* the outcome: `protoPayload.status.code`, a `google.rpc.Code`; 0 (proto3 JSON leaves it out, often
  as `"status": {}`) is success, anything else a failed request that changed nothing.

It never reads `protoPayload.request` or `protoPayload.response`: GKE may truncate them (label
`audit.k8s.io/truncated`) or leave them out (Metadata-level policy rules), so the Event it makes is at
the Metadata level, without objects, and the services read the object from the API, as they do for any
Metadata-level event. A collection path (`.../namespaces/NS/environments`, a create GKE logged without
the name) names no object and is ignored like any event without one; the resync heals what is missed.
`.../namespaces/NS/X` is read as the collection X in NS, so a core Namespace's own subresource
(`core/v1/namespaces/NS/finalize`) reads as a collection too: stagegate routes neither.

Sources: Google's "GKE audit logging information" and "Audit
policy" pages (cloud.google.com/kubernetes-engine/docs/how-to/audit-logging, .../concepts/audit-policy:
the LogEntry / AuditLog structure, Admin Activity vs Data Access logs); the AuditLog and google.rpc
protos (package google-cloud-audit-log, googleapis-common-protos); Google's Kubernetes History
Inspector (GoogleCloudPlatform/khi, `googlecloudlogk8saudit/contract/fieldset.go`: the resourceName
layouts above, verb = last methodName segment, error = `status.code != 0`); Falco's `k8saudit-gke`
plugin (falcosecurity/plugins, `pkg/k8sauditgke/convert.go`, `source.go`: the same resourceName
layouts, `serviceName` `k8s.io`, `resource.type` `k8s_cluster`). Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.errors import BadEvent

AUDIT_LOG_TYPE = "type.googleapis.com/google.cloud.audit.AuditLog"
KUBERNETES_SERVICE = "k8s.io"
CORE_GROUP = "core"
PAYLOAD = "protoPayload"

# What `shared.audit` calls AUDIT_API_VERSION (repeated here: that module imports this one).
EVENT_API_VERSION = "audit.k8s.io/v1"

# google.rpc.Code -> the HTTP status it stands for (google/rpc/code.proto). Only 0 is a success;
# an unknown code counts as 500.
HTTP_STATUS: Mapping[int, int] = {
    0: 200,  # OK
    1: 499,  # CANCELLED
    2: 500,  # UNKNOWN
    3: 400,  # INVALID_ARGUMENT
    4: 504,  # DEADLINE_EXCEEDED
    5: 404,  # NOT_FOUND
    6: 409,  # ALREADY_EXISTS
    7: 403,  # PERMISSION_DENIED
    8: 429,  # RESOURCE_EXHAUSTED
    9: 400,  # FAILED_PRECONDITION
    10: 409,  # ABORTED
    11: 400,  # OUT_OF_RANGE
    12: 501,  # UNIMPLEMENTED
    13: 500,  # INTERNAL
    14: 503,  # UNAVAILABLE
    15: 500,  # DATA_LOSS
    16: 401,  # UNAUTHENTICATED
}

# Annotations of the Event made from an entry: where it came from, for logs and dead letters.
ANNOTATION_PREFIX = "stagegate.kuberik.com/cloud-audit-log."


def is_log_entry(document: Mapping[str, Any]) -> bool:
    """True for a Cloud Logging `LogEntry` with a proto payload (what a Logging sink publishes)."""
    return PAYLOAD in document


@dataclass(frozen=True, slots=True)
class ResourceName:
    """The object a `protoPayload.resourceName` names (`group` is "" for the core group)."""

    group: str
    version: str
    resource: str
    namespace: str | None
    name: str | None
    subresource: str | None

    @classmethod
    def parse(cls, text: str, where: str) -> ResourceName:
        """Read `<group>/<version>/[namespaces/<ns>/]<resource>[/<name>[/<subresource>...]]`."""
        parts = text.split("/")
        if len(parts) < 3 or not all(parts):
            layout = "<group>/<version>/[namespaces/<ns>/]<resource>[/<name>]"
            raise BadEvent(f"{where} must look like {layout}, got {text!r}")
        group, version, rest = parts[0], parts[1], parts[2:]
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        return cls(
            group="" if group == CORE_GROUP else group,
            version=version,
            resource=rest[0],
            namespace=namespace,
            name=rest[1] if len(rest) > 1 else None,
            subresource=rest[2] if len(rest) > 2 else None,
        )


@dataclass(frozen=True, slots=True)
class KubernetesAuditEntry:
    """One GKE Kubernetes audit `LogEntry`: what stagegate reads of it."""

    insert_id: str
    method_name: str
    resource_name: str
    resource: ResourceName
    rpc_code: int
    log_name: str | None
    cluster: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_raw(cls, raw: object, where: str = "LogEntry") -> KubernetesAuditEntry:
        """Read one entry strictly; raise `BadEvent` naming the first bad field."""
        if not isinstance(raw, Mapping):
            raise BadEvent(f"{where} must be an object")
        payload = raw.get(PAYLOAD)
        if not isinstance(payload, Mapping):
            raise BadEvent(f"{where}.{PAYLOAD} must be an object")
        inner = f"{where}.{PAYLOAD}"
        if payload.get("@type") != AUDIT_LOG_TYPE:
            raise BadEvent(f"{inner}.@type must be {AUDIT_LOG_TYPE}, got {payload.get('@type')!r}")
        if payload.get("serviceName") != KUBERNETES_SERVICE:
            raise BadEvent(
                f"not a Kubernetes audit entry: {inner}.serviceName is {payload.get('serviceName')!r},"
                f" not {KUBERNETES_SERVICE!r}"
            )
        insert_id = _required_str(raw, "insertId", where)
        method = _required_str(payload, "methodName", inner)
        head, _, verb = method.rpartition(".")
        if not head or not verb:
            raise BadEvent(f"{inner}.methodName must be a dotted name ending in the verb, got {method!r}")
        resource_name = _required_str(payload, "resourceName", inner)
        return cls(
            insert_id=insert_id,
            method_name=method,
            resource_name=resource_name,
            resource=ResourceName.parse(resource_name, f"{inner}.resourceName"),
            rpc_code=_rpc_code(payload.get("status"), f"{inner}.status"),
            log_name=_optional_str(raw, "logName"),
            cluster=_cluster(raw.get("resource")),
            raw=raw,
        )

    @property
    def verb(self) -> str:
        """The Kubernetes verb: the method name's last segment (`create`, `update`, `patch`, ...)."""
        return self.method_name.rsplit(".", 1)[1]

    @property
    def succeeded(self) -> bool:
        """True when the request succeeded (`google.rpc.Code` OK)."""
        return self.rpc_code == 0

    @property
    def http_status(self) -> int:
        """The HTTP status the entry's `google.rpc.Code` stands for."""
        return HTTP_STATUS.get(self.rpc_code, 500)

    def to_audit_event(self) -> dict[str, Any]:
        """The `audit.k8s.io/v1` Event this entry records, at the Metadata level (no objects)."""
        ref = self.resource
        object_ref = {
            "apiGroup": ref.group,
            "apiVersion": ref.version,
            "resource": ref.resource,
            "namespace": ref.namespace,
            "name": ref.name,
            "subresource": ref.subresource,
        }
        annotations = {
            "log-name": self.log_name,
            "insert-id": self.insert_id,
            "method-name": self.method_name,
            "resource-name": self.resource_name,
            "rpc-code": str(self.rpc_code),
            "cluster": self.cluster,
        }
        return {
            "kind": "Event",
            "apiVersion": EVENT_API_VERSION,
            "level": "Metadata",
            "auditID": self.insert_id,
            # GKE logs a request once it completed (its policy omits RequestReceived).
            "stage": "ResponseComplete",
            "verb": self.verb,
            "objectRef": {key: value for key, value in object_ref.items() if value is not None},
            "responseStatus": {"code": self.http_status},
            "annotations": {
                ANNOTATION_PREFIX + key: value for key, value in annotations.items() if value is not None
            },
        }


def audit_event_from_log_entry(raw: object, where: str = "LogEntry") -> dict[str, Any]:
    """The Metadata-level `audit.k8s.io/v1` Event a GKE audit `LogEntry` records; `BadEvent` if malformed."""
    return KubernetesAuditEntry.from_raw(raw, where).to_audit_event()


def _required_str(parent: Mapping[str, Any], key: str, where: str) -> str:
    value = parent.get(key)
    if not isinstance(value, str) or not value:
        raise BadEvent(f"{where}.{key} is required and must be a non-empty string")
    return value


def _optional_str(parent: Mapping[str, Any], key: str) -> str | None:
    value = parent.get(key)
    return value if isinstance(value, str) and value else None


def _rpc_code(status: object, where: str) -> int:
    """`status.code`; proto3 JSON leaves out a zero code and may leave out the whole (OK) status."""
    if status is None:
        return 0
    if not isinstance(status, Mapping):
        raise BadEvent(f"{where} must be an object")
    code = status.get("code", 0)
    if isinstance(code, bool) or not isinstance(code, int):
        raise BadEvent(f"{where}.code must be an integer (a google.rpc.Code)")
    return code


def _cluster(resource: object) -> str | None:
    """`<project>/<location>/<cluster>` from `resource.labels`, for logs; None when not all are there."""
    labels = resource.get("labels") if isinstance(resource, Mapping) else None
    if not isinstance(labels, Mapping):
        return None
    parts = [labels.get(key) for key in ("project_id", "location", "cluster_name")]
    if not all(isinstance(part, str) and part for part in parts):
        return None
    return "/".join(str(part) for part in parts)
