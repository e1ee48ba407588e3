"""`AUDIT_MAX_EVENTS`, `RESYNC_AUTH` and `METRICS_PORT`: defaults, values, a failure at start naming
the variable, and `resync_http` without a token only when the platform is said to authenticate its
callers."""

from __future__ import annotations

from pathlib import Path

import pytest

from stagegate.settings import ConfigError, Settings
from tests.stagegate.in_memory import (
    FailingGitHub,
    InMemoryKube,
    environment_variables,
    function_env,
    load_function,
    write_kubeconfig,
)


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.audit_max_events == 400  # the kube-apiserver's --audit-webhook-batch-max-size
    assert settings.resync_auth == "bearer"


def test_values_are_read() -> None:
    settings = Settings.from_env({"AUDIT_MAX_EVENTS": "50", "RESYNC_AUTH": "platform"})
    assert (settings.audit_max_events, settings.resync_auth) == (50, "platform")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AUDIT_MAX_EVENTS": "0"}, "AUDIT_MAX_EVENTS"),
        ({"AUDIT_MAX_EVENTS": "lots"}, "AUDIT_MAX_EVENTS"),
        ({"RESYNC_AUTH": "oidc"}, "RESYNC_AUTH must be one of bearer, platform"),
        ({"RESYNC_AUTH": "platform", "RESYNC_TOKEN": "left-over"}, "both set"),
    ],
)
def test_a_malformed_value_fails_at_start_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as failure:
        Settings.from_env(env)
    assert "left-over" not in str(failure.value)


def resync_client(tmp_path: Path, **overrides: str) -> tuple[object, FailingGitHub]:
    env = {**function_env(write_kubeconfig(tmp_path / "kubeconfig")), **overrides}
    env = {key: value for key, value in env.items() if value}
    github = FailingGitHub()
    with environment_variables(env), pytest.MonkeyPatch.context() as patch:
        if "RESYNC_TOKEN" not in env:
            patch.delenv("RESYNC_TOKEN", raising=False)
        app, module = load_function("resync", "resync_http")
    module.KUBE, module.UPSTREAM = InMemoryKube(), github
    return app.test_client(), github


def test_platform_authentication_needs_no_token(tmp_path: Path) -> None:
    client, github = resync_client(tmp_path, RESYNC_AUTH="platform", RESYNC_TOKEN="")
    response = client.post("/")  # Cloud Run checked the scheduler's OIDC token before it got here
    assert response.status_code != 401, response.get_data(as_text=True)
    assert github.calls > 0, "the resync did not run"


def test_by_default_a_token_is_still_required(tmp_path: Path) -> None:
    client, github = resync_client(tmp_path, RESYNC_TOKEN="")
    response = client.post("/")
    assert response.status_code == 401
    assert "RESYNC_TOKEN is not configured" in response.get_json()["error"]
    assert github.calls == 0


def test_metrics_are_off_unless_a_port_is_set() -> None:
    assert Settings.from_env({}).metrics_port is None
    assert Settings.from_env({"METRICS_PORT": "9100"}).metrics_port == 9100


@pytest.mark.parametrize("value", ["0", "65536", "http", "-1"])
def test_a_metrics_port_that_is_no_port_stops_at_start_naming_it(value: str) -> None:
    with pytest.raises(ConfigError, match="METRICS_PORT"):
        Settings.from_env({"METRICS_PORT": value})
