"""A small Python port of kuberik's rollout controller, as far as it decides which version is deployed.

Why it exists: stagegate's guarantee is enforced where a version takes effect, on the rollout
controller's writes to Flux objects (DESIGN.md, invariant 9). To show and test what the controller
does with gates, human overrides and a write the kube-apiserver refuses, this model replays its deploy
decisions on a real kube-apiserver, as the controller is (`semantics="current"`, kuberik/rollout-controller
7cd0117) and as it was before that commit (`"before-7cd0117"`). Local and test tooling only: the
deployed functions never import it; it reads no registry and no GitHub.

Rules ported (Go functions of `internal/controller/rollout_controller.go`):

- Candidates (`getNextReleaseCandidates`): `status.availableReleases`, oldest first as the controller's
  ImagePolicy step appends them (here the caller writes them, e.g. with `publish`), newest first; with
  history only those newer than `history[0].version.tag`, none when that tag is not among them.
- Gates (`evaluateGates`): the namespace's RolloutGates whose `spec.rolloutRef.name` is the Rollout.
  `passing: false` blocks (and filters nothing); otherwise a non-null `allowedVersions` filters the
  candidates (`[]` leaves none); null or absent restricts nothing. `rollout.kuberik.com/bypass-gates:
  <tag>` makes that one candidate the result and the gates passing, if the tag is a candidate.
- Manual deploys (`hasManualDeployment`): `spec.wantedVersion` set, or a non-empty
  `rollout.kuberik.com/force-deploy`. They skip gate, bake and failed-bake blocking.
- Blocking (`Reconcile`): an automatic deploy waits while `history[0].bakeStatus` is Deploying or
  InProgress, and while a gate is not passing or no candidate is left: since 7cd0117 only once
  `status.history` is non-empty, and a first deploy whose gates left no candidate takes the raw
  candidates. After a Failed bake a new automatic version waits unless `unblock-failed: "true"`.
- Choice (`selectWantedRelease`): wantedVersion (any tag) > force-deploy (must be an available release,
  else an error) > `gatedReleaseCandidates[0]`; nothing to do when it is `history[0].version.tag`.
- Deploy (`deployRelease`, `patchOCIRepositories`, `patchKustomizations`): cancel a baking previous
  entry; server-side apply (field manager `rollout-controller`, forced) `spec.ref` with the tag on each
  `source.toolkit.fluxcd.io/v1` OCIRepository annotated `rollout.kuberik.com/rollout: <rollout>`, then
  `spec.postBuild.substitute` with `<var>: <tag>` (the tag, not the OCI version) on each
  `kustomize.toolkit.fluxcd.io/v1` Kustomization annotated `rollout.kuberik.com/substitute.<var>.from:
  <rollout>`, skipping objects already at the tag; only then prepend the history entry, cut history to
  `spec.versionHistoryLimit` (10), write status, and clear the one-shot annotations (bypass-gates,
  unblock-failed, force-deploy when it named the deployed tag together with deploy-message/deploy-user,
  else stale deploy-message/deploy-user). wantedVersion is never cleared. A refused write (any API
  error) ends the deploy: writes already made stay, no history entry, Ready=False/RolloutFailed with
  the error, and the pass is retried (`Reconcile` returns the error).

Left out: ImagePolicy and OCI manifests (`updateAvailableReleases`), HealthChecks and bake timing
(`evaluateHealthChecks`, `handleBakeTime`: a new entry's bake is `bake`, moved on only by `start_bake`,
`finish_bake` or the caller), the retry annotation, RolloutSchedules, Events, the DeploymentBlocked,
BakeFailureDisabled and ReleasesUpdated conditions, release retention, requeue timing (a failed pass is
retried at the next poll, without backoff). Where Go's order is arbitrary (map order of a
Kustomization's annotations, informer list order) the model takes name order.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

Semantics = Literal["current", "before-7cd0117"]
Bake = Literal["Succeeded", "Deploying", "spec"]
Outcome = Literal["deployed", "unchanged", "blocked", "idle", "failed"]
Obj = dict[str, Any]

KUBERIK = ("kuberik.com", "v1alpha1")
OCI_REPOSITORY = ("source.toolkit.fluxcd.io", "v1", "ocirepositories", "OCIRepository")
KUSTOMIZATION = ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations", "Kustomization")
FIELD_MANAGER = "rollout-controller"
ROLLOUT_ANNOTATION = "rollout.kuberik.com/rollout"
SUBSTITUTE_FROM = re.compile(r"^rollout\.kuberik\.com/substitute\.([^.]+)\.from$")
FORCE_DEPLOY = "rollout.kuberik.com/force-deploy"
BYPASS_GATES = "rollout.kuberik.com/bypass-gates"
UNBLOCK_FAILED = "rollout.kuberik.com/unblock-failed"
DEPLOY_MESSAGE = "rollout.kuberik.com/deploy-message"
DEPLOY_USER = "rollout.kuberik.com/deploy-user"
BAKING = ("Deploying", "InProgress")
OCI_REF_FIELDS = ("digest", "semver", "semverFilter", "tag")
# Go's `omitempty` on these status lists: an empty one is not written at all.
OMIT_EMPTY = (
    "conditions",
    "history",
    "availableReleases",
    "releaseCandidates",
    "gatedReleaseCandidates",
    "gates",
)
BAKE_STARTED = "Bake started, monitoring for errors."
BAKE_ENDED = {
    "Succeeded": "Bake time completed successfully (no errors within bake time).",
    "Failed": "Bake failed (ended by the rollout model).",
}
BAKE_SUMMARY = {
    "Succeeded": "Bake completed successfully",
    "Deploying": "Waiting for health checks to become healthy before starting bake",
}


@dataclass(frozen=True)
class Decision:
    """What one reconcile of one Rollout decided and why, in words (for tests and a demo timeline)."""

    rollout: str
    outcome: Outcome
    reason: str
    version: str | None = None
    candidates: tuple[str, ...] = ()
    gated: tuple[str, ...] = ()
    applied: tuple[str, ...] = ()
    """Flux objects written in this pass ("OCIRepository/app"), also when the deploy then failed."""
    history_id: int | None = None
    error: str | None = None
    status_code: int | None = None

    @property
    def requeue(self) -> bool:
        """Whether the controller would retry this Rollout (it returned an error)."""
        return self.outcome == "failed"


@dataclass(frozen=True)
class GateVerdict:
    """`evaluateGates`' result: gatedReleaseCandidates, gatesPassing, the status summaries and condition."""

    candidates: list[Obj]
    passing: bool
    bypassed: str | None
    summaries: list[Obj]
    condition: tuple[str, str, str]


class ForceDeployUnavailable(ValueError):
    """The force-deploy annotation names a tag that is not an available release."""


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    """An object's annotations (empty when it has none)."""
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def tags(versions: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The tags of a list of VersionInfo, in order."""
    return tuple(str(v.get("tag")) for v in versions)


def next_release_candidates(releases: Sequence[Obj], history: Sequence[Obj]) -> list[Obj]:
    """`getNextReleaseCandidates`: newest first, only those newer than the deployed tag."""
    newest_first = list(reversed(releases))
    if not history:
        return newest_first
    current = history[0]["version"]["tag"]
    index = next((i for i, r in enumerate(newest_first) if r.get("tag") == current), None)
    return [] if index is None else newest_first[:index]


def evaluate_gates(rollout: Obj, gates: Sequence[Obj], candidates: list[Obj]) -> GateVerdict:
    """`evaluateGates`: filter the candidates through every gate of the Rollout, or bypass them."""
    bypass = annotations_of(rollout).get(BYPASS_GATES) or ""
    bypassed = bypass if bypass and bypass in tags(candidates) else None
    gated, passing, summaries = list(candidates), True, []
    for gate in gates:
        spec = gate.get("spec") or {}
        if (spec.get("rolloutRef") or {}).get("name") != rollout["metadata"]["name"]:
            continue
        # `passing: false` blocks and filters nothing; otherwise a non-null list filters.
        allowed = None if spec.get("passing") is False else spec.get("allowedVersions")
        if bypassed is None:
            passing = passing and spec.get("passing") is not False
            gated = gated if allowed is None else [c for c in gated if c.get("tag") in allowed]
        summaries.append(_gate_summary(gate, allowed, candidates, bypassed))
    if bypassed is not None:
        gated, passing = [c for c in candidates if c.get("tag") == bypassed][:1], True
        condition = ("True", "GatesBypassed", f"Gates bypassed for version {bypassed}")
    elif not passing:
        condition = ("False", "SomeGatesBlocking", "Some gates are blocking deployment")
    elif not gated:
        condition = ("False", "NoAllowedVersions", "No release candidates are allowed by all gates")
    else:
        condition = ("True", "AllGatesPassing", "All gates are passing")
    return GateVerdict(gated, passing, bypassed, summaries, condition)


def _gate_summary(gate: Obj, allowed: list[str] | None, candidates: list[Obj], bypassed: str | None) -> Obj:
    """One `status.gates` entry (`RolloutGateStatusSummary`), as `evaluateGates` words it."""
    passing = (gate.get("spec") or {}).get("passing")
    summary: Obj = {"name": gate["metadata"]["name"]}
    if passing is not None:
        summary["passing"] = passing
    if allowed is not None:
        summary["allowedVersions"] = list(allowed)
    if bypassed is not None:
        summary.update(message=f"Gate bypassed for version {bypassed}", bypassGates=True)
    elif passing is False:
        summary["message"] = "Gate is not passing"
    elif allowed is not None and not set(tags(candidates)) & set(allowed):
        summary["message"] = "Gate does not allow any release candidate"
    else:
        summary["message"] = "Gate is passing"
    return summary


def has_manual_deployment(rollout: Obj) -> bool:
    """`hasManualDeployment`: spec.wantedVersion set, or a non-empty force-deploy annotation."""
    return (rollout.get("spec") or {}).get("wantedVersion") is not None or bool(
        annotations_of(rollout).get(FORCE_DEPLOY)
    )


def select_wanted_release(
    rollout: Obj, releases: Sequence[Obj], gated: Sequence[Obj]
) -> tuple[str | None, str]:
    """`selectWantedRelease`: the tag to run and why; raise `ForceDeployUnavailable`."""
    wanted = (rollout.get("spec") or {}).get("wantedVersion")
    if wanted is not None:
        return str(wanted), f"spec.wantedVersion is {wanted} (manual: gates not consulted)"
    forced = annotations_of(rollout).get(FORCE_DEPLOY) or ""
    if forced:
        if forced not in tags(releases):
            raise ForceDeployUnavailable(f"force deploy version {forced} is not in available releases")
        return forced, f"annotation force-deploy is {forced} (manual: gates not consulted)"
    if gated:
        return str(gated[0]["tag"]), "newest candidate the gates allow (gatedReleaseCandidates[0])"
    return None, "no release candidates"


def set_condition(status: Obj, kind: str, state: str, reason: str, message: str, now: str) -> None:
    """`meta.SetStatusCondition`: lastTransitionTime moves only when the condition's status changes."""
    conditions = status.setdefault("conditions", [])
    for condition in conditions:
        if condition.get("type") == kind:
            if condition.get("status") != state:
                condition.update(status=state, lastTransitionTime=now)
            condition.update(reason=reason, message=message)
            return
    conditions.append(
        {"type": kind, "status": state, "reason": reason, "message": message, "lastTransitionTime": now}
    )


def api_message(exc: ApiException) -> str:
    """The kube-apiserver's own words for a refused request (its Status message), else the reason."""
    try:
        return str(json.loads(exc.body)["message"])
    except (TypeError, ValueError, KeyError):
        return f"{exc.status} {exc.reason}"


class _DeployFailed(Exception):
    def __init__(self, message: str, exc: ApiException) -> None:
        super().__init__(message)
        self.status = exc.status


class RolloutModel:
    """Replays the rollout controller's deploy decisions for the Rollouts of one namespace."""

    def __init__(
        self,
        api_client: Any,
        namespace: str,
        *,
        semantics: Semantics = "current",
        bake: Bake = "Succeeded",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        timeout: float = 10,
    ) -> None:
        if semantics not in get_args(Semantics) or bake not in get_args(Bake):
            raise ValueError(f"unknown semantics {semantics!r} or bake {bake!r}")
        self.custom = client.CustomObjectsApi(api_client)
        self.namespace, self.semantics, self.bake = namespace, semantics, bake
        self.clock, self.timeout = clock, timeout

    def reconcile(self, name: str) -> Decision | None:
        """One pass of `Reconcile` for one Rollout: None when it does not exist."""
        try:
            rollout = self._rollout(name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            return Decision(
                name, "failed", "reading the Rollout failed", error=api_message(exc), status_code=exc.status
            )
        try:
            return self._reconcile(rollout)
        except ApiException as exc:
            return Decision(
                name, "failed", "an API call failed", error=api_message(exc), status_code=exc.status
            )

    def _reconcile(self, rollout: Obj) -> Decision:
        name, status, now = rollout["metadata"]["name"], rollout.setdefault("status", {}), self._now()
        releases = status.get("availableReleases") or []
        if not releases:
            set_condition(status, "Ready", "False", "RolloutSucceeded", "No releases available", now)
            self._write_status(rollout)
            return Decision(name, "idle", "no releases available")
        candidates = next_release_candidates(releases, status.get("history") or [])
        verdict = evaluate_gates(rollout, self._list(*KUBERIK, "rolloutgates"), candidates)
        status.update(
            releaseCandidates=candidates, gatedReleaseCandidates=verdict.candidates, gates=verdict.summaries
        )
        set_condition(status, "GatesPassing", *verdict.condition, now)
        rollout = self._write_status(rollout)
        status, history = rollout.setdefault("status", {}), rollout["status"].get("history") or []

        def decide(outcome: Outcome, reason: str, version: str | None = None, **more: Any) -> Decision:
            return Decision(
                name, outcome, reason, version, tags(candidates), tags(verdict.candidates), **more
            )

        manual, bake = has_manual_deployment(rollout), history[0].get("bakeStatus") if history else None
        if bake in BAKING and not manual:
            return decide("blocked", f"bake of {history[0]['version']['tag']} is {bake}")
        if not manual and (history or self.semantics == "before-7cd0117"):
            if not verdict.passing:
                return decide("blocked", "a gate is not passing")
            if not verdict.candidates:
                return decide("blocked", "the gates allow none of the candidates")
        fallback = not history and not verdict.candidates and self.semantics == "current"
        try:
            wanted, why = select_wanted_release(
                rollout, releases, candidates if fallback else verdict.candidates
            )
        except ForceDeployUnavailable as exc:
            set_condition(status, "Ready", "False", "RolloutFailed", str(exc), now)
            self._write_status(rollout)
            return decide("failed", "force-deploy names no available release", error=str(exc))
        if wanted is None:
            set_condition(status, "Ready", "False", "RolloutSucceeded", "No release candidates found", now)
            self._write_status(rollout)
            return decide("idle", "no release candidates")
        if not history and not manual and self.semantics == "current" and (fallback or not verdict.passing):
            why = "first deploy: gate blocking skipped on empty history (7cd0117), " + (
                "the gates allowed no candidate, so the newest raw candidate" if fallback else why
            )
        if history and wanted == history[0]["version"]["tag"]:
            return decide("unchanged", f"{wanted} is already deployed", wanted)
        if bake == "Failed" and not manual and annotations_of(rollout).get(UNBLOCK_FAILED) != "true":
            return decide("blocked", f"bake of {history[0]['version']['tag']} failed", wanted)
        applied: list[str] = []
        try:
            entry_id = self._deploy(rollout, wanted, applied)
        except _DeployFailed as exc:
            # `updateRolloutStatusOnError`: the in-memory status (a cancelled bake included), no new entry.
            set_condition(rollout["status"], "Ready", "False", "RolloutFailed", str(exc), self._now())
            error = str(exc)
            try:
                self._write_status(rollout)
            except ApiException as also:
                error += f"; writing status: {api_message(also)}"
            refused = {"applied": tuple(applied), "error": error, "status_code": exc.status}
            return decide("failed", f"deploy of {wanted} refused", wanted, **refused)
        return decide("deployed", why, wanted, applied=tuple(applied), history_id=entry_id)

    def _deploy(self, rollout: Obj, wanted: str, applied: list[str]) -> int:
        """`deployRelease`: Flux writes first, then the history entry, then the one-shot annotations."""
        name, status, notes = rollout["metadata"]["name"], rollout["status"], annotations_of(rollout)
        used = {
            "bypass": bool(notes.get(BYPASS_GATES)),
            "force": notes.get(FORCE_DEPLOY) == wanted,
            "unblock": notes.get(UNBLOCK_FAILED) == "true",
        }
        history, now = list(status.get("history") or []), self._now()
        if history and history[0].get("bakeStatus") in BAKING:
            history[0] = history[0] | {
                "bakeStatus": "Cancelled",
                "bakeStatusMessage": "Bake cancelled due to new deployment.",
                "bakeEndTime": now,
                "message": f"Deployment cancelled due to new deployment of version {wanted}",
            }
            status["history"] = history
        self._patch_oci_repositories(name, wanted, applied)
        self._patch_kustomizations(name, wanted, applied)
        status["history"] = [self._entry(rollout, wanted, history, now, used), *history]
        spec = rollout.get("spec") or {}
        del status["history"][int(spec.get("versionHistoryLimit") or 10) :]
        extras = " and ".join(
            w for w, k in (("gate bypass", "bypass"), ("failed bake unblock", "unblock")) if used[k]
        )
        summary = BAKE_SUMMARY[status["history"][0]["bakeStatus"]]
        message = f"Release deployed successfully{' with ' + extras if extras else ''}. {summary}"
        set_condition(status, "Ready", "True", "RolloutSucceeded", message, now)
        releases = status.get("availableReleases") or []
        status["releaseCandidates"] = next_release_candidates(releases, status["history"])
        self._write_status(rollout)
        clear = [BYPASS_GATES] if used["bypass"] else []
        clear += [UNBLOCK_FAILED] if used["unblock"] else []
        if used["force"]:
            clear += [FORCE_DEPLOY, DEPLOY_MESSAGE, DEPLOY_USER]
        else:
            clear += [k for k in (DEPLOY_MESSAGE, DEPLOY_USER) if k in notes]
        if clear:
            patch = {"metadata": {"annotations": dict.fromkeys(clear)}}
            self.custom.patch_namespaced_custom_object(
                *KUBERIK, self.namespace, "rollouts", name, patch,
                _content_type="application/merge-patch+json", _request_timeout=self.timeout,
            )  # fmt: skip
        return int(status["history"][0]["id"])

    def _entry(self, rollout: Obj, wanted: str, history: list[Obj], now: str, used: dict[str, bool]) -> Obj:
        """The new `DeploymentHistoryEntry` as `deployRelease` writes it (`bake` decides its bakeStatus)."""
        spec, notes, manual = (
            rollout.get("spec") or {},
            annotations_of(rollout),
            has_manual_deployment(rollout),
        )
        configured = any(
            spec.get(k) is not None for k in ("bakeTime", "deployTimeout", "healthCheckSelector")
        )
        baking = self.bake == "Deploying" or (self.bake == "spec" and configured)
        releases = rollout["status"].get("availableReleases") or []
        user = notes.get(DEPLOY_USER) if manual else None
        return {
            "id": int(history[0]["id"]) + 1 if history and history[0].get("id") is not None else 1,
            "version": next((dict(r) for r in releases if r.get("tag") == wanted), {"tag": wanted}),
            "timestamp": now,
            "message": deployment_message(notes, manual, **used),
            "triggeredBy": (
                {"kind": "User", "name": user} if user else {"kind": "System", "name": FIELD_MANAGER}
            ),
            "bakeStatus": "Deploying" if baking else "Succeeded",
            "bakeStatusMessage": (
                "Waiting for health checks to become healthy before starting bake."
                if baking
                else "No bake time configured, deployment completed immediately."
            ),
        }

    def _patch_oci_repositories(self, rollout: str, wanted: str, applied: list[str]) -> None:
        """`patchOCIRepositories`: apply `spec.ref` (the existing ref, tag replaced) where the tag differs."""
        for repo in self._list(*OCI_REPOSITORY[:3]):
            if annotations_of(repo).get(ROLLOUT_ANNOTATION) != rollout:
                continue
            ref = (repo.get("spec") or {}).get("ref") or {}
            if (ref.get("tag") or "") != wanted:
                desired = {k: ref[k] for k in OCI_REF_FIELDS if ref.get(k)} | {"tag": wanted}
                self._apply(OCI_REPOSITORY, repo["metadata"]["name"], {"ref": desired}, applied)

    def _patch_kustomizations(self, rollout: str, wanted: str, applied: list[str]) -> None:
        """`patchKustomizations`: apply `spec.postBuild.substitute` with `<var>: <tag>` where it differs."""
        for kustomization in self._list(*KUSTOMIZATION[:3]):
            notes = sorted(annotations_of(kustomization).items())
            matches = (SUBSTITUTE_FROM.match(key) for key, value in notes if value == rollout)
            var = next((m.group(1) for m in matches if m), None)
            substitute = ((kustomization.get("spec") or {}).get("postBuild") or {}).get("substitute") or {}
            if var is not None and substitute.get(var, "") != wanted:
                body = {"postBuild": {"substitute": {**substitute, var: wanted}}}
                self._apply(KUSTOMIZATION, kustomization["metadata"]["name"], body, applied)

    def _apply(self, kind: tuple[str, str, str, str], name: str, spec: Obj, applied: list[str]) -> None:
        group, version, plural, kind_name = kind
        body = {
            "apiVersion": f"{group}/{version}", "kind": kind_name,
            "metadata": {"name": name, "namespace": self.namespace}, "spec": spec,
        }  # fmt: skip
        try:
            self.custom.patch_namespaced_custom_object(
                group, version, self.namespace, plural, name, body, field_manager=FIELD_MANAGER, force=True,
                _content_type="application/apply-patch+yaml", _request_timeout=self.timeout,
            )  # fmt: skip
        except ApiException as exc:
            raise _DeployFailed(f"failed to apply {kind_name} {name}: {api_message(exc)}", exc) from exc
        applied.append(f"{kind_name}/{name}")

    def publish(self, rollout: str, tag: str, revision: str | None = None) -> None:
        """The ImagePolicy step (`updateAvailableReleases`): append a new release, newest last."""

        def add(status: Obj) -> None:
            releases = status.setdefault("availableReleases", [])
            if tag not in tags(releases):
                releases.append({"tag": tag} | ({"revision": revision} if revision else {}))

        self._change_status(rollout, add)

    def start_bake(self, rollout: str, message: str = BAKE_STARTED) -> None:
        """Start the newest entry's bake as `handleBakeTime` does once its health checks are healthy
        (InProgress, bakeStartTime now); the model checks no health itself."""

        def start(status: Obj) -> None:
            if not status.get("history"):
                raise ValueError(f"Rollout {rollout} has no history entry to start baking")
            entry = status["history"][0]
            entry.update(bakeStatus="InProgress", bakeStartTime=self._now(), bakeStatusMessage=message)

        self._change_status(rollout, start)

    def finish_bake(
        self, rollout: str, result: Literal["Succeeded", "Failed"] = "Succeeded", message: str | None = None
    ) -> None:
        """End the newest entry's bake as `handleBakeTime` would; the model does not time bakes itself."""

        def finish(status: Obj) -> None:
            if not status.get("history"):
                raise ValueError(f"Rollout {rollout} has no history entry to finish baking")
            entry = status["history"][0]
            entry.update(bakeStatus=result, bakeEndTime=self._now())
            entry.setdefault("bakeStartTime", entry["timestamp"])
            entry["bakeStatusMessage"] = message or BAKE_ENDED[result]

        self._change_status(rollout, finish)

    def run(
        self,
        stop: threading.Event,
        interval: float = 0.2,
        on_decision: Callable[[Decision], None] | None = None,
    ) -> None:
        """Until `stop` is set: reconcile every Rollout of the namespace whenever a Rollout or RolloutGate
        changed (polled every `interval` seconds) and after a failed pass; report changed decisions."""
        seen: object = None
        retry = False
        last: dict[str, Decision] = {}
        while not stop.is_set():
            try:
                rollouts = self._list(*KUBERIK, "rollouts")
                gates = self._list(*KUBERIK, "rolloutgates")
            except (ApiException, urllib3.exceptions.HTTPError):
                stop.wait(interval)
                continue
            fingerprint = [
                (o["metadata"]["name"], o["metadata"]["resourceVersion"]) for o in rollouts + gates
            ]
            if fingerprint != seen or retry:
                seen, retry = fingerprint, False
                for rollout in rollouts:
                    if stop.is_set():
                        return
                    try:
                        decision = self.reconcile(rollout["metadata"]["name"])
                    except urllib3.exceptions.HTTPError:
                        retry = True
                        continue
                    if decision is None:
                        continue
                    retry |= decision.requeue
                    if on_decision is not None and last.get(decision.rollout) != decision:
                        on_decision(decision)
                    last[decision.rollout] = decision
            stop.wait(interval)

    def _change_status(self, rollout: str, change: Callable[[Obj], None], attempts: int = 5) -> None:
        for attempt in range(attempts):
            obj = self._rollout(rollout)
            change(obj.setdefault("status", {}))
            try:
                self._write_status(obj)
                return
            except ApiException as exc:
                if exc.status != 409 or attempt == attempts - 1:
                    raise

    def _rollout(self, name: str) -> Obj:
        obj: Obj = self.custom.get_namespaced_custom_object(
            *KUBERIK, self.namespace, "rollouts", name, _request_timeout=self.timeout
        )
        return obj

    def _list(self, group: str, version: str, plural: str) -> list[Obj]:
        raw = self.custom.list_namespaced_custom_object(
            group, version, self.namespace, plural, _request_timeout=self.timeout
        )
        return sorted(raw.get("items") or [], key=lambda o: str(o["metadata"]["name"]))

    def _write_status(self, rollout: Obj) -> Obj:
        """`Status().Update`: the whole status, conditional on the Rollout's resourceVersion."""
        status = rollout.setdefault("status", {})
        for key in OMIT_EMPTY:
            if key in status and not status[key]:
                del status[key]
        stored: Obj = self.custom.replace_namespaced_custom_object_status(
            *KUBERIK, self.namespace, "rollouts", rollout["metadata"]["name"], rollout,
            _request_timeout=self.timeout,
        )  # fmt: skip
        return stored

    def _now(self) -> str:
        return self.clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def deployment_message(
    notes: Mapping[str, str], manual: bool, bypass: bool, force: bool, unblock: bool
) -> str:
    """`generateDeploymentMessage`: a manual deploy's deploy-message annotation, else what triggered it."""
    if manual and notes.get(DEPLOY_MESSAGE):
        return notes[DEPLOY_MESSAGE]
    parts = ["Manual deployment" if manual else "Automatic deployment"]
    parts += [text for text, on in (("with force deploy", force), ("with gate bypass", bypass),
                                     ("with failed bake unblock", unblock)) if on]  # fmt: skip
    return ", ".join(parts)
