"""What a gate remembers of the GitHub answers it was computed from, so a lagging answer cannot re-open it.

GitHub's API is eventually consistent: a read right after a write may come from a replica that has
not seen it. Each recompute reads the gate before asking GitHub and writes conditionally, so a slow
computation never overwrites a newer one; what remains is an answer that is itself old. The guard is
per revision: when an answer acted on said a revision's newest bake result was not a success, the gate
records where that result sits in the upstream's history (a "veto"). A later answer may allow the
revision only with a decision that sits strictly later. So a lagging answer can narrow, never widen.

The guard must not pin a gate: it is bound to the upstream it came from (a different upstream key
drops it), and a veto lasts `VETO_TTL_SECONDS` from the creation of the status it remembers, an
upper bound on replica lag (after that, every replica has the status, so no answer can lag behind
it). A deleted deployment, a clock that ran ahead or a hand-edited annotation therefore hold a
revision back at most that long, and a veto whose expiry lies further ahead than the TTL (plus
`CLOCK_SKEW_SECONDS` between GitHub's clock and ours) is not believed at all. Old results need no
veto, so a gate whose upstream is quiet is not rewritten. Pure: the caller passes the time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.bake import Position, RevisionResult, is_justified
from shared.errors import BadEvent
from shared.json_input import decode_json
from shared.views import RelationshipType, RolloutGate

EVIDENCE_ANNOTATION = "stagegate.kuberik.com/bake-evidence"
LEGACY_WATERMARK_ANNOTATION = "stagegate.kuberik.com/observed-status-time"
VETO_TTL_SECONDS = 300
CLOCK_SKEW_SECONDS = 60


@dataclass(frozen=True, slots=True)
class Veto:
    """A revision an acted-on answer showed as not (yet) justified, at `position`, until `until`."""

    position: Position
    until: int


@dataclass(frozen=True, slots=True)
class Evidence:
    """The upstream a gate's allowed set was computed for, and the vetoes still in force."""

    upstream: str | None
    vetoes: Mapping[str, Veto] = field(default_factory=dict)

    def to_annotation(self) -> str:
        """Compact JSON for the gate annotation; vetoes sorted so equal evidence writes equal text."""
        vetoes = {
            rev: {"at": list(v.position), "until": _iso(v.until)} for rev, v in sorted(self.vetoes.items())
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
        vetoes = {
            str(rev): Veto(
                position=(str(v["at"][0]), int(v["at"][1]), str(v["at"][2])), until=_epoch(v["until"])
            )
            for rev, v in doc.get("vetoes", {}).items()
        }
    except (BadEvent, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return Evidence(None)
    return Evidence(upstream if isinstance(upstream, str) else None, vetoes)


def vetoes_in_force(evidence: Evidence, upstream: str, now: float) -> dict[str, Veto]:
    """Vetoes of this upstream that have not expired and do not claim to outlive the TTL."""
    if evidence.upstream != upstream:
        return {}
    horizon = now + VETO_TTL_SECONDS + CLOCK_SKEW_SECONDS
    return {rev: v for rev, v in evidence.vetoes.items() if now <= v.until <= horizon}


def vetoed(
    vetoes: Mapping[str, Veto], results: Mapping[str, RevisionResult], kind: RelationshipType
) -> dict[str, str]:
    """Revisions this answer would justify although an earlier answer saw a result at least as new."""
    out: dict[str, str] = {}
    for revision, veto in vetoes.items():
        result = results.get(revision)
        if result is None or not is_justified(kind, result):
            continue
        if result.position is None or result.position <= veto.position:
            out[revision] = (
                f"an earlier answer showed a bake result at {veto.position[2]} that this answer does not "
                f"supersede (a lagging GitHub replica); held back until {_iso(veto.until)} at most"
            )
    return out


def next_evidence(
    upstream: str,
    vetoes: Mapping[str, Veto],
    results: Mapping[str, RevisionResult],
    kind: RelationshipType,
    now: float,
) -> Evidence:
    """Vetoes after acting on this answer: unjustified decisions are remembered, superseded ones drop."""
    out = dict(vetoes)
    for revision, result in results.items():
        if result.position is None:
            continue
        held = out.get(revision)
        if not is_justified(kind, result):
            if held is None or result.position > held.position:
                until = _status_epoch(result.position[2], now) + VETO_TTL_SECONDS
                if until >= now:
                    out[revision] = Veto(result.position, until)
        elif held is not None and result.position > held.position:
            del out[revision]
    return Evidence(upstream, out)


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status_epoch(created_at: str, now: float) -> int:
    """When the status was created; an unreadable time counts as now (the longest a veto may last)."""
    try:
        return min(_epoch(created_at), int(now))
    except (TypeError, ValueError):
        return int(now)


def _epoch(value: object) -> int:
    """Seconds since the epoch of an ISO 8601 timestamp (GitHub's `createdAt`); naive means UTC."""
    if not isinstance(value, str):
        raise TypeError("a timestamp must be a string")
    moment = datetime.fromisoformat(value)
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())
