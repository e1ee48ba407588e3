"""Configuration, read once from the environment at start into one frozen object.

A malformed value fails at start with the variable's name, not at the first request. A missing
webhook token is not a start-up failure: the function then refuses every request and says why,
so a half-configured deploy is safe and visible.

Credentials (tokens, webhook secrets, the App key) are trimmed of the line break `echo` and secret
files add and checked here, so a malformed one stops the function at start instead of ending up,
quoted in a client library's error, in an answer. No message and no repr ever shows one, and each
is registered with the log redaction.
"""

from __future__ import annotations

import ipaddress
import os
import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from shared.protection import ProtectionRules
from shared.report import URL_FIELDS
from shared.trust import RepositoryPolicy
from stagegate.logs import register_secrets


class ConfigError(ValueError):
    """An environment variable is missing or malformed; the message names it."""


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from exc
    if not value > 0:
        raise ConfigError(f"{name} must be greater than 0, got {raw!r}")
    return value


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc
    if value <= 0:
        raise ConfigError(f"{name} must be greater than 0, got {raw!r}")
    return value


def _port(env: Mapping[str, str], name: str) -> int | None:
    """A TCP port (1-65535), or None when unset."""
    if not env.get(name):
        return None
    value = _positive_int(env, name, 0)
    if value > 65535:
        raise ConfigError(f"{name} must be a TCP port (1-65535), got {env[name]!r}")
    return value


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    """An https URL; plain http only to this machine (loopback), where nothing on the way can read it."""
    raw = env.get(name) or default
    try:
        parts = urlsplit(raw)
        host = parts.hostname or ""
    except ValueError as exc:
        raise ConfigError(f"{name} must be an https URL, got {raw!r}") from exc
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"{name} must not carry credentials (user:password@); the value is not shown")
    if parts.scheme not in ("https", "http") or not host:
        raise ConfigError(f"{name} must be an https URL, got {raw!r}")
    if parts.scheme == "http" and not _loopback(host):
        raise ConfigError(
            f"{name} must be an https URL; http is accepted only for a loopback host "
            f"(127.0.0.0/8, ::1, localhost), got {raw!r}"
        )
    return raw.rstrip("/")


def _loopback(host: str) -> bool:
    if host.rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _credential(env: Mapping[str, str], name: str) -> str | None:
    """A token that goes into an HTTP header, checked at start; None when unset or empty.

    The line break `echo` and secret files add at the end is dropped. Any other white space around
    it, or a character a header cannot carry (white space, a control character, non-ASCII), stops
    the function, naming the variable and never showing the value.
    """
    value = env.get(name, "").rstrip("\r\n")
    if not value:
        return None
    if value != value.strip():
        raise ConfigError(f"{name} has leading or trailing white space")
    bad = next((i for i, char in enumerate(value) if not "!" <= char <= "~"), None)
    if bad is not None:
        raise ConfigError(
            f"{name} has a character an HTTP header cannot carry at position {bad + 1} (white space, a "
            "control character or a non-ASCII character); the value is not shown"
        )
    return value


def _secret_lines(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """One secret per line: split on line feeds only (CRLF too), each trimmed of spaces and tabs.

    Not `str.splitlines()`, which also splits on form feeds, vertical tabs and other separators: a
    secret containing one would be accepted in fragments.
    """
    lines = (line.removesuffix("\r").strip(" \t") for line in env.get(name, "").split("\n"))
    return tuple(line for line in lines if line)


_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _label(env: Mapping[str, str], name: str, default: tuple[str, str]) -> tuple[str, str]:
    """A `key=value` Kubernetes label (key: optional `prefix/` and a name; value may be empty)."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    key, sep, value = raw.partition("=")
    prefix, slash, label_name = key.rpartition("/")
    valid = (
        sep == "="
        and _LABEL_NAME.fullmatch(label_name) is not None
        and (not slash or (len(prefix) <= 253 and _DNS_SUBDOMAIN.fullmatch(prefix) is not None))
        and (value == "" or _LABEL_NAME.fullmatch(value) is not None)
    )
    if not valid:
        raise ConfigError(
            f"{name} must be a Kubernetes label as key=value, e.g. {'='.join(default)}; got {raw!r}"
        )
    return key, value


_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?")


def _logins(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma- or space-separated GitHub logins (a bot's as `<slug>[bot]`)."""
    logins = tuple(env.get(name, "").replace(",", " ").split())
    bad = [login for login in logins if not _LOGIN.fullmatch(login)]
    if bad:
        raise ConfigError(f"{name} must list GitHub logins separated by commas; {bad[0]!r} is not one")
    return logins


def _repositories(env: Mapping[str, str], name: str) -> RepositoryPolicy:
    try:
        return RepositoryPolicy.parse(env.get(name, ""))
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from exc


def _protection_rules(env: Mapping[str, str], name: str) -> ProtectionRules:
    try:
        return ProtectionRules.parse(env.get(name, ""))
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from exc


APP_VARIABLES = ("GITHUB_APP_ID", "GITHUB_APP_PRIVATE_KEY", "GITHUB_APP_INSTALLATION_ID")
CREDENTIALS = "GITHUB_TOKEN or GITHUB_APP_ID/GITHUB_APP_PRIVATE_KEY/GITHUB_APP_INSTALLATION_ID"


@dataclass(frozen=True)
class GitHubApp:
    """GitHub App credentials: the functions act as one installation of the App."""

    app_id: int
    """`GITHUB_APP_ID`: the App's numeric ID (the `iss` of the JWTs it signs)."""
    private_key: str = field(repr=False)
    """`GITHUB_APP_PRIVATE_KEY` (or the file `GITHUB_APP_PRIVATE_KEY_FILE`): the App's RSA key, PEM."""
    installation_id: int
    """`GITHUB_APP_INSTALLATION_ID`: the installation whose repositories are read."""


def _app_id(env: Mapping[str, str], name: str) -> int:
    raw = env[name].strip()
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc
    if value <= 0:
        raise ConfigError(f"{name} must be greater than 0, got {raw!r}")
    return value


def _private_key(env: Mapping[str, str]) -> tuple[str, str] | None:
    """(PEM text, the variable it came from), or None when neither variable is set."""
    text, path = env.get("GITHUB_APP_PRIVATE_KEY") or None, env.get("GITHUB_APP_PRIVATE_KEY_FILE") or None
    if text and path:
        raise ConfigError("GITHUB_APP_PRIVATE_KEY and GITHUB_APP_PRIVATE_KEY_FILE are both set: set only one")
    if path:
        try:
            with open(path, encoding="utf-8") as file:
                return file.read(), "GITHUB_APP_PRIVATE_KEY_FILE"
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"GITHUB_APP_PRIVATE_KEY_FILE={path} cannot be read: {exc}") from exc
    if text:
        text = text.strip()  # the line break `echo` adds must not hide escaped ones
        if "\n" not in text and "\\n" in text:  # a secret store that kept the line breaks escaped
            text = text.replace("\\n", "\n")
        return text, "GITHUB_APP_PRIVATE_KEY"
    return None


def _check_rsa_pem(pem: str, name: str) -> None:
    # cryptography comes with PyGithub (pyjwt[crypto]); loaded only when an App key is configured.
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem.strip().encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{name} is not a PEM private key without a passphrase: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{name} must be an RSA private key (GitHub Apps sign with RS256)")


def _github_app(env: Mapping[str, str]) -> GitHubApp | None:
    key = _private_key(env)
    present = {
        "GITHUB_APP_ID": bool(env.get("GITHUB_APP_ID")),
        "GITHUB_APP_PRIVATE_KEY": key is not None,
        "GITHUB_APP_INSTALLATION_ID": bool(env.get("GITHUB_APP_INSTALLATION_ID")),
    }
    if not any(present.values()):
        return None
    missing = [
        "GITHUB_APP_PRIVATE_KEY (or GITHUB_APP_PRIVATE_KEY_FILE)"
        if name == "GITHUB_APP_PRIVATE_KEY"
        else name
        for name, there in present.items()
        if not there
    ]
    if missing:
        raise ConfigError(
            "GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY and GITHUB_APP_INSTALLATION_ID go together; "
            f"missing: {', '.join(missing)}"
        )
    assert key is not None
    pem, source = key
    app_id = _app_id(env, "GITHUB_APP_ID")
    installation_id = _app_id(env, "GITHUB_APP_INSTALLATION_ID")
    _check_rsa_pem(pem, source)
    return GitHubApp(app_id=app_id, private_key=pem.strip() + "\n", installation_id=installation_id)


def _github_token(env: Mapping[str, str]) -> str | None:
    token = _credential(env, "GITHUB_TOKEN")
    app_set = [name for name in (*APP_VARIABLES, "GITHUB_APP_PRIVATE_KEY_FILE") if env.get(name)]
    if token is not None and app_set:
        raise ConfigError(
            f"GITHUB_TOKEN and GitHub App credentials ({', '.join(app_set)}) are both set: "
            "ambiguous, set either GITHUB_TOKEN or the GITHUB_APP_* variables"
        )
    return token


RESYNC_AUTH_MODES = ("bearer", "platform")


def _flag(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("false", "0", "no"):
        return False
    if raw in ("true", "1", "yes"):
        return True
    raise ConfigError(f"{name} must be true or false, got {env.get(name)!r}")


def _url_template(env: Mapping[str, str], name: str) -> str | None:
    """An http(s) URL template naming only `shared.report.URL_FIELDS` in braces; refused at start."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        fields = {field for _, field, _, _ in string.Formatter().parse(raw) if field is not None}
    except ValueError as exc:
        raise ConfigError(f"{name} is not a valid template ({exc}): {raw!r}") from exc
    unknown = fields - set(URL_FIELDS)
    if unknown:
        raise ConfigError(
            f"{name} names {', '.join(sorted(unknown))}; it may name only {', '.join(URL_FIELDS)}"
        )
    if urlsplit(raw).scheme not in ("http", "https"):
        raise ConfigError(f"{name} must be an http or https URL, got {raw!r}")
    return raw


def _report_timing(env: Mapping[str, str]) -> tuple[float, int]:
    deadline = _positive_float(env, "REPORTER_DEADLINE_SECONDS", Settings.reporter_deadline_seconds)
    lease = _positive_int(env, "REPORT_LEASE_SECONDS", Settings.report_lease_seconds)
    if lease <= deadline:
        raise ConfigError(
            f"REPORT_LEASE_SECONDS ({lease}) must exceed REPORTER_DEADLINE_SECONDS ({deadline:g}): a report "
            "must be over before another may take its Rollout's Lease"
        )
    return deadline, lease


def _resync_auth(env: Mapping[str, str]) -> str:
    """How `resync_http` authenticates callers; `platform` and a `RESYNC_TOKEN` together are ambiguous."""
    mode = env.get("RESYNC_AUTH", "").strip() or "bearer"
    if mode not in RESYNC_AUTH_MODES:
        raise ConfigError(f"RESYNC_AUTH must be one of {', '.join(RESYNC_AUTH_MODES)}, got {mode!r}")
    if mode == "platform" and env.get("RESYNC_TOKEN", "").strip():
        raise ConfigError(
            "RESYNC_AUTH=platform and RESYNC_TOKEN are both set: with platform authentication no token is "
            "checked, so remove RESYNC_TOKEN (or set RESYNC_AUTH=bearer)"
        )
    return mode


@dataclass(frozen=True)
class Settings:
    """Everything the functions read from their environment."""

    audit_webhook_token: str | None = field(repr=False)
    """`AUDIT_WEBHOOK_TOKEN`: the bearer token the kube-apiserver's audit webhook sends."""
    audit_deadline_seconds: float = 2.0
    """`AUDIT_DEADLINE_SECONDS`: the longest `k8s_audit_http` takes to answer, however slow Kubernetes is."""
    audit_max_body_bytes: int = 4 * 1024 * 1024
    """`AUDIT_MAX_BODY_BYTES`: larger request bodies are refused with 413."""
    audit_max_events: int = 400
    """`AUDIT_MAX_EVENTS`: a delivery with more audit events is refused with 413, changing nothing (400 is
    the kube-apiserver's default `--audit-webhook-batch-max-size`; blocking mode sends one per request)."""
    kube_conflict_retries: int = 5
    """`KUBE_CONFLICT_RETRIES`: how often a conflicting gate write is recomputed and retried."""
    kubeconfig: str | None = None
    """`KUBECONFIG`: a kubeconfig file; without it the in-cluster service account is used."""
    github_webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    """`GITHUB_WEBHOOK_SECRET`: the webhook secret; several, one per line, while rotating."""
    github_token: str | None = field(default=None, repr=False)
    """`GITHUB_TOKEN`: token that reads deployments of the watched repositories."""
    github_app: GitHubApp | None = None
    """`GITHUB_APP_ID`, `GITHUB_APP_PRIVATE_KEY(_FILE)`, `GITHUB_APP_INSTALLATION_ID`: instead of a token."""
    github_api_url: str = "https://api.github.com"
    """`GITHUB_API_URL`: REST base URL (GitHub Enterprise: `https://HOST/api/v3`)."""
    github_max_body_bytes: int = 5 * 1024 * 1024
    """`GITHUB_WEBHOOK_MAX_BODY_BYTES`: larger deliveries are refused with 413."""
    github_deadline_seconds: float = 8.0
    """`GITHUB_WEBHOOK_DEADLINE_SECONDS`: the longest a webhook answer takes (GitHub gives up after 10 s)."""
    github_trusted_creators: tuple[str, ...] = ()
    """`GITHUB_TRUSTED_CREATORS`: GitHub logins whose deployments and statuses count besides the
    credentials' own identity (e.g. the Go environment controller's during a migration)."""
    github_repositories: RepositoryPolicy = field(default_factory=RepositoryPolicy)
    """`GITHUB_REPOSITORIES`: `owner/repo` patterns (`*` allowed, `namespace=owner/repo` for one namespace)
    Environments may name in `spec.backend.project`; unset means any repository."""
    protection_rules: ProtectionRules = field(default_factory=ProtectionRules)
    """`PROTECTION_RULES`: which bake the GitHub Actions jobs held by stagegate's deployment protection
    rule wait for, one `owner/repo:environment=kuberik/name/upstream` per line (README "GitHub Actions
    jobs wait for the same bake"); needs GitHub App credentials."""
    protection_max_runs: int = 50
    """`PROTECTION_MAX_RUNS`: held workflow runs looked at per rule in one call (a bake result, a resync)."""
    resync_token: str | None = field(default=None, repr=False)
    """`RESYNC_TOKEN`: the bearer token `resync_http` requires (Cloud Scheduler sends it)."""
    resync_auth: str = "bearer"
    """`RESYNC_AUTH`: `bearer` (`resync_http` checks `RESYNC_TOKEN`) or `platform` (the platform lets only
    authorized callers through, e.g. Cloud Run IAM with Cloud Scheduler's OIDC token; no token then)."""
    bridge_transport: str | None = None
    """`BRIDGE_TRANSPORT`: where `audit_bridge` publishes: `pubsub` or `eventbridge`."""
    bridge_pubsub_topic: str | None = None
    """`BRIDGE_PUBSUB_TOPIC`: the topic path `projects/P/topics/T`, for `pubsub`."""
    bridge_event_bus: str | None = None
    """`BRIDGE_EVENT_BUS`: the EventBridge bus name, for `eventbridge`."""
    report_transport: str | None = None
    """`REPORT_TRANSPORT`: where `k8s_audit_http` and `audit_bridge` hand Rollout status changes for the
    reporter: `pubsub` (ordered by Rollout) or `sqs` (a FIFO queue, grouped by Rollout); unset: nowhere."""
    report_pubsub_topic: str | None = None
    """`REPORT_PUBSUB_TOPIC`: the reporter's topic path `projects/P/topics/T`, for `pubsub`."""
    report_sqs_queue_url: str | None = None
    """`REPORT_SQS_QUEUE_URL`: the reporter's FIFO queue URL, for `sqs`."""
    reporter_deadline_seconds: float = 60.0
    """`REPORTER_DEADLINE_SECONDS`: a report makes no new GitHub write past this; the rest follow on retry."""
    report_lease_seconds: int = 120
    """`REPORT_LEASE_SECONDS`: how long a report holds its Rollout's Lease at most (a crashed report's
    Lease runs out after it); must exceed `REPORTER_DEADLINE_SECONDS`."""
    environment_status: bool = True
    """`ENVIRONMENT_STATUS`: `github_webhook` and the resync write each Environment's `.status` as kuberik's
    environment controller does (for its rollout-dashboard); `false` while that controller still runs."""
    report_environment_url: str | None = None
    """`REPORT_ENVIRONMENT_URL`: the URL the reporter writes as each status's `environment_url` (kuberik's
    rollout-dashboard, e.g. `https://rollouts.example.com/rollouts/{namespace}/{name}`); the Environment
    status shows it back. Braces may name `namespace`, `name`, `environment`, `rollout`."""
    resync_reports: bool = False
    """`RESYNC_REPORTS`: the scheduled resync also reports every governed Rollout's history on GitHub
    (turn on with the reporter, once the Go environment controller no longer writes there)."""
    namespaces: tuple[str, ...] = ()
    """`STAGEGATE_NAMESPACES`: comma-separated namespaces to watch; empty means all."""
    follow_namespace: str = "stagegate-system"
    """`FOLLOW_LEASE_NAMESPACE` (else `POD_NAMESPACE`): where the follower's Lease `stagegate-follower` is."""
    follow_reports: bool = True
    """`FOLLOW_REPORTS`: the follower runs the reporter on the Rollout changes it sees (`false` to leave
    recording bakes to kuberik's Go environment controller while it still runs, or when rolling back)."""
    follow_lease_seconds: int = 15
    """`FOLLOW_LEASE_SECONDS`: how long the follower's Lease stands unrenewed before a standby replica
    takes over (seen on the standby's own clock); the holder renews it every third of that."""
    metrics_port: int | None = None
    """`METRICS_PORT`: serve Prometheus metrics (`stagegate.metrics`) on this port; unset, none are kept
    (Cloud Run and Lambda count from the log lines instead)."""
    admission_deadline_seconds: float = 3.0
    """`ADMISSION_DEADLINE_SECONDS`: the longest `k8s_admission` takes to decide (and each Kubernetes call's
    timeout); past it the deploy guard refuses. Keep it below the webhooks' `timeoutSeconds` (5)."""
    admission_max_body_bytes: int = 4 * 1024 * 1024
    """`ADMISSION_MAX_BODY_BYTES`: larger reviews are refused with 413 (the guard then fails closed)."""
    admission_guard_label: tuple[str, str] = ("stagegate.kuberik.com/guard", "enabled")
    """`ADMISSION_GUARD_LABEL`: the namespace label (`key=value`) that opts a namespace in to the guard's
    refusal of changes for Rollouts no Environment governs yet, and whose removal the namespace guard
    refuses without a reason (the deploy guard's namespaceSelector and the namespace guard's
    objectSelector name it too)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: the process environment); raise `ConfigError`.

        Every credential it reads is registered with the log redaction (`stagegate.logs`).
        """
        env = os.environ if env is None else env
        deadline, lease = _report_timing(env)
        settings = cls(
            audit_webhook_token=_credential(env, "AUDIT_WEBHOOK_TOKEN"),
            audit_deadline_seconds=_positive_float(env, "AUDIT_DEADLINE_SECONDS", cls.audit_deadline_seconds),
            audit_max_body_bytes=_positive_int(env, "AUDIT_MAX_BODY_BYTES", cls.audit_max_body_bytes),
            audit_max_events=_positive_int(env, "AUDIT_MAX_EVENTS", cls.audit_max_events),
            kube_conflict_retries=_positive_int(env, "KUBE_CONFLICT_RETRIES", cls.kube_conflict_retries),
            kubeconfig=env.get("KUBECONFIG") or None,
            github_webhook_secrets=_secret_lines(env, "GITHUB_WEBHOOK_SECRET"),
            github_token=_github_token(env),
            github_app=_github_app(env),
            github_api_url=_url(env, "GITHUB_API_URL", cls.github_api_url),
            github_max_body_bytes=_positive_int(
                env, "GITHUB_WEBHOOK_MAX_BODY_BYTES", cls.github_max_body_bytes
            ),
            github_deadline_seconds=_positive_float(
                env, "GITHUB_WEBHOOK_DEADLINE_SECONDS", cls.github_deadline_seconds
            ),
            github_trusted_creators=_logins(env, "GITHUB_TRUSTED_CREATORS"),
            github_repositories=_repositories(env, "GITHUB_REPOSITORIES"),
            protection_rules=_protection_rules(env, "PROTECTION_RULES"),
            protection_max_runs=_positive_int(env, "PROTECTION_MAX_RUNS", cls.protection_max_runs),
            resync_token=_credential(env, "RESYNC_TOKEN"),
            resync_auth=_resync_auth(env),
            bridge_transport=env.get("BRIDGE_TRANSPORT") or None,
            bridge_pubsub_topic=env.get("BRIDGE_PUBSUB_TOPIC") or None,
            bridge_event_bus=env.get("BRIDGE_EVENT_BUS") or None,
            report_transport=env.get("REPORT_TRANSPORT") or None,
            report_pubsub_topic=env.get("REPORT_PUBSUB_TOPIC") or None,
            report_sqs_queue_url=env.get("REPORT_SQS_QUEUE_URL") or None,
            reporter_deadline_seconds=deadline,
            report_lease_seconds=lease,
            report_environment_url=_url_template(env, "REPORT_ENVIRONMENT_URL"),
            resync_reports=_flag(env, "RESYNC_REPORTS"),
            environment_status=_flag(env, "ENVIRONMENT_STATUS", default=True),
            namespaces=tuple(
                ns.strip() for ns in env.get("STAGEGATE_NAMESPACES", "").split(",") if ns.strip()
            ),
            follow_namespace=env.get("FOLLOW_LEASE_NAMESPACE")
            or env.get("POD_NAMESPACE")
            or cls.follow_namespace,
            follow_lease_seconds=_positive_int(env, "FOLLOW_LEASE_SECONDS", cls.follow_lease_seconds),
            follow_reports=_flag(env, "FOLLOW_REPORTS", default=True),
            metrics_port=_port(env, "METRICS_PORT"),
            admission_deadline_seconds=_positive_float(
                env, "ADMISSION_DEADLINE_SECONDS", cls.admission_deadline_seconds
            ),
            admission_max_body_bytes=_positive_int(
                env, "ADMISSION_MAX_BODY_BYTES", cls.admission_max_body_bytes
            ),
            admission_guard_label=_label(env, "ADMISSION_GUARD_LABEL", cls.admission_guard_label),
        )
        register_secrets(settings.secrets())
        if settings.protection_rules and settings.github_app is None and settings.github_token:
            raise ConfigError(
                "PROTECTION_RULES needs GitHub App credentials (GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY, "
                "GITHUB_APP_INSTALLATION_ID), not GITHUB_TOKEN: GitHub lets only the App whose protection "
                "rule it is answer it"
            )
        return settings

    def secrets(self) -> Iterator[str]:
        """Every credential configured, for the log redaction (the key also line by line)."""
        yield from (s for s in (self.audit_webhook_token, self.github_token, self.resync_token) if s)
        yield from self.github_webhook_secrets
        if self.github_app is not None:
            yield self.github_app.private_key
            yield from (line for line in self.github_app.private_key.splitlines() if "-----" not in line)

    @property
    def has_github_credentials(self) -> bool:
        """Whether a token or App credentials are configured."""
        return bool(self.github_token) or self.github_app is not None

    def github_credentials(self) -> str | GitHubApp:
        """The token or the App credentials, for the functions that cannot work without one."""
        if self.github_app is not None:
            return self.github_app
        if not self.github_token:
            raise ConfigError(f"{CREDENTIALS} is required to read bake results from GitHub")
        return self.github_token
