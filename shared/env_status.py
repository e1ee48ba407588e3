"""An Environment's `.status` as kuberik's environment controller writes it, which kuberik's
rollout-dashboard reads for its pipeline view.

Same fields and meaning as the Go controller (v0.1.5, `updateStatus`, `buildEnvironmentInfos`,
`buildRelationshipGraph`, `updateEnvironmentInfoWithHistory`):
- `currentVersion`: the revision of the newest history entry of this environment;
- `rolloutGateRef`: the RolloutGate that governs this Environment's Rollout;
- `environmentInfos`: one entry per environment of the same deployment name that is connected to this
  one through relationships (either way, transitively), ancestors first; each with `environment`,
  `environmentUrl`, `relationship` and `history` (Rollout `DeploymentHistoryEntry`s, newest id first,
  one per tag). Environments directly connected to this one (itself, its upstream, those after it)
  keep their history; the others only their newest entry;
- `lastStatusChangeTime`: moved only when one of the above changed.

Where this differs from the Go controller, on purpose:
- the history of an environment whose Rollout is in this cluster is that Rollout's own history (the
  source GitHub's record is made from, so the status never waits on the report), unless it has none
  yet (then GitHub's, as the Go controller shows when the Rollout's history is empty); the others' history
  comes from GitHub, read per environment by name, so none falls off a page of the newest 100
  deployments of the name, and an environment with no record left anywhere is dropped, not kept stale;
- a relationship comes from the Environment's spec when it is in this cluster (what holds now), else
  from the payload of the newest record;
- entry times are GitHub's: `timestamp` when the entry was first recorded, `bakeStartTime` and
  `bakeEndTime` when its bake was recorded as started and finished (the Go controller stamps its own
  clock on every read);
- records whose creator is not trusted are left out (anyone may write a deployment), and a status
  whose state contradicts its description shows as `Failed`, as the gates read it;
- an answer from GitHub older than what the status already shows for an environment (a lagging
  replica, a delivery replayed) does not replace it: the newest time in each is compared, both GitHub's.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared import payload
from shared.bake import CONTRADICTORY, DeploymentRecord, StatusRecord, bake_result
from shared.upstream import deployment_name
from shared.views import Environment, Relationship

DEFAULT_HISTORY = 10
"""Entries read per environment when no Rollout says otherwise (`versionHistoryLimit`'s default)."""
MAX_MESSAGE = 140
COMPARED = ("currentVersion", "rolloutGateRef", "environmentInfos")
"""The fields whose change moves `lastStatusChangeTime`."""

BAKE_STATUS_OF_PREFIX: Mapping[str, str] = {
    "Bake succeeded": "Succeeded",
    "Bake failed": "Failed",
    "Baking in progress": "InProgress",
    "Bake cancelled": "Cancelled",
    "Deploying": "Deploying",
}
"""A status description's prefix -> the entry's `bakeStatus` (`extractBakeStatusFromDescription`)."""
FINISHED = frozenset({"Succeeded", "Failed", "Cancelled"})
_ENTRY_FIELDS = ("id", "version", "timestamp", "message", "bakeStatus", "bakeStatusMessage")
_ENTRY_TIMES = ("bakeStartTime", "bakeEndTime")


@dataclass(frozen=True, slots=True)
class Pipeline:
    """Everything one deployment name's statuses are computed from, read once for all its Environments.

    `local`: the Environments of the name in one namespace; `rollouts`: their Rollouts by name;
    `records`: GitHub's trusted records by environment (`staging`, not `kuberik/<name>/staging`), for
    every environment that was asked for (an environment asked for and absent has no record left).
    """

    name: str
    local: tuple[Environment, ...]
    rollouts: Mapping[str, Mapping[str, Any]]
    records: Mapping[str, tuple[DeploymentRecord, ...]]


def history_limit(rollout: Mapping[str, Any] | None) -> int:
    """How many entries to keep for an environment: its Rollout's `versionHistoryLimit` (default 10)."""
    limit = ((rollout or {}).get("spec") or {}).get("versionHistoryLimit")
    return limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else DEFAULT_HISTORY


def environments_to_ask(name: str, local: Iterable[Environment], known: Iterable[str]) -> frozenset[str]:
    """The environments whose GitHub records a status needs: the name's Environments here, what they
    relate to, and any already known (shown in a status, named by a delivery, found on GitHub)."""
    wanted = set(known)
    for env in local:
        if deployment_name(env) == name and env.environment:
            wanted.add(env.environment)
            if env.relationship is not None:
                wanted.add(env.relationship.environment)
    return frozenset(wanted)


def shown_environments(env: Environment) -> frozenset[str]:
    """The environments an Environment's stored status shows."""
    return frozenset(_stored_infos(env))


@dataclass(frozen=True, slots=True)
class Observation:
    """What a pipeline shows, worked out once for all its Environments: each environment's
    relationship, history (newest id first, one per tag) and URL, which histories are a Rollout's,
    the connected groups of environments, and their order (ancestors first)."""

    relationships: Mapping[str, Relationship | None]
    histories: Mapping[str, list[dict[str, Any]]]
    urls: Mapping[str, str]
    from_rollouts: frozenset[str]
    groups: Mapping[str, tuple[str, ...]]
    """Each environment's connected group, in order."""


def observe(pipeline: Pipeline) -> Observation:
    """What the pipeline shows: GitHub's records for every environment, then for the Environments here
    their spec's relationship and their Rollout's history (GitHub's when the Rollout has none yet)."""
    relationships: dict[str, Relationship | None] = {}
    histories: dict[str, list[dict[str, Any]]] = {}
    urls: dict[str, str] = {}
    from_rollouts: set[str] = set()
    for name, records in pipeline.records.items():
        if not records:
            continue
        newest = max(records, key=lambda d: d.id)
        relationships[name] = _payload_relationship(newest.payload)
        histories[name] = _github_history(records, DEFAULT_HISTORY)
        url = _newest_url(records)
        if url:
            urls[name] = url
    for env in pipeline.local:
        if deployment_name(env) != pipeline.name or not env.environment:
            continue
        relationships[env.environment] = env.relationship
        rollout = pipeline.rollouts.get(env.rollout_name)
        own = _rollout_history(rollout) if rollout is not None else []
        if own:
            histories[env.environment] = own
            from_rollouts.add(env.environment)
    order = _order(relationships, histories)
    groups: dict[str, tuple[str, ...]] = {}
    for name in relationships:
        if name not in groups:
            members = tuple(sorted(_component(name, relationships), key=order.__getitem__))
            groups.update(dict.fromkeys(members, members))
    return Observation(relationships, histories, urls, frozenset(from_rollouts), groups)


def compute_status(env: Environment, seen: Pipeline | Observation, gate: str | None) -> dict[str, Any]:
    """The status `env` should carry (without `lastStatusChangeTime` and `conditions`); pass the
    `observe`d pipeline when computing it for many Environments."""
    seen = observe(seen) if isinstance(seen, Pipeline) else seen
    relationships, histories = seen.relationships, seen.histories
    current = env.environment or ""
    stored = _stored_infos(env)
    infos = []
    for name in seen.groups.get(current, ()):
        history = histories.get(name, [])
        older = _newest_time(stored.get(name, {}).get("history")) > _newest_time(history)
        if older and name not in seen.from_rollouts:
            infos.append(dict(stored[name]))  # GitHub answered with less than the status already shows
            continue
        direct = (
            name == current
            or _after(relationships.get(current), name)
            or _after(relationships.get(name), current)
        )
        info: dict[str, Any] = {"environment": name}
        if seen.urls.get(name):
            info["environmentUrl"] = seen.urls[name]
        relationship = relationships.get(name)
        if relationship is not None:
            info["relationship"] = {"environment": relationship.environment, "type": relationship.type}
        shown = history if direct else history[:1]
        if shown:
            info["history"] = shown
        infos.append(info)
    status: dict[str, Any] = {}
    own = histories.get(current) or []
    revision = own[0]["version"].get("revision") if own else None
    if isinstance(revision, str) and revision:
        status["currentVersion"] = revision
    if gate is not None:
        status["rolloutGateRef"] = {"name": gate}
    if infos:
        status["environmentInfos"] = infos
    return status


def _after(relationship: Relationship | None, environment: str) -> bool:
    return relationship is not None and relationship.environment == environment


def updated_status(
    stored: Mapping[str, Any] | None, computed: Mapping[str, Any], now: str
) -> dict[str, Any] | None:
    """The whole status to write, or None when nothing compared changed (kept fields stay as they are)."""
    stored = stored or {}
    if all(stored.get(key) == computed.get(key) for key in COMPARED):
        return None
    kept = {k: v for k, v in stored.items() if k not in COMPARED}
    return {**kept, **computed, "lastStatusChangeTime": now}


def _stored_infos(env: Environment) -> dict[str, Mapping[str, Any]]:
    infos = (env.raw.get("status") or {}).get("environmentInfos") or []
    return {
        i["environment"]: i for i in infos if isinstance(i, Mapping) and isinstance(i.get("environment"), str)
    }


def _payload_relationship(document: Mapping[str, Any] | None) -> Relationship | None:
    raw = (document or {}).get("relationship")
    if not isinstance(raw, Mapping):
        return None
    kind, environment = raw.get("type"), raw.get("environment")
    if kind not in ("After", "Parallel") or not isinstance(environment, str) or not environment:
        return None
    return Relationship(type="After" if kind == "After" else "Parallel", environment=environment)


def _newest_url(records: Iterable[DeploymentRecord]) -> str | None:
    """The environment URL of the newest status that carries one (the Go controller reads the newest
    status of the newest deployment)."""
    carrying = [
        (s.created_at, d.id, s.environment_url) for d in records for s in d.statuses if s.environment_url
    ]
    return max(carrying)[2] if carrying else None


def _version(document: Mapping[str, Any] | None) -> dict[str, str] | None:
    version = (document or {}).get("version")
    if not isinstance(version, Mapping):
        return None
    fields = {k: v for k in payload.VERSION_FIELDS if isinstance(v := version.get(k), str) and v}
    return fields if fields.get("tag") and fields.get("revision") else None


def _github_history(records: Sequence[DeploymentRecord], limit: int) -> list[dict[str, Any]]:
    """History entries from GitHub's records: one per Rollout history entry id, newest first, one per tag."""
    by_entry: dict[int, list[DeploymentRecord]] = {}
    for record in records:
        raw_id = payload.entry_id(record.payload)
        if raw_id is None or not raw_id.isdigit() or _version(record.payload) is None:
            continue
        by_entry.setdefault(int(raw_id), []).append(record)
    entries = []
    for entry_id, duplicates in by_entry.items():
        first = min(duplicates, key=lambda d: (d.created_at, d.id))
        entry: dict[str, Any] = {
            "id": entry_id,
            "version": _version(first.payload),
            "timestamp": first.created_at,
        }
        entry.update(_bake_fields(duplicates))
        entries.append(entry)
    return _one_per_tag(entries)[:limit]


def _bake_fields(duplicates: Sequence[DeploymentRecord]) -> dict[str, str]:
    """`bakeStatus`, `bakeStatusMessage` and the bake's times from the statuses of one entry's records."""
    statuses = sorted(
        ((s.created_at, d.id, s) for d in duplicates for s in d.statuses if bake_result(s) is not None),
        key=lambda item: (item[0], item[1]),
    )
    fields: dict[str, str] = {}
    started = [at for at, _, s in statuses if _bake_status(s) == "InProgress"]
    if started:
        fields["bakeStartTime"] = started[0]
    if not statuses:
        return fields
    at, _, newest = statuses[-1]
    status = _bake_status(newest)
    fields["bakeStatus"] = status
    message = _message(newest)
    if bake_result(newest) == CONTRADICTORY:
        message = f"status {newest.state!r} contradicts its description {newest.description!r}"[:MAX_MESSAGE]
    if message:
        fields["bakeStatusMessage"] = message
    if status in FINISHED:
        fields["bakeEndTime"] = at
    return fields


def _bake_status(status: StatusRecord) -> str:
    if bake_result(status) == CONTRADICTORY:
        return "Failed"
    prefix = (status.description or "").split(":", 1)[0].strip()
    return BAKE_STATUS_OF_PREFIX[prefix]


def _message(status: StatusRecord) -> str | None:
    parts = (status.description or "").split(":", 1)
    text = parts[1].strip() if len(parts) == 2 else ""
    return text[:MAX_MESSAGE] or None


def _rollout_history(rollout: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A Rollout's own history entries, as the status shows them (those with an id and a revision)."""
    entries = []
    for raw in (rollout.get("status") or {}).get("history") or []:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), int):
            continue
        version = raw.get("version")
        if not isinstance(version, Mapping) or _version({"version": version}) is None:
            continue
        entry = {k: raw[k] for k in (*_ENTRY_FIELDS, *_ENTRY_TIMES) if raw.get(k) is not None}
        entry["version"] = {k: v for k in payload.VERSION_FIELDS if (v := version.get(k)) not in (None, "")}
        entries.append(entry)
    return _one_per_tag(entries)[: history_limit(rollout)]


def _one_per_tag(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Newest id first; of several entries of one tag only the newest (`updateEnvironmentInfoWithHistory`)."""
    seen: set[str] = set()
    kept = []
    for entry in sorted(entries, key=lambda e: e["id"], reverse=True):
        tag = entry["version"]["tag"]
        if tag not in seen:
            seen.add(tag)
            kept.append(entry)
    return kept


def _newest_time(history: object) -> str:
    """The newest of GitHub's or the Rollout's times in a history ('' when it has none)."""
    if not isinstance(history, list):
        return ""
    times = [e.get(k) for e in history if isinstance(e, Mapping) for k in ("timestamp", *_ENTRY_TIMES)]
    return max((t for t in times if isinstance(t, str)), default="")


def _component(current: str, relationships: Mapping[str, Relationship | None]) -> list[str]:
    """The environments connected to `current` through relationships, either way (`traverseRelationships`)."""
    neighbours: dict[str, set[str]] = {}
    for name, relationship in relationships.items():
        neighbours.setdefault(name, set())
        if relationship is not None:
            neighbours[name].add(relationship.environment)
            neighbours.setdefault(relationship.environment, set()).add(name)
    seen, todo = {current}, [current]
    while todo:
        for other in neighbours.get(todo.pop(), ()):
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return sorted(name for name in seen if name in relationships)


def _order(
    relationships: Mapping[str, Relationship | None], histories: Mapping[str, list[dict[str, Any]]]
) -> dict[str, int]:
    """Each environment's place: ancestors first; among those whose upstream is placed, the newest
    history id first, then the name (the order the Go controller's comparator gives where it is
    consistent). A relationship cycle is broken at its best-placed member."""
    names = set(relationships)

    def rank(name: str) -> tuple[int, str]:
        newest = max((e["id"] for e in histories.get(name) or [] if isinstance(e.get("id"), int)), default=-1)
        return -newest, name

    children: dict[str, list[str]] = {name: [] for name in names}
    waiting: dict[str, bool] = {}
    for name in names:
        relationship = relationships[name]
        parent = relationship.environment if relationship is not None else None
        waiting[name] = parent in names and parent != name
        if waiting[name]:
            children[str(parent)].append(name)
    ready = [(rank(n), n) for n in names if not waiting[n]]
    heapq.heapify(ready)
    order: dict[str, int] = {}
    while len(order) < len(names):
        name = heapq.heappop(ready)[1] if ready else min(names - order.keys(), key=rank)
        if name in order:
            continue
        order[name] = len(order)
        for child in children[name]:
            if child not in order:
                heapq.heappush(ready, (rank(child), child))
    return order
