"""Credentials are checked and trimmed at start, never shown; rotation lines split on line feeds only;
GitHub is reached over https (plain http only on loopback)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.errors import Unauthorized
from shared.github_delivery import signature, verify_delivery
from stagegate.settings import ConfigError, Settings

TOKENS = ("GITHUB_TOKEN", "AUDIT_WEBHOOK_TOKEN", "RESYNC_TOKEN")
FIELD = {
    "GITHUB_TOKEN": "github_token",
    "AUDIT_WEBHOOK_TOKEN": "audit_webhook_token",
    "RESYNC_TOKEN": "resync_token",
}
TOKEN = "ghp_0123456789abcdefghijABCDEFGHIJ012345"


@pytest.mark.parametrize("name", TOKENS)
@pytest.mark.parametrize("ending", ["\n", "\r\n", "\n\n"])
def test_the_line_break_echo_and_secret_files_add_is_trimmed(name: str, ending: str) -> None:
    assert getattr(Settings.from_env({name: TOKEN + ending}), FIELD[name]) == TOKEN


@pytest.mark.parametrize("name", TOKENS)
@pytest.mark.parametrize("value", ["", "\n", "\r\n"])
def test_an_empty_token_is_not_configured(name: str, value: str) -> None:
    assert getattr(Settings.from_env({name: value}), FIELD[name]) is None


@pytest.mark.parametrize("name", TOKENS)
@pytest.mark.parametrize("value", [f" {TOKEN}", f"{TOKEN} ", f"\t{TOKEN}", f"\n{TOKEN}", "   "])
def test_other_white_space_around_a_token_stops_the_function_naming_it(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"{name} has leading or trailing white space") as raised:
        Settings.from_env({name: value})
    assert TOKEN not in str(raised.value)


@pytest.mark.parametrize("name", TOKENS)
@pytest.mark.parametrize(
    ("value", "position"),
    [
        (f"{TOKEN[:10]}\n{TOKEN[10:]}", 11),
        (f"{TOKEN[:10]}\r{TOKEN[10:]}", 11),
        (f"{TOKEN[:10]} {TOKEN[10:]}", 11),
        (f"{TOKEN[:10]}\x00{TOKEN[10:]}", 11),
        (f"{TOKEN[:10]}\x7f{TOKEN[10:]}", 11),
        (f"{TOKEN}é", len(TOKEN) + 1),
        (f"\u200b{TOKEN}", 1),
    ],
    ids=["line feed", "carriage return", "space", "NUL", "DEL", "non-ASCII", "zero-width space"],
)
def test_a_character_a_header_cannot_carry_stops_the_function_without_showing_the_value(
    name: str, value: str, position: int
) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({name: value})
    message = str(raised.value)
    assert message.startswith(f"{name} has a character an HTTP header cannot carry at position {position}")
    assert TOKEN[:10] not in message
    assert TOKEN[10:] not in message


def test_no_secret_is_shown_by_repr_or_str() -> None:
    settings = Settings.from_env(
        {
            "GITHUB_TOKEN": TOKEN,
            "AUDIT_WEBHOOK_TOKEN": "audit-token-shown-nowhere",
            "RESYNC_TOKEN": "resync-token-shown-nowhere",
            "GITHUB_WEBHOOK_SECRET": "webhook-secret-new\nwebhook-secret-old",
        }
    )
    for text in (repr(settings), str(settings), f"{settings}", f"{settings!r}"):
        for secret in (TOKEN, "audit-token", "resync-token", "webhook-secret"):
            assert secret not in text
    assert "github_api_url='https://api.github.com'" in repr(settings)  # the rest is still there


# Rotation lines (item 6) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "separator",
    ["\x0c", "\x0b", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\r"],
    ids=["form feed", "vertical tab", "FS", "GS", "RS", "NEL", "LINE SEPARATOR", "PARAGRAPH SEPARATOR", "CR"],
)
def test_a_webhook_secret_is_split_on_line_feeds_only(separator: str) -> None:
    secret = f"first-half-of-it{separator}second-half-of-it"
    settings = Settings.from_env({"GITHUB_WEBHOOK_SECRET": secret})
    assert settings.github_webhook_secrets == (secret,)
    body = b'{"zen": "Approachable is better than simple."}'
    for fragment in ("first-half-of-it", "second-half-of-it"):
        headers = {"X-GitHub-Event": "ping", "X-Hub-Signature-256": signature(fragment, body)}
        with pytest.raises(Unauthorized):
            verify_delivery(headers, body, settings.github_webhook_secrets)
    headers = {"X-GitHub-Event": "ping", "X-Hub-Signature-256": signature(secret, body)}
    assert verify_delivery(headers, body, settings.github_webhook_secrets).event == "ping"


@pytest.mark.parametrize(
    "value", ["new-secret\nold-secret", "new-secret\r\nold-secret\r\n", "\n new-secret \n\n\told-secret\t\n"]
)
def test_rotation_lines_are_split_on_lf_and_crlf_and_trimmed_of_spaces(value: str) -> None:
    assert Settings.from_env({"GITHUB_WEBHOOK_SECRET": value}).github_webhook_secrets == (
        "new-secret",
        "old-secret",
    )


# GITHUB_API_URL (item 6) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://api.github.com",
        "https://ghe.example.com/api/v3/",
        "http://127.0.0.1:8080",
        "http://127.255.0.9/api/v3",
        "http://[::1]:9000",
        "http://localhost:3000/",
        "http://LOCALHOST",
    ],
)
def test_https_anywhere_and_http_on_loopback_are_accepted(url: str) -> None:
    assert Settings.from_env({"GITHUB_API_URL": url}).github_api_url == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    [
        "http://api.github.com",
        "http://ghe.example.com/api/v3",
        "http://10.0.0.1:8080",
        "http://[::2]/",
        "http://128.0.0.1",
        "http://localhost.example.com",
        "http://0.0.0.0:80",
    ],
)
def test_plain_http_elsewhere_stops_the_function_naming_the_variable(url: str) -> None:
    with pytest.raises(ConfigError, match="GITHUB_API_URL must be an https URL; http is accepted only"):
        Settings.from_env({"GITHUB_API_URL": url})


@pytest.mark.parametrize("url", ["ftp://ghe.example.com", "https://", "ghe.example.com", "https://[::1"])
def test_what_is_not_an_https_url_stops_the_function(url: str) -> None:
    with pytest.raises(ConfigError, match="GITHUB_API_URL must be an https URL"):
        Settings.from_env({"GITHUB_API_URL": url})


def test_an_api_url_carrying_credentials_is_refused_without_showing_them() -> None:
    with pytest.raises(ConfigError, match="GITHUB_API_URL must not carry credentials") as raised:
        Settings.from_env({"GITHUB_API_URL": "https://user:hunter2-password@ghe.example.com/api/v3"})
    assert "hunter2" not in str(raised.value)


# The App key ----------------------------------------------------------------------------------------


def test_an_escaped_app_key_with_the_line_break_echo_adds_is_read() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    settings = Settings.from_env(
        {
            "GITHUB_APP_ID": "1",
            "GITHUB_APP_INSTALLATION_ID": "2",
            "GITHUB_APP_PRIVATE_KEY": pem.strip().replace("\n", "\\n") + "\n",
        }
    )
    assert settings.github_app is not None
    assert settings.github_app.private_key == pem.strip() + "\n"
    assert pem.splitlines()[1] not in repr(settings)
