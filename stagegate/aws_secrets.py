"""Secrets of the AWS Lambda functions, read at cold start from Secrets Manager or SSM Parameter Store.

Why: a Lambda function's environment variables and layers are shown to anyone allowed to read its
configuration or download its code (`lambda:GetFunction`), and whatever Terraform resolves lands in its
state. So the deployment only names where each secret lives (`GITHUB_TOKEN_SECRET_ARN`,
`GITHUB_WEBHOOK_SECRET_ARN`, `KUBECONFIG_SECRET_ARN`, `GITHUB_APP_PRIVATE_KEY_SECRET_ARN`: a Secrets
Manager secret or an SSM parameter, by ARN), the function's role may read exactly those, and
`load_secrets` puts the values where `Settings.from_env` reads them, before it does: the GitHub token,
the App's private key and the webhook secret into the process environment, the kubeconfig into a
file only this process's user can read (mode 0600) that `KUBECONFIG` names. Settings then checks
them as it checks any variable.

What it must never do: show a value (in a message, a log line or an exception). A secret it cannot read
stops the function at start with `ConfigError` naming the variable, like every other setting.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, MutableMapping
from typing import Any

from stagegate.logs import get_logger
from stagegate.settings import ConfigError

log = get_logger("aws_secrets")

Clients = Callable[[str, str], Any]
"""(service, region) -> a boto3 client."""


def load_secrets(env: MutableMapping[str, str] | None = None, clients: Clients | None = None) -> list[str]:
    """Resolve every `*_SECRET_ARN` set in `env` (default: the process environment) into the variable
    it stands for; return the names of the variables set. Nothing set means nothing to do (no boto3)."""
    env = os.environ if env is None else env
    wanted = [
        (name, target, arn)
        for name, target, arn in (
            ("GITHUB_TOKEN_SECRET_ARN", "GITHUB_TOKEN", env.get("GITHUB_TOKEN_SECRET_ARN")),
            ("GITHUB_WEBHOOK_SECRET_ARN", "GITHUB_WEBHOOK_SECRET", env.get("GITHUB_WEBHOOK_SECRET_ARN")),
            ("KUBECONFIG_SECRET_ARN", "KUBECONFIG", env.get("KUBECONFIG_SECRET_ARN")),
            (
                "GITHUB_APP_PRIVATE_KEY_SECRET_ARN",
                "GITHUB_APP_PRIVATE_KEY",
                env.get("GITHUB_APP_PRIVATE_KEY_SECRET_ARN"),
            ),
        )
        if arn
    ]
    for name, target, _ in wanted:
        if env.get(target):
            raise ConfigError(f"{name} and {target} are both set: set only one")
    if not wanted:
        return []
    clients = clients or _boto3_clients()
    for name, target, arn in wanted:
        value = _read(name, arn, clients)
        env[target] = _kubeconfig_file(value) if target == "KUBECONFIG" else value
    loaded = [target for _, target, _ in wanted]
    log.info(f"read {', '.join(loaded)} from AWS at start", extra={"fields": {"variables": loaded}})
    return loaded


def _boto3_clients() -> Clients:
    import boto3  # ~100 ms, only when a secret is to be read (the Lambda runtime ships it)
    from botocore.config import Config

    # Lambda gives a cold start 10 s: fail fast rather than hang, and say which secret it was.
    config = Config(connect_timeout=2, read_timeout=3, retries={"max_attempts": 2, "mode": "standard"})
    made: dict[tuple[str, str], Any] = {}

    def client(service: str, region: str) -> Any:
        if (service, region) not in made:
            made[(service, region)] = boto3.client(service, region_name=region, config=config)
        return made[(service, region)]

    return client


def _read(name: str, arn: str, clients: Clients) -> str:
    """The secret's text; `ConfigError` naming `name` (never the value) if it cannot be read."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] not in ("secretsmanager", "ssm") or not parts[3]:
        raise ConfigError(
            f"{name} must be the ARN of a Secrets Manager secret or an SSM parameter, got {arn!r}"
        )
    service, region = parts[2], parts[3]
    if service == "ssm" and not parts[5].startswith("parameter/"):
        raise ConfigError(f"{name} must be the ARN of an SSM parameter (…:parameter/NAME), got {arn!r}")
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        if service == "secretsmanager":
            answer = clients(service, region).get_secret_value(SecretId=arn)
            text = answer.get("SecretString")
            if text is None:
                text = bytes(answer["SecretBinary"]).decode("utf-8")
        else:
            text = clients(service, region).get_parameter(Name=arn, WithDecryption=True)["Parameter"]["Value"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise ConfigError(f"{name}: cannot read {arn}: {code}") from exc
    except (BotoCoreError, UnicodeDecodeError, KeyError) as exc:
        raise ConfigError(f"{name}: cannot read {arn}: {type(exc).__name__}") from exc
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{name}: {arn} is empty")
    return text


def _kubeconfig_file(text: str) -> str:
    """Write the kubeconfig to a new file readable by this user only; its path."""
    fd, path = tempfile.mkstemp(prefix="stagegate-kubeconfig-")  # created with mode 0600
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    return path
