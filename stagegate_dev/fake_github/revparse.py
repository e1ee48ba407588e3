"""`Repository.object(expression:)` resolved as `git rev-parse` resolves a revision.

GitHub's schema only says the expression is "a Git revision expression suitable for rev-parse"; what
that means is git's (the `gitrevisions` manual, "Specifying revisions"): a full object name, then a
ref name (`<name>`, `refs/tags/<name>`, `refs/heads/<name>`, `HEAD` for the default branch), and only
then a leading substring of an object name that is unique in the repository, at least 4 hex digits.
An abbreviation two commits share is ambiguous, and GitHub answers `null` for it as for an unknown
name: no error. Ancestry (`main~1`, `sha^`) and ranges are not modelled; they resolve to nothing.

The fake has no object database: a repository's commits are the shas of its deployments and the
targets of its refs. Nothing here touches state; it takes what is known and returns a sha or None.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

MIN_ABBREV = 4
FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
_HEX = re.compile(r"^[0-9a-f]+$")
_REF_PREFIXES = ("refs/heads/", "refs/tags/")


def full_sha(oid: str, commits: Collection[str]) -> str | None:
    """`oid` (any letter case) if it is a full sha of a known commit."""
    wanted = oid.lower()
    return wanted if FULL_SHA.match(wanted) and wanted in commits else None


def rev_parse(
    expression: str, *, refs: Mapping[str, str], commits: Collection[str], default_branch: str
) -> str | None:
    """The sha `expression` names among `commits` and `refs`, or None (unknown or ambiguous)."""
    found = full_sha(expression, commits)
    if found is not None:
        return found
    by_ref = _ref_target(expression, refs, default_branch)
    if by_ref is not None:
        return by_ref
    abbreviation = expression.lower()
    if len(abbreviation) < MIN_ABBREV or not _HEX.match(abbreviation):
        return None
    matches = {sha for sha in commits if sha.startswith(abbreviation)}
    return matches.pop() if len(matches) == 1 else None


def _ref_target(expression: str, refs: Mapping[str, str], default_branch: str) -> str | None:
    """The target of the ref `expression` names, refs stored with or without their `refs/` prefix."""
    short = {_short(name): sha for name, sha in refs.items()}
    if expression == "HEAD":
        return short.get(default_branch)
    return short.get(_short(expression))


def _short(name: str) -> str:
    for prefix in _REF_PREFIXES:
        if name.startswith(prefix):
            return name.removeprefix(prefix)
    return name
