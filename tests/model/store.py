"""An in-memory Kubernetes that implements `RecomputeStore` the way the kube-apiserver behaves.

Objects get a uid on creation and a new `resourceVersion` on every write (one counter for every
kind, as etcd's revision). A gate update is an RFC 7386 merge patch carrying the precondition in
`metadata.resourceVersion`, exactly the body `stagegate.kube.KubeGates.patch_gate` sends: a stale
version is a 409 (`KubeConflict`), a missing gate a 404 (`KubeNotFound`), creating a taken name a 409.
What the real schema refuses (a gate without `spec.passing`, an owner reference without a uid, a
create that sets `resourceVersion`) is refused here too, and remembered in `rejected` so the model
can fail on it. Reads return fresh copies as the typed views, so no caller can alias stored state.

Garbage collection is not automatic: `orphans()` and `collect()` let the model delete the gates
of deleted Environments as a separate, later step, as Kubernetes' garbage collector does.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.errors import PermanentError
from shared.views import Environment, RolloutGate
from stagegate.kube import KubeConflict, KubeNotFound
from tests.shared.builders import merge_patch

Key = tuple[str, str]


@dataclass(frozen=True)
class GateWrite:
    """One successful gate write: the stored object before (None for a create) and after, and the patch."""

    namespace: str
    name: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any]
    patch: Mapping[str, Any] | None


@dataclass
class InMemoryKube:
    """Environments, Rollouts and RolloutGates in memory, with the API's conditional-write rules."""

    environments: dict[Key, dict[str, Any]] = field(default_factory=dict)
    rollouts: dict[Key, dict[str, Any]] = field(default_factory=dict)
    gates: dict[Key, dict[str, Any]] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    on_gate_write: Callable[[GateWrite], None] | None = None
    on_rollout_read: Callable[[Key, Mapping[str, Any] | None], None] | None = None
    revision: int = 100
    writes: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)
    """Writes come from several threads at once (a recompute's writes fan out), as at an apiserver."""

    def _next_version(self) -> str:
        self.revision += 1
        return str(self.revision)

    # what the model changes directly (users, controllers) --------------------------------------

    def put_environment(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Create the Environment (new uid) or update it in place (same uid); the stored copy."""
        meta = raw["metadata"]
        key = (meta["namespace"], meta["name"])
        stored = copy.deepcopy(dict(raw))
        old = self.environments.get(key)
        generation = 1 if old is None else old["metadata"]["generation"] + 1
        uid = str(uuid.uuid4()) if old is None else old["metadata"]["uid"]
        stored["metadata"] = {
            **stored["metadata"],
            "uid": uid,
            "generation": generation,
            "resourceVersion": self._next_version(),
        }
        self.environments[key] = stored
        return copy.deepcopy(stored)

    def delete_environment(self, namespace: str, name: str) -> dict[str, Any]:
        """Remove the Environment; its gates stay until `collect` (the garbage collector)."""
        return self.environments.pop((namespace, name))

    def put_rollout_status(self, namespace: str, name: str, candidates: list[dict[str, Any]]) -> None:
        """Set a Rollout's `status.releaseCandidates` (creating the Rollout if needed)."""
        self.rollouts[(namespace, name)] = {
            "apiVersion": "kuberik.com/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": self._next_version()},
            "status": {"releaseCandidates": copy.deepcopy(candidates)},
        }

    def live_uids(self) -> set[str]:
        """The uids of the Environments that exist."""
        return {raw["metadata"]["uid"] for raw in self.environments.values()}

    def orphans(self) -> list[Key]:
        """Gates every owner of which is gone: what the garbage collector deletes."""
        live = self.live_uids()
        out = []
        for key, raw in sorted(self.gates.items()):
            refs = raw["metadata"].get("ownerReferences") or []
            if refs and not any(r.get("uid") in live for r in refs):
                out.append(key)
        return out

    def collect(self, key: Key, *, finalizer: bool) -> None:
        """Delete an orphan: at once, or (held by a finalizer) first only marked as being deleted."""
        raw = self.gates[key]
        if finalizer and raw["metadata"].get("deletionTimestamp") is None:
            raw["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
            raw["metadata"]["resourceVersion"] = self._next_version()
        else:
            del self.gates[key]

    # GateStore ----------------------------------------------------------------------------------

    def list_gates(self, namespace: str | None) -> list[RolloutGate]:
        return [
            RolloutGate.from_raw(copy.deepcopy(raw))
            for (ns, _), raw in sorted(self.gates.items())
            if namespace is None or ns == namespace
        ]

    def _refuse(self, message: str) -> PermanentError:
        self.rejected.append(message)
        return PermanentError(f"HTTP 422 Unprocessable Entity: {message}")

    def _validate(self, raw: Mapping[str, Any], what: str) -> None:
        spec = raw.get("spec") or {}
        if not isinstance(spec.get("passing"), bool):
            raise self._refuse(f"{what}: spec.passing is required (real CRD schema)")
        allowed = spec.get("allowedVersions")
        if allowed is not None and not (
            isinstance(allowed, list) and all(isinstance(v, str) for v in allowed)
        ):
            raise self._refuse(f"{what}: spec.allowedVersions must be a list of strings")
        for ref in raw["metadata"].get("ownerReferences") or []:
            if not all(isinstance(ref.get(k), str) and ref[k] for k in ("apiVersion", "kind", "name", "uid")):
                raise self._refuse(f"{what}: ownerReferences need apiVersion, kind, name and uid")

    def create_gate(self, namespace: str, body: Mapping[str, Any]) -> RolloutGate:
        with self.lock:
            return self._create_gate(namespace, body)

    def _create_gate(self, namespace: str, body: Mapping[str, Any]) -> RolloutGate:
        raw = copy.deepcopy(dict(body))
        meta = raw.get("metadata") or {}
        name = meta.get("name")
        what = f"create RolloutGate {namespace}/{name}"
        if not isinstance(name, str) or not name:
            raise self._refuse(f"{what}: metadata.name is required")
        if meta.get("resourceVersion"):
            raise self._refuse(f"{what}: resourceVersion should not be set on objects to be created")
        if meta.get("namespace", namespace) != namespace:
            raise self._refuse(f"{what}: the namespace of the object does not match the request")
        if (namespace, name) in self.gates:
            raise KubeConflict(f"{what}: HTTP 409 AlreadyExists")
        self._validate(raw, what)
        meta.update(namespace=namespace, uid=str(uuid.uuid4()), resourceVersion=self._next_version())
        raw["metadata"] = meta
        self.gates[(namespace, name)] = raw
        self.writes += 1
        if self.on_gate_write is not None:
            self.on_gate_write(GateWrite(namespace, name, None, copy.deepcopy(raw), None))
        return RolloutGate.from_raw(copy.deepcopy(raw))

    def patch_gate(
        self, namespace: str, name: str, patch: Mapping[str, Any], resource_version: str
    ) -> RolloutGate:
        with self.lock:
            return self._patch_gate(namespace, name, patch, resource_version)

    def _patch_gate(
        self, namespace: str, name: str, patch: Mapping[str, Any], resource_version: str
    ) -> RolloutGate:
        # The body `KubeGates.patch_gate` sends: the precondition travels inside the merge patch.
        body = {**patch, "metadata": {**(patch.get("metadata") or {}), "resourceVersion": resource_version}}
        what = f"patch RolloutGate {namespace}/{name}"
        current = self.gates.get((namespace, name))
        if current is None:
            raise KubeNotFound(f"{what}: HTTP 404 Not Found")
        wanted = body["metadata"].get("resourceVersion")
        if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
            raise KubeConflict(f"{what}: HTTP 409 Conflict (the object has been modified)")
        patched = merge_patch(current, body)
        for immutable in ("name", "namespace", "uid", "deletionTimestamp"):
            if patched["metadata"].get(immutable) != current["metadata"].get(immutable):
                raise self._refuse(f"{what}: metadata.{immutable} is immutable")
        self._validate(patched, what)
        patched["metadata"]["resourceVersion"] = self._next_version()
        before = copy.deepcopy(current)
        self.gates[(namespace, name)] = patched
        self.writes += 1
        if self.on_gate_write is not None:
            self.on_gate_write(
                GateWrite(namespace, name, before, copy.deepcopy(patched), copy.deepcopy(patch))
            )
        return RolloutGate.from_raw(copy.deepcopy(patched))

    def warn(self, env: Environment, reason: str, message: str) -> None:
        self.events.append(f"{env.key}: {reason}: {message}")

    # RecomputeStore -----------------------------------------------------------------------------

    def get_environment(self, namespace: str, name: str) -> Environment | None:
        raw = self.environments.get((namespace, name))
        return None if raw is None else Environment.from_raw(copy.deepcopy(raw))

    def list_environments(self, namespaces: Sequence[str] = ()) -> list[Environment]:
        return [
            Environment.from_raw(copy.deepcopy(raw))
            for (ns, _), raw in sorted(self.environments.items())
            if not namespaces or ns in namespaces
        ]

    def get_rollout(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        raw = self.rollouts.get((namespace, name))
        found = None if raw is None else copy.deepcopy(raw)
        if self.on_rollout_read is not None:
            self.on_rollout_read((namespace, name), copy.deepcopy(found))
        return found

    def list_rollouts(self, namespace: str | None) -> list[Mapping[str, Any]]:
        found = [
            (key, copy.deepcopy(raw))
            for key, raw in sorted(self.rollouts.items())
            if namespace is None or key[0] == namespace
        ]
        if self.on_rollout_read is not None:
            for key, raw in found:
                self.on_rollout_read(key, copy.deepcopy(raw))
        return [raw for _, raw in found]
