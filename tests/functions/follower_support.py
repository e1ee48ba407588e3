"""staging and prod in one namespace, as the follower's tests and bench drive them."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from tests.functions.reporter_support import ROLLOUT_ARGS, History, rev
from tests.kube_objects import ENV_ARGS, GATE_ARGS, environment


class Pipeline:
    """staging and prod (`After staging`) in one namespace, each with its Rollout; prod's Rollout lists
    `main-N` as a release candidate once staging has deployed it."""

    def __init__(self, history: History, custom: client.CustomObjectsApi) -> None:
        self.history, self.custom, self.namespace = history, custom, history.namespace

    def create(self) -> Pipeline:
        self.history.create()
        prod = environment(self.namespace, "prod", upstream="staging", rollout="myapp-prod")
        prod["spec"]["backend"]["project"] = self.history.repo
        self.custom.create_namespaced_custom_object(*ENV_ARGS, self.namespace, "environments", prod)
        rollout = {
            "apiVersion": "kuberik.com/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": "myapp-prod"},
        }
        self.custom.create_namespaced_custom_object(*ROLLOUT_ARGS, self.namespace, "rollouts", rollout)
        return self

    def candidates(self, *ns: int) -> None:
        body = {"status": {"releaseCandidates": [{"tag": f"main-{n}", "revision": rev(n)} for n in ns]}}
        self.custom.patch_namespaced_custom_object_status(
            *ROLLOUT_ARGS, self.namespace, "rollouts", "myapp-prod", body
        )

    def prod_gate(self) -> dict[str, Any] | None:
        gates = self.custom.list_namespaced_custom_object(*GATE_ARGS, self.namespace, "rolloutgates")["items"]
        owned = [
            g for g in gates if any(o["name"] == "prod" for o in g["metadata"].get("ownerReferences") or [])
        ]
        return owned[0] if owned else None

    def allowed(self) -> list[str] | None:
        """prod's gate's list (None: no gate yet, or no list)."""
        gate = self.prod_gate()
        allowed: list[str] | None = gate["spec"].get("allowedVersions") if gate else None
        return allowed

    def recorded_states(self, n: int) -> list[list[str]]:
        """The states of each GitHub deployment of staging's entry `n` (one list per deployment)."""
        return [[state for state, _ in d["statuses"]] for d in self.history.recorded().get(str(n), [])]
