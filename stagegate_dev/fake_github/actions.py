"""GitHub Actions' custom deployment protection rules: what a held run is, and GitHub's rules on answering it.

A GitHub App provides a custom deployment protection rule; a repository admin enables it on an
environment. A workflow job that targets the environment then waits (run status `waiting`) until
every rule enabled there has been approved by its App, or one has been rejected, through
`POST /repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule`. Only custom rules are
modelled (no required reviewers, wait timers or branch policies). Plain data and pure rules: storing
runs and the deployment they make is `state.py`'s, HTTP is `server.py`'s.

Where each rule comes from (docs.github.com paths; "assumed" marks the fake's own choice where
GitHub documents nothing, with the reason):

- At most 6 rules enabled on one environment (`MAX_RULES`): "a maximum of 6 deployment protection
  rules can be enabled on any environment at the same time" ("Configuring custom deployment
  protection rules", /actions/how-tos/deploy/configure-and-manage-deployments/configure-custom-
  protection-rules).
- Environment names are not case sensitive: "Managing environments for deployment". So is
  `environment_name` in a review (assumed to follow from it).
- A review or a status report must come from the App whose rule it is: "GitHub Apps can only review
  their own custom deployment protection rules" (the note on the REST operation). A token that is no
  GitHub App installation's, or an App without a rule on the run's environment, gets 403 with a
  GitHub error body; the wording is the fake's.
- A status report is a request without `state`; "You can post a status report on the same deployment
  up to 10 times. Status reports support Markdown formatting and can be up to 1024 characters long"
  ("Creating custom deployment protection rules", /actions/how-tos/deploy/configure-and-manage-
  deployments/create-custom-protection-rules). The 10 are counted per deployment, whichever App
  posts (the sentence read literally); the 11th is refused with 422 (assumed: GitHub documents no
  status). The 1,024-character limit is applied to a review's comment too, and a longer comment is
  refused with 422 (both assumed).
- Nothing pending to answer is 422 with a message (assumed, as the status and the wording): the
  `environment_name` is not the run's environment, the App has already approved or rejected, or the
  run no longer waits (another rule rejected it). 404 for an unknown run, as for any unknown object.
- The run goes on when every enabled rule has approved, and fails at the first rejection: "the job
  won't start until all of the environment's protection rules pass" ("Deployments and
  environments", /actions/reference/workflows-and-actions/deployments-and-environments). How the fake
  then ends the run is its simplification, chosen to be deterministic: at once `completed` with
  conclusion `success` (or `failure`), with no job to run in between.
- The rules that apply to a run are those enabled when its job started (assumed: enabling a rule
  later does not hold a job already waiting).
- The permissions an App needs (Actions: read, Deployments: read and write, per "Creating custom
  deployment protection rules") are not checked: the fake checks no permission on any endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal, NamedTuple

if TYPE_CHECKING:
    from stagegate_dev.fake_github.state import User

MAX_RULES = 6
MAX_REPORTS = 10
COMMENT_MAX = 1024
ACTIONS_BOT = "github-actions[bot]"
"""Who creates the deployments of Actions jobs and their statuses."""

Decision = Literal["approved", "rejected"]
Conclusion = Literal["success", "failure"]
REPORT = "pending"
"""A status report's state in the run's review log: the `environment-approvals` schema's "pending
(with comments)"."""


class Refused(Exception):
    """GitHub refuses the review: `status` (403 or 422) and the message of its error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Environment:
    """An environment of a repository, and the Apps whose protection rules it has enabled, in order."""

    id: int
    name: str
    created_at: datetime
    rules: list[int] = field(default_factory=list)

    def enable(self, app_id: int) -> None:
        """Enable the App's rule (again: nothing changes); ValueError past `MAX_RULES`."""
        if app_id in self.rules:
            return
        if len(self.rules) >= MAX_RULES:
            raise ValueError(f"environment {self.name} already has {MAX_RULES} protection rules enabled")
        self.rules.append(app_id)


class Review(NamedTuple):
    """An App's decision on its rule, as `FakeGitHub.workflow_run(...).reviews` lists them."""

    app_id: int
    environment: str
    state: str
    comment: str


@dataclass(frozen=True)
class RuleAnswer:
    """One accepted request to the rule's callback: a decision, or a status report (`state` REPORT)."""

    app_id: int
    user: User
    environment: str
    state: str
    comment: str
    created_at: datetime


@dataclass
class WorkflowRun:
    """A workflow run of one job that targets `environment`; `answers` in the order they came."""

    id: int
    repository_id: int
    workflow_id: int
    workflow: str
    run_number: int
    check_suite_id: int
    event: str
    head_sha: str
    head_branch: str
    actor: User
    environment: str
    deployment_id: int
    rules: tuple[int, ...]
    status: str
    conclusion: str | None
    created_at: datetime
    updated_at: datetime
    answers: list[RuleAnswer] = field(default_factory=list)

    @property
    def reviews(self) -> list[Review]:
        """Every approval and rejection, in order."""
        return [
            Review(a.app_id, a.environment, a.state, a.comment) for a in self.answers if a.state != REPORT
        ]

    @property
    def reports(self) -> list[str]:
        """The comments of every status report, in order."""
        return [a.comment for a in self.answers if a.state == REPORT]

    def decision(self, app_id: int) -> str | None:
        """The App's approval or rejection, if it has answered."""
        return next((a.state for a in self.answers if a.app_id == app_id and a.state != REPORT), None)

    @property
    def waiting_on(self) -> list[int]:
        """The Apps whose rules have yet to answer while the run waits; none once it goes on or fails."""
        if self.status != "waiting":
            return []
        return [app_id for app_id in self.rules if self.decision(app_id) is None]


def review(
    run: WorkflowRun,
    app_id: int | None,
    user: User,
    environment: str,
    state: Decision | None,
    comment: str | None,
    now: Callable[[], datetime],
) -> Conclusion | None:
    """Record one request to the run's callback by `app_id` (None: not a GitHub App installation).

    Returns how the run ends if this answer decides it (every rule approved: `success`; a rejection:
    `failure`), None if it still waits; `Refused` if GitHub would not take the request.
    """
    if app_id is None:
        raise Refused(403, f"{user.login} is not a GitHub App installation: {_OWN_RULES}")
    if environment.casefold() != run.environment.casefold():
        raise Refused(422, f"Workflow run {run.id} has no deployment to environment {environment!r}")
    if app_id not in run.rules:
        message = f"{user.login} has no deployment protection rule on {run.environment}: {_OWN_RULES}"
        raise Refused(403, message)
    text = comment or ""
    if len(text) > COMMENT_MAX:
        raise Refused(422, f"comment is too long (maximum is {COMMENT_MAX} characters)")
    if app_id not in run.waiting_on:
        raise Refused(422, f"No pending deployment protection rule of {user.login} on workflow run {run.id}")
    if state is None and len(run.reports) >= MAX_REPORTS:
        raise Refused(422, f"Status reports are limited to {MAX_REPORTS} per deployment")
    moment = now()
    run.answers.append(RuleAnswer(app_id, user, run.environment, state or REPORT, text, moment))
    run.updated_at = moment
    if state == "rejected":
        return "failure"
    if state == "approved" and not run.waiting_on:
        return "success"
    return None


_OWN_RULES = "GitHub Apps can only review their own custom deployment protection rules"
