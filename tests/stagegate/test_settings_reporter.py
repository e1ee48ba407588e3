"""The reporter's settings: defaults, values, and the combinations refused at start."""

from __future__ import annotations

import pytest

from shared.errors import RetryableError
from stagegate.bridge import report_transport_from
from stagegate.settings import ConfigError, Settings


def test_defaults_leave_the_reporter_off_and_the_lease_longer_than_a_report() -> None:
    settings = Settings.from_env({})
    assert settings.report_transport is None
    assert report_transport_from(settings) is None
    assert settings.resync_reports is False
    assert settings.report_lease_seconds > settings.reporter_deadline_seconds


def test_values_are_read() -> None:
    settings = Settings.from_env(
        {"REPORTER_DEADLINE_SECONDS": "30", "REPORT_LEASE_SECONDS": "31", "RESYNC_REPORTS": "True"}
    )
    assert (settings.reporter_deadline_seconds, settings.report_lease_seconds) == (30.0, 31)
    assert settings.resync_reports is True


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REPORT_LEASE_SECONDS": "60"}, "REPORT_LEASE_SECONDS"),  # not above the 60 s deadline
        ({"REPORTER_DEADLINE_SECONDS": "200"}, "REPORT_LEASE_SECONDS"),
        ({"RESYNC_REPORTS": "maybe"}, "RESYNC_REPORTS"),
        ({"REPORT_LEASE_SECONDS": "-1"}, "REPORT_LEASE_SECONDS"),
    ],
)
def test_malformed_or_inconsistent_values_stop_at_start_naming_the_variable(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REPORT_TRANSPORT": "pubsub"}, "REPORT_PUBSUB_TOPIC"),
        ({"REPORT_TRANSPORT": "sqs"}, "REPORT_SQS_QUEUE_URL"),
        ({"REPORT_TRANSPORT": "kafka"}, "REPORT_TRANSPORT"),
    ],
)
def test_a_transport_without_its_destination_stops_at_start(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        report_transport_from(Settings.from_env(env))


def test_a_client_that_cannot_be_made_fails_the_first_hand_off_as_retryable_and_the_next_tries_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The client is made on the first hand-off (not at start); no region is a failure it can meet."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    transport = report_transport_from(
        Settings.from_env({"REPORT_TRANSPORT": "sqs", "REPORT_SQS_QUEUE_URL": "https://sqs.example/1/q.fifo"})
    )
    assert transport is not None
    for _ in range(2):
        with pytest.raises(RetryableError, match=r"^the SQS client could not be made$"):
            transport.publish([])
    details = [record.__dict__["fields"]["detail"] for record in caplog.records]
    assert len(details) == 2
    assert all(detail.startswith("NoRegionError") for detail in details)
