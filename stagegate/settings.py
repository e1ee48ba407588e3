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


@dataclass(frozen=True)
class Settings:
    """Everything the audit functions read from their environment."""

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
        )
