"""The local stack's GitHub App: the deployment protection rule on the stand-in, and its credentials.

GitHub lets only the App that owns a custom deployment protection rule answer it, so the functions that
answer held Actions jobs (`github_protection_rule`, `github_webhook`, `resync_http`) act as an App
installation, while the rest of the local stack keeps the stand-in's token. Bakes recorded with that
token stay trusted through `GITHUB_TRUSTED_CREATORS`, as a migration from another recorder is.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from stagegate_dev.fake_github import FakeGitHub

APP_ID = 1_000_001
INSTALLATION_ID = 2_000_001
ENVIRONMENT = "production"
"""The GitHub environment the Actions jobs of the local stack deploy to."""


def app_key() -> tuple[str, bytes]:
    """A new RSA key for a GitHub App: the private key (PEM, what the functions hold) and the public key
    (PEM, what the stand-in checks the App's JWTs with)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, public


def protection_app(
    fake: FakeGitHub, rules: Iterable[tuple[str, str]], installed: Iterable[str] = ()
) -> dict[str, str]:
    """Register the App on the stand-in, installed on the rules' repositories and `installed`, with its
    rule on `production` of each rule's repository, waiting for the bake recorded in the upstream
    environment named with it (`kuberik/<name>/<environment>`); return the settings of the functions
    that act as the App."""
    pem, public = app_key()
    rules = list(rules)
    fake.add_app(APP_ID, public, INSTALLATION_ID, sorted({*installed, *(repo for repo, _ in rules)}))
    for repo, _ in rules:
        fake.add_protection_rule(repo, ENVIRONMENT, APP_ID)
    return {
        "GITHUB_TOKEN": "",
        "GITHUB_APP_ID": str(APP_ID),
        "GITHUB_APP_PRIVATE_KEY": pem,
        "GITHUB_APP_INSTALLATION_ID": str(INSTALLATION_ID),
        "GITHUB_TRUSTED_CREATORS": fake.user.login,
        "PROTECTION_RULES": "\n".join(f"{repo}:{ENVIRONMENT}={upstream}" for repo, upstream in rules),
    }
