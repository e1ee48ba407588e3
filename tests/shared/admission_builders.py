"""AdmissionReviews shaped like the kube-apiserver sends them (admission.k8s.io/v1), and the Flux
objects, Namespaces, Rollouts and gates the guards read. Shared by the unit tests of the core, of the
service, and the function tests on a real kube-apiserver."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

OCI = ("source.toolkit.fluxcd.io", "v1", "ocirepositories", "OCIRepository")
KUSTOMIZATION = ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations", "Kustomization")
ENVIRONMENT = ("environments.kuberik.com", "v1alpha1", "environments", "Environment")
NAMESPACE = ("", "v1", "namespaces", "Namespace")
GUARD_LABEL = {"stagegate.kuberik.com/guard": "enabled"}


def oci_repository(
    name: str = "web",
    namespace: str = "default",
    *,
    rollout: str | None = "myapp",
    tag: str | None = None,
    ref: dict[str, Any] | None = None,
    api_version: str = "source.toolkit.fluxcd.io/v1",
) -> dict[str, Any]:
    """An OCIRepository, annotated for `rollout` (unless None), pulling `tag` (unless None)."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if rollout is not None:
        meta["annotations"] = {"rollout.kuberik.com/rollout": rollout}
    spec: dict[str, Any] = {"interval": "1m", "url": "oci://registry.example/myorg/myapp-manifests"}
    if ref is not None:
        spec["ref"] = ref
    elif tag is not None:
        spec["ref"] = {"tag": tag}
    return {"apiVersion": api_version, "kind": "OCIRepository", "metadata": meta, "spec": spec}


def kustomization(
    name: str = "web",
    namespace: str = "default",
    *,
    rollouts: dict[str, str] | None = None,
    substitute: dict[str, str] | None = None,
    source: str = "web",
    source_namespace: str | None = None,
    api_version: str = "kustomize.toolkit.fluxcd.io/v1",
) -> dict[str, Any]:
    """A Kustomization of OCIRepository `source` whose substitute `var` comes from Rollout `rollouts[var]`
    (`rollouts={}`: no substitute annotation, as a Kustomization governed only through its source)."""
    rollouts = {"version": "myapp"} if rollouts is None else rollouts
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if rollouts:
        meta["annotations"] = {f"rollout.kuberik.com/substitute.{v}.from": r for v, r in rollouts.items()}
    source_ref = {"kind": "OCIRepository", "name": source}
    if source_namespace is not None:
        source_ref["namespace"] = source_namespace
    spec: dict[str, Any] = {"interval": "5m", "path": "./deploy", "prune": True, "sourceRef": source_ref}
    if substitute is not None:
        spec["postBuild"] = {"substitute": substitute}
    return {"apiVersion": api_version, "kind": "Kustomization", "metadata": meta, "spec": spec}


def namespace_object(
    name: str = "myapp",
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    uid: str = "3c2b1a09-8f7e-4d6c-9b5a-4e3d2c1b0a99",
) -> dict[str, Any]:
    """A Namespace, opted in to the deploy guard unless `labels` says otherwise."""
    meta: dict[str, Any] = {"name": name, "uid": uid, "labels": GUARD_LABEL if labels is None else labels}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta, "status": {"phase": "Active"}}


def rollout(
    name: str = "myapp",
    namespace: str = "default",
    *,
    uid: str = "0f0e0d0c-1111-4222-8333-944445555666",
    wanted_version: str | None = None,
    force_deploy: str | None = None,
    bypass_gates: str | None = None,
) -> dict[str, Any]:
    """A Rollout with the human overrides kuberik's rollout controller reads."""
    annotations = {}
    if force_deploy is not None:
        annotations["rollout.kuberik.com/force-deploy"] = force_deploy
    if bypass_gates is not None:
        annotations["rollout.kuberik.com/bypass-gates"] = bypass_gates
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid}
    if annotations:
        meta["annotations"] = annotations
    spec: dict[str, Any] = {"releasesImagePolicy": {"name": name}}
    if wanted_version is not None:
        spec["wantedVersion"] = wanted_version
    return {"apiVersion": "kuberik.com/v1alpha1", "kind": "Rollout", "metadata": meta, "spec": spec}


def review(
    obj: dict[str, Any] | None,
    old: dict[str, Any] | None = None,
    *,
    operation: str | None = None,
    resource: tuple[str, str, str, str] | None = None,
    dry_run: bool = False,
    sub_resource: str | None = None,
    user: str = "system:serviceaccount:kuberik-system:rollout-controller",
) -> dict[str, Any]:
    """An AdmissionReview for writing `obj` (UPDATE from `old` when given, else CREATE; DELETE: `obj`
    None, `old` the object deleted)."""
    subject = obj if obj is not None else old
    assert subject is not None
    if resource is None:
        kind = subject["kind"]
        resource = {
            "OCIRepository": OCI,
            "Kustomization": KUSTOMIZATION,
            "Environment": ENVIRONMENT,
            "Namespace": NAMESPACE,
        }[kind]
        version = subject["apiVersion"].split("/")[-1]
        resource = (resource[0], version, resource[2], resource[3])
    group, version, plural, kind = resource
    meta = subject["metadata"]
    request: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": plural},
        "requestKind": {"group": group, "version": version, "kind": kind},
        "requestResource": {"group": group, "version": version, "resource": plural},
        "name": meta.get("name"),
        "namespace": meta.get("namespace", meta.get("name") if kind == "Namespace" else None),
        "operation": operation or ("UPDATE" if old is not None else "CREATE"),
        "userInfo": {"username": user, "groups": ["system:authenticated"]},
        "object": copy.deepcopy(obj),
        "oldObject": copy.deepcopy(old),
        "dryRun": dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
    }
    if sub_resource is not None:
        request["subResource"] = sub_resource
        request["requestSubResource"] = sub_resource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def review_bytes(*args: Any, **kwargs: Any) -> bytes:
    return json.dumps(review(*args, **kwargs)).encode()


def with_tag(obj: dict[str, Any], tag: str | None) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    if tag is None:
        out["spec"].pop("ref", None)
    else:
        out["spec"]["ref"] = {"tag": tag}
    return out


def with_substitute(obj: dict[str, Any], **values: str) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["spec"].setdefault("postBuild", {}).setdefault("substitute", {}).update(values)
    return out


def changed(obj: dict[str, Any], *path_and_value: Any) -> dict[str, Any]:
    """A copy of `obj` with the value at a path of keys set (None: removed)."""
    *path, value = path_and_value
    out = copy.deepcopy(obj)
    parent = out
    for key in path[:-1]:
        parent = parent.setdefault(key, {})
    if value is None:
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = value
    return out
