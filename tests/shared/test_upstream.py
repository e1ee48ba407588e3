"""Unit and property tests of shared/upstream.py: where an Environment's upstream bakes are recorded on
GitHub, and the key that names that place (a gate's allowed list is only good for the key it was
computed for)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.upstream import (
    UnknownUpstream,
    deployment_name,
    github_environment,
    unknown_upstream,
    upstream_key,
)
from shared.views import Environment
from tests.shared.builders import environment, environment_raw


def env_with(
    *,
    name: Any = "myapp",
    project: Any = "myorg/myapp",
    relationship: tuple[str, str] | None = ("After", "staging"),
    env_name: str = "prod",
) -> Environment:
    """The `prod` fixture with `spec.name` and `spec.backend.project` replaced (None: left out)."""
    raw = environment_raw(env_name, relationship=relationship)
    if name is None:
        del raw["spec"]["name"]
    else:
        raw["spec"]["name"] = name
    if project is None:
        del raw["spec"]["backend"]["project"]
    else:
        raw["spec"]["backend"]["project"] = project
    return Environment.from_raw(raw)


# deployment_name / github_environment


def test_github_environment_is_kuberik_name_and_environment() -> None:
    assert deployment_name(environment()) == "kuberik/myapp"
    assert github_environment(environment(), "staging") == "kuberik/myapp/staging"


def test_kuberik_prefix_is_added_only_once() -> None:
    env = env_with(name="kuberik/myapp")
    assert deployment_name(env) == "kuberik/myapp"
    assert github_environment(env, "staging") == "kuberik/myapp/staging"


@pytest.mark.parametrize("name", [None, ""])
def test_deployment_name_falls_back_to_the_environment_name(name: str | None) -> None:
    assert github_environment(env_with(name=name), "staging") == "kuberik/prod/staging"


def test_github_environment_names_the_environment_it_is_given() -> None:
    assert github_environment(environment(), "eu-staging") == "kuberik/myapp/eu-staging"


# upstream_key


def test_upstream_key_names_project_github_environment_and_relationship_type() -> None:
    assert upstream_key(environment()) == "myorg/myapp kuberik/myapp/staging After"
    assert (
        upstream_key(environment(relationship=("Parallel", "qa"))) == "myorg/myapp kuberik/myapp/qa Parallel"
    )


def test_environment_without_a_relationship_has_no_upstream_key() -> None:
    assert upstream_key(environment(relationship=None)) is None


def test_project_letter_case_does_not_change_the_upstream_key() -> None:
    assert upstream_key(env_with(project="MyOrg/MyApp")) == upstream_key(environment())


def test_kuberik_prefix_written_out_in_spec_name_does_not_change_the_upstream_key() -> None:
    assert upstream_key(env_with(name="kuberik/myapp")) == upstream_key(environment())


def test_environment_without_a_project_still_has_an_upstream_key() -> None:
    assert upstream_key(env_with(project=None)) == " kuberik/myapp/staging After"


CHANGES = {
    "relationship type": {"relationship": ("Parallel", "staging")},
    "relationship environment": {"relationship": ("After", "qa")},
    "relationship environment letter case": {"relationship": ("After", "Staging")},
    "spec.name": {"name": "myapp-v2"},
    "spec.name letter case": {"name": "MyApp"},
    "spec.name left out": {"name": None},
    "backend.project": {"project": "myorg/other"},
    "backend.project left out": {"project": None},
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_any_change_of_where_the_upstream_bakes_are_recorded_changes_the_key(change: dict[str, Any]) -> None:
    assert upstream_key(env_with(**change)) != upstream_key(environment())


@pytest.mark.parametrize("change", [{"env_name": "prod-eu"}, {}])
def test_the_environments_own_name_does_not_matter_while_spec_name_is_set(change: dict[str, Any]) -> None:
    assert upstream_key(env_with(**change)) == upstream_key(environment())


# What GitHub names allow: no spaces, so the key's three parts cannot run into each other.
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,8}", fullmatch=True)
projects = st.builds(lambda owner, repo: f"{owner}/{repo}", names, names)
relationships = st.tuples(st.sampled_from(["After", "Parallel"]), names)


@settings(max_examples=300, deadline=None)
@given(
    first=st.tuples(projects, names, relationships),
    second=st.tuples(projects, names, relationships),
)
def test_two_environments_share_an_upstream_key_exactly_when_they_read_the_same_upstream(
    first: tuple[str, str, tuple[str, str]], second: tuple[str, str, tuple[str, str]]
) -> None:
    def read_from(parts: tuple[str, str, tuple[str, str]]) -> tuple[str, str, str, str]:
        project, name, (kind, upstream) = parts
        return project.lower(), name, upstream, kind

    keys = [
        upstream_key(env_with(project=project, name=name, relationship=rel))
        for project, name, rel in (first, second)
    ]
    assert (keys[0] == keys[1]) == (read_from(first) == read_from(second))


# unknown_upstream: a relationship naming an environment no Environment of the deployment is


def named(env_name: str, *, relationship: tuple[str, str] | None = None, **kwargs: Any) -> Environment:
    """An Environment `env_name` (its `spec.environment` too) of deployment `myapp` in `myorg/myapp`."""
    raw = environment_raw(env_name, relationship=relationship, uid=f"uid-{env_name}")
    raw["spec"]["environment"] = env_name
    for key, value in kwargs.items():
        raw["spec"][key] = value
    return Environment.from_raw(raw)


STAGING, QA = named("staging"), named("qa")


def test_an_upstream_some_environment_of_the_deployment_is_is_known() -> None:
    prod = named("prod", relationship=("After", "staging"))
    assert unknown_upstream(prod, [STAGING, QA, prod]) is None


def test_a_misspelt_upstream_is_unknown_and_the_likely_one_is_named() -> None:
    prod = named("prod", relationship=("After", "stagign"))
    found = unknown_upstream(prod, [STAGING, QA, prod])
    assert found == UnknownUpstream("stagign", ("qa", "staging"), "staging")
    assert found is not None
    said = found.sentence(prod, github=True)
    assert "Environment prod follows 'stagign'" in said
    assert "GitHub holds no record in kuberik/myapp/stagign" in said
    assert "did you mean 'staging'?" in said
    assert "GitHub" not in found.sentence(prod, github=False)


def test_an_upstream_with_no_close_name_is_unknown_without_a_guess() -> None:
    prod = named("prod", relationship=("After", "eu-west-canary"))
    found = unknown_upstream(prod, [STAGING, prod])
    assert found is not None
    assert found.likely is None
    assert "did you mean" not in found.sentence(prod, github=False)


@pytest.mark.parametrize(
    "other",
    [
        named("staging", name="otherapp"),
        named("staging", backend={"type": "github", "project": "myorg/other"}),
    ],
    ids=["another deployment name", "another project"],
)
def test_environments_of_another_deployment_do_not_make_an_upstream_known(other: Environment) -> None:
    prod = named("prod", relationship=("After", "staging"))
    found = unknown_upstream(prod, [other])
    assert found is not None
    assert found.known == ()


def test_an_environment_does_not_make_its_own_upstream_known() -> None:
    loop = named("staging", relationship=("After", "staging"))
    assert unknown_upstream(loop, [loop]) == UnknownUpstream("staging", (), None)


def test_an_environment_without_relationship_has_no_unknown_upstream() -> None:
    assert unknown_upstream(STAGING, []) is None
