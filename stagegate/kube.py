"""The Kubernetes adapter: RolloutGates and Environments over the official client.

It also reads what admission decides on (Environments unparsed, Rollouts, a namespace's labels) and
records Events (on an Environment whose gate name is taken; on a Rollout a human override deployed).

The only module that talks to the Kubernetes API. It takes its `ApiClient` from the caller, turns
raw objects into `shared.views` at once, and translates the client's exceptions into stagegate's
own (`raise ... from exc`), so nothing above it knows about `kubernetes.client`. Every write of an
existing gate carries its `resourceVersion`, which makes it conditional.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import secrets
import ssl
import threading
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from shared.admission import EventNotice
from shared.errors import BadEvent, PermanentError, RetryableError
from shared.views import (
    ENVIRONMENT_API_VERSION,
    ENVIRONMENT_GROUP,
    ENVIRONMENT_KIND,
    GATE_GROUP,
    Environment,
    RolloutGate,
)
from stagegate.abandon import check
from stagegate.logs import get_logger
from stagegate.settings import ConfigError

VERSION = "v1alpha1"
log = get_logger("kube")
FIELD_MANAGER = "stagegate"


class KubeConflict(RetryableError):
    """A write lost a race: the object changed (409 Conflict) or already exists (409 AlreadyExists)."""


class KubeNotFound(PermanentError):
    """The object does not exist (404)."""


class CountingApiClient(client.ApiClient):  # type: ignore[misc]
    """An ApiClient that counts the HTTP requests it makes (for the benchmark and the answer)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self.calls = 0

    def request(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.calls += 1
        return super().request(*args, **kwargs)


def api_client(kubeconfig: str | None) -> CountingApiClient:
    """A client from the kubeconfig file when one is named, else from the in-cluster service account."""
    configuration = client.Configuration()
    try:
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            config.load_incluster_config(client_configuration=configuration)
    except (config.ConfigException, OSError, ValueError) as exc:
        where = f"KUBECONFIG={kubeconfig}" if kubeconfig else "in-cluster config (KUBECONFIG is not set)"
        raise ConfigError(f"cannot load Kubernetes credentials from {where}: {exc}") from exc
    return CountingApiClient(configuration)


def _translate(exc: Exception, what: str) -> Exception:
    """Map a client failure to stagegate's kinds: conflicts and server trouble retry, the rest do not.

    The message says what failed in stagegate's words and nothing of where: it ends up in answers,
    and the client's own text names the API server and may quote a request header. That text goes
    to the log only (redacted there), for the failures that are not everyday outcomes.
    """
    if isinstance(exc, ApiException):
        status = exc.status or 0
        code = f"HTTP {status} {_phrase(status)}".rstrip()
        if status == 409:
            return KubeConflict(f"{what}: {code}")
        if status == 404:
            return KubeNotFound(f"{what}: {code}")
        detail = f"{code}: {_message(exc)}" if status else f"{type(exc).__name__}: {exc}"
        log.warning("a Kubernetes API call failed", extra={"fields": {"call": what, "detail": detail}})
        if status in (400, 403, 422):
            return PermanentError(f"{what}: the Kubernetes API refused it ({code})")
        if not status:
            return RetryableError(f"{what}: the Kubernetes API call failed")
        return RetryableError(f"{what}: the Kubernetes API failed ({code})")
    log.warning(
        "the Kubernetes API did not answer",
        extra={"fields": {"call": what, "detail": f"{type(exc).__name__}: {exc}"}},
    )
    return RetryableError(f"{what}: the Kubernetes API did not answer ({_transport_failure(exc)})")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _transport_failure(exc: BaseException) -> str:
    """What kind of transport failure this was, in a few words of our own."""
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, urllib3.exceptions.NewConnectionError | ConnectionError):
        return "connection error"
    if isinstance(exc, urllib3.exceptions.TimeoutError | TimeoutError):
        return "timed out"
    if isinstance(exc, urllib3.exceptions.SSLError | ssl.SSLError):
        return "TLS error"
    return "connection error"


def _message(exc: ApiException) -> str:
    """The API server's own message, for the log."""
    try:
        return str(json.loads(exc.body).get("message", ""))
    except (TypeError, ValueError, AttributeError):
        return ""


def report_lease_name(rollout: str) -> str:
    """`stagegate-report-<rollout>`, shortened with a digest when that exceeds a name's 253 characters."""
    name = f"stagegate-report-{rollout}"
    if len(name) <= 253:
        return name
    return f"{name[:236]}-{hashlib.sha256(rollout.encode()).hexdigest()[:16]}"


_TRANSPORT_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError)


class KubeGates:
    """RolloutGates and Environments in one cluster, each call bounded by `timeout` seconds."""

    def __init__(self, api: client.ApiClient, timeout: float = 2.0) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.coordination = client.CoordinationV1Api(api)
        self.timeout = timeout

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        check(what)
        try:
            return fn(*args, _request_timeout=self.timeout, **kwargs)
        except _TRANSPORT_ERRORS as exc:
            raise _translate(exc, what) from exc

    def _get(self, kind: str, group: str, plural: str, namespace: str, name: str) -> Any:
        """The raw object, or None when it does not exist."""
        try:
            return self._call(
                f"get {kind} {namespace}/{name}",
                self.custom.get_namespaced_custom_object,
                group, VERSION, namespace, plural, name,
            )  # fmt: skip
        except KubeNotFound:
            return None

    def get_environment(self, namespace: str, name: str) -> Environment | None:
        """The Environment, or None when it no longer exists."""
        raw = self._get("Environment", ENVIRONMENT_GROUP, "environments", namespace, name)
        return None if raw is None else Environment.from_raw(raw)

    def list_environments(self, namespaces: Sequence[str] = ()) -> list[Environment]:
        """Every Environment in the cluster, or in `namespaces`; unreadable ones are logged and skipped."""
        if namespaces:
            raws = [
                item
                for ns in namespaces
                for item in self._call(
                    f"list Environments in {ns}",
                    self.custom.list_namespaced_custom_object,
                    ENVIRONMENT_GROUP, VERSION, ns, "environments",
                )["items"]
            ]  # fmt: skip
        else:
            raws = self._call(
                "list Environments",
                self.custom.list_cluster_custom_object,
                ENVIRONMENT_GROUP, VERSION, "environments",
            )["items"]  # fmt: skip
        environments = []
        for raw in raws:
            try:
                environments.append(Environment.from_raw(raw))
            except BadEvent as exc:
                meta = raw.get("metadata", {})
                log.error(
                    "skipping an Environment stagegate cannot read",
                    extra={
                        "fields": {
                            "environment": f"{meta.get('namespace')}/{meta.get('name')}",
                            "reason": str(exc),
                        }
                    },
                )
        return environments

    def get_environment_object(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The Environment as the API has it, unparsed (it may be one stagegate cannot read), or None."""
        raw: Mapping[str, Any] | None = self._get(
            "Environment", ENVIRONMENT_GROUP, "environments", namespace, name
        )
        return raw

    def list_environment_objects(self, namespace: str) -> list[Mapping[str, Any]]:
        """Every Environment in the namespace, unparsed: the deploy guard refuses on unreadable ones."""
        raw = self._call(
            f"list Environments in {namespace}",
            self.custom.list_namespaced_custom_object,
            ENVIRONMENT_GROUP, VERSION, namespace, "environments",
        )  # fmt: skip
        items: list[Mapping[str, Any]] = raw.get("items", [])
        return items

    def namespace_labels(self, name: str) -> Mapping[str, str] | None:
        """The namespace's labels, or None when it does not exist."""
        try:
            namespace = self._call(f"get Namespace {name}", self.core.read_namespace, name)
        except KubeNotFound:
            return None
        return dict(namespace.metadata.labels or {})

    def get_rollout(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The Rollout as a raw object (its status is read by the core), or None when missing."""
        raw: Mapping[str, Any] | None = self._get("Rollout", GATE_GROUP, "rollouts", namespace, name)
        return raw

    def list_gates(self, namespace: str) -> list[RolloutGate]:
        """Every RolloutGate in the namespace (owned ones may have any name)."""
        raw = self._call(
            f"list RolloutGates in {namespace}",
            self.custom.list_namespaced_custom_object,
            GATE_GROUP, VERSION, namespace, "rolloutgates",
        )  # fmt: skip
        return [RolloutGate.from_raw(item) for item in raw.get("items", [])]

    def create_gate(self, namespace: str, body: Mapping[str, Any]) -> RolloutGate:
        """Create a gate; raise `KubeConflict` when the name is taken."""
        raw = self._call(
            f"create RolloutGate {namespace}/{body['metadata']['name']}",
            self.custom.create_namespaced_custom_object,
            GATE_GROUP, VERSION, namespace, "rolloutgates", dict(body), field_manager=FIELD_MANAGER,
        )  # fmt: skip
        return RolloutGate.from_raw(raw)

    def patch_gate(
        self, namespace: str, name: str, patch: Mapping[str, Any], resource_version: str
    ) -> RolloutGate:
        """Merge-patch a gate only if it is still at `resource_version`; raise `KubeConflict` if not."""
        metadata = {**patch.get("metadata", {}), "resourceVersion": resource_version}
        raw = self._call(
            f"patch RolloutGate {namespace}/{name}",
            self.custom.patch_namespaced_custom_object,
            GATE_GROUP, VERSION, namespace, "rolloutgates", name, {**patch, "metadata": metadata},
            field_manager=FIELD_MANAGER,
        )  # fmt: skip
        return RolloutGate.from_raw(raw)

    def acquire_lease(
        self, owner: Mapping[str, Any], holder: str, seconds: int, now: datetime.datetime
    ) -> client.V1Lease | None:
        """Hold the report Lease of a Rollout (`owner`, which owns it, so it goes away with it) for
        `seconds`; None while another holder's claim has not run out. Every write of it is conditional
        (create, or replace at the resourceVersion read), so two callers never both get it."""
        meta = owner["metadata"]
        namespace, name = meta["namespace"], report_lease_name(meta["name"])
        what = f"take Lease {namespace}/{name}"
        spec = {
            "holderIdentity": holder,
            "leaseDurationSeconds": seconds,
            "acquireTime": now,
            "renewTime": now,
        }
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": FIELD_MANAGER},
                "ownerReferences": [
                    {
                        "apiVersion": owner["apiVersion"],
                        "kind": owner["kind"],
                        "name": meta["name"],
                        "uid": meta["uid"],
                    }
                ],
            },
            "spec": spec,
        }
        try:
            lease: client.V1Lease = self._call(
                what, self.coordination.create_namespaced_lease, namespace, body
            )
            return lease
        except KubeConflict:
            pass
        try:
            current = self._call(what, self.coordination.read_namespaced_lease, name, namespace)
        except KubeNotFound:
            return None  # released and gone in between: the caller retries
        held = current.spec
        if held.holder_identity and held.renew_time is not None:
            expires = held.renew_time + datetime.timedelta(seconds=held.lease_duration_seconds or 0)
            if expires > now:
                return None
        current.spec = client.V1LeaseSpec(
            holder_identity=holder, lease_duration_seconds=seconds, acquire_time=now, renew_time=now
        )
        try:
            taken: client.V1Lease = self._call(
                what, self.coordination.replace_namespaced_lease, name, namespace, current
            )
        except KubeConflict:
            return None
        return taken

    def release_lease(self, lease: client.V1Lease) -> None:
        """Give the Lease back, unless someone took it over after it ran out (then it is theirs)."""
        meta = lease.metadata
        lease.spec.holder_identity = None
        with contextlib.suppress(KubeConflict, KubeNotFound):
            self._call(
                f"release Lease {meta.namespace}/{meta.name}",
                self.coordination.replace_namespaced_lease, meta.name, meta.namespace, lease,
            )  # fmt: skip

    def warn(self, env: Environment, reason: str, message: str) -> None:
        """Record a Warning Event on the Environment, where `kubectl describe` shows it."""
        self.record_event(
            EventNotice(
                env.namespace, ENVIRONMENT_API_VERSION, ENVIRONMENT_KIND, env.name, env.uid, reason, message
            )
        )

    def record_event(self, notice: EventNotice) -> None:
        """Record an Event about any object (the deploy guard's overrides go on the Rollout)."""
        now = datetime.datetime.now(datetime.UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                name=f"{notice.name}.{secrets.token_hex(8)}", namespace=notice.namespace
            ),
            involved_object=client.V1ObjectReference(
                api_version=notice.api_version, kind=notice.kind, name=notice.name,
                namespace=notice.namespace, uid=notice.uid,
            ),
            reason=notice.reason,
            message=notice.message[:1024],
            type="Warning",
            source=client.V1EventSource(component="stagegate"),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )  # fmt: skip
        self._call(
            f"create Event for {notice.kind} {notice.namespace}/{notice.name}",
            self.core.create_namespaced_event, notice.namespace, event,
        )  # fmt: skip
