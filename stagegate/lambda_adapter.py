"""AWS Lambda adapters: the same handlers, fed from EventBridge (directly or through SQS) and from
API Gateway HTTP API / Lambda function URL events.

Only the envelope differs from Functions Framework: errors are mapped by the same `answer` for HTTP,
and for queues a retryable failure becomes a `batchItemFailures` entry (SQS redelivers that message
only), while a message that can never succeed is logged and acknowledged.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any

from shared.errors import BadEvent, PayloadTooLarge, PermanentError, RetryableError
from shared.json_input import decode_json
from stagegate.http import Response
from stagegate.logs import get_logger

log = get_logger("lambda")


def http_request(event: Mapping[str, Any], limit: int) -> tuple[dict[str, str], bytes]:
    """Headers and raw body of an HTTP API (payload 2.0) or function URL event; `BadEvent` if malformed."""
    if not isinstance(event, Mapping):
        raise BadEvent("the HTTP event must be an object")
    raw_headers = event.get("headers") or {}
    if not isinstance(raw_headers, Mapping):
        raise BadEvent("event.headers must be an object")
    headers = {str(k): str(v) for k, v in raw_headers.items()}
    raw = event.get("body") or ""
    if not isinstance(raw, str):
        raise BadEvent(f"event.body must be a string, got {type(raw).__name__}")
    try:
        body = base64.b64decode(raw, validate=True) if event.get("isBase64Encoded") else raw.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate the runtime decoded from a `\uD800` escape
        raise BadEvent(f"body is not valid Unicode: {exc}") from exc
    except (binascii.Error, ValueError) as exc:
        raise BadEvent(f"body is not valid base64: {exc}") from exc
    if len(body) > limit:
        raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
    return headers, body


def http_response(response: Response) -> dict[str, Any]:
    """A Functions Framework style answer as the Lambda HTTP integration expects it."""
    body, status, headers = response
    return {"statusCode": status, "headers": headers, "body": body}


def _detail(envelope: object) -> Mapping[str, Any]:
    detail = envelope.get("detail") if isinstance(envelope, Mapping) else None
    if not isinstance(detail, Mapping):
        raise BadEvent("EventBridge event has no detail object")
    return detail


def _sqs_detail(record: object) -> Mapping[str, Any]:
    """The EventBridge event an SQS message carries, decoded strictly: every failure is a `BadEvent`."""
    if not isinstance(record, Mapping):
        raise BadEvent("SQS record must be an object")
    body = record.get("body")
    if not isinstance(body, str) or not body:
        raise BadEvent("SQS record has no body")
    return _detail(decode_json(body, "SQS message body"))


def consume_eventbridge(
    event: Mapping[str, Any], handle: Callable[[Mapping[str, Any]], Any]
) -> dict[str, Any]:
    """Run `handle` on the detail of each EventBridge event, whether delivered directly or via SQS."""
    if not isinstance(event, Mapping):
        log.error(f"dropping a Lambda event that is not an object: {type(event).__name__}")
        return {}
    if "Records" not in event:
        try:
            handle(_detail(event))
        except (BadEvent, PermanentError) as exc:
            log.error(f"dropping EventBridge event: {exc}", extra={"fields": {"id": event.get("id")}})
        return {}
    records = event["Records"]
    if not isinstance(records, list):
        log.error("dropping an SQS event whose Records is not a list")
        return {"batchItemFailures": []}
    failures = []
    for record in records:
        message_id = record.get("messageId") if isinstance(record, Mapping) else None
        try:
            handle(_sqs_detail(record))
        except (BadEvent, PermanentError) as exc:
            log.error(f"dropping SQS message: {exc}", extra={"fields": {"messageId": message_id}})
        except RetryableError as exc:
            log.warning(
                f"SQS message will be redelivered: {exc}", extra={"fields": {"messageId": message_id}}
            )
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}


def consume_sqs_fifo(event: Mapping[str, Any], handle: Callable[[bytes], Any]) -> dict[str, Any]:
    """Run `handle` on each SQS FIFO message body in order. Once one must be retried, it and every
    later message are returned as failures unprocessed, so SQS delivers them again in the same order
    (a FIFO queue keeps a message group's order only if nothing after a failure is acknowledged)."""
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(records, list):
        log.error("dropping an SQS event without a Records list")
        return {"batchItemFailures": []}
    failures: list[dict[str, Any]] = []
    for record in records:
        message_id = record.get("messageId") if isinstance(record, Mapping) else None
        if failures:
            failures.append({"itemIdentifier": message_id})
            continue
        body = record.get("body") if isinstance(record, Mapping) else None
        try:
            if not isinstance(body, str) or not body:
                raise BadEvent("SQS record has no body")
            handle(body.encode())
        except (BadEvent, PermanentError) as exc:
            log.error(f"dropping SQS message: {exc}", extra={"fields": {"messageId": message_id}})
        except RetryableError as exc:
            log.warning(
                f"SQS message will be redelivered: {exc}", extra={"fields": {"messageId": message_id}}
            )
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}
