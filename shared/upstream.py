"""Where an Environment's bake results live on GitHub, and the key that names that place.

kuberik records the bake of environment `E` of deployment `N` under the GitHub environment
`kuberik/N/E` of the repository in `spec.backend.project`. The allowed set of a gate is only
meaningful for the upstream it was computed from, so that upstream is named by one key: when an
Environment's relationship, deployment name or project changes, the key changes and whatever was
allowed for the old key is withdrawn at once.
"""

from __future__ import annotations

from shared.views import Environment


def deployment_name(env: Environment) -> str:
    """The GitHub deployment name: `spec.name` with the `kuberik/` prefix the controller adds."""
    name = env.deployment_name or env.name
    return name if name.startswith("kuberik/") else f"kuberik/{name}"


def github_environment(env: Environment, environment: str) -> str:
    """The GitHub environment kuberik records a bake of `environment` under: `kuberik/<name>/<env>`."""
    return f"{deployment_name(env)}/{environment}"


def upstream_key(env: Environment) -> str | None:
    """`<project> <github environment> <type>` for an Environment with a relationship, else None.

    The project is lower-cased (GitHub repository names are case-insensitive); everything else is
    compared as written, since GitHub environment names are matched exactly.
    """
    rel = env.relationship
    if rel is None:
        return None
    return f"{(env.project or '').lower()} {github_environment(env, rel.environment)} {rel.type}"
