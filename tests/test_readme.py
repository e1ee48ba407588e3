"""The README agrees with itself and with the code: every shell block says whether it is run and, if it
is, runs as written; its commands table names exactly the Makefile's targets."""

from __future__ import annotations

import os
import re
import subprocess

from stagegate_dev.devstack import ROOT

README = (ROOT / "README.md").read_text()
MARKED_BLOCK = re.compile(r"(?:<!-- (?P<marker>[^>]*?) -->\n)?```sh\n(?P<body>.*?)```", re.S)
MARKERS = ("runnable", "walkthrough", "runbook", "not run: ")
AS_A_USER = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MAKELEVEL", "MFLAGS"}}
"""The environment of a user's shell, not of `make test`'s (a make inside it says which folder it enters)."""


def shell_blocks() -> list[tuple[str, str]]:
    return [(match["marker"] or "", match["body"]) for match in MARKED_BLOCK.finditer(README)]


def test_every_shell_block_says_whether_it_is_run() -> None:
    blocks = shell_blocks()
    assert blocks
    unmarked = [body for marker, body in blocks if not marker.startswith(MARKERS)]
    assert unmarked == [], (
        "mark each ```sh block: <!-- runnable -->, <!-- walkthrough -->, <!-- runbook-... --> or "
        "<!-- not run: why -->"
    )
    # Walkthrough and runbook blocks are run by tests/test_dev_walkthrough.py and tests/test_break_glass.py
    # under their marker's name: one no test knows would go unrun.
    from tests.test_dev_walkthrough import WALKTHROUGHS

    named = {marker for marker, _ in blocks if marker.startswith(("walkthrough", "runbook"))}
    assert named <= set(WALKTHROUGHS), named - set(WALKTHROUGHS)
    reasons = [marker for marker, _ in blocks if marker.startswith("not run: ")]
    assert all(len(reason) > len("not run: ") + 10 for reason in reasons), reasons


def test_runnable_blocks_run_as_written() -> None:
    runnable = [body for marker, body in shell_blocks() if marker == "runnable"]
    assert runnable
    for body in runnable:
        argv = ["bash", "-euo", "pipefail", "-c", body]
        run = subprocess.run(argv, cwd=ROOT, env=AS_A_USER, capture_output=True, text=True, timeout=120,
                             check=False)  # fmt: skip
        assert run.returncode == 0, f"{body}\n{run.stdout}\n{run.stderr}"
        assert "usage: make run" in run.stdout or "make run" not in body


def test_the_commands_table_names_exactly_the_makefiles_targets() -> None:
    help_lines = subprocess.run(["make", "help"], cwd=ROOT, env=AS_A_USER, capture_output=True, text=True,
                                check=True).stdout  # fmt: skip
    targets = {line.split()[0] for line in help_lines.splitlines()}
    table = README.split("## Commands\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `make ([a-z-]+)`", table, re.M))
    internal = {"install", "kube-assets", "octokit-assets", "lock", "clean"}  # run by the others, or upkeep
    assert documented == targets - internal
    assert {"demo", "dev", "test", "run", "bench"} <= targets
