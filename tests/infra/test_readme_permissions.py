"""The README states the functions' Kubernetes permissions in two places; both must say exactly what
`infra/k8s/rbac.yaml` grants (the README is written from it, this test keeps them one list)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
NAMES = {
    "rolloutgates": "RolloutGates",
    "environments": "Environments",
    "rollouts": "Rollouts",
    "events": "Events",
    "leases": "Leases",
}


def granted() -> str:
    """The ClusterRole's rules as the README words them: `Kind verb/verb, ...` in the file's order."""
    role = next(
        doc
        for doc in yaml.safe_load_all((ROOT / "infra" / "k8s" / "rbac.yaml").read_text())
        if doc and doc["kind"] == "ClusterRole"
    )
    phrases = []
    for rule in role["rules"]:
        for resource in rule["resources"]:
            phrases.append(f"{NAMES.get(resource, resource)} {'/'.join(rule['verbs'])}")
    return ", ".join(phrases)


def test_every_permission_list_in_the_readme_is_the_one_rbac_yaml_grants() -> None:
    readme = re.sub(r"\s+", " ", (ROOT / "README.md").read_text())
    expected = granted()
    assert expected.startswith("RolloutGates list/create/patch, Environments get/list")
    assert readme.count(expected) == 2, f"README must list exactly: {expected}"
    stated = re.findall(r"RolloutGates [a-z/]+(?:, [A-Za-z/]+ [a-z/]+)*", readme)
    assert stated, "no permission list found in the README"
    assert set(stated) == {expected}, stated
