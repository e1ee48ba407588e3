"""One follower at a time, on the real kube-apiserver's Leases, with each replica's clocks in the test's
hands: a takeover is judged on the challenger's own monotonic clock, never on the holder's timestamps."""

from __future__ import annotations

import pytest

from shared.follow import RESUME_ANNOTATION
from stagegate.kube import KubeGates
from stagegate.leader import LEAD_FRACTION, LEASE_NAME, Leadership


class Clock:
    """A monotonic clock and a wall clock this test moves."""

    def __init__(self, wall: float = 1_800_000_000.0) -> None:
        self.now = 0.0
        self.wall = wall

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.wall + self.now


def replica(gates: KubeGates, namespace: str, identity: str, clock: Clock) -> Leadership:
    return Leadership(gates, namespace, identity, duration=15, monotonic=clock.monotonic, clock=clock.time)


@pytest.fixture
def clocks() -> tuple[Clock, Clock]:
    # b's wall clock runs an hour ahead: were renewTime compared with it, a's claim would look expired.
    return Clock(), Clock(wall=1_800_003_600.0)


@pytest.fixture
def replicas(gates: KubeGates, namespace: str, clocks: tuple[Clock, Clock]) -> tuple[Leadership, Leadership]:
    """a takes the Lease first; b, started next, stands by."""
    a, b = (replica(gates, namespace, name, clock) for name, clock in zip("ab", clocks, strict=True))
    assert a.step({})
    assert a.resume == {}  # a new Lease: list everything
    assert not b.step({})  # first sight of a's claim starts b's count
    return a, b


def test_one_replica_leads_and_a_standby_waits_out_the_lease_on_its_own_clock(
    gates: KubeGates, namespace: str, clocks: tuple[Clock, Clock], replicas: tuple[Leadership, Leadership]
) -> None:
    ca, cb = clocks
    a, b = replicas
    cb.now += 14
    assert not b.step({})  # same record for 14 s: not yet
    ca.now += 5
    assert a.step({"rollouts": "7"})  # a renews: a new record, b counts again
    cb.now += 14
    assert not b.step({})
    # a stops renewing (killed). It stops acting before b may take over.
    ca.now += 15 * LEAD_FRACTION
    assert not a.leading()
    cb.now += 15
    assert b.step({})
    assert b.resume == {"rollouts": "7"}  # where a had handled everything
    lease = gates.read_lease(namespace, LEASE_NAME)
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 2
    assert not a.step({})  # a comes back: b's renewals keep it out
    assert not a.leading()


def test_a_restarted_replica_takes_its_own_lease_back_at_once(
    gates: KubeGates, namespace: str, clocks: tuple[Clock, Clock]
) -> None:
    ca, _ = clocks
    first = replica(gates, namespace, "a", ca)
    assert first.step({})  # takes it
    assert first.step({"environments": "3"})  # renews it, with where it has got to
    again = replica(gates, namespace, "a", Clock())  # the same pod name, a new process
    assert again.step({})
    assert again.resume == {"environments": "3"}


def test_a_released_lease_is_taken_at_once_and_keeps_the_resume_point(
    gates: KubeGates, namespace: str, replicas: tuple[Leadership, Leadership]
) -> None:
    a, b = replicas
    a.release({"rollouts": "42"})
    assert not a.leading()
    assert b.step({})
    assert b.resume == {"rollouts": "42"}
    lease = gates.read_lease(namespace, LEASE_NAME)
    assert lease is not None
    assert RESUME_ANNOTATION in lease["metadata"]["annotations"]


def test_a_holder_whose_lease_was_written_by_another_stops_at_once(
    gates: KubeGates, namespace: str, clocks: tuple[Clock, Clock]
) -> None:
    ca, _ = clocks
    a = replica(gates, namespace, "a", ca)
    assert a.step({})
    lease = gates.read_lease(namespace, LEASE_NAME)
    assert lease is not None
    gates.replace_lease({**lease, "spec": {**lease["spec"], "holderIdentity": "someone"}})
    assert not a.step({})  # its conditional renewal got 409
    assert not a.leading()
