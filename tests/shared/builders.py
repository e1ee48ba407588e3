"""Raw Environments and RolloutGates shaped like the kube-apiserver answers them, a merge patch, and
GitHub's answers for candidate revisions.

The defaults describe the captured `prod` Environment (`tests/payloads/audit/`): namespace `default`,
Rollout `myapp`, `After staging`. GitHub times are seconds after 10:00:00 on 15 May 2026 (`at(s)`);
`epoch(s)` is the same moment as the `now` a recompute is given.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.bake import CommitLookup, DeploymentRecord, StatusRecord
from shared.evidence import EVIDENCE_ANNOTATION, Evidence, Veto
from shared.gate import (
    DESCRIPTION_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    PRETTY_NAME_ANNOTATION,
    describe,
)
from shared.upstream import upstream_key
from shared.views import Environment, RolloutGate

ENV_UID = "63c31d60-657a-43e6-92cb-d34dc6e4b375"
OLD_ENV_UID = "0b7f2a55-0c33-4bd4-9a7e-5c1f3d2e8a10"
ENV_API_VERSION = "environments.kuberik.com/v1alpha1"

# Stands for "key not present", which is not the same as an explicit null.
ABSENT: Any = object()


def environment_raw(
    name: str = "prod",
    *,
    namespace: str = "default",
    uid: str = ENV_UID,
    rollout: str = "myapp",
    relationship: tuple[str, str] | None = ("After", "staging"),
) -> dict[str, Any]:
    """An Environment as the apiserver returns it; `relationship` is `(type, upstream)` or None."""
    spec: dict[str, Any] = {
        "backend": {"project": "myorg/myapp", "type": "github"},
        "environment": "production",
        "name": "myapp",
        "rolloutRef": {"name": rollout},
    }
    if relationship is not None:
        spec["relationship"] = {"type": relationship[0], "environment": relationship[1]}
    return {
        "apiVersion": ENV_API_VERSION,
        "kind": "Environment",
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": "191"},
        "spec": spec,
    }


def environment(name: str = "prod", **kwargs: Any) -> Environment:
    return Environment.from_raw(environment_raw(name, **kwargs))


def env_owner(
    name: str = "prod",
    uid: str = ENV_UID,
    *,
    controller: bool = True,
    block_owner_deletion: bool = True,
    api_version: str = ENV_API_VERSION,
    kind: str = "Environment",
) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": controller,
        "blockOwnerDeletion": block_owner_deletion,
    }


def deployment_owner(name: str = "web", uid: str = "5d1e9a7c-0000-4000-8000-000000000001") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def wanted_annotations(env: Environment | None = None) -> dict[str, str]:
    """The annotations stagegate keeps on the gate of `env` (default: the `prod` fixture)."""
    pretty, description = describe(env or environment())
    return {PRETTY_NAME_ANNOTATION: pretty, DESCRIPTION_ANNOTATION: description}


def computed_for(env: Environment | None = None, vetoes: Mapping[str, Veto] | None = None) -> dict[str, str]:
    """The evidence annotation a recompute leaves: the allowed list was computed for `env`'s upstream
    (and an earlier answer still vetoes `vetoes`)."""
    key = upstream_key(env or environment())
    return {EVIDENCE_ANNOTATION: Evidence(key, dict(vetoes or {})).to_annotation()}


def gate_raw(
    name: str = "prod-stagegate",
    *,
    namespace: str = "default",
    rollout: str | None = "myapp",
    allowed: Any = ABSENT,
    passing: Any = True,
    owners: list[dict[str, Any]] | None = None,
    labels: Any = ABSENT,
    annotations: Any = ABSENT,
    deleting: bool = False,
    resource_version: str = "7",
) -> dict[str, Any]:
    """A RolloutGate as the apiserver returns it; by default one stagegate made and recomputed for the
    `prod` fixture."""
    spec: dict[str, Any] = {}
    if rollout is not None:
        spec["rolloutRef"] = {"name": rollout}
    if passing is not ABSENT:
        spec["passing"] = passing
    if allowed is not ABSENT:
        spec["allowedVersions"] = allowed
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "resourceVersion": resource_version,
        "uid": "9e0c1b2a-1111-4222-8333-444455556666",
        "ownerReferences": [env_owner()] if owners is None else owners,
        "labels": {MANAGED_BY_LABEL: MANAGED_BY} if labels is ABSENT else labels,
        "annotations": {**wanted_annotations(), **computed_for()} if annotations is ABSENT else annotations,
    }
    if deleting:
        metadata["deletionTimestamp"] = "2026-11-26T07:20:00Z"
        metadata["finalizers"] = ["foregroundDeletion"]
    return {"apiVersion": "kuberik.com/v1alpha1", "kind": "RolloutGate", "metadata": metadata, "spec": spec}


def gate(name: str = "prod-stagegate", **kwargs: Any) -> RolloutGate:
    return RolloutGate.from_raw(gate_raw(name, **kwargs))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON Merge Patch, as the kube-apiserver applies `application/merge-patch+json`."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# GitHub's answers

T0 = datetime(2026, 5, 15, 10, 0, tzinfo=UTC)
OID = "b797408c0ffee4a1b2c3d4e5f60718293a4b5c6d"
"""The commit of the release candidate `main-1779290372-b797408` (revision `b797408`)."""
OTHER_OID = "4f1d2c3b5a69788796a5b4c3d2e1f00112233445"
"""Another commit of the same repository (revision `4f1d2c3`)."""


def at(second: float) -> str:
    """GitHub's `createdAt` (ISO 8601, whole seconds, UTC) `second` seconds after 10:00:00."""
    return (T0 + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(second: float) -> float:
    """The moment `at(second)` in seconds since the epoch: the `now` a recompute is given."""
    return T0.timestamp() + second


def status(state: str, second: float, description: str | None = None) -> StatusRecord:
    return StatusRecord(state=state, description=description, created_at=at(second))


def succeeded(second: float) -> StatusRecord:
    return status("success", second, "Bake succeeded")


def failed(second: float) -> StatusRecord:
    return status("failure", second, "Bake failed: error rate above 5%")


def baking(second: float) -> StatusRecord:
    return status("in_progress", second, "Baking in progress")


def github_inactive(second: float) -> StatusRecord:
    """What GitHub adds by itself to an older deployment of the same environment."""
    return status("inactive", second)


TAG = "main-1779290372-b797408"
"""The release candidate's tag: the build of `OID` that staging ran."""


def deployment(
    id: int,
    second: float,
    *statuses: StatusRecord,
    sha: str = OID,
    revision: Any = ABSENT,
    tag: str | None = TAG,
    entry: Any = ABSENT,
    digest: str | None = None,
) -> DeploymentRecord:
    """A deployment as the environment controller records it (statuses in the order given).

    The payload is kuberik's: history entry `entry` (default: `id`; None leaves it out), `version` with
    `tag` (None leaves it out), `digest` when given, and `revision`: the commit itself unless
    `revision` says otherwise (None leaves it out).
    """
    version: dict[str, Any] = {} if tag is None else {"tag": tag}
    if digest is not None:
        version["digest"] = digest
    if revision is ABSENT:
        version["revision"] = sha
    elif revision is not None:
        version["revision"] = revision
    payload: dict[str, Any] = {"relationship": {"type": "After"}, "version": version}
    if entry is not None:
        payload = {"id": str(id if entry is ABSENT else entry), **payload}
    return DeploymentRecord(id=id, sha=sha, payload=payload, created_at=at(second), statuses=statuses)


def lookup(
    revision: str, *deployments: DeploymentRecord, oid: str | None = OID, answered: float | None = None
) -> CommitLookup:
    """GitHub's answer for `revision`: the commit `oid` (None: no single commit) and its deployments,
    given at `answered` (seconds after 10:00:00 on GitHub's clock; None: no `Date`)."""
    return CommitLookup(
        revision=revision,
        oid=oid,
        deployments=deployments,
        answered_at=None if answered is None else epoch(answered),
    )
