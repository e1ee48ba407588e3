"""Configuration, read once from the environment at start into one frozen object.

A malformed value fails at start with the variable's name, not at the first request. A missing
webhook token is not a start-up failure: the function then refuses every request and says why,
so a half-configured deploy is safe and visible.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


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


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name) or default
    if not raw.startswith(("https://", "http://")):
        raise ConfigError(f"{name} must be an http(s) URL, got {raw!r}")
    return raw.rstrip("/")


@dataclass(frozen=True)
class Settings:
    """Everything the functions read from their environment."""

    audit_webhook_token: str | None
    """`AUDIT_WEBHOOK_TOKEN`: the bearer token the kube-apiserver's audit webhook sends."""
    audit_deadline_seconds: float = 2.0
    """`AUDIT_DEADLINE_SECONDS`: the longest `k8s_audit_http` takes to answer, however slow Kubernetes is."""
    audit_max_body_bytes: int = 4 * 1024 * 1024
    """`AUDIT_MAX_BODY_BYTES`: larger request bodies are refused with 413."""
    kube_conflict_retries: int = 5
    """`KUBE_CONFLICT_RETRIES`: how often a conflicting gate write is recomputed and retried."""
    kubeconfig: str | None = None
    """`KUBECONFIG`: a kubeconfig file; without it the in-cluster service account is used."""
    github_webhook_secrets: tuple[str, ...] = ()
    """`GITHUB_WEBHOOK_SECRET`: the webhook secret; several, one per line, while rotating."""
    github_token: str | None = None
    """`GITHUB_TOKEN`: token that reads deployments of the watched repositories."""
    github_api_url: str = "https://api.github.com"
    """`GITHUB_API_URL`: REST base URL (GitHub Enterprise: `https://HOST/api/v3`)."""
    github_max_body_bytes: int = 5 * 1024 * 1024
    """`GITHUB_WEBHOOK_MAX_BODY_BYTES`: larger deliveries are refused with 413."""
    github_deadline_seconds: float = 8.0
    """`GITHUB_WEBHOOK_DEADLINE_SECONDS`: the longest a webhook answer takes (GitHub gives up after 10 s)."""
    resync_token: str | None = None
    """`RESYNC_TOKEN`: the bearer token `resync_http` requires (Cloud Scheduler sends it)."""
    bridge_transport: str | None = None
    """`BRIDGE_TRANSPORT`: where `audit_bridge` publishes: `pubsub` or `eventbridge`."""
    bridge_pubsub_topic: str | None = None
    """`BRIDGE_PUBSUB_TOPIC`: the topic path `projects/P/topics/T`, for `pubsub`."""
    bridge_event_bus: str | None = None
    """`BRIDGE_EVENT_BUS`: the EventBridge bus name, for `eventbridge`."""
    namespaces: tuple[str, ...] = ()
    """`STAGEGATE_NAMESPACES`: comma-separated namespaces to watch; empty means all."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: the process environment); raise `ConfigError`."""
        env = os.environ if env is None else env
        token = env.get("AUDIT_WEBHOOK_TOKEN") or None
        if token is not None and token != token.strip():
            raise ConfigError("AUDIT_WEBHOOK_TOKEN has leading or trailing white space")
        return cls(
            audit_webhook_token=token,
            audit_deadline_seconds=_positive_float(env, "AUDIT_DEADLINE_SECONDS", cls.audit_deadline_seconds),
            audit_max_body_bytes=_positive_int(env, "AUDIT_MAX_BODY_BYTES", cls.audit_max_body_bytes),
            kube_conflict_retries=_positive_int(env, "KUBE_CONFLICT_RETRIES", cls.kube_conflict_retries),
            kubeconfig=env.get("KUBECONFIG") or None,
            github_webhook_secrets=tuple(
                line.strip() for line in env.get("GITHUB_WEBHOOK_SECRET", "").splitlines() if line.strip()
            ),
            github_token=env.get("GITHUB_TOKEN") or None,
            github_api_url=_url(env, "GITHUB_API_URL", cls.github_api_url),
            github_max_body_bytes=_positive_int(
                env, "GITHUB_WEBHOOK_MAX_BODY_BYTES", cls.github_max_body_bytes
            ),
            github_deadline_seconds=_positive_float(
                env, "GITHUB_WEBHOOK_DEADLINE_SECONDS", cls.github_deadline_seconds
            ),
            resync_token=env.get("RESYNC_TOKEN") or None,
            bridge_transport=env.get("BRIDGE_TRANSPORT") or None,
            bridge_pubsub_topic=env.get("BRIDGE_PUBSUB_TOPIC") or None,
            bridge_event_bus=env.get("BRIDGE_EVENT_BUS") or None,
            namespaces=tuple(
                ns.strip() for ns in env.get("STAGEGATE_NAMESPACES", "").split(",") if ns.strip()
            ),
        )

    def require_github_token(self) -> str:
        """The GitHub token, for the functions that cannot work without one."""
        if not self.github_token:
            raise ConfigError("GITHUB_TOKEN is required to read bake results from GitHub")
        return self.github_token
