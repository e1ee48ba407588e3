"""`github_webhook` with GitHub App credentials instead of a token, served by functions-framework
against the real kube-apiserver and the fake GitHub: the function signs a JWT with the App's key,
trades it for an installation token and reads the bake results with that token."""

from __future__ import annotations

from kubernetes import client

from stagegate.kube import KubeGates
from stagegate_dev import devstack
from stagegate_dev.fake_github import FakeGitHub
from stagegate_dev.protection_app import app_key
from tests.functions.test_github_webhook import CA, App, deliver, rev, serve

APP_ID = 31337
INSTALLATION_ID = 4_200_001


def test_app_credentials_open_the_prod_gate(
    kube_stack: devstack.KubeStack,
    procs: devstack.Processes,
    fake: FakeGitHub,
    custom: client.CustomObjectsApi,
    gates: KubeGates,
    namespace: str,
) -> None:
    pem, public = app_key()
    app = App(custom, gates, fake, namespace)
    fake.add_app(APP_ID, public, INSTALLATION_ID, [app.repo])
    CA[:] = [str(kube_stack.tls.ca_file)]
    url = serve(
        kube_stack,
        procs,
        fake,
        GITHUB_TOKEN="",
        GITHUB_APP_ID=str(APP_ID),
        GITHUB_APP_PRIVATE_KEY=pem,
        GITHUB_APP_INSTALLATION_ID=str(INSTALLATION_ID),
    )
    app.environment("staging")
    app.environment("prod", upstream="staging")
    app.candidates("prod", ("v1", rev(1)), ("v2", rev(2)), ("v3", rev(3)))
    fake.reset_calls()

    app.creator = "stagegate[bot]"  # the App's own bot: what the reporter writes as
    response = deliver(url, fake, app, app.bake("staging", rev(1)))

    assert response.status_code == 200, response.text
    assert app.gate("prod") == ["v1"]
    calls = fake.call_counts()
    assert calls[("POST", f"/app/installations/{INSTALLATION_ID}/access_tokens")] == 1
    assert calls[("GET", "/app")] == 1  # who the App is: its bot's login, once per process
    assert calls[("POST", "/graphql")] >= 1
    app.creator = "someone-with-write-access"
    deliver(url, fake, app, app.bake("staging", rev(3)))
    assert app.gate("prod") == ["v1"]  # not recorded by a trusted identity: does not count
    app.creator = "stagegate[bot]"
    # The token is kept (PyGithub renews it shortly before its hour is up), not fetched per delivery.
    deliver(url, fake, app, app.bake("staging", rev(2)))
    assert app.gate("prod") == ["v1", "v2"]
    assert fake.call_counts()[("POST", f"/app/installations/{INSTALLATION_ID}/access_tokens")] == 1
