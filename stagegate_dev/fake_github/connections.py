"""Relay cursor connections as GitHub serves them, and the order in which each one lists its items.

Why a module of its own: paging is where a reader most easily goes wrong (an item skipped or read
twice, an order assumed that GitHub never promised), so the rules live in one place and follow the
Relay Cursor Connections Specification to the letter: `first`/`after` and `last`/`before` slice the
list as its `ApplyCursorsToEdges` and `EdgesToReturn` say (`last: n` gives the final n items of the
possibly `before`-bounded list), and `hasPreviousPage`/`hasNextPage` are exact where the spec says
"must" (`last`, resp. `first`) and answered cheaply where it says "may".

GitHub's own limits come on top (its guide "Using pagination in the GraphQL API"): `first` or `last`
is required, each at most 100.

A cursor names an item by its sort values (creation second and database id), as GitHub's own cursors
do, so it stays valid when items are added around it and even when its own item is gone: the page
continues from where that item would sort. The order is GitHub's unless a test overrides it with a
`Listing` (see `Order`); it never changes between the requests of one paging session, because it
depends only on the items (and the seed), never on the request.

This module knows nothing of deployments: items come with a function giving their `Position`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypeVar, get_args

MAX_PAGE = 100
T = TypeVar("T")

Listing = Literal["github", "oldest", "newest", "shuffled"]
LISTINGS: tuple[Listing, ...] = get_args(Listing)

_CURSOR_PREFIX = "cursor:v3"


class GitHubGraphQLError(Exception):
    """An error GitHub reports with a `type` (`NOT_FOUND`, `EXCESSIVE_PAGINATION`, ...)."""

    def __init__(self, type_: str, message: str) -> None:
        super().__init__(message)
        self.type = type_


class Position(NamedTuple):
    """Where an item sorts: its creation time (whole seconds) and its database id (the tie-breaker)."""

    created: int
    id: int


@dataclass(frozen=True)
class Order:
    """How one connection lists its items.

    `newest_first` is GitHub's order for this request (from the schema default or `orderBy`);
    `listing` other than `"github"` overrides it, whatever `orderBy` asked for, so a test can prove
    a reader does not depend on the order. `"shuffled"` ranks items by a hash of `seed` and their
    id: stable across requests, and a new item takes a fixed place without moving the others.
    """

    newest_first: bool = False
    listing: Listing = "github"
    seed: int = 0

    def key(self, position: Position) -> tuple[int, int]:
        """The sort key of an item: connections list their items by ascending key."""
        mode = self.listing
        if mode == "github":
            mode = "newest" if self.newest_first else "oldest"
        if mode == "oldest":
            return (position.created, position.id)
        if mode == "newest":
            return (-position.created, -position.id)
        digest = hashlib.sha256(f"{self.seed}:{position.id}".encode()).digest()
        return (int.from_bytes(digest[:8], "big"), position.id)


def check_listing(listing: str) -> Listing:
    """`listing` if it is one of `LISTINGS`; a `ValueError` naming the choices otherwise."""
    for known in LISTINGS:
        if listing == known:
            return known
    raise ValueError(f"listing must be one of {', '.join(LISTINGS)}, not {listing!r}")


def cursor(position: Position) -> str:
    """An opaque cursor naming an item by its sort values."""
    return base64.b64encode(f"{_CURSOR_PREFIX}:{position.created}:{position.id}".encode()).decode()


def _position(value: str) -> Position:
    try:
        prefix, created, ident = base64.b64decode(value, validate=True).decode().rsplit(":", 2)
        if prefix != _CURSOR_PREFIX:
            raise ValueError(value)
        return Position(int(created), int(ident))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise GitHubGraphQLError(
            "INVALID_CURSOR_ARGUMENTS", f"`{value}` does not appear to be a valid cursor."
        ) from None


def _check_bounds(name: str, first: int | None, last: int | None) -> None:
    if first is None and last is None:
        raise GitHubGraphQLError(
            "MISSING_PAGINATION_BOUNDARIES",
            f"You must provide a `first` or `last` value to properly paginate the `{name}` connection.",
        )
    for arg, value in (("first", first), ("last", last)):
        if value is not None and value > MAX_PAGE:
            raise GitHubGraphQLError(
                "EXCESSIVE_PAGINATION",
                f"Requesting {value} records on the `{name}` connection exceeds the `{arg}` limit of "
                f"{MAX_PAGE} records.",
            )
        if value is not None and value < 0:
            raise GitHubGraphQLError(
                "INVALID_PAGINATION", f"`{arg}` on the `{name}` connection cannot be negative."
            )


def connection(
    items: Iterable[T],
    *,
    position: Callable[[T], Position],
    order: Order,
    name: str,
    wrap: Callable[[T], Any],
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> dict[str, Any]:
    """One page of a Relay connection over `items` (in any order), with GitHub's limits."""
    _check_bounds(name, first, last)
    ranked = sorted(((order.key(position(item)), item) for item in items), key=lambda pair: pair[0])
    keys = [key for key, _ in ranked]
    # ApplyCursorsToEdges: strictly after `after`, strictly before `before`.
    start = 0 if after is None else bisect_right(keys, order.key(_position(after)))
    stop = len(ranked) if before is None else bisect_left(keys, order.key(_position(before)))
    bounded = ranked[start : max(start, stop)]
    # EdgesToReturn: `first` slices from the front, then `last` from the back.
    page = bounded if first is None else bounded[:first]
    if last is not None:
        page = page[max(len(page) - last, 0) :]
    edges = [{"cursor": cursor(position(item)), "node": wrap(item)} for _, item in page]
    # Exact where the spec says "must" (`last`, resp. `first`); otherwise what is cheap to know.
    has_previous = len(bounded) > last if last is not None else (after is not None and start > 0)
    has_next = len(bounded) > first if first is not None else (before is not None and stop < len(ranked))
    return {
        "totalCount": len(ranked),
        "nodes": [edge["node"] for edge in edges],
        "edges": edges,
        "pageInfo": {
            "hasNextPage": has_next,
            "hasPreviousPage": has_previous,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }
