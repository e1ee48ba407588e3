"""`make dev`: the whole system on this machine, kept running to be driven by hand until SIGTERM or Ctrl-C.

Why: `make demo` plays a story and stops; to see a gate close and open by your own hand (README,
"Trying it by hand") you need a cluster whose apiserver really calls the functions, and a GitHub.
What runs, all on loopback: etcd and a kube-apiserver with the project's CRDs, whose audit webhook
(blocking) is `k8s_audit_http` and whose validating webhooks are `k8s_admission` (the shipped
`infra/k8s/admission.yaml`), both over TLS as in a cluster (over plain http the apiserver drops the
token); the other functions `make run` serves, by functions-framework; the GitHub stand-in (the fake
the tests use, not github.com), which delivers signed `deployment_status` webhooks to `github_webhook`
by itself, and holds GitHub Actions jobs to `production` on stagegate's deployment protection rule
(`github_cli job start`), delivering the App's `deployment_protection_rule` webhooks to
`github_protection_rule`; with `--rollout-model NS`, stagegate's model of kuberik's rollout controller
on the Rollouts of NS. Bakes are recorded on the stand-in with `python -m stagegate_dev.github_cli
record-bake`, as kuberik's environment controller records them. Not run: `audit_bridge` and the Pub/Sub
path to the reporter (they need a Pub/Sub or EventBridge); the reporter answers at `reporter_http`.

With `--managed` (`make dev-managed`) the cluster is what a managed one (GKE, EKS, AKS) is: its
apiserver has no audit webhook, so `k8s_audit_http` is not served; the follower (`python -m
stagegate.follower`, as the in-cluster install runs it) lists and watches Rollouts and Environments
instead, and records staging's bakes on the stand-in from its Rollout's history (the reporter), which
opens prod's gate. README "Trying the managed-cluster path by hand" walks through it.

Unlike `infra/gcp`, where `k8s_audit_http` holds no GitHub credentials and a Rollout change is
recomputed by `k8s_audit` from Pub/Sub, every function here holds the stand-in's: a Rollout change is
recomputed by the audit webhook itself. The functions act as cluster admin, like the KUBECONFIG
printed for the user.

It prints one `export` line (KUBECONFIG, and the stand-in's GITHUB_API_URL and GITHUB_TOKEN, which
`stagegate` and `github_cli` read) and the commands to try. SIGTERM or SIGINT, from a terminal or a
script, stops every process it started and removes their folder (exit 0); a process that exits by
itself stops it all too (exit 1).
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import shlex
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from kubernetes import client

from stagegate.settings import APP_VARIABLES
from stagegate_dev import devstack
from stagegate_dev.commandline import stop_cleanly_on_signals
from stagegate_dev.fake_github import FakeGitHub
from stagegate_dev.polling import wait_until
from stagegate_dev.protection_app import APP_ID, ENVIRONMENT, protection_app
from stagegate_dev.rollout_model import Decision, RolloutModel
from stagegate_dev.serve import FUNCTIONS

REPOSITORIES = ["myorg/myapp"]
"""The stand-in's repositories unless `--repo` names others: the one `examples/myapp.yaml` uses."""
ADMISSION = "k8s_admission"
ESSENTIAL = ("etcd", "kube-apiserver")
"""Without these the stack is worth nothing, and `make dev` stops; it goes on without any other process
that exits (reporting it), as a cluster goes on without a crashed pod."""
BAKE_ON_GITHUB = (
    ".venv/bin/python -m stagegate_dev.github_cli record-bake staging -n myapp --tag TAG --revision SHA"
)
ACTS_AS_APP = ("github_webhook", "resync_http", "github_protection_rule")
"""The functions that answer held Actions jobs: they act as the stand-in's GitHub App (GitHub lets only
the App whose protection rule it is answer it); the others use the stand-in's token."""
HOLD_A_JOB = (
    ".venv/bin/python -m stagegate_dev.github_cli job start --repo myorg/myapp --environment "
    f"{ENVIRONMENT} --sha SHA"
)
BAKE_BY_ROLLOUT = (
    "kubectl patch rollout myapp-staging -n myapp --subresource=status --type=merge -p "
    '\'{"status": {"history": [...]}}\'   # README: the managed-cluster path'
)


@dataclass
class Dev:
    """The running system: the cluster, the stand-in, and each function with what it expects."""

    kube: devstack.KubeStack
    fake: FakeGitHub
    functions: list[tuple[str, devstack.FunctionServer, str]]
    env: dict[str, str]
    """The functions' environment (credentials and secrets included)."""
    follower: devstack.FollowerProcess | None = None
    """With `--managed`: the follower, in place of the audit webhook."""


@contextlib.contextmanager
def cluster(
    managed: bool, github: dict[str, str]
) -> Iterator[tuple[devstack.KubeStack, devstack.FunctionServer | None]]:
    """The kube-apiserver, with its audit webhook `k8s_audit_http` unless `managed` (none then)."""
    if managed:
        print("starting etcd and kube-apiserver (no audit webhook, as on a managed cluster) ...", flush=True)
        with devstack.KubeStack() as kube:
            yield kube, None
        return
    print("starting etcd, kube-apiserver and its audit webhook k8s_audit_http ...", flush=True)
    with devstack.audit_webhook_stack(function_env=github) as (kube, audit):
        yield kube, audit


@contextlib.contextmanager
def running(repos: Sequence[str], managed: bool = False) -> Iterator[Dev]:
    """Start everything; stop all of it, however the block is left."""
    print(f"starting the GitHub stand-in ({', '.join(repos)}) ...", flush=True)
    with FakeGitHub(repos=repos, wall_clock=True) as fake:
        # The caller's own App credentials would make the token ambiguous: blank them (empty = unset).
        github = {"GITHUB_TOKEN": fake.token, "GITHUB_API_URL": fake.url}
        github |= dict.fromkeys((*APP_VARIABLES, "GITHUB_APP_PRIVATE_KEY_FILE"), "")
        with cluster(managed, github) as (kube, audit):
            token = kube.audit.token if kube.audit is not None else secrets.token_urlsafe(24)
            env = {"KUBECONFIG": str(kube.kubeconfig), "AUDIT_WEBHOOK_TOKEN": token, **github,
                   "GITHUB_WEBHOOK_SECRET": secrets.token_urlsafe(16),
                   "RESYNC_TOKEN": secrets.token_urlsafe(16)}  # fmt: skip
            # Actions jobs to production of each repository wait for the bake of myapp in staging.
            as_app = {**env, **protection_app(fake, [(repo, "kuberik/myapp/staging") for repo in repos])}
            functions = []
            print("starting the functions ...", flush=True)
            for function in FUNCTIONS:
                source = devstack.ROOT / "functions" / function.folder / "main.py"
                if function.target == "k8s_audit_http":
                    if audit is not None:  # already serving: the apiserver cannot start without it
                        functions.append((function.target, audit, function.expects))
                    continue
                settings = as_app if function.target in ACTS_AS_APP else env
                server = devstack.FunctionServer(source, function.target, settings, None, kube.procs)
                functions.append((function.target, server, function.expects))
            source = devstack.ROOT / "functions" / ADMISSION / "main.py"
            admission = devstack.FunctionServer(source, ADMISSION, env, kube.tls, kube.procs)
            functions.append(
                (ADMISSION, admission, "kube-apiserver validating webhooks (deploy guard, gate)")
            )
            webhooks = devstack.admission_configuration(admission.url, kube.tls.ca_file, "stagegate", {})
            client.AdmissionregistrationV1Api(kube.api_client()).create_validating_webhook_configuration(
                webhooks
            )
            time.sleep(1.5)  # the apiserver picks new webhook configurations up asynchronously
            webhook = next(server for target, server, _ in functions if target == "github_webhook")
            fake.deliver_webhooks(webhook.url, env["GITHUB_WEBHOOK_SECRET"])
            rule = next(server for target, server, _ in functions if target == "github_protection_rule")
            fake.app_webhook(APP_ID, rule.url, env["GITHUB_WEBHOOK_SECRET"])
            follower = None
            if managed:
                print("starting the follower ...", flush=True)
                follower = devstack.FollowerProcess(
                    {**env, "FOLLOW_LEASE_NAMESPACE": "default", "POD_NAME": "stagegate-dev"}, kube.procs
                )
                wait_until(follower.following, 60, "the follower", follower.log)
            yield Dev(kube, fake, functions, env, follower)


@contextlib.contextmanager
def rollout_model(dev: Dev, namespace: str | None) -> Iterator[None]:
    """kuberik's rollout controller, as stagegate models it, on the Rollouts of `namespace` (if any)."""
    if namespace is None:
        yield
        return
    model = RolloutModel(dev.kube.api_client(), namespace)
    stop = threading.Event()
    thread = threading.Thread(target=model.run, args=(stop, 0.2, said), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def said(decision: Decision) -> None:
    """One line per decision of the rollout controller model that differs from its last one."""
    error = f" ({decision.error})" if decision.error else ""
    version = f" {decision.version}" if decision.version else ""
    print(f"rollout controller (model): {decision.rollout}: {decision.outcome}{version}: "
          f"{decision.reason}{error}", flush=True)  # fmt: skip


def instructions(dev: Dev) -> str:
    """What is running where, the export line, and the commands to try."""
    env = dev.env
    exports = {name: env[name] for name in ("KUBECONFIG", "GITHUB_API_URL", "GITHUB_TOKEN")}
    audit = (
        "no audit webhook (a managed cluster)" if dev.follower else "audit webhook k8s_audit_http (blocking)"
    )
    follower = (
        [f"  {'follower':<16}Lease default/stagegate-follower  watches Rollouts and Environments, reports "
         "and recomputes (log: follower.log)"]
        if dev.follower
        else []
    )  # fmt: skip
    lines = [
        "stagegate dev is up; Ctrl-C or SIGTERM stops everything.",
        f"  {'kube-apiserver':<16}{dev.kube.server}  {audit}, validating webhooks {ADMISSION}",
        *(f"  {target:<16}{server.url}  {expects}" for target, server, expects in dev.functions),
        *follower,
        f"  {'GitHub stand-in':<16}{dev.fake.url}  delivers deployment_status webhooks to github_webhook, "
        f"and the App's deployment_protection_rule webhooks (its rule is on {ENVIRONMENT}) to "
        "github_protection_rule",
        "  secrets: "
        + " ".join(
            f"{name}={env[name]}" for name in ("AUDIT_WEBHOOK_TOKEN", "GITHUB_WEBHOOK_SECRET", "RESYNC_TOKEN")
        ),
        f"  logs: {dev.kube.dir}/*.log (removed on exit)",
        "",
        "In another shell, in this folder (README.md, 'Trying it by hand', walks through it):",
        "export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in exports.items()),
        "kubectl apply -f examples/myapp.yaml",
        "kubectl get rolloutgate -n myapp",
        ".venv/bin/stagegate explain prod -n myapp",
        HOLD_A_JOB,
        BAKE_BY_ROLLOUT if dev.follower else BAKE_ON_GITHUB,
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="make dev",
        description="Run the whole system locally until SIGTERM or Ctrl-C: a kube-apiserver with the "
        "project's CRDs whose audit and admission webhooks are the functions (TLS), every function "
        "(functions-framework), and a GitHub stand-in that delivers deployment_status webhooks. Prints "
        "the KUBECONFIG to use and the commands to try; stops every process it started.",
    )
    parser.add_argument(
        "--repo",
        action="append",
        metavar="OWNER/NAME",
        help=f"a repository the stand-in has (repeatable; default {REPOSITORIES[0]})",
    )
    parser.add_argument(
        "--rollout-model",
        metavar="NAMESPACE",
        help="also run stagegate's model of kuberik's rollout controller on the Rollouts of NAMESPACE "
        "(it deploys what the gates allow from status.availableReleases)",
    )
    parser.add_argument(
        "--managed",
        action="store_true",
        help="run the cluster as a managed one is (no audit webhook): the follower watches Rollouts and "
        "Environments instead, and records bakes from the Rollouts' history (make dev-managed)",
    )
    args = parser.parse_args()
    stop_cleanly_on_signals()
    try:
        with running(args.repo or REPOSITORIES, args.managed) as dev, rollout_model(dev, args.rollout_model):
            print(instructions(dev), flush=True)
            return devstack.wait_for_children(dev.kube.procs, ESSENTIAL)
    except KeyboardInterrupt:
        print("stopped: every process make dev started is gone, its folder removed", flush=True)
        return 0


if __name__ == "__main__":
    sys.exit(main())
