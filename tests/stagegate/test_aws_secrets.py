"""`stagegate.aws_secrets` against moto: the Lambda functions read their secrets at cold start from
Secrets Manager or SSM (by ARN), the kubeconfig into a 0600 file, before the settings are read; a secret
that cannot be read stops the function naming the variable, never showing a value."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from stagegate.aws_secrets import load_secrets
from stagegate.settings import ConfigError, Settings
from stagegate_dev.protection_app import app_key
from tests.stagegate.in_memory import (
    environment_variables,
    function_env,
    load_lambda_module,
    write_kubeconfig,
)

REGION = "eu-west-1"
TOKEN = "ghp_token-read-from-secrets-manager"
WEBHOOK_SECRET = "webhook-secret-read-at-start"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


def secret(name: str, value: str) -> str:
    arn: str = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=name, SecretString=value
    )["ARN"]
    return arn


def parameter(name: str, value: str) -> str:
    ssm = boto3.client("ssm", region_name=REGION)
    ssm.put_parameter(Name=name, Value=value, Type="SecureString")
    arn: str = ssm.get_parameter(Name=name)["Parameter"]["ARN"]
    return arn


@pytest.fixture
def kubeconfig_text(tmp_path: Path) -> str:
    return write_kubeconfig(tmp_path / "kubeconfig").read_text()


def test_secrets_manager_values_land_where_settings_read_them(aws, kubeconfig_text) -> None:
    env = {
        "GITHUB_TOKEN_SECRET_ARN": secret("stagegate/github-token", TOKEN),
        "GITHUB_WEBHOOK_SECRET_ARN": secret("stagegate/github-webhook-secret", f"{WEBHOOK_SECRET}\nold-one"),
        "KUBECONFIG_SECRET_ARN": secret("stagegate/kubeconfig", kubeconfig_text),
    }
    assert load_secrets(env) == ["GITHUB_TOKEN", "GITHUB_WEBHOOK_SECRET", "KUBECONFIG"]
    path = Path(env["KUBECONFIG"])
    try:
        assert path.read_text() == kubeconfig_text
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        settings = Settings.from_env(env)
        assert settings.github_token == TOKEN
        assert settings.github_webhook_secrets == (WEBHOOK_SECRET, "old-one")
        assert settings.kubeconfig == str(path)
    finally:
        path.unlink()


def test_the_apps_private_key_lands_where_settings_read_it(aws) -> None:
    pem, _ = app_key()
    env = {
        "GITHUB_APP_PRIVATE_KEY_SECRET_ARN": secret("stagegate/github-app-key", pem),
        "GITHUB_APP_ID": "12345",
        "GITHUB_APP_INSTALLATION_ID": "678",
        "PROTECTION_RULES": "myorg/myapp:production=kuberik/myapp/staging",
    }
    assert load_secrets(env) == ["GITHUB_APP_PRIVATE_KEY"]
    app = Settings.from_env(env).github_app
    assert app is not None
    assert app.private_key.strip() == pem.strip()


def test_an_ssm_parameter_works_the_same(aws) -> None:
    env = {"GITHUB_TOKEN_SECRET_ARN": parameter("/stagegate/github-token", TOKEN)}
    assert load_secrets(env) == ["GITHUB_TOKEN"]
    assert env["GITHUB_TOKEN"] == TOKEN


def test_nothing_to_read_touches_no_aws() -> None:
    def no_aws(service: str, region: str) -> Any:
        raise AssertionError("AWS was asked")

    env = {"GITHUB_TOKEN": "plain, as elsewhere"}
    assert load_secrets(env, no_aws) == []
    assert env == {"GITHUB_TOKEN": "plain, as elsewhere"}


def test_a_value_and_its_arn_together_are_ambiguous(aws) -> None:
    env = {"GITHUB_TOKEN": TOKEN, "GITHUB_TOKEN_SECRET_ARN": secret("t", TOKEN)}
    with pytest.raises(ConfigError, match="GITHUB_TOKEN_SECRET_ARN and GITHUB_TOKEN are both set"):
        load_secrets(env)


@pytest.mark.parametrize(
    ("arn", "message"),
    [
        (f"arn:aws:secretsmanager:{REGION}:123456789012:secret:missing-AbCdEf", "ResourceNotFoundException"),
        ("stagegate/github-token", "must be the ARN"),
        (f"arn:aws:s3:::{REGION}-bucket", "must be the ARN"),
        (f"arn:aws:ssm:{REGION}:123456789012:document/x", "SSM parameter"),
    ],
)
def test_a_secret_that_cannot_be_read_stops_the_function_naming_the_variable(aws, arn, message) -> None:
    secret("present", TOKEN)
    with pytest.raises(ConfigError, match=message) as failure:
        load_secrets({"GITHUB_TOKEN_SECRET_ARN": arn})
    assert "GITHUB_TOKEN_SECRET_ARN" in str(failure.value)
    assert TOKEN not in str(failure.value)


def test_an_empty_secret_stops_the_function(aws) -> None:
    with pytest.raises(ConfigError, match=r"KUBECONFIG_SECRET_ARN: .* is empty"):
        load_secrets({"KUBECONFIG_SECRET_ARN": secret("empty", "  \n")})


def test_the_lambda_module_reads_its_secrets_before_its_settings(
    aws, tmp_path: Path, kubeconfig_text
) -> None:
    env = function_env(tmp_path / "unused")
    for key in ("KUBECONFIG", "GITHUB_TOKEN", "GITHUB_WEBHOOK_SECRET"):
        env.pop(key)
    env |= {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "GITHUB_TOKEN_SECRET_ARN": secret("stagegate/github-token", TOKEN),
        "GITHUB_WEBHOOK_SECRET_ARN": secret("stagegate/github-webhook-secret", WEBHOOK_SECRET),
        "KUBECONFIG_SECRET_ARN": secret("stagegate/kubeconfig", kubeconfig_text),
    }
    with environment_variables(env), pytest.MonkeyPatch.context() as patch:
        for key in ("KUBECONFIG", "GITHUB_TOKEN", "GITHUB_WEBHOOK_SECRET"):
            patch.delenv(key, raising=False)
        module = load_lambda_module()
        path = os.environ["KUBECONFIG"]
    try:
        assert module.SETTINGS.github_token == TOKEN
        assert module.SETTINGS.github_webhook_secrets == (WEBHOOK_SECRET,)
        assert module.SETTINGS.kubeconfig == path
        assert Path(path).read_text() == kubeconfig_text
        assert TOKEN not in repr(module.SETTINGS)
    finally:
        Path(path).unlink()
