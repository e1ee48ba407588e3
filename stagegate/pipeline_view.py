"""`stagegate status <name>`: the pipeline view of kuberik's rollout-dashboard, in the terminal.

It reads only what the functions wrote (each Environment's `.status` and its gate), never GitHub, so
it also checks that the status is there and right. Per environment, in the status's order (ancestors
first): the version it runs (the newest entry with a bake state, as the dashboard picks it), that
bake's state, what its gate allows, and what it waits for (its upstream's newest version while that
one's bake has not succeeded).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from shared.gate import is_owned_by
from shared.upstream import deployment_name
from shared.views import Environment, RolloutGate

NO_ENVIRONMENT = 1
"""Exit code: no Environment of that deployment name in the namespace."""
NO_STATUS = 4
"""Exit code: an Environment of that name carries no status yet (nothing wrote it)."""


@dataclass(frozen=True, slots=True)
class Row:
    environment: str
    version: str
    bake: str
    allows: str
    waits_for: str


def _shown(entry: Mapping[str, Any] | None) -> str:
    if not entry:
        return "-"
    version = entry.get("version") or {}
    revision = str(version.get("revision") or "")[:7]
    return f"{version.get('tag', '?')} ({revision})" if revision else str(version.get("tag", "?"))


def _current(info: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The entry the dashboard shows as running: the newest with a bake state, else the newest."""
    history = sorted(info.get("history") or [], key=lambda e: e.get("id") or 0, reverse=True)
    return next(
        (e for e in history if e.get("bakeStatus") not in (None, "None")), history[0] if history else None
    )


def _allows(env: Environment | None, gates: Sequence[RolloutGate]) -> str:
    if env is None:
        return "(another cluster)"
    owned = [g for g in gates if is_owned_by(g, env)]
    if not owned:
        return "no gate"
    allowed = owned[0].allowed_versions
    if owned[0].passing is False:
        return "nothing (passing: false)"
    return "anything (no restriction)" if allowed is None else json.dumps(list(allowed))


def _waits_for(info: Mapping[str, Any], infos: Mapping[str, Mapping[str, Any]]) -> str:
    relationship = info.get("relationship") or {}
    upstream = infos.get(relationship.get("environment", ""))
    if upstream is None:
        return "-" if not relationship else f"{relationship.get('environment')} (no record yet)"
    newest = max(upstream.get("history") or [{}], key=lambda e: e.get("id") or 0)
    bake = newest.get("bakeStatus") or "not baking yet"
    needed = "Succeeded" if relationship.get("type") == "After" else "InProgress or Succeeded"
    if bake == "Succeeded" or (relationship.get("type") == "Parallel" and bake == "InProgress"):
        return "-"
    return f"{relationship.get('environment')} to bake {_shown(newest)}: {bake} (needs {needed})"


def rows(local: Sequence[Environment], gates: Sequence[RolloutGate]) -> tuple[list[Row], list[str]]:
    """The pipeline's rows from the statuses, and the Environments that carry no status yet."""
    missing = [env.key for env in local if not (env.raw.get("status") or {}).get("environmentInfos")]
    written = [env for env in local if env.key not in missing]
    if not written:
        return [], missing
    infos_list = (written[0].raw.get("status") or {}).get("environmentInfos") or []
    infos = {i["environment"]: i for i in infos_list}
    by_name = {env.environment: env for env in local}
    found = []
    for info in infos_list:
        current = _current(info)
        found.append(
            Row(
                environment=info["environment"],
                version=_shown(current),
                bake=str((current or {}).get("bakeStatus") or "-"),
                allows=_allows(by_name.get(info["environment"]), gates),
                waits_for=_waits_for(info, infos),
            )
        )
    return found, missing


def print_pipeline(
    name: str, namespace: str, environments: Sequence[Environment], gates: Sequence[RolloutGate], out: TextIO
) -> int:
    """Print the pipeline of deployment `name` in `namespace`; the exit code."""
    wanted = name if name.startswith("kuberik/") else f"kuberik/{name}"
    local = [env for env in environments if deployment_name(env) == wanted and env.environment]
    if not local:
        print(f"no Environment of deployment {wanted} in namespace {namespace}", file=out)
        return NO_ENVIRONMENT
    found, missing = rows(local, gates)
    print(f"Pipeline {wanted} in namespace {namespace}:", file=out)
    header = Row("ENVIRONMENT", "VERSION", "BAKE", "GATE ALLOWS", "WAITS FOR")
    table = [header, *found]
    widths = [max(len(getattr(r, f)) for r in table) for f in Row.__slots__[:-1]]
    for row in table:
        cells = [getattr(row, f).ljust(w) for f, w in zip(Row.__slots__[:-1], widths, strict=True)]
        print("  " + "  ".join([*cells, row.waits_for]).rstrip(), file=out)
    for key in missing:
        print(
            f"  {key}: no status written yet (is ENVIRONMENT_STATUS off, or has nothing run since?)", file=out
        )
    return NO_STATUS if missing else 0
