"""The Terraform of `infra/gcp` and `infra/aws`, parsed with python-hcl2 (terraform itself is not needed).

`eventbridge_pattern()` is the event pattern of the EventBridge rule in `infra/aws`, as a dict, so a
test can feed exactly what would be deployed to moto. The rest are the small readers
`test_terraform.py` uses: blocks by type and name, references, `local.*` substitution,
`jsonencode(...)` arguments, and `instances()`, which expands a `for_each` resource over a map in
`locals` into one body per key, as terraform would: `each.key` / `each.value.*` substituted and every
`dynamic` block whose `for_each` that decides written out as plain blocks.

A local whose value is a list or map computed from variables and other locals (`concat(...)`, a map
indexed by a variable, `toset(flatten(values(...)))`, `merge(...)`, `cond ? a : b`) is evaluated with
the variables' defaults, or the values `load` is given, so the tests see what terraform would deploy
(`evaluate`); a reference only terraform can resolve (a data source's ARN) stays in it as its `${...}`
text. `holds` evaluates a precondition's or validation's condition the same way.
"""

from __future__ import annotations

import ast
import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
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

    A block whose `for_each` is a map (literal, `local.NAME`, or an expression `evaluate` can compute)
    becomes one body per key, addressed `name["key"]`, with `each.*` substituted and its dynamic blocks
    expanded where they can be (see `instantiate`); a set of strings likewise, each key its own value.
    Any other block is returned as it is, under its name.
    """
    found: dict[str, Body] = {}
    for name, body in named.items():
        for_each = body.get("for_each")
        expression = _interpolation(for_each)
        if expression:
            with contextlib.suppress(Unknown):
                for_each = evaluate(expression, config)
        if isinstance(for_each, list) and all(isinstance(item, str) for item in for_each):
            for_each = {item: item for item in for_each}
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


def load(cloud: str, **variables: object) -> Config:
    """Parse every `.tf` file of `infra/<cloud>`; `variables` set values other than the defaults (as
    `-var` would), for the locals `evaluate` computes and for `Config.variables[...]["default"]`."""
    return _load(cloud, tuple(sorted(variables.items())))


@cache
def _load(cloud: str, overrides: tuple[tuple[str, object], ...]) -> Config:
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
    for name, value in overrides:
        assert name in variables, f"infra/{cloud} declares no variable {name}"
        variables[name] = {**variables[name], "default": value}
    config = Config(folder, files, resources, data, local_values, variables, outputs)
    return replace(config, locals={name: _evaluated(value, config) for name, value in local_values.items()})


class Unknown(Exception):
    """An expression only terraform can compute (a resource's attribute, a function not known here)."""


def _flatten(items: object) -> list[Any]:
    if not isinstance(items, list):
        return [items]
    return [leaf for item in items for leaf in _flatten(item)]


def _concat(*lists: list[Any]) -> list[Any]:
    return [item for items in lists for item in items]


def _values(mapping: dict[str, Any]) -> list[Any]:
    return [mapping[key] for key in sorted(mapping)]


def _toset(items: list[Any]) -> list[Any]:
    return sorted(set(items))  # terraform iterates a set of strings in lexical order


def _merge(*mappings: dict[str, Any]) -> dict[str, Any]:
    return {key: value for mapping in mappings for key, value in mapping.items()}


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "concat": _concat,
    "flatten": _flatten,
    "toset": _toset,
    "values": _values,
    "keys": sorted,
    "merge": _merge,
    "tomap": dict,
    "contains": lambda items, value: value in items,
}
# python-hcl2 writes null back as `null` or as `None`.
_KEYWORDS = {"true": True, "false": False, "null": None, "None": None}
_WORD = re.compile(r"[A-Z][A-Z0-9_]*")


def _interpolation(value: object) -> str | None:
    """The expression of a value that is exactly one `${...}`, braces inside it (a map) included."""
    if not (isinstance(value, str) and value.startswith("${") and value.endswith("}")):
        return None
    depth = 0
    for position, character in enumerate(value[1:], start=1):
        depth += {"{": 1, "}": -1}.get(character, 0)
        if depth == 0:
            return value[2:-1] if position == len(value) - 1 else None
    return None


def evaluate(expression: str, config: Config) -> Any:
    """The value of an HCL expression over literals, `var.*` (defaults or `load`'s values), `local.*`,
    indexing, `==`/`!=`, `&&`/`||`/`!`, `cond ? a : b` and the functions of `_FUNCTIONS`; `Unknown` for
    anything else.

    python-hcl2 writes an expression back as text in which, inside a function call's arguments, string
    literals lose their quotes (`concat(["A"], x)` reads `concat([A], x)`): a bare upper-case word is
    read as that string. A map's values keep theirs, a reference written `"${...}"` (its own quotes
    unescaped inside): it is read as that text, as the tests read any other reference."""
    try:
        tree = ast.parse(_python(expression.strip()), mode="eval").body
    except SyntaxError:
        raise Unknown(expression) from None
    return _Evaluator(config).value(tree)


def holds(condition: object, config: Config) -> bool:
    """Whether a precondition's or a validation's `condition` (`${...}`) is true with `config`'s
    variables (`load`'s values); AssertionError when it cannot be computed here."""
    expression = _interpolation(condition)
    assert expression, f"not an expression: {condition!r}"
    try:
        value = evaluate(expression, config)
    except Unknown as exc:
        raise AssertionError(f"cannot evaluate {condition!r}: {exc}") from None
    assert isinstance(value, bool), f"{condition!r} is not a bool: {value!r}"
    return value


def _interpolation_end(text: str, start: int) -> int | None:
    """The index of the `}` closing the `${` at `start`."""
    depth = 0
    for position in range(start + 1, len(text)):
        depth += {"{": 1, "}": -1}.get(text[position], 0)
        if depth == 0:
            return position
    return None


def _quoted_end(text: str, start: int) -> int:
    """The index of the quote closing the string literal opened at `start`."""
    position = start + 1
    while position < len(text) and text[position] != text[start]:
        position += 2 if text[position] == "\\" else 1
    return position


def _python(expression: str) -> str:
    """An HCL expression as Python `ast` can parse it: each `"${...}"` a string literal of its text,
    `&&`/`||`/`!` the operators `and`/`or`/`not`, and a top-level `cond ? a : b` `(a) if (cond) else (b)`."""
    out: list[str] = []
    position = 0
    while position < len(expression):
        if expression.startswith('"${', position):
            end = _interpolation_end(expression, position + 1)
            if end is not None and expression[end + 1 : end + 2] == '"':
                out.append(repr(expression[position + 1 : end + 1]))
                position = end + 2
                continue
        character = expression[position]
        if character in "\"'":
            end = _quoted_end(expression, position)
            out.append(expression[position : end + 1])
            position = end + 1
            continue
        operator = next((o for o in ("&&", "||") if expression.startswith(o, position)), None)
        if operator:
            out.append({"&&": " and ", "||": " or "}[operator])
            position += 2
            continue
        if character == "!" and not expression.startswith("!=", position):
            out.append(" not ")
        else:
            out.append(character)
        position += 1
    return _conditional("".join(out))


def _conditional(text: str) -> str:
    """`cond ? a : b` at the top level of `text` (outside brackets and strings) as Python's `a if cond
    else b`, the branches likewise (HCL's conditional groups to the right); other text as it is."""
    depth, question, nested = 0, None, 0
    position = 0
    while position < len(text):
        character = text[position]
        if character in "\"'":
            position = _quoted_end(text, position) + 1
            continue
        if character in "([{":
            depth += 1
        elif character in ")]}":
            depth -= 1
        elif depth == 0 and character == "?":
            if question is None:
                question = position
            else:
                nested += 1
        elif depth == 0 and character == ":" and question is not None:
            if nested:
                nested -= 1
            else:
                condition, true, false = text[:question], text[question + 1 : position], text[position + 1 :]
                return f"({_conditional(true)}) if ({condition}) else ({_conditional(false)})"
        position += 1
    return text


@dataclass(frozen=True)
class _Evaluator:
    config: Config

    def value(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self.word(node.id)
        if isinstance(node, ast.List | ast.Tuple):
            return [self.value(item) for item in node.elts]
        if isinstance(node, ast.Dict) and all(key is not None for key in node.keys):
            return {self.value(k): self.value(v) for k, v in zip(node.keys, node.values, strict=True) if k}
        if isinstance(node, ast.Subscript):
            return self.index(self.value(node.value), self.value(node.slice), node)
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in (ast.Eq, ast.NotEq):
            equal = self.value(node.left) == self.value(node.comparators[0])
            return equal if isinstance(node.ops[0], ast.Eq) else not equal
        if isinstance(node, ast.IfExp):  # only the chosen branch, as terraform reports only its errors
            return self.value(node.body) if self.boolean(node.test) else self.value(node.orelse)
        if isinstance(node, ast.BoolOp):  # HCL evaluates every operand
            operands = [self.boolean(operand) for operand in node.values]
            return all(operands) if isinstance(node.op, ast.And) else any(operands)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return not self.boolean(node.operand)
        if isinstance(node, ast.Call) and not node.keywords:
            function = _FUNCTIONS.get(node.func.id) if isinstance(node.func, ast.Name) else None
            if function is not None:
                return function(*(self.value(argument) for argument in node.args))
        if isinstance(node, ast.Attribute):
            return self.attribute(node)
        raise Unknown(ast.unparse(node))

    def boolean(self, node: ast.expr) -> bool:
        value = self.value(node)
        if not isinstance(value, bool):
            raise Unknown(ast.unparse(node))
        return value

    @staticmethod
    def word(name: str) -> Any:
        if name in _KEYWORDS:
            return _KEYWORDS[name]
        if _WORD.fullmatch(name):
            return name
        raise Unknown(name)

    @staticmethod
    def index(container: Any, key: Any, node: ast.expr) -> Any:
        try:
            return container[key]
        except (KeyError, IndexError, TypeError):
            raise Unknown(ast.unparse(node)) from None

    def attribute(self, node: ast.Attribute) -> Any:
        scope = node.value.id if isinstance(node.value, ast.Name) else None
        if scope == "var":
            variable = self.config.variables.get(node.attr)
            if variable is None or "default" not in variable:
                raise Unknown(f"var.{node.attr}")
            return variable["default"]
        if scope == "local":
            if node.attr not in self.config.locals:
                raise Unknown(f"local.{node.attr}")
            found = self.config.locals[node.attr]
            inner = _interpolation(found)
            return evaluate(inner, self.config) if inner else _evaluated(found, self.config)
        return self.index(self.value(node.value), node.attr, node)


def _evaluated(value: object, config: Config) -> Any:
    """`value` with every `${expression}` that `evaluate` computes to a list or map replaced by it
    (recursively); any other expression stays as written (the tests read those as expressions)."""
    if isinstance(value, dict):
        return {key: _evaluated(item, config) for key, item in value.items()}
    if isinstance(value, list):
        return [_evaluated(item, config) for item in value]
    expression = _interpolation(value)
    if expression is None:
        return value
    try:
        computed = evaluate(expression, config)
    except Unknown:
        return value
    return computed if isinstance(computed, list | dict) else value


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
