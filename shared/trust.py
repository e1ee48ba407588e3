"""Whose bake results count, and which repositories an Environment may point stagegate's credentials at.

Anyone with write access to a repository, and any workflow with `deployments: write`, can create a
deployment and a `success` status in `kuberik/<name>/staging`. Were those believed, anyone could open
prod. So only deployments and statuses created by trusted identities count (by default the identity of
stagegate's own GitHub credentials, which the reporter writes with); the rest are dropped before any
decision, and said so in the log. Dropping can only remove evidence, so it can only narrow a gate.

Likewise `spec.backend.project` is chosen by whoever writes the Environment; an allowlist of
repositories (optionally per namespace) keeps one team's Environment from reading another's history
with stagegate's token. Pure: no I/O.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, replace

from shared.bake import CommitLookup, DeploymentRecord


def _login(login: str | None) -> str:
    """GitHub logins are case-insensitive."""
    return (login or "").lower()


@dataclass(frozen=True, slots=True)
class Dropped:
    """What was left out of an answer because its creator is not trusted, for the log."""

    about: str
    """The revision (or environment) whose records it was among."""
    what: str
    creator: str


def trusted_records(
    deployments: Iterable[DeploymentRecord], creators: frozenset[str], about: str = ""
) -> tuple[tuple[DeploymentRecord, ...], list[Dropped]]:
    """Only the deployments and statuses that trusted identities created, and what was left out."""
    trusted = {_login(c) for c in creators}
    dropped: list[Dropped] = []
    kept: list[DeploymentRecord] = []
    for deployment in deployments:
        if _login(deployment.creator) not in trusted:
            dropped.append(Dropped(about, f"deployment {deployment.id}", deployment.creator or "unknown"))
            continue
        statuses = tuple(s for s in deployment.statuses if _login(s.creator) in trusted)
        dropped += [
            Dropped(about, f"a {s.state} status of deployment {deployment.id}", s.creator or "unknown")
            for s in deployment.statuses
            if _login(s.creator) not in trusted
        ]
        kept.append(replace(deployment, statuses=statuses))
    return tuple(kept), dropped


def trusted_lookup(lookup: CommitLookup, creators: frozenset[str]) -> tuple[CommitLookup, list[Dropped]]:
    """The lookup with only the deployments and statuses that trusted identities created."""
    kept, dropped = trusted_records(lookup.deployments, creators, lookup.revision)
    return replace(lookup, deployments=kept), dropped


@dataclass(frozen=True, slots=True)
class RepositoryPolicy:
    """Which repositories Environments may name: `owner/repo` patterns (`*` allowed), optionally per
    namespace. No rules at all means any repository (the setting was left unset)."""

    rules: tuple[tuple[str | None, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> RepositoryPolicy:
        """`myorg/*, team-a=myorg/app-a`: comma- or whitespace-separated; `namespace=pattern` limits a rule.

        Raises `ValueError` naming the bad entry.
        """
        rules: list[tuple[str | None, str]] = []
        for entry in text.replace(",", " ").split():
            namespace, sep, pattern = entry.rpartition("=")
            owner, slash, name = pattern.partition("/")
            if not owner or not slash or not name or "/" in name or (sep and not namespace):
                raise ValueError(
                    f"{entry!r} is not owner/repo or namespace=owner/repo (`*` may stand for a part)"
                )
            rules.append((namespace or None, pattern.lower()))
        return cls(tuple(rules))

    def refusal(self, namespace: str, repository: str) -> str | None:
        """Why an Environment in `namespace` may not read `repository`, or None when it may."""
        if not self.rules:
            return None
        wanted = repository.lower()
        if any((ns is None or ns == namespace) and fnmatch.fnmatchcase(wanted, p) for ns, p in self.rules):
            return None
        return (
            f"repository {repository} is not in GITHUB_REPOSITORIES for namespace {namespace}: "
            "stagegate does not read its bake results"
        )
