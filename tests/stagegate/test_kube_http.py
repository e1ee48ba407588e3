"""`stagegate.kube_http`: kubeconfig and in-cluster configuration, credentials, and requests, against a
small HTTPS server on loopback that answers with what it received (headers, client certificate)."""

from __future__ import annotations

import base64
import datetime
import json
import ssl
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
import urllib3
import yaml

from shared.errors import PermanentError, RetryableError
from stagegate import kube_http
from stagegate.kube import KubeConflict, KubeGates, KubeNotFound, api_client
from stagegate.kube_http import ApiError, CredentialError, KubeClient, KubeConfig, in_cluster_config
from stagegate.settings import ConfigError


class Echo(BaseHTTPRequestHandler):
    """Answers `/status/<code>` with that code and a `Status` body, anything else with what it got."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/watch"):  # a watch: JSON lines, split anywhere, until the server ends it
            self.send_response(200)
            self.end_headers()
            for part in (b'{"type": "ADDED", "n": 1}\n{"type": "MOD', b'IFIED", "n": 2}\n\n', b"x" * 100):
                self.wfile.write(part)
                self.wfile.flush()
            return
        if self.path == "/html":
            self.send_response(200)
            self.send_header("Content-Length", "6")
            self.end_headers()
            self.wfile.write(b"<html>")
            return
        if self.path.startswith("/status/"):
            code = int(self.path.split("/")[2])
            payload: dict[str, Any] = {"kind": "Status", "code": code, "message": f"said {code}"}
        else:
            code = 200
            peer = self.connection.getpeercert()  # type: ignore[attr-defined]
            subject = dict(item[0] for item in peer["subject"]) if peer else {}
            payload = {
                "method": self.command,
                "path": self.path,
                "authorization": self.headers.get("Authorization"),
                "contentType": self.headers.get("Content-Type"),
                "client": subject.get("commonName"),
                "body": json.loads(body) if body else None,
            }
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@contextmanager
def https(ca: trustme.CA, *identities: str) -> Iterator[str]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*identities).configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_OPTIONAL  # a client certificate is read when one is offered
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def server(ca: trustme.CA) -> Iterator[str]:
    with https(ca, "127.0.0.1", "localhost") as url:
        yield url


def kubeconfig(path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> str:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return str(path)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def ca_data(ca: trustme.CA) -> str:
    return b64(ca.cert_pem.bytes())


def echo(client: KubeClient, path: str = "/api/v1/namespaces", **kwargs: Any) -> dict[str, Any]:
    answer: dict[str, Any] = client.request(kwargs.pop("method", "GET"), path, timeout=5, **kwargs)
    return answer


# --- kubeconfig ------------------------------------------------------------------------------------


def test_token_and_ca_data_authenticate_and_every_request_is_counted(tmp_path, ca, server) -> None:
    client = api_client(
        kubeconfig(
            tmp_path / "kc", {"server": server, "certificate-authority-data": ca_data(ca)}, {"token": "t0k"}
        )
    )
    assert echo(client)["authorization"] == "Bearer t0k"
    echo(client)
    assert client.calls == 2


def test_ca_file_and_token_file_are_relative_to_the_kubeconfig_and_the_token_is_reread(
    tmp_path, ca, server, monkeypatch
) -> None:
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    (tmp_path / "token").write_text("first\n")
    client = api_client(
        kubeconfig(
            tmp_path / "kc", {"server": server, "certificate-authority": "ca.crt"}, {"tokenFile": "token"}
        )
    )
    assert echo(client)["authorization"] == "Bearer first"
    (tmp_path / "token").write_text("rotated\n")
    assert echo(client)["authorization"] == "Bearer first"  # re-read each minute, not each call
    monkeypatch.setattr(kube_http, "TOKEN_FILE_REFRESH_SECONDS", 0.0)
    client._credentials.invalidate()
    assert echo(client)["authorization"] == "Bearer rotated"


def test_client_certificate_from_data_and_from_files(tmp_path, ca, server) -> None:
    cert = ca.issue_cert("stagegate-user", common_name="stagegate-user")
    cluster = {"server": server, "certificate-authority-data": ca_data(ca)}
    from_data = api_client(
        kubeconfig(
            tmp_path / "data",
            cluster,
            {
                "client-certificate-data": b64(cert.cert_chain_pems[0].bytes()),
                "client-key-data": b64(cert.private_key_pem.bytes()),
            },
        )
    )
    answer = echo(from_data)
    assert (answer["client"], answer["authorization"]) == ("stagegate-user", None)
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "user.crt"))
    cert.private_key_pem.write_to_path(str(tmp_path / "user.key"))
    from_files = api_client(
        kubeconfig(
            tmp_path / "files",
            cluster,
            {"client-certificate": "user.crt", "client-key": str(tmp_path / "user.key")},
        )
    )
    assert echo(from_files)["client"] == "stagegate-user"


def test_a_server_certificate_from_another_ca_is_refused_unless_insecure(tmp_path, server) -> None:
    other = trustme.CA()
    strict = api_client(
        kubeconfig(
            tmp_path / "a", {"server": server, "certificate-authority-data": ca_data(other)}, {"token": "t"}
        )
    )
    with pytest.raises(RetryableError, match="TLS error"):
        KubeGates(strict, timeout=5).get_namespace("x")
    insecure = api_client(
        kubeconfig(tmp_path / "b", {"server": server, "insecure-skip-tls-verify": True}, {"token": "t"})
    )
    assert echo(insecure)["authorization"] == "Bearer t"


def test_tls_server_name_is_the_name_checked(tmp_path, ca) -> None:
    with https(ca, "kube.example") as url:
        cluster = {"server": url, "certificate-authority-data": ca_data(ca)}
        without = api_client(kubeconfig(tmp_path / "a", cluster, {"token": "t"}))
        with pytest.raises(urllib3.exceptions.HTTPError):
            echo(without)
        named = api_client(
            kubeconfig(tmp_path / "b", {**cluster, "tls-server-name": "kube.example"}, {"token": "t"})
        )
        assert echo(named)["authorization"] == "Bearer t"


def exec_plugin(tmp_path: Path, status: dict[str, Any]) -> Path:
    """A plugin that answers `status`, with its args and env in the token, and counts its runs."""
    script = tmp_path / "plugin.py"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"runs = {str(tmp_path / 'runs')!r}\n"
        "with open(runs, 'a') as f: f.write('x')\n"
        "info = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
        f"status = {status!r}\n"
        "server = info['spec']['cluster']['server'][:5]\n"
        "status.setdefault('token', '-'.join([*sys.argv[1:], os.environ['PLUGIN_ENV'], server]))\n"
        "print(json.dumps({'apiVersion': info['apiVersion'], 'kind': 'ExecCredential', 'status': status}))\n"
    )
    script.chmod(0o755)
    return script


def exec_user(script: Path, **extra: Any) -> dict[str, Any]:
    return {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": str(script),
            "args": ["a", "b"],
            "env": [{"name": "PLUGIN_ENV", "value": "e"}],
            "provideClusterInfo": True,
            "interactiveMode": "Never",
            **extra,
        }
    }


def runs(tmp_path: Path) -> int:
    return len((tmp_path / "runs").read_text()) if (tmp_path / "runs").exists() else 0


def test_exec_plugin_token_is_cached_until_it_expires(tmp_path, ca, server) -> None:
    later = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    script = exec_plugin(tmp_path, {"expirationTimestamp": later})
    cluster = {"server": server, "certificate-authority-data": ca_data(ca)}
    client = api_client(kubeconfig(tmp_path / "kc", cluster, exec_user(script)))
    assert runs(tmp_path) == 0  # nothing runs at start
    assert echo(client)["authorization"] == "Bearer a-b-e-https"
    echo(client)
    assert runs(tmp_path) == 1


def test_exec_plugin_token_expired_or_refused_is_fetched_again(tmp_path, ca, server) -> None:
    past = "2020-01-01T00:00:00Z"
    script = exec_plugin(tmp_path, {"expirationTimestamp": past})
    cluster = {"server": server, "certificate-authority-data": ca_data(ca)}
    client = api_client(kubeconfig(tmp_path / "kc", cluster, exec_user(script)))
    echo(client)
    echo(client)
    assert runs(tmp_path) == 2
    (tmp_path / "runs").unlink()
    script = exec_plugin(tmp_path, {})  # no expiry: kept until the server refuses it
    client = api_client(kubeconfig(tmp_path / "kc2", cluster, exec_user(script)))
    echo(client)
    echo(client)
    with pytest.raises(ApiError):
        echo(client, "/status/401")
    echo(client)
    assert runs(tmp_path) == 2


def test_exec_plugin_client_certificate(tmp_path, ca, server) -> None:
    cert = ca.issue_cert("exec-user", common_name="exec-user")
    script = exec_plugin(
        tmp_path,
        {
            "token": "",
            "clientCertificateData": cert.cert_chain_pems[0].bytes().decode(),
            "clientKeyData": cert.private_key_pem.bytes().decode(),
        },
    )
    cluster = {"server": server, "certificate-authority-data": ca_data(ca)}
    client = api_client(kubeconfig(tmp_path / "kc", cluster, exec_user(script)))
    assert echo(client)["client"] == "exec-user"


def test_exec_plugin_failure_is_retryable_and_names_no_secret(tmp_path, server) -> None:
    script = tmp_path / "fail.sh"
    script.write_text("#!/bin/sh\necho secret-ish >&2\nexit 3\n")
    script.chmod(0o755)
    client = api_client(
        kubeconfig(tmp_path / "kc", {"server": server, "insecure-skip-tls-verify": True}, exec_user(script))
    )
    with pytest.raises(CredentialError, match="exited with 3"):
        echo(client)
    with pytest.raises(RetryableError, match="no credentials") as caught:
        KubeGates(client, timeout=5).get_namespace("x")
    assert "secret-ish" not in str(caught.value)


def test_exec_plugin_that_needs_a_terminal_is_refused_at_start(tmp_path, server) -> None:
    with pytest.raises(ConfigError, match="interactiveMode Always"):
        api_client(
            kubeconfig(
                tmp_path / "kc", {"server": server}, exec_user(tmp_path / "p", interactiveMode="Always")
            )
        )


CONTEXT = (
    "current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
    "clusters: [{name: c, cluster: {server: 'https://h'}}]\n"
)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("clusters: [", "not valid YAML"),
        ("- a list", "not a mapping"),
        ("apiVersion: v1\nkind: Config\n", "no current-context"),
        (
            "current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n",
            "no cluster named 'c'",
        ),
        (
            f"{CONTEXT}users: [{{name: u, user: {{client-certificate-data: eA==}}}}]\n",
            "without its key",
        ),
        (
            f"{CONTEXT}users: [{{name: u, user: {{auth-provider: {{name: gcp}}}}}}]\n",
            "auth-provider is not supported",
        ),
    ],
)
def test_a_broken_kubeconfig_is_a_configuration_error_naming_it(tmp_path, content: str, message: str) -> None:
    path = tmp_path / "kc"
    path.write_text(content)
    with pytest.raises(ConfigError, match=f"KUBECONFIG={path}.*{message}"):
        api_client(str(path))


def test_a_missing_kubeconfig_or_token_file_is_a_configuration_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match=f"KUBECONFIG={tmp_path / 'missing'}"):
        api_client(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="KUBECONFIG="):
        api_client(kubeconfig(tmp_path / "kc", {"server": "https://h"}, {"tokenFile": "gone"}))


# --- in-cluster ------------------------------------------------------------------------------------


def test_in_cluster_uses_the_service_account_and_rereads_its_token(tmp_path, ca, server, monkeypatch) -> None:
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    (tmp_path / "token").write_text("sa-1")
    port = server.rsplit(":", 1)[1]
    config = in_cluster_config(
        {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port}, tmp_path
    )
    assert config.server == server
    monkeypatch.setattr(kube_http, "TOKEN_FILE_REFRESH_SECONDS", 0.0)  # bound tokens rotate
    client = KubeClient(config)
    assert echo(client)["authorization"] == "Bearer sa-1"
    (tmp_path / "token").write_text("sa-2")
    assert echo(client)["authorization"] == "Bearer sa-2"
    assert (
        in_cluster_config(
            {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}, tmp_path
        ).server
        == "https://[fd00::1]:443"
    )


def test_in_cluster_without_its_files_is_a_configuration_error(monkeypatch) -> None:
    if kube_http.SERVICE_ACCOUNT.exists():
        pytest.skip("this machine runs in a pod")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(ConfigError, match=r"in-cluster config.*serviceaccount/token"):
        api_client(None)


# --- requests and errors ---------------------------------------------------------------------------


@pytest.fixture
def client(ca: trustme.CA, server: str) -> KubeClient:
    return KubeClient(KubeConfig(server=server, ca_pem=ca.cert_pem.bytes(), token="t"))


def test_json_bodies_query_and_merge_patch(client: KubeClient) -> None:
    sent = echo(
        client,
        "/apis/g/v1/x",
        method="PATCH",
        body={"a": 1},
        query={"fieldManager": "stagegate", "dryRun": "All"},
        content_type=kube_http.MERGE_PATCH,
    )
    assert sent["method"] == "PATCH"
    assert sent["path"] == "/apis/g/v1/x?fieldManager=stagegate&dryRun=All"
    assert sent["contentType"] == "application/merge-patch+json"
    assert sent["body"] == {"a": 1}
    assert echo(client, method="POST", body={"b": 2})["contentType"] == "application/json"


@pytest.mark.parametrize(
    ("status", "kind", "words"),
    [
        (409, KubeConflict, "Conflict"),
        (404, KubeNotFound, "Not Found"),
        (403, PermanentError, "refused it"),
        (422, PermanentError, "refused it"),
        (400, PermanentError, "refused it"),
        (500, RetryableError, "failed"),
        (429, RetryableError, "failed"),
    ],
)
def test_error_statuses_carry_the_body_and_map_to_stagegate_kinds(
    client: KubeClient, status: int, kind: type[Exception], words: str
) -> None:
    with pytest.raises(ApiError) as raw:
        echo(client, f"/status/{status}")
    assert raw.value.status == status
    assert json.loads(raw.value.body)["message"] == f"said {status}"
    gates = KubeGates(client, timeout=5)
    with pytest.raises(kind, match=words) as caught:
        gates._call("do it", "GET", f"/status/{status}")
    assert "said" not in str(caught.value)  # the server's words go to the log, not the answer


def test_an_answer_that_is_not_json_is_retryable(client: KubeClient) -> None:
    with pytest.raises(ApiError, match="not JSON"):
        echo(client, "/html")
    with pytest.raises(RetryableError, match="HTTP 200"):
        KubeGates(client, timeout=5)._call("do it", "GET", "/html")


def test_nothing_listening_is_a_retryable_connection_error() -> None:
    gates = KubeGates(KubeClient(KubeConfig(server="https://127.0.0.1:9")), timeout=1)
    with pytest.raises(RetryableError, match="connection error"):
        gates.list_gates("x")
    assert gates.api.calls == 1


def test_a_silent_server_is_a_retryable_timeout() -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers the TLS handshake
    try:
        port = listener.getsockname()[1]
        gates = KubeGates(
            KubeClient(KubeConfig(server=f"https://127.0.0.1:{port}", insecure=True)), timeout=0.3
        )
        with pytest.raises(RetryableError, match="timed out"):
            gates.list_gates("x")
    finally:
        listener.close()


def test_calls_are_counted_across_threads(client: KubeClient) -> None:
    workers: list[threading.Thread] = [threading.Thread(target=echo, args=(client,)) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert client.calls == 8


def test_a_watch_yields_each_line_whatever_the_chunks_and_refuses_an_endless_one(
    client: KubeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = client.stream("/watch", query={"watch": "true"}, connect_timeout=5, read_timeout=5)
    assert [next(lines), next(lines)] == [{"type": "ADDED", "n": 1}, {"type": "MODIFIED", "n": 2}]
    lines.close()  # left early: its connection is closed, not reused
    assert echo(client)["method"] == "GET"
    monkeypatch.setattr(kube_http, "MAX_LINE_BYTES", 50)
    with pytest.raises(ApiError, match="MAX_LINE_BYTES"):
        list(client.stream("/watch", query={}, connect_timeout=5, read_timeout=5))
    with pytest.raises(ApiError) as refused:
        list(client.stream("/status/410", query={}, connect_timeout=5, read_timeout=5))
    assert refused.value.status == 410
    assert "said 410" in refused.value.body
