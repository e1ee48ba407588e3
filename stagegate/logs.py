"""Structured logs: one JSON object per line, the shape Cloud Logging and most collectors parse.

Every line carries `severity` and `message`; callers add fields (`environment`, `gate`, `action`,
`reason`, `allowedVersions` before/after) through `extra={"fields": {...}}` so a platform engineer
can answer "why did this gate change" with a log query.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

_SEVERITY = {"WARNING": "WARNING", "ERROR": "ERROR", "CRITICAL": "CRITICAL", "INFO": "INFO", "DEBUG": "DEBUG"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line with its structured fields merged in."""

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
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def get_logger(name: str) -> logging.Logger:
    """A logger under `stagegate` that writes JSON lines to stderr once configured."""
    root = logging.getLogger("stagegate")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False
    return logging.getLogger(f"stagegate.{name}")
