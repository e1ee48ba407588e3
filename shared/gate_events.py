"""The Events that tell an Environment's story: why its gate opened to a version or narrowed.

`kubectl describe environment prod` then shows what happened without reading logs. Pure: the shell
records them after the gate writes (`stagegate.recompute_service`), aggregated (`KubeGates.tell`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

OPENED = "GateOpened"
NARROWED = "GateNarrowed"
NOT_COMPUTED = "GateNotComputed"


def gate_events(
    gate: str, before: Sequence[str] | None, after: Sequence[str] | None, reasons: Mapping[str, str]
) -> list[tuple[str, str]]:
    """(reason, message) of the `Normal` Events for one gate write: one for the versions it allows now
    that it did not, one for those it no longer allows (each with the recompute's reason per version,
    which names the upstream record); none when the allowed versions did not change."""
    if before == after:
        return []
    events = []
    if before is None:
        events.append((NARROWED, f"{gate} restricts versions now (it allowed any): {_allows(after)}"))
    else:
        gone = [tag for tag in before if after is not None and tag not in after]
        if gone:
            events.append((NARROWED, f"{gate} no longer allows {_why(gone, reasons)}; {_allows(after)}"))
    added = [tag for tag in after or () if before is None or tag not in before]
    if added and before is not None:
        events.append((OPENED, f"{gate} allows {_why(added, reasons)}; {_allows(after)}"))
    if after is None:
        events.append((OPENED, f"{gate} allows any version now (no restriction)"))
    return events


def _why(tags: Sequence[str], reasons: Mapping[str, str]) -> str:
    return "; ".join(f"{tag} ({reasons[tag]})" if reasons.get(tag) else tag for tag in tags)


def _allows(after: Sequence[str] | None) -> str:
    if after is None:
        return "it allows any version"
    return f"it allows {', '.join(after)}" if after else "it allows nothing"
