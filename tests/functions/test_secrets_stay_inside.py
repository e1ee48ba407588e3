"""No secret in an answer or a log line, whatever fails; answers say what failed, not where.

Every function (`k8s_audit_http`, `k8s_audit`, `github_webhook`, `resync_http`, `resync_event`,
`audit_bridge`, the Lambda handlers) runs with known credentials, the GitHub token given the way
`echo` and secret files give it (ending in a line break), and is driven through every failure that
can be provoked from outside: the Kubernetes API refusing connections, failing (with a message that
quotes credentials back) or hanging; GitHub failing, rate limiting, hanging, unreachable, refusing
the token; a bad bearer token or signature; a malformed body; a publish that fails. No answer (body
or header) and no line the serving process logged may contain a credential, and no answer may name
the Kubernetes API's, GitHub's or the publish endpoint's address.

The served functions are real functions-framework processes (gunicorn) against a real kube-apiserver
and the fake GitHub, both behind a `FaultSwitch`; the Lambda handlers run in-process.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import logging
import re
import secrets
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client

from shared.github_delivery import signature
from stagegate.kube import KubeGates, api_client
from stagegate_dev import devstack
from stagegate_dev.fake_github import FakeGitHub
from stagegate_dev.protection_app import app_key
from tests.functions.fault_switch import FaultSwitch
from tests.functions.lambda_loader import load_lambda_main
from tests.functions.test_github_webhook import App, rev
from tests.functions.test_recompute_triggers import rollout_status_event
from tests.kube_objects import delivery_bytes, environment, stored

AUDIT_TOKEN = f"audit-{secrets.token_urlsafe(24)}"
RESYNC_TOKEN = f"resync-{secrets.token_urlsafe(24)}"
WEBHOOK_SECRETS = (f"whsec-new-{secrets.token_hex(16)}", f"whsec-old-{secrets.token_hex(16)}")
BAD_GITHUB_TOKEN = f"ghp_{secrets.token_hex(18)}"
APP_ID = 7_000_001
INSTALLATION_ID = 7_000_002
VENDOR_MESSAGE = "etcdserver: leader changed"
"""What the failing Kubernetes API says; it must reach the log, never an answer."""
TOKEN_SHAPES = re.compile(r"gh[pousr]_[A-Za-z0-9_-]{16,}|github_pat_[A-Za-z0-9_]{16,}")
DEADLINE = {"AUDIT_DEADLINE_SECONDS": "1", "GITHUB_WEBHOOK_DEADLINE_SECONDS": "2"}


@dataclasses.dataclass
class Secrets:
    """Everything no answer and no log line may contain."""

    values: list[str]
    places: list[str]
    """How an address of what the functions call would read: answers must not name one."""

    def leaked(self, text: str) -> list[str]:
        found = [f"secret {value[:12]}..." for value in self.values if value in text]
        return found + [f"token-shaped {m[:12]}..." for m in TOKEN_SHAPES.findall(text)]

    def named(self, text: str) -> list[str]:
        return [place for place in self.places if place in text]


@pytest.fixture(scope="module")
def stack() -> Iterator[devstack.KubeStack]:
    """One kube-apiserver with the project's CRDs: what is checked here does not depend on the CRD set."""
    with devstack.KubeStack(devstack.PROJECT_CRDS) as kube:
        yield kube


@pytest.fixture(scope="module", name="app_key")
def app_key_fixture() -> tuple[str, bytes]:
    return app_key()


def fake_port(fake: FakeGitHub) -> int:
    return int(fake.url.rsplit(":", 1)[1])


def service_account_token(stack: devstack.KubeStack) -> str:
    config = yaml.safe_load(stack.function_kubeconfig.read_text())
    token: str = config["users"][0]["user"]["token"]
    return token


@pytest.fixture(scope="module")
def kube_switch(stack: devstack.KubeStack, fake: FakeGitHub) -> Iterator[FaultSwitch]:
    """The Kubernetes API as the functions reach it; failing, it answers 503 quoting credentials back."""
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": f"{VENDOR_MESSAGE}; request had Authorization: Bearer {service_account_token(stack)} "
        f"and the client also holds {fake.token}",
        "code": 503,
    }
    switch = FaultSwitch(
        stack.port, tls=(stack.tls.cert_file, stack.tls.key_file), error_body=json.dumps(status).encode()
    )
    yield switch
    switch.close()


@pytest.fixture(scope="module")
def github_switch(fake: FakeGitHub) -> Iterator[FaultSwitch]:
    switch = FaultSwitch(fake_port(fake))
    yield switch
    switch.close()


@pytest.fixture(scope="module")
def known(
    stack: devstack.KubeStack,
    fake: FakeGitHub,
    kube_switch: FaultSwitch,
    github_switch: FaultSwitch,
    app_key: tuple[str, bytes],
    closed_port: int,
) -> Secrets:
    pem_lines = [line for line in app_key[0].splitlines() if "-----" not in line]
    return Secrets(
        values=[
            fake.token,
            BAD_GITHUB_TOKEN,
            AUDIT_TOKEN,
            RESYNC_TOKEN,
            *WEBHOOK_SECRETS,
            service_account_token(stack),
            *pem_lines,
        ],
        places=[
            "127.0.0.1",  # every dependency here listens on loopback; an answer has no reason to say so
            *(
                f"{form}{port}"
                for port in (stack.port, kube_switch.port, github_switch.port, fake_port(fake), closed_port)
                for form in (":", "port=")
            ),
        ],
    )


@pytest.fixture(scope="module")
def closed_port() -> int:
    """Where nothing listens: the publish endpoint of the bridge (EventBridge and Pub/Sub alike)."""
    return devstack.free_port()


@dataclasses.dataclass
class World:
    """One app in one namespace: staging baked `rev(1)`, prod follows it."""

    namespace: str
    repo: str
    status_id: int


@pytest.fixture(scope="module")
def world(stack: devstack.KubeStack, fake: FakeGitHub) -> World:
    name = f"s-{secrets.token_hex(4)}"
    client.CoreV1Api(stack.api_client()).create_namespace({"metadata": {"name": name}})
    custom = client.CustomObjectsApi(stack.api_client())
    gates = KubeGates(api_client(str(stack.function_kubeconfig)), timeout=10)
    app = App(custom, gates, fake, name)
    app.environment("staging")
    app.environment("prod", upstream="staging")
    app.candidates("prod", ("v1", rev(1)))
    return World(name, app.repo, app.bake("staging", rev(1)))


@pytest.fixture(scope="module")
def env(
    stack: devstack.KubeStack,
    fake: FakeGitHub,
    kube_switch: FaultSwitch,
    github_switch: FaultSwitch,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    """What every function is given: credentials (the GitHub token with the line break a secret file
    adds), both switches, short deadlines."""
    kubeconfig = devstack.write_kubeconfig(
        tmp_path_factory.mktemp("secrets") / "kubeconfig",
        f"https://127.0.0.1:{kube_switch.port}",
        stack.tls.ca_file,
        service_account_token(stack),
    )
    return {
        "KUBECONFIG": str(kubeconfig),
        "GITHUB_TOKEN": fake.token + "\n",
        "GITHUB_API_URL": f"http://127.0.0.1:{github_switch.port}",
        "GITHUB_WEBHOOK_SECRET": "\n".join(WEBHOOK_SECRETS) + "\n",
        "AUDIT_WEBHOOK_TOKEN": AUDIT_TOKEN,
        "RESYNC_TOKEN": RESYNC_TOKEN + "\n",
        **DEADLINE,
    }


class Servers:
    """Functions served on demand, one process per variant (each logging to its own folder), with the
    shared configuration."""

    def __init__(self, stack: devstack.KubeStack, log_dir: Path, env: dict[str, str]) -> None:
        self.stack, self.log_dir, self.env = stack, log_dir, env
        self.urls: dict[str, str] = {}
        self.logs: dict[str, Path] = {}
        self.processes: list[devstack.Processes] = []

    def url(self, variant: str, folder: str, target: str, **extra: str) -> str:
        if variant not in self.urls:
            (self.log_dir / variant).mkdir()
            procs = devstack.Processes(self.log_dir / variant)
            self.processes.append(procs)
            source = devstack.ROOT / "functions" / folder / "main.py"
            server = devstack.FunctionServer(
                source, target, {**self.env, **extra}, self.stack.tls, procs, threads=4
            )
            self.urls[variant] = server.url
            self.logs[variant] = procs.log_dir / f"{server.name}.log"
        return self.urls[variant]

    def stop(self) -> None:
        for procs in self.processes:
            procs.stop_all()


@pytest.fixture(scope="module")
def servers(
    stack: devstack.KubeStack, env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Servers]:
    served = Servers(stack, tmp_path_factory.mktemp("served"), env)
    yield served
    served.stop()


@dataclasses.dataclass
class Request:
    """What to send to a served function."""

    variant: str
    folder: str
    target: str
    body: bytes
    headers: dict[str, str]
    extra_env: dict[str, str] = dataclasses.field(default_factory=dict)


def pubsub_push(data: bytes) -> tuple[bytes, dict[str, str]]:
    event = {
        "specversion": "1.0",
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": "//pubsub.googleapis.com/projects/test/topics/t",
        "id": str(uuid.uuid4()),
        "datacontenttype": "application/json",
        "data": {"message": {"data": base64.b64encode(data).decode(), "messageId": "1"}, "subscription": "s"},
    }
    return json.dumps(event).encode(), {"Content-Type": "application/cloudevents+json"}


def env_created(world: World) -> bytes:
    return delivery_bytes(stored(environment(world.namespace, f"e-{secrets.token_hex(3)}")))


def signed_delivery(
    fake: FakeGitHub, world: World, secret: str = WEBHOOK_SECRETS[1]
) -> tuple[bytes, dict[str, str]]:
    headers, body = fake.deployment_status_event(world.repo, world.status_id)
    headers["X-Hub-Signature-256"] = signature(secret, body)
    return body, headers


def request_for(case: str, fake: FakeGitHub, world: World, closed_port: int) -> Request:
    """The request that takes `case`'s function down the path its fault is on."""
    bearer = {"Authorization": f"Bearer {AUDIT_TOKEN}"}
    function, _, path = case.partition(":")
    if function == "k8s_audit_http":
        body = rollout_status_event(world.namespace, "myapp-prod") if path == "github" else env_created(world)
        return Request("k8s_audit_http", "k8s_audit", "k8s_audit_http", body, bearer)
    if function == "k8s_audit":
        data = rollout_status_event(world.namespace, "myapp-prod") if path == "github" else env_created(world)
        body, headers = pubsub_push(b"not an audit document" if path == "malformed" else data)
        return Request("k8s_audit", "k8s_audit", "k8s_audit", body, headers)
    if function.startswith("github_webhook"):
        body, headers = signed_delivery(fake, world)
        extra: dict[str, str] = {}
        if function == "github_webhook_bad_token":
            extra = {"GITHUB_TOKEN": BAD_GITHUB_TOKEN + "\n"}
        return Request(function, "github_webhook", "github_webhook", body, headers, extra)
    if function == "resync_http":
        return Request(
            "resync_http", "resync", "resync_http", b"", {"Authorization": f"Bearer {RESYNC_TOKEN}"}
        )
    if function == "resync_event":
        body, headers = pubsub_push(b"tick")
        return Request("resync_event", "resync", "resync_event", body, headers)
    if function.startswith("audit_bridge"):
        transport = (
            {"BRIDGE_TRANSPORT": "pubsub", "BRIDGE_PUBSUB_TOPIC": "projects/p/topics/audit",
             "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{closed_port}"}
            if function == "audit_bridge_pubsub"
            else {"BRIDGE_TRANSPORT": "eventbridge", "BRIDGE_EVENT_BUS": "audit",
                  "AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed_port}", "AWS_DEFAULT_REGION": "us-east-1",
                  "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        )  # fmt: skip
        return Request(function, "audit_bridge", "audit_bridge", env_created(world), bearer, transport)
    raise AssertionError(case)


Fault = Callable[..., None]


def no_fault(**_: Any) -> None:
    pass


FAULTS: dict[str, Fault] = {
    "none": no_fault,
    "kube refused": lambda kube, **_: kube.set("refuse"),
    "kube 5xx": lambda kube, **_: kube.set("error"),
    "kube hangs": lambda kube, **_: kube.set("hang"),
    "github 5xx": lambda fake, **_: fake.fail_next(50, status=502),
    "github secondary rate limit": lambda fake, **_: fake.rate_limit_next(50, kind="secondary"),
    "github primary rate limit": lambda fake, **_: fake.rate_limit_next(50, kind="primary"),
    "github hangs": lambda fake, **_: fake.hang_next(50, seconds=4),
    "github refused": lambda github, **_: github.set("refuse"),
}

# (function[:path], fault, how the request is spoiled, expected status)
CASES: list[tuple[str, str, str, int]] = [
    ("k8s_audit_http", "none", "wrong bearer token", 401),
    ("k8s_audit_http", "none", "malformed body", 400),
    ("k8s_audit_http", "kube refused", "", 503),
    ("k8s_audit_http", "kube 5xx", "", 503),
    ("k8s_audit_http", "kube hangs", "", 503),
    # A lone Rollout change is answered 200 with the failure in the summary (blocking mode: a 503 would
    # make the apiserver hold the rollout controller's write while it retries).
    ("k8s_audit_http:github", "github 5xx", "", 200),
    ("k8s_audit_http:github", "github secondary rate limit", "", 200),
    ("k8s_audit_http:github", "github primary rate limit", "", 200),
    ("k8s_audit_http:github", "github hangs", "", 200),
    ("k8s_audit_http:github", "github refused", "", 200),
    ("k8s_audit:malformed", "none", "", 200),
    ("k8s_audit", "kube refused", "", 500),
    ("k8s_audit", "kube 5xx", "", 500),
    ("k8s_audit", "kube hangs", "", 500),
    ("k8s_audit:github", "github 5xx", "", 500),
    ("k8s_audit:github", "github refused", "", 500),
    ("github_webhook", "none", "wrong signature", 401),
    ("github_webhook", "none", "malformed body", 400),
    ("github_webhook", "kube refused", "", 503),
    ("github_webhook", "kube 5xx", "", 503),
    ("github_webhook", "kube hangs", "", 503),
    ("github_webhook", "github 5xx", "", 503),
    ("github_webhook", "github secondary rate limit", "", 503),
    ("github_webhook", "github primary rate limit", "", 503),
    ("github_webhook", "github hangs", "", 503),
    ("github_webhook", "github refused", "", 503),
    ("github_webhook_bad_token", "none", "", 200),
    ("github_webhook_app", "github 5xx", "", 503),
    ("github_webhook_app", "github refused", "", 503),
    ("resync_http", "none", "wrong bearer token", 401),
    ("resync_http", "kube refused", "", 503),
    ("resync_http", "kube 5xx", "", 503),
    ("resync_http", "kube hangs", "", 503),
    ("resync_http", "github 5xx", "", 503),
    ("resync_http", "github secondary rate limit", "", 503),
    ("resync_http", "github hangs", "", 503),
    ("resync_http", "github refused", "", 503),
    ("resync_event", "kube refused", "", 500),
    ("resync_event", "kube 5xx", "", 500),
    ("resync_event", "github 5xx", "", 500),
    ("resync_event", "github refused", "", 500),
    ("audit_bridge", "none", "wrong bearer token", 401),
    ("audit_bridge", "none", "malformed body", 400),
    ("audit_bridge", "none", "", 503),  # the publish endpoint refuses connections
    ("audit_bridge_pubsub", "none", "", 503),
]


@pytest.fixture
def switches(kube_switch: FaultSwitch, github_switch: FaultSwitch, fake: FakeGitHub) -> Iterator[None]:
    """Every case starts and ends with everything working."""
    yield
    kube_switch.set("forward")
    github_switch.set("forward")
    fake.faults.clear()


def spoil(request: Request, how: str) -> Request:
    if how == "wrong bearer token":
        return dataclasses.replace(
            request, headers={**request.headers, "Authorization": "Bearer not-the-token"}
        )
    if how == "wrong signature":
        return dataclasses.replace(
            request,
            headers={**request.headers, "X-Hub-Signature-256": signature("not-the-secret", request.body)},
        )
    if how == "malformed body":
        body = b"{not json"
        headers = dict(request.headers)
        if "X-Hub-Signature-256" in headers:
            headers["X-Hub-Signature-256"] = signature(WEBHOOK_SECRETS[0], body)
        return dataclasses.replace(request, body=body, headers=headers)
    return request


@pytest.mark.parametrize(
    ("case", "fault", "how", "status"), CASES, ids=[" / ".join(c[:3]).strip(" /") for c in CASES]
)
def test_no_answer_and_no_log_line_carries_a_secret_or_names_a_dependency(
    case: str,
    fault: str,
    how: str,
    status: int,
    servers: Servers,
    fake: FakeGitHub,
    world: World,
    kube_switch: FaultSwitch,
    github_switch: FaultSwitch,
    known: Secrets,
    closed_port: int,
    app_key: tuple[str, bytes],
    switches: None,
) -> None:
    request = spoil(request_for(case, fake, world, closed_port), how)
    extra = dict(request.extra_env)
    if request.variant == "github_webhook_app":
        pem, public = app_key
        fake.add_app(APP_ID, public, INSTALLATION_ID, [world.repo])
        extra |= {"GITHUB_TOKEN": "", "GITHUB_APP_ID": str(APP_ID), "GITHUB_APP_PRIVATE_KEY": pem,
                  "GITHUB_APP_INSTALLATION_ID": str(INSTALLATION_ID)}  # fmt: skip
    url = servers.url(request.variant, request.folder, request.target, **extra)
    FAULTS[fault](kube=kube_switch, github=github_switch, fake=fake)
    response = requests.post(
        url, data=request.body, headers=request.headers, verify=str(servers.stack.tls.ca_file), timeout=60
    )
    answer = f"{response.status_code} {dict(response.headers)} {response.text}"
    assert response.status_code == status, answer
    assert known.leaked(answer) == [], answer
    assert known.named(answer) == [], answer
    assert VENDOR_MESSAGE not in answer
    log = servers.logs[request.variant].read_text(errors="replace")
    assert known.leaked(log) == [], log[-3000:]


# The Lambda handlers, in-process ------------------------------------------------------------------


@pytest.fixture(scope="module")
def lambda_module(env: dict[str, str]) -> Iterator[ModuleType]:
    """functions/aws_lambda/main.py loaded the way Lambda loads it, with the same configuration."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        yield load_lambda_main()


@pytest.fixture
def lambda_log(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], str]]:
    """Everything logged in this process meanwhile: stagegate's JSON lines and every other logger's."""
    handler = logging.getLogger("stagegate").handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    caplog.set_level(logging.DEBUG)
    try:
        yield lambda: buffer.getvalue() + caplog.text
    finally:
        handler.setStream(previous)


def function_url_event(body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "version": "2.0",
        "rawPath": "/",
        "headers": {k.lower(): v for k, v in headers.items()},
        "body": body.decode(errors="replace"),
        "isBase64Encoded": False,
        "requestContext": {"http": {"method": "POST"}},
    }


LAMBDA_WEBHOOK_CASES = [
    ("none", "wrong signature", 401),
    ("none", "malformed body", 400),
    ("kube refused", "", 503),
    ("kube 5xx", "", 503),
    ("github 5xx", "", 503),
    ("github refused", "", 503),
    ("github hangs", "", 503),
]


@pytest.mark.parametrize(("fault", "how", "status"), LAMBDA_WEBHOOK_CASES)
def test_the_webhook_lambda_answers_and_logs_no_secret(
    fault: str,
    how: str,
    status: int,
    lambda_module: ModuleType,
    lambda_log: Callable[[], str],
    fake: FakeGitHub,
    world: World,
    kube_switch: FaultSwitch,
    github_switch: FaultSwitch,
    known: Secrets,
    closed_port: int,
    switches: None,
) -> None:
    request = spoil(request_for("github_webhook", fake, world, closed_port), how)
    FAULTS[fault](kube=kube_switch, github=github_switch, fake=fake)
    answer = json.dumps(lambda_module.github_webhook(function_url_event(request.body, request.headers), None))
    assert json.loads(answer)["statusCode"] == status, answer
    assert known.leaked(answer) == [], answer
    assert known.named(answer) == [], answer
    assert known.leaked(lambda_log()) == [], lambda_log()


@pytest.mark.parametrize("fault", ["kube refused", "kube 5xx"])
def test_the_audit_lambda_fails_and_logs_without_a_secret(
    fault: str,
    lambda_module: ModuleType,
    lambda_log: Callable[[], str],
    world: World,
    kube_switch: FaultSwitch,
    github_switch: FaultSwitch,
    fake: FakeGitHub,
    known: Secrets,
    switches: None,
) -> None:
    detail = json.loads(env_created(world))
    FAULTS[fault](kube=kube_switch, github=github_switch, fake=fake)
    records = {
        "Records": [
            {"messageId": "m", "body": json.dumps({"detail": detail})},
            {"messageId": "p", "body": "x"},
        ]
    }
    assert lambda_module.k8s_audit_eventbridge(records, None) == {
        "batchItemFailures": [{"itemIdentifier": "m"}]
    }
    with pytest.raises(Exception) as raised:  # noqa: PT011  whatever it is, Lambda reports its text
        lambda_module.k8s_audit_eventbridge({"detail": detail}, None)
    reported = f"{type(raised.value).__name__}: {raised.value}"
    assert known.leaked(reported) == [], reported
    assert known.named(reported) == [], reported
    assert VENDOR_MESSAGE not in reported
    chain = "".join(traceback.format_exception(raised.value))
    assert known.leaked(chain) == [], chain
    assert known.leaked(lambda_log()) == [], lambda_log()


def test_no_line_any_served_function_logged_carries_a_secret(servers: Servers, known: Secrets) -> None:
    """Work goes on after an answer (past a deadline); what it logged later counts too."""
    assert servers.logs, "no function was served"
    for variant, path in servers.logs.items():
        log = path.read_text(errors="replace")
        assert known.leaked(log) == [], f"{variant}: {log[-3000:]}"
