"""The Events a gate write tells: opened, narrowed, or nothing when the allowed versions stay."""

from __future__ import annotations

import pytest

from shared.gate_events import NARROWED, OPENED, gate_events

WHY = {"v2": "allowed: success in kuberik/myapp/staging (history entry 3)", "v1": "blocked: failure"}


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (["v1"], ["v1"], []),
        (
            ["v1"],
            ["v1", "v2"],
            [(OPENED, f"prod-stagegate allows v2 ({WHY['v2']}); it allows v1, v2")],
        ),
        (
            ["v1", "v2"],
            ["v2"],
            [(NARROWED, f"prod-stagegate no longer allows v1 ({WHY['v1']}); it allows v2")],
        ),
        (
            ["v1"],
            ["v2"],
            [
                (NARROWED, f"prod-stagegate no longer allows v1 ({WHY['v1']}); it allows v2"),
                (OPENED, f"prod-stagegate allows v2 ({WHY['v2']}); it allows v2"),
            ],
        ),
        (None, [], [(NARROWED, "prod-stagegate restricts versions now (it allowed any): it allows nothing")]),
        (["v1"], None, [(OPENED, "prod-stagegate allows any version now (no restriction)")]),
        (["v9"], [], [(NARROWED, "prod-stagegate no longer allows v9; it allows nothing")]),
    ],
    ids=["unchanged", "opened", "narrowed", "both", "restricted", "unrestricted", "no-reason-known"],
)
def test_a_gate_write_tells_what_changed_and_why(
    before: list[str] | None, after: list[str] | None, expected: list[tuple[str, str]]
) -> None:
    assert gate_events("prod-stagegate", before, after, WHY) == expected
