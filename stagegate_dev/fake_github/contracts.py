"""GitHub's own published descriptions of its APIs, loaded once and turned into validators.

The fake GitHub is only worth something while it answers like the real one. Instead of writing the
shapes down a second time (and letting them drift), every answer is checked against what GitHub
publishes through the octokit npm packages (installed by `scripts/octokit-assets.sh`):

- REST: the OpenAPI 3.0 description of api.github.com (`@octokit/openapi`). OpenAPI 3.0 schemas are
  JSON Schema with `nullable`; they are converted (only the closure of what the fake serves) and
  compiled once per process.
- Webhooks: the official OpenAPI 3.1 webhook description (`@octokit/openapi-webhooks`: payload
  schema and the required delivery headers) and the community JSON schema
  (`@octokit/webhooks-schemas`). A delivery must satisfy both.
- GraphQL: the public schema (`@octokit/graphql-schema`), which graphql-core executes against.

This module never serves anything and holds no fake state; it only answers "does this match".
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import threading
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import graphql
import jsonschema

ROOT = Path(__file__).resolve().parents[2]
ASSETS_SCRIPT = ROOT / "scripts" / "octokit-assets.sh"
ASSETS_ENV = "STAGEGATE_OCTOKIT_ASSETS"

REST_DESCRIPTION = "@octokit/openapi/generated/api.github.com.json"
WEBHOOK_DESCRIPTION = "@octokit/openapi-webhooks/generated/api.github.com.json"
WEBHOOK_SCHEMAS = "@octokit/webhooks-schemas/schema.json"
GRAPHQL_SCHEMA = "@octokit/graphql-schema/schema.graphql"
WEBHOOK_EXAMPLES = "@octokit/webhooks-examples/api.github.com/index.json"

# The signature is added by whoever holds the webhook secret, not by the payload builder.
UNSIGNED_HEADERS = frozenset({"x-hub-signature-256"})

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_SCHEMA_MAPS = ("properties", "patternProperties")
_SCHEMA_VALUES = ("items", "additionalProperties", "not")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")


class AssetsUnavailable(RuntimeError):
    """The octokit npm packages are not installed and could not be installed."""


class ContractViolation(AssertionError):
    """Something the fake produced does not match GitHub's published description."""

    def __init__(self, what: str, errors: list[str]) -> None:
        super().__init__(f"{what}: " + "; ".join(errors))
        self.what = what
        self.errors = errors


def octokit_assets() -> Path:
    """The node_modules directory with the octokit packages, installing them once if needed."""
    override = os.environ.get(ASSETS_ENV)
    if override:
        path = Path(override)
        if not (path / REST_DESCRIPTION).is_file():
            raise AssetsUnavailable(f"{ASSETS_ENV}={override} does not contain {REST_DESCRIPTION}")
        return path
    try:
        out = subprocess.run(
            ["bash", str(ASSETS_SCRIPT)],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise AssetsUnavailable(f"{ASSETS_SCRIPT.name} failed: {detail.strip()}") from exc
    return Path(out.stdout.strip())


def _format_checker(*, uri: bool = False) -> jsonschema.FormatChecker:
    """`date-time` always; `uri` only where a schema relies on it (GitHub's own descriptions don't:
    GitHub sends `""` for several `format: uri` fields, the community webhook schema uses the
    format to tell `""` from a URL)."""
    checker = jsonschema.FormatChecker(formats=())

    if uri:

        @checker.checks("uri", raises=ValueError)
        def is_uri(value: object) -> bool:
            if not isinstance(value, str):
                return True
            parts = urlsplit(value)
            if not parts.scheme or not (parts.netloc or parts.path) or any(c.isspace() for c in value):
                raise ValueError(f"{value!r} is not a URI")
            return True

    @checker.checks("date-time", raises=ValueError)
    def is_datetime(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if not _RFC3339.match(value):
            raise ValueError(f"{value!r} is not an RFC 3339 date-time")
        datetime.fromisoformat(value.replace("z", "Z"))
        return True

    return checker


def openapi30_to_json_schema(schema: Any) -> Any:
    """One OpenAPI 3.0 schema object as JSON Schema: `nullable: true` becomes "or null"."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: openapi30_to_json_schema(sub) for name, sub in value.items()}
        elif key in _SCHEMA_VALUES:
            out[key] = openapi30_to_json_schema(value)
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [openapi30_to_json_schema(sub) for sub in value]
        elif key != "nullable":
            out[key] = value
    if schema.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


def _schema_refs(node: Any, prefix: str) -> set[str]:
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str) and ref.startswith(prefix):
                found.add(ref[len(prefix) :])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _closure(document: Mapping[str, Any], start: Any, convert: bool) -> dict[str, Any]:
    """The named component schemas `start` reaches, converted from OpenAPI 3.0 when asked."""
    prefix = "#/components/schemas/"
    schemas: Mapping[str, Any] = document["components"]["schemas"]
    done: dict[str, Any] = {}
    todo = _schema_refs(start, prefix)
    while todo:
        name = todo.pop()
        if name in done:
            continue
        raw = schemas[name]
        done[name] = openapi30_to_json_schema(raw) if convert else raw
        todo |= _schema_refs(raw, prefix) - done.keys()
    return done


_STRING_PAYLOADS = ("deployment", "payload")
"""Where `@octokit/webhooks-schemas` is narrower than GitHub: it types `deployment.payload` as an object
only, while GitHub's own description (`@octokit/openapi-webhooks`, checked as well) allows a string, which
is what GitHub sends for a deployment created with a string payload (kuberik's Go controller does that)."""


def _errors(
    validator: jsonschema.protocols.Validator,
    instance: Any,
    limit: int = 10,
    skip: tuple[str, ...] | None = None,
) -> list[str]:
    """Validation errors, except a string at the path `skip` names (a known gap in a community schema)."""
    found = sorted(
        (
            e
            for e in validator.iter_errors(instance)
            if not (skip and tuple(map(str, e.absolute_path)) == skip and isinstance(e.instance, str))
        ),
        key=lambda e: list(e.absolute_path),
    )
    return [f"at /{'/'.join(str(p) for p in e.absolute_path)}: {e.message[:300]}" for e in found[:limit]]


class Contracts:
    """Validators for REST responses/requests, webhook deliveries, and the GraphQL schema."""

    def __init__(self, assets: Path) -> None:
        self.assets = assets
        self._lock = threading.Lock()
        self._validators: dict[tuple[str, ...], jsonschema.protocols.Validator] = {}
        self._checker = _format_checker()

    @functools.cached_property
    def rest(self) -> dict[str, Any]:
        """The REST OpenAPI document (about 13 MB of JSON; parsed once)."""
        document: dict[str, Any] = json.loads((self.assets / REST_DESCRIPTION).read_text())
        return document

    @functools.cached_property
    def webhooks(self) -> dict[str, Any]:
        """The webhook OpenAPI 3.1 document."""
        document: dict[str, Any] = json.loads((self.assets / WEBHOOK_DESCRIPTION).read_text())
        return document

    @functools.cached_property
    def webhook_schemas(self) -> dict[str, Any]:
        """The community webhook JSON schema (draft-07, one definition per event and action)."""
        document: dict[str, Any] = json.loads((self.assets / WEBHOOK_SCHEMAS).read_text())
        return document

    @functools.cached_property
    def graphql_schema(self) -> graphql.GraphQLSchema:
        """GitHub's public GraphQL schema, built and checked once.

        The published SDL defines `EnterpriseOwnerInfo.repositoryDeployKeySetting` (and its
        `...Organizations` sibling) twice, which strict SDL validation rejects; the built schema is
        still validated as a whole before anything executes against it.
        """
        sdl = (self.assets / GRAPHQL_SCHEMA).read_text()
        schema = graphql.build_schema(sdl, assume_valid_sdl=True)
        problems = graphql.validate_schema(schema)
        if problems:
            raise ContractViolation("GitHub's GraphQL schema", [p.message for p in problems[:10]])
        return schema

    def webhook_examples(self, event: str) -> list[dict[str, Any]]:
        """GitHub's captured example deliveries of one event (`@octokit/webhooks-examples`)."""
        catalogue = json.loads((self.assets / WEBHOOK_EXAMPLES).read_text())
        for entry in catalogue:
            if entry["name"] == event:
                examples: list[dict[str, Any]] = entry["examples"]
                return examples
        return []

    # REST ---------------------------------------------------------------------------------------

    def rest_operation(self, method: str, template: str) -> dict[str, Any]:
        """The OpenAPI operation object for a method and path template (KeyError if undescribed)."""
        operation: dict[str, Any] = self.rest["paths"][template][method.lower()]
        return operation

    def _response_schema(self, method: str, template: str, status: int) -> tuple[bool, Any]:
        """(declared, schema) for a status; undeclared error statuses fall back to `basic-error`."""
        responses = self.rest_operation(method, template)["responses"]
        response = responses.get(str(status))
        if response is None:
            if status >= 400:
                return False, {"$ref": "#/components/schemas/basic-error"}
            return False, None
        if "$ref" in response:
            response = self.rest["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
        content = response.get("content")
        if not content:
            return True, None
        return True, content["application/json"]["schema"]

    def _rest_validator(self, key: tuple[str, ...], schema: Any) -> jsonschema.protocols.Validator:
        with self._lock:
            cached = self._validators.get(key)
        if cached is not None:
            return cached
        root = {
            "components": {"schemas": _closure(self.rest, schema, convert=True)},
            "allOf": [openapi30_to_json_schema(schema)],
        }
        validator = jsonschema.Draft7Validator(root, format_checker=self._checker)
        with self._lock:
            self._validators[key] = validator
        return validator

    def rest_response_errors(self, method: str, template: str, status: int, body: Any) -> list[str]:
        """What is wrong with a REST answer (`body` is the decoded JSON, or None when empty)."""
        try:
            declared, schema = self._response_schema(method, template, status)
        except KeyError:
            return [f"{method} {template} is not in GitHub's REST description"]
        if schema is None:
            if status >= 300 and not declared and status < 400:
                return []
            if body is not None:
                return [f"status {status} has no body in the description, but one was sent"]
            if not declared and 200 <= status < 300:
                return [f"status {status} is not a documented answer of {method} {template}"]
            return []
        if body is None:
            return [f"status {status} must have a JSON body"]
        validator = self._rest_validator(("response", method, template, str(status)), schema)
        return _errors(validator, body)

    def error_errors(self, body: Any) -> list[str]:
        """What is wrong with an error answer no operation describes (GitHub's `basic-error`)."""
        schema = {"$ref": "#/components/schemas/basic-error"}
        return _errors(self._rest_validator(("error",), schema), body)

    def rest_request_errors(self, method: str, template: str, body: Any) -> list[str]:
        """What is wrong with a REST request body, per the operation's `requestBody` schema."""
        request = self.rest_operation(method, template).get("requestBody")
        if request is None:
            return []
        schema = request["content"]["application/json"]["schema"]
        validator = self._rest_validator(("request", method, template), schema)
        return _errors(validator, body)

    # Webhooks -----------------------------------------------------------------------------------

    def webhook_errors(self, event: str, action: str, headers: Mapping[str, str], payload: Any) -> list[str]:
        """What is wrong with a delivery: its payload (both schemas) and its required headers."""
        key = f"{event.replace('_', '-')}-{action}"
        operation = self.webhooks["webhooks"][key]["post"]
        present = {name.lower() for name in headers}
        errors = [
            f"header {param['name']} is required"
            for param in operation.get("parameters", [])
            if param.get("in") == "header"
            and param.get("required")
            and param["name"].lower() not in present | UNSIGNED_HEADERS
        ]
        official = self._webhook_validator(
            key, operation["requestBody"]["content"]["application/json"]["schema"]
        )
        errors += [f"official: {e}" for e in _errors(official, payload)]
        community = self._community_validator(f"{event}${action}")
        errors += [f"community: {e}" for e in _errors(community, payload, skip=_STRING_PAYLOADS)]
        return errors

    def _webhook_validator(self, key: str, schema: Any) -> jsonschema.protocols.Validator:
        cache_key = ("webhook", key)
        with self._lock:
            cached = self._validators.get(cache_key)
        if cached is not None:
            return cached
        root = {"components": {"schemas": _closure(self.webhooks, schema, convert=False)}, **schema}
        validator = jsonschema.Draft202012Validator(root, format_checker=self._checker)
        with self._lock:
            self._validators[cache_key] = validator
        return validator

    def _community_validator(self, definition: str) -> jsonschema.protocols.Validator:
        cache_key = ("community", definition)
        with self._lock:
            cached = self._validators.get(cache_key)
        if cached is not None:
            return cached
        root = {
            "definitions": self.webhook_schemas["definitions"],
            "allOf": [{"$ref": f"#/definitions/{definition}"}],
        }
        validator = jsonschema.Draft7Validator(root, format_checker=_format_checker(uri=True))
        with self._lock:
            self._validators[cache_key] = validator
        return validator


@functools.cache
def load_contracts(assets: Path) -> Contracts:
    """One shared `Contracts` per assets directory: parsing and compiling happen once per process."""
    return Contracts(assets)
