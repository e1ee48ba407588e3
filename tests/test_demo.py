"""`make demo` is the README's first command: it must pass, print both acts' timelines (the incident
without the admission function, the fix with it), leave nothing running, and work the same the second
time."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from stagegate.devstack import ROOT


def processes_marked(marker: str) -> list[int]:
    """Processes whose environment carries `marker` (every child of the demo inherits it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker.encode() in (proc / "environ").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


@pytest.mark.usefixtures("octokit")
def test_demo_passes_twice_and_leaves_nothing_running() -> None:
    for attempt in (1, 2):
        run_id = str(uuid.uuid4())
        marker = f"STAGEGATE_DEMO_RUN={run_id}"
        env = {**os.environ, "STAGEGATE_DEMO_RUN": run_id}
        run = subprocess.run(
            [sys.executable, "-m", "stagegate.demo"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert run.returncode == 0, f"attempt {attempt}:\n{run.stdout}\n{run.stderr[-3000:]}"
        lines = run.stdout.splitlines()
        act1, act2 = run.stdout.split("\nAct 2: ")
        assert "verdict: INCIDENT REPRODUCED: " in act1, run.stdout  # without admission: prod ran it early
        assert "its gate exists, allowedVersions=[]" in act2, run.stdout
        assert 'admission webhook "deploy-guard.stagegate.kuberik.com" denied the request' in act2, run.stdout
        assert "prod's gate allows [main-1779290372-b797408]" in act2, run.stdout
        assert "verdict: PASS: prod ran nothing staging had not baked" in act2, run.stdout
        assert lines[-1].startswith("verdict: PASS"), run.stdout
        assert processes_marked(marker) == []
