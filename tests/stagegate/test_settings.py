from __future__ import annotations

import pytest

from stagegate.kube import api_client
from stagegate.settings import ConfigError, Settings


def test_defaults_apply_when_nothing_is_set() -> None:
    settings = Settings.from_env({})
    assert settings.audit_webhook_token is None
    assert settings.audit_deadline_seconds == 2.0
    assert settings.audit_max_body_bytes == 4 * 1024 * 1024
    assert settings.kube_conflict_retries == 5
    assert settings.kubeconfig is None


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
