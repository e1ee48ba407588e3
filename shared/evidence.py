"""What a gate remembers of the GitHub answers it was computed from, so a lagging answer cannot re-open it.

GitHub's API is eventually consistent: a read right after a write may come from a replica that has
not seen it. Each recompute reads the gate before asking GitHub and writes conditionally, so a slow
computation never overwrites a newer one; what remains is an answer that is itself old. The guard is
per tag: when an answer acted on said a version's result was not justified, the gate records where
that result sits in the upstream's history (a "veto": history entry, status time, deployment). A later
answer may allow the tag only with a decision that sits strictly later. So a lagging answer can
narrow, never widen.

The guard must not pin a gate: it is bound to the upstream it came from (a different upstream key
drops it), and a veto lasts `VETO_TTL_SECONDS` from the creation of the status it remembers, an
upper bound on replica lag (after that, every replica has the status, so no answer can lag behind
it). **Both ends of that span are GitHub's clock**: the status's `createdAt` and the `Date` of the
answer being judged (`CommitLookup.answered_at`). stagegate's own clock never enters, so a machine whose
clock runs ahead cannot switch the guard off, nor one that runs behind pin a gate. An answer without a
`Date` is judged by the newest `createdAt` it holds (a time GitHub had certainly reached); with neither,
no veto expires. A veto claiming to last further than the TTL (plus `CLOCK_SKEW_SECONDS` between
GitHub's own servers) is not believed at all. Pure: the caller passes GitHub's time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.bake import CommitLookup, Position, ReleaseCandidate, VersionResult, is_justified
from shared.errors import BadEvent
from shared.json_input import decode_json
from shared.views import RelationshipType, RolloutGate

EVIDENCE_ANNOTATION = "stagegate.kuberik.com/bake-evidence"
LEGACY_WATERMARK_ANNOTATION = "stagegate.kuberik.com/observed-status-time"
VETO_TTL_SECONDS = 300
CLOCK_SKEW_SECONDS = 60
LEGACY_PREFIX = "revision:"
"""Vetoes written before versions were told apart by tag were keyed by revision: they are kept, under
this prefix, holding every candidate of that revision until they expire."""


@dataclass(frozen=True, slots=True)
class Veto:
    """A tag an acted-on answer showed as not justified, at `position` (None: a legacy veto that holds
    until it expires), until `until` (seconds since the epoch, on GitHub's clock)."""

    position: Position | None
    until: int


@dataclass(frozen=True, slots=True)
class Evidence:
    """The upstream a gate's allowed set was computed for, and the vetoes still in force, by tag."""

    upstream: str | None
    vetoes: Mapping[str, Veto] = field(default_factory=dict)

    def to_annotation(self) -> str:
        """Compact JSON for the gate annotation; vetoes sorted so equal evidence writes equal text."""
        vetoes = {
            key: {"at": None if v.position is None else list(v.position), "until": _iso(v.until)}
            for key, v in sorted(self.vetoes.items())
        }
        return json.dumps({"upstream": self.upstream, "vetoes": vetoes}, separators=(",", ":"))


def read_evidence(gate: RolloutGate) -> Evidence:
    """The gate's evidence; absent or unreadable evidence is none (no upstream, no vetoes)."""
    raw = gate.annotations.get(EVIDENCE_ANNOTATION)
    if raw is None:
        return Evidence(None)
    try:
        doc = decode_json(raw, EVIDENCE_ANNOTATION)
        upstream = doc["upstream"]
        vetoes = dict(_veto(str(key), v) for key, v in doc.get("vetoes", {}).items())
    except (BadEvent, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return Evidence(None)
    return Evidence(upstream if isinstance(upstream, str) else None, vetoes)


def _veto(key: str, raw: Mapping[str, object]) -> tuple[str, Veto]:
    at, until = raw["at"], _epoch(raw["until"])
    if at is None:
        return key, Veto(None, until)
    if not isinstance(at, list) or len(at) != 3:
        raise ValueError("a veto's position is three values")
    if isinstance(at[0], str):  # (deployment createdAt, id, status createdAt): keyed by revision
        return f"{LEGACY_PREFIX}{key.removeprefix(LEGACY_PREFIX)}", Veto(None, until)
    return key, Veto((int(at[0]), str(at[1]), int(at[2])), until)


def github_now(lookups: Iterable[CommitLookup]) -> float | None:
    """GitHub's time of an answer: its `Date`, else the newest `createdAt` it holds, else None."""
    lookups = list(lookups)
    dates = [lookup.answered_at for lookup in lookups if lookup.answered_at is not None]
    if dates:
        return min(dates)
    stamps = [s.created_at for lookup in lookups for d in lookup.deployments for s in d.statuses]
    stamps += [d.created_at for lookup in lookups for d in lookup.deployments]
    try:
        return max((_epoch(stamp) for stamp in stamps), default=None)
    except (TypeError, ValueError):
        return None


def vetoes_in_force(evidence: Evidence, upstream: str, now: float | None) -> dict[str, Veto]:
    """Vetoes of this upstream that have not expired by GitHub's `now` and do not claim to outlive the
    TTL; with no GitHub time at all, every veto of this upstream."""
    if evidence.upstream != upstream:
        return {}
    if now is None:
        return dict(evidence.vetoes)
    horizon = now + VETO_TTL_SECONDS + CLOCK_SKEW_SECONDS
    return {key: v for key, v in evidence.vetoes.items() if now <= v.until <= horizon}


def _held(vetoes: Mapping[str, Veto], candidate: ReleaseCandidate) -> Veto | None:
    veto = vetoes.get(candidate.tag)
    if veto is None and candidate.revision:
        veto = vetoes.get(LEGACY_PREFIX + candidate.revision)
    return veto


def vetoed(
    vetoes: Mapping[str, Veto], results: Mapping[ReleaseCandidate, VersionResult], kind: RelationshipType
) -> dict[str, str]:
    """Tags this answer would justify although an earlier answer saw a result at least as new."""
    out: dict[str, str] = {}
    for candidate, result in results.items():
        veto = _held(vetoes, candidate)
        if veto is None or not is_justified(kind, result):
            continue
        if veto.position is None or result.position is None or result.position <= veto.position:
            seen = "a bake result" if veto.position is None else f"a bake result at {veto.position[1]}"
            out[candidate.tag] = (
                f"an earlier answer showed {seen} that this answer does not supersede (a lagging GitHub "
                f"replica); held back until {_iso(veto.until)} (GitHub's time) at most"
            )
    return out


def next_evidence(
    upstream: str,
    vetoes: Mapping[str, Veto],
    results: Mapping[ReleaseCandidate, VersionResult],
    kind: RelationshipType,
    now: float | None,
) -> Evidence:
    """Vetoes after acting on this answer: unjustified decisions are remembered, superseded ones drop."""
    out = dict(vetoes)
    by_tag: dict[str, list[VersionResult]] = {}
    for candidate, result in results.items():
        by_tag.setdefault(candidate.tag, []).append(result)
    for tag, found in by_tag.items():
        held = out.get(tag)
        refused = [r.position for r in found if r.position is not None and not is_justified(kind, r)]
        if refused:
            newest = max(refused)
            if held is None or (held.position is not None and newest > held.position):
                until = _status_epoch(newest[1], now) + VETO_TTL_SECONDS
                if now is None or until >= now:
                    out[tag] = Veto(newest, until)
        elif (
            held is not None
            and held.position is not None
            and all(r.position is not None and r.position > held.position for r in found)
        ):
            del out[tag]  # every build listed under the tag is justified by a newer decision
    return Evidence(upstream, out)


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status_epoch(created_at: str, now: float | None) -> int:
    """When the status was created (GitHub's clock); an unreadable time counts as GitHub's now (the
    longest a veto may last), or is refused a veto's horizon when that is unknown too."""
    try:
        moment = _epoch(created_at)
    except (TypeError, ValueError):
        return int(now) if now is not None else 0
    return moment if now is None else min(moment, int(now))


def _epoch(value: object) -> int:
    """Seconds since the epoch of an ISO 8601 timestamp (GitHub's `createdAt`); naive means UTC."""
    if not isinstance(value, str):
        raise TypeError("a timestamp must be a string")
    moment = datetime.fromisoformat(value)
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())
