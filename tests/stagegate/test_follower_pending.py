"""The follower's queue: each object once, retries with backoff, and a resume point that never moves past
a change not yet handled."""

from __future__ import annotations

from shared.follow import Change
from stagegate.follower import RETRY_SECONDS, Pending

A = Change("rollout", "team", "a")
B = Change("environment", "team", "b")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_changes_of_one_object_coalesce_and_the_resume_point_follows_a_handled_batch() -> None:
    pending = Pending({"rollouts": "1"}, Clock())
    pending.offer("rollouts", [A], "5")
    pending.offer("rollouts", [A], "6")
    pending.offer("environments", [B], "7")
    batch, marks = pending.take(10, wait=0)
    assert batch == [B, A]  # the Environment first
    assert marks == {"rollouts": "6", "environments": "7"}
    assert pending.resume() == {"rollouts": "1"}  # not before the batch is handled
    pending.done(batch, set(), marks)
    assert pending.resume() == marks


def test_a_failed_change_comes_back_after_its_backoff_and_holds_the_resume_point() -> None:
    clock = Clock()
    pending = Pending({}, clock)
    pending.offer("rollouts", [A, B], "5")
    batch, marks = pending.take(10, wait=0)
    pending.done(batch, {A}, marks)
    assert pending.resume() == {}  # A is not handled: a takeover must see it again
    pending.offer("rollouts", [], "9")  # a bookmark
    assert pending.take(10, wait=0) == ([], None)  # A not due yet, and still pending
    assert pending.resume() == {}
    clock.now += RETRY_SECONDS[0]
    batch, marks = pending.take(10, wait=0)
    assert batch == [A]
    assert marks == {"rollouts": "9"}
    pending.done(batch, {A}, marks)  # fails again: a longer wait
    clock.now += RETRY_SECONDS[0]
    assert pending.take(10, wait=0)[0] == []
    clock.now += RETRY_SECONDS[1]
    batch, marks = pending.take(10, wait=0)
    pending.done(batch, set(), marks)
    assert pending.resume() == {"rollouts": "9"}


def test_a_new_change_of_an_object_waiting_for_its_retry_is_due_at_once() -> None:
    pending = Pending({}, Clock())
    pending.offer("rollouts", [A], "5")
    batch, marks = pending.take(10, wait=0)
    pending.done(batch, {A}, marks)
    pending.offer("rollouts", [A], "6")
    assert pending.take(10, wait=0)[0] == [A]


def test_a_change_offered_while_its_batch_runs_is_not_lost() -> None:
    pending = Pending({}, Clock())
    pending.offer("rollouts", [A], "5")
    batch, marks = pending.take(10, wait=0)
    pending.offer("rollouts", [A], "6")  # written again while being handled
    pending.done(batch, {A}, marks)  # and that handling failed
    assert pending.take(10, wait=0)[0] == [A]  # due now, not after a backoff


def test_bookmarks_move_the_resume_point_while_nothing_is_pending_and_batches_are_bounded() -> None:
    pending = Pending({}, Clock())
    pending.offer("rollouts", [], "50")
    assert pending.take(10, wait=0) == ([], {"rollouts": "50"})
    assert pending.resume() == {"rollouts": "50"}
    many = [Change("rollout", "team", f"r{i}") for i in range(5)]
    pending.offer("rollouts", many, "60")
    batch, marks = pending.take(3, wait=0)
    assert batch == many[:3]
    assert marks is None  # two left: handling these three does not cover version 60
    assert len(pending) == 2


def test_nothing_is_taken_until_every_stream_has_listed_and_environments_go_first() -> None:
    pending = Pending({}, Clock(), streams=["environments", "rollouts"])
    rollouts = [Change("rollout", "team", f"r{i}") for i in range(3)]
    pending.offer("rollouts", rollouts, "5")  # its list came back first
    assert pending.take(10, wait=0) == ([], None)  # the Environments' list is not in yet
    pending.offer("environments", [B], "6")
    batch, marks = pending.take(2, wait=0)
    assert batch == [B, rollouts[0]]  # the Environment first, whatever the order of arrival
    assert marks is None
    assert pending.take(10, wait=0) == (rollouts[1:], {"rollouts": "5", "environments": "6"})
