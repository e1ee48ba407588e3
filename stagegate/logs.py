"""Structured logs: one JSON object per line, the shape Cloud Logging and most collectors parse, with
every secret replaced by `[REDACTED]`.

Every line carries `severity` and `message`; callers add fields (`environment`, `gate`, `action`,
`reason`, `allowedVersions` before/after) through `extra={"fields": {...}}` so a platform engineer
can answer "why did this gate change" with a log query.

Logs get the detail answers must not carry (a client library's own text, which may quote a header
with a token in it), so nothing may reach a log line unredacted. `Settings.from_env` registers every
configured credential here (`register_secrets`); besides those values, common credential shapes
(GitHub tokens, JWTs, `Bearer`/`token` header values, PEM private keys) are redacted wherever they
come from. Redaction happens when a record is made (a `logging` record factory, so it covers every
logger in the process: Flask's, gunicorn's, urllib3's, not only stagegate's) and again when a line
is formatted (for the structured fields, which are attached after the record is made).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterable
from typing import Any

_SEVERITY = {"WARNING": "WARNING", "ERROR": "ERROR", "CRITICAL": "CRITICAL", "INFO": "INFO", "DEBUG": "DEBUG"}

REDACTED = "[REDACTED]"

MIN_SECRET_LENGTH = 8
"""Configured values shorter than this are not searched for: they would match ordinary words."""

_SHAPES = re.compile(
    r"gh[pousr]_[A-Za-z0-9_-]{16,}"  # GitHub tokens: personal, OAuth, user-to-server, installation, refresh
    r"|github_pat_[A-Za-z0-9_]{16,}"  # fine-grained personal access tokens
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"  # JWTs (ServiceAccount, GitHub App)
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)",
    re.DOTALL,
)
# An Authorization header's credential: long, with at least one digit, so prose ("bearer token") stays.
_SCHEME = re.compile(r"(?i)\b(bearer|token)(\s+)(?=[A-Za-z0-9._~+/-]*[0-9])[A-Za-z0-9._~+/-]{16,}=*")


class _Registry:
    """The values to redact, longest first (so a secret containing another is replaced whole)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: tuple[str, ...] = ()


_registry = _Registry()


def register_secrets(values: Iterable[str | None]) -> None:
    """Redact these values (and their escaped forms in reprs and JSON) from every log line from now on."""
    found: set[str] = set()
    for value in values:
        if not value or len(value) < MIN_SECRET_LENGTH:
            continue
        found.update({value, repr(value)[1:-1], json.dumps(value)[1:-1], ascii(value)[1:-1]})
    with _registry.lock:
        _registry.values = tuple(sorted(set(_registry.values) | found, key=len, reverse=True))


def redact(text: str) -> str:
    """`text` with every registered secret and every credential-shaped string replaced by `[REDACTED]`."""
    for secret in _registry.values:
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _SHAPES.sub(REDACTED, text)
    return _SCHEME.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {_redact_value(k): _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v) for v in value]
    return value


_plain = logging.Formatter()


def _redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Render the record's message, traceback and stack now, redacted."""
    try:
        message = record.getMessage()
    except Exception:  # a malformed call: logging reports it when the record is emitted
        return record
    redacted = redact(message)
    if redacted != message:
        record.msg, record.args = redacted, None
    if record.exc_info:
        record.exc_text = redact(_plain.formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


def _install_record_factory() -> None:
    """Wrap the process's record factory once, so records of every logger are redacted when made."""
    current = logging.getLogRecordFactory()
    if getattr(current, "stagegate_redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return _redact_record(current(*args, **kwargs))

    factory.stagegate_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line with its structured fields merged in, secrets redacted."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelname, "DEFAULT"),
            "message": record.getMessage(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        # Values json cannot encode are turned into text while dumping; redact the line once more.
        return redact(json.dumps(_redact_value(entry), default=str))


def get_logger(name: str) -> logging.Logger:
    """A logger under `stagegate` that writes JSON lines to stderr once configured."""
    _install_record_factory()
    root = logging.getLogger("stagegate")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False
    return logging.getLogger(f"stagegate.{name}")
