"""`python -m stagegate_dev.github_cli record-bake`: record a bake on the GitHub stand-in by hand;
`push`: make a commit known to it, as pushing a tag does; `job start` / `job show`: start a workflow
job that a deployment protection rule holds, and see how it stands.

Why: in `make dev` nothing plays kuberik's environment controller (or stagegate's reporter, which
records what it would), so someone has to write staging's deployment and bake status on GitHub before
prod's gate can open. This writes exactly what they write for a Rollout history entry (`shared.report`:
the deployment of the revision to `kuberik/<name>/<env>` with kuberik's payload, then a status whose
state and description say the bake's result), over GitHub's REST API with the functions' own client,
as the identity the functions trust. The stand-in then delivers the signed `deployment_status` webhook
to `github_webhook` by itself. Recording the same revision again adds a status to its deployment, as a
bake that moves on does. `push` creates a tag (GitHub's "Create a reference"), which on the stand-in
makes the commit known: on a managed cluster (`make dev-managed`) stagegate's own reporter records the
bakes from the Rollout's history, and GitHub takes deployments only of commits it knows. Configuration
is the functions' own: KUBECONFIG (the Environment says where to record), GITHUB_TOKEN and
GITHUB_API_URL; `make dev` prints them. Exit codes as `stagegate`'s: 0 recorded, 2 a configuration or
API error.

`job start` does what a push does on GitHub when a workflow job targets an environment: GitHub
Actions creates the job's deployment and, if the environment has custom deployment protection rules,
holds the run and sends each rule's App its `deployment_protection_rule` webhook. GitHub has no API for
that, so this asks the stand-in's own endpoint (`POST /_stand-in/repos/{owner}/{repo}/jobs`, which only
the stand-in serves) and prints the run's id. `job show` reads the run back with GitHub's REST API only
(the run, its pending deployments, its review history), as anyone with read access could.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from shared.errors import PermanentError, StagegateError
from shared.report import BAKE_STATES, Entry, Target, bake_status, deployment_body, recorded_for, status_body
from shared.views import Environment
from stagegate.github import GitHubDeployments, github_reader
from stagegate.kube import KubeGates, api_client
from stagegate.settings import ConfigError, Settings

if TYPE_CHECKING:
    from github import Github

BAKES = [bake for bake in BAKE_STATES if bake]
STAND_IN = "/_stand-in"
"""The stand-in's own endpoints (not GitHub's)."""


def entry(tag: str, revision: str, bake: str) -> Entry:
    """The Rollout history entry the bake belongs to. Its id, which kuberik numbers per Rollout, is
    taken from the revision, so every call for one revision lands on the same deployment."""
    version = {"tag": tag, "revision": revision}
    return Entry(int(revision[:7], 16), revision, version, None, *bake_status(bake, None))


def record_bake(env: Environment, bake: Entry, github: GitHubDeployments) -> list[str]:
    """Record `bake` for `env` on GitHub as the reporter does; one line per write made."""
    target = Target.of(env)
    if target is None:
        raise PermanentError(f"Environment {env.key} has no spec.backend.project: nowhere to record")
    lookup = github.commit_deployments(target.repository, target.environment, [bake.revision])
    deployments = [d.id for d in recorded_for(bake, lookup.get(bake.revision), target)]
    done = []
    if not deployments:
        deployments = [github.create_deployment(target.repository, deployment_body(env, target, bake))]
        done.append(f"deployment {deployments[0]} of {bake.revision[:7]} to {target.environment}")
    for deployment in deployments:
        github.create_status(target.repository, deployment, status_body(target, bake))
        done.append(f"status {bake.state} ({bake.description}) on deployment {deployment}")
    return [f"recorded on GitHub {target.repository}: {what}" for what in done]


def client(settings: Settings) -> Github:
    """A PyGithub client with the functions' credentials."""
    from stagegate.github import github_client

    return github_client(
        settings.github_credentials(), settings.github_api_url, settings.github_deadline_seconds
    )


@contextlib.contextmanager
def refused(what: str) -> Iterator[None]:
    """Turn GitHub's refusal into a `PermanentError` that says what was refused."""
    from github import GithubException

    try:
        yield
    except GithubException as exc:
        raise PermanentError(f"GitHub refused to {what}: HTTP {exc.status}") from exc


def push(repository: str, tag: str, revision: str, settings: Settings) -> str:
    """Create the tag `tag` at `revision` in `repository` (a push, as far as the stand-in can tell)."""
    with refused(f"create the tag {tag} in {repository}"):
        client(settings).get_repo(repository).create_git_ref(f"refs/tags/{tag}", revision)
    return f"pushed tag {tag} at {revision[:7]} to {repository}"


def start_job(repository: str, job: dict[str, str], settings: Settings) -> str:
    """Start a workflow job on the stand-in (`job`: environment, sha, ref, workflow, event); its run id."""
    github = client(settings)
    with refused(f"start a job on {job['environment']} in {repository}"):
        path = f"{STAND_IN}/repos/{github.get_repo(repository).full_name}/jobs"
        _, run = github.requester.requestJsonAndCheck("POST", path, input=job)
    return str(run["id"])


def show_job(
    repository: str, run: int | str, settings: Settings, until: str | None = None, timeout: float = 30
) -> list[str]:
    """How a workflow run (by id, or the newest of a commit) stands, read with GitHub's REST API: one line
    for the run, one for what it waits on, one per review or status report (oldest first). With `until`
    (`answered`: a review or a status report; `completed`), first wait for that, at most `timeout` s."""
    github = client(settings)
    deadline = time.monotonic() + timeout
    while True:
        lines, answered, completed = _job_lines(github, repository, run)
        if until is None or (until == "answered" and answered) or (until == "completed" and completed):
            return lines
        if time.monotonic() >= deadline:
            raise PermanentError(f"workflow run not {until} within {timeout:g} s: " + " / ".join(lines))
        time.sleep(0.2)


def _job_lines(github: Github, repository: str, run: int | str) -> tuple[list[str], bool, bool]:
    with refused(f"read the workflow run {run} of {repository}"):
        base = f"{github.get_repo(repository).url}/actions/runs"
        if isinstance(run, str):  # a commit: its newest run (GitHub lists runs newest first)
            runs = github.requester.requestJsonAndCheck("GET", base, parameters={"head_sha": run})[1]
            if not runs["workflow_runs"]:
                raise PermanentError(f"no workflow run of {run[:7]} in {repository}")
            run = int(runs["workflow_runs"][0]["id"])
        url = f"{base}/{run}"
        found, pending, answers = (
            github.requester.requestJsonAndCheck("GET", url + tail)[1]
            for tail in ("", "/pending_deployments", "/approvals")
        )
    outcome = found["status"] + (f", {found['conclusion']}" if found["conclusion"] else "")
    lines = [
        f"run {found['id']} of {found['name']} ({found['event']} on {found['head_branch']} at "
        f"{found['head_sha'][:7]}): {outcome}"
    ]
    if pending:
        lines.append("  waiting on: " + ", ".join(p["environment"]["name"] for p in pending))
    for answer in answers:
        kind = "status report" if answer["state"] == "pending" else answer["state"]
        environments = ", ".join(e["name"] for e in answer["environments"])
        lines.append(f"  {kind} by {answer['user']['login']} on {environments}: {answer['comment']}")
    return lines, bool(answers), found["status"] == "completed"


def commit_id(value: str) -> str:
    """An argparse type: a full commit id."""
    if len(value) != 40 or any(c not in "0123456789abcdef" for c in value):
        raise argparse.ArgumentTypeError("must be a full commit id: 40 lower-case hex digits")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stagegate_dev.github_cli", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    record = commands.add_parser(
        "record-bake",
        help="record ENVIRONMENT's deployment of a revision and its bake result, as kuberik does",
        description="Record on GitHub that ENVIRONMENT deployed REVISION (tagged TAG) and how its bake "
        "went, as kuberik's environment controller (or stagegate's reporter) records a Rollout history "
        "entry; GitHub then delivers the deployment_status webhook.",
    )
    record.add_argument("environment")
    record.add_argument("-n", "--namespace", default="default")
    record.add_argument("--tag", required=True, help="the release's tag, as the Rollout lists it")
    record.add_argument(
        "--revision", required=True, type=commit_id, help="the release's commit (40 hex digits)"
    )
    record.add_argument(
        "--bake",
        choices=BAKES,
        default="Succeeded",
        help="the history entry's bakeStatus (default: %(default)s)",
    )
    pushed = commands.add_parser(
        "push",
        help="make a commit known on GitHub by creating a tag at it, as a push does",
        description="Create the tag TAG at REVISION in REPOSITORY (GitHub's 'Create a reference'); on the "
        "stand-in this makes the commit known, so deployments of it can be recorded.",
    )
    pushed.add_argument("repository", help="OWNER/NAME")
    pushed.add_argument("--tag", required=True)
    pushed.add_argument("--revision", required=True, type=commit_id, help="the commit (40 hex digits)")
    job = commands.add_parser(
        "job",
        help="start a workflow job on an environment, as a push does, or show how its run stands",
        description="Start a workflow job that targets an environment (the stand-in's own endpoint: GitHub "
        "Actions holds it on the environment's deployment protection rules and sends their Apps the "
        "deployment_protection_rule webhook), or show its run with GitHub's REST API.",
    )
    jobs = job.add_subparsers(dest="job", required=True)
    start = jobs.add_parser("start", help="start a job; prints its run's id")
    start.add_argument("--repo", required=True, help="OWNER/NAME")
    start.add_argument("--environment", required=True, help="the GitHub environment the job targets")
    start.add_argument("--sha", required=True, type=commit_id, help="the commit (40 hex digits)")
    start.add_argument("--ref", default="main", help="the branch (default: %(default)s)")
    start.add_argument("--workflow", default="deploy", help="the workflow's name (default: %(default)s)")
    start.add_argument("--event", default="push", help="what started the run (default: %(default)s)")
    show = jobs.add_parser("show", help="the run's status, what it waits on, its reviews and status reports")
    show.add_argument("--repo", required=True, help="OWNER/NAME")
    which = show.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", type=int, help="the run's id")
    which.add_argument("--sha", type=commit_id, help="a commit: its newest run")
    show.add_argument(
        "--until",
        choices=("answered", "completed"),
        help="first wait until stagegate answered the run (a review or a status report) or it completed",
    )
    show.add_argument("--timeout", type=float, default=30, help="longest wait for --until, in seconds")
    args = parser.parse_args(argv)
    # The runtime logs JSON for a log collector; here only what went wrong is worth a line.
    logging.getLogger("stagegate").setLevel(logging.WARNING)
    try:
        settings = Settings.from_env()
        if args.command != "record-bake":
            print("\n".join(github_command(args, settings)))
            return 0
        kube = KubeGates(api_client(settings.kubeconfig), timeout=settings.github_deadline_seconds)
        env = kube.get_environment(args.namespace, args.environment)
        if env is None:
            raise PermanentError(f"Environment {args.namespace}/{args.environment} not found")
        github = github_reader(settings, settings.github_deadline_seconds)
        lines = record_bake(env, entry(args.tag, args.revision, args.bake), github)
    except (ConfigError, StagegateError) as exc:
        print(f"github_cli: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def github_command(args: argparse.Namespace, settings: Settings) -> list[str]:
    """What `push` and `job` print (they ask GitHub only)."""
    if args.command == "push":
        return [push(args.repository, args.tag, args.revision, settings)]
    if args.job == "show":
        return show_job(args.repo, args.run or args.sha, settings, args.until, args.timeout)
    job = {key: getattr(args, key) for key in ("environment", "sha", "ref", "workflow", "event")}
    return [start_job(args.repo, job, settings)]


if __name__ == "__main__":
    sys.exit(main())
