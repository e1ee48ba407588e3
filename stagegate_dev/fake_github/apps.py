"""GitHub Apps on the fake: App JWTs checked the way GitHub checks them, installation access tokens.

An App authenticates with a JWT it signs (RS256) with its private key: `iss` is the App's ID, `iat`
lies in the past and `exp` in the future, at most 10 minutes ahead. GitHub answers anything else with
401 and one of the messages below. The JWT buys an installation access token (`ghs_...`) that expires
after one hour and reads only the installation's repositories. Time here is the wall clock (PyGithub
signs and renews by it), not the fake's event `Clock`.
"""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from stagegate_dev.fake_github.state import User

JWT_MAX_SECONDS = 600
TOKEN_SECONDS = 3600
NOT_DECODED = "A JSON web token could not be decoded"
EXPIRED = (
    "'Expiration time' claim ('exp') must be a numeric value representing the future time at which "
    "the assertion expires"
)
TOO_LONG = "'Expiration time' claim ('exp') is too far in the future"
NOT_ISSUED = (
    "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
)
BAD_ISSUER = "'Issuer' claim ('iss') must be an Integer"
NO_APP = "Integration not found"
DEFAULT_PERMISSIONS = {"deployments": "read", "metadata": "read"}
_ALPHABET = string.ascii_letters + string.digits


class JwtRejected(Exception):
    """The App JWT is not acceptable; the message is GitHub's."""


@dataclass(frozen=True)
class GitHubAppRecord:
    """A registered App: its ID, public key, bot account, and the id of its webhook."""

    app_id: int
    public_key: rsa.RSAPublicKey
    bot: User
    owner: User
    hook_id: int


@dataclass(frozen=True)
class Installation:
    """One installation of an App; `repos` (lower-case full names) is None for "all repositories"."""

    id: int
    app_id: int
    repos: frozenset[str] | None
    permissions: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_PERMISSIONS))

    @property
    def repository_selection(self) -> Literal["all", "selected"]:
        """GitHub's name for the installation's repository access."""
        return "all" if self.repos is None else "selected"


@dataclass(frozen=True)
class IssuedToken:
    """An installation access token: which App's, who it acts as, until when, on which repositories."""

    app_id: int
    user: User
    expires_at: float
    repos: frozenset[str] | None


def load_public_key(pem: str | bytes) -> rsa.RSAPublicKey:
    """An App's RSA public key from PEM (ValueError otherwise)."""
    key = load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("a GitHub App key is an RSA key")
    return key


def verify_app_jwt(
    token: str, apps: Mapping[int, GitHubAppRecord], now: Callable[[], float] = time.time
) -> GitHubAppRecord:
    """The App that signed `token`, or `JwtRejected` with GitHub's message."""
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise JwtRejected(NOT_DECODED) from None
    if header.get("alg") != "RS256":
        raise JwtRejected(NOT_DECODED)
    issuer = claims.get("iss")
    try:
        app_id = int(issuer) if isinstance(issuer, (int, str)) and not isinstance(issuer, bool) else None
    except ValueError:
        app_id = None
    if app_id is None:
        raise JwtRejected(BAD_ISSUER)
    app = apps.get(app_id)
    if app is None:
        raise JwtRejected(NO_APP)
    try:
        jwt.decode(
            token,
            app.public_key,
            algorithms=["RS256"],
            options={"verify_exp": False, "verify_iat": False, "verify_aud": False},
        )
    except jwt.PyJWTError:
        raise JwtRejected(NOT_DECODED) from None
    moment = now()
    issued, expires = claims.get("iat"), claims.get("exp")
    if not isinstance(expires, int | float) or isinstance(expires, bool) or expires <= moment:
        raise JwtRejected(EXPIRED)
    if expires > moment + JWT_MAX_SECONDS:
        raise JwtRejected(TOO_LONG)
    if not isinstance(issued, int | float) or isinstance(issued, bool) or issued > moment:
        raise JwtRejected(NOT_ISSUED)
    return app


def new_token() -> str:
    """An installation access token as GitHub formats them (`ghs_` and 36 characters)."""
    return "ghs_" + "".join(secrets.choice(_ALPHABET) for _ in range(36))


def app_json(app: GitHubAppRecord, api: str) -> dict[str, Any]:
    """The `integration` answer of `GET /app`: who the App is (its bot acts as `<slug>[bot]`)."""
    slug = app.bot.login.removesuffix("[bot]")
    owner = app.owner
    return {
        "id": app.app_id,
        "slug": slug,
        "node_id": f"A_{app.app_id}",
        "client_id": f"Iv1.{app.app_id:016x}",
        "owner": {
            "login": owner.login,
            "id": owner.id,
            "node_id": owner.node_id,
            "type": owner.type,
            "avatar_url": f"https://avatars.githubusercontent.com/u/{owner.id}?v=4",
            "gravatar_id": "",
            "url": f"{api}/users/{owner.login}",
            "html_url": f"https://github.com/{owner.login}",
            **{key: f"{api}/users/{owner.login}/{key.removesuffix('_url')}" for key in USER_LINKS},
            "site_admin": False,
        },
        "name": slug,
        "description": "stagegate's GitHub App (fake)",
        "external_url": "https://github.com",
        "html_url": f"https://github.com/apps/{slug}",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "permissions": dict(DEFAULT_PERMISSIONS),
        "events": ["deployment_status", "deployment_protection_rule"],
        "installations_count": 1,
    }


USER_LINKS = (
    "followers_url", "following_url", "gists_url", "starred_url", "subscriptions_url",
    "organizations_url", "repos_url", "events_url", "received_events_url",
)  # fmt: skip


def installation_token_json(
    token: str, expires_at: float, installation: Installation, permissions: Mapping[str, str]
) -> dict[str, Any]:
    """The `installation-token` answer of `POST /app/installations/{installation_id}/access_tokens`."""
    return {
        "token": token,
        "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires_at)),
        "permissions": dict(permissions),
        "repository_selection": installation.repository_selection,
    }
