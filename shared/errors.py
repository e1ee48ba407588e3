"""The failure kinds every entry point understands, decided by type rather than by message.

`BadEvent` and `Unauthorized` are the caller's fault: answered with a 4xx, never retried, nothing
changed. `RetryableError` is ours or a dependency's and may pass: 5xx over HTTP, raised from a
CloudEvent target so Pub/Sub redelivers. `PermanentError` will not get better by retrying: logged
with its reason and acknowledged so nothing loops.
"""


class StagegateError(Exception):
    """Base of every error stagegate raises on purpose."""


class BadEvent(StagegateError):
    """The input is malformed, of the wrong kind, or lacks a required field."""

    status = 400


class PayloadTooLarge(BadEvent):
    """The request body exceeds the configured limit."""

    status = 413


class Unauthorized(StagegateError):
    """The request did not prove it comes from the configured sender."""

    status = 401


class RetryableError(StagegateError):
    """A dependency failed in a way that may pass (timeouts, 5xx, conflicts that kept racing)."""

    status = 503


class PartialFailure(RetryableError):
    """Some of the work failed in a retryable way; `summary` says what was done and what failed."""

    def __init__(self, message: str, summary: dict[str, object]) -> None:
        super().__init__(message)
        self.summary = summary


class PermanentError(StagegateError):
    """A well-formed request that can never succeed (for example a gate owned by someone else)."""

    status = 200


class InvalidRequest(PermanentError):
    """A dependency refused one request as invalid (GitHub's 422); the next, different one may pass."""
