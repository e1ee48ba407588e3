"""Fuzzing every entry point with generated and mutated input: bad input is never a 5xx (nor a raised
retryable error on the CloudEvent and Lambda paths), and no input ever widens a gate.

Each entry point runs in-process (functions-framework `test_client()`, the Lambda module) against the
in-memory world of `tests/stagegate/in_memory.py`: `prod` (`After staging`) whose gate allows `["a"]`,
and `staging` with an unrestricted gate. GitHub always fails and counts its calls, so a 503 (or a
raised `RetryableError`, or an SQS retry) is only legitimate where GitHub was actually asked; an input
that fails in parsing can never excuse one. After every case `never_wider` checks the gates against
what the stored Environments justify, and a 4xx must have changed nothing at all.

Inputs are JSON-ish documents shaped like the real ones (audit Events, Environments, GitHub
deliveries) and mutations of captured real payloads (`tests/payloads/audit`, GitHub's published
webhook examples): dropped, retyped and replaced fields, raw literals no decoder should accept
quietly (huge integers, NaN, lone surrogates, deep nesting), truncated, flipped and inserted bytes.
`test_zz_report_fuzz_case_counts` prints how many cases ran per entry point.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlencode

import pytest
from cloudevents.http import CloudEvent
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from shared.audit import AUDIT_API_VERSION, parse_audit_json
from shared.errors import RetryableError
from shared.github_delivery import signature
from tests.kube_objects import delivery
from tests.octokit import require_octokit
from tests.payloads import load_payload
from tests.shared.builders import ENV_UID, environment_raw
from tests.stagegate.in_memory import (
    AUDIT_TOKEN,
    RESYNC_TOKEN,
    STAGING_UID,
    WEBHOOK_SECRET,
    EntryPoints,
    entry_points,
    forbid_network,
    never_wider,
)

pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

COUNTS: Counter[str] = Counter()

FUZZ = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)


@pytest.fixture(scope="module")
def eps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EntryPoints]:
    quiet = logging.getLogger("stagegate")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # thousands of cases; unexpected failures still log with a traceback
    with pytest.MonkeyPatch.context() as patch:
        forbid_network(patch)
        yield entry_points(tmp_path_factory.mktemp("functions"))
    quiet.setLevel(level)


# What the generated documents are made of: the words the real payloads use, and anything else.

NAMES = ["prod", "staging", "prod2", "", "myapp", "PROD", "prod.x", "prod-stagegate"]
WORDS = [
    AUDIT_API_VERSION,
    "audit.k8s.io/v1beta1",
    "Event",
    "EventList",
    "Environment",
    "RolloutGate",
    "Rollout",
    "environments",
    "rollouts",
    "rolloutgates",
    "status",
    "environments.kuberik.com",
    "environments.kuberik.com/v1alpha1",
    "kuberik.com",
    "kuberik.com/v1alpha1",
    "ResponseComplete",
    "ResponseStarted",
    "RequestReceived",
    "create",
    "update",
    "patch",
    "delete",
    "get",
    "default",
    "After",
    "Parallel",
    "Before",
    "myapp-staging",
    "myorg/myapp",
    "kuberik/myapp/staging",
    "kuberik/myapp",
    "success",
    "failure",
    "inactive",
    "2026-05-15T10:05:00Z",
    ENV_UID,
    STAGING_UID,
    "a",
    "b",
    *NAMES,
]
KEYS = [
    "apiVersion",
    "kind",
    "items",
    "auditID",
    "stage",
    "verb",
    "objectRef",
    "resource",
    "apiGroup",
    "namespace",
    "name",
    "subresource",
    "responseStatus",
    "code",
    "responseObject",
    "requestObject",
    "metadata",
    "uid",
    "spec",
    "status",
    "relationship",
    "type",
    "environment",
    "rolloutRef",
    "backend",
    "project",
    "allowedVersions",
    "releaseCandidates",
    "tag",
    "revision",
    "action",
    "zen",
    "deployment",
    "deployment_status",
    "repository",
    "full_name",
    "state",
    "created_at",
    "payload",
    "detail",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(WORDS)
    | st.text(max_size=12)
)
keys = st.sampled_from(KEYS) | st.text(max_size=8)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=25,
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the well-shaped value, sometimes anything at all."""
    return st.one_of(strategy, strategy, strategy, json_values)


def word(*choices: Any) -> st.SearchStrategy[Any]:
    return maybe(st.sampled_from(choices))


environments = st.fixed_dictionaries(
    {},
    optional={
        "apiVersion": word("environments.kuberik.com/v1alpha1"),
        "kind": word("Environment", "RolloutGate"),
        "metadata": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "name": word(*NAMES),
                    "namespace": word("default", "other"),
                    "uid": word(ENV_UID, STAGING_UID, "0b7f2a55-0c33-4bd4-9a7e-5c1f3d2e8a10"),
                },
            )
        ),
        "spec": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "rolloutRef": maybe(st.fixed_dictionaries({"name": word("myapp", "myapp-staging", "x")})),
                    "relationship": maybe(
                        st.fixed_dictionaries(
                            {
                                "type": word("After", "Parallel", "Before"),
                                "environment": word("staging", "prod"),
                            }
                        )
                    ),
                    "backend": maybe(st.fixed_dictionaries({"project": word("myorg/myapp", "MyOrg/MyApp")})),
                    "name": word("myapp", "kuberik/myapp", "other"),
                    "environment": word("production", "staging"),
                },
            )
        ),
    },
)
object_refs = st.fixed_dictionaries(
    {},
    optional={
        "resource": word("environments", "rollouts", "configmaps"),
        "apiGroup": word("environments.kuberik.com", "kuberik.com", ""),
        "namespace": word("default", "other", ""),
        "name": word(*NAMES),
        "subresource": word("status", None),
    },
)
audit_events = st.fixed_dictionaries(
    {
        "auditID": word("1ff018d5-b6d2-48a6-a915-e81bdf661739", ""),
        "stage": word("ResponseComplete", "ResponseStarted"),
        "verb": word("create", "update", "patch", "delete"),
    },
    optional={
        "kind": word("Event"),
        "apiVersion": word(AUDIT_API_VERSION),
        "objectRef": maybe(object_refs),
        "responseStatus": maybe(st.fixed_dictionaries({}, optional={"code": word(200, 201, 409, 500)})),
        "responseObject": maybe(environments),
        "requestObject": json_values,
    },
)
audit_documents = st.one_of(
    st.fixed_dictionaries(
        {"apiVersion": word(AUDIT_API_VERSION), "kind": word("EventList")},
        optional={"items": maybe(st.lists(audit_events, max_size=3)), "metadata": json_values},
    ),
    st.builds(
        lambda event, api, kind: {**event, "apiVersion": api, "kind": kind},
        audit_events,
        word(AUDIT_API_VERSION),
        word("Event"),
    ),
    json_values,
)

# Literals a JSON encoder never writes, or that a decoder turns into something that breaks later.
RAW_LITERALS = [
    b"1" * 5000,
    b"-" + b"9" * 4301,
    b"9" * 4300,
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e400",
    b"-1e99999",
    b"1.7976931348623157e308",
    b'"\\ud800"',
    b'"\\udfff\\ud800"',
    b'"\\u0000"',
    b"[" * 600 + b"]" * 600,
    b"[" * 20_000 + b"]" * 20_000,
    b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
    b"1" * 4301 + b".5",
    b"0." + b"0" * 5000 + b"1",
]
PLACEHOLDER = "@@raw-literal-{}@@"


def paths(document: Any, prefix: tuple[Any, ...] = (), limit: int = 300) -> list[tuple[Any, ...]]:
    """Paths to `document` and the values inside it (breadth first, at most `limit`)."""
    found: list[tuple[Any, ...]] = []
    queue: list[tuple[tuple[Any, ...], Any]] = [(prefix, document)]
    while queue and len(found) < limit:
        path, value = queue.pop(0)
        found.append(path)
        if isinstance(value, dict):
            queue += [((*path, k), v) for k, v in value.items()]
        elif isinstance(value, list):
            queue += [((*path, i), v) for i, v in enumerate(value)]
    return found


def retyped(value: Any) -> list[Any]:
    """The same information in the wrong type."""
    return [str(value), [value], {"value": value}, 0, -1, True, None, "", 1.5]


@st.composite
def structurally_mutated(draw: st.DrawFn, document: Any) -> Any:
    """`document` with one value at a drawn path dropped, retyped, replaced or made a raw literal."""
    document = copy.deepcopy(document)
    inner = paths(document)[1:]
    if not inner:  # a scalar or an empty container: replace it whole
        return draw(json_values)
    # Deepest first: Hypothesis favours early choices, and leaves are where a payload has most room.
    path = draw(st.sampled_from(inner[::-1]))
    operation = draw(st.sampled_from(["word", "retype", "drop", "replace", "nest", "duplicate", "raw"]))
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if operation == "drop":
        del parent[last]
    elif operation == "retype":
        parent[last] = draw(st.sampled_from(retyped(parent[last])))
    elif operation == "replace":
        parent[last] = draw(json_values)
    elif operation == "word":
        parent[last] = draw(st.sampled_from(WORDS))
    elif operation == "raw":
        parent[last] = PLACEHOLDER.format(draw(st.integers(0, len(RAW_LITERALS) - 1)))
    elif operation == "nest":
        parent[last] = (
            [parent[last]] * draw(st.integers(1, 3)) if draw(st.booleans()) else {"x": parent[last]}
        )
    elif isinstance(parent, list):
        parent.append(copy.deepcopy(parent[last]))
    else:
        parent[f"{last}2"] = copy.deepcopy(parent[last])
    return document


def serialize(document: Any) -> bytes:
    """JSON with the placeholders replaced by their raw literals."""
    body = json.dumps(document).encode()
    for index, literal in enumerate(RAW_LITERALS):
        body = body.replace(json.dumps(PLACEHOLDER.format(index)).encode(), literal)
    return body


@st.composite
def byte_mutated(draw: st.DrawFn, body: bytes) -> bytes:
    """`body` truncated, with bytes flipped, inserted, deleted or repeated."""
    operation = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "repeat"]))
    at = draw(st.integers(0, max(len(body) - 1, 0)))
    if operation == "truncate":
        return body[:at]
    if operation == "flip":
        return body[:at] + bytes([body[at] ^ draw(st.integers(1, 255))]) + body[at + 1 :] if body else body
    if operation == "insert":
        inserted = draw(
            st.binary(min_size=1, max_size=8)
            | st.sampled_from([b"\xff", b"\xed\xa0\x80", b"\\ud800", b"NaN", b"["])
        )
        return body[:at] + inserted + body[at:]
    end = draw(st.integers(at, min(len(body), at + 64)))
    return body[:at] + body[end:] if operation == "delete" else body[:end] + body[at:end] + body[end:]


@st.composite
def mutated(draw: st.DrawFn, bases: list[Any]) -> bytes:
    """A real payload after one to three structural mutations, and sometimes a byte-level one."""
    document = draw(st.sampled_from(bases))
    for _ in range(draw(st.integers(1, 2))):
        document = draw(structurally_mutated(document))
    body = serialize(document)
    if draw(st.integers(0, 3)) == 0:
        body = draw(byte_mutated(body))
    return body


def rollout_status_patch() -> dict[str, Any]:
    """A Rollout status change (routed: recompute the gates of `prod`, which asks GitHub)."""
    body = load_payload("audit/environment-create.json")
    event = body["items"][0]
    event["verb"] = "patch"
    event["objectRef"] = {
        "resource": "rollouts",
        "subresource": "status",
        "apiGroup": "kuberik.com",
        "namespace": "default",
        "name": "myapp",
    }
    event["responseStatus"]["code"] = 200
    event.pop("requestObject")
    event["responseObject"] = {"kind": "Rollout", "metadata": {"name": "myapp", "namespace": "default"}}
    return body


AUDIT_BASES = [
    *(
        load_payload(f"audit/{name}.json")
        for name in (
            "configmap-create-metadata",
            "environment-create",
            "environment-delete",
            "environment-patch-rollout-ref",
            "environment-update-add-relationship",
        )
    ),
    delivery(environment_raw("prod")),
    delivery(environment_raw("prod"), "update"),
    delivery(environment_raw("prod", relationship=None), "update"),
    delivery(environment_raw("prod2"), "create"),
    delivery(environment_raw("prod"), "patch", with_object=False),
    rollout_status_patch(),
]
# Twice as many mutated real payloads as generated documents: those get past parsing more often.
audit_bodies = st.one_of(audit_documents.map(serialize), mutated(AUDIT_BASES), mutated(AUDIT_BASES))


def audit_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {AUDIT_TOKEN}", "Content-Type": "application/json"}


def check_http(eps: EntryPoints, before: Mapping[Any, Any], status: int, answer: bytes) -> None:
    """Never a 5xx unless GitHub was asked (then 503); a 4xx changed nothing; no gate wider."""
    event(f"answered {status}")  # `--hypothesis-show-statistics` shows how far the inputs got
    assert status < 500 or (status == 503 and eps.github.calls > 0), (status, answer[:500])
    if 400 <= status < 500:
        assert eps.kube.snapshot() == before, "a refused request changed gates"
        assert eps.github.calls == 0, "a refused request asked GitHub"
    never_wider(before, eps.kube)


# k8s_audit_http


@FUZZ
@given(body=audit_bodies)
def test_audit_webhook_never_answers_5xx_to_bad_input_nor_widens_a_gate(
    eps: EntryPoints, body: bytes
) -> None:
    COUNTS["k8s_audit_http"] += 1
    eps.reset()
    before = eps.kube.snapshot()
    answer = eps.audit_http.post("/", data=body, headers=audit_headers())
    check_http(eps, before, answer.status_code, answer.data)
    assert answer.status_code in (200, 400, 503), answer.data[:500]


# k8s_audit (CloudEvent from Pub/Sub)


pubsub_data = st.one_of(
    audit_bodies.map(lambda body: {"message": {"data": base64.b64encode(body).decode(), "messageId": "1"}}),
    st.fixed_dictionaries({"message": maybe(st.fixed_dictionaries({"data": maybe(st.text(max_size=40))}))}),
    json_values,
)


@FUZZ
@given(data=pubsub_data)
def test_pubsub_consumer_acknowledges_bad_input_and_never_widens_a_gate(eps: EntryPoints, data: Any) -> None:
    COUNTS["k8s_audit"] += 1
    eps.reset()
    before = eps.kube.snapshot()
    cloud_event = CloudEvent(
        {
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": "//pubsub.googleapis.com/projects/p/topics/t",
            "id": "m-1",
        },
        data,
    )
    try:
        eps.audit_module.k8s_audit(cloud_event)  # returning acknowledges the message
    except RetryableError:
        assert eps.github.calls > 0, "a message that failed in parsing would be redelivered"
        event("redelivered (GitHub failed)")
    else:
        event("acknowledged")
    never_wider(before, eps.kube)


# audit_bridge


@FUZZ
@given(body=audit_bodies)
def test_bridge_never_answers_5xx_to_bad_input_and_publishes_only_what_k8s_audit_reads(
    eps: EntryPoints, body: bytes
) -> None:
    COUNTS["audit_bridge"] += 1
    eps.reset()
    before = eps.kube.snapshot()
    answer = eps.bridge.post("/", data=body, headers=audit_headers())
    check_http(eps, before, answer.status_code, answer.data)
    assert answer.status_code in (200, 400), answer.data[:500]
    if answer.status_code == 400:
        assert eps.transport.messages == []
    for message in eps.transport.messages:
        json.loads(message, parse_constant=_not_json)  # strict JSON, for EventBridge and Pub/Sub alike
        assert len(parse_audit_json(message)) == 1


def _not_json(literal: str) -> Any:
    raise AssertionError(f"published a message with {literal}, which is not JSON")


# github_webhook


def octokit_examples() -> list[tuple[str, dict[str, Any]]]:
    index = json.loads(
        (require_octokit() / "@octokit" / "webhooks-examples" / "api.github.com" / "index.json").read_text()
    )
    wanted = {"deployment_status", "deployment", "ping", "push", "status"}
    return [
        (entry["name"], example)
        for entry in index
        if entry["name"] in wanted
        for example in entry["examples"]
    ]


def kuberik_deployment_status() -> dict[str, Any]:
    """A bake of `staging` recorded by kuberik: governs `prod`, so handling it asks GitHub."""
    return {
        "action": "created",
        "deployment_status": {
            "id": 2,
            "state": "success",
            "description": "Bake succeeded",
            "environment": "kuberik/myapp/staging",
            "created_at": "2026-05-15T10:05:00Z",
        },
        "deployment": {
            "id": 1,
            "sha": "aaaaaaa",
            "ref": "aaaaaaa",
            "task": "deploy:kuberik/myapp",
            "environment": "kuberik/myapp/staging",
            "payload": {"id": "entry-1", "version": {"tag": "a", "revision": "aaaaaaa"}},
            "created_at": "2026-05-15T10:00:00Z",
        },
        "repository": {"id": 3, "name": "myapp", "full_name": "myorg/myapp"},
    }


@pytest.fixture(scope="module")
def github_bases() -> list[tuple[str, dict[str, Any]]]:
    # kuberik's own deliveries weigh as much as GitHub's examples: only they get as far as GitHub.
    examples = octokit_examples()
    return [
        *examples,
        *[("deployment_status", kuberik_deployment_status())] * (len(examples) // 2),
        ("ping", {"zen": "z"}),
    ]


deliveries_generated = st.fixed_dictionaries(
    {},
    optional={
        "action": word("created"),
        "zen": json_values,
        "deployment_status": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "state": word("success", "failure"),
                    "environment": word("kuberik/myapp/staging", "kuberik/myapp", "production"),
                    "created_at": word("2026-05-15T10:05:00Z"),
                },
            )
        ),
        "deployment": maybe(
            st.fixed_dictionaries({}, optional={"environment": word("kuberik/myapp/staging", "kuberik//")})
        ),
        "repository": maybe(
            st.fixed_dictionaries({}, optional={"full_name": word("myorg/myapp", "MYORG/MYAPP")})
        ),
    },
)
EVENTS = st.sampled_from(["deployment_status", "ping", "push", "deployment", ""]) | st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=12
)


@st.composite
def webhook_requests(
    draw: st.DrawFn, bases: list[tuple[str, dict[str, Any]]]
) -> tuple[bytes, dict[str, str], bool]:
    """(body, headers, signed correctly): JSON or form-encoded, mostly signed with the right secret."""
    if draw(st.booleans()):
        name, document = draw(st.sampled_from(bases))
        payload = draw(mutated([document])) if draw(st.integers(0, 3)) else serialize(document)
        event = name if draw(st.integers(0, 4)) else draw(EVENTS)
    else:
        payload, event = serialize(draw(deliveries_generated)), draw(EVENTS)
    form = draw(st.integers(0, 3)) == 0
    if form:
        body = urlencode(
            {"payload": payload.decode("utf-8", "surrogateescape")}, errors="surrogateescape"
        ).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        body = payload
        content_type = draw(
            st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", ""])
        )
    good = signature(WEBHOOK_SECRET, body)
    signed_with = draw(
        st.sampled_from(
            ["right"] * 6 + ["other secret", "missing", "truncated", "sha1", "uppercase", "empty body"]
        )
    )
    header = {
        "right": good,
        "other secret": signature("another-secret", body),
        "missing": None,
        "truncated": good[:-1],
        "sha1": "sha1=" + good.removeprefix("sha256="),
        "uppercase": "sha256=" + good.removeprefix("sha256=").upper(),
        "empty body": signature(WEBHOOK_SECRET, b""),
    }[signed_with]
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": "d-1"}
    if content_type:
        headers["Content-Type"] = content_type
    if header is not None:
        headers["X-Hub-Signature-256"] = header
    return body, headers, header == good


@FUZZ
@given(data=st.data())
def test_github_webhook_never_answers_5xx_to_bad_input_nor_widens_a_gate(
    eps: EntryPoints, github_bases: list[tuple[str, dict[str, Any]]], data: st.DataObject
) -> None:
    body, headers, authentic = data.draw(webhook_requests(github_bases))
    COUNTS["github_webhook"] += 1
    eps.reset()
    before = eps.kube.snapshot()
    answer = eps.webhook.post("/", data=body, headers=headers)
    check_http(eps, before, answer.status_code, answer.data)
    if not authentic:
        assert answer.status_code == 401, answer.data[:500]
    assert answer.status_code in (200, 400, 401, 503), answer.data[:500]


# resync_http (its body is never read)


@FUZZ
@given(
    authorization=st.one_of(
        st.sampled_from([f"Bearer {RESYNC_TOKEN}", f"bearer {RESYNC_TOKEN}", f"Bearer  {RESYNC_TOKEN} "]),
        st.sampled_from(["Bearer wrong", "Bearer", "", f"Basic {RESYNC_TOKEN}", RESYNC_TOKEN, None]),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
    ),
    body=st.binary(max_size=64) | audit_bodies,
    content_type=st.sampled_from(
        ["application/json", "application/x-www-form-urlencoded", "text/plain", None]
    ),
    method=st.sampled_from(["POST", "GET", "PUT"]),
)
def test_resync_never_answers_5xx_unless_github_failed_nor_widens_a_gate(
    eps: EntryPoints, authorization: str | None, body: bytes, content_type: str | None, method: str
) -> None:
    COUNTS["resync_http"] += 1
    eps.reset()
    before = eps.kube.snapshot()
    headers = {
        k: v
        for k, v in {"Authorization": authorization, "Content-Type": content_type}.items()
        if v is not None
    }
    answer = eps.resync.open("/", method=method, data=body, headers=headers)
    check_http(eps, before, answer.status_code, answer.data)
    authorized = (authorization or "").partition(" ")[0].lower() == "bearer" and (
        (authorization or "").partition(" ")[2].strip() == RESYNC_TOKEN
    )
    assert answer.status_code == (503 if authorized else 401), answer.data[:500]


# AWS Lambda: the audit consumer (SQS batches and direct EventBridge events)


def decoded_or_generated(body: bytes, fallback: Any) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return fallback


@st.composite
def sqs_records(draw: st.DrawFn) -> Any:
    body = draw(audit_bodies)
    kind = draw(st.sampled_from(["enveloped", "raw", "malformed"]))
    if kind == "enveloped":
        text = b'{"source": "stagegate.kubernetes-audit", "detail": ' + body + b"}"
        return {
            "messageId": draw(st.sampled_from(["m-1", "m-2"])),
            "body": text.decode("utf-8", "surrogateescape"),
        }
    if kind == "raw":
        return {"messageId": "m-3", "body": body.decode("utf-8", "surrogateescape")}
    return draw(json_values)


lambda_audit_events = st.one_of(
    st.fixed_dictionaries({"Records": st.lists(sqs_records(), min_size=1, max_size=3)}),
    st.fixed_dictionaries({"Records": json_values}),
    st.builds(
        lambda body, other: {"id": "e-1", "detail": decoded_or_generated(body, other)},
        audit_bodies,
        json_values,
    ),
    json_values.filter(lambda v: isinstance(v, dict)),
)


@FUZZ
@given(lambda_event=lambda_audit_events)
def test_lambda_audit_consumer_drops_bad_input_and_never_widens_a_gate(
    eps: EntryPoints, lambda_event: Any
) -> None:
    COUNTS["lambda k8s_audit_eventbridge"] += 1
    eps.reset()
    before = eps.kube.snapshot()
    try:
        result = eps.aws.k8s_audit_eventbridge(lambda_event, None)
    except RetryableError:
        assert "Records" not in lambda_event, "an SQS batch must report failures per message, not raise"
        assert eps.github.calls > 0, "an event that failed in parsing would be retried"
        event("retried (GitHub failed)")
    else:
        if "Records" in lambda_event:
            assert result["batchItemFailures"] == [] or eps.github.calls > 0, result
            event(f"{len(result['batchItemFailures'])} SQS retries")
        else:
            assert result == {}
            event("acknowledged")
    never_wider(before, eps.kube)


# AWS Lambda: github_webhook behind a function URL


@FUZZ
@given(data=st.data())
def test_lambda_github_webhook_never_answers_5xx_to_bad_input_nor_widens_a_gate(
    eps: EntryPoints, github_bases: list[tuple[str, dict[str, Any]]], data: st.DataObject
) -> None:
    body, headers, authentic = data.draw(webhook_requests(github_bases))
    shape = data.draw(st.sampled_from(["text", "base64", "base64-flag-only", "malformed"]))
    url_event: dict[str, Any] = {
        "version": "2.0",
        "rawPath": "/",
        "headers": {k.lower(): v for k, v in headers.items()},
        "body": body.decode("utf-8", "surrogateescape"),
        "isBase64Encoded": False,
        "requestContext": {"http": {"method": "POST"}},
    }
    if shape == "base64":
        url_event.update(body=base64.b64encode(body).decode(), isBase64Encoded=True)
    elif shape == "base64-flag-only":
        url_event["isBase64Encoded"] = True
    elif shape == "malformed":
        url_event[data.draw(st.sampled_from(["headers", "body", "isBase64Encoded"]))] = data.draw(json_values)
    COUNTS["lambda github_webhook"] += 1
    eps.reset()
    before = eps.kube.snapshot()
    answer = eps.aws.github_webhook(url_event, None)
    check_http(eps, before, answer["statusCode"], answer["body"].encode())
    readable = shape == "base64" or (shape == "text" and _is_utf8(body))
    if readable and not authentic:
        assert answer["statusCode"] == 401, answer


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_zz_report_fuzz_case_counts(capsys: pytest.CaptureFixture[str]) -> None:
    """How many fuzz cases ran per entry point (hypothesis shrinking and replays included)."""
    with capsys.disabled():
        print("\nfuzz cases per entry point:")
        for entry, count in sorted(COUNTS.items()):
            print(f"  {entry:32} {count}")
        print(f"  {'total':32} {sum(COUNTS.values())}")
    assert all(count > 0 for count in COUNTS.values())
