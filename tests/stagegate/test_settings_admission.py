"""The admission function's settings: defaults, values, and a failure at start naming the variable."""

from __future__ import annotations

import pytest

from stagegate.settings import ConfigError, Settings


def test_admission_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.admission_deadline_seconds == 3.0
    assert settings.admission_max_body_bytes == 4 * 1024 * 1024
    assert settings.admission_guard_label == ("stagegate.kuberik.com/guard", "enabled")


@pytest.mark.parametrize(
    ("value", "label"),
    [
        ("team.example.com/stagegate=on", ("team.example.com/stagegate", "on")),
        ("stagegate=", ("stagegate", "")),
        ("a=b", ("a", "b")),
    ],
)
def test_admission_values_are_read(value: str, label: tuple[str, str]) -> None:
    settings = Settings.from_env(
        {
            "ADMISSION_DEADLINE_SECONDS": "1.5",
            "ADMISSION_MAX_BODY_BYTES": "65536",
            "ADMISSION_GUARD_LABEL": value,
        }
    )
    assert (settings.admission_deadline_seconds, settings.admission_max_body_bytes) == (1.5, 65536)
    assert settings.admission_guard_label == label


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ADMISSION_DEADLINE_SECONDS", "three"),
        ("ADMISSION_DEADLINE_SECONDS", "0"),
        ("ADMISSION_MAX_BODY_BYTES", "4MB"),
        ("ADMISSION_MAX_BODY_BYTES", "-1"),
        ("ADMISSION_GUARD_LABEL", "enabled"),
        ("ADMISSION_GUARD_LABEL", "=enabled"),
        ("ADMISSION_GUARD_LABEL", "has space=enabled"),
        ("ADMISSION_GUARD_LABEL", "Upper.Example.com/guard=enabled"),
        ("ADMISSION_GUARD_LABEL", "guard=not allowed"),
        ("ADMISSION_GUARD_LABEL", f"guard={'x' * 64}"),
        ("ADMISSION_GUARD_LABEL", f"{'x' * 64}=on"),
    ],
)
def test_a_malformed_admission_setting_fails_at_start_naming_it(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})
