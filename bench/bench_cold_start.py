"""Cold start and memory of each function, beside a bare functions-framework function started the same way.

Each function is served as documented (`functions-framework --source functions/<folder>/main.py
--target <target> --port P`, a fresh process), and timed from process start to its first HTTP answer.
The request is one every function answers at once without Kubernetes or GitHub (no or a wrong bearer
token, or a CloudEvent without data), so the figure is what a cold instance costs before it can work:
interpreter, imports, configuration, server. The bare function (`return "ok"`) is the baseline; the
ratio is the figure to read (this machine is shared and noisy: compare within one run). Memory
is the server's process tree after the first answer (proportional set size, so the pages gunicorn's
fork shares are counted once). Configuration points at nothing that
answers (a kubeconfig for 127.0.0.1:9, GitHub at 127.0.0.1:9): no function connects before its first
real event. Each row is the median of RUNS starts, taken in rounds (every function once per round), so
a burst of load from elsewhere on the machine falls on every row alike.

Each function is configured as `infra/gcp` deploys it where that matters: `k8s_audit_http` hands
Rollout changes to the reporter through Pub/Sub (`REPORT_TRANSPORT=pubsub`) and holds no GitHub
credentials; `audit_bridge` publishes to Pub/Sub.

What a function needs only for some events is loaded when such an event first comes, not at start:
PyGithub (with requests, jwt and cryptography) is imported, and the GitHub client made, by the first
event that asks GitHub; the Pub/Sub client of `k8s_audit_http`'s hand-off to the reporter by the first
Rollout change (an Environment create, which the apiserver waits on, never waits for it). A cold start
does not include that, so the column "first use" shows what that first event pays on top (time and
memory, measured in a fresh interpreter that loaded the function as functions-framework does, then
did what that event does first); "-" where nothing is deferred. `audit_bridge` creates its Pub/Sub
publisher at start: every event it keeps is published with it, so its cold start includes the SDK.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stagegate_dev.commandline import no_arguments, stop_cleanly_on_signals  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
FF = str(Path(sys.executable).with_name("functions-framework"))
BARE = 'import functions_framework\n\n\n@functions_framework.http\ndef bare(request):\n    return "ok"\n'
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:9", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: bench-token-0123456789}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""
CLOUD_EVENT = {"ce-id": "1", "ce-source": "bench", "ce-type": "bench", "ce-specversion": "1.0"}

# (label, folder, target, extra env, headers, the function's GitHub reader as an expression on `module`)
REPORTS = {"REPORT_TRANSPORT": "pubsub", "REPORT_PUBSUB_TOPIC": "projects/p/topics/reports",
           "PUBSUB_EMULATOR_HOST": "127.0.0.1:9"}  # fmt: skip
NO_GITHUB = {"GITHUB_TOKEN": ""}  # empty is unset
GITHUB_CALL = "{}.github  # import PyGithub, make the client"
HAND_OFF = "module.REPORTS.publish([])  # make the Pub/Sub client"

# (label, folder, target, extra env, headers, what the first event that needs a deferred part does)
FUNCTIONS: list[tuple[str, str | None, str, dict[str, str], dict[str, str], str | None]] = [
    ("bare functions-framework", None, "bare", {}, {}, None),
    ("k8s_audit_http", "k8s_audit", "k8s_audit_http", REPORTS | NO_GITHUB, {}, HAND_OFF),
    ("k8s_audit (CloudEvent)", "k8s_audit", "k8s_audit", {}, CLOUD_EVENT,
     GITHUB_CALL.format("module.CONTEXT.upstream")),
    ("github_webhook", "github_webhook", "github_webhook", {}, {}, GITHUB_CALL.format("module.UPSTREAM")),
    ("resync_http", "resync", "resync_http", {}, {}, GITHUB_CALL.format("module.UPSTREAM")),
    ("reporter (CloudEvent)", "reporter", "reporter", {}, CLOUD_EVENT, GITHUB_CALL.format("module.GITHUB")),
    ("k8s_admission", "k8s_admission", "k8s_admission", {}, {}, None),
    # As the in-cluster install runs it: Prometheus metrics served (prometheus-client imported at start).
    ("k8s_admission, metrics on", "k8s_admission", "k8s_admission", {"METRICS_PORT": "__free__"}, {}, None),
    ("audit_bridge (Pub/Sub)", "audit_bridge", "audit_bridge",
     REPORTS | {"BRIDGE_TRANSPORT": "pubsub", "BRIDGE_PUBSUB_TOPIC": "projects/p/topics/t"}, {}, None),
]  # fmt: skip
FIRST_USE = """
import json, sys, time
from pathlib import Path
from functions_framework._function_registry import load_function_module

def pss_kib():
    rollup = Path("/proc/self/smaps_rollup").read_text().splitlines()
    return next(int(line.split()[1]) for line in rollup if line.startswith("Pss:"))

module, spec = load_function_module(sys.argv[1])
spec.loader.exec_module(module)
memory, began = pss_kib(), time.perf_counter()
{first_use}
print(json.dumps([time.perf_counter() - began, pss_kib() - memory]))
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_pss_kib(pid: int) -> int:
    """Memory of a process and its descendants (gunicorn master and the worker it forked): the sum of
    their proportional set sizes, so pages the fork shares are counted once, not in both RSS figures."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
        todo += [int(c) for c in children]
    return total


def start_once(source: Path, target: str, env: dict[str, str], headers: dict[str, str]) -> tuple[float, int]:
    port = free_port()
    began = time.perf_counter()
    proc = subprocess.Popen(
        [FF, "--source", str(source), "--target", target, "--port", str(port), "--host", "127.0.0.1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/",
                data=b"{}",
                headers={"Content-Type": "application/json", **headers},
            )
            try:
                urllib.request.urlopen(request, timeout=5).close()  # noqa: S310  loopback
                break
            except urllib.error.HTTPError:
                break  # any answer is an answer
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None:
                    raise RuntimeError(f"{target} exited with {proc.returncode}") from None
                time.sleep(0.005)
        elapsed = time.perf_counter() - began
        return elapsed, tree_pss_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


def first_use(source: Path, code: str, env: dict[str, str]) -> tuple[float, int]:
    """Seconds and KiB what the function defers adds to the first event that needs it."""
    done = subprocess.run(
        [sys.executable, "-c", FIRST_USE.format(first_use=code), str(source)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, kib = json.loads(done.stdout.splitlines()[-1])
    return float(seconds), int(kib)


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        bare = Path(scratch) / "bare.py"
        bare.write_text(BARE)
        kubeconfig = Path(scratch) / "kubeconfig"
        kubeconfig.write_text(KUBECONFIG)
        base_env = {
            # This checkout's code, whatever an editable install in the venv points at.
            "PYTHONPATH": str(ROOT),
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/root"),
            "KUBECONFIG": str(kubeconfig),
            "GITHUB_TOKEN": "ghp_bench0000000000000000000000000000",
            "GITHUB_API_URL": "http://127.0.0.1:9",
            "GITHUB_WEBHOOK_SECRET": "bench-secret",
            "AUDIT_WEBHOOK_TOKEN": "bench-audit-token",
            "RESYNC_TOKEN": "bench-resync-token",
        }
        sources = {
            label: bare if folder is None else ROOT / "functions" / folder / "main.py"
            for label, folder, *_ in FUNCTIONS
        }
        starts: dict[str, list[tuple[float, int]]] = {label: [] for label, *_ in FUNCTIONS}
        for _ in range(RUNS):
            for label, _folder, target, extra, headers, _reader in FUNCTIONS:
                env = {**base_env, **extra}
                env = {k: str(free_port()) if v == "__free__" else v for k, v in env.items()}
                starts[label].append(start_once(sources[label], target, env, headers))
        later: dict[str, list[tuple[float, int]]] = {label: [] for label, *_ in FUNCTIONS}
        for _ in range(RUNS):
            for label, _folder, _target, extra, _headers, deferred in FUNCTIONS:
                if deferred is not None:
                    later[label].append(first_use(sources[label], deferred, {**base_env, **extra}))
        print(
            f"cold start (process start to first HTTP answer) and memory (PSS, server tree); median of {RUNS}"
        )
        print(
            f"  {'function':26} {'cold start':>11} {'x bare':>7} {'memory':>9} {'x bare':>7}"
            f"   {'first use':>17}"
        )
        baseline: tuple[float, float] | None = None
        for label, *_ in FUNCTIONS:
            seconds = statistics.median(r[0] for r in starts[label])
            memory = statistics.median(r[1] for r in starts[label]) / 1024
            if baseline is None:
                baseline = (seconds, memory)
            deferred = (
                f"+{statistics.median(r[0] for r in later[label]) * 1000:.0f} ms "
                f"+{statistics.median(r[1] for r in later[label]) / 1024:.1f} MiB"
                if later[label]
                else "-"
            )
            print(
                f"  {label:26} {seconds * 1000:9.0f} ms {seconds / baseline[0]:6.2f}x "
                f"{memory:6.1f} MiB {memory / baseline[1]:6.2f}x   {deferred:>17}",
                flush=True,
            )
        print(
            '  "first use": paid once, on top of the cold start, by the first event that needs what is '
            "deferred: asking GitHub, or (k8s_audit_http) handing a Rollout change to Pub/Sub"
        )


if __name__ == "__main__":
    no_arguments("bench/bench_cold_start.py (make bench)", __doc__ or "")
    stop_cleanly_on_signals()
    main()
