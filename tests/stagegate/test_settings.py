from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from stagegate.kube import api_client
from stagegate.settings import ConfigError, GitHubApp, Settings


def test_defaults_apply_when_nothing_is_set() -> None:
    settings = Settings.from_env({})
    assert settings.audit_webhook_token is None
    assert settings.audit_deadline_seconds == 2.0
    assert settings.audit_max_body_bytes == 4 * 1024 * 1024
    assert settings.kube_conflict_retries == 5
    assert settings.kubeconfig is None
    assert (settings.environment_status, settings.report_environment_url) == (True, None)


def test_values_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "AUDIT_WEBHOOK_TOKEN": "s3cret",
            "AUDIT_DEADLINE_SECONDS": "0.5",
            "AUDIT_MAX_BODY_BYTES": "1024",
            "KUBE_CONFLICT_RETRIES": "3",
            "KUBECONFIG": "/etc/stagegate/kubeconfig",
        }
    )
    assert (settings.audit_webhook_token, settings.audit_deadline_seconds) == ("s3cret", 0.5)
    assert (settings.audit_max_body_bytes, settings.kube_conflict_retries, settings.kubeconfig) == (
        1024,
        3,
        "/etc/stagegate/kubeconfig",
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUDIT_DEADLINE_SECONDS", "soon"),
        ("AUDIT_DEADLINE_SECONDS", "0"),
        ("AUDIT_DEADLINE_SECONDS", "-1"),
        ("AUDIT_MAX_BODY_BYTES", "1.5"),
        ("AUDIT_MAX_BODY_BYTES", "0"),
        ("KUBE_CONFLICT_RETRIES", "many"),
        ("AUDIT_WEBHOOK_TOKEN", " padded "),
        ("ENVIRONMENT_STATUS", "sometimes"),
        ("REPORT_ENVIRONMENT_URL", "https://dash.example/rollouts/{namespace}/{token}"),
        ("REPORT_ENVIRONMENT_URL", "https://dash.example/rollouts/{namespace"),
        ("REPORT_ENVIRONMENT_URL", "javascript:alert(1)//{name}"),
    ],
)
def test_malformed_value_fails_at_start_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_unreadable_kubeconfig_is_a_configuration_error_naming_it(tmp_path) -> None:
    with pytest.raises(ConfigError, match="KUBECONFIG="):
        api_client(str(tmp_path / "missing"))


def test_outside_a_cluster_without_kubeconfig_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="KUBECONFIG is not set"):
        api_client(None)


# GitHub credentials ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def app_env(pem: str, **extra: str) -> dict[str, str]:
    return {
        "GITHUB_APP_ID": "12345",
        "GITHUB_APP_PRIVATE_KEY": pem,
        "GITHUB_APP_INSTALLATION_ID": "678",
        **extra,
    }


def test_a_token_is_the_credentials() -> None:
    assert Settings.from_env({"GITHUB_TOKEN": "ghp_x"}).github_credentials() == "ghp_x"


def test_app_credentials_from_the_variable(app_pem: str) -> None:
    credentials = Settings.from_env(app_env(app_pem)).github_credentials()
    assert isinstance(credentials, GitHubApp)
    assert (credentials.app_id, credentials.installation_id) == (12345, 678)
    assert credentials.private_key.strip() == app_pem.strip()
    assert app_pem not in repr(credentials)


def test_app_key_from_a_file_or_with_escaped_line_breaks(app_pem: str, tmp_path) -> None:
    path = tmp_path / "app.pem"
    path.write_text(app_pem)
    env = app_env("", GITHUB_APP_PRIVATE_KEY_FILE=str(path))
    from_file = Settings.from_env(env).github_app
    escaped = Settings.from_env(app_env(app_pem.replace("\n", "\\n"))).github_app
    assert from_file is not None
    assert escaped is not None
    assert from_file.private_key == escaped.private_key == app_pem.strip() + "\n"


def test_neither_token_nor_app_names_both_ways() -> None:
    with pytest.raises(ConfigError, match="GITHUB_TOKEN or GITHUB_APP_ID/GITHUB_APP_PRIVATE_KEY/") as info:
        Settings.from_env({}).github_credentials()
    assert "GITHUB_APP_INSTALLATION_ID" in str(info.value)


def test_token_and_app_together_are_ambiguous(app_pem: str) -> None:
    with pytest.raises(
        ConfigError, match=r"GITHUB_TOKEN and GitHub App credentials .*GITHUB_APP_ID.*ambiguous"
    ):
        Settings.from_env(app_env(app_pem, GITHUB_TOKEN="ghp_x"))


@pytest.mark.parametrize("missing", ["GITHUB_APP_ID", "GITHUB_APP_PRIVATE_KEY", "GITHUB_APP_INSTALLATION_ID"])
def test_app_credentials_go_together(app_pem: str, missing: str) -> None:
    env = app_env(app_pem)
    del env[missing]
    with pytest.raises(ConfigError, match=f"missing: {missing}"):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("name", "value"), [("GITHUB_APP_ID", "my-app"), ("GITHUB_APP_INSTALLATION_ID", "1.5")]
)
def test_app_ids_must_be_whole_numbers(app_pem: str, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"{name} must be a whole number"):
        Settings.from_env(app_env(app_pem, **{name: value}))


def test_a_malformed_key_names_its_variable(app_pem: str, tmp_path) -> None:
    with pytest.raises(ConfigError, match="GITHUB_APP_PRIVATE_KEY is not a PEM private key"):
        Settings.from_env(app_env("-----BEGIN RSA PRIVATE KEY-----\nnope\n-----END RSA PRIVATE KEY-----"))
    path = tmp_path / "broken.pem"
    path.write_text(app_pem[:200])
    with pytest.raises(ConfigError, match="GITHUB_APP_PRIVATE_KEY_FILE is not a PEM private key"):
        Settings.from_env(app_env("", GITHUB_APP_PRIVATE_KEY_FILE=str(path)))
    with pytest.raises(ConfigError, match=r"GITHUB_APP_PRIVATE_KEY_FILE=.*cannot be read"):
        Settings.from_env(app_env("", GITHUB_APP_PRIVATE_KEY_FILE=str(tmp_path / "missing.pem")))
    with pytest.raises(ConfigError, match="GITHUB_APP_PRIVATE_KEY and GITHUB_APP_PRIVATE_KEY_FILE"):
        Settings.from_env(app_env(app_pem, GITHUB_APP_PRIVATE_KEY_FILE=str(path)))


def test_a_non_rsa_key_is_refused(app_pem: str) -> None:
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    with pytest.raises(ConfigError, match="GITHUB_APP_PRIVATE_KEY must be an RSA private key"):
        Settings.from_env(app_env(pem))


def test_trusted_creators_and_repositories_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "GITHUB_TRUSTED_CREATORS": "kuberik-bot, env-controller[bot]",
            "GITHUB_REPOSITORIES": "myorg/*, team-a=other/app",
        }
    )
    assert settings.github_trusted_creators == ("kuberik-bot", "env-controller[bot]")
    policy = settings.github_repositories
    assert policy.refusal("anywhere", "MyOrg/App") is None
    assert policy.refusal("team-a", "other/app") is None
    assert "not in GITHUB_REPOSITORIES" in (policy.refusal("team-b", "other/app") or "")
    assert Settings.from_env({}).github_repositories.refusal("ns", "any/repo") is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GITHUB_TRUSTED_CREATORS", "not a login!"),
        ("GITHUB_TRUSTED_CREATORS", "-leading-dash"),
        ("GITHUB_REPOSITORIES", "no-slash"),
        ("GITHUB_REPOSITORIES", "=myorg/app"),
        ("GITHUB_REPOSITORIES", "a/b/c"),
    ],
)
def test_malformed_trust_settings_fail_at_start_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_protection_rules_are_read_and_need_the_app(app_pem: str) -> None:
    rules = "myorg/myapp:production=kuberik/myapp/staging\nmyorg/db:prod=kuberik/db/staging"
    settings = Settings.from_env(app_env(app_pem, PROTECTION_RULES=rules, PROTECTION_MAX_RUNS="7"))
    assert [str(r) for r in settings.protection_rules.rules] == rules.splitlines()
    assert settings.protection_max_runs == 7
    assert not Settings.from_env({}).protection_rules
    with pytest.raises(ConfigError, match="PROTECTION_RULES needs GitHub App credentials"):
        Settings.from_env({"GITHUB_TOKEN": "t", "PROTECTION_RULES": rules})


@pytest.mark.parametrize(
    "value", ["myorg/myapp=kuberik/myapp/staging", "a/b:p=kuberik/x/s; A/B:P=kuberik/y/s"]
)
def test_a_malformed_protection_rule_fails_at_start_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="PROTECTION_RULES"):
        Settings.from_env({"PROTECTION_RULES": value})
