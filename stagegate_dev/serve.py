"""`make run`: serve every function locally with functions-framework, against $KUBECONFIG.

Configuration is checked before anything starts: a malformed or missing variable stops the command
with its name. Each function runs in its own functions-framework process on consecutive ports from
$PORT (default 8080); Ctrl-C stops them all.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import NamedTuple

from stagegate.kube import api_client
from stagegate.settings import ConfigError, Settings
from stagegate_dev.polling import ProcessExited, wait_until

ROOT = Path(__file__).resolve().parent.parent


class Function(NamedTuple):
    """One function target, where its source lives, what it expects, which secret it checks."""

    target: str
    folder: str
    expects: str
    secret: str | None


FUNCTIONS = (
    Function(
        "k8s_audit_http",
        "k8s_audit",
        "kube-apiserver audit webhook: POST an EventList with Authorization: Bearer $AUDIT_WEBHOOK_TOKEN",
        "AUDIT_WEBHOOK_TOKEN",
    ),
    Function(
        "k8s_audit",
        "k8s_audit",
        "CloudEvent: a Pub/Sub push whose message.data is an audit Event(List)",
        None,
    ),
    Function(
        "github_webhook",
        "github_webhook",
        "GitHub deployment_status webhooks signed with $GITHUB_WEBHOOK_SECRET",
        "GITHUB_WEBHOOK_SECRET",
    ),
    Function(
        "resync_http",
        "resync",
        "POST with Authorization: Bearer $RESYNC_TOKEN recomputes every gate",
        "RESYNC_TOKEN",
    ),
    Function(
        "reporter_http",
        "reporter",
        "POST an audit EventList of Rollout status changes (Bearer $AUDIT_WEBHOOK_TOKEN): records their "
        "history on GitHub",
        "AUDIT_WEBHOOK_TOKEN",
    ),
)


def check_configuration() -> list[str]:
    """Fail with the variable's name on what cannot work; return warnings for what will refuse requests."""
    settings = Settings.from_env()
    api_client(settings.kubeconfig)
    settings.github_credentials()
    return [
        f"{function.secret} is not set: {function.target} will refuse every request"
        for function in FUNCTIONS
        if function.secret and not os.environ.get(function.secret)
    ]


def main() -> int:
    try:
        warnings = check_configuration()
        base = int(os.environ.get("PORT", "8080"))
    except (ConfigError, ValueError) as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    children: list[subprocess.Popen[bytes]] = []

    def stop(_signum: int, _frame: FrameType | None) -> None:
        for child in children:
            child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for offset, function in enumerate(FUNCTIONS):
        port = base + offset
        source = ROOT / "functions" / function.folder / "main.py"
        argv = [sys.executable, "-m", "functions_framework", "--source", str(source),
                "--target", function.target, "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        children.append(subprocess.Popen(argv))
        print(f"{function.target:<15} http://127.0.0.1:{port}/  {function.expects}", flush=True)
    for child, port in zip(children, range(base, base + len(children)), strict=True):
        wait_until(lambda p=port, c=child: _listening(p, c), 30, f"port {port}")
    print("serving; Ctrl-C stops every function", flush=True)
    while all(child.poll() is None for child in children):
        time.sleep(0.2)
    stop(0, None)
    for child in children:
        child.wait()
    return 0


def _listening(port: int, child: subprocess.Popen[bytes]) -> bool:
    if child.poll() is not None:
        raise ProcessExited(f"a function exited with {child.returncode}")
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


if __name__ == "__main__":
    sys.exit(main())
