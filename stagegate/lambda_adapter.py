"""AWS Lambda adapters: the same handlers, fed from EventBridge (directly or through SQS) and from
API Gateway HTTP API / Lambda function URL events.

Only the envelope differs from Functions Framework: errors are mapped by the same `answer` for HTTP,
and for queues a retryable failure becomes a `batchItemFailures` entry (SQS redelivers that message
only), while a message that can never succeed is logged and acknowledged.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from typing import Any

from shared.errors import BadEvent, PayloadTooLarge, PermanentError, RetryableError
from stagegate.http import Response
from stagegate.logs import get_logger

log = get_logger("lambda")


def http_request(event: Mapping[str, Any], limit: int) -> tuple[dict[str, str], bytes]:
    """Headers and raw body of an HTTP API (payload 2.0) or function URL event."""
    headers = {str(k): str(v) for k, v in (event.get("headers") or {}).items()}
    raw = event.get("body") or ""
    try:
        body = base64.b64decode(raw, validate=True) if event.get("isBase64Encoded") else str(raw).encode()
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


def consume_eventbridge(
    event: Mapping[str, Any], handle: Callable[[Mapping[str, Any]], Any]
) -> dict[str, Any]:
    """Run `handle` on the detail of each EventBridge event, whether delivered directly or via SQS."""
    if "Records" not in event:
        try:
            handle(_detail(event))
        except (BadEvent, PermanentError) as exc:
            log.error(f"dropping EventBridge event: {exc}", extra={"fields": {"id": event.get("id")}})
        return {}
    failures = []
    for record in event["Records"]:
        message_id = record.get("messageId")
        try:
            handle(_detail(json.loads(record.get("body") or "")))
        except (ValueError, BadEvent, PermanentError) as exc:
            log.error(f"dropping SQS message: {exc}", extra={"fields": {"messageId": message_id}})
        except RetryableError as exc:
            log.warning(
                f"SQS message will be redelivered: {exc}", extra={"fields": {"messageId": message_id}}
            )
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}
