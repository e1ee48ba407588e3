"""Where an Environment's bake results live on GitHub, and the key that names that place.

kuberik records the bake of environment `E` of deployment `N` under the GitHub environment
`kuberik/N/E` of the repository in `spec.backend.project`. The allowed set of a gate is only
meaningful for the upstream it was computed from, so that upstream is named by one key: when an
Environment's relationship, deployment name or project changes, the key changes and whatever was
allowed for the old key is withdrawn at once.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

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


UNKNOWN_UPSTREAM_REASON = "UnknownUpstream"
"""The reason of the Warning Event on an Environment whose upstream no Environment here is."""


@dataclass(frozen=True, slots=True)
class UnknownUpstream:
    """An Environment's relationship names an environment no Environment of its deployment is."""

    named: str
    """What the relationship names."""
    known: tuple[str, ...]
    """The environments the same deployment name has (in what was looked at)."""
    likely: str | None
    """The one it most likely means (a close spelling), if any."""

    def sentence(self, env: Environment, *, github: bool) -> str:
        """What to tell the Environment's owner; `github` when GitHub was asked and holds no record either."""
        where = f"GitHub holds no record in {github_environment(env, self.named)} and " if github else ""
        others = ", ".join(self.known) or "none"
        guess = f"; did you mean {self.likely!r}?" if self.likely else ""
        return (
            f"Environment {env.name} follows {self.named!r}, but {where}no Environment of deployment "
            f"{deployment_name(env)} here is {self.named!r} (known: {others}){guess} Its gate allows "
            "nothing until a version bakes there."
        )


def unknown_upstream(env: Environment, others: Iterable[Environment]) -> UnknownUpstream | None:
    """None when an Environment of the same deployment name and project is the one the relationship
    names (or there is no relationship); else what is known and the likely intended name."""
    rel = env.relationship
    if rel is None:
        return None
    known = sorted(
        {
            other.environment
            for other in others
            if other.uid != env.uid
            and other.environment
            and deployment_name(other) == deployment_name(env)
            and (other.project or "").lower() == (env.project or "").lower()
        }
    )
    if rel.environment in known:
        return None
    likely = difflib.get_close_matches(rel.environment, known, n=1, cutoff=0.6)
    return UnknownUpstream(rel.environment, tuple(known), likely[0] if likely else None)
