"""Decoding untrusted JSON: every way a document can fail to decode is a `BadEvent`, never anything else.

`json.loads` fails in more ways than `JSONDecodeError`: an integer literal over Python's int-string
conversion limit (4,300 digits) raises a plain `ValueError`, deep nesting a `RecursionError`, invalid
UTF-8 a `UnicodeDecodeError`. Any of those escaping an entry point is a 500 over HTTP and a redelivery
loop on Pub/Sub or SQS, where it must be a 400 or an acknowledged poison message. Some documents decode
but break later: `NaN`, `Infinity` and numbers too large for a float come back as non-finite floats
that `json.dumps` writes as non-JSON (the bridge forwards the events it received), escaped lone
surrogates (`"\\ud800"`) as strings that cannot be encoded as UTF-8, very deep nesting as a
`RecursionError` wherever the document is walked or written again. The kube-apiserver and GitHub
produce none of these, so they are refused here, at the edge, with the reason.

This module must never accept what RFC 8259 calls non-interoperable and the rest of stagegate cannot
write back out; it does no I/O.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from shared.errors import BadEvent

MAX_DEPTH = 512
"""Deepest nesting of arrays and objects accepted: far beyond any Kubernetes object or GitHub payload,
well within the interpreter's recursion limit for whatever walks or re-encodes the document later."""

MAX_INTEGER_DIGITS = 4300
"""Longest integer literal accepted (Python's default int-string limit, fixed here so a changed
interpreter setting cannot make decoding quadratic)."""

# A `\uD800`-`\uDFFF` escape; only then can a decoded string hold a surrogate (pairs are fine).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def decode_json(data: bytes | str, what: str = "body") -> Any:
    """The decoded document, or `BadEvent` saying why `what` cannot be read."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadEvent(f"{what} is not JSON: invalid UTF-8 ({exc})") from exc
    else:
        text = data
        if not _encodable(text):
            raise BadEvent(f"{what} is not JSON: it holds a lone surrogate (not valid Unicode)")
    try:
        document = json.loads(text, parse_int=_integer, parse_float=_finite, parse_constant=_constant)
    except _Refused as exc:
        raise BadEvent(f"{what} {exc}") from exc
    except RecursionError as exc:
        raise BadEvent(f"{what} is not JSON: RecursionError: nested too deeply to decode") from exc
    except ValueError as exc:
        raise BadEvent(f"{what} is not JSON: {exc}") from exc
    surrogates_possible = _SURROGATE_ESCAPE.search(text) is not None
    # Fewer brackets than the limit cannot nest deeper than it: the common case needs no walk.
    if surrogates_possible or text.count("[") + text.count("{") > MAX_DEPTH:
        _check_structure(document, what, surrogates_possible=surrogates_possible)
    return document


class _Refused(Exception):
    """Raised from inside the decoder by a literal hook; the message completes "<what> ..."."""


def _integer(literal: str) -> int:
    digits = len(literal) - literal.startswith("-")
    if digits > MAX_INTEGER_DIGITS:
        raise _Refused(
            f"exceeds a decoding limit: integer literal of {digits} digits (at most {MAX_INTEGER_DIGITS})"
        )
    return int(literal)


def _finite(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        shown = literal if len(literal) <= 40 else literal[:40] + "..."
        raise _Refused(f"exceeds a decoding limit: number {shown} is out of the range of a float")
    return value


def _constant(literal: str) -> float:
    raise _Refused(f"is not JSON: {literal} is not a JSON number")


def _check_structure(document: object, what: str, *, surrogates_possible: bool) -> None:
    """Refuse nesting beyond `MAX_DEPTH` and strings (values or keys) that are not valid Unicode."""
    stack: list[tuple[object, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: list[object] = [*value, *value.values()] if surrogates_possible else [*value.values()]
        elif isinstance(value, list):
            children = value
        else:
            if surrogates_possible and isinstance(value, str) and not _encodable(value):
                raise BadEvent(f"{what} is not JSON: a string holds a lone surrogate (not valid Unicode)")
            continue
        if depth > MAX_DEPTH:
            raise BadEvent(f"{what} exceeds a decoding limit: nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
