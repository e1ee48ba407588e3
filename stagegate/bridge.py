"""The audit bridge: keep the audit events the functions act on and publish each to a durable transport.

The kube-apiserver's batch-mode audit webhook posts EventLists here; what survives `route()` is
published one event per message, in the order received: to Pub/Sub with an ordering key per object
(`namespace/name`), so events for one Environment arrive in order, or to an EventBridge bus. Nothing
is published for an irrelevant event. A publish failure raises `RetryableError` (a 5xx, so the
apiserver retries the batch). The vendor clients are imported only by the transport that is used.
A failure is answered in stagegate's words; the client's own text (endpoints, request details) goes
to the log only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Protocol

from shared.audit import AUDIT_API_VERSION, AuditEvent, Routed, route
from shared.errors import RetryableError
from stagegate.logs import get_logger
from stagegate.settings import ConfigError, Settings

log = get_logger("bridge")

EVENTBRIDGE_SOURCE = "stagegate.kubernetes-audit"
EVENTBRIDGE_DETAIL_TYPE = "Kubernetes audit event"
EVENTBRIDGE_BATCH = 10  # PutEvents takes at most 10 entries
SQS_BATCH = 10  # SendMessageBatch takes at most 10 entries


def message(event: AuditEvent) -> bytes:
    """One audit event as a standalone `audit.k8s.io/v1` Event document (what `k8s_audit` parses)."""
    return json.dumps({**event.raw, "apiVersion": AUDIT_API_VERSION, "kind": "Event"}).encode()


def ordering_key(routed: Routed) -> str:
    """Events for one object share a key, so Pub/Sub delivers them in publish order."""
    return f"{routed.namespace}/{routed.name}"


Message = tuple[str, bytes]
"""(key, body): the ordering key (Pub/Sub), resource (EventBridge) or message group (SQS), and the
JSON document (`audit.k8s.io/v1` `Event` or `EventList`)."""


class Transport(Protocol):
    """Where relevant events go; raises `RetryableError` when they could not all be published."""

    def publish(self, events: Sequence[Routed]) -> None: ...
    def publish_messages(self, messages: Sequence[Message]) -> None: ...


def messages_of(events: Sequence[Routed]) -> list[Message]:
    """One message per event, keyed by its object."""
    return [(ordering_key(routed), message(routed.event)) for routed in events]


class PubSubTransport:
    """Google Cloud Pub/Sub with message ordering (honours PUBSUB_EMULATOR_HOST)."""

    def __init__(self, topic: str, timeout: float) -> None:
        from google.cloud import pubsub_v1

        self.topic = topic
        self.timeout = timeout
        self.client = pubsub_v1.PublisherClient(
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        )

    def publish(self, events: Sequence[Routed]) -> None:
        self.publish_messages(messages_of(events))

    def publish_messages(self, messages: Sequence[Message]) -> None:
        futures = [(key, self.client.publish(self.topic, body, ordering_key=key)) for key, body in messages]
        failed = []
        for key, future in futures:
            try:
                future.result(timeout=self.timeout)
            except (FutureTimeout, Exception) as exc:  # any publish failure means: retry the batch
                failed.append(key)
                log.warning(
                    "a Pub/Sub publish failed",
                    extra={
                        "fields": {
                            "topic": self.topic,
                            "object": key,
                            "detail": f"{type(exc).__name__}: {exc}",
                        }
                    },
                )
                # A failed ordered publish pauses its key until resumed; the apiserver's retry resumes it.
                # One that timed out is still in flight, its key not paused: resuming it is refused.
                with contextlib.suppress(RuntimeError):
                    self.client.resume_publish(self.topic, key)
        if failed:
            raise RetryableError(
                f"publishing {len(failed)} of {len(futures)} events to Pub/Sub failed: {', '.join(failed)}"
            )


class EventBridgeTransport:
    """An Amazon EventBridge custom bus (honours AWS_REGION and AWS_ENDPOINT_URL)."""

    def __init__(self, bus: str, timeout: float) -> None:
        import boto3
        from botocore.config import Config

        self.bus = bus
        self.client = boto3.client(
            "events",
            config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1}),
        )

    def publish(self, events: Sequence[Routed]) -> None:
        self.publish_messages(messages_of(events))

    def publish_messages(self, messages: Sequence[Message]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        for start in range(0, len(messages), EVENTBRIDGE_BATCH):
            batch = messages[start : start + EVENTBRIDGE_BATCH]
            entries = [
                {
                    "Source": EVENTBRIDGE_SOURCE,
                    "DetailType": EVENTBRIDGE_DETAIL_TYPE,
                    "Detail": body.decode(),
                    "EventBusName": self.bus,
                    "Resources": [key],
                }
                for key, body in batch
            ]
            try:
                answer = self.client.put_events(Entries=entries)
            except (BotoCoreError, ClientError) as exc:
                log.warning(
                    "an EventBridge publish failed",
                    extra={"fields": {"bus": self.bus, "detail": f"{type(exc).__name__}: {exc}"}},
                )
                raise RetryableError(f"publishing to EventBridge failed ({_failure(exc)})") from exc
            if answer.get("FailedEntryCount"):
                errors = {e.get("ErrorCode") for e in answer["Entries"] if e.get("ErrorCode")}
                log.warning(
                    "EventBridge refused entries",
                    extra={"fields": {"bus": self.bus, "errors": sorted(map(str, errors))}},
                )
                raise RetryableError(f"EventBridge refused {answer['FailedEntryCount']} entries")


class SqsFifoTransport:
    """An Amazon SQS FIFO queue: one message group per object, so a consumer sees one Rollout's
    changes in order and never two of them at once (honours AWS_REGION and AWS_ENDPOINT_URL)."""

    def __init__(self, queue_url: str, timeout: float) -> None:
        import boto3
        from botocore.config import Config

        self.queue_url = queue_url
        self.client = boto3.client(
            "sqs",
            config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1}),
        )

    def publish(self, events: Sequence[Routed]) -> None:
        self.publish_messages(messages_of(events))

    def publish_messages(self, messages: Sequence[Message]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        for start in range(0, len(messages), SQS_BATCH):
            batch = messages[start : start + SQS_BATCH]
            entries = []
            for i, (key, body) in enumerate(batch):
                entries.append(
                    {
                        "Id": str(i),
                        "MessageBody": body.decode(),
                        "MessageGroupId": key,
                        # The same event sent twice within SQS's 5-minute window is kept once.
                        "MessageDeduplicationId": hashlib.sha256(body).hexdigest(),
                    }
                )
            try:
                answer = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except (BotoCoreError, ClientError) as exc:
                log.warning(
                    "an SQS send failed",
                    extra={"fields": {"queue": self.queue_url, "detail": f"{type(exc).__name__}: {exc}"}},
                )
                raise RetryableError(f"sending to SQS failed ({_failure(exc)})") from exc
            if answer.get("Failed"):
                codes = sorted({str(f.get("Code")) for f in answer["Failed"]})
                log.warning(
                    "SQS refused messages", extra={"fields": {"queue": self.queue_url, "errors": codes}}
                )
                raise RetryableError(f"SQS refused {len(answer['Failed'])} messages")


def _failure(exc: Exception) -> str:
    """What kind of AWS failure this was, in a few words of our own."""
    from botocore.exceptions import ClientError, ConnectionError, ReadTimeoutError

    if isinstance(exc, ReadTimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionError):
        return "connection error"
    if isinstance(exc, ClientError):
        return f"HTTP {exc.response.get('ResponseMetadata', {}).get('HTTPStatusCode', '?')}"
    return "the request could not be sent"


def transport_from(settings: Settings) -> Transport:
    """The transport the configuration names; a missing piece fails at start naming its variable."""
    return audit_transport_maker(settings)()


def audit_transport_maker(settings: Settings) -> Callable[[], Transport]:
    """How to make the audit transport `BRIDGE_TRANSPORT` names, checked now, made when called."""
    timeout = settings.audit_deadline_seconds
    if settings.bridge_transport == "pubsub":
        topic = settings.bridge_pubsub_topic
        if not topic:
            raise ConfigError("BRIDGE_PUBSUB_TOPIC is required when BRIDGE_TRANSPORT=pubsub")
        return lambda: PubSubTransport(topic, timeout)
    if settings.bridge_transport == "eventbridge":
        bus = settings.bridge_event_bus
        if not bus:
            raise ConfigError("BRIDGE_EVENT_BUS is required when BRIDGE_TRANSPORT=eventbridge")
        return lambda: EventBridgeTransport(bus, timeout)
    raise ConfigError(f"BRIDGE_TRANSPORT must be pubsub or eventbridge, got {settings.bridge_transport!r}")


def report_transport_from(settings: Settings) -> Transport | None:
    """Where Rollout status changes go for the reporter (`REPORT_TRANSPORT`), or None when unset.

    A missing piece fails at start naming its variable, but the client is made on the first hand-off
    (`OnFirstUse`): `k8s_audit_http` holds this transport, and on a cold instance the Environment create
    the apiserver waits on must not wait for a cloud SDK's import first (Pub/Sub's is ~270 ms here, more
    than the function's whole start). A bridge's own transport (`transport_from`) is made at start:
    every event it keeps is published with it."""
    if settings.report_transport is None:
        return None
    if settings.report_transport == "pubsub":
        topic = settings.report_pubsub_topic
        if not topic:
            raise ConfigError("REPORT_PUBSUB_TOPIC is required when REPORT_TRANSPORT=pubsub")
        return OnFirstUse(lambda: PubSubTransport(topic, settings.audit_deadline_seconds), "Pub/Sub")
    if settings.report_transport == "sqs":
        queue_url = settings.report_sqs_queue_url
        if not queue_url:
            raise ConfigError("REPORT_SQS_QUEUE_URL is required when REPORT_TRANSPORT=sqs")
        return OnFirstUse(lambda: SqsFifoTransport(queue_url, settings.audit_deadline_seconds), "SQS")
    raise ConfigError(f"REPORT_TRANSPORT must be pubsub or sqs, got {settings.report_transport!r}")


class OnFirstUse:
    """A transport whose client is made when it first publishes (once, whichever thread comes first).
    A client that cannot be made (no cloud credentials, say) fails that publish as retryable, in
    stagegate's words; the SDK's own text goes to the log only."""

    def __init__(self, make: Callable[[], Transport], name: str) -> None:
        self._make = make
        self._name = name
        self._lock = threading.Lock()
        self._transport: Transport | None = None

    def publish(self, events: Sequence[Routed]) -> None:
        self._made().publish(events)

    def publish_messages(self, messages: Sequence[Message]) -> None:
        self._made().publish_messages(messages)

    def _made(self) -> Transport:
        with self._lock:
            if self._transport is None:
                try:
                    self._transport = self._make()
                except Exception as exc:
                    log.warning(
                        "the transport's client could not be made",
                        extra={"fields": {"transport": self._name, "detail": f"{type(exc).__name__}: {exc}"}},
                    )
                    raise RetryableError(f"the {self._name} client could not be made") from None
            return self._transport


def for_reporter(events: Sequence[Routed]) -> list[Routed]:
    """The events the reporter acts on: Rollout status changes."""
    return [routed for routed in events if routed.route == "rollout"]


@dataclass
class BridgeSummary:
    """What a delivery contained and what was published."""

    events: int
    published: int
    ignored: dict[str, int]
    for_reporter: int | None = None
    """Rollout changes also handed to the reporter's transport; None when none is configured."""

    def to_json(self) -> dict[str, Any]:
        handed = {} if self.for_reporter is None else {"for_reporter": self.for_reporter}
        return {"events": self.events, "published": self.published, **handed, "ignored": self.ignored}


def bridge(
    events: Sequence[AuditEvent], transport: Transport, reports: Transport | None = None
) -> BridgeSummary:
    """Publish the relevant events, in order, and Rollout status changes to `reports` as well; count the
    rest by reason."""
    relevant: list[Routed] = []
    ignored: dict[str, int] = {}
    for event in events:
        decision = route(event)
        if isinstance(decision, Routed):
            relevant.append(decision)
        else:
            ignored[decision.reason] = ignored.get(decision.reason, 0) + 1
    if relevant:
        transport.publish(relevant)
    if reports is None:
        return BridgeSummary(len(events), len(relevant), ignored)
    handed = for_reporter(relevant)
    if handed:
        reports.publish(handed)
    return BridgeSummary(len(events), len(relevant), ignored, len(handed))


def hand_off(events: Sequence[AuditEvent], reports: Transport | None) -> dict[str, Any]:
    """For the blocking audit webhook: pass Rollout status changes on to the reporter's transport, so
    no GitHub call happens while the apiserver waits. A failure is logged, not raised: the answer is
    about gates, and the scheduled resync reports what was not handed over."""
    if reports is None:
        return {}
    handed = for_reporter([r for r in map(route, events) if isinstance(r, Routed)])
    if not handed:
        return {"for_reporter": 0}
    try:
        reports.publish(handed)
    except RetryableError as exc:
        log.warning("Rollout changes were not handed to the reporter", extra={"fields": {"reason": str(exc)}})
        return {"for_reporter": 0, "hand_off_error": str(exc)}
    return {"for_reporter": len(handed)}
