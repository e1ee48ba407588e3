"""`admission.k8s.io/v1` AdmissionReview in, a decision as a value out, and the review to answer with.

The kube-apiserver calls `k8s_admission` as a validating webhook for three jobs: the deploy guard (Flux
`OCIRepository` and `Kustomization` writes and deletes, `shared.deploy_guard`), the gate at admission
(`Environment` writes, `shared.gate_admission`) and the namespace guard (removing a namespace's opt-in
label, `shared.namespace_guard`). A review is read once, strictly, into `AdmissionRequest`; anything
malformed is a `BadEvent` (answered 400, which the apiserver treats as a failed call and resolves by the
webhook's `failurePolicy`). Which job a request is for comes from one table keyed on (group, resource,
operation), `ROUTES`; what is not in it is allowed untouched.

A `Decision` is the whole answer: allowed or not, the one sentence a refused writer sees, the
warnings the apiserver passes on to the client, the reason for the log, and the Kubernetes Events to
record. This module never does I/O and never decides anything itself: it reads and writes the
envelope.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.errors import BadEvent
from shared.json_input import decode_json
from shared.views import ENVIRONMENT_GROUP

ADMISSION_API_VERSION = "admission.k8s.io/v1"
ADMISSION_KIND = "AdmissionReview"
OCI_GROUP = "source.toolkit.fluxcd.io"
KUSTOMIZE_GROUP = "kustomize.toolkit.fluxcd.io"

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
OPERATIONS: tuple[Operation, ...] = ("CREATE", "UPDATE", "DELETE", "CONNECT")
_OPERATION_NAMES: Mapping[str, Operation] = {op: op for op in OPERATIONS}
Route = Literal["deploy", "environment", "namespace"]

ROUTES: Mapping[tuple[str, str, Operation], Route] = {
    **{(OCI_GROUP, "ocirepositories", op): "deploy" for op in ("CREATE", "UPDATE", "DELETE")},
    **{(KUSTOMIZE_GROUP, "kustomizations", op): "deploy" for op in ("CREATE", "UPDATE", "DELETE")},
    **{(ENVIRONMENT_GROUP, "environments", op): "environment" for op in ("CREATE", "UPDATE")},
    ("", "namespaces", "UPDATE"): "namespace",
}
"""(group, resource, operation) -> the job. Only main resources: a `/status` write changes no version, and
the namespace controller finalizes a namespace through `/finalize` and `/status`, never a label."""

SERVED_VERSIONS: Mapping[tuple[str, str], frozenset[str]] = {
    (OCI_GROUP, "ocirepositories"): frozenset({"v1", "v1beta2"}),
    (KUSTOMIZE_GROUP, "kustomizations"): frozenset({"v1", "v1beta1", "v1beta2"}),
    (ENVIRONMENT_GROUP, "environments"): frozenset({"v1alpha1"}),
    ("", "namespaces"): frozenset({"v1"}),
}
"""The versions the real CRDs serve (source-controller v1.6.2, kustomize-controller v1.6.1, environment
controller v0.1.5), and core v1 namespaces; in all of them `spec.ref.tag` and `spec.postBuild.substitute`
have the same shape."""

MAX_WARNING_LENGTH = 256
"""The apiserver cuts each warning to 256 characters once the answer's warnings pass 4 KiB; stay below."""


@dataclass(frozen=True, slots=True)
class GroupVersionResource:
    """`request.resource`: what the request is about, in the version the webhook registered for."""

    group: str
    version: str
    resource: str


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    """`request` of an `admission.k8s.io/v1` AdmissionReview, read strictly."""

    uid: str
    resource: GroupVersionResource
    sub_resource: str | None
    operation: Operation
    namespace: str | None
    name: str | None
    dry_run: bool
    object: Mapping[str, Any] | None
    old_object: Mapping[str, Any] | None
    username: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def key(self) -> str:
        """`namespace/name` (or what is known of it), for logs and messages."""
        name = self.name or _meta(self.object).get("name") or _meta(self.old_object).get("name") or "?"
        return f"{self.namespace}/{name}" if self.namespace else str(name)

    @property
    def route(self) -> Route | None:
        """The job this request is for, or None when stagegate has nothing to say about it."""
        if self.sub_resource:
            return None
        return ROUTES.get((self.resource.group, self.resource.resource, self.operation))

    @property
    def version_known(self) -> bool:
        """Whether the object comes in a version whose fields stagegate knows."""
        served = SERVED_VERSIONS.get((self.resource.group, self.resource.resource))
        return served is not None and self.resource.version in served


def _meta(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    meta = (obj or {}).get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _str(parent: Mapping[str, Any], key: str, where: str, *, required: bool) -> str | None:
    value = parent.get(key)
    if value is None or (value == "" and not required):
        if required:
            raise BadEvent(f"{where}.{key} is required")
        return None
    if not isinstance(value, str) or (required and not value):
        raise BadEvent(f"{where}.{key} must be a {'non-empty ' if required else ''}string")
    return value


def _object(parent: Mapping[str, Any], key: str, *, required: bool) -> Mapping[str, Any] | None:
    value = parent.get(key)
    if value is None:
        if required:
            raise BadEvent(f"request.{key} is required for request.operation {parent.get('operation')}")
        return None
    if not isinstance(value, Mapping):
        raise BadEvent(f"request.{key} must be an object")
    return value


def parse_admission_review(body: bytes | str) -> AdmissionRequest:
    """Read an AdmissionReview body; raise `BadEvent` saying what is wrong with it."""
    document = decode_json(body, "AdmissionReview")
    if not isinstance(document, Mapping):
        raise BadEvent("AdmissionReview must be a JSON object")
    if document.get("apiVersion") != ADMISSION_API_VERSION:
        raise BadEvent(
            f"apiVersion must be {ADMISSION_API_VERSION} (the webhook declares admissionReviewVersions: "
            f"[v1]), got {document.get('apiVersion')!r}"
        )
    if document.get("kind") != ADMISSION_KIND:
        raise BadEvent(f"kind must be {ADMISSION_KIND}, got {document.get('kind')!r}")
    request = document.get("request")
    if not isinstance(request, Mapping):
        raise BadEvent("request is required and must be an object")
    uid = _str(request, "uid", "request", required=True)
    raw_operation = request.get("operation")
    operation = _OPERATION_NAMES.get(raw_operation) if isinstance(raw_operation, str) else None
    if operation is None:
        raise BadEvent(f"request.operation must be one of {', '.join(OPERATIONS)}, got {raw_operation!r}")
    resource = request.get("resource")
    if not isinstance(resource, Mapping):
        raise BadEvent("request.resource is required and must be an object")
    group = resource.get("group", "")
    if not isinstance(group, str):
        raise BadEvent("request.resource.group must be a string")
    dry_run = request.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise BadEvent("request.dryRun must be a boolean")
    user = request.get("userInfo") or {}
    if not isinstance(user, Mapping):
        raise BadEvent("request.userInfo must be an object")
    return AdmissionRequest(
        uid=uid or "",
        resource=GroupVersionResource(
            group=group,
            version=_str(resource, "version", "request.resource", required=True) or "",
            resource=_str(resource, "resource", "request.resource", required=True) or "",
        ),
        sub_resource=_str(request, "subResource", "request", required=False),
        operation=operation,
        namespace=_str(request, "namespace", "request", required=False),
        name=_str(request, "name", "request", required=False),
        dry_run=dry_run,
        object=_object(request, "object", required=operation in ("CREATE", "UPDATE")),
        # DELETE carries the object being deleted as `oldObject` (kube-apiserver >= 1.15) and no `object`.
        old_object=_object(request, "oldObject", required=operation in ("UPDATE", "DELETE")),
        username=_str(user, "username", "request.userInfo", required=False),
        raw=request,
    )


@dataclass(frozen=True, slots=True)
class EventNotice:
    """A Kubernetes Event to record about an object (the shell writes it; dry runs write none)."""

    namespace: str | None
    """The object's namespace; None for a cluster-scoped object such as a Namespace, whose Events go to
    `default`, where client-go's recorders put them."""
    api_version: str
    kind: str
    name: str
    uid: str | None
    reason: str
    message: str

    @property
    def about(self) -> str:
        """`Kind namespace/name` (or `Kind name`), for logs."""
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one review and why; `message` is what a refused writer reads."""

    allowed: bool
    reason: str
    message: str = ""
    warnings: tuple[str, ...] = ()
    events: tuple[EventNotice, ...] = ()

    def to_log(self) -> dict[str, Any]:
        """The fields of the decision's log line."""
        return {
            "allowed": self.allowed,
            "reason": self.reason,
            **({"denial": self.message} if not self.allowed else {}),
            **({"warnings": list(self.warnings)} if self.warnings else {}),
        }


def allow(reason: str, warnings: tuple[str, ...] = (), events: tuple[EventNotice, ...] = ()) -> Decision:
    """Let the write through; `reason` goes to the log."""
    return Decision(allowed=True, reason=reason, warnings=warnings, events=events)


def deny(message: str, reason: str | None = None) -> Decision:
    """Refuse the write with `message`, the one sentence the writer sees."""
    return Decision(allowed=False, reason=reason or message, message=message)


def review_response(request: AdmissionRequest, decision: Decision) -> dict[str, Any]:
    """The AdmissionReview to answer with (HTTP 200 whether allowed or not, as the apiserver expects)."""
    response: dict[str, Any] = {"uid": request.uid, "allowed": decision.allowed}
    if not decision.allowed:
        response["status"] = {"code": 403, "reason": "Forbidden", "message": decision.message}
    if decision.warnings:
        response["warnings"] = [_warning(w) for w in decision.warnings]
    return {"apiVersion": ADMISSION_API_VERSION, "kind": ADMISSION_KIND, "response": response}


def _warning(text: str) -> str:
    """One printable line the apiserver can put into a `Warning` header unchanged."""
    line = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return line if len(line) <= MAX_WARNING_LENGTH else line[: MAX_WARNING_LENGTH - 3] + "..."
