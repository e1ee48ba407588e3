"""Work a delivery could not finish in time goes on durably, instead of waiting for the resync.

GitHub waits ten seconds for a webhook's answer and never delivers it again. A revocation that fans
out to more Environments than one answer's time allows would leave the rest allowing a failed version
until the scheduled resync (up to ten minutes). So `github_webhook` stops starting gate writes shortly
before its deadline and publishes, for every Rollout whose Environments it did not reach, a "look
again" (`shared.audit.look_again`), a hundred to a message, to the audit transport
(`BRIDGE_TRANSPORT`: the Pub/Sub topic or EventBridge bus `k8s_audit` consumes, with its retries and
dead letters). `k8s_audit` then recomputes those Environments from the API, as it does for any Rollout
change. Without a transport there is nowhere durable to put it: the answer says what was left (503)
and the resync heals it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from shared.audit import AUDIT_API_VERSION, AuditEvent, look_again
from shared.views import Environment
from stagegate.bridge import OnFirstUse, Transport, audit_transport_maker
from stagegate.settings import Settings

RESERVE_SECONDS = 2.0
"""How long before a webhook's deadline gate writes stop being started (a quarter of the deadline when
that is less): time to publish the rest."""
BATCH = 100
"""Look-agains per message at most (and never more than `AUDIT_MAX_EVENTS`, which `k8s_audit` takes in
one delivery): a thousand Rollouts are ten messages, not a thousand."""


def handoff_transport(settings: Settings) -> Transport | None:
    """The audit transport when one is configured (its client made on the first hand-off), else None."""
    if settings.bridge_transport is None:
        return None
    return OnFirstUse(audit_transport_maker(settings), settings.bridge_transport)


def hand_off(environments: Sequence[Environment], transport: Transport, why: str, batch: int) -> list[str]:
    """Publish a "look again" for every Rollout the Environments govern, `batch` to an `EventList`
    message (what `k8s_audit` takes in one delivery and recomputes with one GitHub read per upstream);
    the Rollouts, `namespace/name`. Raises `RetryableError` when the transport did not take them all."""
    rollouts = sorted({(env.namespace, env.rollout_name) for env in environments})
    handed = str(uuid.uuid4())
    events = [
        look_again(ns, name, why, f"stagegate-{handed}-{i}").event for i, (ns, name) in enumerate(rollouts)
    ]
    transport.publish_messages(
        [
            (f"stagegate-hand-off/{handed}/{n}", event_list(events[start : start + batch]))
            for n, start in enumerate(range(0, len(events), max(batch, 1)))
        ]
    )
    return [f"{ns}/{name}" for ns, name in rollouts]


def event_list(events: Sequence[AuditEvent]) -> bytes:
    """An `audit.k8s.io/v1` `EventList` document of these events."""
    items = [{**event.raw, "apiVersion": AUDIT_API_VERSION, "kind": "Event"} for event in events]
    return json.dumps({"apiVersion": AUDIT_API_VERSION, "kind": "EventList", "items": items}).encode()
