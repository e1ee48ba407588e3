"""`make run`: serve every function locally with functions-framework, against $KUBECONFIG.

Configuration is checked before anything starts: a malformed variable stops the command with its name.
Without GitHub credentials only the audit functions are served (they create gates, blocking; nothing
opens them), and a warning says so. Each function runs in its own functions-framework process on its
own port, `$PORT + i` (default 8080) for the i-th function of `FUNCTIONS`; a port in use stops the
command at start. Ctrl-C or SIGTERM stops every function, and so does any function exiting.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import NamedTuple

from stagegate.kube import api_client
from stagegate.settings import CREDENTIALS, ConfigError, Settings
from stagegate_dev.commandline import no_arguments
from stagegate_dev.polling import ProcessExited, wait_until

ROOT = Path(__file__).resolve().parent.parent


class Function(NamedTuple):
    """One function target, where its source lives, what it expects, which secret it checks, and
    whether it stops at start without GitHub credentials."""

    target: str
    folder: str
    expects: str
    secret: str | None
    needs_github: bool = True


FUNCTIONS = (
    Function(
        "k8s_audit_http",
        "k8s_audit",
        "kube-apiserver audit webhook: POST an EventList with Authorization: Bearer $AUDIT_WEBHOOK_TOKEN",
        "AUDIT_WEBHOOK_TOKEN",
        needs_github=False,
    ),
    Function(
        "k8s_audit",
        "k8s_audit",
        "CloudEvent: a Pub/Sub push whose message.data is an audit Event(List)",
        None,
        needs_github=False,
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
    Function(
        "github_protection_rule",
        "github_protection_rule",
        "the GitHub App's deployment_protection_rule webhooks signed with $GITHUB_WEBHOOK_SECRET: answers "
        "held Actions jobs (PROTECTION_RULES)",
        "GITHUB_WEBHOOK_SECRET",
    ),
)


def check_configuration(base: int) -> tuple[list[tuple[int, Function]], list[str]]:
    """The functions to serve on their ports, and warnings for what will refuse requests; fail with the
    variable's name on what cannot work."""
    settings = Settings.from_env()
    api_client(settings.kubeconfig)
    warnings = []
    served: tuple[Function, ...] = FUNCTIONS
    if not settings.has_github_credentials:
        served = tuple(function for function in FUNCTIONS if not function.needs_github)
        skipped = ", ".join(function.target for function in FUNCTIONS if function.needs_github)
        warnings.append(
            f"{CREDENTIALS} not set: not serving {skipped}; the audit functions create gates that block "
            "everything and nothing opens them"
        )
    warnings += [
        f"{function.secret} is not set: {function.target} will refuse every request"
        for function in served
        if function.secret and not os.environ.get(function.secret)
    ]
    ports = [(base + FUNCTIONS.index(function), function) for function in served]
    for port, function in ports:
        if not _free(port):
            raise ConfigError(f"port {port} (for {function.target}, PORT={base} + {port - base}) is in use")
    return ports, warnings


def main() -> int:
    no_arguments(
        "make run",
        "Serve the functions with functions-framework against $KUBECONFIG, one port each from $PORT "
        f"(default 8080): {', '.join(function.target for function in FUNCTIONS)}. Without GitHub "
        "credentials only the audit functions are served. Ctrl-C or SIGTERM stops them all.",
    )
    try:
        ports, warnings = check_configuration(_port(os.environ.get("PORT", "8080")))
    except ConfigError as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    children: list[subprocess.Popen[bytes]] = []
    stopping = threading.Event()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()
        for child in children:
            child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for port, function in ports:
            if stopping.is_set():
                return 0
            source = ROOT / "functions" / function.folder / "main.py"
            argv = [sys.executable, "-m", "functions_framework", "--source", str(source),
                    "--target", function.target, "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
            children.append(subprocess.Popen(argv))
            print(f"{function.target:<15} http://127.0.0.1:{port}/  {function.expects}", flush=True)
        for child, (port, _) in zip(children, ports, strict=True):
            wait_until(lambda p=port, c=child: _listening(p, c), 30, f"port {port}")
        print("serving; Ctrl-C stops every function", flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(0.2)
        failed = [
            child.returncode for child in children if child.returncode not in (None, 0, -signal.SIGTERM)
        ]
    except RuntimeError as exc:  # ProcessExited among them
        if stopping.is_set():
            return 0
        print(f"make run: {exc}", file=sys.stderr)
        failed = [1]
    finally:
        stop(0, None)
        for child in children:
            child.wait()
    return 1 if failed else 0


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536 - len(FUNCTIONS):
        raise ConfigError(f"PORT must be a port number below {65536 - len(FUNCTIONS)}, not {text!r}")
    return int(text)


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _listening(port: int, child: subprocess.Popen[bytes]) -> bool:
    if child.poll() is not None:
        raise ProcessExited(f"a function exited with {child.returncode}")
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


if __name__ == "__main__":
    sys.exit(main())
