"""GitHub Actions jobs that wait for the same bake as the RolloutGates: a custom deployment protection rule.

A repository admin enables stagegate's GitHub App as a protection rule on an environment (say
`production`); every workflow job that deploys there then waits until the App approves or rejects it.
`PROTECTION_RULES` says which bake each such environment waits for (`ProtectionRules`), and `decide`
judges a job's commit from that bake's records, read as the gates read them (`shared.bake`), by the
same trusted creators (`shared.trust`, applied by the reader):

- **approved** when the newest build of the job's commit recorded in the upstream environment
  baked successfully;
- **rejected** when that newest build's bake failed, with the reason: the job fails at once rather
  than waiting 30 days for a bake that already said no;
- **waiting** otherwise (nothing recorded yet, still baking, cancelled, ambiguous): the job stays held
  and is answered when the bake result arrives.

A job is judged on its commit: the deployment GitHub makes for a workflow job carries no version (a
workflow's `environment:` sets only a name and a URL), so no job names a build. "Newest build" is
ordered by GitHub's deployment ids (its own sequence), not by anyone's clock; a rebuild of the commit
is a new build and decides once recorded. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from shared.bake import (
    FAILED_STATES,
    CommitLookup,
    ReleaseCandidate,
    VersionResult,
    bake_result,
    counts_for,
    describe_result,
    is_justified,
    version_result,
)
from shared.errors import BadEvent
from shared.github_delivery import BakeTarget, kuberik_target

Verdict = Literal["approved", "rejected", "waiting"]
MAX_COMMENT = 1024
"""GitHub's limit on a protection rule comment or status report (characters, Markdown)."""
_CALLBACK = re.compile(r"/repos/([^/]+)/([^/]+)/actions/runs/(\d+)/deployment_protection_rule")
_SHA = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True, slots=True)
class ProtectionRule:
    """One GitHub environment of one repository, and the kuberik bake its jobs wait for."""

    repository: str
    """`owner/repo`, lower case (GitHub's names are case-insensitive)."""
    environment: str
    """The GitHub environment the rule is enabled on, as written."""
    upstream: BakeTarget

    @property
    def upstream_environment(self) -> str:
        """The GitHub environment the bakes are recorded in: `kuberik/<name>/<environment>`."""
        return f"kuberik/{self.upstream.name}/{self.upstream.environment}"

    def governs(self, repository: str, environment: str) -> bool:
        """Whether jobs deploying to `environment` of `repository` wait on this rule."""
        return self.repository == repository.lower() and self.environment.casefold() == environment.casefold()

    def __str__(self) -> str:
        return f"{self.repository}:{self.environment}={self.upstream_environment}"


@dataclass(frozen=True, slots=True)
class ProtectionRules:
    """`PROTECTION_RULES`: one rule per line (or `;`), `owner/repo:environment=kuberik/name/upstream`."""

    rules: tuple[ProtectionRule, ...] = ()

    @classmethod
    def parse(cls, text: str) -> ProtectionRules:
        """Read every rule; raise `ValueError` naming the first bad one (the function then does not start)."""
        rules: list[ProtectionRule] = []
        for entry in (e.strip() for e in text.replace(";", "\n").splitlines()):
            if not entry or entry.startswith("#"):
                continue
            rule = _rule(entry)
            if any(r.governs(rule.repository, rule.environment) for r in rules):
                raise ValueError(
                    f"{entry!r}: environment {rule.environment!r} of {rule.repository} has two rules"
                )
            rules.append(rule)
        return cls(tuple(rules))

    def __bool__(self) -> bool:
        return bool(self.rules)

    def rule_for(self, repository: str, environment: str) -> ProtectionRule | None:
        """The rule of a GitHub environment, if `PROTECTION_RULES` names it."""
        return next((r for r in self.rules if r.governs(repository, environment)), None)

    def waiting_on(self, repository: str, upstream: BakeTarget) -> tuple[ProtectionRule, ...]:
        """The rules whose jobs wait for bakes recorded in `upstream` of `repository`."""
        return tuple(r for r in self.rules if r.repository == repository.lower() and r.upstream == upstream)

    def repositories(self) -> tuple[str, ...]:
        """Every repository a rule names, once, sorted."""
        return tuple(sorted({r.repository for r in self.rules}))


def _rule(entry: str) -> ProtectionRule:
    repository, colon, rest = entry.partition(":")
    environment, equals, upstream = rest.rpartition("=")
    owner, slash, name = repository.strip().partition("/")
    target = kuberik_target(upstream.strip())
    if not colon or not equals or not owner or not slash or not name or "/" in name or "*" in repository:
        raise ValueError(f"{entry!r} is not owner/repo:environment=kuberik/name/environment")
    if not environment.strip():
        raise ValueError(f"{entry!r} names no GitHub environment")
    if target is None:
        raise ValueError(f"{entry!r}: {upstream.strip()!r} is not a kuberik/<name>/<environment> bake record")
    return ProtectionRule(repository.strip().lower(), environment.strip(), target)


@dataclass(frozen=True, slots=True)
class ProtectionRequest:
    """The fields of a `deployment_protection_rule` `requested` delivery a decision needs."""

    repository: str
    environment: str
    run_id: int
    sha: str
    deployment_id: int | None

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ProtectionRequest:
        """Read strictly; raise `BadEvent` naming what is missing or wrong.

        The run id comes from `deployment_callback_url`, whose path must name the payload's own
        repository: stagegate answers on its own API base, never at a URL the payload chose.
        """
        repository = _object(payload, "repository").get("full_name")
        environment = payload.get("environment")
        deployment = _object(payload, "deployment")
        sha = deployment.get("sha")
        if not isinstance(repository, str) or "/" not in repository:
            raise BadEvent("payload.repository.full_name is required and must be owner/repo")
        if not isinstance(environment, str) or not environment:
            raise BadEvent("payload.environment is required and must be a non-empty string")
        if not isinstance(sha, str) or not _SHA.fullmatch(sha.lower()):
            raise BadEvent("payload.deployment.sha is required and must be a 40-digit commit id")
        deployment_id = deployment.get("id")
        return cls(
            repository=repository,
            environment=environment,
            run_id=_run_id(payload.get("deployment_callback_url"), repository),
            sha=sha.lower(),
            deployment_id=deployment_id if isinstance(deployment_id, int) else None,
        )


def _object(parent: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = parent.get(key)
    if not isinstance(value, Mapping):
        raise BadEvent(f"payload.{key} is required and must be an object")
    return value


def _run_id(url: object, repository: str) -> int:
    path = unquote(urlsplit(url).path) if isinstance(url, str) else ""
    found = _CALLBACK.search(path)
    if found is None or not path.endswith(found.group(0)):
        raise BadEvent(
            "payload.deployment_callback_url is not a workflow run's deployment_protection_rule URL"
        )
    if f"{found.group(1)}/{found.group(2)}".lower() != repository.lower():
        raise BadEvent("payload.deployment_callback_url names another repository than payload.repository")
    return int(found.group(3))


@dataclass(frozen=True, slots=True)
class Decision:
    """What stagegate answers a held job, and why (GitHub shows `comment` on the run)."""

    verdict: Verdict
    comment: str

    def body(self, environment: str) -> dict[str, str]:
        """The `POST .../deployment_protection_rule` body: a review, or (waiting) a status report."""
        body = {"environment_name": environment, "comment": self.comment[:MAX_COMMENT]}
        return body if self.verdict == "waiting" else {**body, "state": self.verdict}


def unconfigured(repository: str, environment: str) -> Decision:
    """A job held by stagegate's rule on an environment `PROTECTION_RULES` does not name.

    Rejected, not approved: the rule was enabled on purpose, and approving would let a typo in the
    configuration deploy what no bake vouched for (the incident this project exists for). The job fails
    at once with the fix in its comment, instead of passing unchecked or waiting 30 days.
    """
    return Decision(
        "rejected",
        f"stagegate has no rule for environment `{environment}` of {repository}: add "
        f"`{repository.lower()}:{environment}=kuberik/<name>/<environment>` to PROTECTION_RULES, or remove "
        "stagegate's protection rule from this environment.",
    )


def decide(rule: ProtectionRule, sha: str, lookup: CommitLookup) -> Decision:
    """Judge a job's commit from the upstream's trusted bake records."""
    where = rule.upstream_environment
    short = sha[:7]
    if lookup.oid is None:
        return Decision("waiting", f"Waiting for {where}: GitHub knows no commit {short} yet.")
    builds = _builds(sha, lookup)
    if not builds:
        return Decision("waiting", f"Waiting for {where} to bake {short}: no bake of it recorded yet.")
    result = max(builds, key=lambda r: _recorded_last(r, lookup))
    tag = result.candidate.tag
    said = describe_result(result)
    if is_justified("After", result):
        return Decision("approved", f"{where} baked {short} as {tag}: {said}.")
    if result.result in FAILED_STATES:
        reason = _reason(result, lookup)
        return Decision(
            "rejected", f"The newest bake of {short} in {where} ({tag}) did not succeed: {said}{reason}."
        )
    return Decision("waiting", f"Waiting for {where} to finish baking {short} as {tag}: {said}.")


def _builds(sha: str, lookup: CommitLookup) -> list[VersionResult]:
    """One result per build of the commit recorded by kuberik (a tag and a history entry id)."""
    oid = lookup.oid or ""
    tags = {d.payload_tag for d in lookup.deployments if counts_for(sha, oid, d) and d.entry is not None}
    return [version_result(ReleaseCandidate(tag, sha), lookup) for tag in sorted(t for t in tags if t)]


def _recorded_last(result: VersionResult, lookup: CommitLookup) -> int:
    """GitHub's id of the build's latest record: its own sequence, no clock involved."""
    tag = result.candidate.tag
    return max(
        d.id
        for d in lookup.deployments
        if d.payload_tag == tag and d.sha.lower() == (lookup.oid or "").lower()
    )


def _reason(result: VersionResult, lookup: CommitLookup) -> str:
    """What the deciding status said after kuberik's prefix (`Bake failed: <message>`), if anything."""
    if result.position is None:
        return ""
    _, at, deployment_id = result.position
    said = [
        s.description
        for d in lookup.deployments
        if d.id == deployment_id
        for s in d.statuses
        if s.created_at == at and bake_result(s) and s.description and ":" in s.description
    ]
    return f" ({said[0].split(':', 1)[1].strip()})" if said else ""
