"""The Terraform of `infra/gcp` and `infra/aws`, parsed with python-hcl2 (terraform itself is not needed).

`eventbridge_pattern()` is the event pattern of the EventBridge rule in `infra/aws`, as a dict, so a
test can feed exactly what would be deployed to moto. The rest are the small readers
`test_terraform.py` uses: blocks by type and name, references, `local.*` substitution and
`jsonencode(...)` arguments.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from hcl2.api import load as parse_hcl
from hcl2.api import loads as parse_hcl_text

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"

Body = dict[str, Any]

_REFERENCE = re.compile(r"\$\{([^{}]+)\}")
_JSONENCODE = re.compile(r"\$\{jsonencode\((.*)\)\}", re.DOTALL)
_LOCAL = re.compile(r"\$\{local\.([A-Za-z0-9_]+)\}")


@dataclass(frozen=True)
class Config:
    """Every `.tf` file of one folder, merged: blocks by type and name."""

    folder: Path
    files: tuple[Path, ...]
    resources: dict[str, dict[str, Body]]
    data: dict[str, dict[str, Body]]
    locals: dict[str, Any]
    variables: dict[str, Body]
    outputs: dict[str, Body]

    def resource(self, kind: str, name: str) -> Body:
        """One resource's body; a missing one fails with its address."""
        try:
            return self.resources[kind][name]
        except KeyError:
            raise AssertionError(f"{self.folder.name}: no resource {kind}.{name}") from None

    def datum(self, kind: str, name: str) -> Body:
        """One data source's body; a missing one fails with its address."""
        try:
            return self.data[kind][name]
        except KeyError:
            raise AssertionError(f"{self.folder.name}: no data source {kind}.{name}") from None

    def of_type(self, kind: str) -> dict[str, Body]:
        """Every resource of one type, by name (empty when there is none)."""
        return self.resources.get(kind, {})


def _merge_blocks(target: dict[str, dict[str, Body]], blocks: list[dict[str, Any]], where: Path) -> None:
    for block in blocks:
        for kind, named in block.items():
            for name, body in named.items():
                if name in target.setdefault(kind, {}):
                    raise ValueError(f"{where}: {kind}.{name} is declared twice")
                target[kind][name] = body


@cache
def load(cloud: str) -> Config:
    """Parse every `.tf` file of `infra/<cloud>`."""
    folder = INFRA / cloud
    files = tuple(sorted(folder.glob("*.tf")))
    if not files:
        raise AssertionError(f"no .tf files in {folder}")
    resources: dict[str, dict[str, Body]] = {}
    data: dict[str, dict[str, Body]] = {}
    local_values: dict[str, Any] = {}
    variables: dict[str, Body] = {}
    outputs: dict[str, Body] = {}
    for path in files:
        with path.open(encoding="utf-8") as handle:
            parsed = parse_hcl(handle)
        _merge_blocks(resources, parsed.get("resource", []), path)
        _merge_blocks(data, parsed.get("data", []), path)
        for block in parsed.get("locals", []):
            local_values.update(block)
        for block in parsed.get("variable", []):
            variables.update(block)
        for block in parsed.get("output", []):
            outputs.update(block)
    return Config(folder, files, resources, data, local_values, variables, outputs)


def reference(value: object) -> str | None:
    """The expression of a value that is exactly one `${...}` interpolation, else None."""
    if isinstance(value, str):
        match = _REFERENCE.fullmatch(value)
        if match:
            return match.group(1)
    return None


def resolve(value: object, config: Config) -> object:
    """`value` with every `${local.NAME}` whose local is a string substituted (recursively)."""
    if not isinstance(value, str):
        return value
    for _ in range(10):
        replaced = _LOCAL.sub(
            lambda m: (
                str(config.locals[m.group(1)])
                if isinstance(config.locals.get(m.group(1)), str)
                else m.group(0)
            ),
            value,
        )
        if replaced == value:
            break
        value = replaced
    return value


def jsonencoded(value: object) -> Any:
    """The argument of `jsonencode(...)` as Python data (references stay `${...}` strings).

    A plain JSON string (a heredoc) is accepted as well.
    """
    if not isinstance(value, str):
        raise AssertionError(f"expected jsonencode(...) or a JSON string, got {value!r}")
    match = _JSONENCODE.fullmatch(value.strip())
    if not match:
        return json.loads(value)
    inner = match.group(1)
    try:
        return json.loads(inner)
    except json.JSONDecodeError:
        return parse_hcl_text(f"value = {inner}\n")["value"]


def eventbridge_pattern() -> dict[str, Any]:
    """The event pattern of the (single) EventBridge rule in `infra/aws`, parsed."""
    rules = load("aws").of_type("aws_cloudwatch_event_rule")
    if len(rules) != 1:
        raise AssertionError(
            f"expected exactly one aws_cloudwatch_event_rule in infra/aws, got {sorted(rules)}"
        )
    (rule,) = rules.values()
    pattern = jsonencoded(rule["event_pattern"])
    if not isinstance(pattern, dict):
        raise AssertionError(f"the event pattern is not an object: {pattern!r}")
    return pattern
