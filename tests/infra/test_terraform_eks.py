"""The EKS path of `infra/aws` (`eks.tf` and the `k8s_audit_cloudwatch` entry of `local.lambdas`),
cross-checked against the code, as `test_terraform.py` does for the rest (terraform is not run).

The subscription filter's pattern is evaluated here by a small evaluator of the CloudWatch Logs JSON
filter pattern syntax it uses (`{ ... }` with `$.a.b` selectors, `=` on strings, `<`/`>=` on numbers,
`&&`, `||` and parentheses; CloudWatch Logs user guide, "Using filter patterns to match terms in JSON log
events" and "Filter pattern syntax for metric filters, subscription filters, filter log events, and Live
Tail": https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/FilterAndPatternSyntax.html). It refuses
anything else, and `&&` mixed with `||` without parentheses, so the pattern never depends on a
precedence rule. Against it: every (group, resource, subresource, verb) that `shared.audit.ROUTES` acts
on passes, and the captured audit events pass exactly when `route()` acts on them.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any

import pytest

from shared.audit import ROUTES, AuditEvent, Routed, route
from tests.infra.terraform import REPO, Body, Config, load, reference
from tests.payloads import HERE as PAYLOADS
from tests.payloads import load_payload

FUNCTION = "k8s_audit_cloudwatch"
HANDLER = f"functions.aws_lambda.main.{FUNCTION}"
LAMBDA_MAIN = REPO / "functions" / "aws_lambda" / "main.py"
SETTINGS = REPO / "stagegate" / "settings.py"
AWS_SECRETS = REPO / "stagegate" / "aws_secrets.py"
ENABLED = "${local.eks_enabled ? 1 : 0}"
FILTER_PATTERN_MAX = 1024  # PutSubscriptionFilter: filterPattern is at most 1024 characters


@pytest.fixture(scope="module")
def aws() -> Config:
    return load("aws")


def function(config: Config) -> tuple[str, Body]:
    """The `aws_lambda_function` instance whose handler is `k8s_audit_cloudwatch`, and its address."""
    found = [
        (address, body)
        for address, body in config.instances("aws_lambda_function").items()
        if body["handler"] == HANDLER
    ]
    assert len(found) == 1, f"expected one Lambda function with handler {HANDLER}, got {len(found)}"
    return found[0]


def only(blocks: object, what: str) -> Body:
    assert isinstance(blocks, list), f"{what} is not a block"
    assert len(blocks) == 1, f"expected one {what}, got {len(blocks)}"
    block = blocks[0]
    assert isinstance(block, dict)
    return block


def string_constants(*paths: Any) -> set[str]:
    return {
        node.value
        for path in paths
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


# --- the function ----------------------------------------------------------------------------------------


def test_the_handler_is_a_module_level_function_taking_event_and_context(aws: Config) -> None:
    address, body = function(aws)
    assert address == f'this["{FUNCTION}"]', "declared like the other functions (local.lambdas)"
    assert body["runtime"] == "python3.11"
    tree = ast.parse(LAMBDA_MAIN.read_text(encoding="utf-8"))
    defined = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert FUNCTION in defined, f"functions/aws_lambda/main.py defines no {FUNCTION}"
    arguments = defined[FUNCTION].args
    assert len(arguments.posonlyargs) + len(arguments.args) == 2, "a Lambda handler takes (event, context)"


def test_the_function_gets_its_settings_secrets_by_arn_and_the_reports_queue(aws: Config) -> None:
    _, body = function(aws)
    variables = dict(only(body["environment"], "environment")["variables"])
    read = string_constants(SETTINGS, AWS_SECRETS)
    assert set(variables) <= read, f"the code reads no {sorted(set(variables) - read)}"
    assert {"KUBECONFIG", "GITHUB_TOKEN"}.isdisjoint(variables), "secrets are named by ARN only"
    assert (
        reference(variables["KUBECONFIG_SECRET_ARN"])
        == 'data.aws_secretsmanager_secret.this["KUBECONFIG"].arn'
    )
    assert variables["REPORT_TRANSPORT"] == "sqs"
    assert reference(variables["REPORT_SQS_QUEUE_URL"]) == "aws_sqs_queue.reports.id"
    assert reference(variables["AUDIT_MAX_EVENTS"]) == "tostring(var.audit_max_events)"
    assert body["layers"] == ["${aws_lambda_layer_version.dependencies.arn}"]


def test_the_function_may_send_to_the_reports_queue_through_the_report_producer_policy(aws: Config) -> None:
    documents = aws.data_instances("aws_iam_policy_document")
    for address, document in documents.items():
        if not address.startswith("lambda["):
            continue
        sources = document.get("source_policy_documents")
        producer = re.search(
            r"(true|false) \? \['\$\{data\.aws_iam_policy_document\.report_producer\.json\}'\] : \[\]",
            str(sources),
        )
        assert producer, f"{address}: source_policy_documents lacks the produces_reports condition"
        expected = "true" if address == f'lambda["{FUNCTION}"]' else "false"
        assert producer.group(1) == expected, f"{address}: report producer should be {expected}"
    (statement,) = documents["report_producer"]["statement"]
    assert statement["actions"] == ["sqs:SendMessage"]
    assert statement["resources"] == ["${aws_sqs_queue.reports.arn}"]


def test_a_failed_delivery_is_retried_by_lambda_within_its_bounds(aws: Config) -> None:
    (config,) = aws.of_type("aws_lambda_function_event_invoke_config").values()
    assert reference(config["function_name"]) == f'aws_lambda_function.this["{FUNCTION}"].function_name'
    assert 1 <= config["maximum_retry_attempts"] <= 2, "Lambda retries an asynchronous invocation 0-2 times"
    age = reference(config["maximum_event_age_in_seconds"])
    assert age
    default = aws.variables[age.removeprefix("var.")]["default"]
    assert 60 <= default <= 21600


# --- the subscription: optional, from the cluster's log group only --------------------------------------


def test_nothing_subscribes_without_a_cluster_name(aws: Config) -> None:
    assert aws.variables["eks_cluster_name"]["default"] is None
    assert aws.locals["eks_enabled"] == "${var.eks_cluster_name != null}"
    for kind, name in (
        ("aws_lambda_permission", "eks_audit_logs"),
        ("aws_cloudwatch_log_subscription_filter", "eks_audit"),
    ):
        assert aws.resource(kind, name)["count"] == ENABLED, f"{kind}.{name}"
    for kind, name in (("aws_cloudwatch_log_group", "eks"), ("aws_eks_cluster", "audited")):
        assert aws.datum(kind, name)["count"] == ENABLED, f"data.{kind}.{name}"


def test_the_log_group_is_the_clusters_control_plane_group(aws: Config) -> None:
    assert aws.datum("aws_cloudwatch_log_group", "eks")["name"] == "/aws/eks/${var.eks_cluster_name}/cluster"
    assert aws.datum("aws_eks_cluster", "audited")["name"] == "${var.eks_cluster_name}"


def test_only_cloudwatch_logs_for_that_log_group_may_invoke_the_function(aws: Config) -> None:
    permission = aws.resource("aws_lambda_permission", "eks_audit_logs")
    assert permission["action"] == "lambda:InvokeFunction"
    assert permission["principal"] == "logs.amazonaws.com"
    assert permission["source_arn"] == "${data.aws_cloudwatch_log_group.eks[0].arn}:*"
    assert reference(permission["function_name"]) == f'aws_lambda_function.this["{FUNCTION}"].function_name'
    others = [
        p
        for name, p in aws.of_type("aws_lambda_permission").items()
        if name != "eks_audit_logs" and FUNCTION in str(p["function_name"])
    ]
    assert not others, "no other principal may invoke the EKS function"


def test_the_subscription_filter_delivers_the_group_to_the_function(aws: Config) -> None:
    subscription = aws.resource("aws_cloudwatch_log_subscription_filter", "eks_audit")
    assert reference(subscription["log_group_name"]) == "data.aws_cloudwatch_log_group.eks[0].name"
    assert reference(subscription["destination_arn"]) == f'aws_lambda_function.this["{FUNCTION}"].arn'
    assert reference(subscription["filter_pattern"]) == "local.eks_audit_filter_pattern"
    assert "role_arn" not in subscription, "a Lambda destination takes its permission, not a role"
    assert subscription["depends_on"] == ["${aws_lambda_permission.eks_audit_logs}"]
    (precondition,) = only(subscription["lifecycle"], "lifecycle")["precondition"]
    assert precondition["condition"] == (
        '${contains(data.aws_eks_cluster.audited[0].enabled_cluster_log_types, "audit")}'
    )


# --- the filter pattern ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    path: tuple[str, ...]
    op: str
    value: str | float

    def holds(self, event: Any) -> bool:
        for key in self.path:
            if not isinstance(event, dict) or key not in event:
                return False  # a property that is not there matches nothing
            event = event[key]
        if isinstance(self.value, str):
            return isinstance(event, str) and (event == self.value) == (self.op == "=")
        if isinstance(event, bool) or not isinstance(event, int | float):
            return False
        return {
            "=": event == self.value,
            "!=": event != self.value,
            "<": event < self.value,
            "<=": event <= self.value,
            ">": event > self.value,
            ">=": event >= self.value,
        }[self.op]


@dataclass(frozen=True)
class Compound:
    op: str  # "&&" or "||"
    terms: tuple[Any, ...]

    def holds(self, event: Any) -> bool:
        results = (term.holds(event) for term in self.terms)
        return all(results) if self.op == "&&" else any(results)


_TOKEN = re.compile(
    r"\s*(?:(?P<selector>\$(?:\.[A-Za-z_][A-Za-z0-9_]*)+)|(?P<string>\"[^\"*\\]*\")"
    r"|(?P<number>-?\d+(?:\.\d+)?)|(?P<op>&&|\|\||<=|>=|!=|=|<|>)|(?P<paren>[()]))"
)


def parse_json_pattern(pattern: str) -> Compound | Comparison:
    """The subset of the JSON filter pattern syntax the deployed pattern may use, as a tree."""
    assert pattern.startswith("{"), "a JSON filter pattern is { ... }"
    assert pattern.endswith("}"), "a JSON filter pattern is { ... }"
    tokens: list[tuple[str, str]] = []
    text, at = pattern[1:-1].rstrip(), 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        assert match, f"unsupported syntax at {text[at:]!r}"
        assert match.end() > at, f"unsupported syntax at {text[at:]!r}"
        kind = match.lastgroup
        assert kind
        tokens.append((kind, match.group(kind)))
        at = match.end()
    position = 0

    def peek() -> tuple[str, str] | None:
        return tokens[position] if position < len(tokens) else None

    def take(kind: str) -> str:
        nonlocal position
        token = peek()
        assert token, f"expected {kind} at the end"
        assert token[0] == kind, f"expected {kind} at token {position}, got {token}"
        position += 1
        return token[1]

    def expression() -> Compound | Comparison:
        terms = [term()]
        operators: set[str] = set()
        while (token := peek()) and token[0] == "op" and token[1] in {"&&", "||"}:
            operators.add(take("op"))
            terms.append(term())
        assert len(operators) <= 1, "&& and || mixed without parentheses: precedence would decide"
        return terms[0] if len(terms) == 1 else Compound(operators.pop(), tuple(terms))

    def term() -> Compound | Comparison:
        token = peek()
        if token == ("paren", "("):
            take("paren")
            inner = expression()
            assert take("paren") == ")"
            return inner
        path = tuple(take("selector").split(".")[1:])
        op = take("op")
        assert op not in {"&&", "||"}
        kind = peek()
        if kind and kind[0] == "string":
            assert op in {"=", "!="}, "strings are compared with = or != only"
            return Comparison(path, op, take("string")[1:-1])
        return Comparison(path, op, float(take("number")))

    tree = expression()
    assert position == len(tokens), f"trailing tokens: {tokens[position:]}"
    return tree


@pytest.fixture(scope="module")
def pattern(aws: Config) -> Compound | Comparison:
    text = aws.locals["eks_audit_filter_pattern"]
    assert isinstance(text, str)
    assert len(text) <= FILTER_PATTERN_MAX
    return parse_json_pattern(text)


def test_the_evaluator_refuses_what_it_cannot_read() -> None:
    for bad in (
        '{ $.a = "x" && $.b = "y" || $.c = "z" }',  # precedence
        '{ $.a = "x*" }',  # wildcards
        "{ $.a IS NULL }",
        '$.a = "x"',
    ):
        with pytest.raises(AssertionError):
            parse_json_pattern(bad)
    tree = parse_json_pattern('{ ($.a.b = "x") && ($.n >= 200 || $.m < 3) }')
    assert tree.holds({"a": {"b": "x"}, "n": 201})
    assert not tree.holds({"a": {"b": "x"}, "n": "201"})
    assert not tree.holds({"n": 201})


def event_for(
    group: str, resource: str, subresource: str | None, verb: str, code: int = 200
) -> dict[str, Any]:
    """A completed audit event of that kind, shaped like the captured ones."""
    (raw,) = load_payload("audit/environment-create.json")["items"]
    raw.update(verb=verb, level="Metadata")
    raw.pop("requestObject")
    raw.pop("responseObject")
    raw["objectRef"] = {"resource": resource, "namespace": "ns", "name": "obj", "apiGroup": group}
    if subresource:
        raw["objectRef"]["subresource"] = subresource
    raw["responseStatus"] = {"metadata": {}, "code": code}
    return raw


def test_every_change_the_function_acts_on_passes_the_filter(pattern: Compound | Comparison) -> None:
    assert ROUTES
    for (group, resource, subresource, verb), name in ROUTES.items():
        raw = event_for(group, resource, subresource, verb, 201 if verb == "create" else 200)
        assert isinstance(route(AuditEvent.from_raw(raw)), Routed), name
        assert pattern.holds(raw), f"the filter drops {group}/{resource}/{subresource} {verb}"


@pytest.mark.parametrize(
    ("group", "resource", "subresource", "verb", "code", "stage"),
    [
        ("environments.kuberik.com", "environments", None, "get", 200, "ResponseComplete"),
        ("environments.kuberik.com", "environments", None, "list", 200, "ResponseComplete"),
        ("environments.kuberik.com", "environments", None, "delete", 200, "ResponseComplete"),
        ("environments.kuberik.com", "environments", None, "create", 409, "ResponseComplete"),
        ("environments.kuberik.com", "environments", None, "create", 201, "RequestReceived"),
        ("kuberik.com", "rollouts", None, "update", 200, "ResponseComplete"),
        ("kuberik.com", "rollouts", "status", "patch", 409, "ResponseComplete"),
        ("kuberik.com", "rolloutgates", None, "patch", 200, "ResponseComplete"),
        ("", "configmaps", None, "create", 201, "ResponseComplete"),
        ("coordination.k8s.io", "leases", None, "update", 200, "ResponseComplete"),
        ("other.example.com", "environments", None, "create", 201, "ResponseComplete"),
    ],
)
def test_what_the_function_ignores_never_invokes_it(
    pattern: Compound | Comparison,
    group: str,
    resource: str,
    subresource: str | None,
    verb: str,
    code: int,
    stage: str,
) -> None:
    raw = event_for(group, resource, subresource, verb, code)
    raw["stage"] = stage
    assert not isinstance(route(AuditEvent.from_raw(raw)), Routed)
    assert not pattern.holds(raw)


def test_the_captured_audit_events_pass_exactly_when_the_function_acts_on_them(
    pattern: Compound | Comparison,
) -> None:
    seen = 0
    for path in sorted((PAYLOADS / "audit").glob("*.json")):
        for raw in load_payload(f"audit/{path.name}")["items"]:
            seen += 1
            acted = isinstance(route(AuditEvent.from_raw(raw)), Routed)
            assert pattern.holds(raw) == acted, f"{path.name}: {raw['verb']} {raw['objectRef']}"
    assert seen >= 5
