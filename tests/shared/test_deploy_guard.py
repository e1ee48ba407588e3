"""What a write of a Flux object changes about what a Rollout runs, and what the guard then says.

Pure: the core reads the review (`flux_write`), names the source OCIRepositories it needs
(`FluxWrite.sources`), and takes them as the API has them (`deploy_changes`); the tests hand them in.
Each walk-around a review found (annotation dropped and put back, sourceRef switched to staging's
source, `spec.images`, `spec.path`, `spec.url`, delete and recreate, `substituteFrom`) has a test here
that fails on a guard judging only `spec.ref.tag` and the substitute; the property at the end checks
that no UPDATE of an OCIRepository changes what a governed Rollout runs without a gate or an override
vouching for it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.admission import Decision, EventNotice, parse_admission_review
from shared.deploy_guard import (
    ROLLOUT_ANNOTATION,
    Deploy,
    FluxWrite,
    RolloutOverrides,
    SourceKey,
    deploy_changes,
    flux_write,
    governance,
    guard_decision,
    judge,
    namespace_terminating,
    needs,
    refused_rollouts,
)
from shared.errors import BadEvent
from shared.views import RolloutGate
from tests.shared.admission_builders import (
    changed,
    kustomization,
    oci_repository,
    review,
    rollout,
    with_substitute,
)
from tests.shared.builders import OLD_ENV_UID, environment_raw, gate

LABEL = ("stagegate.kuberik.com/guard", "enabled")
WEB = SourceKey("default", "web")
STAGING_SOURCE = SourceKey("default", "web-staging")
OCI_TARGET = "OCIRepository default/web"
KS_TARGET = "Kustomization default/web"


def write(*args: Any, **kwargs: Any) -> FluxWrite:
    parsed = flux_write(parse_admission_review(json.dumps(review(*args, **kwargs))))
    assert parsed is not None
    return parsed


def deploys(
    *args: Any, sources: Mapping[SourceKey, dict[str, Any] | None] | None = None, **kwargs: Any
) -> list[Deploy]:
    """What the write changes, given the sources as the API has them (each one it asks for must be given)."""
    the_write = write(*args, **kwargs)
    available = sources or {}
    assert set(the_write.sources) <= set(available), f"asked for {the_write.sources}"
    return deploy_changes(the_write, {key: available[key] for key in the_write.sources})


def summary(found: list[Deploy]) -> list[tuple[str, str, str | None]]:
    """(rollout, change, version) of each deploy."""
    return [(d.rollout_label, d.change, d.version) for d in found]


def prod_source(tag: str | None = "v1", rollout_name: str | None = "myapp") -> dict[str, Any]:
    return oci_repository(rollout=rollout_name, tag=tag)


def staging_source(tag: str | None = "v9") -> dict[str, Any]:
    return oci_repository("web-staging", rollout="myapp-staging", tag=tag)


SOURCES: dict[SourceKey, dict[str, Any] | None] = {WEB: prod_source(), STAGING_SOURCE: staging_source()}
KS_SOURCE_ONLY = kustomization(rollouts={})  # governed only through its source, as most are


# --- nothing changes: allowed without a read ----------------------------------------------------


def test_a_flux_re_apply_of_the_same_manifest_changes_nothing_and_reads_nothing() -> None:
    for obj in (oci_repository(tag="v1"), kustomization(substitute={"version": "v1"}), KS_SOURCE_ONLY):
        same = write(obj, obj)
        assert (same.shape, same.judged, same.sources) == ("unchanged", False, ())


HARMLESS: dict[str, tuple[dict[str, Any], tuple[Any, ...]]] = {
    "oci interval": (oci_repository(tag="v1"), ("spec", "interval", "10m")),
    "oci timeout": (oci_repository(tag="v1"), ("spec", "timeout", "2m")),
    "oci suspend": (oci_repository(tag="v1"), ("spec", "suspend", True)),
    "oci secretRef": (oci_repository(tag="v1"), ("spec", "secretRef", {"name": "pull"})),
    "oci serviceAccountName": (oci_repository(tag="v1"), ("spec", "serviceAccountName", "puller")),
    "oci certSecretRef": (oci_repository(tag="v1"), ("spec", "certSecretRef", {"name": "ca"})),
    "oci proxySecretRef": (oci_repository(tag="v1"), ("spec", "proxySecretRef", {"name": "proxy"})),
    "oci provider": (oci_repository(tag="v1"), ("spec", "provider", "aws")),
    "oci verify": (oci_repository(tag="v1"), ("spec", "verify", {"provider": "cosign"})),
    "oci label": (oci_repository(tag="v1"), ("metadata", "labels", {"team": "web"})),
    "oci status": (oci_repository(tag="v1"), ("status", {"artifact": {"revision": "v1@sha256:abc"}})),
    "oci other annotation": (
        oci_repository(tag="v1"),
        ("metadata", "annotations", {"rollout.kuberik.com/rollout": "myapp", "team": "web"}),
    ),
    "ks interval": (KS_SOURCE_ONLY, ("spec", "interval", "1h")),
    "ks retryInterval": (KS_SOURCE_ONLY, ("spec", "retryInterval", "1m")),
    "ks prune": (KS_SOURCE_ONLY, ("spec", "prune", False)),
    "ks wait": (KS_SOURCE_ONLY, ("spec", "wait", True)),
    "ks force": (KS_SOURCE_ONLY, ("spec", "force", True)),
    "ks healthChecks": (KS_SOURCE_ONLY, ("spec", "healthChecks", [{"kind": "Deployment", "name": "web"}])),
    "ks healthCheckExprs": (KS_SOURCE_ONLY, ("spec", "healthCheckExprs", [{"current": "true"}])),
    "ks dependsOn": (KS_SOURCE_ONLY, ("spec", "dependsOn", [{"name": "infra"}])),
    "ks decryption": (KS_SOURCE_ONLY, ("spec", "decryption", {"provider": "sops"})),
    "ks deletionPolicy": (KS_SOURCE_ONLY, ("spec", "deletionPolicy", "Orphan")),
    "ks suspend": (KS_SOURCE_ONLY, ("spec", "suspend", True)),
}


@pytest.mark.parametrize("case", sorted(HARMLESS))
def test_fields_that_cannot_change_content_are_no_change(case: str) -> None:
    old, change = HARMLESS[case]
    assert write(changed(old, *change), old).shape == "unchanged"


EMPTY_FIELDS: dict[str, tuple[dict[str, Any], tuple[str, ...], tuple[Any, ...]]] = {
    "spec.ref.digest": (oci_repository(tag="v1"), ("spec", "ref", "digest"), (None, "")),
    "spec.ignore": (oci_repository(tag="v1"), ("spec", "ignore"), (None, "")),
    "spec.layerSelector": (oci_repository(tag="v1"), ("spec", "layerSelector"), (None, {})),
    "spec.images": (kustomization(substitute={"version": "v1"}), ("spec", "images"), (None, [])),
    "spec.postBuild.substituteFrom": (
        kustomization(substitute={"version": "v1"}),
        ("spec", "postBuild", "substituteFrom"),
        (None, []),
    ),
    "spec.patches": (kustomization(), ("spec", "patches"), (None, [])),
    "spec.commonMetadata": (kustomization(), ("spec", "commonMetadata"), (None, {}, {"labels": {}})),
}


@pytest.mark.parametrize("field", sorted(EMPTY_FIELDS))
def test_empty_values_equal_absent_ones(field: str) -> None:
    """Flux re-applying a manifest that spells "nothing" differently (null, "", {}, []) changes nothing."""
    obj, path, empties = EMPTY_FIELDS[field]
    for empty in empties:
        assert write(changed(obj, *path, empty), obj).shape == "unchanged", empty


def test_a_source_namespace_spelled_out_as_the_default_is_the_same_source() -> None:
    implicit = kustomization(rollouts={})
    assert (
        write(changed(implicit, "spec", "sourceRef", "namespace", "default"), implicit).shape == "unchanged"
    )
    assert write(changed(implicit, "spec", "sourceRef", "namespace", "apps"), implicit).shape == "changed"


def test_objects_nothing_governs_are_never_judged() -> None:
    bare = oci_repository(rollout=None, tag="v1")
    assert write(changed(bare, "spec", "url", "oci://elsewhere/x"), bare).shape == "ungoverned"
    assert write(oci_repository(rollout="", tag="v2")).shape == "ungoverned"
    git = changed(kustomization(rollouts={}), "spec", "sourceRef", {"kind": "GitRepository", "name": "web"})
    assert write(changed(git, "spec", "path", "./other"), git).shape == "ungoverned"
    assert write(None, bare, operation="DELETE").shape == "ungoverned"


def test_other_resources_are_not_flux_writes() -> None:
    assert flux_write(parse_admission_review(json.dumps(review(environment_raw())))) is None


# --- the governed version fields: deploys judged by the gates -----------------------------------


def test_creating_an_oci_repository_with_a_tag_deploys_it() -> None:
    assert deploys(oci_repository(tag="v1")) == [Deploy("myapp", OCI_TARGET, "spec.ref.tag", "v1")]


def test_creating_an_oci_repository_without_a_tag_deploys_nothing_bootstrap() -> None:
    assert deploys(oci_repository()) == []
    assert deploys(oci_repository(ref={"tag": ""})) == []


def test_changing_the_tag_deploys_the_new_one() -> None:
    assert write(oci_repository(tag="v2"), oci_repository(tag="v1")).sources == ()
    assert deploys(oci_repository(tag="v2"), oci_repository(tag="v1")) == [
        Deploy("myapp", OCI_TARGET, "spec.ref.tag", "v2")
    ]


def test_the_rollout_controllers_apply_changes_only_the_tag_whatever_else_it_keeps() -> None:
    old = changed(oci_repository(tag="v1"), "spec", "interval", "1m")
    new = changed(changed(old, "spec", "ref", "tag", "v2"), "spec", "interval", "5m")
    assert summary(deploys(new, old)) == [("myapp", "version", "v2")]


def test_removing_the_tag_is_a_version_no_gate_can_vouch_for() -> None:
    [deploy] = deploys(oci_repository(), oci_repository(tag="v1"))
    assert (deploy.change, deploy.version) == ("version", None)
    assert deploy.unverifiable is not None
    assert "latest" in deploy.unverifiable


@pytest.mark.parametrize(
    ("ref", "field"),
    [
        ({"tag": "v1", "digest": "sha256:0123"}, "spec.ref.digest"),
        ({"tag": "v1", "semver": ">=1.0.0"}, "spec.ref.semver"),
        ({"semver": ">=1.0.0", "semverFilter": "^main-"}, "spec.ref.semver"),
    ],
)
def test_digest_or_semver_take_precedence_so_no_tag_can_be_checked(ref: dict[str, str], field: str) -> None:
    [deploy] = deploys(oci_repository(ref=ref), oci_repository(tag="v1"))
    assert (deploy.field, deploy.version) == (field, None)
    assert deploy.unverifiable is not None
    assert "precedence" in deploy.unverifiable


def test_an_unchanged_semver_is_no_change() -> None:
    ref = {"semver": ">=1.0.0"}
    assert deploys(oci_repository(ref=ref), oci_repository(ref=ref)) == []


def test_a_kustomization_deploys_the_substitute_its_annotation_names() -> None:
    assert deploys(kustomization(substitute={"version": "v1"}), sources={WEB: None}) == [
        Deploy("myapp", KS_TARGET, "spec.postBuild.substitute.version", "v1")
    ]
    assert deploys(kustomization(), sources={WEB: None}) == []  # created without the substitute: bootstrap


def test_changing_an_annotated_substitute_deploys_it_without_reading_the_source() -> None:
    rollouts = {"frontend_version": "frontend", "backend_version": "backend"}
    old = kustomization(rollouts=rollouts, substitute={"frontend_version": "f1", "backend_version": "b1"})
    new = with_substitute(old, backend_version="b2")
    assert write(new, old).sources == ()
    assert [(d.rollout, d.field, d.version) for d in deploys(new, old)] == [
        ("backend", "spec.postBuild.substitute.backend_version", "b2")
    ]


def test_substitute_annotations_follow_the_controllers_pattern() -> None:
    dotted = kustomization(rollouts={"app.version": "myapp"}, substitute={"app.version": "v2"})
    assert deploys(dotted, sources={WEB: None}) == []
    empty = kustomization(rollouts={"version": ""}, substitute={"version": "v2"})
    assert deploys(empty, sources={WEB: None}) == []


def test_removing_a_substitute_is_a_version_no_gate_can_vouch_for() -> None:
    old = kustomization(substitute={"version": "v1"})
    [deploy] = deploys(kustomization(substitute={}), old)
    assert (deploy.change, deploy.version) == ("version", None)
    assert deploy.unverifiable is not None
    assert "substituteFrom" in deploy.unverifiable


# --- everything else that decides what runs: unvouched changes ----------------------------------

OCI_CHANGES: dict[str, tuple[tuple[Any, ...], str]] = {
    "url (walk-around 5)": (("spec", "url", "oci://registry.example/myorg/other"), "spec.url"),
    "layerSelector": (("spec", "layerSelector", {"mediaType": "x"}), "spec.layerSelector.mediaType"),
    "ignore": (("spec", "ignore", "*.yaml"), "spec.ignore"),
    "insecure": (("spec", "insecure", True), "spec.insecure"),
    "a field unknown today": (("spec", "mirror", "oci://elsewhere"), "spec.mirror"),
    "an unknown ref field": (("spec", "ref", "commit", "abc"), "spec.ref.commit"),
}


@pytest.mark.parametrize("case", sorted(OCI_CHANGES))
def test_any_other_oci_repository_field_is_an_unvouched_change(case: str) -> None:
    change, field = OCI_CHANGES[case]
    old = oci_repository(tag="v1")
    [deploy] = deploys(changed(old, *change), old)
    assert (deploy.change, deploy.version, deploy.changed) == ("unvouched", "v1", (field,))


KS_CHANGES: dict[str, tuple[tuple[Any, ...], str]] = {
    "sourceRef": (
        ("spec", "sourceRef", "apiVersion", "source.toolkit.fluxcd.io/v1"),
        "spec.sourceRef.apiVersion",
    ),
    "path (walk-around 4)": (("spec", "path", "./other"), "spec.path"),
    "images (walk-around 3)": (("spec", "images", [{"name": "web", "newTag": "v9"}]), "spec.images"),
    "patches": (("spec", "patches", [{"patch": "x"}]), "spec.patches"),
    "components": (("spec", "components", ["../c"]), "spec.components"),
    "substituteFrom (walk-around 7)": (
        ("spec", "postBuild", "substituteFrom", [{"kind": "ConfigMap", "name": "vars"}]),
        "spec.postBuild.substituteFrom",
    ),
    "another substitute": (
        ("spec", "postBuild", "substitute", "region", "eu"),
        "spec.postBuild.substitute.region",
    ),
    "targetNamespace": (("spec", "targetNamespace", "prod"), "spec.targetNamespace"),
    "namePrefix": (("spec", "namePrefix", "x-"), "spec.namePrefix"),
    "nameSuffix": (("spec", "nameSuffix", "-x"), "spec.nameSuffix"),
    "commonMetadata": (("spec", "commonMetadata", {"labels": {"a": "b"}}), "spec.commonMetadata.labels.a"),
    "kubeConfig": (("spec", "kubeConfig", {"secretRef": {"name": "k"}}), "spec.kubeConfig.secretRef.name"),
    "a field unknown today": (("spec", "plugins", ["x"]), "spec.plugins"),
}


@pytest.mark.parametrize("case", sorted(KS_CHANGES))
def test_any_other_kustomization_field_is_an_unvouched_change(case: str) -> None:
    change, field = KS_CHANGES[case]
    old = kustomization(rollouts={}, substitute={"version": "v1"})
    [deploy] = deploys(changed(old, *change), old, sources=SOURCES)
    assert (deploy.rollout, deploy.change, deploy.changed) == ("myapp", "unvouched", (field,))
    assert (deploy.version, deploy.field) == (
        "v1",
        "spec.ref.tag of OCIRepository default/web, its spec.sourceRef",
    )


def test_a_version_field_changed_together_with_another_is_unvouched_for_the_new_tag() -> None:
    old = oci_repository(tag="v1")
    new = changed(changed(old, "spec", "ref", "tag", "v2"), "spec", "url", "oci://elsewhere/x")
    [deploy] = deploys(new, old)
    assert (deploy.change, deploy.version, deploy.changed) == (
        "unvouched",
        "v2",
        ("spec.ref.tag", "spec.url"),
    )


def test_dropping_the_annotation_is_an_unvouched_change_walk_around_1() -> None:
    old = oci_repository(tag="v1")
    [deploy] = deploys(oci_repository(rollout=None, tag="v1"), old)
    assert (deploy.rollout, deploy.change, deploy.version) == ("myapp", "unvouched", "v1")
    assert deploy.changed == ("annotation rollout.kuberik.com/rollout",)
    # dropping it in the same write as a new tag does not escape either
    assert summary(deploys(oci_repository(rollout=None, tag="v2"), old)) == [("myapp", "unvouched", "v2")]


def test_putting_the_annotation_back_is_a_deploy_of_the_tag_it_runs_walk_around_1() -> None:
    bare = oci_repository(rollout=None, tag="unbaked")
    the_write = write(oci_repository(tag="unbaked"), bare)
    assert (the_write.shape, the_write.sources) == ("annotated", ())
    assert deploys(oci_repository(tag="unbaked"), bare) == [
        Deploy("myapp", OCI_TARGET, "spec.ref.tag", "unbaked")
    ]
    assert deploys(oci_repository(), oci_repository(rollout=None)) == []  # no tag: nothing to check
    ks = kustomization(rollouts={}, substitute={"version": "unbaked"})
    annotated = kustomization(substitute={"version": "unbaked"})
    assert summary(deploys(annotated, ks)) == [("myapp", "version", "unbaked")]


def test_annotating_and_changing_in_one_write_is_unvouched() -> None:
    bare = oci_repository(rollout=None, tag="v1")
    new = changed(oci_repository(tag="v1"), "spec", "url", "oci://elsewhere/x")
    assert summary(deploys(new, bare)) == [("myapp", "unvouched", "v1")]


def test_moving_the_object_to_another_rollout_is_unvouched_for_both() -> None:
    old = oci_repository(rollout="myapp", tag="v1")
    new = oci_repository(rollout="other", tag="v1")
    assert summary(deploys(new, old)) == [("myapp", "unvouched", "v1"), ("other", "unvouched", "v1")]


def test_moving_a_substitute_annotation_is_unvouched_for_both_rollouts() -> None:
    old = kustomization(substitute={"version": "v1"})
    new = kustomization(rollouts={"version": "other"}, substitute={"version": "v1"})
    found = deploys(new, old, sources={WEB: None})
    assert summary(found) == [("myapp", "unvouched", "v1"), ("other", "unvouched", "v1")]
    assert found[0].changed == ("annotation rollout.kuberik.com/substitute.version.from",)


def test_a_change_of_an_object_that_runs_no_version_yet_is_judged_like_its_create() -> None:
    """Bootstrap: the rollout controller has not set a tag, Flux pulls what a create would pull too."""
    old = oci_repository()
    assert deploys(changed(old, "spec", "url", "oci://elsewhere/x"), old) == []
    ks = kustomization(rollouts={})
    assert deploys(changed(ks, "spec", "path", "./x"), ks, sources={WEB: prod_source(tag=None)}) == []
    # ... but not when it stops being governed, or starts running a version
    [dropped] = deploys(oci_repository(rollout=None), old)
    assert (dropped.change, dropped.version) == ("unvouched", None)
    assert summary(deploys(oci_repository(tag="v1", rollout="other"), old)) == [
        ("myapp", "unvouched", "v1"),
        ("other", "unvouched", "v1"),
    ]


# --- Kustomizations governed through their source -----------------------------------------------


def test_switching_the_source_to_stagings_is_unvouched_for_prod_walk_around_2() -> None:
    old = KS_SOURCE_ONLY
    new = changed(old, "spec", "sourceRef", "name", "web-staging")
    the_write = write(new, old)
    assert the_write.sources == (WEB, STAGING_SOURCE)
    found = deploys(new, old, sources=SOURCES)
    assert summary(found) == [("myapp", "unvouched", "v9"), ("myapp-staging", "unvouched", "v9")]
    assert found[0].field == "spec.ref.tag of OCIRepository default/web-staging, its spec.sourceRef"


def test_a_source_that_governs_nothing_or_does_not_exist_governs_nothing() -> None:
    new = changed(KS_SOURCE_ONLY, "spec", "path", "./x")
    assert deploys(new, KS_SOURCE_ONLY, sources={WEB: prod_source(rollout_name=None)}) == []
    assert deploys(new, KS_SOURCE_ONLY, sources={WEB: None}) == []


def test_a_source_in_another_namespace_governs_with_the_rollout_of_that_namespace() -> None:
    old = kustomization(rollouts={}, source="app", source_namespace="apps")
    new = changed(old, "spec", "path", "./x")
    key = SourceKey("apps", "app")
    assert write(new, old).sources == (key,)
    [deploy] = deploys(new, old, sources={key: oci_repository("app", "apps", tag="v3")})
    assert (deploy.rollout_label, deploy.rollout_key("default"), deploy.version) == (
        "apps/myapp",
        ("apps", "myapp"),
        "v3",
    )


def test_a_kustomization_governed_by_both_runs_its_substitute_for_the_override() -> None:
    old = kustomization(substitute={"version": "v2"})
    [deploy] = deploys(changed(old, "spec", "path", "./x"), old, sources=SOURCES)
    assert (deploy.rollout, deploy.version, deploy.field) == (
        "myapp",
        "v2",
        "spec.postBuild.substitute.version",
    )


def test_variables_of_one_rollout_naming_different_tags_cannot_be_checked() -> None:
    old = kustomization(rollouts={"a": "myapp", "b": "myapp"}, substitute={"a": "v1", "b": "v2"})
    [deploy] = deploys(changed(old, "spec", "path", "./x"), old, sources={WEB: None})
    assert deploy.version is None
    assert deploy.unverifiable is not None
    assert "different versions" in deploy.unverifiable


def test_creating_a_kustomization_of_a_governed_source_deploys_the_sources_tag() -> None:
    the_write = write(KS_SOURCE_ONLY)
    assert the_write.sources == (WEB,)
    [deploy] = deploys(KS_SOURCE_ONLY, sources=SOURCES)
    assert (deploy.rollout, deploy.change, deploy.version) == ("myapp", "version", "v1")
    assert deploys(KS_SOURCE_ONLY, sources={WEB: prod_source(tag=None)}) == []
    assert deploys(KS_SOURCE_ONLY, sources={WEB: None}) == []


@pytest.mark.parametrize("image", [{"newTag": "v9"}, {"digest": "sha256:0123"}, {"newName": "evil/web"}])
def test_creating_a_kustomization_that_replaces_images_is_unvouched(image: dict[str, str]) -> None:
    ks = changed(KS_SOURCE_ONLY, "spec", "images", [{"name": "web", **image}])
    [deploy] = deploys(ks, sources=SOURCES)
    assert (deploy.change, deploy.version, deploy.changed) == ("unvouched", "v1", ("spec.images",))
    assert deploys(changed(KS_SOURCE_ONLY, "spec", "images", [{"name": "web"}]), sources=SOURCES) != [deploy]


def test_an_unreadable_source_is_bad_input() -> None:
    broken = {**prod_source(), "metadata": {"name": "web", "annotations": ["myapp"]}}
    with pytest.raises(BadEvent, match="OCIRepository default/web"):
        deploys(KS_SOURCE_ONLY, sources={WEB: broken})


# --- deleting a governed object ------------------------------------------------------------------


def test_deleting_a_governed_object_is_a_change_of_what_it_ran_walk_around_6() -> None:
    [deploy] = deploys(None, oci_repository(tag="v1"), operation="DELETE")
    assert (deploy.change, deploy.version, deploy.field) == ("delete", "v1", "spec.ref.tag")
    the_write = write(None, KS_SOURCE_ONLY, operation="DELETE")
    assert (the_write.shape, the_write.sources) == ("delete", (WEB,))
    assert summary(deploys(None, KS_SOURCE_ONLY, operation="DELETE", sources=SOURCES)) == [
        ("myapp", "delete", "v1")
    ]


def test_deleting_again_what_is_already_being_deleted_changes_nothing() -> None:
    going = changed(oci_repository(tag="v1"), "metadata", "deletionTimestamp", "2026-05-15T10:00:00Z")
    assert write(None, going, operation="DELETE").shape == "unchanged"


# --- unreadable objects --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "obj",
    [
        {**oci_repository(), "spec": {"ref": "v1"}},
        {**oci_repository(), "spec": {"ref": {"tag": 7}}},
        {**oci_repository(), "metadata": {"name": "web", "annotations": {"rollout.kuberik.com/rollout": 1}}},
        {**kustomization(), "spec": {"postBuild": {"substitute": ["v1"]}}},
        {**kustomization(), "spec": {"sourceRef": "web"}},
        {**kustomization(), "spec": {"images": {"name": "web"}}},
        {**kustomization(), "spec": {"images": [{"name": "web", "newTag": 9}]}},
    ],
    ids=[
        "ref not an object",
        "tag not a string",
        "annotation not a string",
        "substitute not a map",
        "sourceRef not an object",
        "images not a list",
        "newTag not a string",
    ],
)
def test_an_unreadable_object_is_bad_input(obj: dict[str, Any]) -> None:
    with pytest.raises(BadEvent):
        deploys(obj, sources={WEB: None})


# --- what the guard says about unvouched changes and deletes ------------------------------------

KEY = ("default", "myapp")
PROD = environment_raw("prod")
STAGING = environment_raw("staging", uid=OLD_ENV_UID, relationship=None)
URL_CHANGE = Deploy("myapp", OCI_TARGET, "spec.ref.tag", "v1", change="unvouched", changed=("spec.url",))
DELETE = Deploy("myapp", OCI_TARGET, "spec.ref.tag", "v1", change="delete")


def decide(
    changes: list[Deploy],
    environments: list[dict[str, Any]],
    *,
    gates: list[RolloutGate] | None = None,
    overrides: dict[str, str] | None = None,
    opted: bool = True,
) -> Decision:
    """The shell's sequence on in-memory state: governance, judge, overrides, answer."""
    governed = {(KEY[0], r): g for r, g in governance(environments, {d.rollout for d in changes}).items()}
    needed = needs(changes, governed, "default")
    findings = [judge(d, governed[d.rollout_key("default")], gates or [], opted) for d in changes]
    the_rollout = RolloutOverrides.from_raw(rollout(**(overrides or {})))
    refused = refused_rollouts(findings, "default")
    if needed.gates:
        assert gates is not None, "the gates decide, so the shell reads them"
    return guard_decision(findings, dict.fromkeys(refused, the_rollout), "default", "alice")


def test_an_unvouched_change_of_a_rollout_with_a_relationship_is_refused_in_one_sentence() -> None:
    decision = decide([URL_CHANGE], [PROD], gates=[gate(allowed=["v1"])])
    assert not decision.allowed
    assert decision.message == (
        "OCIRepository default/web may not change spec.url for Rollout myapp: Environment prod follows "
        "staging, and its RolloutGate vouches only for the tag the rollout controller writes, not for "
        "changes to what that tag makes run; to make this change anyway set spec.wantedVersion, or the "
        "annotation rollout.kuberik.com/force-deploy or rollout.kuberik.com/bypass-gates, on Rollout myapp "
        "to v1, the tag it would run (spec.ref.tag)"
    )


def test_gates_are_not_read_for_an_unvouched_change() -> None:
    governed = {KEY: governance([PROD], {"myapp"})["myapp"]}
    assert needs([URL_CHANGE, DELETE], governed, "default").gates == ()


@pytest.mark.parametrize("override", ["wanted_version", "force_deploy", "bypass_gates"])
def test_an_override_naming_the_tag_it_would_run_lets_the_change_through_with_an_event(override: str) -> None:
    decision = decide([URL_CHANGE], [PROD], overrides={override: "v1"})
    assert decision.allowed
    assert "changed spec.url for Rollout myapp by human override" in decision.warnings[0]
    [event] = decision.events
    assert (event.kind, event.name, event.namespace, event.reason) == (
        "Rollout",
        "myapp",
        "default",
        "DeployOverride",
    )
    assert "changed spec.url (it runs v1) (alice)" in event.message
    assert not decide([URL_CHANGE], [PROD], overrides={override: "v2"}).allowed


def test_an_unvouched_change_is_allowed_where_nothing_with_a_relationship_governs() -> None:
    assert decide([URL_CHANGE], [STAGING]).allowed
    assert decide([URL_CHANGE], [], opted=False).allowed
    lonely = decide([URL_CHANGE], [], opted=True)
    assert not lonely.allowed
    assert "no Environment governs Rollout myapp yet" in lonely.message


def test_an_unvouched_change_is_refused_when_an_environment_cannot_be_read() -> None:
    broken = {**PROD, "spec": {"rolloutRef": {"name": "myapp"}, "relationship": {"type": "X"}}}
    assert not decide([URL_CHANGE], [broken]).allowed


def test_an_unvouched_change_of_something_that_runs_no_tag_cannot_be_overridden() -> None:
    no_tag = Deploy("myapp", OCI_TARGET, "no version", None, change="unvouched", changed=("spec.url",))
    decision = decide([no_tag], [PROD], overrides={"wanted_version": "v1"})
    assert not decision.allowed
    assert "it runs no tag, so no override can name one" in decision.message
    assert "to make this change anyway" not in decision.message


def test_deleting_a_governed_object_is_refused_unless_decommissioning_or_overridden() -> None:
    refused = decide([DELETE], [PROD])
    assert not refused.allowed
    assert refused.message.startswith(
        "OCIRepository default/web may not be deleted while it deploys Rollout myapp "
        "(it runs v1 (spec.ref.tag))"
    )
    assert "or delete the Rollout's Environments first (decommissioning)" in refused.message
    overridden = decide([DELETE], [PROD], overrides={"force_deploy": "v1"})
    assert overridden.allowed
    assert "was deleted (it ran v1) (alice) by human override" in overridden.events[0].message
    # decommissioning: no Environment (whatever the label), or only ones without a relationship
    assert decide([DELETE], [], opted=True).allowed
    assert decide([DELETE], [STAGING]).allowed
    governed = {KEY: governance([], {"myapp"})["myapp"]}
    assert needs([DELETE], governed, "default").namespace is False


# --- the whole way: no UPDATE changes what a governed Rollout runs unvouched ---------------------

_urls = st.sampled_from(["oci://r/app", "oci://r/other"])
_tags = st.sampled_from([None, "baked", "unbaked"])
_rollouts = st.sampled_from([None, "myapp"])
_intervals = st.sampled_from(["1m", "5m"])


def _oci(rollout_name: str | None, tag: str | None, url: str, interval: str) -> dict[str, Any]:
    obj = oci_repository(rollout=rollout_name, tag=tag)
    obj["spec"].update(url=url, interval=interval)
    return obj


@given(
    old=st.tuples(_rollouts, _tags, _urls, _intervals),
    new=st.tuples(_rollouts, _tags, _urls, _intervals),
    override=st.sampled_from([None, "baked", "unbaked"]),
)
def test_an_update_of_a_governed_oci_repository_runs_only_what_a_gate_or_an_override_vouches_for(
    old: tuple[Any, ...], new: tuple[Any, ...], override: str | None
) -> None:
    """prod (`After staging`) allows only `baked`. Whatever an UPDATE changes, it is allowed exactly when
    what runs for myapp did not change (or nothing is named before or after), or it is `baked` reached
    through the version field alone (or by annotating an object already running it), or a human override
    names exactly what now runs, which then leaves an Event."""
    old_rollout, old_tag, old_url, _ = old
    new_rollout, new_tag, new_url, _ = new
    found = deploys(_oci(*new), _oci(*old))
    decision = decide(
        found,
        [PROD],
        gates=[gate(allowed=["baked"])],
        overrides={"wanted_version": override} if override else {},
    )
    same_place = old_url == new_url
    unchanged = (old_tag, old_rollout) == (new_tag, new_rollout) and same_place
    runs_nothing = old_tag is None and new_tag is None and old_rollout == new_rollout
    bootstrap = old_rollout is None and old_tag is None and new_tag is None and same_place
    through_gate = (
        new_tag == "baked"
        and same_place
        and new_rollout == "myapp"
        and (old_rollout == "myapp" or old_tag == new_tag)
    )
    if "myapp" not in (old_rollout, new_rollout):
        assert (decision.allowed, found) == (True, [])
    elif unchanged or runs_nothing or bootstrap:
        assert decision.allowed
        assert not decision.events
    elif through_gate:
        assert decision.allowed
    elif override is not None and override == new_tag:
        assert decision.allowed
        assert decision.events
    else:
        assert not decision.allowed


def test_small_answers_and_edges() -> None:
    assert namespace_terminating("myapp").allowed
    old = changed(oci_repository(tag="v1"), "spec", "ignore", "*.md")
    assert write(changed(old, "spec", "ignore", {"paths": ["*.md"]}), old).changed == ("spec.ignore",)
    with pytest.raises(BadEvent, match="must map strings to strings"):
        write(changed(oci_repository(), "metadata", "annotations", {ROLLOUT_ANNOTATION: 1}))
    notice = EventNotice(None, "v1", "Namespace", "myapp", None, "GuardRemoved", "m")
    assert (notice.about, replace(notice, namespace="ns").about) == ("Namespace myapp", "Namespace ns/myapp")
