"""The Kubernetes adapter: RolloutGates and Environments over stagegate's own REST client.

It also reads what admission decides on (Environments unparsed, Rollouts, the source OCIRepositories of
Kustomizations, Namespaces) and records Events (on an Environment whose gate name is taken; on a
Rollout a human override deployed; on a Namespace whose guard was removed).

The only module that talks to the Kubernetes API. It takes its `KubeClient` (`stagegate.kube_http`)
from the caller, turns raw objects into `shared.views` at once, and translates the client's
exceptions into stagegate's own (`raise ... from exc`), so nothing above it knows about HTTP. Every
write of an existing gate carries its `resourceVersion`, which makes it conditional. It never
imports the `kubernetes` package: its import alone would cost every cold start ~330 ms.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from shared.admission import OCI_GROUP, EventNotice
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
from stagegate.kube_http import (
    MERGE_PATCH,
    ApiError,
    CredentialError,
    KubeClient,
    KubeConfigError,
    in_cluster_config,
    load_kubeconfig,
    path,
    time_rfc3339,
)
from stagegate.lease_watch import LeaseWatch
from stagegate.logs import get_logger
from stagegate.settings import ConfigError

VERSION = "v1alpha1"
OCI_VERSION = "v1"
"""The OCIRepository version read (source-controller v1.x serves it; the deploy guard registers it too)."""
log = get_logger("kube")
FIELD_MANAGER = "stagegate"


class KubeConflict(RetryableError):
    """A write lost a race: the object changed (409 Conflict) or already exists (409 AlreadyExists)."""


class KubeNotFound(PermanentError):
    """The object does not exist (404)."""


class KubeGone(RetryableError):
    """A watch cannot resume from the resourceVersion given: it is older than the server keeps (410)."""


@dataclass(frozen=True)
class Watched:
    """A kind the follower lists and watches (`stagegate.follower`)."""

    group: str
    plural: str


ROLLOUTS = Watched(GATE_GROUP, "rollouts")
ENVIRONMENTS = Watched(ENVIRONMENT_GROUP, "environments")
LIST_PAGE = 500
WATCH_READ_MARGIN = 30
"""Seconds a watch waits for a line past its `timeoutSeconds` before it counts the connection as lost."""


def api_client(kubeconfig: str | None) -> KubeClient:
    """A client from the kubeconfig file when one is named, else from the in-cluster service account."""
    try:
        config = load_kubeconfig(kubeconfig) if kubeconfig else in_cluster_config()
    except (KubeConfigError, OSError, ValueError) as exc:
        where = f"KUBECONFIG={kubeconfig}" if kubeconfig else "in-cluster config (KUBECONFIG is not set)"
        raise ConfigError(f"cannot load Kubernetes credentials from {where}: {exc}") from exc
    return KubeClient(config)


def _translate(exc: Exception, what: str) -> Exception:
    """Map a client failure to stagegate's kinds: conflicts and server trouble retry, the rest do not.

    The message says what failed in stagegate's words and nothing of where: it ends up in answers,
    and the client's own text names the API server and may quote a request header. That text goes
    to the log only (redacted there), for the failures that are not everyday outcomes.
    """
    if isinstance(exc, ApiError):
        status = exc.status
        code = f"HTTP {status} {_phrase(status)}".rstrip()
        if status == 409:
            return KubeConflict(f"{what}: {code}")
        if status == 404:
            return KubeNotFound(f"{what}: {code}")
        if status == 410:
            return KubeGone(f"{what}: {code}")
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
    if isinstance(exc, CredentialError):
        return "no credentials"
    import ssl

    import urllib3

    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, urllib3.exceptions.NewConnectionError | ConnectionError):
        return "connection error"
    if isinstance(exc, urllib3.exceptions.TimeoutError | TimeoutError):
        return "timed out"
    if isinstance(exc, urllib3.exceptions.SSLError | ssl.SSLError):
        return "TLS error"
    return "connection error"


def _message(exc: ApiError) -> str:
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


def _transport_errors() -> tuple[type[Exception], ...]:
    import urllib3

    return (ApiError, CredentialError, urllib3.exceptions.HTTPError, OSError)


def _custom(
    group: str, namespace: str | None, plural: str, name: str | None = None, version: str = VERSION
) -> str:
    """The path of a custom resource (or its collection), namespaced or cluster-wide."""
    where = ("namespaces", namespace) if namespace else ()
    return path("apis", group, version, *where, plural, *((name,) if name else ()))


def _leases(namespace: str, name: str | None = None) -> str:
    return path(
        "apis", "coordination.k8s.io", "v1", "namespaces", namespace, "leases", *((name,) if name else ())
    )


class KubeGates:
    """RolloutGates and Environments in one cluster, each call bounded by `timeout` seconds."""

    def __init__(self, api: KubeClient, timeout: float = 2.0, leases: LeaseWatch | None = None) -> None:
        self.api = api
        self.timeout = timeout
        self.leases = leases or LeaseWatch()

    def _call(
        self,
        what: str,
        method: str,
        url: str,
        body: Any = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        check(what)
        try:
            return self.api.request(
                method, url, timeout=self.timeout, query=query, body=body, content_type=content_type
            )
        except _transport_errors() as exc:
            raise _translate(exc, what) from exc

    def _get(
        self, kind: str, group: str, plural: str, namespace: str, name: str, version: str = VERSION
    ) -> Any:
        """The raw object, or None when it does not exist."""
        try:
            return self._call(
                f"get {kind} {namespace}/{name}", "GET", _custom(group, namespace, plural, name, version)
            )
        except KubeNotFound:
            return None

    def _list(self, what: str, group: str, namespace: str | None, plural: str) -> list[Any]:
        items: list[Any] = self._call(what, "GET", _custom(group, namespace, plural)).get("items") or []
        return items

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
                for item in self._list(f"list Environments in {ns}", ENVIRONMENT_GROUP, ns, "environments")
            ]
        else:
            raws = self._list("list Environments", ENVIRONMENT_GROUP, None, "environments")
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
        return self._list(f"list Environments in {namespace}", ENVIRONMENT_GROUP, namespace, "environments")

    def replace_environment_status(self, raw: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        """Write an Environment's whole status (the `status` subresource), only if the Environment is
        still at the `resourceVersion` it was read at; raise `KubeConflict` if not."""
        meta = raw["metadata"]
        body = {**raw, "status": dict(status)}
        self._call(
            f"update status of Environment {meta['namespace']}/{meta['name']}",
            "PUT",
            path(
                "apis",
                ENVIRONMENT_GROUP,
                VERSION,
                "namespaces",
                meta["namespace"],
                "environments",
                meta["name"],
                "status",
            ),
            body,
            query={"fieldManager": FIELD_MANAGER},
        )

    def get_namespace(self, name: str) -> Mapping[str, Any] | None:
        """The Namespace as the API has it (labels, whether it is being deleted), or None when missing."""
        try:
            namespace: Mapping[str, Any] = self._call(
                f"get Namespace {name}", "GET", path("api", "v1", "namespaces", name)
            )
        except KubeNotFound:
            return None
        return namespace

    def get_oci_repository(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """A Flux OCIRepository (a Kustomization's source, for the deploy guard), or None when missing."""
        raw: Mapping[str, Any] | None = self._get(
            "OCIRepository", OCI_GROUP, "ocirepositories", namespace, name, OCI_VERSION
        )
        return raw

    def get_rollout(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The Rollout as a raw object (its status is read by the core), or None when missing."""
        raw: Mapping[str, Any] | None = self._get("Rollout", GATE_GROUP, "rollouts", namespace, name)
        return raw

    def list_rollouts(self, namespace: str | None) -> list[Mapping[str, Any]]:
        """Every Rollout in the namespace (None: the cluster) as raw objects: one read for many
        Environments."""
        where = f"in {namespace}" if namespace else "in the cluster"
        rollouts: list[Mapping[str, Any]] = self._list(
            f"list Rollouts {where}", GATE_GROUP, namespace, "rollouts"
        )
        return rollouts

    def list_gates(self, namespace: str | None) -> list[RolloutGate]:
        """Every RolloutGate in the namespace (None: the cluster; owned ones may have any name)."""
        where = f"in {namespace}" if namespace else "in the cluster"
        raws = self._list(f"list RolloutGates {where}", GATE_GROUP, namespace, "rolloutgates")
        return [RolloutGate.from_raw(item) for item in raws]

    def create_gate(self, namespace: str, body: Mapping[str, Any]) -> RolloutGate:
        """Create a gate; raise `KubeConflict` when the name is taken."""
        raw = self._call(
            f"create RolloutGate {namespace}/{body['metadata']['name']}",
            "POST",
            _custom(GATE_GROUP, namespace, "rolloutgates"),
            dict(body),
            query={"fieldManager": FIELD_MANAGER},
        )
        return RolloutGate.from_raw(raw)

    def patch_gate(
        self, namespace: str, name: str, patch: Mapping[str, Any], resource_version: str
    ) -> RolloutGate:
        """Merge-patch a gate only if it is still at `resource_version`; raise `KubeConflict` if not."""
        metadata = {**patch.get("metadata", {}), "resourceVersion": resource_version}
        raw = self._call(
            f"patch RolloutGate {namespace}/{name}",
            "PATCH",
            _custom(GATE_GROUP, namespace, "rolloutgates", name),
            {**patch, "metadata": metadata},
            query={"fieldManager": FIELD_MANAGER},
            content_type=MERGE_PATCH,
        )
        return RolloutGate.from_raw(raw)

    def acquire_lease(
        self, owner: Mapping[str, Any], holder: str, seconds: int, now: datetime.datetime
    ) -> dict[str, Any] | None:
        """Hold the report Lease of a Rollout (`owner`, which owns it, so it goes away with it) for
        `seconds`: the Lease object as stored, or None while another holder's claim stands.

        Every write of it is conditional (create, or replace at the resourceVersion read), so two
        callers never both get it. A claim stands until released, or until this process has seen it
        unchanged for its duration on its own clock (`stagegate.lease_watch`); `now` only stamps
        `acquireTime`/`renewTime` for people reading the Lease, it decides nothing."""
        meta = owner["metadata"]
        namespace, name = meta["namespace"], report_lease_name(meta["name"])
        stamp = time_rfc3339(now, micro=True)
        spec = {
            "holderIdentity": holder,
            "leaseDurationSeconds": seconds,
            "acquireTime": stamp,
            "renewTime": stamp,
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
        with contextlib.suppress(KubeConflict):
            return self.create_lease(body)
        current = self.read_lease(namespace, name)
        if current is None:
            return None  # released and gone in between: the caller retries
        held, current_meta = current.get("spec") or {}, current.get("metadata") or {}
        key = (namespace, name, str(current_meta.get("uid") or ""))
        if held.get("holderIdentity"):
            duration = held.get("leaseDurationSeconds")
            claimed = duration if isinstance(duration, int) and not isinstance(duration, bool) else seconds
            if not self.leases.ran_out(key, str(current_meta.get("resourceVersion") or ""), claimed):
                return None
        try:
            taken = self.replace_lease({**current, "spec": spec})
        except KubeConflict:
            return None
        self.leases.forget(key)
        return taken

    def release_lease(self, lease: Mapping[str, Any]) -> None:
        """Give the Lease back, unless someone took it over after it ran out (then it is theirs)."""
        spec = {k: v for k, v in (lease.get("spec") or {}).items() if k != "holderIdentity"}
        with contextlib.suppress(KubeConflict, KubeNotFound):
            self.replace_lease({**lease, "spec": spec})

    def create_lease(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a Lease; `KubeConflict` when it exists."""
        meta = body["metadata"]
        lease: dict[str, Any] = self._call(
            f"create Lease {meta['namespace']}/{meta['name']}", "POST", _leases(meta["namespace"]), dict(body)
        )
        return lease

    def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Lease as stored, or None."""
        try:
            lease: dict[str, Any] = self._call(
                f"get Lease {namespace}/{name}", "GET", _leases(namespace, name)
            )
        except KubeNotFound:
            return None
        return lease

    def replace_lease(self, lease: Mapping[str, Any]) -> dict[str, Any]:
        """Write the Lease whole, conditional on the `resourceVersion` it carries (`KubeConflict` if it
        changed, `KubeNotFound` if it is gone)."""
        meta = lease["metadata"]
        where = f"{meta['namespace']}/{meta['name']}"
        stored: dict[str, Any] = self._call(
            f"write Lease {where}", "PUT", _leases(meta["namespace"], meta["name"]), dict(lease)
        )
        return stored

    def list_objects(self, kind: Watched, namespace: str | None) -> tuple[list[Mapping[str, Any]], str]:
        """Every object of a watched kind (in `namespace`, or the cluster) and the list's resourceVersion,
        from which a watch sees every later change; read in pages of `LIST_PAGE` (one consistent list)."""
        where = f"in {namespace}" if namespace else "in the cluster"
        items: list[Mapping[str, Any]] = []
        query = {"limit": str(LIST_PAGE)}
        version = ""
        while True:
            url = _custom(kind.group, namespace, kind.plural)
            page = self._call(f"list {kind.plural} {where}", "GET", url, query=query)
            items += page.get("items") or []
            meta = page.get("metadata") or {}
            version = version or str(meta.get("resourceVersion") or "")
            if not meta.get("continue"):
                return items, version
            query = {"limit": str(LIST_PAGE), "continue": str(meta["continue"])}

    def watch(
        self, kind: Watched, namespace: str | None, resource_version: str, seconds: int
    ) -> Iterator[Mapping[str, Any]]:
        """The changes after `resource_version`, as watch events (`type`, `object`), with bookmarks, until
        the server ends the watch after `seconds`. `KubeGone` when that version is too old to resume."""
        what = f"watch {kind.plural} {f'in {namespace}' if namespace else 'in the cluster'}"
        check(what)
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(seconds),
        }
        url = _custom(kind.group, namespace, kind.plural)
        try:
            yield from self.api.stream(
                url, query=query, connect_timeout=self.timeout, read_timeout=seconds + WATCH_READ_MARGIN
            )
        except ValueError as exc:
            raise RetryableError(f"{what}: the answer is not a stream of JSON events") from exc
        except _transport_errors() as exc:
            raise _translate(exc, what) from exc

    def warn(self, env: Environment, reason: str, message: str) -> None:
        """Record a Warning Event on the Environment, where `kubectl describe` shows it."""
        self.record_event(
            EventNotice(
                env.namespace, ENVIRONMENT_API_VERSION, ENVIRONMENT_KIND, env.name, env.uid, reason, message
            )
        )

    def record_event(self, notice: EventNotice) -> None:
        """Record an Event about any object (the deploy guard's overrides go on the Rollout).

        An Event about a cluster-scoped object (a Namespace) is stored in `default` without a namespace in
        its `involvedObject`, as client-go's recorders store them (the API accepts no other place).
        """
        self._create_event(_event(notice, f"{notice.name}.{secrets.token_hex(8)}", "Warning"))

    def tell(self, env: Environment, kind: str, reason: str, message: str) -> None:
        """Record a `Normal` or `Warning` Event on the Environment, aggregated as client-go's correlator
        does: the same one again raises the `count` of one Event instead of adding another, so a busy
        pipeline does not flood the API (an increment lost to a concurrent one is not retried)."""
        notice = EventNotice(
            env.namespace, ENVIRONMENT_API_VERSION, ENVIRONMENT_KIND, env.name, env.uid, reason, message
        )
        key = hashlib.sha256("\0".join((env.uid, kind, reason, message)).encode()).hexdigest()[:16]
        name = f"{env.name[: MAX_EVENT_NAME - len(key) - 1]}.{key}"
        try:
            self._create_event(_event(notice, name, kind))
            return
        except KubeConflict:
            pass  # told before: count it
        where = path("api", "v1", "namespaces", env.namespace, "events", name)
        try:
            existing = self._call(f"get Event {name}", "GET", where)
            patch = {
                "metadata": {"resourceVersion": existing["metadata"]["resourceVersion"]},
                "count": int(existing.get("count") or 1) + 1,
                "lastTimestamp": time_rfc3339(datetime.datetime.now(datetime.UTC)),
            }
            self._call(f"count Event {name}", "PATCH", where, patch, content_type=MERGE_PATCH)
        except (KubeConflict, KubeNotFound):
            pass  # counted meanwhile by another writer, or expired: the next one counts again

    def _create_event(self, event: Mapping[str, Any]) -> None:
        meta = event["metadata"]
        where = path("api", "v1", "namespaces", meta["namespace"], "events")
        self._call(f"create Event {meta['name']}", "POST", where, event)


MAX_EVENT_NAME = 253


def _event(notice: EventNotice, name: str, kind: str) -> dict[str, Any]:
    """An Event of `kind` (`Normal`, `Warning`) about the object `notice` names, stored as `name`."""
    now = time_rfc3339(datetime.datetime.now(datetime.UTC))
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": notice.namespace or "default"},
        "involvedObject": {
            "apiVersion": notice.api_version,
            "kind": notice.kind,
            "name": notice.name,
            **({"namespace": notice.namespace} if notice.namespace else {}),
            "uid": notice.uid,
        },
        "reason": notice.reason,
        "message": notice.message[:1024],
        "type": kind,
        "source": {"component": "stagegate"},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
