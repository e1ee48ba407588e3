"""The REST (and webhook) JSON shapes of the fake's objects, field for field as GitHub sends them.

Every dict built here leaves the fake only after it has been checked against GitHub's published
description (`contracts.py`), so a field missing here shows up as a schema error, not as a silently
wrong fake. The server and the webhook builder call these functions through the module
(`rest.deployment_json(...)`), so a test can replace one to prove that the check catches it.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from stagegate_dev.fake_github.actions import Environment, RuleAnswer, WorkflowRun
from stagegate_dev.fake_github.state import Deployment, DeploymentStatus, Repository, User, node_id, timestamp

HTML_BASE = "https://github.com"
DOCS = "https://docs.github.com/rest"


def user_json(user: User, api: str) -> dict[str, Any]:
    """A `simple-user`.

    Without `user_view_type`: GitHub sends it nowadays and its REST and webhook descriptions allow it,
    but the community webhook schema (last published 2024-12) forbids it.
    """
    base = f"{api}/users/{user.login}"
    return {
        "login": user.login,
        "id": user.id,
        "node_id": user.node_id,
        "avatar_url": f"https://avatars.githubusercontent.com/u/{user.id}?v=4",
        "gravatar_id": "",
        "url": base,
        "html_url": f"{HTML_BASE}/{user.login}",
        "followers_url": f"{base}/followers",
        "following_url": f"{base}/following{{/other_user}}",
        "gists_url": f"{base}/gists{{/gist_id}}",
        "starred_url": f"{base}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{base}/subscriptions",
        "organizations_url": f"{base}/orgs",
        "repos_url": f"{base}/repos",
        "events_url": f"{base}/events{{/privacy}}",
        "received_events_url": f"{base}/received_events",
        "type": user.type,
        "site_admin": False,
    }


def full_repository_json(repo: Repository, api: str) -> dict[str, Any]:
    """A `full-repository`, as `GET /repos/{owner}/{repo}` answers."""
    return {**repository_json(repo, api), "network_count": 0, "subscribers_count": 0}


def repository_json(repo: Repository, api: str) -> dict[str, Any]:
    """A repository as webhook deliveries carry it (REST's full repository minus two counts)."""
    html = f"{HTML_BASE}/{repo.full_name}"
    created = timestamp(repo.created_at)
    return {
        **minimal_repository_json(repo, api),
        "created_at": created,
        "updated_at": created,
        "pushed_at": created,
        "git_url": f"git://github.com/{repo.full_name}.git",
        "ssh_url": f"git@github.com:{repo.full_name}.git",
        "clone_url": f"{html}.git",
        "svn_url": html,
        "homepage": None,
        "size": 0,
        "stargazers_count": 0,
        "watchers_count": 0,
        "language": None,
        "has_issues": True,
        "has_projects": True,
        "has_downloads": True,
        "has_wiki": True,
        "has_pages": False,
        "has_discussions": False,
        "forks_count": 0,
        "mirror_url": None,
        "archived": False,
        "disabled": False,
        "open_issues_count": 0,
        "license": None,
        "allow_forking": True,
        "is_template": False,
        "web_commit_signoff_required": False,
        "topics": [],
        "visibility": "private" if repo.private else "public",
        "forks": 0,
        "open_issues": 0,
        "watchers": 0,
        "default_branch": repo.default_branch,
        "custom_properties": {},
    }


def minimal_repository_json(repo: Repository, api: str) -> dict[str, Any]:
    """A repository as a workflow run carries it: who it is and its links, no counts or settings."""
    url = f"{api}/repos/{repo.full_name}"
    html = f"{HTML_BASE}/{repo.full_name}"
    return {
        "id": repo.id,
        "node_id": node_id("Repository", repo.id),
        "name": repo.name,
        "full_name": repo.full_name,
        "private": repo.private,
        "owner": user_json(repo.owner, api),
        "html_url": html,
        "description": None,
        "fork": False,
        "url": url,
        "forks_url": f"{url}/forks",
        "keys_url": f"{url}/keys{{/key_id}}",
        "collaborators_url": f"{url}/collaborators{{/collaborator}}",
        "teams_url": f"{url}/teams",
        "hooks_url": f"{url}/hooks",
        "issue_events_url": f"{url}/issues/events{{/number}}",
        "events_url": f"{url}/events",
        "assignees_url": f"{url}/assignees{{/user}}",
        "branches_url": f"{url}/branches{{/branch}}",
        "tags_url": f"{url}/tags",
        "blobs_url": f"{url}/git/blobs{{/sha}}",
        "git_tags_url": f"{url}/git/tags{{/sha}}",
        "git_refs_url": f"{url}/git/refs{{/sha}}",
        "trees_url": f"{url}/git/trees{{/sha}}",
        "statuses_url": f"{url}/statuses/{{sha}}",
        "languages_url": f"{url}/languages",
        "stargazers_url": f"{url}/stargazers",
        "contributors_url": f"{url}/contributors",
        "subscribers_url": f"{url}/subscribers",
        "subscription_url": f"{url}/subscription",
        "commits_url": f"{url}/commits{{/sha}}",
        "git_commits_url": f"{url}/git/commits{{/sha}}",
        "comments_url": f"{url}/comments{{/number}}",
        "issue_comment_url": f"{url}/issues/comments{{/number}}",
        "contents_url": f"{url}/contents/{{+path}}",
        "compare_url": f"{url}/compare/{{base}}...{{head}}",
        "merges_url": f"{url}/merges",
        "archive_url": f"{url}/{{archive_format}}{{/ref}}",
        "downloads_url": f"{url}/downloads",
        "issues_url": f"{url}/issues{{/number}}",
        "pulls_url": f"{url}/pulls{{/number}}",
        "milestones_url": f"{url}/milestones{{/number}}",
        "notifications_url": f"{url}/notifications{{?since,all,participating}}",
        "labels_url": f"{url}/labels{{/name}}",
        "releases_url": f"{url}/releases{{/id}}",
        "deployments_url": f"{url}/deployments",
    }


def deployment_json(deployment: Deployment, repo: Repository, api: str) -> dict[str, Any]:
    """A `deployment`."""
    url = f"{api}/repos/{repo.full_name}/deployments/{deployment.id}"
    return {
        "url": url,
        "id": deployment.id,
        "node_id": node_id("Deployment", deployment.id),
        "task": deployment.task,
        "original_environment": deployment.original_environment,
        "environment": deployment.environment,
        "description": deployment.description,
        "created_at": timestamp(deployment.created_at),
        "updated_at": timestamp(deployment.updated_at),
        "statuses_url": f"{url}/statuses",
        "repository_url": f"{api}/repos/{repo.full_name}",
        "creator": user_json(deployment.creator, api),
        "sha": deployment.sha,
        "ref": deployment.ref,
        "payload": deployment.payload,
        "transient_environment": deployment.transient_environment,
        "production_environment": deployment.production_environment,
        "performed_via_github_app": None,
    }


def status_json(status: DeploymentStatus, repo: Repository, api: str) -> dict[str, Any]:
    """A `deployment-status`; `log_url` only when set (the community webhook schema wants a URI)."""
    deployment_url = f"{api}/repos/{repo.full_name}/deployments/{status.deployment_id}"
    body = {
        "url": f"{deployment_url}/statuses/{status.id}",
        "id": status.id,
        "node_id": node_id("DeploymentStatus", status.id),
        "state": status.state,
        "creator": user_json(status.creator, api),
        "description": status.description,
        "environment": status.environment,
        "target_url": status.log_url,
        "created_at": timestamp(status.created_at),
        "updated_at": timestamp(status.created_at),
        "deployment_url": deployment_url,
        "repository_url": f"{api}/repos/{repo.full_name}",
        "environment_url": status.environment_url,
        "performed_via_github_app": None,
    }
    if status.log_url:
        body["log_url"] = status.log_url
    return body


def workflow_run_json(run: WorkflowRun, repo: Repository, api: str) -> dict[str, Any]:
    """A `workflow-run` of a run with one job (the one that targets `run.environment`).

    `head_commit` is null: the fake has no git objects to describe the commit (GitHub's description
    allows null), and the title is the workflow's name, where GitHub shows the commit's message.
    """
    url = f"{api}/repos/{repo.full_name}/actions/runs/{run.id}"
    where = minimal_repository_json(repo, api)
    created = timestamp(run.created_at)
    return {
        "id": run.id,
        "name": run.workflow,
        "node_id": node_id("WorkflowRun", run.id),
        "check_suite_id": run.check_suite_id,
        "check_suite_node_id": node_id("CheckSuite", run.check_suite_id),
        "head_branch": run.head_branch,
        "head_sha": run.head_sha,
        "path": f".github/workflows/{run.workflow}.yml",
        "display_title": run.workflow,
        "run_number": run.run_number,
        "event": run.event,
        "status": run.status,
        "conclusion": run.conclusion,
        "workflow_id": run.workflow_id,
        "url": url,
        "html_url": f"{HTML_BASE}/{repo.full_name}/actions/runs/{run.id}",
        "pull_requests": [],
        "created_at": created,
        "updated_at": timestamp(run.updated_at),
        "actor": user_json(run.actor, api),
        "run_attempt": 1,
        "referenced_workflows": [],
        "run_started_at": created,
        "triggering_actor": user_json(run.actor, api),
        "jobs_url": f"{url}/jobs",
        "logs_url": f"{url}/logs",
        "check_suite_url": f"{api}/repos/{repo.full_name}/check-suites/{run.check_suite_id}",
        "artifacts_url": f"{url}/artifacts",
        "cancel_url": f"{url}/cancel",
        "rerun_url": f"{url}/rerun",
        "previous_attempt_url": None,
        "workflow_url": f"{api}/repos/{repo.full_name}/actions/workflows/{run.workflow_id}",
        "head_commit": None,
        "repository": where,
        "head_repository": where,
        "head_repository_id": repo.id,
    }


def environment_json(environment: Environment, repo: Repository, api: str) -> dict[str, Any]:
    """An environment as a pending deployment or a review names it."""
    name = quote(environment.name, safe="")
    return {
        "id": environment.id,
        "node_id": node_id("Environment", environment.id),
        "name": environment.name,
        "url": f"{api}/repos/{repo.full_name}/environments/{name}",
        "html_url": f"{HTML_BASE}/{repo.full_name}/deployments/activity_log?environments_filter={name}",
    }


def pending_deployment_json(
    environment: Environment, run: WorkflowRun, repo: Repository, api: str
) -> dict[str, Any]:
    """A `pending-deployment`: an environment held by custom rules only (no wait timer, no reviewers,
    so nobody can approve it here); the wait counts from when the job started waiting."""
    return {
        "environment": environment_json(environment, repo, api),
        "wait_timer": 0,
        "wait_timer_started_at": timestamp(run.created_at),
        "current_user_can_approve": False,
        "reviewers": [],
    }


def approval_json(answer: RuleAnswer, environment: Environment, repo: Repository, api: str) -> dict[str, Any]:
    """An `environment-approvals` entry: an App's review, or its status report (state `pending`)."""
    return {
        "environments": [environment_json(environment, repo, api)],
        "state": answer.state,
        "user": user_json(answer.user, api),
        "comment": answer.comment,
    }


def graphql_payload(deployment: Deployment) -> str:
    """`Deployment.payload` in GraphQL: the stored payload as a JSON string."""
    if isinstance(deployment.payload, str):
        return deployment.payload
    return json.dumps(deployment.payload, separators=(",", ":"))


def rate_limit_json(limits: dict[str, dict[str, int]]) -> dict[str, Any]:
    """A `rate-limit-overview` (`rate` repeats `core`, as GitHub still sends it)."""
    return {"resources": limits, "rate": limits["core"]}


def error_json(
    status: int, message: str, documentation_url: str = DOCS, errors: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    """GitHub's error body: `message`, `documentation_url`, `status` (a string), maybe `errors`."""
    body: dict[str, Any] = {"message": message, "documentation_url": documentation_url, "status": str(status)}
    if errors:
        body["errors"] = errors
    return body
