"""What to write on GitHub so it records a Rollout's history as kuberik's environment controller does.

Pure: a Rollout's `status.history`, the Environment that governs it, and what GitHub already holds for
each entry's commit become the writes still missing, oldest entry first (as the Go controller's
`syncDeploymentHistory` walks them, so GitHub's automatic `inactive` marks land on older deployments).

Per history entry with an id and a revision:
- one deployment of the commit to `kuberik/<name>/<env>`, task `deploy:kuberik/<name>`, `ref` = the
  revision, payload `{id, relationship, version}` (`shared.payload`), description = the entry's
  message, `production_environment` when the environment is `production`, `auto_merge: false`,
  `required_contexts: []`. One already there with the same task and payload id is adopted, whoever
  of the two wrote it; only deployments by trusted identities are seen at all (`shared.trust`);
- a status (`BAKE_STATES`, description `"<prefix>: <bakeStatusMessage>"` cut to 140 characters)
  on each such deployment whose newest bake-carrying status says something else.

Where this differs from the Go code, on purpose:
- it compares with the newest status, not with any status ever posted: a failed bake retried
  (`LastRetryTimestamp`) goes back to `in_progress` on GitHub instead of staying `failure`;
- a revision that is not a commit id (7-40 hex digits) is skipped: GitHub would resolve a branch
  name to whatever it points at when the deployment is written, and the gate reader never counts it;
- an entry whose commit GitHub does not know is skipped (the Go controller aborts the whole sync);
- the description is cut to 140 characters, not bytes (Go's cut can split a UTF-8 character);
- duplicates of one entry (left by an earlier race) all get the status, so no reader sees a stale one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from shared import payload
from shared.bake import CommitLookup, DeploymentRecord, carries_bake_result, counts_for, lookup_kind
from shared.upstream import deployment_name, github_environment
from shared.views import Environment

MAX_DESCRIPTION = 140
"""GitHub's limit on a deployment status description."""

BAKE_STATES: Mapping[str | None, tuple[str, str]] = {
    "Succeeded": ("success", "Bake succeeded"),
    "Failed": ("failure", "Bake failed"),
    "InProgress": ("in_progress", "Baking in progress"),
    "Deploying": ("in_progress", "Deploying"),
    "Cancelled": ("inactive", "Bake cancelled"),
}
"""A history entry's `bakeStatus` -> (status state, description prefix); anything else is `NO_BAKE`."""
NO_BAKE = ("pending", "Deploying")


def bake_status(bake: str | None, message: str | None) -> tuple[str, str]:
    """The deployment status (state, description) the Go controller posts for a bake state."""
    state, prefix = BAKE_STATES.get(bake, NO_BAKE)
    description = f"{prefix}: {message}" if message else prefix
    return state, description[:MAX_DESCRIPTION]


@dataclass(frozen=True, slots=True)
class Entry:
    """One Rollout history entry that is recorded on GitHub."""

    id: int
    revision: str
    version: Mapping[str, Any]
    message: str | None
    state: str
    description: str
    since: float | None = None
    """When the rollout controller set this state, in seconds since the epoch on its clock (the
    entry's `bakeEndTime` for a result, `bakeStartTime` while baking, `timestamp` before); None when
    the entry does not say. Only for the reporter's lag metric: never to decide anything."""


STATE_TIMES: Mapping[str, str] = {
    "success": "bakeEndTime",
    "failure": "bakeEndTime",
    "inactive": "bakeEndTime",
}
"""Which field of a history entry says when its bake state was set; others: `bakeStartTime` while
baking (`InProgress`), else `timestamp`."""


def _since(item: Mapping[str, Any], state: str, bake: str | None) -> float | None:
    field = STATE_TIMES.get(state) or ("bakeStartTime" if bake == "InProgress" else "timestamp")
    raw = item.get(field)
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Skipped:
    """A history entry that is not recorded, and why."""

    entry: str
    reason: str


def history(rollout: Mapping[str, Any]) -> tuple[list[Entry], list[Skipped]]:
    """The Rollout's history entries oldest first (the API lists newest first), and those skipped."""
    raw = ((rollout.get("status") or {}) if isinstance(rollout, Mapping) else {}).get("history") or []
    entries: list[Entry] = []
    skipped: list[Skipped] = []
    for position, item in enumerate(raw if isinstance(raw, list) else []):
        where = f"history[{position}]"
        if not isinstance(item, Mapping):
            skipped.append(Skipped(where, "not an object"))
            continue
        entry_id = item.get("id")
        raw_version = item.get("version")
        version: Mapping[str, Any] = raw_version if isinstance(raw_version, Mapping) else {}
        revision = version.get("revision")
        if not isinstance(revision, str) or not revision:
            skipped.append(Skipped(where, "no revision (the environment controller skips it too)"))
            continue
        if not isinstance(entry_id, int) or isinstance(entry_id, bool):
            skipped.append(Skipped(where, "no id (the environment controller skips it too)"))
            continue
        where = f"entry {entry_id}"
        if lookup_kind(revision) is None:
            skipped.append(Skipped(where, f"revision {revision!r} is not a commit id"))
            continue
        message = item.get("message") if isinstance(item.get("message"), str) else None
        bake = item.get("bakeStatus") if isinstance(item.get("bakeStatus"), str) else None
        bake_message = item.get("bakeStatusMessage")
        state, description = bake_status(bake, bake_message if isinstance(bake_message, str) else None)
        since = _since(item, state, bake)
        entries.append(Entry(entry_id, revision, version, message, state, description, since))
    entries.reverse()
    return entries, skipped


@dataclass(frozen=True, slots=True)
class Target:
    """Where an Environment's own deployments are recorded."""

    repository: str
    environment: str
    task: str
    production: bool
    environment_url: str | None = None

    @classmethod
    def of(cls, env: Environment, url_template: str | None = None) -> Target | None:
        """None for an Environment without a GitHub project (nothing to record). `url_template`
        (`REPORT_ENVIRONMENT_URL`) gives the `environment_url` of its statuses."""
        if not env.project or env.environment is None:
            return None
        name = deployment_name(env)
        return cls(
            repository=env.project,
            environment=github_environment(env, env.environment),
            task=f"deploy:{name}",
            production=env.environment == "production",
            environment_url=environment_url(url_template, env),
        )


URL_FIELDS = ("namespace", "name", "environment", "rollout")
"""What `REPORT_ENVIRONMENT_URL` may name, in braces: the Environment's namespace and name, its
`spec.environment` and its Rollout's name (the Go controller writes
`<dashboard>/rollouts/{namespace}/{name}`, found from the rollout-dashboard's Ingress or HTTPRoute;
here the operator states it)."""


def environment_url(template: str | None, env: Environment) -> str | None:
    """The URL a status of `env` carries, from the template, with every field URL-quoted."""
    if not template:
        return None
    values = {
        "namespace": env.namespace,
        "name": env.name,
        "environment": env.environment or "",
        "rollout": env.rollout_name,
    }
    return template.format(**{k: quote(v, safe="") for k, v in values.items()})


@dataclass(frozen=True, slots=True)
class NewDeployment:
    """Create the deployment of `entry`; its status follows as a `NewStatus` without a deployment id."""

    entry: Entry
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class NewStatus:
    """Post a status on a deployment (`deployment_id` None: the one just created for the entry)."""

    entry: Entry
    deployment_id: int | None
    body: Mapping[str, Any]
    replaces: str | None = None


Write = NewDeployment | NewStatus


@dataclass(frozen=True, slots=True)
class ReportPlan:
    """The writes that make GitHub match the history, in the order to make them."""

    target: Target
    writes: tuple[Write, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    recorded: int = 0

    @property
    def creates(self) -> tuple[NewDeployment, ...]:
        return tuple(w for w in self.writes if isinstance(w, NewDeployment))


def deployment_body(env: Environment, target: Target, entry: Entry) -> dict[str, Any]:
    """The create-deployment request the Go controller sends for a history entry."""
    body: dict[str, Any] = {
        "ref": entry.revision,
        "task": target.task,
        "environment": target.environment,
        "production_environment": target.production,
        "auto_merge": False,
        "payload": payload.encode(entry.id, env.relationship, entry.version),
        "required_contexts": [],
    }
    if entry.message is not None:
        body["description"] = entry.message
    return body


def status_body(target: Target, entry: Entry) -> dict[str, Any]:
    """The create-status request for an entry's bake state (the environment is repeated, as Go does),
    with the configured environment URL."""
    body = {"state": entry.state, "description": entry.description, "environment": target.environment}
    if target.environment_url:
        body["environment_url"] = target.environment_url
    return body


def recorded_for(entry: Entry, lookup: CommitLookup | None, target: Target) -> list[DeploymentRecord]:
    """The deployments already recorded for this entry, oldest first."""
    if lookup is None or lookup.oid is None:
        return []
    found = [
        d
        for d in lookup.deployments
        if counts_for(entry.revision, lookup.oid, d)
        and d.task == target.task
        and payload.entry_id(d.payload) == str(entry.id)
    ]
    return sorted(found, key=lambda d: (d.created_at, d.id))


def newest_bake(deployment: DeploymentRecord) -> tuple[str, str] | None:
    """(state, description) of the deployment's newest status that carries a bake result; None when
    there is none, or when several tie within a second and disagree (then it is written again)."""
    carrying = [s for s in deployment.statuses if carries_bake_result(s)]
    if not carrying:
        return None
    newest = max(s.created_at for s in carrying)
    said = {(s.state.lower(), s.description or "") for s in carrying if s.created_at == newest}
    return said.pop() if len(said) == 1 else None


def plan_report(
    env: Environment,
    rollout: Mapping[str, Any],
    lookups: Mapping[str, CommitLookup],
    url_template: str | None = None,
) -> ReportPlan | None:
    """The writes still missing for the Rollout `env` governs; None when `env` has no GitHub project."""
    target = Target.of(env, url_template)
    if target is None:
        return None
    entries, skipped = history(rollout)
    writes: list[Write] = []
    recorded = 0
    for entry in entries:
        lookup = lookups.get(entry.revision)
        if lookup is not None and lookup.oid is None:
            skipped.append(Skipped(f"entry {entry.id}", f"GitHub knows no commit {entry.revision}"))
            continue
        found = recorded_for(entry, lookup, target)
        if not found:
            writes.append(NewDeployment(entry, deployment_body(env, target, entry)))
            writes.append(NewStatus(entry, None, status_body(target, entry)))
            continue
        recorded += 1
        for deployment in found:
            current = newest_bake(deployment)
            if current != (entry.state, entry.description):
                replaces = f"{current[0]}: {current[1]}" if current else None
                writes.append(NewStatus(entry, deployment.id, status_body(target, entry), replaces))
    return ReportPlan(target, tuple(writes), tuple(skipped), recorded)


def revisions(rollout: Mapping[str, Any]) -> list[str]:
    """The revisions GitHub is asked about for a report: those of the entries that are recorded."""
    return sorted({entry.revision for entry in history(rollout)[0]})
