"""The walk-arounds a review found around a guard that judged one field, tried on a real kube-apiserver
with the shipped webhooks registered (`infra/k8s/admission.yaml`, as `test_k8s_admission_webhook.py`
registers it: the function over TLS as its ServiceAccount, an isolation label on this module's
namespaces). Each is refused, or goes through only by the documented human override, which leaves a
`DeployOverride` Event; removing the namespace's opt-in label needs a reason and leaves a `GuardRemoved`
Event. The controls show that ordinary work still flows: the rollout controller's server-side apply of
an allowed tag, Flux re-applying unchanged manifests (and dry-running them), labels, annotations that
govern nothing, harmless fields, and deleting a guarded namespace full of governed objects.

Every test starts from the same app in a fresh guarded namespace: Environments `prod` (`After staging`,
Rollout `myapp`, gate allowing `baked` and `baked-2`) and `staging` (Rollout `myapp-staging`, no
relationship); OCIRepositories `web` (annotated for `myapp`, running `baked`) and `web-staging`
(annotated for `myapp-staging`, running `unbaked`); Kustomizations `web` (no annotation: governed
through its source `web`) and `vars` (substitute `version` from `myapp`, `baked`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stagegate_dev import devstack
from tests.functions.admission_support import GUARD_LABEL, labelled_namespace
from tests.kube_objects import ENV_ARGS, GATE_ARGS, environment
from tests.shared.admission_builders import kustomization, oci_repository, rollout

OCI = ("source.toolkit.fluxcd.io", "v1")
KS = ("kustomize.toolkit.fluxcd.io", "v1")
PLURALS = {"OCIRepository": (*OCI, "ocirepositories"), "Kustomization": (*KS, "kustomizations")}
ROLLOUT_ANNOTATION = "rollout.kuberik.com/rollout"
SUBSTITUTE_ANNOTATION = "rollout.kuberik.com/substitute.version.from"
REASON_ANNOTATION = "stagegate.kuberik.com/unguard-reason"


@dataclass
class App:
    """The app of the module docstring, in its own guarded namespace."""

    ns: str
    custom: client.CustomObjectsApi
    core: client.CoreV1Api

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.custom.get_namespaced_custom_object(
            *PLURALS[kind][:2], self.ns, PLURALS[kind][2], name
        )
        return found

    def patch(self, kind: str, name: str, body: dict[str, Any], **kwargs: Any) -> Any:
        """A JSON merge patch, as `kubectl patch --type merge` or `kubectl edit` makes one."""
        group, version, plural = PLURALS[kind]
        return self.custom.patch_namespaced_custom_object(
            group, version, self.ns, plural, name, body, **kwargs
        )

    def apply(self, kind: str, name: str, spec: dict[str, Any], manager: str, **kwargs: Any) -> Any:
        """A server-side apply, as the rollout controller (forced) and kustomize-controller make one."""
        group, version, plural = PLURALS[kind]
        body = {
            "apiVersion": f"{group}/{version}",
            "kind": kind,
            "metadata": {"name": name, "namespace": self.ns, **kwargs.pop("metadata", {})},
            "spec": spec,
        }
        return self.custom.patch_namespaced_custom_object(
            group,
            version,
            self.ns,
            plural,
            name,
            body,
            field_manager=manager,
            _content_type="application/apply-patch+yaml",
            **kwargs,
        )

    def delete(self, kind: str, name: str) -> Any:
        group, version, plural = PLURALS[kind]
        return self.custom.delete_namespaced_custom_object(group, version, self.ns, plural, name)

    def override(self, tag: str) -> None:
        """A human sets kuberik's override on Rollout myapp."""
        self.custom.patch_namespaced_custom_object(
            *GATE_ARGS,
            self.ns,
            "rollouts",
            "myapp",
            {"metadata": {"annotations": {"rollout.kuberik.com/force-deploy": tag}}},
        )

    def override_events(self) -> list[str]:
        events = self.core.list_namespaced_event(
            self.ns,
            field_selector="involvedObject.kind=Rollout,involvedObject.name=myapp,reason=DeployOverride",
        )
        return [e.message for e in events.items]


def _create(
    custom: client.CustomObjectsApi, args: tuple[str, str, str], ns: str, body: dict[str, Any]
) -> None:
    custom.create_namespaced_custom_object(args[0], args[1], ns, args[2], body)


@pytest.fixture
def app(registered: dict[str, Any], kube_stack: devstack.KubeStack, isolation: dict[str, str]) -> App:
    ns = labelled_namespace(kube_stack, {**isolation, **GUARD_LABEL}, "attack")
    custom = client.CustomObjectsApi(kube_stack.api_client())
    for name in ("myapp", "myapp-staging"):
        body = rollout(name, ns)
        del body["metadata"]["uid"]
        _create(custom, (*GATE_ARGS, "rollouts"), ns, body)
    _create(
        custom,
        (*ENV_ARGS, "environments"),
        ns,
        environment(ns, "staging", upstream=None, rollout="myapp-staging"),
    )
    _create(
        custom, (*ENV_ARGS, "environments"), ns, environment(ns, "prod")
    )  # its gate exists when this returns
    custom.patch_namespaced_custom_object(
        *GATE_ARGS, ns, "rolloutgates", "prod-stagegate", {"spec": {"allowedVersions": ["baked", "baked-2"]}}
    )
    _create(custom, PLURALS["OCIRepository"], ns, oci_repository("web", ns, tag="baked"))
    staging = oci_repository("web-staging", ns, rollout="myapp-staging", tag="unbaked")
    _create(custom, PLURALS["OCIRepository"], ns, staging)
    _create(custom, PLURALS["Kustomization"], ns, kustomization("web", ns, rollouts={}))
    _create(custom, PLURALS["Kustomization"], ns, kustomization("vars", ns, substitute={"version": "baked"}))
    return App(ns, custom, client.CoreV1Api(kube_stack.api_client()))


def refusal(call: Callable[[], Any], webhook: str = "deploy-guard") -> str:
    """The one sentence a refused writer reads."""
    with pytest.raises(ApiException) as refused:
        call()
    assert refused.value.status == 403, refused.value.body
    body = str(refused.value.body)
    assert f'admission webhook \\"{webhook}.stagegate.kuberik.com\\" denied the request' in body, body
    return body


# --- the walk-arounds ----------------------------------------------------------------------------


def test_1_dropping_the_rollout_annotation_is_refused_and_putting_it_back_on_an_unbaked_tag_too(
    app: App,
) -> None:
    drop = {"metadata": {"annotations": {ROLLOUT_ANNOTATION: None}}}
    message = refusal(lambda: app.patch("OCIRepository", "web", drop))
    assert "may not change annotation rollout.kuberik.com/rollout for Rollout myapp" in message
    # a human may let it go, by naming the tag it runs; that leaves an Event
    app.override("baked")
    app.patch("OCIRepository", "web", drop)
    [event] = app.override_events()
    assert "changed annotation rollout.kuberik.com/rollout (it runs baked)" in event
    app.patch("OCIRepository", "web", {"spec": {"ref": {"tag": "unbaked"}}})  # governs nothing now
    back = {"metadata": {"annotations": {ROLLOUT_ANNOTATION: "myapp"}}}
    assert "may not run unbaked for Rollout myapp" in refusal(lambda: app.patch("OCIRepository", "web", back))


def test_1_dropping_a_kustomizations_substitute_annotation_is_refused(app: App) -> None:
    drop = {"metadata": {"annotations": {SUBSTITUTE_ANNOTATION: None}}}
    message = refusal(lambda: app.patch("Kustomization", "vars", drop))
    assert f"may not change annotation {SUBSTITUTE_ANNOTATION} for Rollout myapp" in message


def test_2_pointing_prods_kustomization_at_stagings_source_is_refused(app: App) -> None:
    to_staging = {"spec": {"sourceRef": {"name": "web-staging"}}}
    message = refusal(lambda: app.patch("Kustomization", "web", to_staging))
    assert "Kustomization " in message
    assert "may not change spec.sourceRef.name for Rollout myapp" in message
    assert "to unbaked, the tag it would run" in message  # staging's tag, what prod would then run
    app.override("unbaked")
    app.patch("Kustomization", "web", to_staging)
    [event] = app.override_events()
    assert "changed spec.sourceRef.name (it runs unbaked)" in event


def test_3_replacing_an_image_tag_is_refused(app: App) -> None:
    images = {"spec": {"images": [{"name": "registry.example/web", "newTag": "unbaked"}]}}
    assert "may not change spec.images for Rollout myapp" in refusal(
        lambda: app.patch("Kustomization", "web", images)
    )


def test_4_changing_the_path_is_refused(app: App) -> None:
    path = {"spec": {"path": "./staging"}}
    assert "may not change spec.path for Rollout myapp" in refusal(
        lambda: app.patch("Kustomization", "web", path)
    )


def test_5_changing_the_url_is_refused_unless_an_override_names_what_it_runs(app: App) -> None:
    url = {"spec": {"url": "oci://registry.example/myorg/staging-manifests"}}
    message = refusal(lambda: app.patch("OCIRepository", "web", url))
    assert "may not change spec.url for Rollout myapp" in message
    app.override("baked")
    _, status, headers = app.custom.patch_namespaced_custom_object_with_http_info(
        *OCI, app.ns, "ocirepositories", "web", url
    )
    assert status == 200
    assert "changed spec.url for Rollout myapp by human override" in headers.get("Warning", "")
    [event] = app.override_events()
    assert "changed spec.url (it runs baked)" in event


def test_6_deleting_a_governed_object_to_recreate_it_is_refused(app: App) -> None:
    message = refusal(lambda: app.delete("OCIRepository", "web"))
    assert "may not be deleted while it deploys Rollout myapp (it runs baked" in message
    assert "may not be deleted" in refusal(lambda: app.delete("Kustomization", "web"))
    app.override("baked")
    app.delete("OCIRepository", "web")
    [event] = app.override_events()
    assert "was deleted (it ran baked)" in event


def test_7_substituting_from_a_config_map_is_refused(app: App) -> None:
    app.core.create_namespaced_config_map(
        app.ns, {"metadata": {"name": "vars"}, "data": {"version": "unbaked"}}
    )
    substitute_from = {"spec": {"postBuild": {"substituteFrom": [{"kind": "ConfigMap", "name": "vars"}]}}}
    message = refusal(lambda: app.patch("Kustomization", "vars", substitute_from))
    assert "may not change spec.postBuild.substituteFrom for Rollout myapp" in message


# --- removing the opt-in label -------------------------------------------------------------------


def test_removing_the_opt_in_label_needs_a_reason_and_leaves_an_event(app: App) -> None:
    [(key, _)] = GUARD_LABEL.items()
    message = refusal(
        lambda: app.core.patch_namespace(app.ns, {"metadata": {"labels": {key: None}}}), "namespace-guard"
    )
    assert REASON_ANNOTATION in message
    refusal(
        lambda: app.core.patch_namespace(app.ns, {"metadata": {"labels": {key: "off"}}}), "namespace-guard"
    )
    unguard = {"metadata": {"labels": {key: None}, "annotations": {REASON_ANNOTATION: "moving to cluster b"}}}
    _, status, headers = app.core.patch_namespace_with_http_info(app.ns, unguard)
    assert status == 200
    assert f"namespace {app.ns} is no longer guarded" in headers.get("Warning", "")
    events = app.core.list_namespaced_event(
        "default",
        field_selector=f"involvedObject.kind=Namespace,involvedObject.name={app.ns},reason=GuardRemoved",
    ).items
    assert [e.message for e in events] == [
        f"the deploy guard's opt-in label {key}=enabled was removed by {ADMIN}: moving to cluster b"
    ]


ADMIN = devstack.ADMIN_USER


# --- ordinary work still flows -------------------------------------------------------------------


def test_the_rollout_controllers_apply_of_an_allowed_tag_goes_through(app: App) -> None:
    app.apply("OCIRepository", "web", {"ref": {"tag": "baked-2"}}, "rollout-controller", force=True)
    assert app.get("OCIRepository", "web")["spec"]["ref"]["tag"] == "baked-2"
    substitute = {"postBuild": {"substitute": {"version": "baked-2"}}}
    app.apply("Kustomization", "vars", substitute, "rollout-controller", force=True)
    assert app.get("Kustomization", "vars")["spec"]["postBuild"]["substitute"] == {"version": "baked-2"}
    assert app.override_events() == []


def test_flux_re_applying_unchanged_manifests_goes_through(app: App) -> None:
    for kind, name in (("OCIRepository", "web"), ("Kustomization", "web"), ("Kustomization", "vars")):
        manifest = app.get(kind, name)
        annotations = manifest["metadata"].get("annotations") or {}
        for dry_run in ({"dry_run": "All"}, {}):  # Flux dry-runs every object, then applies
            app.apply(
                kind,
                name,
                manifest["spec"],
                "kustomize-controller",
                metadata={"annotations": annotations},
                **dry_run,
            )
        assert app.get(kind, name)["spec"] == manifest["spec"]


def test_labels_annotations_that_govern_nothing_and_harmless_fields_go_through(app: App) -> None:
    for kind in ("OCIRepository", "Kustomization"):
        app.patch(kind, "web", {"metadata": {"labels": {"team": "web"}}})
        app.patch(kind, "web", {"metadata": {"annotations": {"example.com/owner": "team-web"}}})
        app.patch(kind, "web", {"spec": {"interval": "10m"}})
    app.patch("Kustomization", "web", {"spec": {"timeout": "3m", "suspend": True, "prune": False}})
    assert app.get("Kustomization", "web")["spec"]["interval"] == "10m"
    [(key, value)] = GUARD_LABEL.items()
    app.core.patch_namespace(app.ns, {"metadata": {"labels": {"team": "web"}, "annotations": {"a": "b"}}})
    assert app.core.read_namespace(app.ns).metadata.labels[key] == value


def test_deleting_a_guarded_namespace_full_of_governed_objects_completes(app: App) -> None:
    """No controller-manager runs here, so the test does the namespace controller's part: delete every
    collection in the namespace (each Flux object's delete reaches the deploy guard), then finalize it."""
    app.core.delete_namespace(app.ns)
    assert app.core.read_namespace(app.ns).status.phase == "Terminating"
    for group, version, plural in (*PLURALS.values(), (*ENV_ARGS, "environments")):
        app.custom.delete_collection_namespaced_custom_object(group, version, app.ns, plural)
        assert app.custom.list_namespaced_custom_object(group, version, app.ns, plural)["items"] == []
    for plural in ("rolloutgates", "rollouts"):
        app.custom.delete_collection_namespaced_custom_object(*GATE_ARGS, app.ns, plural)
    app.core.delete_collection_namespaced_event(app.ns)
    namespace = app.core.read_namespace(app.ns)
    namespace.spec.finalizers = []
    app.core.replace_namespace_finalize(app.ns, namespace)
    with pytest.raises(ApiException) as gone:
        app.core.read_namespace(app.ns)
    assert gone.value.status == 404
