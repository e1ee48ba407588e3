"""Builders for the objects and audit deliveries the tests send, based on captured real events."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

from kubernetes import client

from tests.payloads import load_payload

ENV_ARGS = ("environments.kuberik.com", "v1alpha1")
GATE_ARGS = ("kuberik.com", "v1alpha1")


def environment(
    namespace: str,
    name: str,
    *,
    upstream: str | None = "staging",
    kind: str = "After",
    rollout: str = "myapp",
) -> dict[str, Any]:
    """An Environment as a user writes it (relationship `kind upstream` unless upstream is None)."""
    spec: dict[str, Any] = {
        "name": "myapp",
        "environment": name,
        "rolloutRef": {"name": rollout},
        "backend": {"type": "github", "project": "myorg/myapp"},
    }
    if upstream is not None:
        spec["relationship"] = {"type": kind, "environment": upstream}
    return {
        "apiVersion": "environments.kuberik.com/v1alpha1",
        "kind": "Environment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def stored(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as the apiserver would answer it, without creating it (fresh uid)."""
    out = copy.deepcopy(obj)
    out["metadata"].update(uid=str(uuid.uuid4()), resourceVersion="1", generation=1)
    return out


def delivery(obj: dict[str, Any], verb: str = "create", *, with_object: bool = True) -> dict[str, Any]:
    """An EventList like the kube-apiserver's webhook posts, for a change of `obj`."""
    body = load_payload("audit/environment-create.json")
    event = body["items"][0]
    event["auditID"] = str(uuid.uuid4())
    event["verb"] = verb
    event["objectRef"].update(namespace=obj["metadata"]["namespace"], name=obj["metadata"]["name"])
    event["responseStatus"]["code"] = 201 if verb == "create" else 200
    event["requestObject"] = obj
    if with_object:
        event["responseObject"] = obj
    else:
        event["level"] = "Metadata"
        event.pop("requestObject")
        event.pop("responseObject")
    return body


def delivery_bytes(obj: dict[str, Any], verb: str = "create", **kwargs: Any) -> bytes:
    return json.dumps(delivery(obj, verb, **kwargs)).encode()


def create_environment(custom: client.CustomObjectsApi, obj: dict[str, Any]) -> dict[str, Any]:
    ns = obj["metadata"]["namespace"]
    result: dict[str, Any] = custom.create_namespaced_custom_object(*ENV_ARGS, ns, "environments", obj)
    return result


def list_gates(custom: client.CustomObjectsApi, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = custom.list_namespaced_custom_object(*GATE_ARGS, namespace, "rolloutgates")[
        "items"
    ]
    return items


def get_gate(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = custom.get_namespaced_custom_object(*GATE_ARGS, namespace, "rolloutgates", name)
    return result


def create_gate(
    custom: client.CustomObjectsApi,
    namespace: str,
    name: str,
    *,
    owner: dict[str, Any] | None = None,
    allowed: list[str] | None = None,
) -> dict[str, Any]:
    """A gate made by someone else: the Go controller (owner = an Environment) or a stranger."""
    meta: dict[str, Any] = {"name": name}
    if owner is not None:
        meta["ownerReferences"] = [owner]
    spec: dict[str, Any] = {"rolloutRef": {"name": "myapp"}, "passing": True}
    if allowed is not None:
        spec["allowedVersions"] = allowed
    body = {"apiVersion": "kuberik.com/v1alpha1", "kind": "RolloutGate", "metadata": meta, "spec": spec}
    result: dict[str, Any] = custom.create_namespaced_custom_object(
        *GATE_ARGS, namespace, "rolloutgates", body
    )
    return result


def owner_ref(env: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "environments.kuberik.com/v1alpha1",
        "kind": "Environment",
        "name": env["metadata"]["name"],
        "uid": env["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def rollout_status_delivery(namespace: str, name: str, audit_id: str | None = None) -> dict[str, Any]:
    """The audit EventList of one Rollout status patch (the rollout controller's writes), as the
    policy records it: Metadata level, so no object in it. The rest is a captured real event's."""
    body: dict[str, Any] = load_payload("audit/environment-create.json")
    event = body["items"][0]
    event.update(verb="patch", level="Metadata", auditID=audit_id or event["auditID"])
    event["objectRef"] = {
        "resource": "rollouts", "subresource": "status", "namespace": namespace, "name": name,
        "apiGroup": "kuberik.com", "apiVersion": "v1alpha1",
    }  # fmt: skip
    event["responseStatus"] = {"metadata": {}, "code": 200}
    for key in ("requestObject", "responseObject"):
        event.pop(key)
    return body
