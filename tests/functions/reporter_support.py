"""A governed Rollout whose history tests write, and GitHub's record of it read back from the fake."""

from __future__ import annotations

import base64
import datetime
import json
import uuid
from typing import Any

from kubernetes import client

from stagegate.github import GitHubDeployments, github_client
from stagegate.kube import KubeGates
from stagegate.report_service import Limits, RolloutReport, report_rollout
from stagegate_dev.fake_github import FakeGitHub
from tests.kube_objects import ENV_ARGS, environment

ROLLOUT_ARGS = ("kuberik.com", "v1alpha1")


def rev(n: int) -> str:
    return f"{n:040x}"


class History:
    """staging's Environment and Rollout in a namespace, with a repository of its own on the fake."""

    def __init__(
        self,
        custom: client.CustomObjectsApi,
        kube: KubeGates,
        fake: FakeGitHub,
        namespace: str,
        env: str = "staging",
    ) -> None:
        self.custom, self.kube, self.fake, self.namespace, self.env = custom, kube, fake, namespace, env
        self.repo = f"org-{namespace}/myapp"
        self.rollout = f"myapp-{env}"
        fake.add_repo(self.repo)
        self.entries: list[dict[str, Any]] = []  # newest first, as the rollout controller keeps them

    def create(self, upstream: str | None = None) -> History:
        body = environment(self.namespace, self.env, upstream=upstream, rollout=self.rollout)
        body["spec"]["backend"]["project"] = self.repo
        self.custom.create_namespaced_custom_object(*ENV_ARGS, self.namespace, "environments", body)
        rollout = {
            "apiVersion": "kuberik.com/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": self.rollout},
        }
        self.custom.create_namespaced_custom_object(*ROLLOUT_ARGS, self.namespace, "rollouts", rollout)
        return self

    def deploy(
        self, n: int, bake: str | None = None, bake_message: str | None = None, *, known: bool = True
    ) -> int:
        """A new history entry for revision `rev(n)` (GitHub knows the commit unless `known` is False)."""
        if known:
            self.fake.set_ref(self.repo, f"refs/tags/build-{n}", rev(n))
        entry: dict[str, Any] = {
            "id": n,
            "version": {"tag": f"main-{n}", "revision": rev(n)},
            "timestamp": "2026-11-26T12:00:00Z",
            "message": f"deploy main-{n}",
        }
        self.entries.insert(0, entry)
        self.set_bake(n, bake, bake_message)
        return n

    def set_bake(self, n: int, bake: str | None, message: str | None = None) -> None:
        """Set the entry's bake state, stamping when it started or ended as the rollout controller does."""
        entry = next(e for e in self.entries if e["id"] == n)
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for key, value in (("bakeStatus", bake), ("bakeStatusMessage", message)):
            if value is None:
                entry.pop(key, None)
            else:
                entry[key] = value
        if bake == "InProgress":
            entry.setdefault("bakeStartTime", now)
        elif bake in ("Succeeded", "Failed", "Cancelled"):
            entry["bakeEndTime"] = now
        self.write()

    def write(self) -> None:
        self.custom.patch_namespaced_custom_object_status(
            *ROLLOUT_ARGS, self.namespace, "rollouts", self.rollout, {"status": {"history": self.entries}}
        )

    def reader(self, **kwargs: Any) -> GitHubDeployments:
        """A GitHub client whose identity is already resolved, so `calls` counts only the report's reads."""
        github = GitHubDeployments(github_client(self.fake.token, self.fake.url, 5), **kwargs)
        github.trusted_creators()
        github.calls = 0
        return github

    def report(self, github: GitHubDeployments | None = None, limits: Limits | None = None) -> RolloutReport:
        return report_rollout(
            self.namespace, self.rollout, self.kube, github or self.reader(), limits or Limits()
        )

    @property
    def github_environment(self) -> str:
        return f"kuberik/myapp/{self.env}"

    def recorded(self) -> dict[str, list[dict[str, Any]]]:
        """Entry id -> its deployments on the fake (REST JSON with their statuses, oldest first)."""
        repository = self.fake.state.repo(self.repo)
        found: dict[str, list[dict[str, Any]]] = {}
        for deployment in self.fake.state.list_deployments(repository, environment=self.github_environment):
            doc = decode_go_payload(deployment.payload)
            statuses = list(reversed(self.fake.statuses(self.repo, deployment.id)))
            found.setdefault(doc["id"], []).append(
                {
                    "deployment": deployment,
                    "payload": doc,
                    "statuses": [(s["state"], s["description"]) for s in statuses],
                }
            )
        return found


def decode_go_payload(stored: object) -> dict[str, Any]:
    """What the fake stored as payload, read the way the Go controller reads it (base64 JSON, or JSON)."""
    if isinstance(stored, str):
        return json.loads(base64.b64decode(stored, validate=True))
    assert isinstance(stored, dict)
    return stored


def unique() -> str:
    return uuid.uuid4().hex[:8]
