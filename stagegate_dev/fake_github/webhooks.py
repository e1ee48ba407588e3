"""`deployment_status` webhook deliveries exactly as GitHub sends them, and a Hookshot that sends them.

A delivery is headers plus the raw body bytes. The signature (`X-Hub-Signature-256`) belongs to
whoever holds the secret, so building a delivery leaves it to the caller (`signature_256` computes it
the way GitHub does). GitHub sends no webhook for `inactive` deployment statuses (its webhook
description says so), so none is built for one.

`Hookshot` is the only part that does I/O: once a hook is configured it POSTs, signed, one delivery
per recorded status, from one background thread, in recording order, with GitHub's 10-second
timeout, and never retries a failed one (GitHub does not either). It must never block the request
that recorded the status: recording only queues.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from stagegate_dev.fake_github import rest
from stagegate_dev.fake_github.state import Deployment, DeploymentStatus, Repository, User

HOOKSHOT_VERSION = "a4f1e0b"
# "Handling failed webhook deliveries": a server that takes longer than 10 seconds to respond has
# failed the delivery (GitHub Enterprise Server allows 30).
DELIVERY_TIMEOUT = 10.0


class NoDelivery(ValueError):
    """GitHub would not deliver this event at all."""


def signature_256(secret: str | bytes, body: bytes) -> str:
    """The `X-Hub-Signature-256` value: `sha256=` and the hex HMAC-SHA256 of the raw body."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def deployment_status_payload(
    status: DeploymentStatus, deployment: Deployment, repo: Repository, sender: User, api: str
) -> dict[str, Any]:
    """The JSON payload of a `deployment_status` `created` delivery."""
    if status.state == "inactive":
        raise NoDelivery("GitHub sends no deployment_status webhook for inactive statuses")
    return {
        "action": "created",
        "deployment_status": rest.status_json(status, repo, api),
        "deployment": rest.deployment_json(deployment, repo, api),
        "repository": rest.repository_json(repo, api),
        "sender": rest.user_json(sender, api),
    }


def delivery_headers(event: str, hook_id: int, repo: Repository) -> dict[str, str]:
    """The headers GitHub's Hookshot sends with every repository webhook delivery."""
    return {
        "Accept": "*/*",
        "Content-Type": "application/json",
        "User-Agent": f"GitHub-Hookshot/{HOOKSHOT_VERSION}",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-GitHub-Event": event,
        "X-GitHub-Hook-ID": str(hook_id),
        "X-GitHub-Hook-Installation-Target-ID": str(repo.id),
        "X-GitHub-Hook-Installation-Target-Type": "repository",
    }


def encode(payload: dict[str, Any]) -> bytes:
    """The raw body: compact JSON, as GitHub sends it."""
    return json.dumps(payload, separators=(",", ":")).encode()


# automatic delivery ------------------------------------------------------------------------------

Build = Callable[[Repository, dict[str, Any]], tuple[dict[str, str], bytes]]


@dataclass(frozen=True)
class Hook:
    """A repository webhook subscribed to `deployment_status`: where to POST and how to sign."""

    url: str
    secret: str
    repos: frozenset[str] | None = None
    """Lower-case full names of the repositories it belongs to; None: every repository."""

    def covers(self, repo: Repository) -> bool:
        """Whether events of `repo` go to this hook."""
        return self.repos is None or repo.full_name.lower() in self.repos


@dataclass(frozen=True)
class Delivery:
    """One attempt to deliver a `deployment_status` webhook (GitHub makes exactly one per event)."""

    repo: str
    status_id: int
    deployment_id: int
    state: str
    guid: str
    """The `X-GitHub-Delivery` header ("" if the delivery could not even be built)."""
    status_code: int | None
    """The receiver's HTTP status; None when no answer came (refused, timed out)."""
    error: str | None
    """Why the attempt failed; None when the receiver answered 2xx."""
    recorded_at: float
    """`time.perf_counter()` when the status was recorded."""
    delivered_at: float
    """`time.perf_counter()` when the attempt ended (answered or failed)."""

    @property
    def ok(self) -> bool:
        """Whether GitHub would show this delivery as successful (a 2xx answer in time)."""
        return self.error is None

    @property
    def latency(self) -> float:
        """Seconds from recording the status to the end of the attempt."""
        return self.delivered_at - self.recorded_at


@dataclass(frozen=True)
class _Pending:
    hook: Hook
    generation: int
    repo: Repository
    status: DeploymentStatus
    payload: dict[str, Any]
    recorded_at: float


class Hookshot:
    """Delivers `deployment_status` webhooks of recorded statuses to the configured hook.

    `record` is meant to be a `GitHubState.on_status` listener: it builds the payload as the state
    is at that moment (as GitHub does when the event happens) and only queues it. `build` turns a
    payload into the delivery's headers and body (the fake checks it against GitHub's schemas there).
    """

    def __init__(self, build: Build, api: Callable[[], str]) -> None:
        self._build = build
        self._api = api
        self._hook: Hook | None = None
        self._generation = 0
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._done = threading.Condition()
        self._deliveries: list[Delivery] = []

    def configure(self, hook: Hook) -> None:
        """Deliver the events of statuses recorded from now on to `hook` (replacing any other)."""
        with self._done:
            self._hook = hook
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fake-github-hookshot", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """Deliver nothing more: no hook, and deliveries still queued are dropped."""
        with self._done:
            self._hook = None
            self._generation += 1

    def close(self) -> None:
        """Stop and end the worker; an attempt under way ends within its timeout."""
        self.stop()
        with self._done:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=DELIVERY_TIMEOUT + 1)

    def record(self, repo: Repository, deployment: Deployment, status: DeploymentStatus) -> None:
        """Queue the delivery of a new status, if a hook covers its repository and it is not inactive."""
        recorded_at = time.perf_counter()
        with self._done:
            hook, generation = self._hook, self._generation
        if hook is None or not hook.covers(repo) or status.state == "inactive":
            return
        payload = deployment_status_payload(status, deployment, repo, status.creator, self._api())
        self._queue.put(_Pending(hook, generation, repo, status, payload, recorded_at))

    @property
    def deliveries(self) -> list[Delivery]:
        """Every attempt so far, in the order they were made."""
        with self._done:
            return list(self._deliveries)

    def wait(self, n: int, timeout: float) -> list[Delivery]:
        """Block until at least `n` attempts have ended; `TimeoutError` if they have not in time."""
        with self._done:
            if not self._done.wait_for(lambda: len(self._deliveries) >= n, timeout):
                raise TimeoutError(f"{len(self._deliveries)} of {n} webhook deliveries in {timeout} s")
            return list(self._deliveries)

    def _run(self) -> None:
        while (pending := self._queue.get()) is not None:
            with self._done:
                current = pending.generation == self._generation
            if current:
                delivery = self._attempt(pending)
                with self._done:
                    self._deliveries.append(delivery)
                    self._done.notify_all()

    def _attempt(self, pending: _Pending) -> Delivery:
        guid, code, error = "", None, None
        try:
            headers, body = self._build(pending.repo, pending.payload)
            guid = headers["X-GitHub-Delivery"]
            if pending.hook.secret:  # GitHub signs only when the hook has a secret
                headers["X-Hub-Signature-256"] = signature_256(pending.hook.secret, body)
            answer = requests.post(pending.hook.url, data=body, headers=headers, timeout=DELIVERY_TIMEOUT)
            code = answer.status_code
            if not 200 <= code < 300:
                error = f"Invalid HTTP Response: {code}"
        except requests.RequestException as exc:
            error = f"We couldn't deliver this payload: {exc}"
        except Exception as exc:  # a dead worker would turn every later wait into a timeout
            error = f"{type(exc).__name__}: {exc}"
        status = pending.status
        return Delivery(
            repo=pending.repo.full_name,
            status_id=status.id,
            deployment_id=status.deployment_id,
            state=status.state,
            guid=guid,
            status_code=code,
            error=error,
            recorded_at=pending.recorded_at,
            delivered_at=time.perf_counter(),
        )
