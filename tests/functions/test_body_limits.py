"""Body limits hold before the body is read.

functions-framework reads the whole request body after every answer (an `after_request` hook), so a
limit checked in the handler bounds nothing: a 300 MiB request without credentials, answered 401,
still took the worker to ~400 MiB. Here every HTTP-served function runs in the real functions-framework
(gunicorn, as deployed, and Flask's development server) and gets 300 MiB without credentials, with a
declared `Content-Length` and chunked: the answer comes at once (413, or 401 before anything was read),
and the serving process's peak memory (`VmHWM`) stays far below the body.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from shared.github_delivery import signature
from stagegate_dev import devstack

MIB = 1024 * 1024
BODY = 300 * MIB
MAX_GROWTH = 64 * MIB
"""Far below the body; the limits themselves are 1-5.4 MiB, held a few times over while refusing."""
ANSWER_WITHIN = 30.0
SECRET = "body-limit-webhook-secret"

TARGETS = [
    ("k8s_audit", "k8s_audit_http"),
    ("k8s_audit", "k8s_audit"),
    ("github_webhook", "github_webhook"),
    ("resync", "resync_http"),
    ("resync", "resync_event"),
    ("audit_bridge", "audit_bridge"),
]
HTTP_TARGETS = {"k8s_audit_http", "github_webhook", "resync_http", "audit_bridge"}
"""The targets whose answers `stagegate.http.answer` makes (the others are CloudEvent functions)."""
DEV_SERVER_TARGETS = [("k8s_audit", "k8s_audit_http"), ("github_webhook", "github_webhook")]
DEV_SERVER = (
    "import sys, functions_framework as ff; "
    "ff.create_app(sys.argv[1], sys.argv[2]).run('127.0.0.1', int(sys.argv[3]), threaded=True)"
)


@dataclass
class Served:
    """A function being served: where, and the process that handles its requests."""

    port: int
    pid: int


def function_env(directory: Path) -> dict[str, str]:
    """Enough configuration for every function to start; nothing here is ever reached."""
    tls = devstack.Tls(directory)
    kubeconfig = devstack.write_kubeconfig(directory / "kubeconfig", "https://127.0.0.1:9", tls.ca_file, "t")
    return {
        "KUBECONFIG": str(kubeconfig),
        "AUDIT_WEBHOOK_TOKEN": "audit-token-for-body-limits",
        "RESYNC_TOKEN": "resync-token-for-body-limits",
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "GITHUB_TOKEN": "ghp_bodylimitsbodylimitsbodylimits0000",
        "GITHUB_API_URL": "http://127.0.0.1:9",
        "BRIDGE_TRANSPORT": "eventbridge",
        "BRIDGE_EVENT_BUS": "stagegate-audit",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


@pytest.fixture(scope="module")
def servers(
    procs: devstack.Processes, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], Served]:
    env = function_env(tmp_path_factory.mktemp("body-limits"))

    def gunicorn(folder: str, target: str) -> Served:
        source = devstack.ROOT / "functions" / folder / "main.py"
        server = devstack.FunctionServer(source, target, env, None, procs, threads=4)
        return Served(server.port, gunicorn_worker(server.proc.pid))

    with ThreadPoolExecutor(max_workers=4) as pool:  # start them side by side: each takes seconds
        started = {("gunicorn", t): pool.submit(gunicorn, f, t) for f, t in TARGETS}
        started |= {
            ("dev", t): pool.submit(development_server, procs, f, t, env) for f, t in DEV_SERVER_TARGETS
        }
        return {key: future.result() for key, future in started.items()}


@pytest.mark.parametrize(
    "key", [("gunicorn", t) for _, t in TARGETS] + [("dev", t) for _, t in DEV_SERVER_TARGETS]
)
def test_a_health_probe_is_answered_before_the_function_and_logs_nothing(
    servers: dict[tuple[str, str], Served], procs: devstack.Processes, key: tuple[str, str]
) -> None:
    """`GET /healthz` is what the install's probes and the local stack ask. Any other request still
    reaches the function: an HTTP target refuses a GET and logs why (the probe used to be logged so)."""
    port, log = servers[key].port, f"dev-{key[1]}" if key[0] == "dev" else f"function-{key[1]}"
    before = procs.tail(log, 10_000)
    probe = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
    assert (probe.status_code, probe.json()) == (200, {"status": "ok"})
    time.sleep(0.2)
    assert "rejected" not in procs.tail(log, 10_000)[len(before) :]
    other = requests.get(f"http://127.0.0.1:{port}/", timeout=10)
    assert other.status_code != 200, other.text
    if key[1] in HTTP_TARGETS:
        logged = lambda: "rejected" in procs.tail(log, 10_000)[len(before) :]  # noqa: E731
        devstack.wait_until(logged, 5, "the refusal's log line")


def development_server(procs: devstack.Processes, folder: str, target: str, env: dict[str, str]) -> Served:
    """The function under Flask's development server (`functions-framework --debug` uses it)."""
    port = devstack.free_port()
    source = devstack.ROOT / "functions" / folder / "main.py"
    name = f"dev-{target}"
    proc = procs.start(
        name, [sys.executable, "-c", DEV_SERVER, target, str(source), str(port)], {**os.environ, **env}
    )

    def listening() -> bool:
        if proc.poll() is not None:
            raise devstack.ProcessExited(f"{name} exited with {proc.returncode}")
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True

    devstack.wait_until(listening, 30, name, lambda: procs.tail(name))
    return Served(port, proc.pid)


def gunicorn_worker(master: int) -> int:
    """The one worker gunicorn forked (it loads the function and serves the requests)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise AssertionError(f"gunicorn {master} has no worker")


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def reset_peak(pid: int) -> int:
    """Set the process's peak resident size to its current one; return that, in bytes."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return status_kib(pid, "VmHWM") * 1024


@dataclass
class Exchange:
    """What a client sending a large body saw."""

    head: bytes
    body: bytes
    seconds: float
    sent: int

    @property
    def status(self) -> int:
        return int(self.head.split(b" ", 2)[1])


def post(port: int, size: int, *, chunked: bool, headers: dict[str, str] | None = None) -> Exchange:
    """POST `size` bytes of spaces, declared or chunked, while reading the answer as soon as it comes.

    A server that refuses stops reading, so the sending side ends with a broken pipe or a reset:
    expected. The answer must still arrive, within `ANSWER_WITHIN` seconds.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN)
    lines = ["POST / HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    sent = 0

    def pump() -> None:
        nonlocal sent
        block = b" " * MIB
        try:
            while sent < size:
                piece = block[: size - sent]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server refused and closed: what this test wants

    sender = threading.Thread(target=pump, daemon=True)
    started = time.monotonic()
    sender.start()
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    finally:
        seconds = time.monotonic() - started
        sender.join(ANSWER_WITHIN)
        sock.close()
    assert head.startswith(b"HTTP/1."), f"no answer after {seconds:.1f}s: {data[:200]!r}"
    return Exchange(head, rest, seconds, sent)


CASES = [("gunicorn", t) for _, t in TARGETS] + [("dev", t) for _, t in DEV_SERVER_TARGETS]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(("server", "target"), CASES)
def test_an_oversized_body_without_credentials_is_refused_without_being_held(
    server: str, target: str, chunked: bool, servers: dict[tuple[str, str], Served]
) -> None:
    served = servers[(server, target)]
    before = reset_peak(served.pid)
    answer = post(served.port, BODY, chunked=chunked)
    growth = status_kib(served.pid, "VmHWM") * 1024 - before
    assert answer.status in (401, 413), answer.head
    assert answer.seconds < ANSWER_WITHIN
    assert growth < MAX_GROWTH, (
        f"{target} under {server} grew by {growth / MIB:.0f} MiB for a {BODY // MIB} MiB body "
        f"({answer.sent / MIB:.0f} MiB of it sent) answered {answer.status}"
    )
    if answer.status == 413:
        assert "exceeds the limit" in json.loads(answer.body)["error"]


@pytest.mark.parametrize("server", ["gunicorn", "dev"])
def test_a_chunked_body_within_the_limit_arrives_whole(
    server: str, servers: dict[tuple[str, str], Served]
) -> None:
    body = json.dumps({"zen": "Non-blocking is better than blocking.", "padding": " " * (3 * MIB)}).encode()
    headers = {"X-GitHub-Event": "ping", "X-Hub-Signature-256": signature(SECRET, body)}
    served = servers[(server, "github_webhook")]
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=ANSWER_WITHIN)
    lines = [
        "POST / HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        "Transfer-Encoding: chunked",
    ]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    for start in range(0, len(body), 100_000):
        piece = body[start : start + 100_000]
        request += b"%x\r\n%s\r\n" % (len(piece), piece)
    sock.sendall(request + b"0\r\n\r\n")
    data = b""
    while b"pong" not in data and (chunk := sock.recv(65536)):
        data += chunk
    sock.close()
    assert data.startswith(b"HTTP/1.1 200"), data[:300]
    assert b'"pong"' in data


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("server", ["gunicorn", "dev"])
def test_a_client_that_reads_only_after_sending_still_gets_the_413(
    server: str, chunked: bool, servers: dict[tuple[str, str], Served]
) -> None:
    """The refused rest of a body a few times the limit is read and dropped, so the client sees the
    answer instead of a connection reset (`requests` sends everything before it reads)."""
    body = b" " * (12 * MIB)
    data = iter([body[i : i + MIB] for i in range(0, len(body), MIB)]) if chunked else body
    served = servers[(server, "k8s_audit_http")]
    response = requests.post(
        f"http://127.0.0.1:{served.port}/",
        data=data,
        headers={"Authorization": "Bearer audit-token-for-body-limits"},
        timeout=ANSWER_WITHIN,
    )
    assert response.status_code == 413, response.text
    assert "exceeds the limit" in response.json()["error"]
