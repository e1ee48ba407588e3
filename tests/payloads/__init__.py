"""Captured real payloads, loaded by name (for example `load_payload("audit/environment-create.json")`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def payload_bytes(relative_path: str) -> bytes:
    """The file's bytes exactly as captured."""
    return (HERE / relative_path).read_bytes()


def load_payload(relative_path: str) -> Any:
    """The file decoded as JSON (a fresh copy on every call, safe to modify)."""
    return json.loads(payload_bytes(relative_path))
