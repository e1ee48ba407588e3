"""Webhook deliveries exactly as GitHub sends them, and a Hookshot that sends them.

Two events: `deployment_status` to a repository's webhook, and `deployment_protection_rule` to the
webhook of the GitHub App whose rule holds a workflow run. A delivery is headers plus the raw body
bytes. The signature (`X-Hub-Signature-256`) belongs to whoever holds the secret, so building a
delivery leaves it to the caller (`signature_256` computes it the way GitHub does). GitHub sends no
webhook for `inactive` deployment statuses (its webhook description says so), so none is built for one.

`Hookshot` is the only part that does I/O: once a hook is configured it POSTs, signed, one delivery
per event, from one background thread, in the order the events happened, with GitHub's 10-second
timeout, and never retries a failed one (GitHub does not either). It must never block whatever
recorded the event: sending only queues.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import requests

from stagegate_dev.fake_github import rest
from stagegate_dev.fake_github.actions import WorkflowRun
from stagegate_dev.fake_github.state import Deployment, DeploymentStatus, Repository, User, node_id

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


def protection_rule_payload(
    run: WorkflowRun, deployment: Deployment, repo: Repository, installation_id: int, api: str
) -> dict[str, Any]:
    """The JSON payload of a `deployment_protection_rule` `requested` delivery: the run's environment,
    the event that started it, where to answer, and who started it."""
    callback = f"{api}/repos/{repo.full_name}/actions/runs/{run.id}/deployment_protection_rule"
    installation = {"id": installation_id, "node_id": node_id("IntegrationInstallation", installation_id)}
    return {
        "action": "requested",
        "environment": run.environment,
        "event": run.event,
        "deployment_callback_url": callback,
        "deployment": rest.deployment_json(deployment, repo, api),
        "pull_requests": [],
        "repository": rest.repository_json(repo, api),
        "installation": installation,
        "sender": rest.user_json(run.actor, api),
    }


HookTarget = Literal["repository", "integration"]
"""Where a webhook was created: a repository, or a GitHub App ("integration")."""


def delivery_headers(event: str, hook_id: int, target: HookTarget, target_id: int) -> dict[str, str]:
    """The headers GitHub's Hookshot sends with every webhook delivery; `target_id` is the repository's
    or the App's id."""
    return {
        "Accept": "*/*",
        "Content-Type": "application/json",
        "User-Agent": f"GitHub-Hookshot/{HOOKSHOT_VERSION}",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-GitHub-Event": event,
        "X-GitHub-Hook-ID": str(hook_id),
        "X-GitHub-Hook-Installation-Target-ID": str(target_id),
        "X-GitHub-Hook-Installation-Target-Type": target,
    }


def encode(payload: dict[str, Any]) -> bytes:
    """The raw body: compact JSON, as GitHub sends it."""
    return json.dumps(payload, separators=(",", ":")).encode()


# automatic delivery ------------------------------------------------------------------------------

Build = Callable[[], tuple[dict[str, str], bytes]]
"""Makes a delivery's headers and body (run by the worker, just before it is sent)."""


@dataclass(frozen=True)
class Hook:
    """A webhook: where to POST and how to sign."""

    url: str
    secret: str
    repos: frozenset[str] | None = None
    """Lower-case full names of the repositories it belongs to; None: every repository."""

    def covers(self, repo: Repository) -> bool:
        """Whether events of `repo` go to this hook."""
        return self.repos is None or repo.full_name.lower() in self.repos


@dataclass(frozen=True)
class Attempt:
    """One attempt to deliver a webhook (GitHub makes exactly one per event)."""

    guid: str
    """The `X-GitHub-Delivery` header ("" if the delivery could not even be built)."""
    status_code: int | None
    """The receiver's HTTP status; None when no answer came (refused, timed out)."""
    error: str | None
    """Why the attempt failed; None when the receiver answered 2xx."""
    recorded_at: float
    """`time.perf_counter()` when the event was recorded."""
    delivered_at: float
    """`time.perf_counter()` when the attempt ended (answered or failed)."""

    @property
    def ok(self) -> bool:
        """Whether GitHub would show this delivery as successful (a 2xx answer in time)."""
        return self.error is None

    @property
    def latency(self) -> float:
        """Seconds from recording the event to the end of the attempt."""
        return self.delivered_at - self.recorded_at


@dataclass(frozen=True, kw_only=True)
class Delivery(Attempt):
    """One attempt to deliver a `deployment_status` webhook to the repository's hook."""

    repo: str
    status_id: int
    deployment_id: int
    state: str


@dataclass(frozen=True, kw_only=True)
class AppDelivery(Attempt):
    """One attempt to deliver a `deployment_protection_rule` webhook to a GitHub App's hook."""

    app_id: int
    repo: str
    run_id: int
    environment: str
    deployment_id: int


R = TypeVar("R", bound=Attempt)


@dataclass(frozen=True)
class _Pending(Generic[R]):
    hook: Hook
    generation: int
    build: Build
    record: Callable[..., R]
    """Makes the attempt's record from `Attempt`'s fields."""
    recorded_at: float


class Hookshot(Generic[R]):
    """Delivers webhooks of recorded events to the configured hooks, one per key (the repository
    webhook has one key, each GitHub App its own), recording every attempt as an `R`.

    `send` is called as the event happens: it takes what the delivery will say then (as GitHub builds
    a payload when the event happens) and only queues it.
    """

    def __init__(self, thread_name: str) -> None:
        self._thread_name = thread_name
        self._hooks: dict[Hashable, Hook] = {}
        self._generation = 0
        self._queue: queue.SimpleQueue[_Pending[R] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._done = threading.Condition()
        self._deliveries: list[R] = []

    def configure(self, hook: Hook, key: Hashable = None) -> None:
        """Deliver the events recorded from now on under `key` to `hook` (replacing that key's hook)."""
        with self._done:
            self._hooks[key] = hook
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """Deliver nothing more: no hooks, and deliveries still queued are dropped."""
        with self._done:
            self._hooks.clear()
            self._generation += 1

    def close(self) -> None:
        """Stop and end the worker; an attempt under way ends within its timeout."""
        self.stop()
        with self._done:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=DELIVERY_TIMEOUT + 1)

    def send(
        self, repo: Repository, prepare: Callable[[], tuple[Build, Callable[..., R]]], key: Hashable = None
    ) -> None:
        """Queue one delivery of an event of `repo` to the hook under `key`, if that hook covers `repo`.

        `prepare` runs now, and only then: it gives the delivery's builder (with the payload as things
        are now) and how to record the attempt (`Attempt`'s fields are added to what it binds).
        """
        recorded_at = time.perf_counter()
        with self._done:
            hook, generation = self._hooks.get(key), self._generation
        if hook is None or not hook.covers(repo):
            return
        build, record = prepare()
        self._queue.put(_Pending(hook, generation, build, record, recorded_at))

    @property
    def deliveries(self) -> list[R]:
        """Every attempt so far, in the order they were made."""
        with self._done:
            return list(self._deliveries)

    def wait(self, n: int, timeout: float) -> list[R]:
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

    def _attempt(self, pending: _Pending[R]) -> R:
        guid, code, error = "", None, None
        try:
            headers, body = pending.build()
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
        return pending.record(
            guid=guid,
            status_code=code,
            error=error,
            recorded_at=pending.recorded_at,
            delivered_at=time.perf_counter(),
        )
