"""The store a follower batch's Environment changes run against: one list of gates per namespace, kept up
to date with the batch's own writes, dropped on a conflict (every write stays conditional)."""

from __future__ import annotations

import pytest

from shared.views import Environment, RolloutGate
from stagegate.follow_service import _GatesListedOnce
from stagegate.kube import KubeConflict
from stagegate.reconcile import ensure_gates
from tests.stagegate.in_memory import NAMESPACE, InMemoryKube, environment_raw


class Counting(InMemoryKube):
    def __init__(self) -> None:
        super().__init__()
        self.lists = 0

    def list_gates(self, namespace: str | None) -> list[RolloutGate]:
        self.lists += 1
        return super().list_gates(namespace)


def test_many_environments_of_a_namespace_cost_one_list_of_gates_and_see_each_others_writes() -> None:
    kube = Counting()
    store = _GatesListedOnce(kube)
    envs = [Environment.from_raw(environment_raw(f"prod-{i}", uid=f"u{i}")) for i in range(5)]
    for env in envs:
        [outcome] = ensure_gates(env, store, fresh=False)
        assert outcome.action == "create"
    assert kube.lists == 1
    names = {g.name for g in store.list_gates(NAMESPACE)}
    assert {f"prod-{i}-stagegate" for i in range(5)} <= names  # the batch's own creates are in the list
    for env in envs:  # again: nothing to do, nothing listed again
        assert [o.action for o in ensure_gates(env, store, fresh=False)] == ["unchanged"]
    assert kube.lists == 1


def test_a_conflict_drops_the_list_so_the_retry_reads_the_api_again() -> None:
    kube = Counting()
    store = _GatesListedOnce(kube)
    stale = store.list_gates(NAMESPACE)
    gate = next(g for g in stale if g.name == "prod-stagegate")
    kube.patch_gate(
        NAMESPACE, gate.name, {"metadata": {"labels": {"x": "y"}}}, gate.resource_version
    )  # elsewhere
    with pytest.raises(KubeConflict):
        store.patch_gate(NAMESPACE, gate.name, {"spec": {"allowedVersions": []}}, gate.resource_version)
    fresh = next(g for g in store.list_gates(NAMESPACE) if g.name == "prod-stagegate")
    assert fresh.resource_version != gate.resource_version
    assert kube.lists == 2
