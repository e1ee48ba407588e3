"""Unit tests of shared/cloud_audit_log.py: GKE's Kubernetes audit entries read as audit Events.

The inputs are built with Google's own types: the `AuditLog` message of google-cloud-audit-log
(with `google.rpc.Status`, `AuthenticationInfo`, `RequestMetadata` and `Struct` bodies), packed into
an `Any` and written as JSON by protobuf's `MessageToDict`, which is how the `protoPayload` of a
`LogEntry` is written (`@type` first). The `LogEntry` message itself lives in google-cloud-logging,
which is not installed, so only its envelope is written by hand here: `logName`, `resource` (type
`k8s_cluster` and its labels), `timestamp`, `insertId` and `protoPayload`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from google.cloud.audit import audit_log_pb2
from google.protobuf import any_pb2, json_format, struct_pb2
from google.rpc import status_pb2

from shared.audit import (
    AUDIT_API_VERSION,
    AuditEvent,
    Ignored,
    ObjectRef,
    Routed,
    parse_audit_document,
    parse_audit_json,
    route,
)
from shared.cloud_audit_log import (
    ANNOTATION_PREFIX,
    AUDIT_LOG_TYPE,
    EVENT_API_VERSION,
    HTTP_STATUS,
    KubernetesAuditEntry,
    ResourceName,
    audit_event_from_log_entry,
)
from shared.errors import BadEvent

PROJECT, LOCATION, CLUSTER = "acme-prod", "europe-west1", "apps-1"
ENVIRONMENTS = "environments.kuberik.com/v1alpha1"
ROLLOUTS = "kuberik.com/v1alpha1"


def audit_log(
    method: str,
    resource_name: str,
    code: int = 0,
    message: str = "",
    *,
    service: str = "k8s.io",
    request: dict[str, Any] | None = None,
    response: dict[str, Any] | None = None,
) -> audit_log_pb2.AuditLog:
    """The AuditLog GKE writes for one Kubernetes API request."""
    log = audit_log_pb2.AuditLog(
        service_name=service,
        method_name=method,
        resource_name=resource_name,
        status=status_pb2.Status(code=code, message=message),
        authentication_info=audit_log_pb2.AuthenticationInfo(principal_email="deployer@acme.example"),
        request_metadata=audit_log_pb2.RequestMetadata(
            caller_ip="203.0.113.7", caller_supplied_user_agent="kubectl/v1.30.0"
        ),
    )
    for target, body in ((log.request, request), (log.response, response)):
        if body is not None:
            target.update(body)
    return log


def envelope(
    payload: audit_log_pb2.AuditLog, *, log: str = "activity", insert_id: str | None = None
) -> dict[str, Any]:
    """A LogEntry as a Logging sink publishes it: the hand-written envelope around the packed payload."""
    packed = any_pb2.Any()
    packed.Pack(payload)
    return {
        "logName": f"projects/{PROJECT}/logs/cloudaudit.googleapis.com%2F{log}",
        "resource": {
            "type": "k8s_cluster",
            "labels": {"project_id": PROJECT, "location": LOCATION, "cluster_name": CLUSTER},
        },
        "timestamp": "2026-11-26T12:00:00.123456Z",
        "insertId": insert_id or str(uuid.uuid4()),
        "protoPayload": json_format.MessageToDict(packed),
    }


def log_entry(
    method: str, resource_name: str, code: int = 0, message: str = "", **kwargs: Any
) -> dict[str, Any]:
    """A GKE Kubernetes audit LogEntry (JSON) for `method` on `resource_name` with google.rpc code `code`."""
    log = kwargs.pop("log", "activity")
    insert_id = kwargs.pop("insert_id", None)
    return envelope(audit_log(method, resource_name, code, message, **kwargs), log=log, insert_id=insert_id)


def environment_entry(namespace: str, name: str, verb: str = "create", code: int = 0) -> dict[str, Any]:
    return log_entry(
        f"io.k8s.environments.kuberik.com.v1alpha1.environments.{verb}",
        f"{ENVIRONMENTS}/namespaces/{namespace}/environments/{name}",
        code,
    )


def rollout_status_entry(namespace: str, name: str, verb: str = "patch", code: int = 0) -> dict[str, Any]:
    return log_entry(
        f"io.k8s.kuberik.com.v1alpha1.rollouts.status.{verb}",
        f"{ROLLOUTS}/namespaces/{namespace}/rollouts/{name}/status",
        code,
        log="data_access",
    )


def one(entry: dict[str, Any]) -> AuditEvent:
    [event] = parse_audit_document(entry)
    return event


# the inputs are what Google's types write


def test_the_payload_is_written_the_way_a_log_entry_carries_it() -> None:
    payload = environment_entry("default", "prod")["protoPayload"]
    assert next(iter(payload)) == "@type"
    assert payload["@type"] == AUDIT_LOG_TYPE
    assert payload["serviceName"] == "k8s.io"
    assert payload["status"] == {}, "proto3 JSON leaves out an OK code"
    assert (
        "code"
        in log_entry("io.k8s.core.v1.pods.create", "core/v1/namespaces/d/pods/p", 7)["protoPayload"]["status"]
    )


# reading an entry


def test_environment_create_entry_is_a_metadata_level_create_of_that_environment() -> None:
    entry = environment_entry("default", "prod")
    event = one(entry)
    assert event.audit_id == entry["insertId"]
    assert (event.stage, event.verb, event.status_code) == ("ResponseComplete", "create", 200)
    assert event.object_ref == ObjectRef("environments", "environments.kuberik.com", "default", "prod", None)
    assert event.response_object is None
    assert event.raw["level"] == "Metadata"


def test_environment_create_entry_routes_to_the_environment() -> None:
    decision = route(one(environment_entry("team-a", "prod")))
    assert isinstance(decision, Routed)
    assert (decision.route, decision.namespace, decision.name) == ("environment", "team-a", "prod")


@pytest.mark.parametrize("verb", ["update", "patch"])
def test_environment_changes_route_to_the_environment(verb: str) -> None:
    decision = route(one(environment_entry("team-a", "prod", verb)))
    assert isinstance(decision, Routed)
    assert (decision.route, decision.event.verb) == ("environment", verb)


@pytest.mark.parametrize("verb", ["update", "patch"])
def test_rollout_status_entry_routes_to_the_rollout(verb: str) -> None:
    event = one(rollout_status_entry("team-a", "myapp-prod", verb))
    assert event.object_ref == ObjectRef("rollouts", "kuberik.com", "team-a", "myapp-prod", "status")
    decision = route(event)
    assert isinstance(decision, Routed)
    assert (decision.route, decision.namespace, decision.name) == ("rollout", "team-a", "myapp-prod")


def test_the_verb_is_the_last_segment_and_the_group_comes_from_the_resource_name() -> None:
    """A method name's group is not parsed: dots of `environments.kuberik.com` and of the method
    cannot be told apart. Whatever the middle says, the object is the one resourceName names."""
    entry = log_entry(
        "com.kuberik.environments.v1alpha1.environments.patch", f"{ENVIRONMENTS}/namespaces/d/environments/e"
    )
    event = one(entry)
    assert event.verb == "patch"
    assert event.object_ref == ObjectRef("environments", "environments.kuberik.com", "d", "e", None)


def test_core_group_is_written_core_and_read_as_the_empty_group() -> None:
    event = one(
        log_entry("io.k8s.core.v1.configmaps.create", "core/v1/namespaces/default/configmaps/unrelated")
    )
    assert event.object_ref == ObjectRef("configmaps", "", "default", "unrelated", None)
    assert route(event) == Ignored("not routed: configmaps.core create")


@pytest.mark.parametrize(
    ("resource_name", "expected"),
    [
        ("core/v1/namespaces/default/pods/nginx", ResourceName("", "v1", "pods", "default", "nginx", None)),
        (
            "apps/v1/namespaces/kube-system/deployments/coredns/scale",
            ResourceName("apps", "v1", "deployments", "kube-system", "coredns", "scale"),
        ),
        (
            "core/v1/nodes/gke-pool-1-abcd/status",
            ResourceName("", "v1", "nodes", None, "gke-pool-1-abcd", "status"),
        ),
        ("core/v1/namespaces/test-ns", ResourceName("", "v1", "namespaces", None, "test-ns", None)),
        ("core/v1/namespaces", ResourceName("", "v1", "namespaces", None, None, None)),
        (
            "core/v1/nodes/n1/proxy/metrics/cadvisor",
            ResourceName("", "v1", "nodes", None, "n1", "proxy"),
        ),
        (
            f"{ENVIRONMENTS}/namespaces/team-a/environments",
            ResourceName("environments.kuberik.com", "v1alpha1", "environments", "team-a", None, None),
        ),
    ],
)
def test_resource_names_in_every_layout_gke_writes(resource_name: str, expected: ResourceName) -> None:
    assert ResourceName.parse(resource_name, "where") == expected


def test_a_create_logged_without_the_name_is_ignored_as_naming_no_object() -> None:
    entry = log_entry(
        "io.k8s.environments.kuberik.com.v1alpha1.environments.create",
        f"{ENVIRONMENTS}/namespaces/team-a/environments",
    )
    assert route(one(entry)) == Ignored("names no namespace/name")


def test_rollout_spec_writes_and_environment_status_writes_are_not_routed() -> None:
    spec = log_entry("io.k8s.kuberik.com.v1alpha1.rollouts.patch", f"{ROLLOUTS}/namespaces/d/rollouts/r")
    assert route(one(spec)) == Ignored("not routed: rollouts.kuberik.com patch")
    status = log_entry(
        "io.k8s.environments.kuberik.com.v1alpha1.environments.status.patch",
        f"{ENVIRONMENTS}/namespaces/d/environments/e/status",
    )
    assert route(one(status)) == Ignored("subresource status")


def test_reads_and_deletes_of_environments_are_not_routed() -> None:
    for verb in ("get", "list", "watch", "delete"):
        decision = route(one(environment_entry("d", "e", verb)))
        assert decision == Ignored(f"not routed: environments.environments.kuberik.com {verb}")


# failed requests change nothing


def test_permission_denied_entry_is_ignored_as_a_failed_request() -> None:
    event = one(environment_entry("d", "prod", code=7))
    assert event.status_code == 403
    assert route(event) == Ignored("response status 403")


@pytest.mark.parametrize("code", [*range(1, 17), 99])
def test_no_entry_with_a_non_ok_code_is_ever_acted_on(code: int) -> None:
    for entry in (environment_entry("d", "e", code=code), rollout_status_entry("d", "r", code=code)):
        event = one(entry)
        assert event.status_code is not None
        assert not 200 <= event.status_code < 300
        assert isinstance(route(event), Ignored)


def test_every_rpc_code_maps_to_a_failure_status_except_ok() -> None:
    assert HTTP_STATUS[0] == 200
    assert all(status >= 400 for code, status in HTTP_STATUS.items() if code != 0)


def test_an_entry_without_a_status_is_ok_as_proto3_writes_it() -> None:
    entry = environment_entry("d", "prod")
    del entry["protoPayload"]["status"]
    assert one(entry).status_code == 200


def test_a_failed_admission_with_a_response_body_is_ignored_whatever_the_body_says() -> None:
    """GKE's entry for a create an admission webhook refused: code 3, the refusal in the response."""
    entry = log_entry(
        "io.k8s.environments.kuberik.com.v1alpha1.environments.create",
        f"{ENVIRONMENTS}/namespaces/d/environments/prod",
        3,
        'admission webhook "stagegate.kuberik.com" denied the request',
        response={"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 400},
    )
    assert route(one(entry)) == Ignored("response status 400")


# bodies are never read


def test_request_and_response_bodies_are_never_read() -> None:
    """An entry's bodies may be truncated or left out: the object is read from the API instead."""
    decoy = {
        "apiVersion": "environments.kuberik.com/v1alpha1",
        "kind": "Environment",
        "metadata": {"name": "other", "namespace": "elsewhere", "uid": "decoy"},
        "spec": {"relationship": None},
    }
    entry = log_entry(
        "io.k8s.environments.kuberik.com.v1alpha1.environments.create",
        f"{ENVIRONMENTS}/namespaces/team-a/environments/prod",
        request=decoy,
        response=decoy,
    )
    assert entry["protoPayload"]["response"]["metadata"]["name"] == "other"
    event = one(entry)
    assert event.response_object is None
    assert "requestObject" not in event.raw
    assert "responseObject" not in event.raw
    decision = route(event)
    assert isinstance(decision, Routed)
    assert (decision.namespace, decision.name) == ("team-a", "prod")


# the Event made from an entry


def test_the_event_made_from_an_entry_is_an_audit_event_the_bridge_can_republish() -> None:
    entry = rollout_status_entry("team-a", "myapp")
    raw = audit_event_from_log_entry(entry)
    assert EVENT_API_VERSION == AUDIT_API_VERSION
    assert (raw["apiVersion"], raw["kind"]) == (AUDIT_API_VERSION, "Event")
    again = one(raw)  # the bridge publishes event.raw; k8s_audit and the reporter parse it back
    assert again == one(entry)
    assert again.raw == raw


def test_the_event_says_where_it_came_from() -> None:
    entry = environment_entry("d", "prod", code=7)
    annotations = one(entry).raw["annotations"]
    assert annotations == {
        f"{ANNOTATION_PREFIX}log-name": entry["logName"],
        f"{ANNOTATION_PREFIX}insert-id": entry["insertId"],
        f"{ANNOTATION_PREFIX}method-name": "io.k8s.environments.kuberik.com.v1alpha1.environments.create",
        f"{ANNOTATION_PREFIX}resource-name": f"{ENVIRONMENTS}/namespaces/d/environments/prod",
        f"{ANNOTATION_PREFIX}rpc-code": "7",
        f"{ANNOTATION_PREFIX}cluster": f"{PROJECT}/{LOCATION}/{CLUSTER}",
    }


def test_the_typed_view_reads_what_the_entry_carries() -> None:
    entry = rollout_status_entry("team-a", "myapp")
    view = KubernetesAuditEntry.from_raw(entry)
    assert (view.verb, view.succeeded, view.http_status, view.rpc_code) == ("patch", True, 200, 0)
    assert view.log_name == f"projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Fdata_access"
    assert view.cluster == f"{PROJECT}/{LOCATION}/{CLUSTER}"
    assert view.raw is entry


def test_an_entry_arrives_as_json_bytes_like_any_audit_document() -> None:
    entry = environment_entry("d", "prod")
    [event] = parse_audit_json(json.dumps(entry).encode())
    assert event == one(entry)


# malformed entries are refused with the field named


def _set(key: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda payload: payload.__setitem__(key, value)


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda payload: payload.__delitem__(key)


# How each malformed entry differs from a good one: a change to its protoPayload.
PAYLOAD_CHANGES: dict[str, Callable[[dict[str, Any]], None]] = {
    "other payload type": _set("@type", "type.googleapis.com/google.cloud.bigquery.logging.v1.AuditData"),
    "other service": lambda payload: payload.update(
        serviceName="container.googleapis.com", methodName="google.container.v1.ClusterManager.UpdateCluster"
    ),
    "no method": _drop("methodName"),
    "undotted method": _set("methodName", "create"),
    "method ending in a dot": _set("methodName", "io.k8s.core.v1.pods."),
    "no resource name": _drop("resourceName"),
    "short resource name": _set("resourceName", "environments.kuberik.com/v1alpha1"),
    "empty segment": _set("resourceName", "environments.kuberik.com//namespaces/d/environments/prod"),
    "status not an object": _set("status", "PERMISSION_DENIED"),
    "code not an integer": _set("status", {"code": "7"}),
    "code a boolean": _set("status", {"code": True}),
}


def _malformed(change: str) -> dict[str, Any]:
    entry = environment_entry("d", "prod")
    if change == "payload not an object":
        entry["protoPayload"] = "text"
    elif change == "no insert id":
        del entry["insertId"]
    else:
        PAYLOAD_CHANGES[change](entry["protoPayload"])
    return entry


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("payload not an object", "LogEntry.protoPayload must be an object"),
        (
            "other payload type",
            "LogEntry.protoPayload.@type must be type.googleapis.com/google.cloud.audit.AuditLog",
        ),
        (
            "other service",
            "not a Kubernetes audit entry: LogEntry.protoPayload.serviceName is 'container.googleapis.com'",
        ),
        ("no method", "LogEntry.protoPayload.methodName is required"),
        ("undotted method", "LogEntry.protoPayload.methodName must be a dotted name ending in the verb"),
        (
            "method ending in a dot",
            "LogEntry.protoPayload.methodName must be a dotted name ending in the verb",
        ),
        ("no resource name", "LogEntry.protoPayload.resourceName is required"),
        ("short resource name", "LogEntry.protoPayload.resourceName must look like <group>/<version>/"),
        ("empty segment", "LogEntry.protoPayload.resourceName must look like"),
        ("status not an object", "LogEntry.protoPayload.status must be an object"),
        ("code not an integer", "LogEntry.protoPayload.status.code must be an integer"),
        ("code a boolean", "LogEntry.protoPayload.status.code must be an integer"),
        ("no insert id", "LogEntry.insertId is required"),
    ],
)
def test_malformed_entry_is_a_bad_event_naming_the_field(change: str, reason: str) -> None:
    with pytest.raises(BadEvent) as raised:
        parse_audit_document(_malformed(change))
    assert str(raised.value).startswith(reason), str(raised.value)


def test_a_log_entry_of_another_kind_is_refused_not_misread_as_an_audit_event() -> None:
    with pytest.raises(BadEvent, match="protoPayload must be an object"):
        parse_audit_document({"logName": "projects/p/logs/x", "insertId": "1", "protoPayload": None})


def test_audit_documents_without_a_proto_payload_are_read_as_before() -> None:
    with pytest.raises(BadEvent, match=re.escape("expected apiVersion audit.k8s.io/v1, got None")):
        parse_audit_document({"logName": "projects/p/logs/x", "jsonPayload": {}})


def test_struct_bodies_are_written_as_json_objects_by_the_library() -> None:
    """Sanity check of the builder: `Struct` bodies end up as plain JSON objects in the payload."""
    body = struct_pb2.Struct()
    body.update({"kind": "Environment"})
    assert json_format.MessageToDict(body) == {"kind": "Environment"}


def test_only_an_object_is_read_as_an_entry() -> None:
    with pytest.raises(BadEvent, match=r"^LogEntry must be an object$"):
        KubernetesAuditEntry.from_raw(["not", "an", "entry"])


@pytest.mark.parametrize(
    "resource",
    [
        None,
        {"type": "k8s_cluster"},
        {"type": "k8s_cluster", "labels": {"project_id": PROJECT, "location": LOCATION}},
    ],
)
def test_an_entry_without_full_cluster_labels_is_still_read(resource: object) -> None:
    entry = environment_entry("d", "prod")
    entry["resource"] = resource
    del entry["logName"]
    view = KubernetesAuditEntry.from_raw(entry)
    assert (view.cluster, view.log_name) == (None, None)
    assert f"{ANNOTATION_PREFIX}cluster" not in view.to_audit_event()["annotations"]
    assert isinstance(route(one(entry)), Routed)
