"""Log lines never carry a secret: configured values and credential shapes become `[REDACTED]`, in the
message, the structured fields and the traceback, whichever logger wrote the line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from stagegate.logs import REDACTED, get_logger, redact, register_secrets
from stagegate.settings import Settings

SECRET = "configured-secret-0b1f3c9d"


@pytest.fixture
def stagegate_lines() -> Iterator[io.StringIO]:
    """What stagegate's own handler writes (JSON lines), captured."""
    get_logger("test")
    handler = logging.getLogger("stagegate").handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)


def test_registered_values_are_redacted_also_where_escaped() -> None:
    quoted = 'with "quotes"\\ and a form\x0cfeed'
    register_secrets([SECRET, quoted])
    assert redact(f"token={SECRET}.") == f"token={REDACTED}."
    assert SECRET not in redact(repr([SECRET]))
    assert "form" not in redact(repr(quoted))
    assert "form" not in redact(json.dumps({"k": quoted}))


def test_values_too_short_to_recognise_are_left_alone() -> None:
    register_secrets(["s", "short"])
    assert redact("this is short") == "this is short"


@pytest.mark.parametrize(
    "credential",
    [
        "ghp_" + "a1B2c3D4e5" * 4,
        "ghs_" + "Z9y8X7w6V5" * 4,
        "github_pat_11ABCDEFG0" + "x_Y1" * 10,
        "eyJhbGciOiJSUzI1NiIsImtpZCI6IiJ9.eyJpc3MiOiJrdWJlcm5ldGVzIn0.c2lnbmF0dXJlLXBhcnQ",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
    ],
    ids=["classic", "installation", "fine-grained", "JWT", "PEM"],
)
def test_credential_shapes_are_redacted_without_being_configured(credential: str) -> None:
    text = redact(f"header value: 'token {credential}\\n' failed")
    assert credential not in text
    assert REDACTED in text


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "token"])
def test_authorization_header_values_are_redacted(scheme: str) -> None:
    assert redact(f"Authorization: {scheme} q8Wm2xZk7Lr4Tn9Vb3Yh") == f"Authorization: {scheme} {REDACTED}"


@pytest.mark.parametrize(
    "prose",
    [
        "missing or wrong bearer token",
        "AUDIT_WEBHOOK_TOKEN is not configured: every request is refused until it is set",
        "the bearer token Cloud Scheduler sends",
        "GitHub refused the credentials (HTTP 401)",
    ],
)
def test_prose_about_tokens_stays_readable(prose: str) -> None:
    assert redact(prose) == prose


def test_a_stagegate_line_is_redacted_in_message_fields_and_traceback(stagegate_lines: io.StringIO) -> None:
    register_secrets([SECRET])
    try:
        raise ValueError(f"Invalid header value b'Bearer {SECRET}\\n'")
    except ValueError:
        get_logger("test").exception(
            "call failed with %s", SECRET, extra={"fields": {"detail": [f"x {SECRET}"], SECRET: 1}}
        )
    line = stagegate_lines.getvalue()
    assert SECRET not in line
    entry = json.loads(line)
    assert entry["message"] == f"call failed with {REDACTED}"
    assert entry["detail"] == [f"x {REDACTED}"]
    assert "ValueError: Invalid header value" in entry["exception"]


def test_other_loggers_are_redacted_too(caplog: pytest.LogCaptureFixture) -> None:
    get_logger("test")  # installs the redaction, as importing any stagegate module does
    register_secrets([SECRET])
    caplog.set_level(logging.DEBUG)
    try:
        raise OSError(f"could not connect with {SECRET}")
    except OSError:
        logging.getLogger("urllib3.connectionpool").warning("Retrying after %r", SECRET, exc_info=True)
    logging.getLogger("flask.app").error("Exception on / [POST]: ghp_%s", "a1B2c3D4e5" * 4)
    assert SECRET not in caplog.text
    assert "a1B2c3D4e5" not in caplog.text
    assert "could not connect with [REDACTED]" in caplog.text


def test_settings_register_every_credential(stagegate_lines: io.StringIO) -> None:
    credentials = {
        "GITHUB_TOKEN": "plain-github-token-1234",
        "AUDIT_WEBHOOK_TOKEN": "plain-audit-token-1234",
        "RESYNC_TOKEN": "plain-resync-token-1234",
        "GITHUB_WEBHOOK_SECRET": "plain-webhook-new-1234\nplain-webhook-old-1234",
    }
    Settings.from_env(credentials)
    get_logger("test").warning(" and ".join(credentials.values()))
    assert "plain-" not in stagegate_lines.getvalue()
