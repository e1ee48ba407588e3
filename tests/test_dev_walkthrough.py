"""`make dev` driven by hand, exactly as the README's "Trying it by hand" says: the test starts
`python -m stagegate_dev.dev`, takes the export line it prints, and runs the README's
`<!-- walkthrough -->` blocks command by command, so the README and the test cannot drift. Then the
stack must stop, with nothing left running and no folder left, on SIGTERM or SIGINT, also when the
signal comes while it is still starting or from a script (which starts it with SIGINT ignored). The
bare `python -m stagegate_dev.devstack` must do the same; `--help` of both starts nothing.

The walkthrough's transcript is printed (`pytest -rP` shows it) and kept as `walkthrough.txt` in the
test's tmp_path.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from stagegate_dev.devstack import ROOT
from tests.test_demo import processes_marked

pytestmark = pytest.mark.usefixtures("octokit")

TAG = "main-1779290372-b797408"
WALKTHROUGHS = {
    name: re.compile(rf"<!-- {name} -->\n```sh\n(.*?)```", re.S)
    for name in ("walkthrough", "walkthrough-managed", "runbook-down", "runbook-stuck", "runbook-namespace")
}
# Starts `python -m ...` with SIGINT ignored, as a script's background job inherits it.
IGNORING_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "os.execv(sys.executable, [sys.executable, '-m', sys.argv[1]])"
)


def walkthrough(name: str = "walkthrough") -> list[str]:
    """The README walkthrough's commands in order, a `\\`-continued command joined into one line."""
    commands, pending = [], ""
    for block in WALKTHROUGHS[name].findall((ROOT / "README.md").read_text()):
        for line in block.splitlines():
            pending += line.rstrip("\\").strip() + " "
            if not line.endswith("\\"):
                commands.append(pending.strip())
                pending = ""
    return [command for command in commands if command and not command.startswith("#")]


def user_env(marker: str) -> dict[str, str]:
    """A user's shell, not what earlier tests left in this process, plus a marker every child inherits."""
    kept = ("PATH", "HOME", "LANG", "KUBEBUILDER_ASSETS", "STAGEGATE_OCTOKIT_ASSETS", "CLOUDSDK_CONFIG")
    return {k: os.environ[k] for k in kept if k in os.environ} | {"STAGEGATE_DEV_TEST": marker}


class Running:
    """A local tool started as a user would, its stdout read line by line in the background."""

    def __init__(self, module: str, marker: str, *args: str, ignore_sigint: bool = False) -> None:
        argv = (
            [sys.executable, "-c", IGNORING_SIGINT, module]
            if ignore_sigint
            else [sys.executable, "-m", module, *args]
        )
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=user_env(marker), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)  # fmt: skip
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout or ():
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def until(self, matches: str, timeout: float = 240) -> str:
        """The first line printed that starts with `matches`; fails with all output if none comes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            self.seen.append(line)
            if line.startswith(matches):
                return line
        self.proc.kill()
        pytest.fail(f"no line starting {matches!r}:\n" + "\n".join(self.seen))

    def stop(self, signum: signal.Signals) -> str:
        """Send `signum`, wait for the exit (0) and return the rest of the output."""
        self.proc.send_signal(signum)
        assert self.proc.wait(timeout=120) == 0, "\n".join(self.seen)
        rest = []
        while (line := self.lines.get(timeout=10)) is not None:
            rest.append(line)
        return "\n".join(rest)


def run_walkthrough(env: dict[str, str], done: list[tuple[str, str]], name: str = "walkthrough") -> None:
    """Run each command of the README's `name` blocks; record it and what it printed (stdout and
    stderr, as a terminal shows them) in `done`, so a failure still leaves the transcript so far."""
    run_commands(env, done, walkthrough(name))


def run_commands(env: dict[str, str], done: list[tuple[str, str]], commands: list[str]) -> None:
    for command in commands:
        argv = ["bash", "-euo", "pipefail", "-c", command]
        run = subprocess.run(argv, cwd=ROOT, env=env, timeout=90, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, check=False)  # fmt: skip
        done.append((command, run.stdout))
        assert run.returncode == 0, f"$ {command}\n{run.stdout}"


def outputs(done: list[tuple[str, str]], prefix: str) -> list[str]:
    return [output for command, output in done if command.startswith(prefix)]


def test_the_readme_walkthrough_closes_then_opens_prods_gate_and_sigterm_stops_everything(
    tmp_path: Path,
) -> None:
    marker = str(uuid.uuid4())
    dev = Running("stagegate_dev.dev", marker)
    exports = dict(pair.split("=", 1) for pair in shlex.split(dev.until("export "))[1:])
    assert set(exports) == {"KUBECONFIG", "GITHUB_API_URL", "GITHUB_TOKEN"}
    folder = Path(exports["KUBECONFIG"]).parent
    done: list[tuple[str, str]] = []
    try:
        run_walkthrough(user_env(marker) | exports, done)
    finally:
        transcript = "".join(f"$ {command}\n{output}" for command, output in done)
        (tmp_path / "walkthrough.txt").write_text(transcript)
        print(transcript)
        said = dev.stop(signal.SIGTERM)
    gates = [output.strip() for output in outputs(done, "kubectl get rolloutgate prod-stagegate")]
    assert gates == ["[]", "[]", f'["{TAG}"]']
    explained = outputs(done, ".venv/bin/stagegate explain prod")
    assert len(explained) == 4
    for before in explained[:3]:
        assert "gate prod-stagegate: allowedVersions=[] " in before, before
        assert "the recompute would allow: []" in before, before
    assert "none (the Rollout lists no release candidates)" in explained[0], explained[0]
    for blocked in explained[1:3]:
        assert f"{TAG}: blocked: " in blocked, blocked
    assert "names no commit GitHub knows" in explained[1], explained[1]  # as the README says
    assert "bake result in_progress (history entry" in explained[2], explained[2]
    opened = explained[3]
    assert f'gate prod-stagegate: allowedVersions=["{TAG}"] ' in opened, opened
    assert f"{TAG}: allowed: " in opened, opened
    assert "bake result success (history entry" in opened, opened
    assert f"the recompute would allow: ['{TAG}']" in opened, opened
    # The Actions job to production: held with a status report, then approved by the same bake.
    held, released = outputs(done, ".venv/bin/python -m stagegate_dev.github_cli job show")
    assert ": waiting" in held.splitlines()[0], held
    assert "waiting on: production" in held, held
    assert "status report by stagegate[bot] on production: Waiting for kuberik/myapp/staging" in held, held
    assert ": completed, success" in released.splitlines()[0], released
    assert "approved by stagegate[bot] on production: kuberik/myapp/staging baked b797408" in released
    refused, allowed = outputs(done, "kubectl patch ocirepository myapp-prod")
    assert "denied the request: OCIRepository myapp/myapp-prod may not run main-" in refused, refused
    assert "(refused, as it must be)" in refused, refused
    assert "patched" in allowed, allowed
    assert [o.strip() for o in outputs(done, "kubectl get ocirepository myapp-prod")] == [TAG]
    assert [o.strip() for o in outputs(done, "kubectl get environment prod")] == ["staging prod"]
    [pipeline] = outputs(done, ".venv/bin/stagegate status myapp")
    rows = [line.split() for line in pipeline.splitlines()[2:]]
    assert rows[0][:4] == ["staging", TAG, "(b797408)", "Succeeded"], pipeline
    assert rows[1][0] == "prod", pipeline
    assert f'["{TAG}"]' in rows[1], pipeline
    [remaining] = outputs(done, "kubectl get rolloutgates -n myapp")  # prod's went with prod
    assert "staging-stagegate" in remaining, remaining
    assert "prod-stagegate" not in remaining, remaining
    assert "stopped: " in said
    assert processes_marked(marker) == []
    assert not folder.exists()


def test_the_managed_walkthrough_opens_prods_gate_through_the_follower_without_an_audit_webhook(
    tmp_path: Path,
) -> None:
    marker = str(uuid.uuid4())
    dev = Running("stagegate_dev.dev", marker, "--managed")
    exports = dict(pair.split("=", 1) for pair in shlex.split(dev.until("export "))[1:])
    done: list[tuple[str, str]] = []
    try:
        run_walkthrough(user_env(marker) | exports, done, "walkthrough-managed")
        # Made at admission with a pending owner, the gate was adopted by the follower (no audit path
        # here): owned by prod, it goes with prod.
        owner = "{.metadata.ownerReferences[*].kind}/{.metadata.ownerReferences[*].name}"
        run_commands(
            user_env(marker) | exports,
            done,
            [f"kubectl get rolloutgate prod-stagegate -n myapp -o jsonpath='{owner}'"],
        )
    finally:
        transcript = "".join(f"$ {command}\n{output}" for command, output in done)
        (tmp_path / "walkthrough-managed.txt").write_text(transcript)
        print(transcript)
        said = dev.stop(signal.SIGTERM)
    started = "\n".join(dev.seen)
    assert "no audit webhook (a managed cluster)" in started
    assert "k8s_audit_http" not in started
    assert "follower" in started
    gates = [output.strip() for output in outputs(done, "kubectl get rolloutgate prod-stagegate")]
    assert gates == ["[]", f'["{TAG}"]', "Environment/prod"]
    pushed = outputs(done, ".venv/bin/python -m stagegate_dev.github_cli push")
    assert pushed == [f"pushed tag {TAG} at b797408 to myorg/myapp\n"]
    explained = outputs(done, ".venv/bin/stagegate explain prod")
    assert len(explained) == 2
    assert f"{TAG}: blocked: " in explained[0], explained[0]
    assert "bake result in_progress (history entry" in explained[0], explained[0]
    assert f"{TAG}: allowed: " in explained[1], explained[1]
    assert "bake result success (history entry" in explained[1], explained[1]
    [pipeline] = outputs(done, ".venv/bin/stagegate status myapp")
    rows = [line.split() for line in pipeline.splitlines()[2:]]
    assert rows[0][:4] == ["staging", TAG, "(b797408)", "Succeeded"], pipeline
    assert "stopped: " in said
    assert processes_marked(marker) == []


def stack_folder(marker: str) -> Path | None:
    """The data folder of the etcd among the marked processes, once one runs."""
    for pid in processes_marked(marker):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if "--data-dir" in argv and Path(argv[0]).name == "etcd":
            return Path(argv[argv.index("--data-dir") + 1]).parent
    return None


@pytest.mark.parametrize(
    ("module", "ready"), [("stagegate_dev.dev", "export "), ("stagegate_dev.devstack", '{"kubeconfig"')]
)
@pytest.mark.parametrize(
    ("signum", "when"),
    [(signal.SIGINT, "ready"), (signal.SIGTERM, "starting")],
    ids=["SIGINT from a script, once ready", "SIGTERM while starting"],
)
def test_a_signal_stops_every_process_and_removes_the_folder(
    module: str, ready: str, signum: signal.Signals, when: str
) -> None:
    marker = str(uuid.uuid4())
    tool = Running(module, marker, ignore_sigint=signum == signal.SIGINT)
    if when == "ready":
        tool.until(ready)
    deadline = time.monotonic() + 120
    while (folder := stack_folder(marker)) is None:  # while starting: etcd runs, the apiserver comes up
        assert time.monotonic() < deadline, "etcd never started"
        time.sleep(0.1)
    said = tool.stop(signum)
    assert "stopped" in said
    assert processes_marked(marker) == []
    assert not folder.exists()


@pytest.mark.parametrize("module", ["stagegate_dev.dev", "stagegate_dev.devstack"])
def test_help_prints_usage_and_starts_nothing(module: str) -> None:
    marker = str(uuid.uuid4())
    run = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, env=user_env(marker),
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: "), run.stdout
    assert processes_marked(marker) == []
