"""`infra/gcp/gke_audit_logs.tf` cross-checked against the code: GKE's Cloud Audit Logs to stagegate.

terraform is not run (see test_terraform.py). The sink's filter is read with a small interpreter of
the part of Cloud Logging's query language it uses (one comparison or parenthesized OR per line, lines
ANDed; `=` equality, `=~` regular expression, `("a" OR "b")` alternatives; anything else fails the
test) and run over LogEntries built with Google's types (tests/shared/test_cloud_audit_log.py): it lets
through exactly the entries the code routes, so nothing stagegate acts on is dropped and nothing else
costs a delivery. The rest checks the wiring: the sink's writer identity may publish to its topic and
nothing else, and the two push subscriptions (entries of `local.push_subscriptions`, made only with
gke_audit_logs) deliver to k8s_audit and the reporter with the delivery identities, retries and
dead-letter topics of the existing subscriptions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared.audit import ROUTES, Routed, parse_audit_document, route
from tests.infra.terraform import Body, Config, load, reference
from tests.infra.test_terraform import (
    GCP_FUNCTIONS,
    _one,
    dead_letter_subscribers,
    gcp_functions,
    number,
    push_subscriptions,
    seconds,
)
from tests.shared.test_cloud_audit_log import CLUSTER, LOCATION, PROJECT, log_entry

GKE_FILE = "gke_audit_logs.tf"
ENABLED = "${var.gke_audit_logs ? 1 : 0}"
TOPIC = "google_pubsub_topic.gke_audit[0].id"
# The topic as the push subscriptions name it: null without gke_audit_logs, when they are not made.
SUBSCRIBED_TOPIC = "one(google_pubsub_topic.gke_audit[*].id)"
GKE_SUBSCRIPTIONS = {"gke_audit_k8s_audit", "gke_audit_reporter"}
SINK = "google_logging_project_sink.gke_audit[0]"


@pytest.fixture(scope="module")
def gcp() -> Config:
    return load("gcp")


def gke_resources(config: Config) -> Iterator[tuple[str, str, Body]]:
    """Every resource declared in gke_audit_logs.tf, as (type, name, body)."""
    text = (config.folder / GKE_FILE).read_text(encoding="utf-8")
    for kind, name in re.findall(r'^resource "(\w+)" "(\w+)"', text, flags=re.MULTILINE):
        yield kind, name, config.resource(kind, name)


# --- the filter, read as Cloud Logging reads it ---------------------------------------------------------

_COMPARISON = re.compile(r"([A-Za-z_@][\w.@]*)\s*(=~|=)\s*(.+)")
_QUOTED = re.compile(r'"([^"\\]*)"')


def _value(entry: dict[str, Any], path: str) -> str | None:
    value: Any = entry
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, str) else None


def _comparison(text: str) -> Callable[[dict[str, Any]], bool]:
    match = _COMPARISON.fullmatch(text.strip())
    assert match, f"not a comparison this test can read: {text!r}"
    path, operator, operand = match.groups()
    operand = operand.strip()
    if operand.startswith("("):
        assert operand.endswith(")"), operand
        alternatives = [a.strip() for a in operand[1:-1].split(" OR ")]
    else:
        alternatives = [operand]
    values = []
    for alternative in alternatives:
        quoted = _QUOTED.fullmatch(alternative)
        assert quoted, f"not a plain string: {alternative!r}"
        values.append(quoted.group(1))
    if operator == "=":
        return lambda entry: _value(entry, path) in values
    patterns = [re.compile(v) for v in values]
    return lambda entry: any(
        (found := _value(entry, path)) is not None and p.search(found) is not None for p in patterns
    )


def logging_filter(text: str) -> Callable[[dict[str, Any]], bool]:
    """The subset of the Logging query language the sink's filter is written in, as a predicate."""
    clauses: list[Callable[[dict[str, Any]], bool]] = []
    for line in filter(None, (line.strip() for line in text.splitlines())):
        if line.startswith("(") and _COMPARISON.fullmatch(line) is None:
            assert line.endswith(")"), line
            parts = [_comparison(part) for part in line[1:-1].split(" OR ")]
            clauses.append(lambda entry, parts=parts: any(part(entry) for part in parts))
        else:
            clauses.append(_comparison(line))
    return lambda entry: all(clause(entry) for clause in clauses)


def sink_filter(config: Config) -> Callable[[dict[str, Any]], bool]:
    """The deployed filter, for the cluster the test entries come from."""
    sink = config.resource("google_logging_project_sink", "gke_audit")
    assert reference(sink["filter"]) == "local.gke_audit_filter"
    text = config.locals["gke_audit_filter"]
    for name, value in {
        "${local.gke_project}": PROJECT,
        "${var.gke_cluster_location}": LOCATION,
        "${var.gke_cluster_name}": CLUSTER,
    }.items():
        assert name in text, f"the filter does not name {name}"
        text = text.replace(name, value)
    assert "${" not in text, f"unexpected interpolation in the filter: {text}"
    return logging_filter(text)


def routed(entry: dict[str, Any]) -> bool:
    [event] = parse_audit_document(entry)
    return isinstance(route(event), Routed)


GROUP_VERSIONS = {"environments.kuberik.com": "v1alpha1", "kuberik.com": "v1alpha1", "": "v1"}


def _resource_name(group: str, resource: str, sub: str | None, namespace: str = "team-a") -> str:
    path = f"{group or 'core'}/{GROUP_VERSIONS.get(group, 'v1')}/namespaces/{namespace}/{resource}/x"
    return f"{path}/{sub}" if sub else path


def entries_stagegate_acts_on() -> list[dict[str, Any]]:
    """One entry for each route of shared.audit.ROUTES."""
    return [
        log_entry(f"io.k8s.{group}.v1alpha1.{resource}{'.' + sub if sub else ''}.{verb}",
                  _resource_name(group, resource, sub))
        for group, resource, sub, verb in ROUTES
    ]  # fmt: skip


def entries_stagegate_ignores() -> list[dict[str, Any]]:
    env = "environments.kuberik.com/v1alpha1/namespaces/team-a/environments"
    kuberik = "kuberik.com/v1alpha1/namespaces/team-a"
    rollouts = f"{kuberik}/rollouts"
    return [
        log_entry("io.k8s.environments.kuberik.com.v1alpha1.environments.delete", f"{env}/prod"),
        log_entry("io.k8s.environments.kuberik.com.v1alpha1.environments.get", f"{env}/prod"),
        log_entry("io.k8s.environments.kuberik.com.v1alpha1.environments.list", env),
        log_entry("io.k8s.environments.kuberik.com.v1alpha1.environments.status.patch", f"{env}/prod/status"),
        log_entry("io.k8s.kuberik.com.v1alpha1.rollouts.patch", f"{rollouts}/myapp"),
        log_entry("io.k8s.kuberik.com.v1alpha1.rollouts.status.get", f"{rollouts}/myapp/status"),
        log_entry("io.k8s.kuberik.com.v1alpha1.rolloutgates.create", f"{kuberik}/rolloutgates/g"),
        log_entry("io.k8s.core.v1.configmaps.update", "core/v1/namespaces/team-a/configmaps/environments"),
        log_entry("io.k8s.core.v1.nodes.status.patch", "core/v1/nodes/gke-pool-1/status"),
        log_entry("io.k8s.coordination.v1.leases.update", "coordination.k8s.io/v1/namespaces/kube/leases/x"),
    ]  # fmt: skip


# --- tests ---------------------------------------------------------------------------------------------


def test_gke_audit_logs_is_optional_and_off_by_default(gcp: Config) -> None:
    variable = gcp.variables["gke_audit_logs"]
    assert variable["type"] in {"bool", "${bool}"}
    assert variable["default"] is False
    resources = list(gke_resources(gcp))
    assert {kind for kind, _, _ in resources} >= {
        "google_logging_project_sink",
        "google_pubsub_topic",
        "google_pubsub_topic_iam_member",
    }
    for kind, name, body in resources:
        assert body.get("count") == ENABLED, f"{kind}.{name} is made without gke_audit_logs"
    # The push subscriptions of the topic are entries of local.push_subscriptions (main.tf).
    subscribing = {
        key
        for key, (_, body) in push_subscriptions(gcp).items()
        if reference(body["topic"]) in {SUBSCRIBED_TOPIC, TOPIC}
    }
    assert subscribing == GKE_SUBSCRIPTIONS
    for key in sorted(subscribing):
        enabled, _ = push_subscriptions(gcp)[key]
        assert enabled == "${var.gke_audit_logs}", f"push subscription {key} is made without gke_audit_logs"
    for name in ("gke_audit_topic", "gke_audit_sink_writer_identity"):
        assert gcp.outputs[name]["value"].startswith("${var.gke_audit_logs ?"), name


def test_the_sink_sends_its_entries_to_the_gke_topic_as_its_own_identity(gcp: Config) -> None:
    sink = gcp.resource("google_logging_project_sink", "gke_audit")
    assert sink["destination"] == f"pubsub.googleapis.com/${{{TOPIC}}}"
    assert sink["unique_writer_identity"] is True
    assert reference(sink["project"]) == "local.gke_project"
    assert gcp.locals["gke_project"] == "${coalesce(var.gke_cluster_project, var.project_id)}"
    (lifecycle,) = sink["lifecycle"]
    (precondition,) = lifecycle["precondition"]
    assert "var.gke_cluster_name" in precondition["condition"]
    assert "var.gke_cluster_location" in precondition["condition"]


def test_the_sink_filter_names_the_cluster_the_audit_logs_and_the_resources(gcp: Config) -> None:
    text = gcp.locals["gke_audit_filter"]
    assert 'resource.type="k8s_cluster"' in text
    assert 'resource.labels.cluster_name="${var.gke_cluster_name}"' in text
    assert 'protoPayload.serviceName="k8s.io"' in text
    assert "logs/cloudaudit.googleapis.com%2Factivity" in text
    assert "logs/cloudaudit.googleapis.com%2Fdata_access" in text, "status writes are DATA_WRITE entries"
    assert "protoPayload.resourceName" in text
    assert "environments[.]kuberik[.]com/" in text
    assert "/rollouts/[^/]+/status$" in text


def test_the_filter_lets_through_every_entry_stagegate_acts_on(gcp: Config) -> None:
    passes = sink_filter(gcp)
    entries = entries_stagegate_acts_on()
    assert len(entries) == len(ROUTES)
    for entry in entries:
        assert routed(entry), entry["protoPayload"]["resourceName"]
        assert passes(entry), f"the sink drops {entry['protoPayload']['methodName']}"


def test_the_filter_holds_back_what_stagegate_ignores(gcp: Config) -> None:
    passes = sink_filter(gcp)
    for entry in entries_stagegate_ignores():
        assert not routed(entry), entry["protoPayload"]["resourceName"]
        assert not passes(entry), f"the sink lets through {entry['protoPayload']['methodName']}"


def test_the_filter_holds_back_other_clusters_and_other_logs(gcp: Config) -> None:
    passes = sink_filter(gcp)
    [entry] = entries_stagegate_acts_on()[:1]
    assert passes(entry)
    for change in (
        lambda e: e["resource"]["labels"].update(cluster_name="other"),
        lambda e: e["resource"]["labels"].update(location="us-central1"),
        lambda e: e["resource"].update(type="gke_cluster"),
        lambda e: e.update(logName=e["logName"].replace("%2Factivity", "%2Fsystem_event")),
        lambda e: e["protoPayload"].update(serviceName="container.googleapis.com"),
    ):
        other = log_entry(entry["protoPayload"]["methodName"], entry["protoPayload"]["resourceName"])
        change(other)
        assert not passes(other), other


def test_failed_requests_pass_the_filter_and_are_ignored_by_the_code(gcp: Config) -> None:
    """The filter does not read the status (an OK status has no code in the entry): the code does."""
    passes = sink_filter(gcp)
    entry = entries_stagegate_acts_on()[0]
    failed = log_entry(entry["protoPayload"]["methodName"], entry["protoPayload"]["resourceName"], 7)
    assert passes(failed)
    assert not routed(failed)


def test_the_filter_reader_refuses_what_it_cannot_read() -> None:
    with pytest.raises(AssertionError, match="not a comparison"):
        logging_filter("severity>=ERROR")
    with pytest.raises(AssertionError, match="not a plain string"):
        logging_filter("resource.type=k8s_cluster")


def test_only_the_sink_writer_identity_may_publish_to_the_gke_topic(gcp: Config) -> None:
    publishers = [
        body
        for body in gcp.of_type("google_pubsub_topic_iam_member").values()
        if reference(body["topic"]) == TOPIC
    ]
    assert [(reference(b["member"]), b["role"]) for b in publishers] == [
        (f"{SINK}.writer_identity", "roles/pubsub.publisher")
    ]
    # The writer identity is granted nothing else.
    for kind, named in gcp.resources.items():
        for name, body in named.items():
            if "writer_identity" in str(body) and kind != "google_logging_project_sink":
                assert (kind, name) == ("google_pubsub_topic_iam_member", "gke_audit_sink_publisher")


@pytest.mark.parametrize(
    ("subscription", "target", "existing"),
    [
        ("gke_audit_k8s_audit", "k8s_audit", "audit"),
        ("gke_audit_reporter", "reporter", "reports"),
    ],
)
def test_each_subscription_pushes_to_its_function_with_retries_and_dead_letters(
    gcp: Config, subscription: str, target: str, existing: str
) -> None:
    assert GCP_FUNCTIONS[target] == "cloud_event"
    _, body = push_subscriptions(gcp)[subscription]
    _, other = push_subscriptions(gcp)[existing]
    identity = f'google_service_account.delivery["{target}"]'
    dead_letter = f'google_pubsub_topic.dead_letter["{target}"]'
    assert reference(body["topic"]) == SUBSCRIBED_TOPIC
    assert body["enable_message_ordering"] is False, "a sink publishes without ordering keys"
    assert "filter" not in body, "a subscription filter sees only attributes, which name no object"

    function = gcp_functions(gcp)[target]
    uri = f"google_cloudfunctions2_function.{function['__address__']}.service_config[0].uri"
    push = _one(body["push_config"], "push_config")
    assert push["push_endpoint"] == f"${{{uri}}}/${{{SUBSCRIBED_TOPIC}}}"
    oidc = _one(push["oidc_token"], "oidc_token")
    assert reference(oidc["service_account_email"]) == f"{identity}.email"
    assert reference(oidc["audience"]) == uri
    assert body["depends_on"] == ["${google_cloud_run_v2_service_iam_member.delivery_invoker}"]

    retry = _one(body["retry_policy"], "retry_policy")
    assert 10 <= seconds(retry["minimum_backoff"], gcp) < seconds(retry["maximum_backoff"], gcp) <= 600
    letters = _one(body["dead_letter_policy"], "dead_letter_policy")
    assert reference(letters["dead_letter_topic"]) == f"{dead_letter}.id"
    assert 5 <= number(letters["max_delivery_attempts"], gcp) <= 100
    # As the existing subscription to the same function delivers.
    for block in ("dead_letter_policy", "retry_policy"):
        assert body[block] == other[block], block
    assert _one(push["oidc_token"], "oidc_token") == _one(
        _one(other["push_config"], "push_config")["oidc_token"], "oidc_token"
    )
    agent = "${local.pubsub_service_agent}"
    assert any(
        reference(b["subscription"]) == f'google_pubsub_subscription.push["{subscription}"].id'
        and b["member"] == agent
        and b["role"] == "roles/pubsub.subscriber"
        for b in dead_letter_subscribers(gcp)
    ), "the Pub/Sub service agent cannot acknowledge dead-lettered messages"
    assert any(
        reference(b["topic"]) == f"{dead_letter}.id"
        and b["member"] == agent
        and b["role"] == "roles/pubsub.publisher"
        for b in gcp.instances("google_pubsub_topic_iam_member").values()
    ), "the Pub/Sub service agent cannot publish to the dead-letter topic"


def test_the_reporter_is_not_delivered_a_report_twice_while_it_runs(gcp: Config) -> None:
    _, body = push_subscriptions(gcp)["gke_audit_reporter"]
    service = _one(gcp_functions(gcp)["reporter"]["service_config"], "service_config")
    assert number(service["timeout_seconds"], gcp) <= number(body["ack_deadline_seconds"], gcp) <= 600


def test_no_new_identity_may_invoke_the_functions(gcp: Config) -> None:
    """The subscriptions use the existing delivery identities: each function keeps one invoker."""
    for kind, _, _ in gke_resources(gcp):
        assert kind not in {"google_cloud_run_v2_service_iam_member", "google_service_account"}
