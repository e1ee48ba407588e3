"""The recompute holds GitHub's answer while something else changes the Environment: it must plan
again from what the Environment is now, not write what its old relationship justified.

In-process, against the in-memory Kubernetes of the model (`tests.model.store`); found by the model
(`tests/model/test_gate_model.py`, an overlap of a resync and an Environment change).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from shared.bake import CommitLookup
from stagegate.recompute_service import recompute
from tests.kube_objects import environment
from tests.model.store import InMemoryKube
from tests.shared.builders import OID, deployment, lookup

NS = "shop"
REPO = "myorg/myapp"


class Interrupted:
    """staging deployed v1 and has no bake result yet; `meanwhile` runs right after GitHub answered."""

    def __init__(self, meanwhile: Callable[[], None]) -> None:
        self.meanwhile: Callable[[], None] | None = meanwhile

    def commit_deployments(
        self, repository: str, environment: str, revisions: Iterable[str]
    ) -> dict[str, CommitLookup]:
        answer = {r: lookup(OID, deployment(1, 0, tag="v1")) for r in revisions}
        change, self.meanwhile = self.meanwhile, None
        if change is not None:
            change()
        return answer


def put(kube: InMemoryKube, kind: str) -> None:
    body = environment(NS, "qa", upstream="staging", kind=kind, rollout="qa")
    body["spec"]["backend"]["project"] = REPO
    kube.put_environment(body)


def test_a_parallel_environment_made_after_while_github_answers_is_planned_again_as_after() -> None:
    kube = InMemoryKube()
    put(kube, "Parallel")
    kube.put_rollout_status(NS, "qa", [{"tag": "v1", "revision": OID}])
    [parallel] = kube.list_environments([NS])
    recompute([parallel], kube, Interrupted(lambda: put(kube, "After")))
    [gate] = kube.gates.values()
    # Deployed with no result yet justifies v1 for Parallel, nothing for After (what qa is now).
    assert gate["spec"]["allowedVersions"] == []
    [after] = kube.list_environments([NS])
    recompute([after], kube, Interrupted(lambda: None))
    assert (
        gate["spec"]["allowedVersions"] == [] == kube.gates[(NS, "qa-stagegate")]["spec"]["allowedVersions"]
    )
