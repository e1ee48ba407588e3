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
real event. Each row is the median of RUNS starts.
"""

from __future__ import annotations

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

# (label, folder, target, extra env, headers)
FUNCTIONS: list[tuple[str, str | None, str, dict[str, str], dict[str, str]]] = [
    ("bare functions-framework", None, "bare", {}, {}),
    ("k8s_audit_http", "k8s_audit", "k8s_audit_http", {}, {}),
    ("k8s_audit (CloudEvent)", "k8s_audit", "k8s_audit", {}, CLOUD_EVENT),
    ("github_webhook", "github_webhook", "github_webhook", {}, {}),
    ("resync_http", "resync", "resync_http", {}, {}),
    ("reporter (CloudEvent)", "reporter", "reporter", {}, CLOUD_EVENT),
    ("k8s_admission", "k8s_admission", "k8s_admission", {}, {}),
    ("audit_bridge (Pub/Sub)", "audit_bridge", "audit_bridge",
     {"BRIDGE_TRANSPORT": "pubsub", "BRIDGE_PUBSUB_TOPIC": "projects/p/topics/t",
      "PUBSUB_EMULATOR_HOST": "127.0.0.1:9"}, {}),
]  # fmt: skip


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
        print(
            f"cold start (process start to first HTTP answer) and memory (PSS, server tree); median of {RUNS}"
        )
        print(f"  {'function':26} {'cold start':>11} {'x bare':>7} {'memory':>9} {'x bare':>7}")
        baseline: tuple[float, float] | None = None
        for label, folder, target, extra, headers in FUNCTIONS:
            source = bare if folder is None else ROOT / "functions" / folder / "main.py"
            runs = [start_once(source, target, {**base_env, **extra}, headers) for _ in range(RUNS)]
            seconds = statistics.median(r[0] for r in runs)
            rss = statistics.median(r[1] for r in runs) / 1024
            if baseline is None:
                baseline = (seconds, rss)
            print(
                f"  {label:26} {seconds * 1000:9.0f} ms {seconds / baseline[0]:6.2f}x "
                f"{rss:6.1f} MiB {rss / baseline[1]:6.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
