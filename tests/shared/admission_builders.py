"""AdmissionReviews shaped like the kube-apiserver sends them (admission.k8s.io/v1), and the Flux
objects, Rollouts and gates the deploy guard reads. Shared by the unit tests of the core, of the
service, and the function tests on a real kube-apiserver."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

OCI = ("source.toolkit.fluxcd.io", "v1", "ocirepositories", "OCIRepository")
KUSTOMIZATION = ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations", "Kustomization")
ENVIRONMENT = ("environments.kuberik.com", "v1alpha1", "environments", "Environment")


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
    api_version: str = "kustomize.toolkit.fluxcd.io/v1",
) -> dict[str, Any]:
    """A Kustomization whose substitute `var` comes from Rollout `rollouts[var]`."""
    rollouts = {"version": "myapp"} if rollouts is None else rollouts
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if rollouts:
        meta["annotations"] = {f"rollout.kuberik.com/substitute.{v}.from": r for v, r in rollouts.items()}
    spec: dict[str, Any] = {
        "interval": "5m",
        "path": "./deploy",
        "prune": True,
        "sourceRef": {"kind": "OCIRepository", "name": "web"},
    }
    if substitute is not None:
        spec["postBuild"] = {"substitute": substitute}
    return {"apiVersion": api_version, "kind": "Kustomization", "metadata": meta, "spec": spec}


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
    """An AdmissionReview for writing `obj` (UPDATE from `old` when given, else CREATE)."""
    subject = obj if obj is not None else old
    assert subject is not None
    if resource is None:
        kind = subject["kind"]
        resource = {"OCIRepository": OCI, "Kustomization": KUSTOMIZATION, "Environment": ENVIRONMENT}[kind]
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
        "namespace": meta.get("namespace"),
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
