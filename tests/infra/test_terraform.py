"""The Terraform in `infra/gcp` and `infra/aws`, cross-checked against the code it deploys.

terraform is not run here (nor installed): every `.tf` file is parsed with python-hcl2 and the code
with `ast` (never imported: the entry modules read their environment at import). A renamed entry
point, handler, environment variable or EventBridge constant fails here instead of in a deploy, and
so does a broader grant than each function needs. The reporter's transport is checked the same way:
ordered, retried with backoff, dead-lettered (Pub/Sub) or FIFO with a redrive policy (SQS), and only
the functions that hand Rollout changes over may publish or send to it. The GCP and AWS functions are
checked with both values of `github_credentials` (a token, or the GitHub App's credentials), as
terraform would compute the locals (`tests.infra.terraform.evaluate`), and the AWS plan's preconditions
with the variables that must pass and fail them (`tests.infra.terraform.holds`).
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest

from tests.infra.terraform import (
    REPO,
    Body,
    Config,
    eventbridge_pattern,
    holds,
    instantiate,
    jsonencoded,
    load,
    reference,
    resolve,
)

BRIDGE = REPO / "stagegate" / "bridge.py"
SETTINGS = REPO / "stagegate" / "settings.py"
AWS_SECRETS = REPO / "stagegate" / "aws_secrets.py"
LAMBDA_MAIN = REPO / "functions" / "aws_lambda" / "main.py"
REPORTER_MAIN = REPO / "functions" / "reporter" / "main.py"
LOCAL_PACKAGES = ("functions", "shared", "stagegate")

# Entry point -> the functions-framework decorator it must carry (HTTP targets are called over HTTP
# by the apiserver, GitHub, Cloud Scheduler; k8s_audit receives Pub/Sub messages as CloudEvents).
GCP_FUNCTIONS = {
    "k8s_audit_http": "http",
    "k8s_audit": "cloud_event",
    "github_webhook": "http",
    "resync_http": "http",
    "audit_bridge": "http",
    "reporter": "cloud_event",
    "github_protection_rule": "http",
}
LAMBDA_HANDLERS = {
    "k8s_audit_eventbridge": "functions.aws_lambda.main.k8s_audit_eventbridge",
    "k8s_audit_cloudwatch": "functions.aws_lambda.main.k8s_audit_cloudwatch",
    "github_webhook": "functions.aws_lambda.main.github_webhook",
    "reporter_sqs": "functions.aws_lambda.main.reporter_sqs",
    "github_protection_rule": "functions.aws_lambda.main.github_protection_rule",
}
# The Lambda functions GitHub calls: each on a public function URL.
LAMBDA_PUBLIC = {"github_webhook", "github_protection_rule"}
# The functions that hand Rollout status events to the reporter (REPORT_TRANSPORT), and the GCP one
# that consumes them. On AWS both producers run outside Terraform (outputs `bridge_environment` /
# `report_environment` and the `report_producer` policy).
REPORT_PRODUCERS = {"k8s_audit_http", "audit_bridge"}
# The Lambda function that hands Rollout status events to the reports queue itself (EKS, eks.tf).
LAMBDA_REPORT_PRODUCERS = {"k8s_audit_cloudwatch"}

# What each function cannot work without. In the cloud there is no in-cluster service account, so
# every function that talks to Kubernetes needs KUBECONFIG; the GitHub credentials (GCP_CREDENTIALS)
# come on top for the functions of GCP_READS_GITHUB.
GCP_REQUIRED = {
    "k8s_audit_http": {"AUDIT_WEBHOOK_TOKEN", "KUBECONFIG", "REPORT_TRANSPORT", "REPORT_PUBSUB_TOPIC"},
    "k8s_audit": {"KUBECONFIG"},
    "github_webhook": {"GITHUB_WEBHOOK_SECRET", "KUBECONFIG", "PROTECTION_RULES"},
    "resync_http": {"RESYNC_AUTH", "KUBECONFIG", "PROTECTION_RULES"},
    "audit_bridge": {
        "AUDIT_WEBHOOK_TOKEN",
        "BRIDGE_TRANSPORT",
        "BRIDGE_PUBSUB_TOPIC",
        "REPORT_TRANSPORT",
        "REPORT_PUBSUB_TOPIC",
    },
    "reporter": {"KUBECONFIG", "REPORTER_DEADLINE_SECONDS"},
    "github_protection_rule": {"GITHUB_WEBHOOK_SECRET", "PROTECTION_RULES"},
}
GCP_READS_GITHUB = {"k8s_audit", "github_webhook", "resync_http", "reporter", "github_protection_rule"}
# The secrets of each value of var.github_credentials: a token, or the GitHub App's.
GCP_CREDENTIALS = {
    "token": {"GITHUB_TOKEN"},
    "app": {"GITHUB_APP_ID", "GITHUB_APP_PRIVATE_KEY", "GITHUB_APP_INSTALLATION_ID"},
}
# The functions that answer the GitHub Actions jobs held by the App's protection rule (PROTECTION_RULES).
PROTECTED = {"github_webhook", "resync_http", "github_protection_rule"}
# HTTP targets the platform authenticates (Cloud Run IAM) instead of the function: not public.
GCP_PLATFORM_AUTHENTICATED = {"resync_http"}
# On Lambda every secret, the kubeconfig included, is named by ARN and read at cold start. The GitHub
# credentials (LAMBDA_CREDENTIALS) come on top for every function (all of them read GitHub).
LAMBDA_REQUIRED = {
    "k8s_audit_eventbridge": {"KUBECONFIG_SECRET_ARN"},
    "k8s_audit_cloudwatch": {"KUBECONFIG_SECRET_ARN", "REPORT_TRANSPORT", "REPORT_SQS_QUEUE_URL"},
    "github_webhook": {"GITHUB_WEBHOOK_SECRET_ARN", "KUBECONFIG_SECRET_ARN", "PROTECTION_RULES"},
    "reporter_sqs": {"KUBECONFIG_SECRET_ARN", "REPORTER_DEADLINE_SECONDS"},
    # KUBECONFIG only because functions/aws_lambda/main.py makes its Kubernetes client at import.
    "github_protection_rule": {"GITHUB_WEBHOOK_SECRET_ARN", "KUBECONFIG_SECRET_ARN", "PROTECTION_RULES"},
}
# What each value of var.github_credentials gives a Lambda function: the token's secret, or the GitHub
# App's ids (plain: not secret) and its private key's secret.
LAMBDA_CREDENTIALS = {
    "token": {"GITHUB_TOKEN_SECRET_ARN"},
    "app": {"GITHUB_APP_ID", "GITHUB_APP_INSTALLATION_ID", "GITHUB_APP_PRIVATE_KEY_SECRET_ARN"},
}
# The secrets looked up in Secrets Manager with each value of var.github_credentials.
LAMBDA_SECRETS = {
    "token": {"GITHUB_TOKEN", "GITHUB_WEBHOOK_SECRET", "KUBECONFIG"},
    "app": {"GITHUB_APP_PRIVATE_KEY", "GITHUB_WEBHOOK_SECRET", "KUBECONFIG"},
}
# Variables for a complete GitHub App (github_credentials = "app").
AWS_APP = {"github_credentials": "app", "github_app_id": "12345", "github_app_installation_id": "678"}
SENSITIVE = {
    "AUDIT_WEBHOOK_TOKEN",
    "GITHUB_WEBHOOK_SECRET",
    "GITHUB_TOKEN",
    "GITHUB_APP_PRIVATE_KEY",
    "RESYNC_TOKEN",
}
GITHUB_CREDENTIALS = {
    "GITHUB_TOKEN",
    "GITHUB_APP_ID",
    "GITHUB_APP_PRIVATE_KEY",
    "GITHUB_APP_PRIVATE_KEY_FILE",
    "GITHUB_APP_INSTALLATION_ID",
}
# Build-time variables of Google's buildpacks (not read by the code).
GCP_BUILD_VARIABLES = {"GOOGLE_FUNCTION_SOURCE"}
FORBIDDEN_GCP_ROLES = {"roles/owner", "roles/editor"}


# --- reading the code ----------------------------------------------------------------------------------


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _string(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_environment(node: ast.AST) -> bool:
    """`env`, `environ` or `os.environ`: what the code reads variables from."""
    if isinstance(node, ast.Name):
        return node.id in {"env", "environ"}
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def env_names_read(path: Path) -> set[str]:
    """Variable names a module reads: `env.get("X")`, `os.environ["X"]`, `os.getenv("X")`,
    `_positive_int(env, "X", ...)` / `_url(env, "X", ...)` and the like."""
    names: set[str] = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            reads_environment = isinstance(func, ast.Attribute) and (
                func.attr == "getenv" or (func.attr in {"get", "pop"} and _is_environment(func.value))
            )
            if reads_environment:
                name = _string(node.args[0])
            elif len(node.args) >= 2 and _is_environment(node.args[0]):
                name = _string(node.args[1])
            else:
                name = None
            if name:
                names.add(name)
        elif isinstance(node, ast.Subscript) and _is_environment(node.value):
            name = _string(node.slice)
            if name:
                names.add(name)
    return names


def code_modules() -> list[Path]:
    """The deployed modules that may read the environment: the entry points and the shell (`stagegate/`,
    which holds the settings, the bridge, the AWS loader and the report transports)."""
    return sorted((REPO / "functions").glob("*/*.py")) + sorted((REPO / "stagegate").glob("*.py"))


def code_env_names() -> set[str]:
    """Every variable the deployed code reads."""
    names: set[str] = set()
    for path in code_modules():
        names |= env_names_read(path)
    return names


def values_compared(variable: str) -> set[str]:
    """The strings the code compares a setting with: `settings.<variable lowered> == "x"` (or `in (...)`),
    the same for a plain name, wherever in functions/ and stagegate/."""
    field = variable.lower()

    def names_it(node: ast.expr) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == field) or (
            isinstance(node, ast.Name) and node.id == field
        )

    found: set[str] = set()
    for path in code_modules():
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                if any(names_it(operand) for operand in operands):
                    for operand in operands:
                        items = (
                            operand.elts if isinstance(operand, ast.Tuple | ast.List | ast.Set) else [operand]
                        )
                        found |= {v for v in map(_string, items) if v is not None}
    return found


def assert_code_knows(variable: str, value: str) -> None:
    """The code reads `variable` and acts on `value` (a transport it knows)."""
    if variable not in code_env_names():
        pytest.fail(f"no module of functions/ or stagegate/ reads {variable} yet")
    known = values_compared(variable)
    assert value in known, f"{variable}={value!r}: the code only knows {sorted(known)}"


_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def number(value: object, config: Config) -> int:
    """A numeric argument: a literal, or arithmetic over `var.*` (their defaults) and `local.*`, as
    terraform would compute it with the default variables."""
    if isinstance(value, bool):
        raise AssertionError(f"not a number: {value!r}")
    if isinstance(value, int):
        return value
    expression = reference(value)
    assert expression, f"not a number or a single expression: {value!r}"

    def evaluate(node: ast.expr) -> int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            return int(_ARITHMETIC[type(node.op)](evaluate(node.left), evaluate(node.right)))
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "tostring" and len(node.args) == 1:
            return evaluate(node.args[0])
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "var":
                return number(config.variables[node.attr]["default"], config)
            if node.value.id == "local":
                return number(config.locals[node.attr], config)
        raise AssertionError(f"cannot evaluate {ast.unparse(node)} in {value!r}")

    return evaluate(ast.parse(expression, mode="eval").body)


def seconds(duration: object, config: Config) -> int:
    """A Pub/Sub duration (`"10s"`, or `var.X` whose default is one) in seconds."""
    expression = reference(duration)
    if expression and expression.startswith("var."):
        duration = config.variables[expression.removeprefix("var.")]["default"]
    match = re.fullmatch(r"(\d+)s", str(duration))
    assert match, f"not a duration in seconds: {duration!r}"
    return int(match.group(1))


def _decorator_kind(decorator: ast.expr) -> str:
    node = decorator.func if isinstance(decorator, ast.Call) else decorator
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def module_functions(path: Path) -> dict[str, ast.FunctionDef]:
    """Module-level `def`s of a file."""
    return {node.name: node for node in _tree(path).body if isinstance(node, ast.FunctionDef)}


def decorated_targets(path: Path) -> dict[str, set[str]]:
    """Module-level functions with their decorators' names (`http`, `cloud_event`)."""
    return {
        name: {_decorator_kind(d) for d in node.decorator_list}
        for name, node in module_functions(path).items()
        if node.decorator_list
    }


def bridge_constants() -> dict[str, str]:
    """The module-level string constants of stagegate/bridge.py."""
    if not BRIDGE.exists():
        pytest.fail(
            "stagegate/bridge.py does not exist yet: EVENTBRIDGE_SOURCE and EVENTBRIDGE_DETAIL_TYPE, "
            "which the EventBridge rule in infra/aws must match, are read from it"
        )
    constants = {}
    for node in _tree(BRIDGE).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = _string(node.value)
            if value is not None:
                constants[node.targets[0].id] = value
    for name in ("EVENTBRIDGE_SOURCE", "EVENTBRIDGE_DETAIL_TYPE"):
        if name not in constants:
            pytest.fail(f"stagegate/bridge.py defines no string constant {name}")
    return constants


def secret_references() -> dict[str, str]:
    """What stagegate/aws_secrets.py resolves: `X_SECRET_ARN` -> the variable `X` it sets (the
    `("NAME_SECRET_ARN", "NAME", ...)` tuples it lists)."""
    found = {}
    for node in ast.walk(_tree(AWS_SECRETS)):
        if isinstance(node, ast.Tuple) and len(node.elts) >= 2:
            reference_name, target = _string(node.elts[0]), _string(node.elts[1])
            if reference_name and target and reference_name.endswith("_SECRET_ARN"):
                found[reference_name] = target
    return found


def _string_constants(path: Path) -> set[str]:
    return {
        node.value
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


def _module_file(dotted: str) -> Path | None:
    base = REPO.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def local_closure(entry: Path) -> set[Path]:
    """`entry` and every repository module it imports, transitively (lazy imports included)."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        relative = path.relative_to(REPO)
        for depth in range(1, len(relative.parts)):  # the packages the module lives in
            init = REPO.joinpath(*relative.parts[:depth], "__init__.py")
            if init.is_file():
                todo.append(init)
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            for name in names:
                if name.split(".")[0] in LOCAL_PACKAGES:
                    found = _module_file(name)
                    if found:
                        todo.append(found)
    return seen


# --- reading the Terraform -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gcp() -> Config:
    return load("gcp")


@pytest.fixture(scope="module")
def aws() -> Config:
    return load("aws")


@pytest.fixture(scope="module", params=sorted(GCP_CREDENTIALS))
def gcp_with(request: pytest.FixtureRequest) -> tuple[str, Config]:
    """The GCP configuration with each value of `github_credentials`, and that value."""
    return request.param, load("gcp", github_credentials=request.param)


@pytest.fixture(scope="module", params=sorted(LAMBDA_CREDENTIALS))
def aws_with(request: pytest.FixtureRequest) -> tuple[str, Config]:
    """The AWS configuration with each value of `github_credentials` (the App's complete), and that value."""
    if request.param == "app":
        return request.param, load("aws", **AWS_APP)
    return request.param, load("aws", github_credentials=request.param)


def _one(blocks: object, what: str) -> Body:
    assert isinstance(blocks, list), f"{what} is not a block"
    assert len(blocks) == 1, f"expected one {what} block, got {len(blocks)}"
    block = blocks[0]
    assert isinstance(block, dict)
    return block


def _dynamic(body: Body, name: str) -> list[Body]:
    """The `content` of every `dynamic "<name>"` block of a body."""
    contents: list[Body] = []
    for block in body.get("dynamic", []):
        if name in block:
            contents.extend(block[name].get("content", []))
    return contents


def gcp_functions(config: Config) -> dict[str, Body]:
    """Function resources by entry point (one per instance of a `for_each` resource)."""
    functions = {}
    for address, body in config.instances("google_cloudfunctions2_function").items():
        entry = _one(body.get("build_config"), f"{address}.build_config")["entry_point"]
        assert entry not in functions, f"two functions with entry point {entry}"
        functions[entry] = body | {"__address__": address}
    return functions


# `for_each` of google_pubsub_subscription.push: the enabled entries of local.push_subscriptions, each
# merged over the delivery settings of its function (local.push_deliveries).
PUSH_FOR_EACH = (
    "${{for name , subscription in local.push_subscriptions : "
    "name => merge(local.push_deliveries[subscription.function], subscription) if subscription.enabled}}"
)
_PARENTHESIZED = re.compile(r"\$\{\((.+?)\)\}")


def push_subscriptions(config: Config) -> dict[str, tuple[object, Body]]:
    """google_pubsub_subscription.push by key, as terraform expands its `for_each`: each entry of
    `local.push_subscriptions` merged over `local.push_deliveries[function]`, with whether it is made
    (its `enabled`: true, or the expression that decides) and its body. `${(x)}` reads `${x}`."""
    template = dict(config.resource("google_pubsub_subscription", "push"))
    assert template.pop("for_each") == PUSH_FOR_EACH, "google_pubsub_subscription.push: unexpected for_each"
    deliveries = config.locals["push_deliveries"]
    found = {}
    for key, subscription in config.locals["push_subscriptions"].items():
        assert subscription["function"] in deliveries, f"{key}: no delivery to {subscription['function']}"
        value = deliveries[subscription["function"]] | subscription
        body = instantiate(template, {"each": {"key": key, "value": value}})
        for push in body.get("push_config", []):
            push["push_endpoint"] = _PARENTHESIZED.sub(r"${\1}", push["push_endpoint"])
        found[key] = (subscription["enabled"], body)
    return found


def dead_letter_subscribers(config: Config) -> list[Body]:
    """google_pubsub_subscription_iam_member.dead_letter_subscriber, one per push subscription (its
    `for_each` is google_pubsub_subscription.push), each naming its subscription by address; and every
    other google_pubsub_subscription_iam_member as it is."""
    found = []
    for name, body in config.instances("google_pubsub_subscription_iam_member").items():
        if name != "dead_letter_subscriber":
            found.append(body)
            continue
        assert reference(body["for_each"]) == "google_pubsub_subscription.push", name
        assert reference(body["subscription"]) == "each.value.id", name
        template = {k: v for k, v in body.items() if k != "for_each"}
        for key in push_subscriptions(config):
            address = f'google_pubsub_subscription.push["{key}"]'
            found.append(template | {"subscription": f"${{{address}.id}}"})
    return found


def gcp_environment(body: Body) -> tuple[dict[str, Any], dict[str, Body]]:
    """A function's plain variables and its secret variables (by name)."""
    service = _one(body.get("service_config"), "service_config")
    plain = dict(service.get("environment_variables", {}))
    secrets = {s["key"]: s for s in service.get("secret_environment_variables", [])}
    assert not set(plain) & set(secrets), f"set both plainly and as secrets: {set(plain) & set(secrets)}"
    return plain, secrets


def lambda_functions(config: Config) -> dict[str, Body]:
    """Lambda resources by handler function name (one per instance of a `for_each` resource)."""
    functions = {}
    for address, body in config.instances("aws_lambda_function").items():
        name = str(body["handler"]).rsplit(".", 1)[-1]
        assert name not in functions, f"two Lambda functions with handler {name}"
        functions[name] = body | {"__address__": address}
    return functions


def lambda_environment(body: Body) -> dict[str, Any]:
    return dict(_one(body.get("environment"), "environment")["variables"])


def _walk(value: object) -> Iterator[object]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _statements(document: Body) -> list[Body]:
    return list(document.get("statement", [])) + _dynamic(document, "statement")


def _fileset_patterns(expression: str) -> list[str]:
    patterns = re.findall(r'fileset\(local\.repo_root, "([^"]+)"\)', expression)
    assert patterns, f"no fileset(local.repo_root, ...) in {expression}"
    return patterns


def _expand_braces(pattern: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", pattern)
    if not match:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [p for choice in match.group(1).split(",") for p in _expand_braces(head + choice + tail)]


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def packaged(config: Config, relative: str) -> bool:
    """Whether `local.source_files` (fileset patterns of the repository root) includes a file."""
    expression = str(config.locals["source_files"])
    return any(
        _glob_regex(expanded).fullmatch(relative)
        for pattern in _fileset_patterns(expression)
        for expanded in _expand_braces(pattern)
    )


# --- parsing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cloud", ["gcp", "aws"])
def test_every_tf_file_parses_and_declares_something(cloud: str) -> None:
    config = load(cloud)
    assert config.resources, f"infra/{cloud} declares no resources"
    assert {p.name for p in config.files} >= {"main.tf", "variables.tf", "outputs.tf"}


def test_the_env_reader_finds_what_settings_reads() -> None:
    names = env_names_read(SETTINGS)
    assert {"AUDIT_WEBHOOK_TOKEN", "KUBECONFIG", "GITHUB_TOKEN", "GITHUB_API_URL", "RESYNC_TOKEN"} <= names
    assert {"AUDIT_DEADLINE_SECONDS", "AUDIT_MAX_BODY_BYTES", "KUBE_CONFLICT_RETRIES"} <= names  # _positive_*
    assert {"STAGEGATE_NAMESPACES", "GITHUB_WEBHOOK_SECRET"} <= names


# --- entry points and handlers ---------------------------------------------------------------------------


def test_gcp_deploys_every_target_once(gcp: Config) -> None:
    assert set(gcp_functions(gcp)) == set(GCP_FUNCTIONS)


@pytest.mark.parametrize("entry_point", sorted(GCP_FUNCTIONS))
def test_gcp_entry_point_is_a_decorated_function_of_its_source(gcp: Config, entry_point: str) -> None:
    body = gcp_functions(gcp)[entry_point]
    build = _one(body["build_config"], "build_config")
    assert build["runtime"] == "python311"
    source = build.get("environment_variables", {}).get("GOOGLE_FUNCTION_SOURCE")
    assert source, f"{entry_point}: build_config sets no GOOGLE_FUNCTION_SOURCE"
    path = REPO / source
    assert path.is_file(), f"{entry_point}: GOOGLE_FUNCTION_SOURCE {source} does not exist"
    targets = decorated_targets(path)
    assert entry_point in targets, f"{source} has no decorated module-level function {entry_point}"
    expected = GCP_FUNCTIONS[entry_point]
    assert expected in targets[entry_point], (
        f"{source}:{entry_point} is not @functions_framework.{expected} (has {sorted(targets[entry_point])})"
    )
    assert packaged(gcp, source), f"{source} is not in the source archive"
    assert set(build["environment_variables"]) <= GCP_BUILD_VARIABLES


def test_gcp_event_triggers_deliver_to_cloudevent_targets(gcp: Config) -> None:
    for entry_point, body in gcp_functions(gcp).items():
        triggers = list(body.get("event_trigger", [])) + _dynamic(body, "event_trigger")
        if triggers:
            assert GCP_FUNCTIONS[entry_point] == "cloud_event", f"{entry_point} has an event trigger"


def test_lambda_deploys_every_handler_once(aws: Config) -> None:
    assert {name: body["handler"] for name, body in lambda_functions(aws).items()} == LAMBDA_HANDLERS


@pytest.mark.parametrize("name", sorted(LAMBDA_HANDLERS))
def test_lambda_handler_is_a_function_of_its_module(aws: Config, name: str) -> None:
    body = lambda_functions(aws)[name]
    assert body["runtime"] == "python3.11"
    module, _, function = str(body["handler"]).rpartition(".")
    path = _module_file(module)
    assert path is not None, f"handler module {module} does not exist"
    assert path.suffix == ".py", f"handler module {module} is a package, not a file"
    defined = module_functions(path)
    assert function in defined, f"{path.relative_to(REPO)} defines no module-level function {function}"
    arguments = defined[function].args
    assert len(arguments.posonlyargs) + len(arguments.args) == 2, f"{function} must take (event, context)"
    assert packaged(aws, str(path.relative_to(REPO)))


@pytest.mark.parametrize("cloud", ["gcp", "aws"])
def test_the_archive_holds_every_module_the_entry_points_import(cloud: str) -> None:
    config = load(cloud)
    if cloud == "gcp":
        entries = [
            REPO
            / _one(body["build_config"], "build_config")["environment_variables"]["GOOGLE_FUNCTION_SOURCE"]
            for body in gcp_functions(config).values()
        ]
    else:
        entries = [
            _module_file(str(b["handler"]).rpartition(".")[0]) for b in lambda_functions(config).values()
        ]
    needed = set().union(*(local_closure(entry) for entry in entries if entry))
    assert len(needed) > len(entries), "the import walk found nothing"
    missing = sorted(
        str(p.relative_to(REPO)) for p in needed if not packaged(config, str(p.relative_to(REPO)))
    )
    assert not missing, f"imported but not in the {cloud} archive: {missing}"


def test_gcp_build_installs_the_lock_and_the_project(gcp: Config) -> None:
    archive = gcp.datum("archive_file", "source")
    extra = {s["filename"]: s["content"] for s in archive.get("source", [])}
    assert "requirements.txt" in extra, "Cloud Run functions' Python build needs requirements.txt"
    requirements = extra["requirements.txt"]
    assert "requirements-gcp.lock" in requirements, "Cloud Run functions carry Google Cloud's SDK only"
    assert requirements.rstrip().endswith("\n."), "requirements.txt must install the project itself (.)"
    assert "pyproject.toml" in str(gcp.locals["source_files"])
    lock = (REPO / "requirements-gcp.lock").read_text(encoding="utf-8")
    assert re.search(r"^functions-framework==", lock, re.MULTILINE), "the lock pins no functions-framework"
    assert re.search(r"^google-cloud-pubsub==", lock, re.MULTILINE)
    assert not re.search(r"^boto3==", lock, re.MULTILINE), "a Google Cloud deploy carries no AWS SDK"


# --- environment variables -------------------------------------------------------------------------------


@pytest.mark.parametrize("entry_point", sorted(GCP_FUNCTIONS))
def test_gcp_sets_only_variables_the_code_reads_and_all_it_requires(
    gcp_with: tuple[str, Config], entry_point: str
) -> None:
    credentials, gcp = gcp_with
    plain, secrets = gcp_environment(gcp_functions(gcp)[entry_point])
    unknown = (set(plain) | set(secrets)) - code_env_names()
    assert not unknown, f"{entry_point}: the code reads no {sorted(unknown)}"
    required = GCP_REQUIRED[entry_point] | (
        GCP_CREDENTIALS[credentials] if entry_point in GCP_READS_GITHUB else set()
    )
    missing = required - set(plain) - set(secrets)
    assert not missing, f"{entry_point}: {sorted(missing)} not set"
    assert not SENSITIVE & set(plain), f"{entry_point}: {sorted(SENSITIVE & set(plain))} must be secrets"
    given = GITHUB_CREDENTIALS & (set(plain) | set(secrets))
    assert given <= GCP_CREDENTIALS[credentials], (
        f"{entry_point}: {sorted(given)} with {credentials} credentials"
    )


@pytest.mark.parametrize("name", sorted(LAMBDA_HANDLERS))
def test_lambda_sets_only_variables_the_code_reads_and_all_it_requires(
    aws_with: tuple[str, Config], name: str
) -> None:
    credentials, aws = aws_with
    variables = lambda_environment(lambda_functions(aws)[name])
    unknown = set(variables) - code_env_names()
    assert not unknown, f"{name}: the code reads no {sorted(unknown)}"
    missing = (LAMBDA_REQUIRED[name] | LAMBDA_CREDENTIALS[credentials]) - set(variables)
    assert not missing, f"{name}: {sorted(missing)} not set"
    # The token or the App, never both (settings.py stops every function at start with both).
    given = set().union(*LAMBDA_CREDENTIALS.values()) & set(variables)
    assert given == LAMBDA_CREDENTIALS[credentials], f"{name}: {sorted(given)} with {credentials} credentials"
    if credentials == "app":  # the ids are not secret: the variables' values, in the configuration
        assert reference(variables["GITHUB_APP_ID"]) == "var.github_app_id", name
        assert reference(variables["GITHUB_APP_INSTALLATION_ID"]) == "var.github_app_installation_id", name
    held = (SENSITIVE | {"KUBECONFIG"}) & set(variables)
    assert not held, f"{name}: {sorted(held)} in the function's configuration; name the secret's ARN instead"
    loads = secret_references()
    for key, value in variables.items():
        if key.endswith("_SECRET_ARN"):
            assert key in loads, f"stagegate/aws_secrets.py does not read {key}"
            assert reference(value) == f'data.aws_secretsmanager_secret.this["{loads[key]}"].arn', (
                f"{name}: {key} is not the ARN of the {loads[key]} secret: {value!r}"
            )


@pytest.mark.parametrize("entry_point", sorted(GCP_FUNCTIONS))
def test_gcp_secrets_are_the_ones_named_and_granted(gcp_with: tuple[str, Config], entry_point: str) -> None:
    _, gcp = gcp_with
    body = gcp_functions(gcp)[entry_point]
    plain, secrets = gcp_environment(body)
    for key, secret in secrets.items():
        assert reference(secret["secret"]) == f'google_secret_manager_secret.this["{key}"].secret_id'
        assert secret["version"] == "latest"
    service = _one(body["service_config"], "service_config")
    volumes = service.get("secret_volumes", [])
    used = set(secrets)
    if "KUBECONFIG" in plain:
        volume = _one(volumes, f"{entry_point}: secret_volumes")
        assert reference(volume["secret"]) == 'google_secret_manager_secret.this["KUBECONFIG"].secret_id'
        path = _one(volume["versions"], "versions")["path"]
        mounted = f"{resolve(volume['mount_path'], gcp)}/{resolve(path, gcp)}"
        assert resolve(plain["KUBECONFIG"], gcp) == mounted, (
            "KUBECONFIG does not point at the mounted kubeconfig"
        )
        used.add("KUBECONFIG")
    else:
        assert not volumes
    assert set(gcp.locals["function_secrets"][entry_point]) == used, (
        f"local.function_secrets[{entry_point}] (what its service account may read) differs from what it uses"
    )
    assert (
        reference(service["service_account_email"])
        == f'google_service_account.function["{entry_point}"].email'
    )


def test_gcp_every_secret_is_used_and_access_is_granted_per_function(gcp_with: tuple[str, Config]) -> None:
    credentials, gcp = gcp_with
    # One secret for each a function reads, none other: the token's or the App's, never both.
    assert gcp.resource("google_secret_manager_secret", "this")["for_each"] == (
        "${toset(flatten(values(local.function_secrets)))}"
    )
    declared = {
        address.removeprefix('this["').removesuffix('"]')
        for address in gcp.instances("google_secret_manager_secret")
    }
    used = set().union(*map(set, gcp.locals["function_secrets"].values()))
    assert declared == used
    assert GITHUB_CREDENTIALS & declared == GCP_CREDENTIALS[credentials]
    assert set(gcp.locals["function_secrets"]) == set(GCP_FUNCTIONS)
    grants = gcp.of_type("google_secret_manager_secret_iam_member")
    assert list(grants) == ["access"]
    grant = grants["access"]
    assert reference(grant["for_each"]) == "local.secret_grants"
    assert grant["role"] == "roles/secretmanager.secretAccessor"
    assert reference(grant["secret_id"]) == "google_secret_manager_secret.this[each.value.secret].id"
    assert reference(grant["member"]) == "google_service_account.function[each.value.function].member"


# --- GCP: the audit topic, publishing and consuming ----------------------------------------------------


def test_gcp_bridge_publishes_to_the_topic_k8s_audit_consumes(gcp: Config) -> None:
    plain, _ = gcp_environment(gcp_functions(gcp)["audit_bridge"])
    assert plain["BRIDGE_TRANSPORT"] == "pubsub"
    bridge_constants()  # fails with a clear message while stagegate/bridge.py is missing
    assert plain["BRIDGE_TRANSPORT"] in _string_constants(BRIDGE), (
        "stagegate/bridge.py knows no such transport"
    )
    assert reference(plain["BRIDGE_PUBSUB_TOPIC"]) == "google_pubsub_topic.audit.id"

    enabled, subscription = push_subscriptions(gcp)["audit"]
    assert enabled == '${var.k8s_audit_delivery == "push_subscription"}'
    assert reference(subscription["topic"]) == "google_pubsub_topic.audit.id"
    assert subscription["enable_message_ordering"] is True
    push = _one(subscription["push_config"], "push_config")
    k8s_audit = gcp_functions(gcp)["k8s_audit"]["__address__"]
    assert push["push_endpoint"] == (
        f"${{google_cloudfunctions2_function.{k8s_audit}.service_config[0].uri}}/${{google_pubsub_topic.audit.id}}"
    )
    oidc = _one(push["oidc_token"], "oidc_token")
    assert reference(oidc["service_account_email"]) == 'google_service_account.delivery["k8s_audit"].email'
    dead_letter = _one(subscription["dead_letter_policy"], "dead_letter_policy")
    assert reference(dead_letter["dead_letter_topic"]) == 'google_pubsub_topic.dead_letter["k8s_audit"].id'
    assert dead_letter["max_delivery_attempts"]
    retry = _one(subscription["retry_policy"], "retry_policy")
    assert retry["minimum_backoff"]
    assert retry["maximum_backoff"]
    kept = gcp.instances("google_pubsub_subscription")['dead_letter["k8s_audit"]']
    assert reference(kept["topic"]) == 'google_pubsub_topic.dead_letter["k8s_audit"].id', (
        "dead letters would be lost"
    )

    (trigger,) = _dynamic(gcp_functions(gcp)["k8s_audit"], "event_trigger")
    assert reference(trigger["pubsub_topic"]) == "google_pubsub_topic.audit.id"
    assert trigger["event_type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert trigger["retry_policy"] == "RETRY_POLICY_RETRY"


def test_gcp_only_the_bridge_and_the_webhooks_hand_off_may_publish_to_the_audit_topic(gcp: Config) -> None:
    publishers = [
        body
        for body in gcp.instances("google_pubsub_topic_iam_member").values()
        if reference(body["topic"]) == "google_pubsub_topic.audit.id"
    ]
    assert sorted(reference(b["member"]) or "" for b in publishers) == [
        'google_service_account.function["audit_bridge"].member',
        'google_service_account.function["github_webhook"].member',
    ]
    assert {b["role"] for b in publishers} == {"roles/pubsub.publisher"}


def test_gcp_github_webhook_hands_unfinished_work_to_the_topic_k8s_audit_consumes(gcp: Config) -> None:
    plain, _ = gcp_environment(gcp_functions(gcp)["github_webhook"])
    assert plain["BRIDGE_TRANSPORT"] == "pubsub"
    assert reference(plain["BRIDGE_PUBSUB_TOPIC"]) == "google_pubsub_topic.audit.id"
    assert "BRIDGE_TRANSPORT" in env_names_read(SETTINGS)


def test_gcp_public_invocation_is_only_for_the_http_targets(gcp: Config) -> None:
    public = gcp.resource("google_cloud_run_v2_service_iam_member", "public")
    assert public["member"] == "allUsers"
    assert public["role"] == "roles/run.invoker"
    http_targets = {name for name, kind in GCP_FUNCTIONS.items() if kind == "http"}
    assert set(public["for_each"]) == http_targets - GCP_PLATFORM_AUTHENTICATED
    for name, service in public["for_each"].items():
        address = gcp_functions(gcp)[name]["__address__"]
        assert reference(service) == f"google_cloudfunctions2_function.{address}.service_config[0].service"
    for kind, named in gcp.resources.items():
        for address, body in named.items():
            if (kind, address) != ("google_cloud_run_v2_service_iam_member", "public"):
                for value in _walk(body):
                    if isinstance(value, str):
                        assert value not in {"allUsers", "allAuthenticatedUsers"}, (
                            f"{kind}.{address} is public"
                        )
    k8s_audit = _one(gcp_functions(gcp)["k8s_audit"]["service_config"], "service_config")
    assert k8s_audit["ingress_settings"] == "ALLOW_INTERNAL_ONLY"


def test_gcp_scheduler_calls_resync_with_its_oidc_identity_every_ten_minutes(gcp: Config) -> None:
    job = gcp.resource("google_cloud_scheduler_job", "resync")
    assert gcp.variables["resync_schedule"]["default"] == "*/10 * * * *"
    assert reference(job["schedule"]) == "var.resync_schedule"
    target = _one(job["http_target"], "http_target")
    resync_http = gcp_functions(gcp)["resync_http"]["__address__"]
    uri = f"google_cloudfunctions2_function.{resync_http}.service_config[0].uri"
    assert reference(target["uri"]) == uri
    assert "Authorization" not in target.get("headers", {}), "a static token in the job's headers"
    oidc = _one(target["oidc_token"], "oidc_token")
    assert reference(oidc["service_account_email"]) == "google_service_account.resync_scheduler.email"
    assert reference(oidc["audience"]) == uri


def test_gcp_resync_is_invocable_by_the_scheduler_only_and_trusts_that(gcp: Config) -> None:
    resync_http = gcp_functions(gcp)["resync_http"]
    service = f"google_cloudfunctions2_function.{resync_http['__address__']}.service_config[0].service"
    invokers = [
        body
        for body in gcp.instances("google_cloud_run_v2_service_iam_member").values()
        if reference(body["name"]) == service or body["name"] == f"${{{service}}}"
    ]
    assert [reference(b["member"]) for b in invokers] == ["google_service_account.resync_scheduler.member"]
    assert [b["role"] for b in invokers] == ["roles/run.invoker"]
    assert _one(resync_http["service_config"], "service_config")["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    plain, secrets = gcp_environment(resync_http)
    assert plain.get("RESYNC_AUTH") == "platform"
    assert "platform" in _string_constants(SETTINGS), "stagegate/settings.py knows no RESYNC_AUTH=platform"
    assert "RESYNC_TOKEN" not in set(plain) | set(secrets), "RESYNC_AUTH=platform refuses a RESYNC_TOKEN"
    # Nothing generates or stores a resync token any more.
    for kind, named in gcp.resources.items():
        assert kind != "random_password", f"{kind}: no generated secrets"
        for address, body in named.items():
            for value in _walk(body):
                assert not (isinstance(value, str) and "RESYNC_TOKEN" in value), f"{kind}.{address}"


def test_gcp_k8s_audit_http_gets_no_github_credentials(gcp_with: tuple[str, Config]) -> None:
    """In the apiserver's request path a Rollout change must not cost a GitHub read (README): no
    credentials there, so such changes are ignored and recomputed by k8s_audit and resync."""
    credentials, gcp = gcp_with
    plain, secrets = gcp_environment(gcp_functions(gcp)["k8s_audit_http"])
    given = GITHUB_CREDENTIALS & (set(plain) | set(secrets))
    assert not given, f"k8s_audit_http is given {sorted(given)}"
    assert not GITHUB_CREDENTIALS & set(gcp.locals["function_secrets"]["k8s_audit_http"])
    for name in sorted(GCP_READS_GITHUB):
        _, others = gcp_environment(gcp_functions(gcp)[name])
        assert GCP_CREDENTIALS[credentials] <= set(others), f"{name} needs GitHub credentials"
    assert {
        name for name in GCP_FUNCTIONS if GITHUB_CREDENTIALS & set(gcp.locals["function_secrets"][name])
    } == (GCP_READS_GITHUB)


# --- GCP: the GitHub App's deployment protection rule ---------------------------------------------------


def test_gcp_protection_rules_reach_the_functions_that_answer_held_jobs(gcp: Config) -> None:
    assert gcp.variables["protection_rules"]["default"] == ""
    for name in GCP_FUNCTIONS:
        plain, _ = gcp_environment(gcp_functions(gcp)[name])
        if name in PROTECTED:
            assert reference(plain["PROTECTION_RULES"]) == "var.protection_rules", name
        else:
            assert "PROTECTION_RULES" not in plain, f"{name} answers no held job"
    # The rules need the App's credentials (a token stops the functions at start): the plan says so.
    [lifecycle] = gcp.resource("google_cloudfunctions2_function", "this")["lifecycle"]
    [precondition] = lifecycle["precondition"]
    assert precondition["condition"] == '${var.protection_rules == "" || var.github_credentials == "app"}'
    assert "protection_rules" in precondition["error_message"]
    [validation] = gcp.variables["github_credentials"]["validation"]
    # python-hcl2 drops the quotes of the strings in a function's arguments
    assert validation["condition"] == "${contains([token, app], var.github_credentials)}"
    assert gcp.variables["github_credentials"]["default"] == "token"


def test_gcp_github_protection_rule_is_public_reads_only_github_and_is_an_output(gcp: Config) -> None:
    function = gcp_functions(gcp)["github_protection_rule"]
    service = _one(function["service_config"], "service_config")
    assert service["ingress_settings"] == "ALLOW_ALL", "GitHub calls it"
    assert (
        "github_protection_rule"
        in gcp.resource("google_cloud_run_v2_service_iam_member", "public")["for_each"]
    )
    plain, secrets = gcp_environment(function)
    assert "KUBECONFIG" not in set(plain) | set(secrets), "it reads nothing from Kubernetes"
    assert not service.get("secret_volumes")
    assert gcp.outputs["github_protection_rule_url"]["value"] == (
        f"${{google_cloudfunctions2_function.{function['__address__']}.service_config[0].uri}}"
    )


def test_gcp_service_account_ids_fit_with_the_longest_prefix(gcp: Config) -> None:
    """An account id has at most 30 characters: <prefix>-<the function's name, or a shorter one>."""
    [validation] = gcp.variables["name_prefix"]["validation"]
    longest = 1 + int(re.findall(r"\{1,(\d+)\}", validation["condition"])[0])
    template = gcp.resource("google_service_account", "function")["account_id"]
    assert (
        template == '${var.name_prefix}-${lookup(local.account_ids, each.key, replace(each.key, "_", "-"))}'
    )
    assert set(gcp.locals["account_ids"]) <= set(gcp.locals["function_secrets"])
    for name in gcp.locals["function_secrets"]:
        suffix = gcp.locals["account_ids"].get(name, name.replace("_", "-"))
        assert longest + 1 + len(suffix) <= 30, f"{name}: account id {suffix!r} too long"


# --- GCP: the reports topic, from the audit functions to the reporter ------------------------------------


def test_gcp_producers_hand_rollout_changes_to_the_reports_topic(gcp: Config) -> None:
    for name in sorted(REPORT_PRODUCERS):
        plain, _ = gcp_environment(gcp_functions(gcp)[name])
        assert plain.get("REPORT_TRANSPORT") == "pubsub", f"{name} hands nothing to the reporter"
        assert reference(plain.get("REPORT_PUBSUB_TOPIC")) == "google_pubsub_topic.reports.id", name
    for name in set(GCP_FUNCTIONS) - REPORT_PRODUCERS:
        plain, _ = gcp_environment(gcp_functions(gcp)[name])
        assert not {"REPORT_TRANSPORT", "REPORT_PUBSUB_TOPIC"} & set(plain), f"{name} is no report producer"
    assert_code_knows("REPORT_TRANSPORT", "pubsub")


def test_gcp_only_the_producers_may_publish_to_the_reports_topic(gcp: Config) -> None:
    publishers = [
        body
        for body in gcp.instances("google_pubsub_topic_iam_member").values()
        if reference(body["topic"]) == "google_pubsub_topic.reports.id"
    ]
    assert sorted(reference(b["member"]) or "" for b in publishers) == sorted(
        f'google_service_account.function["{name}"].member' for name in REPORT_PRODUCERS
    )
    assert {b["role"] for b in publishers} == {"roles/pubsub.publisher"}
    # The function resources wait for that grant: the producers publish from their first request.
    depends = gcp.resource("google_cloudfunctions2_function", "this")["depends_on"]
    assert "${google_pubsub_topic_iam_member.report_publisher}" in depends


def test_gcp_reports_are_delivered_ordered_retried_with_backoff_and_dead_lettered(gcp: Config) -> None:
    reporter = gcp_functions(gcp)["reporter"]
    uri = f"google_cloudfunctions2_function.{reporter['__address__']}.service_config[0].uri"
    assert not list(reporter.get("event_trigger", [])) + _dynamic(reporter, "event_trigger"), (
        "the reporter is fed by the ordered push subscription only (an Eventarc trigger has no ordering)"
    )

    enabled, subscription = push_subscriptions(gcp)["reports"]
    assert enabled is True, "the reporter has no other delivery"
    assert reference(subscription["topic"]) == "google_pubsub_topic.reports.id"
    assert subscription["enable_message_ordering"] is True, "reports of one Rollout must arrive in order"
    push = _one(subscription["push_config"], "push_config")
    assert push["push_endpoint"] == f"${{{uri}}}/${{google_pubsub_topic.reports.id}}"
    oidc = _one(push["oidc_token"], "oidc_token")
    assert reference(oidc["service_account_email"]) == 'google_service_account.delivery["reporter"].email'
    assert reference(oidc["audience"]) == uri

    # A GitHub rate limit or outage is retried by Pub/Sub, with exponential backoff, never by sleeping.
    retry = _one(subscription["retry_policy"], "retry_policy")
    minimum, maximum = seconds(retry["minimum_backoff"], gcp), seconds(retry["maximum_backoff"], gcp)
    assert 10 <= minimum < maximum <= 600, (minimum, maximum)

    dead_letter = _one(subscription["dead_letter_policy"], "dead_letter_policy")
    assert reference(dead_letter["dead_letter_topic"]) == 'google_pubsub_topic.dead_letter["reporter"].id'
    assert 5 <= number(dead_letter["max_delivery_attempts"], gcp) <= 100
    kept = gcp.instances("google_pubsub_subscription")['dead_letter["reporter"]']
    assert reference(kept["topic"]) == 'google_pubsub_topic.dead_letter["reporter"].id', (
        "dead-lettered reports would be lost"
    )
    # Dead-lettering needs the Pub/Sub service agent on both ends.
    agent = "${local.pubsub_service_agent}"
    assert any(
        reference(b["topic"]) == 'google_pubsub_topic.dead_letter["reporter"].id'
        and b["member"] == agent
        and b["role"] == "roles/pubsub.publisher"
        for b in gcp.instances("google_pubsub_topic_iam_member").values()
    ), "the Pub/Sub service agent cannot publish to the reports dead-letter topic"
    assert any(
        reference(b["subscription"]) == 'google_pubsub_subscription.push["reports"].id'
        and b["member"] == agent
        and b["role"] == "roles/pubsub.subscriber"
        for b in dead_letter_subscribers(gcp)
    ), "the Pub/Sub service agent cannot acknowledge dead-lettered reports"

    # Pub/Sub waits for the push answer at least as long as the reporter may run, which is longer than
    # the report's own deadline: a running report is never delivered a second time.
    plain, _ = gcp_environment(reporter)
    service = _one(reporter["service_config"], "service_config")
    deadline = number(plain["REPORTER_DEADLINE_SECONDS"], gcp)
    timeout = number(service["timeout_seconds"], gcp)
    assert deadline < timeout <= number(subscription["ack_deadline_seconds"], gcp) <= 600
    assert number(plain["REPORT_LEASE_SECONDS"], gcp) > deadline, "the Lease would expire during a report"


def test_gcp_reporter_is_internal_and_invocable_by_its_delivery_identity_only(gcp: Config) -> None:
    reporter = gcp_functions(gcp)["reporter"]
    service = f"google_cloudfunctions2_function.{reporter['__address__']}.service_config[0].service"
    assert _one(reporter["service_config"], "service_config")["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    invokers = [
        body
        for body in gcp.instances("google_cloud_run_v2_service_iam_member").values()
        if reference(body["name"]) == service
    ]
    assert [(reference(b["member"]), b["role"]) for b in invokers] == [
        ('google_service_account.delivery["reporter"].member', "roles/run.invoker")
    ]
    token_creators = [
        body
        for body in gcp.instances("google_service_account_iam_member").values()
        if reference(body["service_account_id"]) == 'google_service_account.delivery["reporter"].name'
    ]
    assert [(b["role"], b["member"]) for b in token_creators] == [
        ("roles/iam.serviceAccountTokenCreator", "${local.pubsub_service_agent}")
    ]
    assert gcp.outputs["reports_topic"]["value"] == "${google_pubsub_topic.reports.id}"


def test_gcp_every_push_delivers_as_its_function_says(gcp: Config) -> None:
    """Each push subscription pushes to its function as that function's delivery identity, with its
    deadline, retries and dead-letter topic; each delivery has its invoker binding, token creator
    grant, dead-letter topic (kept in a subscription, publishable by the Pub/Sub service agent)."""
    deliveries = gcp.locals["push_deliveries"]
    assert set(deliveries) == {"k8s_audit", "reporter"}
    agent = "${local.pubsub_service_agent}"
    subscribers = {reference(b["subscription"]) for b in dead_letter_subscribers(gcp) if b["member"] == agent}
    subscriptions = push_subscriptions(gcp)
    for key, (_, body) in subscriptions.items():
        function = gcp.locals["push_subscriptions"][key]["function"]
        assert GCP_FUNCTIONS[function] == "cloud_event", f"{key} pushes to {function}"
        delivery = deliveries[function]
        address = gcp_functions(gcp)[function]["__address__"]
        uri = f"google_cloudfunctions2_function.{address}.service_config[0].uri"
        push = _one(body["push_config"], "push_config")
        assert push["push_endpoint"] == f"${{{uri}}}/{body['topic']}", key
        oidc = _one(push["oidc_token"], "oidc_token")
        assert (
            reference(oidc["service_account_email"]) == f'google_service_account.delivery["{function}"].email'
        )
        assert reference(oidc["audience"]) == uri, key
        assert body["ack_deadline_seconds"] == delivery["ack_deadline_seconds"], key
        letters = _one(body["dead_letter_policy"], "dead_letter_policy")
        assert reference(letters["dead_letter_topic"]) == f'google_pubsub_topic.dead_letter["{function}"].id'
        assert letters["max_delivery_attempts"] == delivery["max_delivery_attempts"], key
        retry = _one(body["retry_policy"], "retry_policy")
        assert (retry["minimum_backoff"], retry["maximum_backoff"]) == (
            delivery["minimum_backoff"],
            delivery["maximum_backoff"],
        ), key
        assert seconds(retry["minimum_backoff"], gcp) < seconds(retry["maximum_backoff"], gcp), key
        assert body["message_retention_duration"] == "604800s", key
        assert _one(body["expiration_policy"], "expiration_policy")["ttl"] == "", key
        assert body["depends_on"] == ["${google_cloud_run_v2_service_iam_member.delivery_invoker}"], key
        assert f'google_pubsub_subscription.push["{key}"].id' in subscribers, (
            f"{key}: the Pub/Sub service agent cannot acknowledge dead-lettered messages"
        )
    assert len(subscribers) == len(subscriptions)

    for function in deliveries:
        address = gcp_functions(gcp)[function]["__address__"]
        service = f"google_cloudfunctions2_function.{address}.service_config[0].service"
        identity = f'google_service_account.delivery["{function}"]'
        invoker = gcp.instances("google_cloud_run_v2_service_iam_member")[f'delivery_invoker["{function}"]']
        assert (reference(invoker["name"]), reference(invoker["member"]), invoker["role"]) == (
            service,
            f"{identity}.member",
            "roles/run.invoker",
        )
        creator = gcp.instances("google_service_account_iam_member")[f'pubsub_token_creator["{function}"]']
        assert (reference(creator["service_account_id"]), creator["member"], creator["role"]) == (
            f"{identity}.name",
            agent,
            "roles/iam.serviceAccountTokenCreator",
        )
        topic = f'google_pubsub_topic.dead_letter["{function}"].id'
        kept = gcp.instances("google_pubsub_subscription")[f'dead_letter["{function}"]']
        assert reference(kept["topic"]) == topic
        assert kept["message_retention_duration"] == "604800s"
        publisher = gcp.instances("google_pubsub_topic_iam_member")[f'dead_letter_publisher["{function}"]']
        assert (reference(publisher["topic"]), publisher["member"], publisher["role"]) == (
            topic,
            agent,
            "roles/pubsub.publisher",
        )


def _declared_addresses(config: Config) -> set[str]:
    """Every resource instance address the configuration declares (a `count` resource as `name[0]`)."""
    declared = set()
    for kind, named in config.resources.items():
        for address in config.instances(kind):
            declared.add(f"{kind}.{address}")
            if "count" in named.get(address, {}):
                declared.add(f"{kind}.{address}[0]")
    if "google_pubsub_subscription" not in config.resources:
        return declared
    # The two resources whose for_each is not a local: the push subscriptions and (for_each over them)
    # the Pub/Sub service agent's subscriber grant on each (checked by dead_letter_subscribers()).
    dead_letter_subscribers(config)
    for address in (
        "google_pubsub_subscription.push",
        "google_pubsub_subscription_iam_member.dead_letter_subscriber",
    ):
        declared.discard(address)
        declared |= {f'{address}["{key}"]' for key in push_subscriptions(config)}
    return declared


@pytest.mark.parametrize("cloud", ["gcp", "aws"])
def test_moved_blocks_lead_from_former_addresses_to_declared_instances(cloud: str) -> None:
    """terraform moves an existing deployment's resources instead of recreating them (moved.tf): each
    `to` must be declared, and no `from` may be (a move onto nothing, or off something still declared,
    would recreate or fail)."""
    config = load(cloud)
    moves = []
    for path in config.files:
        with path.open(encoding="utf-8") as handle:
            moves.extend(hcl2.load(handle).get("moved", []))
    assert moves, "no moved blocks"
    declared = _declared_addresses(config)
    sources = [reference(move["from"]) for move in moves]
    targets = [reference(move["to"]) for move in moves]
    assert len(set(sources)) == len(sources), "a former address moves twice"
    assert len(set(targets)) == len(targets), "two former addresses move to one instance"
    for source, target in zip(sources, targets, strict=True):
        assert target in declared, f"moved to {target}, which is not declared"
        assert source not in declared, f"moved from {source}, which is still declared"
    if cloud == "gcp":  # what the push subscriptions replaced: one former subscription and grant each
        assert {t for t in targets if t and t.startswith("google_pubsub_subscription.push[")} == {
            f'google_pubsub_subscription.push["{key}"]' for key in push_subscriptions(config)
        }
    else:  # github_webhook's function URL keeps its address, which GitHub's webhook is configured with
        assert 'aws_lambda_function_url.public["github_webhook"]' in targets
        # and its permissions their statement ids (a new id would replace them)
        assert config.locals["public_functions"]["github_webhook"] == "StagegateGitHubWebhook"
        assert config.resource("aws_lambda_permission", "public_url")["statement_id"] == "${each.value}Url"
        invoke = config.resource("aws_lambda_permission", "public_invoke_via_url")
        assert invoke["statement_id"] == "${each.value}InvokeViaUrl"


# --- AWS: bus, rule, queue, consumer ----------------------------------------------------------------------


def test_eventbridge_rule_matches_what_the_bridge_publishes() -> None:
    constants = bridge_constants()
    assert eventbridge_pattern() == {
        "source": [constants["EVENTBRIDGE_SOURCE"]],
        "detail-type": [constants["EVENTBRIDGE_DETAIL_TYPE"]],
    }


def test_eventbridge_rule_feeds_the_queue_k8s_audit_eventbridge_consumes(aws: Config) -> None:
    (rule_name,) = aws.of_type("aws_cloudwatch_event_rule")
    rule = aws.resource("aws_cloudwatch_event_rule", rule_name)
    assert reference(rule["event_bus_name"]) == "aws_cloudwatch_event_bus.audit.name"
    (target,) = aws.of_type("aws_cloudwatch_event_target").values()
    assert reference(target["rule"]) == f"aws_cloudwatch_event_rule.{rule_name}.name"
    assert reference(target["event_bus_name"]) == "aws_cloudwatch_event_bus.audit.name"
    assert reference(target["arn"]) == "aws_sqs_queue.audit.arn"

    redrive = jsonencoded(aws.resource("aws_sqs_queue", "audit")["redrive_policy"])
    assert reference(redrive["deadLetterTargetArn"]) == "aws_sqs_queue.audit_dead_letter.arn"
    assert redrive["maxReceiveCount"]

    (mapping,) = [
        m
        for m in aws.of_type("aws_lambda_event_source_mapping").values()
        if reference(m["event_source_arn"]) == "aws_sqs_queue.audit.arn"
    ]
    address = lambda_functions(aws)["k8s_audit_eventbridge"]["__address__"]
    assert reference(mapping["function_name"]) == f"aws_lambda_function.{address}.arn"
    assert mapping["function_response_types"] == ["ReportBatchItemFailures"]


def test_lambda_roles_are_least_privilege(aws_with: tuple[str, Config]) -> None:
    credentials, aws = aws_with

    def document_of(function: str) -> Body:
        body = lambda_functions(aws)[function]
        role = reference(body["role"])
        assert role, f"{function}: role is not a reference"
        assert role.startswith("aws_iam_role."), role
        assert role.endswith(".arn"), role
        role_name = role.split(".")[1]
        (policy,) = [
            p
            for p in aws.instances("aws_iam_role_policy").values()
            if reference(p["role"]) == f"aws_iam_role.{role_name}.id"
        ]
        doc = reference(policy["policy"]) or ""
        assert doc.startswith("data.aws_iam_policy_document."), doc
        return _policy_documents(aws)[doc.split(".")[2]]

    consumer = _statements(document_of("k8s_audit_eventbridge"))
    sqs = [s for s in consumer if any(a.startswith("sqs:") for a in s["actions"])]
    assert {a for s in sqs for a in s["actions"]} in (
        {"sqs:ReceiveMessage", "sqs:DeleteMessage"},
        {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"},
    )
    assert {r for s in sqs for r in s["resources"]} == {"${aws_sqs_queue.audit.arn}"}
    reporter = _statements(document_of("reporter_sqs"))
    sqs = [s for s in reporter if any(a.startswith("sqs:") for a in s["actions"])]
    assert {a for s in sqs for a in s["actions"]} in (
        {"sqs:ReceiveMessage", "sqs:DeleteMessage"},
        {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"},
    )
    assert {r for s in sqs for r in s["resources"]} == {"${aws_sqs_queue.reports.arn}"}
    webhook = _statements(document_of("github_webhook"))
    allowed = ("logs:", "kms:Decrypt", "secretsmanager:GetSecretValue", "events:PutEvents")
    assert not [a for s in webhook for a in s["actions"] if not a.startswith(allowed)]
    protection = _statements(document_of("github_protection_rule"))
    allowed = ("logs:", "kms:Decrypt", "secretsmanager:GetSecretValue")
    assert not [a for s in protection for a in s["actions"] if not a.startswith(allowed)]
    for statement in consumer + reporter + webhook + protection:
        for action in statement["actions"]:
            if action.startswith("logs:"):
                assert all("aws_cloudwatch_log_group." in r for r in statement["resources"])

    # Each function may read exactly the secrets it is told to read at start, nothing else.
    for function in LAMBDA_HANDLERS:
        statements = _statements(document_of(function))
        readable = {
            r for s in statements if "secretsmanager:GetSecretValue" in s["actions"] for r in s["resources"]
        }
        named = {
            value
            for key, value in lambda_environment(lambda_functions(aws)[function]).items()
            if key.endswith("_SECRET_ARN")
        }
        assert readable == named, f"{function} may read {sorted(readable)} but reads {sorted(named)}"
        # the GitHub credentials' secret among them: the token's or the App's private key's, never both
        github = {
            f'${{data.aws_secretsmanager_secret.this["{secret}"].arn}}'
            for secret in ("GITHUB_TOKEN", "GITHUB_APP_PRIVATE_KEY")
        }
        expected = "GITHUB_APP_PRIVATE_KEY" if credentials == "app" else "GITHUB_TOKEN"
        assert readable & github == {f'${{data.aws_secretsmanager_secret.this["{expected}"].arn}}'}, function
        for statement in statements:
            if "kms:Decrypt" in statement["actions"] and statement.get("sid") == "DecryptOwnSecrets":
                conditions = {c["variable"]: c["values"] for c in statement.get("condition", [])}
                assert conditions.get("kms:ViaService") == ["secretsmanager.${var.region}.amazonaws.com"]


# --- AWS: the reports FIFO queue, from the audit functions to reporter_sqs ------------------------------


def test_aws_reports_queue_is_fifo_with_a_fifo_dead_letter_queue(aws: Config) -> None:
    queue = aws.resource("aws_sqs_queue", "reports")
    dead = aws.resource("aws_sqs_queue", "reports_dead_letter")
    for name, body in (("reports", queue), ("reports_dead_letter", dead)):
        assert body.get("fifo_queue") is True, f"aws_sqs_queue.{name} is not FIFO"
        assert str(body["name"]).endswith(".fifo"), f"aws_sqs_queue.{name}: a FIFO queue's name ends in .fifo"
        assert body.get("sqs_managed_sse_enabled") is True or body.get("kms_master_key_id"), name
    # The producers set MessageGroupId; a deduplication id they need not: the queue derives it.
    assert queue.get("content_based_deduplication") is True

    redrive = jsonencoded(queue["redrive_policy"])
    assert reference(redrive["deadLetterTargetArn"]) == "aws_sqs_queue.reports_dead_letter.arn"
    assert number(redrive["maxReceiveCount"], aws) >= 2
    allow = jsonencoded(
        aws.resource("aws_sqs_queue_redrive_allow_policy", "reports_dead_letter")["redrive_allow_policy"]
    )
    assert allow["sourceQueueArns"] == ["${aws_sqs_queue.reports.arn}"]

    # A report still running is never handed to a second invocation: the visibility timeout is longer
    # than the reporter's Lambda timeout, which leaves every report of a batch (made one after the
    # other) its own deadline.
    reporter = lambda_functions(aws)["reporter_sqs"]
    deadline = number(lambda_environment(reporter)["REPORTER_DEADLINE_SECONDS"], aws)
    timeout = number(reporter["timeout"], aws)
    (mapping,) = [
        m
        for m in aws.of_type("aws_lambda_event_source_mapping").values()
        if reference(m["event_source_arn"]) == "aws_sqs_queue.reports.arn"
    ]
    assert number(mapping["batch_size"], aws) * deadline < timeout <= 900
    assert number(queue["visibility_timeout_seconds"], aws) > timeout
    assert number(lambda_environment(reporter)["REPORT_LEASE_SECONDS"], aws) > deadline


def test_aws_reporter_consumes_the_reports_queue_with_partial_batch_failures(aws: Config) -> None:
    (mapping,) = [
        m
        for m in aws.of_type("aws_lambda_event_source_mapping").values()
        if reference(m["event_source_arn"]) == "aws_sqs_queue.reports.arn"
    ]
    address = lambda_functions(aws)["reporter_sqs"]["__address__"]
    assert reference(mapping["function_name"]) == f"aws_lambda_function.{address}.arn"
    assert mapping["function_response_types"] == ["ReportBatchItemFailures"]
    assert 1 <= number(mapping["batch_size"], aws) <= 10, "a FIFO queue gives at most 10 per batch"
    assert "maximum_batching_window_in_seconds" not in mapping, "FIFO event sources take no batching window"


def test_aws_report_producers_may_send_to_the_reports_queue_only(aws: Config) -> None:
    (statement,) = _statements(aws.datum("aws_iam_policy_document", "report_producer"))
    assert statement["actions"] == ["sqs:SendMessage"]
    assert statement["resources"] == ["${aws_sqs_queue.reports.arn}"]
    assert reference(aws.resource("aws_iam_policy", "report_producer")["policy"]) == (
        "data.aws_iam_policy_document.report_producer.json"
    )
    # No identity of this configuration sends anywhere but through the report_producer document (the
    # producers run outside it, but for k8s_audit_cloudwatch, whose role includes it); only the audit
    # queues' resource policies let EventBridge send to them.
    for name, document in _policy_documents(aws).items():
        if name != "report_producer":
            for statement in _statements(document):
                if "sqs:SendMessage" in statement["actions"]:
                    principals = _one(statement.get("principals"), f"{name}: principals")
                    assert principals["identifiers"] == ["events.amazonaws.com"], name
                    assert "${aws_sqs_queue.reports" not in str(statement["resources"]), name
    outputs = {reference(o["value"]) for o in aws.outputs.values()}
    assert "aws_iam_policy.report_producer.arn" in outputs
    assert "aws_sqs_queue.reports.id" in outputs

    # What the producers are told to set: the transport and the queue, names and values the code knows.
    for output in ("bridge_environment", "report_environment"):
        environment = aws.outputs[output]["value"]
        assert environment["REPORT_TRANSPORT"] == "sqs", output
        assert reference(environment["REPORT_SQS_QUEUE_URL"]) == "aws_sqs_queue.reports.id", output
        unknown = set(environment) - code_env_names()
        assert not unknown, f"output {output}: the code reads no {sorted(unknown)}"
    assert_code_knows("REPORT_TRANSPORT", "sqs")
    for name, body in lambda_functions(aws).items():
        environment = lambda_environment(body)
        if name in LAMBDA_REPORT_PRODUCERS:
            assert environment["REPORT_TRANSPORT"] == "sqs", name
            assert reference(environment["REPORT_SQS_QUEUE_URL"]) == "aws_sqs_queue.reports.id", name
            continue
        assert not {"REPORT_TRANSPORT", "REPORT_SQS_QUEUE_URL"} & set(environment), (
            f"{name} is no report producer"
        )


def test_bridge_publisher_policy_is_put_events_on_the_bus_only(aws: Config) -> None:
    constants = bridge_constants()
    (statement,) = _statements(aws.datum("aws_iam_policy_document", "bridge_publisher"))
    assert statement["actions"] == ["events:PutEvents"]
    assert statement["resources"] == ["${aws_cloudwatch_event_bus.audit.arn}"]
    conditions = {c["variable"]: c["values"] for c in statement.get("condition", [])}
    assert conditions.get("events:source") == [constants["EVENTBRIDGE_SOURCE"]]
    assert conditions.get("events:detail-type") == [constants["EVENTBRIDGE_DETAIL_TYPE"]]
    assert reference(aws.resource("aws_iam_policy", "bridge_publisher")["policy"]) == (
        "data.aws_iam_policy_document.bridge_publisher.json"
    )
    outputs = {reference(o["value"]) for o in aws.outputs.values()}
    assert "aws_iam_policy.bridge_publisher.arn" in outputs
    assert "aws_cloudwatch_event_bus.audit.name" in outputs


def test_lambda_github_webhook_hands_unfinished_work_to_the_audit_bus_and_only_it_may(aws: Config) -> None:
    documents = aws.data_instances("aws_iam_policy_document")
    for address, document in documents.items():
        if not address.startswith("lambda["):
            continue
        handing = re.search(
            r"(true|false) \? \['\$\{data\.aws_iam_policy_document\.bridge_publisher\.json\}'\] : \[\]",
            str(document.get("source_policy_documents")),
        )
        assert handing, f"{address}: source_policy_documents lacks the hands_off_to_bus condition"
        expected = "true" if address == 'lambda["github_webhook"]' else "false"
        assert handing.group(1) == expected, address
    variables = lambda_environment(lambda_functions(aws)["github_webhook"])
    assert variables["BRIDGE_TRANSPORT"] == "eventbridge"
    assert reference(variables["BRIDGE_EVENT_BUS"]) == "aws_cloudwatch_event_bus.audit.name"


def test_lambda_secrets_are_read_at_start_not_shipped_in_layers_or_state(
    aws_with: tuple[str, Config],
) -> None:
    credentials, aws = aws_with
    assert "aws_secretsmanager_secret_version" not in aws.data, "a secret's value would be in the state"
    assert set(aws.data.get("archive_file", {})) == {"code"}, "only the code is zipped (no kubeconfig)"
    assert set(aws.of_type("aws_lambda_layer_version")) == {"dependencies"}
    for name, body in lambda_functions(aws).items():
        assert body["layers"] == ["${aws_lambda_layer_version.dependencies.arn}"], name
    # Only the secrets some function reads are looked up (a missing one fails the plan): the token's or
    # the App's private key's, by the variable of the same pattern.
    assert aws.datum("aws_secretsmanager_secret", "this")["for_each"] == "${local.secret_ids}"
    looked_up = aws.data_instances("aws_secretsmanager_secret")
    assert set(looked_up) == {f'this["{key}"]' for key in LAMBDA_SECRETS[credentials]}
    for key, secret_id in aws.locals["secret_ids"].items():
        variable = reference(secret_id) or ""
        assert variable == f"var.{key.lower()}_secret_id", f"{key} is looked up by {secret_id}"
        assert str(aws.variables[variable.removeprefix("var.")]["default"]).startswith("stagegate/")
    # The handlers' module reads the secrets before the settings: load_secrets() comes first.
    calls = [
        ast.unparse(node.value.func)
        for node in _tree(LAMBDA_MAIN).body
        if isinstance(node, ast.Expr | ast.Assign) and isinstance(node.value, ast.Call)
    ]
    assert "load_secrets" in calls, "functions/aws_lambda/main.py never calls load_secrets()"
    assert calls.index("load_secrets") < calls.index("Settings.from_env"), "secrets are loaded too late"
    read = env_names_read(AWS_SECRETS)
    for names in [*LAMBDA_REQUIRED.values(), *LAMBDA_CREDENTIALS.values()]:
        assert {n for n in names if n.endswith("_SECRET_ARN")} <= read


def test_the_public_lambda_has_reserved_concurrency(aws: Config) -> None:
    functions = lambda_functions(aws)
    public = {reference(url["function_name"]) for url in aws.instances("aws_lambda_function_url").values()}
    assert public, "no function URL"
    assert public == {
        f"aws_lambda_function.{functions[name]['__address__']}.function_name" for name in LAMBDA_PUBLIC
    }
    for name, body in functions.items():
        if f"aws_lambda_function.{body['__address__']}.function_name" not in public:
            continue
        expression = reference(body.get("reserved_concurrent_executions")) or ""
        assert expression.startswith("var."), f"{name} is public and has no reserved concurrency"
        variable = aws.variables[expression.removeprefix("var.")]
        assert isinstance(variable["default"], int), f"{name}: {expression} has no default"
        assert variable["default"] >= 1, f"{name}: reserved concurrency 0 would disable it"


@pytest.mark.parametrize("name", sorted(LAMBDA_PUBLIC))
def test_github_calls_a_public_function_url(aws: Config, name: str) -> None:
    address = lambda_functions(aws)[name]["__address__"]
    [url] = [
        (key, url)
        for key, url in aws.instances("aws_lambda_function_url").items()
        if reference(url["function_name"]) == f"aws_lambda_function.{address}.function_name"
    ]
    assert url[1]["authorization_type"] == "NONE"
    granted = {
        p["action"]: p
        for p in aws.instances("aws_lambda_permission").values()
        if reference(p["function_name"]) == f"aws_lambda_function.{address}.function_name"
    }
    assert granted["lambda:InvokeFunctionUrl"]["function_url_auth_type"] == "NONE"
    assert granted["lambda:InvokeFunction"]["invoked_via_function_url"] is True
    statement_ids = [p["statement_id"] for p in aws.instances("aws_lambda_permission").values()]
    assert len(set(statement_ids)) == len(statement_ids), "a function's permissions need their own ids"
    assert aws.outputs[f"{name}_url"]["value"] == f"${{aws_lambda_function_url.{url[0]}.function_url}}"


def test_aws_protection_rules_reach_the_functions_that_answer_held_jobs(aws: Config) -> None:
    """github_webhook answers held runs after a bake result (there is no resync on AWS)."""
    assert aws.variables["protection_rules"]["default"] == ""
    assert "validation" not in aws.variables["protection_rules"], "the rules are no longer refused on AWS"
    assert secret_references().get("GITHUB_APP_PRIVATE_KEY_SECRET_ARN") == "GITHUB_APP_PRIVATE_KEY", (
        "stagegate/aws_secrets.py reads no App private key: protection_rules could not be used on AWS"
    )
    for name, body in lambda_functions(aws).items():
        environment = lambda_environment(body)
        if name in {"github_webhook", "github_protection_rule"}:
            assert reference(environment["PROTECTION_RULES"]) == "var.protection_rules", name
        else:
            assert "PROTECTION_RULES" not in environment, f"{name} answers no held job"


def test_aws_github_credentials_are_a_token_or_the_app(aws: Config) -> None:
    assert aws.variables["github_credentials"]["default"] == "token"
    [validation] = aws.variables["github_credentials"]["validation"]
    # python-hcl2 drops the quotes of the strings in a function's arguments
    assert validation["condition"] == "${contains([token, app], var.github_credentials)}"
    # The App's private key is found like the token: a Secrets Manager secret by name or ARN.
    token, key = aws.variables["github_token_secret_id"], aws.variables["github_app_private_key_secret_id"]
    assert token["type"] == key["type"] == "string"
    assert key["default"] == "stagegate/github-app-private-key"
    # The App's ids are not secret, and numbers (settings.py refuses anything else at start).
    for name in ("github_app_id", "github_app_installation_id"):
        variable = aws.variables[name]
        assert variable["default"] is None, name
        [validation] = variable["validation"]
        pattern = re.search(r'regex\("([^"]+)"', validation["condition"])
        assert pattern, f"{name}: {validation['condition']}"
        assert re.search(pattern.group(1), "12345"), name
        for wrong in ("", "0", "12a", "app-12"):
            assert not re.search(pattern.group(1), wrong), f"{name} accepts {wrong!r}"


# What each precondition of the functions says, by the wrong it is about.
_HALF_APP = 'github_credentials = "app" needs all three'
_TOKEN_AND_APP = 'are set but github_credentials = "token"'
_RULES_WITH_A_TOKEN = 'protection_rules needs github_credentials = "app"'
_RULES = "myorg/myapp:production=kuberik/myapp/staging"
_PRECONDITION_CASES: dict[str, tuple[dict[str, object], str | None]] = {
    "a token": ({}, None),
    "the App": (AWS_APP, None),
    "the App with rules": (AWS_APP | {"protection_rules": _RULES}, None),
    "the App without ids": ({"github_credentials": "app"}, _HALF_APP),
    "the App without its id": ({"github_credentials": "app", "github_app_installation_id": "678"}, _HALF_APP),
    "the App without its installation": ({"github_credentials": "app", "github_app_id": "12345"}, _HALF_APP),
    "the App without its key": (AWS_APP | {"github_app_private_key_secret_id": ""}, _HALF_APP),
    "the App without its key (null)": (AWS_APP | {"github_app_private_key_secret_id": None}, _HALF_APP),
    "a token and an App id": ({"github_app_id": "12345"}, _TOKEN_AND_APP),
    "a token and an installation": ({"github_app_installation_id": "678"}, _TOKEN_AND_APP),
    "a token with rules": ({"protection_rules": _RULES}, _RULES_WITH_A_TOKEN),
}


@pytest.mark.parametrize("case", sorted(_PRECONDITION_CASES))
def test_aws_plan_refuses_a_half_configured_app_and_rules_without_it(case: str) -> None:
    """What stops every function at start (settings.py: the App's three settings go together, a token
    and the App together, PROTECTION_RULES with a token) fails the plan instead, saying what to set."""
    variables, message = _PRECONDITION_CASES[case]
    aws = load("aws", **variables)
    [lifecycle] = aws.resource("aws_lambda_function", "this")["lifecycle"]
    failed = [p["error_message"] for p in lifecycle["precondition"] if not holds(p["condition"], aws)]
    if message is None:
        assert not failed, f"{case}: {failed}"
    else:
        assert len(failed) == 1, f"{case}: {failed}"
        assert message in failed[0], f"{case}: {failed[0]}"


# --- no broad grants ----------------------------------------------------------------------------------


def test_gcp_grants_no_primitive_role_and_nothing_project_wide(gcp: Config) -> None:
    for kind, named in gcp.resources.items():
        if "_iam_" not in kind:
            continue
        assert not kind.startswith(("google_project_iam", "google_folder_iam", "google_organization_iam")), (
            f"{kind}: grants are made on single resources only"
        )
        for address, body in named.items():
            role = body.get("role")
            assert role not in FORBIDDEN_GCP_ROLES, f"{kind}.{address} grants {role}"
            assert "*" not in str(role), f"{kind}.{address} grants {role}"


# What data.aws_iam_policy_document.lambda lets a function read: the values of its *_SECRET_ARN variables.
SECRETS_OF_THE_ENVIRONMENT = (
    '${[for name , arn in each.value.environment : arn if endswith(name, "_SECRET_ARN")]}'
)


def _policy_documents(config: Config) -> dict[str, Body]:
    """Every aws_iam_policy_document by instance address; in those of local.lambdas, the secrets a
    function may read (SECRETS_OF_THE_ENVIRONMENT) evaluated as terraform would (a map is iterated in
    the lexical order of its keys)."""
    documents = config.data_instances("aws_iam_policy_document")
    for key, function in config.locals["lambdas"].items():
        environment = function["environment"]
        secrets = [environment[name] for name in sorted(environment) if name.endswith("_SECRET_ARN")]
        document = documents[f'lambda["{key}"]']
        for statement in document.get("statement", []):
            if statement.get("resources") == SECRETS_OF_THE_ENVIRONMENT:
                statement["resources"] = secrets
    for name, document in documents.items():
        for statement in _statements(document):
            assert isinstance(statement.get("resources", []), list), f"{name}: resources not evaluated"
    return documents


def test_aws_every_policy_is_a_document_without_wildcard_actions(aws: Config) -> None:
    documents = _policy_documents(aws)
    assert documents
    for name, document in documents.items():
        for statement in _statements(document):
            assert statement.get("effect", "Allow") == "Allow", f"{name}: only Allow statements are expected"
            assert "not_actions" not in statement, name
            assert "not_resources" not in statement, name
            for action in statement["actions"]:
                assert "*" not in action, f"{name} grants the wildcard action {action}"
            assert "*" not in statement.get("resources", []), f"{name} applies to every resource"
    # Every policy attached anywhere is one of these documents, so the check above covers them all.
    policy_arguments = {"policy", "assume_role_policy"}
    for kind in aws.resources:
        assert kind not in {"aws_iam_role_policy_attachment", "aws_iam_policy_attachment"}, (
            f"{kind}: attach the documents above, not managed policies"
        )
        for address, body in aws.instances(kind).items():
            for argument in policy_arguments & set(body):
                expression = reference(body[argument]) or ""
                assert re.fullmatch(r'data\.aws_iam_policy_document\.\w+(\["\w+"\])?\.json', expression), (
                    f"{kind}.{address}.{argument} is not an aws_iam_policy_document"
                )


def test_no_inline_policy_text_anywhere() -> None:
    for cloud in ("gcp", "aws"):
        config = load(cloud)
        for kind, named in config.resources.items():
            for address, body in named.items():
                for value in _walk(body):
                    if isinstance(value, str):
                        assert not re.search(r'"Action"\s*:\s*"?\*', value), (
                            f"{kind}.{address}: wildcard action"
                        )
                        assert value not in FORBIDDEN_GCP_ROLES, f"{kind}.{address}: {value}"


LOG_NAMES = re.compile(r'(?:jsonPayload\.|\$\.)(\w+)\s*(?:=|:)\s*(?:\\"([^"\\]*)\\?"?|\*|\\")?')


@pytest.mark.parametrize("cloud", ["gcp", "aws"])
def test_log_based_metrics_name_only_loggers_messages_and_fields_the_code_logs(cloud: str) -> None:
    """The log-based metrics stand in for `stagegate.metrics` on Cloud Run and Lambda: a filter naming
    a logger, message or field the code does not log would count nothing, silently."""
    text = (REPO / "infra" / cloud / "metrics.tf").read_text()
    code = "\n".join(p.read_text() for p in (REPO / "stagegate").glob("*.py"))
    loggers = set(re.findall(r'get_logger\("(\w+)"\)', code))
    named = LOG_NAMES.findall(text)
    fields = {field for field, _ in named}
    assert {"logger", "change", "lagSeconds"} <= fields, fields
    for field, value in named:
        if field == "logger":
            assert value.removeprefix("stagegate.") in loggers, f"no logger {value}"
        elif field == "message":
            assert value.rstrip("*") in code, f"the code logs no message {value!r}"
        else:
            assert f'"{field}"' in code, f"the code logs no field {field}"
