"""`python -m stagegate_dev.github_cli record-bake`: record a bake on the GitHub stand-in by hand;
`push`: make a commit known to it, as pushing a tag does.

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
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from shared.errors import PermanentError, StagegateError
from shared.report import BAKE_STATES, Entry, Target, bake_status, deployment_body, recorded_for, status_body
from shared.views import Environment
from stagegate.github import GitHubDeployments, github_reader
from stagegate.kube import KubeGates, api_client
from stagegate.settings import ConfigError, Settings

BAKES = [bake for bake in BAKE_STATES if bake]


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


def push(repository: str, tag: str, revision: str, settings: Settings) -> str:
    """Create the tag `tag` at `revision` in `repository` (a push, as far as the stand-in can tell)."""
    from github import GithubException

    from stagegate.github import github_client

    client = github_client(
        settings.github_credentials(), settings.github_api_url, settings.github_deadline_seconds
    )
    try:
        client.get_repo(repository).create_git_ref(f"refs/tags/{tag}", revision)
    except GithubException as exc:
        raise PermanentError(f"GitHub refused the tag {tag} in {repository}: HTTP {exc.status}") from exc
    return f"pushed tag {tag} at {revision[:7]} to {repository}"


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
    record.add_argument("--revision", required=True, help="the release's commit (40 hex digits)")
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
    pushed.add_argument("--revision", required=True, help="the commit (40 hex digits)")
    args = parser.parse_args(argv)
    if len(args.revision) != 40 or any(c not in "0123456789abcdef" for c in args.revision):
        parser.error("--revision must be a full commit id: 40 lower-case hex digits")
    # The runtime logs JSON for a log collector; here only what went wrong is worth a line.
    logging.getLogger("stagegate").setLevel(logging.WARNING)
    try:
        settings = Settings.from_env()
        if args.command == "push":
            print(push(args.repository, args.tag, args.revision, settings))
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


if __name__ == "__main__":
    sys.exit(main())
