"""Unit tests of the pure core: a guard makes any attempt to reach the network fail loudly."""

from __future__ import annotations

import socket

import pytest


class NetworkUsed(AssertionError):
    """A unit test of the core tried to open a network connection."""


def _refuse(*args: object, **kwargs: object) -> None:
    raise NetworkUsed(f"unit tests of shared/ must not use the network (attempted with {args!r})")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)
    monkeypatch.setattr(socket, "getaddrinfo", _refuse)
