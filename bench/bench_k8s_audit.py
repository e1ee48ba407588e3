"""Benchmark of the audit path on the real local kube-apiserver; prints numbers, asserts nothing.

Measures, in one run so the ratios are comparable on a noisy machine:
  1. time to import the function module (cold-start cost, each in a fresh interpreter);
  2. in-process handler latency for an Environment create event, and Kubernetes API calls per event
     (create path with responseObject; re-delivery; update of an existing Environment);
  3. end to end: a client's Environment create with the blocking audit webhook in the request path,
     against the same create on an apiserver without the webhook.
Run with `make bench` (BENCH_N sets the sample count, default 200).
"""

from __future__ import annotations

import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from kubernetes import client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.audit import parse_audit_json  # noqa: E402
from stagegate.audit_service import AuditContext, handle_audit_events  # noqa: E402
from stagegate.kube import KubeGates, api_client  # noqa: E402
from stagegate_dev import devstack  # noqa: E402
from stagegate_dev.commandline import no_arguments, stop_cleanly_on_signals  # noqa: E402
from tests.kube_objects import ENV_ARGS, delivery_bytes, environment, stored  # noqa: E402

N = int(os.environ.get("BENCH_N", "200"))


def percentile(samples: Sequence[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def report(label: str, seconds: Sequence[float]) -> None:
    ms = [s * 1000 for s in seconds]
    print(
        f"  {label:<52} n={len(ms):<4} p50={percentile(ms, 50):7.2f} ms  p99={percentile(ms, 99):7.2f} ms"
        f"  mean={statistics.fmean(ms):7.2f} ms"
    )


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def import_time(kubeconfig: Path) -> None:
    code = (
        "import time, importlib.util as u; t = time.perf_counter(); "
        f"s = u.spec_from_file_location('main', {str(ROOT / 'functions/k8s_audit/main.py')!r}); "
        "m = u.module_from_spec(s); s.loader.exec_module(m); print(time.perf_counter() - t)"
    )
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "AUDIT_WEBHOOK_TOKEN": "bench"}
    runs = [float(subprocess.check_output([sys.executable, "-c", code], env=env, cwd=ROOT)) for _ in range(7)]
    print("import of functions/k8s_audit/main.py (fresh interpreter each):")
    report("module import", runs)


def handler(stack: devstack.KubeStack) -> None:
    counting = api_client(str(stack.kubeconfig))
    gates = KubeGates(counting, timeout=10)
    ctx = AuditContext(gates, None, 5)
    client.CoreV1Api(stack.api_client()).create_namespace({"metadata": {"name": "bench"}})
    custom = client.CustomObjectsApi(stack.api_client())
    print("in-process handler (parse + route + Kubernetes writes), real apiserver on loopback:")
    paths: dict[str, tuple[list[float], list[int]]] = {
        "create": ([], []),
        "redelivery": ([], []),
        "update": ([], []),
    }
    for i in range(N):
        env = stored(environment("bench", f"prod-{i}"))
        body = delivery_bytes(env)
        for path, payload in (("create", body), ("redelivery", body)):
            before = counting.calls
            paths[path][0].append(timed(lambda p=payload: handle_audit_events(parse_audit_json(p), ctx)))
            paths[path][1].append(counting.calls - before)
    for i in range(min(N, 50)):
        real = custom.create_namespaced_custom_object(
            *ENV_ARGS, "bench", "environments", environment("bench", f"u-{i}")
        )
        handle_audit_events(parse_audit_json(delivery_bytes(real)), ctx)
        before = counting.calls
        update = delivery_bytes(real, "update")
        paths["update"][0].append(timed(lambda u=update: handle_audit_events(parse_audit_json(u), ctx)))
        paths["update"][1].append(counting.calls - before)
    for path, (samples, calls) in paths.items():
        report(f"{path} event", samples)
        mean = statistics.fmean(calls)
        print(f"    Kubernetes API calls per {path} event: min={min(calls)} max={max(calls)} mean={mean:.2f}")


def end_to_end(stack: devstack.KubeStack, label: str) -> list[float]:
    custom = client.CustomObjectsApi(stack.api_client())
    client.CoreV1Api(stack.api_client()).create_namespace({"metadata": {"name": "e2e"}})
    for i in range(10):  # warm connections and caches
        custom.create_namespaced_custom_object(
            *ENV_ARGS, "e2e", "environments", environment("e2e", f"warm-{i}")
        )
    samples = [
        timed(
            lambda i=i: custom.create_namespaced_custom_object(
                *ENV_ARGS, "e2e", "environments", environment("e2e", f"prod-{i}")
            )
        )
        for i in range(N)
    ]
    report(label, samples)
    return samples


def main() -> None:
    logging.getLogger("stagegate").setLevel(logging.WARNING)  # numbers only, not one log line per event
    with devstack.KubeStack() as plain:
        import_time(plain.kubeconfig)
        handler(plain)
        print("end to end: client create call until it returns:")
        without = end_to_end(plain, "create, no audit webhook")
    with devstack.audit_webhook_stack() as (blocking, _server):
        with_webhook = end_to_end(blocking, "create, blocking audit webhook -> k8s_audit_http")
    ratio = statistics.median(with_webhook) / statistics.median(without)
    extra = (statistics.median(with_webhook) - statistics.median(without)) * 1000
    print(f"  blocking webhook / no webhook, median: {ratio:.2f}x (+{extra:.1f} ms per create)")


if __name__ == "__main__":
    no_arguments("bench/bench_k8s_audit.py (make bench)", __doc__ or "")
    stop_cleanly_on_signals()
    main()
