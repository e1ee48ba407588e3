"""The Terraform of `infra/gcp` and `infra/aws`, parsed with python-hcl2 (terraform itself is not needed).

`eventbridge_pattern()` is the event pattern of the EventBridge rule in `infra/aws`, as a dict, so a
test can feed exactly what would be deployed to moto. The rest are the small readers
`test_terraform.py` uses: blocks by type and name, references, `local.*` substitution,
`jsonencode(...)` arguments, and `instances()`, which expands a `for_each` resource over a map in
`locals` into one body per key, as terraform would: `each.key` / `each.value.*` substituted and every
`dynamic` block whose `for_each` that decides written out as plain blocks.
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
# `${COND ? [ITEMS] : []}`: how a dynamic block is made optional.
_OPTIONAL = re.compile(r"\$\{\s*(.+?)\s*\?\s*\[(.*)\]\s*:\s*\[\s*\]\s*\}", re.DOTALL)
_LIST_ITEM = re.compile(r"\"([^\"]*)\"|'([^']*)'")


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

    def instances(self, kind: str) -> dict[str, Body]:
        """Every resource of one type, by instance address (see `instances`)."""
        return instances(self, self.of_type(kind))

    def data_instances(self, kind: str) -> dict[str, Body]:
        """Every data source of one type, by instance address (see `instances`)."""
        return instances(self, self.data.get(kind, {}))


def instances(config: Config, named: dict[str, Body]) -> dict[str, Body]:
    """Blocks by instance address.

    A block whose `for_each` is a map (literal, or `local.NAME`) becomes one body per key, addressed
    `name["key"]`, with `each.*` substituted and its dynamic blocks expanded where they can be (see
    `instantiate`); any other block is returned as it is, under its name.
    """
    found: dict[str, Body] = {}
    for name, body in named.items():
        for_each = body.get("for_each")
        expression = reference(for_each)
        if expression and expression.startswith("local."):
            for_each = config.locals.get(expression.removeprefix("local."))
        if not isinstance(for_each, dict):
            found[name] = body
            continue
        template = {argument: value for argument, value in body.items() if argument != "for_each"}
        for key, value in for_each.items():
            found[f'{name}["{key}"]'] = instantiate(template, {"each": {"key": key, "value": value}})
    return found


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


def _navigate(scope: dict[str, Any], name: str, path: str) -> tuple[bool, Any]:
    value: Any = scope[name]
    for attribute in path.split(".")[1:]:
        if not isinstance(value, dict) or attribute not in value:
            return False, None
        value = value[attribute]
    return True, value


def _hcl_literal(value: object) -> str | None:
    """`value` written as an HCL expression, or None when it is not a simple value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        expression = reference(value)
        if expression is not None:
            return f"({expression})"
        if "${" not in value:
            return json.dumps(value)
    return None


def _substitute(value: object, scope: dict[str, Any]) -> object:
    """`value` with the names of `scope` (`each`, a dynamic block's iterator) replaced by their values."""
    if isinstance(value, dict):
        return {key: _substitute(item, scope) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, scope) for item in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    for name in scope:
        whole = re.fullmatch(rf"\$\{{({re.escape(name)}(?:\.\w+)+)\}}", value)
        if whole:
            known, found = _navigate(scope, name, whole.group(1))
            return found if known else value

        def literal(match: re.Match[str], name: str = name) -> str:
            known, found = _navigate(scope, name, match.group(0))
            written = _hcl_literal(found) if known else None
            return match.group(0) if written is None else written

        value = re.sub(rf"(?<![\w.]){re.escape(name)}(?:\.\w+)+", literal, value)
    return value


def _dynamic_items(for_each: object) -> list[tuple[Any, Any]] | None:
    """The (key, value) pairs a dynamic block iterates over, when they are known without terraform:
    a list or map, or `COND ? [...] : []` with COND already substituted to true or false."""
    if isinstance(for_each, list):
        return list(enumerate(for_each))
    if isinstance(for_each, dict):
        return list(for_each.items())
    match = _OPTIONAL.fullmatch(for_each) if isinstance(for_each, str) else None
    if match and match.group(1) in {"true", "false"}:
        items = [a or b for a, b in _LIST_ITEM.findall(match.group(2))]
        return list(enumerate(items)) if match.group(1) == "true" else []
    return None


def _expand_dynamic(body: Body) -> Body:
    """`body` with every dynamic block whose items are known written out as plain blocks (recursively);
    the others (a condition only terraform can decide) stay under `dynamic`."""
    expanded: Body = {}
    for argument, value in body.items():
        if argument == "dynamic":
            continue
        if isinstance(value, list):
            expanded[argument] = [_expand_dynamic(item) if isinstance(item, dict) else item for item in value]
        else:
            expanded[argument] = value
    undecided = []
    for block in body.get("dynamic", []):
        for kind, spec in block.items():
            items = _dynamic_items(spec.get("for_each"))
            if items is None:
                undecided.append({kind: spec | {"content": [_expand_dynamic(c) for c in spec["content"]]}})
                continue
            iterator = str(spec.get("iterator", kind))
            for key, value in items:
                for content in spec.get("content", []):
                    block_body = _substitute(content, {iterator: {"key": key, "value": value}})
                    assert isinstance(block_body, dict)
                    expanded.setdefault(kind, []).append(_expand_dynamic(block_body))
    if undecided:
        expanded["dynamic"] = undecided
    return expanded


def instantiate(body: Body, scope: dict[str, Any]) -> Body:
    """One instance of a `for_each` resource: `scope` (`{"each": {"key": ..., "value": ...}}`)
    substituted, then the dynamic blocks expanded."""
    substituted = _substitute(body, scope)
    assert isinstance(substituted, dict)
    return _expand_dynamic(substituted)


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
