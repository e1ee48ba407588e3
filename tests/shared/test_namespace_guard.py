"""The namespace guard: removing a namespace's opt-in label needs a reason in the same write, and leaves
a warning and a `GuardRemoved` Event; every other namespace update passes untouched. Pure: decided on the
review alone."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.admission import Decision, parse_admission_review
from shared.errors import BadEvent
from shared.namespace_guard import namespace_decision, namespace_unavailable
from tests.shared.admission_builders import namespace_object, review

LABEL = ("stagegate.kuberik.com/guard", "enabled")


def namespace_update(new: dict[str, Any], old: dict[str, Any]) -> Decision:
    request = parse_admission_review(json.dumps(review(new, old, user="bob")))
    return namespace_decision(request, LABEL)


def test_removing_the_opt_in_label_is_refused_without_a_reason() -> None:
    for labels in ({}, {"stagegate.kuberik.com/guard": "disabled"}):
        decision = namespace_update(namespace_object(labels=labels), namespace_object())
        assert not decision.allowed
        assert "stagegate.kuberik.com/unguard-reason" in decision.message
    blank = namespace_object(labels={}, annotations={"stagegate.kuberik.com/unguard-reason": "  "})
    assert not namespace_update(blank, namespace_object()).allowed


def test_removing_the_opt_in_label_with_a_reason_warns_and_records_an_event() -> None:
    reason = {"stagegate.kuberik.com/unguard-reason": "decommissioning myapp (TICKET-12)"}
    decision = namespace_update(namespace_object(labels={}, annotations=reason), namespace_object())
    assert decision.allowed
    assert "namespace myapp is no longer guarded" in decision.warnings[0]
    [event] = decision.events
    assert (event.namespace, event.api_version, event.kind, event.name, event.reason) == (
        None,
        "v1",
        "Namespace",
        "myapp",
        "GuardRemoved",
    )
    assert event.uid == namespace_object()["metadata"]["uid"]
    assert event.message == (
        "the deploy guard's opt-in label stagegate.kuberik.com/guard=enabled was removed by bob: "
        "decommissioning myapp (TICKET-12)"
    )


def test_every_other_namespace_update_is_allowed_without_an_event() -> None:
    guarded = namespace_object()
    others = [
        (namespace_object(labels={**guarded["metadata"]["labels"], "team": "web"}), guarded),
        (guarded, namespace_object(labels={})),  # opting in
        (
            namespace_object(labels={"a": "b"}),
            namespace_object(labels={"stagegate.kuberik.com/guard": "off"}),
        ),
    ]
    for new, old in others:
        decision = namespace_update(new, old)
        assert decision.allowed
        assert (decision.warnings, decision.events) == ((), ())


def test_an_unreadable_namespace_is_bad_input() -> None:
    broken = {**namespace_object(), "metadata": {"name": "myapp", "labels": ["x"]}}
    with pytest.raises(BadEvent):
        namespace_update(broken, namespace_object())


def test_a_failed_check_refuses_with_a_sentence() -> None:
    request = parse_admission_review(json.dumps(review(namespace_object(labels={}), namespace_object())))
    decision = namespace_unavailable(request, "object.metadata.labels must map strings to strings")
    assert not decision.allowed
    assert decision.message.startswith("stagegate could not check whether the update of namespace myapp")
