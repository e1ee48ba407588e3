"""Unit tests of shared/audit.py on audit events captured from a real kube-apiserver."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.audit import AuditEvent, Ignored, ObjectRef, Routed, parse_audit_document, parse_audit_json, route
from shared.errors import BadEvent
from tests.payloads import load_payload, payload_bytes

CREATE = "audit/environment-create.json"
UPDATE = "audit/environment-update-add-relationship.json"
PATCH = "audit/environment-patch-rollout-ref.json"
DELETE = "audit/environment-delete.json"
CONFIGMAP = "audit/configmap-create-metadata.json"
ALL_CAPTURED = [CREATE, UPDATE, PATCH, DELETE, CONFIGMAP]


def captured_event(name: str) -> dict[str, Any]:
    """The single Event of a captured EventList."""
    [event] = load_payload(name)["items"]
    return event


def event_list(*items: object) -> dict[str, Any]:
    return {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": list(items)}


def parsed(event: dict[str, Any]) -> AuditEvent:
    [result] = parse_audit_document(event_list(event))
    return result


# parsing


def test_captured_create_event_list_reads_every_field() -> None:
    [event] = parse_audit_json(payload_bytes(CREATE))
    assert event.audit_id == "1ff018d5-b6d2-48a6-a915-e81bdf661739"
    assert (event.stage, event.verb, event.status_code) == ("ResponseComplete", "create", 201)
    assert event.object_ref == ObjectRef(
        resource="environments",
        api_group="environments.kuberik.com",
        namespace="default",
        name="prod",
        subresource=None,
    )
    assert event.response_object is not None
    assert event.response_object["metadata"]["uid"] == "63c31d60-657a-43e6-92cb-d34dc6e4b375"
    assert (
        event.raw["requestURI"] == "/apis/environments.kuberik.com/v1alpha1/namespaces/default/environments"
    )


@pytest.mark.parametrize("name", ALL_CAPTURED)
def test_every_captured_delivery_parses_to_one_event(name: str) -> None:
    [event] = parse_audit_json(payload_bytes(name))
    assert event.audit_id == load_payload(name)["items"][0]["auditID"]


def test_core_group_resource_has_empty_api_group_and_no_response_at_metadata_level() -> None:
    [event] = parse_audit_json(payload_bytes(CONFIGMAP))
    assert event.object_ref == ObjectRef("configmaps", "", "default", "unrelated", None)
    assert event.response_object is None


def test_single_event_document_parses_to_that_event() -> None:
    [event] = parse_audit_document(captured_event(UPDATE))
    assert (event.audit_id, event.verb) == ("ae422a43-97fd-4e44-aed8-0fe08018811f", "update")


def test_event_list_keeps_the_order_of_its_items() -> None:
    items = [captured_event(name) for name in ALL_CAPTURED]
    events = parse_audit_json(json.dumps(event_list(*items)).encode())
    assert [e.verb for e in events] == ["create", "update", "patch", "delete", "create"]
    assert [e.audit_id for e in events] == [item["auditID"] for item in items]


@pytest.mark.parametrize("items", [[], None, "absent"])
def test_event_list_without_items_has_no_events(items: object) -> None:
    document = event_list()
    if items == "absent":
        del document["items"]
    else:
        document["items"] = items
    assert parse_audit_document(document) == []


@pytest.mark.parametrize("body", [b"", b"not json", b"{", b"\xff\xfe\xfa", b"\x80abc"])
def test_body_that_is_not_json_is_a_bad_event(body: bytes) -> None:
    with pytest.raises(BadEvent, match="body is not JSON"):
        parse_audit_json(body)


@pytest.mark.parametrize("body", [b"[]", b"null", b'"EventList"', b"42"])
def test_json_that_is_not_an_object_is_a_bad_event(body: bytes) -> None:
    with pytest.raises(BadEvent, match="must be a JSON object"):
        parse_audit_json(body)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"apiVersion": "audit.k8s.io/v1", "kind": "EventList", "items": ['
        + b'{"a": ' * 100_000
        + b"1"
        + b"}" * 100_000
        + b"]}",
    ],
    ids=["unclosed", "balanced", "inside-an-event-list"],
)
def test_deeply_nested_json_is_a_bad_event(body: bytes) -> None:
    with pytest.raises(BadEvent, match=r"^body is not JSON: RecursionError"):
        parse_audit_json(body)


@pytest.mark.parametrize("api_version", ["audit.k8s.io/v1beta1", "v1", None])
def test_other_api_version_is_a_bad_event(api_version: object) -> None:
    document = load_payload(CREATE)
    document["apiVersion"] = api_version
    with pytest.raises(BadEvent, match=r"expected apiVersion audit\.k8s\.io/v1"):
        parse_audit_document(document)


@pytest.mark.parametrize("kind", ["Status", "Environment", "eventlist", None])
def test_other_kind_is_a_bad_event(kind: object) -> None:
    document = load_payload(CREATE)
    document["kind"] = kind
    with pytest.raises(BadEvent, match="expected kind Event or EventList"):
        parse_audit_document(document)


@pytest.mark.parametrize("items", [{}, "events", 1, {"0": {}}])
def test_items_that_are_not_a_list_are_a_bad_event(items: object) -> None:
    document = load_payload(CREATE)
    document["items"] = items
    with pytest.raises(BadEvent, match=r"EventList\.items must be a list"):
        parse_audit_document(document)


@pytest.mark.parametrize("key", ["auditID", "stage", "verb"])
@pytest.mark.parametrize("problem", ["missing", "empty", "number"])
def test_event_missing_a_required_field_is_a_bad_event_naming_item_and_field(key: str, problem: str) -> None:
    good, bad = captured_event(CREATE), captured_event(UPDATE)
    if problem == "missing":
        del bad[key]
    else:
        bad[key] = "" if problem == "empty" else 7
    with pytest.raises(BadEvent, match=rf"^items\[1\]\.{key} is required"):
        parse_audit_document(event_list(good, bad))


def test_single_event_missing_a_required_field_names_it() -> None:
    document = captured_event(CREATE)
    del document["auditID"]
    with pytest.raises(BadEvent, match=r"^event\.auditID is required"):
        parse_audit_document(document)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda e: e.update(responseStatus={"code": "201"}), r"items\[0\]\.responseStatus\.code"),
        (lambda e: e.update(responseObject=["prod"]), r"items\[0\]\.responseObject"),
        (lambda e: e.update(objectRef="environments/prod"), r"items\[0\]\.objectRef"),
        (lambda e: e["objectRef"].update(name=7), r"items\[0\]\.objectRef\.name"),
        (lambda e: e["objectRef"].update(subresource=["status"]), r"items\[0\]\.objectRef\.subresource"),
    ],
)
def test_event_with_a_mistyped_field_is_a_bad_event_naming_it(change, named: str) -> None:
    event = captured_event(CREATE)
    change(event)
    with pytest.raises(BadEvent, match=rf"^{named} must be"):
        parse_audit_document(event_list(event))


@pytest.mark.parametrize("item", [None, "event", []])
def test_item_that_is_not_an_object_is_a_bad_event(item: object) -> None:
    with pytest.raises(BadEvent, match=r"^items\[0\] must be an object"):
        parse_audit_document(event_list(item))


# routing


@pytest.mark.parametrize(("name", "verb"), [(CREATE, "create"), (UPDATE, "update"), (PATCH, "patch")])
def test_changes_of_environments_are_routed_with_the_object_they_name(name: str, verb: str) -> None:
    [event] = parse_audit_json(payload_bytes(name))
    decision = route(event)
    assert decision == Routed(route="environment", event=event, namespace="default", name="prod")
    assert decision.event.verb == verb


def test_deleting_an_environment_is_ignored() -> None:
    [event] = parse_audit_json(payload_bytes(DELETE))
    assert route(event) == Ignored("not routed: environments.environments.kuberik.com delete")


def test_configmap_change_is_ignored() -> None:
    [event] = parse_audit_json(payload_bytes(CONFIGMAP))
    assert route(event) == Ignored("not routed: configmaps.core create")


@pytest.mark.parametrize("verb", ["get", "list", "watch", "deletecollection"])
def test_reading_environments_is_ignored(verb: str) -> None:
    event = captured_event(CREATE)
    event["verb"] = verb
    decision = route(parsed(event))
    assert isinstance(decision, Ignored)
    assert verb in decision.reason


@pytest.mark.parametrize(
    ("api_group", "resource"),
    [("", "environments"), ("example.com", "environments"), ("kuberik.com", "rolloutgates")],
)
def test_environments_of_another_group_and_other_resources_are_ignored(api_group: str, resource: str) -> None:
    event = captured_event(CREATE)
    event["objectRef"].update(apiGroup=api_group, resource=resource)
    assert isinstance(route(parsed(event)), Ignored)


@pytest.mark.parametrize("stage", ["RequestReceived", "ResponseStarted", "Panic"])
def test_events_before_the_response_completed_are_ignored(stage: str) -> None:
    event = captured_event(CREATE)
    event["stage"] = stage
    assert route(parsed(event)) == Ignored(f"stage {stage}")


@pytest.mark.parametrize("code", [409, 422, 500, 199, 300])
def test_unsuccessful_changes_are_ignored(code: int) -> None:
    event = captured_event(CREATE)
    event["responseStatus"]["code"] = code
    assert route(parsed(event)) == Ignored(f"response status {code}")


def test_change_without_response_status_is_ignored() -> None:
    event = captured_event(CREATE)
    del event["responseStatus"]
    assert route(parsed(event)) == Ignored("response status None")


@pytest.mark.parametrize("code", [200, 201, 299])
def test_every_2xx_change_is_routed(code: int) -> None:
    event = captured_event(UPDATE)
    event["responseStatus"]["code"] = code
    assert isinstance(route(parsed(event)), Routed)


def test_status_subresource_change_is_ignored() -> None:
    event = captured_event(PATCH)
    event["objectRef"]["subresource"] = "status"
    assert route(parsed(event)) == Ignored("subresource status")


def test_event_without_object_ref_is_ignored() -> None:
    event = captured_event(CREATE)
    del event["objectRef"]
    assert route(parsed(event)) == Ignored("no objectRef")


def test_namespace_and_name_come_from_the_response_object_when_the_object_ref_lacks_them() -> None:
    event = captured_event(CREATE)
    del event["objectRef"]["name"]
    del event["objectRef"]["namespace"]
    event["responseObject"]["metadata"].update(name="prod-7xk2q", namespace="team-a")
    decision = route(parsed(event))
    assert isinstance(decision, Routed)
    assert (decision.namespace, decision.name) == ("team-a", "prod-7xk2q")


def test_empty_object_ref_name_falls_back_to_the_response_object() -> None:
    event = captured_event(CREATE)
    event["objectRef"]["name"] = ""
    event["responseObject"]["metadata"]["name"] = "prod-generated"
    decision = route(parsed(event))
    assert isinstance(decision, Routed)
    assert decision.name == "prod-generated"


def test_object_ref_wins_over_the_response_object() -> None:
    event = captured_event(CREATE)
    event["responseObject"]["metadata"].update(name="other", namespace="elsewhere")
    decision = route(parsed(event))
    assert isinstance(decision, Routed)
    assert (decision.namespace, decision.name) == ("default", "prod")


def test_metadata_level_change_is_routed_on_its_object_ref_alone() -> None:
    event = captured_event(CREATE)
    event["level"] = "Metadata"
    del event["requestObject"]
    del event["responseObject"]
    decision = route(parsed(event))
    assert isinstance(decision, Routed)
    assert (decision.namespace, decision.name, decision.event.response_object) == ("default", "prod", None)


@pytest.mark.parametrize("missing", ["name", "namespace"])
@pytest.mark.parametrize("response", ["absent", "without-metadata", "metadata-without-it", "empty-string"])
def test_routed_change_that_names_no_object_is_ignored(missing: str, response: str) -> None:
    event = captured_event(CREATE)
    del event["objectRef"][missing]
    if response == "absent":
        del event["responseObject"]
    elif response == "without-metadata":
        del event["responseObject"]["metadata"]
    elif response == "metadata-without-it":
        del event["responseObject"]["metadata"][missing]
    else:
        event["responseObject"]["metadata"][missing] = ""
    assert route(parsed(event)) == Ignored("names no namespace/name")


def test_one_change_that_names_no_object_does_not_reject_the_rest_of_its_delivery() -> None:
    odd = captured_event(UPDATE)
    del odd["objectRef"]["name"]
    del odd["responseObject"]
    body = json.dumps(event_list(captured_event(CREATE), odd, captured_event(PATCH))).encode()
    decisions = [route(event) for event in parse_audit_json(body)]
    assert [type(d).__name__ for d in decisions] == ["Routed", "Ignored", "Routed"]
    assert decisions[1] == Ignored("names no namespace/name")
    assert [(d.namespace, d.name) for d in decisions if isinstance(d, Routed)] == [
        ("default", "prod"),
        ("default", "prod"),
    ]


def test_routed_change_whose_object_name_is_not_a_string_is_ignored() -> None:
    event = captured_event(CREATE)
    del event["objectRef"]["name"]
    event["responseObject"]["metadata"]["name"] = 7
    assert route(AuditEvent.from_raw(event)) == Ignored("names no namespace/name")
