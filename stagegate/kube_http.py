"""A small Kubernetes REST client: JSON over one urllib3 pool, configured from a kubeconfig or in-cluster.

Why it exists: the official `kubernetes` package costs every function ~330 ms and ~45 MB at cold
start, for the handful of calls `stagegate.kube` makes. This module reads the configuration
(kubeconfig: token, token file, client certificates, CA, `insecure-skip-tls-verify`,
`tls-server-name`, exec credential plugins; in-cluster: the service account's token, re-read as it
rotates) and sends JSON requests. It knows nothing of resources: `stagegate.kube` builds the paths.

What it must never do: import `kubernetes`, connect or run a credential plugin before the first
request (a cold start pays for configuration only), or put a credential in an exception's text.
urllib3 is imported at the first request.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

if TYPE_CHECKING:
    import ssl

    import urllib3

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_FILE_REFRESH_SECONDS = 60.0  # what client-go does for a rotating service-account token
EXEC_TIMEOUT_SECONDS = 30.0
EXEC_EXPIRY_MARGIN_SECONDS = 10.0
MERGE_PATCH = "application/merge-patch+json"
MAX_LINE_BYTES = 16 * 1024 * 1024
"""The longest watch event read (one object: an etcd value is at most 1.5 MiB by default)."""
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")


class KubeConfigError(ValueError):
    """The kubeconfig or in-cluster configuration cannot be used."""


class CredentialError(Exception):
    """Credentials could not be obtained for a request (a token file unreadable, an exec plugin failed)."""


class ApiError(Exception):
    """The API server answered with an error status; `body` is its answer (a `Status` object, usually)."""

    def __init__(self, status: int, reason: str, body: str) -> None:
        super().__init__(f"HTTP {status} {reason}".rstrip())
        self.status = status
        self.reason = reason
        self.body = body


@dataclass(frozen=True)
class ExecConfig:
    """A kubeconfig user's `exec` credential plugin."""

    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    api_version: str = "client.authentication.k8s.io/v1beta1"
    provide_cluster_info: bool = False


@dataclass(frozen=True)
class KubeConfig:
    """Where the API server is and how to authenticate to it (certificates as PEM bytes)."""

    server: str
    ca_pem: bytes | None = None
    insecure: bool = False
    tls_server_name: str | None = None
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None
    client_cert_pem: bytes | None = field(default=None, repr=False)
    client_key_pem: bytes | None = field(default=None, repr=False)
    exec: ExecConfig | None = None


# --- configuration ---------------------------------------------------------------------------------


def load_kubeconfig(path: str) -> KubeConfig:
    """The current context of the kubeconfig at `path` (several files joined with `os.pathsep` merge,
    the first file naming an entry winning, as kubectl does). Raises `KubeConfigError` or `OSError`."""
    paths = [p for p in path.split(os.pathsep) if p]
    if not paths:
        raise KubeConfigError("no kubeconfig file named")
    docs: list[tuple[Path, Mapping[str, Any]]] = []
    for name in paths:
        file = Path(name).expanduser()
        if len(paths) > 1 and not file.exists():
            continue
        docs.append((file, _parse(file)))
    if not docs:
        raise KubeConfigError(f"none of the kubeconfig files exist: {path}")
    current = next((str(doc["current-context"]) for _, doc in docs if doc.get("current-context")), None)
    if not current:
        raise KubeConfigError("the kubeconfig has no current-context")
    context, _ = _named(docs, "contexts", "context", current)
    cluster, cluster_dir = _named(docs, "clusters", "cluster", str(context.get("cluster", "")))
    user_name = context.get("user")
    user, user_dir = _named(docs, "users", "user", str(user_name)) if user_name else ({}, docs[0][0].parent)
    return _config_from(cluster, cluster_dir, user, user_dir)


def _parse(file: Path) -> Mapping[str, Any]:
    import yaml

    text = file.read_text()
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KubeConfigError(f"{file} is not valid YAML: {exc}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, Mapping):
        raise KubeConfigError(f"{file} is not a kubeconfig (not a mapping)")
    return doc


def _named(
    docs: Sequence[tuple[Path, Mapping[str, Any]]], section: str, key: str, name: str
) -> tuple[Mapping[str, Any], Path]:
    """The entry `name` of `section` (its inner `key` mapping) and the folder its paths are relative to."""
    for file, doc in docs:
        for entry in doc.get(section) or []:
            if isinstance(entry, Mapping) and entry.get("name") == name:
                inner = entry.get(key) or {}
                if not isinstance(inner, Mapping):
                    raise KubeConfigError(f"{section[:-1]} {name!r} is not a mapping")
                return inner, file.parent
    raise KubeConfigError(f"the kubeconfig has no {section[:-1]} named {name!r}")


def _config_from(
    cluster: Mapping[str, Any], cluster_dir: Path, user: Mapping[str, Any], user_dir: Path
) -> KubeConfig:
    server = cluster.get("server")
    if not server:
        raise KubeConfigError("the current context's cluster has no server")
    if not str(server).startswith(("https://", "http://")):
        raise KubeConfigError(f"the cluster's server is not an http(s) URL: {server!r}")
    ca = _pem(cluster, "certificate-authority", cluster_dir)
    cert = _pem(user, "client-certificate", user_dir)
    key = _pem(user, "client-key", user_dir)
    if (cert is None) != (key is None):
        raise KubeConfigError("the user has a client certificate without its key, or a key without one")
    token_file = user.get("tokenFile")
    exec_config = _exec_config(user["exec"], user_dir) if user.get("exec") else None
    unsupported = sorted(set(user) & {"auth-provider", "username", "password", "as", "as-groups"})
    if unsupported:
        raise KubeConfigError(f"the user's {', '.join(unsupported)} is not supported; use a token or exec")
    token = user.get("token")
    if token_file and not token:
        _read_token(str(_relative(str(token_file), user_dir)))  # fail now if unreadable
    return KubeConfig(
        server=str(server).rstrip("/"),
        ca_pem=ca,
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        tls_server_name=str(cluster["tls-server-name"]) if cluster.get("tls-server-name") else None,
        token=str(token) if token else None,
        token_file=str(_relative(str(token_file), user_dir)) if token_file and not token else None,
        client_cert_pem=cert,
        client_key_pem=key,
        exec=exec_config,
    )


def _pem(entry: Mapping[str, Any], name: str, folder: Path) -> bytes | None:
    """`<name>-data` (base64) or the file `<name>` (relative to the kubeconfig's folder), as PEM bytes."""
    data = entry.get(f"{name}-data")
    if data:
        try:
            return base64.b64decode(str(data), validate=True)
        except ValueError as exc:
            raise KubeConfigError(f"{name}-data is not valid base64") from exc
    path = entry.get(name)
    return _relative(str(path), folder).read_bytes() if path else None


def _relative(path: str, folder: Path) -> Path:
    file = Path(path).expanduser()
    return file if file.is_absolute() else folder / file


def _exec_config(raw: Any, folder: Path) -> ExecConfig:
    if not isinstance(raw, Mapping) or not raw.get("command"):
        raise KubeConfigError("the user's exec has no command")
    api_version = str(raw.get("apiVersion") or "client.authentication.k8s.io/v1beta1")
    if api_version not in EXEC_API_VERSIONS:
        raise KubeConfigError(f"exec apiVersion {api_version!r} is not supported")
    if raw.get("interactiveMode") == "Always":
        raise KubeConfigError("an exec plugin with interactiveMode Always cannot run here (no terminal)")
    command = str(raw["command"])
    if os.sep in command and not Path(command).is_absolute():
        command = str(folder / command)  # as client-go: a relative path is relative to the kubeconfig
    env = tuple((str(e["name"]), str(e.get("value", ""))) for e in raw.get("env") or [])
    return ExecConfig(
        command=command,
        args=tuple(str(a) for a in raw.get("args") or []),
        env=env,
        api_version=api_version,
        provide_cluster_info=bool(raw.get("provideClusterInfo", False)),
    )


def in_cluster_config(environ: Mapping[str, str] = os.environ, account: Path = SERVICE_ACCOUNT) -> KubeConfig:
    """The pod's service account: KUBERNETES_SERVICE_HOST/PORT, its token file (re-read) and CA."""
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise KubeConfigError("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set")
    token_file = account / "token"
    _read_token(str(token_file))
    if ":" in host:
        host = f"[{host}]"
    return KubeConfig(
        server=f"https://{host}:{port}",
        ca_pem=(account / "ca.crt").read_bytes(),
        token_file=str(token_file),
    )


def _read_token(path: str) -> str:
    token = Path(path).read_text().strip()
    if not token:
        raise KubeConfigError(f"the token file {path} is empty")
    return token


# --- credentials -----------------------------------------------------------------------------------


@dataclass
class _Credential:
    token: str | None
    cert: tuple[bytes, bytes] | None
    expires: float | None  # monotonic seconds; None: until the server refuses it


class _Credentials:
    """The bearer token and client certificate of the next request: static, from a file re-read every
    minute, or from an exec plugin cached until its expiry (or the server's 401)."""

    def __init__(self, config: KubeConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._cached: _Credential | None = None
        static_cert = (
            (config.client_cert_pem, config.client_key_pem)
            if config.client_cert_pem and config.client_key_pem
            else None
        )
        self._static = _Credential(config.token, static_cert, None)

    def current(self) -> _Credential:
        if not self.config.token_file and not self.config.exec:
            return self._static
        with self._lock:
            cached = self._cached
            if cached is not None and (cached.expires is None or time.monotonic() < cached.expires):
                return cached
            fresh = self._exec() if self.config.exec else self._file()
            self._cached = fresh
            return fresh

    def invalidate(self) -> None:
        """The server refused the credential (401): fetch a new one for the next request."""
        with self._lock:
            self._cached = None

    def _file(self) -> _Credential:
        assert self.config.token_file is not None
        try:
            token = _read_token(self.config.token_file)
        except (OSError, KubeConfigError) as exc:
            raise CredentialError(f"cannot read the token file {self.config.token_file}: {exc}") from exc
        return _Credential(token, self._static.cert, time.monotonic() + TOKEN_FILE_REFRESH_SECONDS)

    def _exec(self) -> _Credential:
        plugin = self.config.exec
        assert plugin is not None
        spec: dict[str, Any] = {"interactive": False}
        if plugin.provide_cluster_info:
            cluster: dict[str, Any] = {"server": self.config.server}
            if self.config.ca_pem:
                cluster["certificate-authority-data"] = base64.b64encode(self.config.ca_pem).decode()
            if self.config.insecure:
                cluster["insecure-skip-tls-verify"] = True
            if self.config.tls_server_name:
                cluster["tls-server-name"] = self.config.tls_server_name
            spec["cluster"] = cluster
        info = {"apiVersion": plugin.api_version, "kind": "ExecCredential", "spec": spec}
        env = {**os.environ, **dict(plugin.env), "KUBERNETES_EXEC_INFO": json.dumps(info)}
        what = f"the exec credential plugin {plugin.command}"
        try:
            done = subprocess.run(
                [plugin.command, *plugin.args],
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=EXEC_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CredentialError(f"{what} could not run: {type(exc).__name__}") from exc
        if done.returncode != 0:
            raise CredentialError(f"{what} exited with {done.returncode}")
        try:
            answer = json.loads(done.stdout)
            if answer.get("kind") != "ExecCredential" or answer.get("apiVersion") != plugin.api_version:
                raise CredentialError(
                    f"{what} answered something other than a {plugin.api_version} ExecCredential"
                )
            status = answer["status"]
            token = status.get("token")
            cert_data, key_data = status.get("clientCertificateData"), status.get("clientKeyData")
            expiry = status.get("expirationTimestamp")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CredentialError(f"{what} answered no ExecCredential status") from exc
        if bool(cert_data) != bool(key_data):
            raise CredentialError(f"{what} answered a client certificate without its key, or a key alone")
        if not token and not cert_data:
            raise CredentialError(f"{what} answered neither a token nor a client certificate")
        expires = None
        if expiry:
            try:
                left = (parse_time(str(expiry)) - datetime.datetime.now(datetime.UTC)).total_seconds()
            except ValueError as exc:
                raise CredentialError(f"{what} answered an unreadable expirationTimestamp") from exc
            expires = time.monotonic() + left - EXEC_EXPIRY_MARGIN_SECONDS
        cert = (str(cert_data).encode(), str(key_data).encode()) if cert_data else self._static.cert
        return _Credential(str(token) if token else None, cert, expires)


def parse_time(value: str) -> datetime.datetime:
    """An RFC 3339 time (`Time` or `MicroTime`) as an aware datetime."""
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


# --- requests --------------------------------------------------------------------------------------


class KubeClient:
    """JSON requests to one API server over one connection pool; `calls` counts the requests sent."""

    def __init__(self, config: KubeConfig) -> None:
        self.config = config
        self.calls = 0
        self._lock = threading.Lock()
        self._credentials = _Credentials(config)
        self._pool: urllib3.PoolManager | None = None
        self._pool_cert: tuple[bytes, bytes] | None = None

    def request(
        self,
        method: str,
        path: str,
        *,
        timeout: float,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        """Send one request and return its decoded JSON answer; raise `ApiError` on an error status,
        `CredentialError` when no credential could be had, urllib3's errors when nothing answered."""
        import urllib3

        response = self._send(
            method,
            path,
            query,
            body,
            content_type,
            timeout=urllib3.Timeout(total=timeout),
            retries=urllib3.Retry(total=3, redirect=False, raise_on_status=False),
        )
        text = response.data.decode(errors="replace")
        if (
            not 200 <= response.status < 300
        ):  # redirects are not followed: a server that sends one is misconfigured
            raise ApiError(response.status, response.reason or "", text)
        try:
            return json.loads(text) if text else None
        except ValueError as exc:  # a proxy's page, say: the API server did not answer
            raise ApiError(response.status, "an answer that is not JSON", text) from exc

    def stream(
        self, path: str, *, query: Mapping[str, str], connect_timeout: float, read_timeout: float
    ) -> Iterator[Any]:
        """A watch: each line of the answer decoded as JSON, as the server sends it, until it ends the
        answer. A read waits at most `read_timeout` seconds (the server's own `timeoutSeconds` ends a
        quiet watch first); a line longer than `MAX_LINE_BYTES` ends it with `ApiError`."""
        import urllib3

        response = self._send(
            "GET",
            path,
            query,
            None,
            "application/json",
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            retries=urllib3.Retry(total=0, redirect=False, raise_on_status=False),
            preload_content=False,
        )
        try:
            if not 200 <= response.status < 300:
                raise ApiError(
                    response.status, response.reason or "", response.read().decode(errors="replace")
                )
            buffer = b""
            for chunk in response.stream(64 * 1024):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                if len(buffer) > MAX_LINE_BYTES:
                    raise ApiError(response.status, "a watch event over MAX_LINE_BYTES", "")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
        finally:
            response.close()  # never back to the pool: a watch left early has more to come on it

    def _send(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None,
        body: Any,
        content_type: str,
        **options: Any,
    ) -> urllib3.BaseHTTPResponse:
        """One request with the current credential (counted in `calls`); a 401 drops the credential so
        the next request gets a fresh one (a rotated token, an expired exec credential)."""
        with self._lock:
            self.calls += 1
        credential = self._credentials.current()
        headers = {"Accept": "application/json", "User-Agent": "stagegate"}
        if credential.token:
            headers["Authorization"] = f"Bearer {credential.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        url = self.config.server + path + (f"?{urlencode(query)}" if query else "")
        response = self._pool_for(credential.cert).request(method, url, body=data, headers=headers, **options)
        if response.status == 401:
            self._credentials.invalidate()
        return response

    def _pool_for(self, cert: tuple[bytes, bytes] | None) -> urllib3.PoolManager:
        with self._lock:
            if self._pool is None or cert != self._pool_cert:
                import urllib3

                if self._pool is not None:
                    self._pool.clear()
                kwargs: dict[str, Any] = {"maxsize": 10}
                if self.config.server.startswith("https://"):
                    kwargs["ssl_context"] = self._ssl_context(cert)
                    if self.config.tls_server_name:
                        kwargs["server_hostname"] = self.config.tls_server_name
                    if self.config.insecure:
                        kwargs["cert_reqs"] = "CERT_NONE"
                        kwargs["assert_hostname"] = False
                self._pool = urllib3.PoolManager(**kwargs)
                self._pool_cert = cert
            return self._pool

    def _ssl_context(self, cert: tuple[bytes, bytes] | None) -> ssl.SSLContext:
        import ssl

        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if self.config.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif self.config.ca_pem:
            context = ssl.create_default_context(cadata=self.config.ca_pem.decode())
        if cert is not None:
            _load_cert_chain(context, *cert)
        return context


def _load_cert_chain(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """`ssl` loads a client certificate from files only: write both to a private file, load, remove."""
    with tempfile.TemporaryDirectory() as folder:
        cert_file, key_file = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        for file, pem in ((cert_file, cert_pem), (key_file, key_pem)):
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
        context.load_cert_chain(str(cert_file), str(key_file))


def path(*segments: str) -> str:
    """`/a/b/c` from segments, each quoted (names are DNS labels, but nothing is assumed)."""
    return "/" + "/".join(quote(s, safe="") for s in segments)


def time_rfc3339(moment: datetime.datetime, *, micro: bool = False) -> str:
    """`Time` (seconds) or `MicroTime` as the API serializes them, in UTC."""
    utc = moment.astimezone(datetime.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")
