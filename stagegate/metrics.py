"""Prometheus metrics of the in-cluster install: each function server and the follower serve them on
`METRICS_PORT` when it is set (`serve`), in the `prometheus-client` library's text format.

What an operator alerts on (the README's *Metrics and alerts* lists them with the suggested alerts):
admission decisions by outcome, gate changes (created, opened, narrowed), GitHub requests by outcome
and their latency, the reporter's lag from a history entry to its GitHub record, recomputes that
failed (a gate left closed although its upstream may have baked), and deliveries by the answer's
status code.

Off unless the port is set: then every call here is a check of one global, and `prometheus_client` is
never imported (it costs about 45 ms of a cold start). Cloud Run and Lambda count the same from the
JSON log lines instead (log-based metrics in `infra/gcp` and `infra/aws`), whose fields carry the same
labels.
"""

from __future__ import annotations

import threading


class _Served:
    """The process's metrics, once `serve` has started them."""

    lock = threading.Lock()
    metrics: _Metrics | None = None


SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Buckets of GitHub request latency: most answers take 0.1-1 s, the deadline is a few seconds."""
LAG_SECONDS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
"""Buckets of the reporter's lag: seconds on the follower's path, up to the resync's 10 minutes."""


class _Metrics:
    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.decisions = Counter(
            "stagegate_admission_decisions",
            "k8s_admission's answers, by webhook (deploy-guard, environment-gate, namespace-guard) and "
            "outcome (allowed, refused, override, error).",
            ["webhook", "outcome"],
        )
        self.gate_changes = Counter(
            "stagegate_gate_changes",
            "RolloutGate writes, by change: created, opened (versions allowed that were not), narrowed "
            "(versions no longer allowed), other (owner, Rollout, annotations).",
            ["change"],
        )
        self.github_requests = Counter(
            "stagegate_github_requests",
            "Requests to GitHub's API, by outcome: ok, rate_limited, client_error (4xx), server_error "
            "(5xx), transport_error (no answer).",
            ["outcome"],
        )
        self.github_seconds = Histogram(
            "stagegate_github_request_seconds", "How long GitHub took to answer.", buckets=SECONDS
        )
        self.report_lag = Histogram(
            "stagegate_report_lag_seconds",
            "From a Rollout history entry (its timestamp, the rollout controller's clock) to its bake "
            "state recorded on GitHub.",
            buckets=LAG_SECONDS,
        )
        self.recompute_failures = Counter(
            "stagegate_recompute_failures",
            "Environments whose gate could not be recomputed (GitHub or Kubernetes failed, or the deadline "
            "passed): while that lasts, a gate stays as it was, closed although its upstream baked.",
        )
        self.protection_answers = Counter(
            "stagegate_protection_answers",
            "Answers to GitHub Actions runs held by stagegate's deployment protection rule: approved, "
            "rejected, waiting (a status report), not_waiting (GitHub said the run no longer waits).",
            ["verdict"],
        )
        self.deliveries = Counter(
            "stagegate_deliveries",
            "Requests a function answered, by function and the answer's HTTP status code.",
            ["function", "code"],
        )


def serve(port: int | None) -> None:
    """Serve `/metrics` on `port` from now on (once per process; later calls do nothing); None: off."""
    if port is None:
        return
    with _Served.lock:
        if _Served.metrics is not None:
            return
        from prometheus_client import disable_created_metrics, start_http_server

        disable_created_metrics()  # type: ignore[no-untyped-call]  # `_created` series: noise
        metrics = _Metrics()
        start_http_server(port)
        _Served.metrics = metrics


def decision(webhook: str, outcome: str) -> None:
    if (m := _Served.metrics) is not None:
        m.decisions.labels(webhook, outcome).inc()


def gate_change(change: str) -> None:
    if (m := _Served.metrics) is not None:
        m.gate_changes.labels(change).inc()


def github_request(outcome: str, seconds: float) -> None:
    if (m := _Served.metrics) is not None:
        m.github_requests.labels(outcome).inc()
        m.github_seconds.observe(seconds)


def report_lag(seconds: float) -> None:
    if (m := _Served.metrics) is not None:
        m.report_lag.observe(max(seconds, 0.0))


def recompute_failure() -> None:
    if (m := _Served.metrics) is not None:
        m.recompute_failures.inc()


def delivery(function: str, code: int) -> None:
    if (m := _Served.metrics) is not None:
        m.deliveries.labels(function, str(code)).inc()


def protection_answer(verdict: str) -> None:
    if (m := _Served.metrics) is not None:
        m.protection_answers.labels(verdict).inc()
