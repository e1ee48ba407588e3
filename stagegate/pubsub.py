"""Pub/Sub push deliveries as CloudEvents: unwrap the message and decide between ack and redelivery.

Returning acknowledges the message; raising makes Pub/Sub redeliver it. So a retryable failure
raises, and a message that can never succeed (bad base64, not an audit document, a gate owned by
someone else) is logged with its reason and acknowledged, which keeps poison messages from looping.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any

from shared.errors import BadEvent, PermanentError, RetryableError
from stagegate.logs import get_logger

log = get_logger("pubsub")


PUSH_ENVELOPE_BYTES = 64 * 1024
"""Room for what a push adds around a message: attributes, ids, the subscription, CloudEvent fields."""


def push_body_limit(message_limit: int) -> int:
    """The largest push body that carries a message of at most `message_limit` bytes (base64: 4/3)."""
    return 4 * -(-message_limit // 3) + PUSH_ENVELOPE_BYTES


def message_data(data: object) -> bytes:
    """The decoded `message.data` of a Pub/Sub push body (`{"message": {"data": base64}}`)."""
    message = data.get("message") if isinstance(data, Mapping) else None
    encoded = message.get("data") if isinstance(message, Mapping) else None
    if not isinstance(encoded, str) or not encoded:
        raise BadEvent("CloudEvent data has no message.data")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadEvent(f"message.data is not base64: {exc}") from exc


def consume(event: Any, handle: Callable[[bytes], Any], target: str) -> None:
    """Run `handle` on the message in a CloudEvent; swallow permanent failures, re-raise retryable ones."""
    ids = {"target": target, "cloudEventId": event["id"], "source": event["source"]}
    try:
        result = handle(message_data(event.data))
    except (BadEvent, PermanentError) as exc:
        log.error(f"{target}: dropping message: {exc}", extra={"fields": ids})
        return
    except RetryableError as exc:
        log.warning(f"{target}: will be redelivered: {exc}", extra={"fields": ids})
        raise
    summary = result.to_json() if hasattr(result, "to_json") else result
    log.info(f"{target}: handled", extra={"fields": {**ids, "summary": summary}})
