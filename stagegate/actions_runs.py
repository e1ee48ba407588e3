"""GitHub Actions runs held by a deployment protection rule: find them, answer them (REST).

GitHub keeps no list of "runs waiting on this App's rule", so one is made from two reads it has:
`GET /repos/{o}/{r}/actions/runs?status=waiting[&head_sha=]` (one page of up to 100, newest first),
then each such run's `GET .../actions/runs/{id}/pending_deployments` to see which environments it
waits on. Nothing is kept between calls: every bake result and every resync asks again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from shared.errors import RetryableError
from stagegate.github import repo_path

RUNS_PAGE = 100
"""GitHub's largest page of workflow runs."""


@runtime_checkable
class RestClient(Protocol):
    """The REST calls this needs (`stagegate.github.GitHubDeployments`)."""

    def rest_get(self, path: str, parameters: Mapping[str, Any], what: str) -> Any:
        """One GET."""

    def rest_post(self, path: str, body: Mapping[str, Any], what: str) -> Mapping[str, Any]:
        """One POST."""


@dataclass(frozen=True, slots=True)
class WaitingRun:
    """A workflow run held on an environment: its id and commit."""

    run_id: int
    sha: str


def waiting_runs(
    github: RestClient, repository: str, environment: str, sha: str | None, limit: int
) -> tuple[list[WaitingRun], bool]:
    """Up to `limit` runs of `repository` (of commit `sha`, when given) waiting on `environment`, and
    whether more runs were waiting than were looked at."""
    what = f"workflow runs of {repository} waiting on {environment}"
    path = f"{repo_path(repository, what)}/actions/runs"
    parameters: dict[str, Any] = {"status": "waiting", "per_page": min(RUNS_PAGE, max(limit, 1))}
    if sha is not None:
        parameters["head_sha"] = sha
    answer = github.rest_get(path, parameters, what)
    try:
        runs = [(int(r["id"]), str(r["head_sha"]).lower()) for r in answer["workflow_runs"]]
        total = int(answer["total_count"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RetryableError(f"{what}: GitHub's answer lacks {type(exc).__name__}: {exc}") from exc
    held = [
        WaitingRun(run_id, head)
        for run_id, head in runs[:limit]
        if _waits_on(github, path, run_id, environment)
    ]
    return held, total > min(len(runs), limit)


def _waits_on(github: RestClient, runs_path: str, run_id: int, environment: str) -> bool:
    what = f"pending deployments of workflow run {run_id}"
    pending = github.rest_get(f"{runs_path}/{run_id}/pending_deployments", {}, what)
    if not isinstance(pending, list):
        raise RetryableError(f"{what}: GitHub's answer is not a list")
    names = [((p.get("environment") or {}).get("name") or "") for p in pending if isinstance(p, Mapping)]
    return any(isinstance(n, str) and n.casefold() == environment.casefold() for n in names)


def answer_run(github: RestClient, repository: str, run_id: int, body: Mapping[str, Any]) -> None:
    """`POST .../actions/runs/{run_id}/deployment_protection_rule`: a review, or a status report."""
    what = f"answer the protection rule of workflow run {run_id} in {repository}"
    github.rest_post(
        f"{repo_path(repository, what)}/actions/runs/{run_id}/deployment_protection_rule", body, what
    )
