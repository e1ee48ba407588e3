"""Benchmark of `k8s_admission` on the real local kube-apiserver; prints numbers, asserts nothing.

Measures, per review, in one run so the ratios are comparable on a noisy machine:
  1. through the apiserver: the client's call until it returns, without the webhook registered and
     then with it (the shipped `infra/k8s/admission.yaml`, pointed at `k8s_admission` served by
     functions-framework over TLS with the stack's CA; the namespaces opted in):
       - deploy guard, allowed: server-side apply of a new tag the gate allows on an annotated
         OCIRepository, as the rollout controller writes it;
       - deploy guard, denied: the same with a tag the gate does not allow (403 with the webhook; the
         write goes through without it);
       - Environment admission: create of an Environment with a relationship (its gate is made
         before the create returns, with the webhook);
  2. in process: the function's own handling (parse the AdmissionReview + `admit`), and Kubernetes
     calls per decision, as the function's least-privilege identity, for the same three decisions
     and for a write that changes no version;
  3. what the metrics add to one decision, off (no METRICS_PORT) and on.
Run with `make bench` (BENCH_N sets the sample count, default 30).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import statistics
import sys
import time
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path

from kubernetes import client
from kubernetes.client.exceptions import ApiException

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.admission import parse_admission_review  # noqa: E402
from shared.views import Environment  # noqa: E402
from stagegate import metrics  # noqa: E402
from stagegate.admission_service import AdmissionContext, admit  # noqa: E402
from stagegate.kube import KubeGates, api_client  # noqa: E402
from stagegate.reconcile import ensure_gates  # noqa: E402
from stagegate.settings import Settings  # noqa: E402
from stagegate_dev import devstack  # noqa: E402
from stagegate_dev.commandline import no_arguments, stop_cleanly_on_signals  # noqa: E402
from tests.functions.admission_support import admission_identity  # noqa: E402
from tests.kube_objects import ENV_ARGS, GATE_ARGS, environment, list_gates, stored  # noqa: E402
from tests.shared.admission_builders import oci_repository, review, with_tag  # noqa: E402

N = int(os.environ.get("BENCH_N", "30"))
WARM = 5
SOURCE = ROOT / "functions" / "k8s_admission" / "main.py"
OCI_ARGS = ("source.toolkit.fluxcd.io", "v1")
GUARD_LABEL = {"stagegate.kuberik.com/guard": "enabled"}
ISOLATION = {"stagegate-bench": "admission"}
ALLOWED = [f"ok-{i}" for i in range(WARM + N)]


def percentile(samples: Sequence[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def report(label: str, seconds: Sequence[float], note: str = "") -> None:
    ms = [s * 1000 for s in seconds]
    print(
        f"  {label:<44} n={len(ms):<4} p50={percentile(ms, 50):7.2f} ms  p99={percentile(ms, 99):7.2f} ms"
        f"  mean={statistics.fmean(ms):7.2f} ms{note}"
    )


def app(stack: devstack.KubeStack, ns: str) -> None:
    """An opted-in namespace: prod (`After staging`, Rollout app) with a gate allowing the ok-* tags, the
    Rollout, and two annotated OCIRepositories without a tag (one for allowed, one for denied writes)."""
    admin = stack.api_client()
    custom = client.CustomObjectsApi(admin)
    client.CoreV1Api(admin).create_namespace(
        {"metadata": {"name": ns, "labels": {**ISOLATION, **GUARD_LABEL}}}
    )
    created = custom.create_namespaced_custom_object(
        *ENV_ARGS, ns, "environments", environment(ns, "prod", rollout="app")
    )
    ensure_gates(Environment.from_raw(created), KubeGates(api_client(str(stack.kubeconfig)), 10), fresh=True)
    custom.patch_namespaced_custom_object(
        *GATE_ARGS, ns, "rolloutgates", "prod-stagegate", {"spec": {"allowedVersions": ALLOWED}}
    )
    rollout = {"apiVersion": "kuberik.com/v1alpha1", "kind": "Rollout", "metadata": {"name": "app"},
               "spec": {"releasesImagePolicy": {"name": "app"}}}  # fmt: skip
    custom.create_namespaced_custom_object(*GATE_ARGS, ns, "rollouts", rollout)
    for name in ("app-allowed", "app-denied"):
        body = oci_repository(name, ns, rollout="app")
        custom.create_namespaced_custom_object(*OCI_ARGS, ns, "ocirepositories", body)


def apply_tag(custom: client.CustomObjectsApi, ns: str, name: str, tag: str) -> bool:
    """The rollout controller's write (server-side apply of spec.ref.tag, forced); False when refused."""
    body = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "OCIRepository",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ref": {"tag": tag}},
    }
    try:
        custom.patch_namespaced_custom_object(
            *OCI_ARGS, ns, "ocirepositories", name, body, field_manager="rollout-controller", force=True,
            _content_type="application/apply-patch+yaml",
        )  # fmt: skip
    except ApiException as exc:
        if exc.status != 403:
            raise
        return False
    return True


def through_apiserver(stack: devstack.KubeStack, ns: str) -> dict[str, tuple[list[float], int]]:
    """Client latency of each kind of write in a fresh app; (samples, writes that went through)."""
    app(stack, ns)
    custom = client.CustomObjectsApi(stack.api_client())
    results: dict[str, tuple[list[float], int]] = {}
    for case, name, tag in (("guard, allowed", "app-allowed", "ok"), ("guard, denied", "app-denied", "no")):
        samples, through = [], 0
        for i in range(WARM + N):
            started = time.perf_counter()
            went = apply_tag(custom, ns, name, f"{tag}-{i}")
            if i >= WARM:
                samples.append(time.perf_counter() - started)
                through += went
        results[case] = (samples, through)
    samples = []
    for i in range(WARM + N):
        body = environment(ns, f"env-{i}", rollout=f"app-{i}")
        started = time.perf_counter()
        custom.create_namespaced_custom_object(*ENV_ARGS, ns, "environments", body)
        seconds = time.perf_counter() - started
        if i >= WARM:
            samples.append(seconds)
    measured = {f"env-{i}-stagegate" for i in range(WARM, WARM + N)}
    gates = sum(g["metadata"]["name"] in measured for g in list_gates(custom, ns))
    results["Environment create (After)"] = (samples, gates)  # for this one: gates made by admission
    return results


def register(stack: devstack.KubeStack, url: str) -> None:
    """Register the shipped configuration at `url`; return once the apiserver calls it."""
    api = client.AdmissionregistrationV1Api(stack.api_client())
    config = devstack.admission_configuration(url, stack.tls.ca_file, "stagegate-bench", ISOLATION)
    api.create_validating_webhook_configuration(config)
    custom = client.CustomObjectsApi(stack.api_client())
    probe = "probe"
    client.CoreV1Api(stack.api_client()).create_namespace(
        {"metadata": {"name": probe, "labels": {**ISOLATION, **GUARD_LABEL}}}
    )

    def effective() -> bool:
        name = f"probe-{secrets.token_hex(3)}"
        custom.create_namespaced_custom_object(*ENV_ARGS, probe, "environments", environment(probe, name))
        return any(g["metadata"]["name"] == f"{name}-stagegate" for g in list_gates(custom, probe))

    devstack.wait_until(effective, 30, "the admission webhook")


def in_process(stack: devstack.KubeStack, identity: Path) -> None:
    """`admit` as the function runs it, as its own identity: handling latency and Kubernetes calls."""
    ns = "inproc"
    app(stack, ns)
    counting = api_client(str(identity))
    ctx = AdmissionContext(
        kube=KubeGates(counting, timeout=Settings.admission_deadline_seconds),
        attempts=Settings.kube_conflict_retries,
        deadline=Settings.admission_deadline_seconds,
        guard_label=Settings.admission_guard_label,
    )
    custom = client.CustomObjectsApi(stack.api_client())
    stored_oci = {
        name: custom.get_namespaced_custom_object(*OCI_ARGS, ns, "ocirepositories", name)
        for name in ("app-allowed", "app-denied")
    }

    def guard(name: str, tag: str, old_tag: str | None = None) -> bytes:
        old = with_tag(stored_oci[name], old_tag)
        new = with_tag(stored_oci[name], tag)
        if old_tag == tag:
            new["metadata"].setdefault("labels", {})["touched"] = "yes"  # a write that changes no version
        return json.dumps(review(new, old)).encode()

    cases: dict[str, Callable[[int], bytes]] = {
        "guard, allowed": lambda i: guard("app-allowed", f"ok-{i}"),
        "guard, denied": lambda i: guard("app-denied", f"no-{i}"),
        "guard, write changing no version": lambda i: guard("app-allowed", "ok-0", "ok-0"),
        "Environment create (After)": lambda i: json.dumps(
            review(stored(environment(ns, f"env-{i}", rollout=f"app-{i}")))
        ).encode(),
    }
    print("in-process handling (parse AdmissionReview + admit), as the function's ServiceAccount:")
    for case, body_for in cases.items():
        samples: list[float] = []
        calls: list[int] = []
        allowed = 0
        for i in range(WARM + N):
            body = body_for(i)
            before = counting.calls
            started = time.perf_counter()
            decision = admit(parse_admission_review(body), ctx)
            seconds = time.perf_counter() - started
            if i >= WARM:
                samples.append(seconds)
                calls.append(counting.calls - before)
                allowed += decision.allowed
        report(case, samples, f"  allowed {allowed}/{len(samples)}")
        print(
            f"    Kubernetes API calls per decision: min={min(calls)} max={max(calls)}"
            f" mean={statistics.fmean(calls):.2f}"
        )


def served_handling(log: Path, ns: str) -> None:
    """The served function's own handling time per review (`milliseconds` in its log line), by case."""
    groups: dict[str, list[float]] = {}
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or "milliseconds" not in entry:
            continue
        obj = str(entry.get("object") or "")
        verdict = "allowed" if " allowed: " in str(entry.get("message")) else "denied"
        if obj in (f"{ns}/app-allowed", f"{ns}/app-denied"):
            case = f"guard, {verdict}"
        elif obj.startswith(f"{ns}/env-") and int(obj.rsplit("-", 1)[1]) >= WARM:
            case = "Environment create (After)"
        else:
            continue
        groups.setdefault(case, []).append(entry["milliseconds"] / 1000)
    print("in the served function (its log's `milliseconds` per review, with the webhook registered):")
    for case in ("guard, allowed", "guard, denied", "Environment create (After)"):
        report(case, groups.get(case, [])[-N:] or [0.0])


def metrics_cost() -> None:
    """What counting adds to one decision (its outcome, its answer, a gate it made), off and on, beside
    the handling measured above: the hot path's share of the metrics."""
    count = 20_000

    def one_decision() -> None:
        metrics.decision("deploy", "allowed")
        metrics.delivery("k8s_admission", 200)
        metrics.gate_change("created")

    off = timeit.timeit(one_decision, number=count) / count
    metrics.serve(devstack.free_port())
    on = timeit.timeit(one_decision, number=count) / count
    print(
        f"metrics per decision (outcome, answer, gate change): off {off * 1e9:.0f} ns, on {on * 1e6:.2f} us"
    )


def main() -> None:
    logging.getLogger("stagegate").setLevel(logging.ERROR)  # numbers only, not one log line per review
    with devstack.KubeStack() as stack:
        identity = admission_identity(stack)
        server = devstack.FunctionServer(SOURCE, "k8s_admission", {"KUBECONFIG": str(identity)}, stack.tls,
                                         stack.procs)  # fmt: skip
        in_process(stack, identity)
        print("through the apiserver: the client's call until it returns (local kube-apiserver, loopback):")
        without = through_apiserver(stack, "plain")
        register(stack, server.url)
        with_webhook = through_apiserver(stack, "guarded")
        for case in without:
            (off, off_through), (on, on_through) = without[case], with_webhook[case]
            what = "gates made" if case.startswith("Environment") else "writes went through"
            report(f"{case}, no webhook", off, f"  {what} {off_through}/{len(off)}")
            report(f"{case}, k8s_admission", on, f"  {what} {on_through}/{len(on)}")
            ratio = statistics.median(on) / statistics.median(off)
            extra = (statistics.median(on) - statistics.median(off)) * 1000
            print(f"    with / without webhook, median: {ratio:.2f}x (+{extra:.1f} ms per call)")
        served_handling(stack.procs.log_dir / f"{server.name}.log", "guarded")
    metrics_cost()


if __name__ == "__main__":
    no_arguments("bench/bench_admission.py (make bench)", __doc__ or "")
    stop_cleanly_on_signals()
    main()
