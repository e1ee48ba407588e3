"""`stagegate.lanes` and `within`: bounded queues served by priority, refusal instead of growth, and no
work started after the caller stopped waiting."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from shared.errors import RetryableError
from stagegate.abandon import Abandoned, check
from stagegate.http import within
from stagegate.lanes import Lane, LaneFull


@pytest.fixture
def blocked() -> Iterator[tuple[Lane, threading.Event]]:
    """A lane of one worker, busy until the event is set."""
    lane = Lane("test", workers=1, limit=3)
    release, started = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10)

    lane.submit(hold)
    assert started.wait(5)
    yield lane, release
    release.set()


def test_more_urgent_work_runs_first_then_first_come(blocked) -> None:
    lane, release = blocked
    ran: list[str] = []
    futures = [
        lane.submit(lambda: ran.append("batch"), (400, 0)),
        lane.submit(lambda: ran.append("update"), (1, 1)),
        lane.submit(lambda: ran.append("create"), (1, 0)),
    ]
    release.set()
    for future in futures:
        future.result(5)
    assert ran == ["create", "update", "batch"]


def test_a_full_lane_refuses_work_no_more_urgent_than_what_waits(blocked) -> None:
    lane, _ = blocked
    for _ in range(3):
        lane.submit(lambda: None, (5,))
    with pytest.raises(LaneFull, match="refused"):
        lane.submit(lambda: None, (5,))
    with pytest.raises(LaneFull):
        lane.submit(lambda: None, (9,))
    assert lane.waiting == 3


def test_a_full_lane_evicts_the_least_urgent_entry_for_more_urgent_work(blocked) -> None:
    lane, release = blocked
    ran: list[str] = []
    lane.submit(lambda: ran.append("a"), (5,))
    lane.submit(lambda: ran.append("b"), (5,))
    evicted = lane.submit(lambda: ran.append("last batch item"), (5,))
    urgent = lane.submit(lambda: ran.append("create"), (1,))
    with pytest.raises(LaneFull, match="evicted"):
        evicted.result(1)
    release.set()
    urgent.result(5)
    time.sleep(0.1)
    assert ran == ["create", "a", "b"]


def test_withdrawn_work_never_runs_and_frees_its_place(blocked) -> None:
    lane, release = blocked
    ran: list[str] = []
    withdrawn = [lane.submit(lambda: ran.append("withdrawn"), (1,)) for _ in range(3)]
    assert all(f.cancel() for f in withdrawn)
    kept = lane.submit(lambda: ran.append("kept"), (1,))  # the full queue had only withdrawn entries
    release.set()
    kept.result(5)
    time.sleep(0.1)
    assert ran == ["kept"]


def test_within_withdraws_work_that_had_not_started_at_the_deadline(blocked) -> None:
    lane, release = blocked
    ran = threading.Event()
    with pytest.raises(RetryableError, match=r"within 0\.05s; it had not started and never will"):
        within(0.05, ran.set, lane)
    release.set()
    assert not ran.wait(0.5), "work ran after its caller had answered"


def test_within_answers_at_the_deadline_and_the_running_work_makes_no_further_call() -> None:
    lane = Lane("test", workers=1, limit=1)
    release, made, refused = threading.Event(), threading.Event(), threading.Event()

    def slow() -> None:
        release.wait(5)
        try:
            check("a call after the answer")
            made.set()
        except Abandoned:
            refused.set()

    with pytest.raises(RetryableError, match="left undone"):
        within(0.05, slow, lane)
    release.set()
    assert refused.wait(5)
    assert not made.is_set()


def test_within_refuses_at_once_when_the_lane_is_full(blocked) -> None:
    lane, _ = blocked
    for _ in range(3):
        lane.submit(lambda: None)
    started = time.monotonic()
    with pytest.raises(LaneFull):
        within(5, lambda: None, lane)
    assert time.monotonic() - started < 1


def test_errors_reach_the_caller() -> None:
    def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        within(5, fail, Lane("test", workers=1, limit=1))
