"""The local stack's child processes (`stagegate_dev.devstack.Processes`): `make dev` goes on without a
function that dies (as a cluster goes on without a crashed webhook pod: the break-glass runbook stops
`k8s_admission` on purpose) and stops when etcd or the apiserver does; stopping is not cut short by a
signal arriving meanwhile, which once left a whole stack running, re-parented."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from stagegate_dev import devstack
from stagegate_dev.commandline import signals_held, stop_cleanly_on_signals


def test_the_stack_goes_on_without_a_function_and_stops_without_an_essential_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    procs = devstack.Processes(tmp_path)
    apiserver = procs.start("kube-apiserver", [sys.executable, "-c", "import time; time.sleep(60)"])
    procs.start("function-k8s_admission", [sys.executable, "-c", "print('serving'); raise SystemExit(3)"])
    answer: list[int] = []
    waiting = threading.Thread(
        target=lambda: answer.append(devstack.wait_for_children(procs, ["kube-apiserver"]))
    )
    try:
        waiting.start()
        waiting.join(2.0)
        assert waiting.is_alive(), "the stack stopped with a function"
        apiserver.kill()
        waiting.join(5.0)
        assert answer == [1]
    finally:
        procs.stop_all()
    said = capsys.readouterr().err
    assert (
        "function-k8s_admission exited; the stack goes on without it; the last lines of its log:\nserving"
        in said
    )
    assert "kube-apiserver exited; the last lines of its log:" in said


def test_a_signal_while_stopping_does_not_leave_the_rest_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    procs = devstack.Processes(tmp_path)
    started = [procs.start(f"p{i}", [sys.executable, "-c", "import time; time.sleep(60)"]) for i in range(3)]
    real, interrupted = devstack._stop, []

    def stop(proc: subprocess.Popen[bytes]) -> None:
        if not interrupted:  # SIGTERM arrives while the first one is being stopped
            interrupted.append(proc)
            raise KeyboardInterrupt
        real(proc)

    monkeypatch.setattr(devstack, "_stop", stop)
    procs.stop_all()
    assert interrupted
    assert [p.poll() is not None for p in started] == [True, True, True]


def test_a_signal_while_a_child_is_being_registered_is_raised_only_once_it_is() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    reached: list[str] = []

    def held() -> None:
        with signals_held():
            terminated(0.1)  # the handler runs in here, between bytecodes: held, not raised
            reached.append("the rest of the block ran")

    stop_cleanly_on_signals()
    try:
        with pytest.raises(KeyboardInterrupt):
            held()
        with pytest.raises(KeyboardInterrupt):  # outside the block: at once
            terminated(1)
    finally:
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGINT, before[1])
    assert reached == ["the rest of the block ran"]


def terminated(linger: float) -> None:
    """SIGTERM to this process, then a moment for its handler to run."""
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(linger)
