"""Kubernetes audit events from a CloudWatch Logs subscription: how EKS clusters reach stagegate.

Why this exists: on Amazon EKS nobody can set the kube-apiserver's audit webhook flags, so neither
`k8s_audit_http` nor `audit_bridge` can receive its events. EKS control-plane logging (log type `audit`)
writes them to CloudWatch Logs instead: log group `/aws/eks/<cluster>/cluster`, log streams
`kube-apiserver-audit-<id>` (rotated as they grow), one `audit.k8s.io/v1` `Event` as JSON per log event
(EKS user guide, "Send control plane logs to CloudWatch Logs", section "View cluster control plane logs":
https://docs.aws.amazon.com/eks/latest/userguide/control-plane-logs.html). A subscription filter on that
group delivers the matching log events to a Lambda function.

The delivery (Lambda developer guide, "Using Lambda with CloudWatch Logs":
https://docs.aws.amazon.com/lambda/latest/dg/services-cloudwatchlogs.html; CloudWatch Logs user guide,
"Real-time processing of log data with subscriptions":
https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/Subscriptions.html): CloudWatch Logs invokes the
function *asynchronously* with `{"awslogs": {"data": "<base64 of gzip of JSON>"}}`; the JSON is
`{"messageType": "DATA_MESSAGE" | "CONTROL_MESSAGE", "owner": "<account>", "logGroup", "logStream",
"subscriptionFilters": [...], "logEvents": [{"id", "timestamp" (ms), "message"}]}`. A control message only
checks that the destination is reachable and is acknowledged without acting.

Retries: a failure to *invoke* (throttling, a 5xx of Lambda) is retried by CloudWatch Logs for up to 24
hours; once Lambda has queued the event, a function error is retried by Lambda's asynchronous invocation,
by default twice more, one and then two minutes later (Lambda developer guide, "How Lambda handles errors
and retries with asynchronous invocation":
https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html), and the same event may
arrive twice even without an error. So `consume_cloudwatch_logs` raises on a retryable failure (the retry
redoes the whole delivery: every gate write is idempotent and conditional) and returns, after logging, on
input that can never succeed, which a retry would only repeat.

Why not Powertools for AWS Lambda's `CloudWatchLogsEvent(event).parse_logs_data()`, whose field names
these views keep: it is not strict enough for input we must tell apart from a transient failure.
`base64.b64decode` there does not validate (characters outside the alphabet are silently dropped, so a
corrupted payload decodes to something else); `zlib.decompress` has no output bound (a few hundred KiB of
gzip can expand to hundreds of megabytes in a 512 MB function); `json.loads` accepts `NaN` and literals
`shared.json_input` refuses; every failure surfaces as `KeyError`, `binascii.Error`, `zlib.error`,
`UnicodeDecodeError` or `JSONDecodeError` rather than a `BadEvent`; and its views return whatever type a
field holds. So the delivery is decoded here with the standard library, bounded, and read strictly; a test
checks both read a well-formed delivery the same.

Each log event is parsed on its own: a malformed line is skipped with its reason and the others are still
acted on (unlike an audit `EventList`, the lines of one delivery are independent events, batched by
CloudWatch Logs, not by the apiserver). EKS's own audit policy logs custom resources at `Metadata` level
(no `responseObject`), so an Environment change is acted on by reading the Environment from the API.

This module does no I/O but logging, and never acts on an event itself: the handler it is given does.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from shared.audit import AUDIT_API_VERSION, AuditEvent
from shared.errors import BadEvent, PayloadTooLarge, PermanentError, RetryableError
from shared.json_input import decode_json
from stagegate.logs import get_logger

log = get_logger("cloudwatch_logs")

DATA_MESSAGE: Final = "DATA_MESSAGE"
CONTROL_MESSAGE: Final = "CONTROL_MESSAGE"
MESSAGE_TYPES: Final = (DATA_MESSAGE, CONTROL_MESSAGE)

AUDIT_STREAM_PREFIX: Final = "kube-apiserver-audit-"
"""EKS names the audit log streams `kube-apiserver-audit-<id>`; the other control-plane log types
(`kube-apiserver-`, `authenticator-`, `kube-controller-manager-`, `kube-scheduler-`) share the group."""

_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS  # gzip framing only: what CloudWatch Logs sends


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One log event of a subscription delivery."""

    id: str
    """Unique id CloudWatch Logs gives the log event."""
    timestamp: int
    """When the event was logged, milliseconds since the epoch."""
    message: str
    """The log line: on an EKS audit stream, one audit `Event` as JSON."""


@dataclass(frozen=True, slots=True)
class SubscriptionMessage:
    """The decoded `awslogs.data` of a CloudWatch Logs subscription delivery."""

    message_type: str
    """`DATA_MESSAGE`, or `CONTROL_MESSAGE` (a reachability check: its other fields are not read)."""
    owner: str
    """The AWS account id of the log group."""
    log_group: str
    """The log group, `/aws/eks/<cluster>/cluster` for EKS."""
    log_stream: str
    """The log stream, `kube-apiserver-audit-<id>` for EKS audit events."""
    subscription_filters: tuple[str, ...]
    """The subscription filters that matched."""
    log_events: tuple[LogEvent, ...]
    """The matching log events, in the order delivered."""
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def is_control(self) -> bool:
        """True for a control message, which is acknowledged without acting."""
        return self.message_type == CONTROL_MESSAGE


@dataclass(frozen=True, slots=True)
class SkippedLine:
    """A log event that is not an audit `Event`, and why."""

    id: str
    reason: str


@dataclass(frozen=True, slots=True)
class AuditLines:
    """What the log events of a delivery hold: the audit events, and the lines skipped."""

    events: list[AuditEvent]
    skipped: list[SkippedLine]


def decode_subscription(event: object, max_bytes: int, max_events: int) -> SubscriptionMessage:
    """Decode a subscription delivery strictly; every failure is a `BadEvent`.

    The decompressed document may hold at most `max_bytes` bytes and `max_events` log events, or it is
    refused whole (`PayloadTooLarge`) before anything else is read: each event may cost a Kubernetes write,
    so the count bounds one invocation's work, as `AUDIT_MAX_EVENTS` bounds the other entry points'.
    """
    document = decode_json(_decompressed(_data(event), max_bytes), "the decompressed awslogs.data")
    if not isinstance(document, Mapping):
        raise BadEvent("the decompressed awslogs.data must be a JSON object")
    message_type = document.get("messageType")
    if message_type not in MESSAGE_TYPES:
        raise BadEvent(f"messageType must be one of {', '.join(MESSAGE_TYPES)}, got {message_type!r}")
    if message_type == CONTROL_MESSAGE:
        return SubscriptionMessage(
            message_type=CONTROL_MESSAGE,
            owner=_lenient(document, "owner"),
            log_group=_lenient(document, "logGroup"),
            log_stream=_lenient(document, "logStream"),
            subscription_filters=(),
            log_events=(),
            raw=document,
        )
    filters = document.get("subscriptionFilters")
    if not isinstance(filters, list) or not all(isinstance(f, str) for f in filters):
        raise BadEvent("subscriptionFilters must be a list of strings")
    items = document.get("logEvents")
    if not isinstance(items, list):
        raise BadEvent("logEvents must be a list")
    if len(items) > max_events:
        raise PayloadTooLarge(
            f"the delivery carries {len(items)} log events, more than the {max_events} one delivery may carry"
        )
    return SubscriptionMessage(
        message_type=DATA_MESSAGE,
        owner=_required(document, "owner"),
        log_group=_required(document, "logGroup"),
        log_stream=_required(document, "logStream"),
        subscription_filters=tuple(filters),
        log_events=tuple(_log_event(item, i) for i, item in enumerate(items)),
        raw=document,
    )


def _data(event: object) -> str:
    awslogs = event.get("awslogs") if isinstance(event, Mapping) else None
    data = awslogs.get("data") if isinstance(awslogs, Mapping) else None
    if not isinstance(data, str) or not data:
        raise BadEvent("the Lambda event has no awslogs.data (not a CloudWatch Logs subscription delivery)")
    return data


def _decompressed(data: str, max_bytes: int) -> bytes:
    """base64, then gzip (every member), at most `max_bytes` bytes of output."""
    try:
        compressed = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:  # ValueError: a non-ASCII character
        raise BadEvent(f"awslogs.data is not base64: {exc}") from exc
    out = bytearray()
    rest = compressed
    try:
        while rest:
            member = zlib.decompressobj(wbits=_GZIP_WBITS)
            out += member.decompress(rest, max_bytes + 1 - len(out))
            if len(out) > max_bytes:
                raise PayloadTooLarge(f"awslogs.data decompresses to more than {max_bytes} bytes")
            if not member.eof:
                raise BadEvent("awslogs.data is not gzip: the stream is truncated")
            rest = member.unused_data
    except zlib.error as exc:
        raise BadEvent(f"awslogs.data is not gzip: {exc}") from exc
    return bytes(out)


def _required(document: Mapping[str, Any], key: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value:
        raise BadEvent(f"{key} is required and must be a non-empty string")
    return value


def _lenient(document: Mapping[str, Any], key: str) -> str:
    value = document.get(key)
    return value if isinstance(value, str) else ""


def _log_event(item: object, i: int) -> LogEvent:
    where = f"logEvents[{i}]"
    if not isinstance(item, Mapping):
        raise BadEvent(f"{where} must be an object")
    timestamp = item.get("timestamp")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        raise BadEvent(f"{where}.timestamp must be an integer")
    for key in ("id", "message"):
        if not isinstance(item.get(key), str):
            raise BadEvent(f"{where}.{key} must be a string")
    return LogEvent(id=item["id"], timestamp=timestamp, message=item["message"])


def audit_events(message: SubscriptionMessage) -> AuditLines:
    """Each log event read as one `audit.k8s.io/v1` `Event`; a line that is not one is skipped with its
    reason, and the others are still read."""
    events: list[AuditEvent] = []
    skipped: list[SkippedLine] = []
    for i, line in enumerate(message.log_events):
        try:
            events.append(_audit_event(line.message, f"logEvents[{i}].message"))
        except BadEvent as exc:
            skipped.append(SkippedLine(line.id, str(exc)))
    return AuditLines(events, skipped)


def _audit_event(text: str, where: str) -> AuditEvent:
    document = decode_json(text, where)
    if not isinstance(document, Mapping):
        raise BadEvent(f"{where} must be a JSON object")
    api_version, kind = document.get("apiVersion"), document.get("kind")
    if api_version != AUDIT_API_VERSION or kind != "Event":
        raise BadEvent(
            f"{where} is not an {AUDIT_API_VERSION} Event (apiVersion {api_version!r}, kind {kind!r})"
        )
    return AuditEvent.from_raw(document, where)


def is_audit_stream(log_stream: str) -> bool:
    """Whether a log stream is one of EKS's kube-apiserver audit streams."""
    return log_stream.startswith(AUDIT_STREAM_PREFIX)


def consume_cloudwatch_logs(
    event: object,
    max_bytes: int,
    max_events: int,
    handle: Callable[[Sequence[AuditEvent]], Mapping[str, Any]],
) -> dict[str, Any]:
    """Run `handle` on the audit events of a subscription delivery and say what was done.

    Returning acknowledges the delivery. Input that can never succeed (a malformed delivery, one too large,
    a delivery from a stream that is not an audit stream, a `PermanentError` of `handle`) is logged and
    acknowledged; a malformed line is logged and skipped. A `RetryableError` of `handle` is raised, so
    Lambda runs the delivery again (asynchronous invocation: twice more by default).
    """
    try:
        message = decode_subscription(event, max_bytes, max_events)
    except BadEvent as exc:
        log.error(f"dropping a CloudWatch Logs delivery: {exc}")
        return {"dropped": str(exc)}
    where = {"logGroup": message.log_group, "logStream": message.log_stream}
    if message.is_control:
        log.info("CloudWatch Logs control message acknowledged", extra={"fields": where})
        return {"messageType": CONTROL_MESSAGE, "events": 0}
    if not is_audit_stream(message.log_stream):
        reason = f"log stream {message.log_stream!r} is not a kube-apiserver audit stream"
        log.warning(f"ignoring a CloudWatch Logs delivery: {reason}", extra={"fields": where})
        return {"ignored": reason, "logEvents": len(message.log_events)}
    lines = audit_events(message)
    for line in lines.skipped:
        log.error(
            f"skipping a log event that is not an audit Event: {line.reason}",
            extra={"fields": {**where, "logEventId": line.id}},
        )
    skipped = [{"id": line.id, "reason": line.reason} for line in lines.skipped]
    try:
        summary = handle(lines.events)
    except (BadEvent, PermanentError) as exc:
        log.error(f"dropping a CloudWatch Logs delivery: {exc}", extra={"fields": where})
        return {"dropped": str(exc), "skipped": skipped}
    except RetryableError as exc:
        log.warning(f"CloudWatch Logs delivery will be retried: {exc}", extra={"fields": where})
        raise
    result = {"logEvents": len(message.log_events), "skipped": skipped, **summary}
    log.info("CloudWatch Logs delivery handled", extra={"fields": {**where, "summary": result}})
    return result
