"""A revocation github_webhook cannot finish before its deadline reaches every gate anyway: the served
function hands the rest to the audit transport (the real Pub/Sub emulator), whose push subscription
feeds `k8s_audit`, which narrows them on the real kube-apiserver. GitHub itself never redelivers.

The webhook here has its default deadline (`GITHUB_WEBHOOK_DEADLINE_SECONDS=8`), so it starts gate
writes until 6 s in, and GitHub answers its read only after 6.5 s: it starts no gate write at all, and
every Environment takes the durable path, whatever the machine's speed. The partial case (some narrowed
in time, the rest handed on) is `tests/stagegate/test_revocation.py`.
"""

from __future__ import annotations

import requests

from stagegate.handoff import RESERVE_SECONDS
from stagegate_dev import devstack
from tests.functions.handoff_support import audit_route, serve
from tests.functions.test_github_webhook import CA, App, deliver, rev

WEBHOOK = ("github_webhook", "github_webhook")

N = 30


def test_a_revocation_not_finished_in_time_is_handed_on_and_every_gate_narrows(
    pubsub, emulator, kube_stack, procs, fake, custom, gates, namespace
) -> None:
    CA[:] = [str(kube_stack.tls.ca_file)]
    app = App(custom, gates, fake, namespace)
    app.environment("staging")
    names = [f"prod-{i}" for i in range(N)]
    for name in names:
        app.environment(name, upstream="staging")
        app.candidates(name, ("v1", rev(1)))
    opener = serve(kube_stack, procs, fake, WEBHOOK, tls=True)
    baked = app.bake("staging", rev(1))
    assert deliver(opener, fake, app, baked).status_code == 200
    assert [app.gate(name) for name in names] == [["v1"]] * N

    topic = audit_route(kube_stack, procs, fake, emulator.host)
    assert min(RESERVE_SECONDS, 8 / 4) == 2  # the webhook below starts gate writes until 6 s in
    hurried = serve(
        kube_stack, procs, fake, WEBHOOK, tls=True,
        GITHUB_WEBHOOK_DEADLINE_SECONDS="8", BRIDGE_TRANSPORT="pubsub", BRIDGE_PUBSUB_TOPIC=topic,
        PUBSUB_EMULATOR_HOST=emulator.host,
    )  # fmt: skip
    failed = app.bake("staging", rev(1), "failure", "Bake failed: error rate above 5%")
    fake.hang_next(1, seconds=6.5, api="graphql")  # GitHub's answer comes after the writes' deadline
    answer: requests.Response = deliver(hurried, fake, app, failed)
    assert answer.status_code == 200, answer.text
    said = answer.json()
    assert said["status"] == "recomputed, the rest handed on"
    assert sorted(said["handedOn"]["rollouts"]) == sorted(f"{namespace}/myapp-{name}" for name in names)
    devstack.wait_until(
        lambda: all(app.gate(name) == [] for name in names), 60, "every prod gate narrowed by k8s_audit"
    )
