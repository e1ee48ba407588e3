"""`python -m stagegate` / `stagegate`: look at a gate the way the functions do, and recompute it by hand.

`status` prints a deployment name's pipeline as the Environments' statuses show it
(`stagegate.pipeline_view`).
`explain` prints an Environment's gate, what the upstream recorded of each candidate build, and for
each of the governed Rollout's candidates whether it is allowed and why not. `recompute` runs the very
recompute the functions run (one Environment or `--all`); `--dry-run` shows what would be written and writes
nothing. Exit codes: 0 done, 1 some Environment failed, 2 a configuration or API error, 3 `explain`
could not read the upstream's bake results (its answer is incomplete); `status`: 1 no Environment of
that name, 4 one carries no status yet. Configuration is the functions'
own (KUBECONFIG, GITHUB_TOKEN or GITHUB_APP_*, GITHUB_API_URL, ...).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from shared.bake import allowed_tags, candidate_revisions, describe_result, release_candidates, results_for
from shared.errors import PermanentError, StagegateError
from shared.evidence import read_evidence
from shared.gate import is_owned_by
from shared.upstream import github_environment, unknown_upstream
from shared.views import Environment, RolloutGate
from stagegate.kube import KubeGates, api_client
from stagegate.logs import redact
from stagegate.pipeline_view import print_pipeline
from stagegate.recompute_service import RecomputeStore, Upstream, recompute, upstream_from
from stagegate.resync_service import resync
from stagegate.settings import CREDENTIALS, ConfigError, Settings


class DryRun(KubeGates):
    """Reads like the adapter, records writes instead of making them, and reads its own writes back
    (a would-be gate is listed as if it existed), so the recompute converges as it would for real."""

    def __init__(self, inner: KubeGates) -> None:
        super().__init__(inner.api, inner.timeout)
        self.writes: list[str] = []
        self._written: dict[tuple[str, str], dict[str, Any]] = {}

    def list_gates(self, namespace: str | None) -> list[RolloutGate]:
        real = {(g.namespace, g.name): g for g in super().list_gates(namespace)}
        for (ns, name), raw in self._written.items():
            if namespace is None or ns == namespace:
                real[(ns, name)] = RolloutGate.from_raw(raw)
        return list(real.values())

    def create_gate(self, namespace: str, body: Any) -> RolloutGate:
        self.writes.append(
            f"would create RolloutGate {namespace}/{body['metadata']['name']}: {json.dumps(body['spec'])}"
        )
        raw = json.loads(json.dumps(body))
        raw["metadata"].update(namespace=namespace, resourceVersion="dry-run")
        self._written[(namespace, body["metadata"]["name"])] = raw
        return RolloutGate.from_raw(raw)

    def patch_gate(self, namespace: str, name: str, patch: Any, resource_version: str) -> RolloutGate:
        self.writes.append(
            f"would patch RolloutGate {namespace}/{name} (at resourceVersion {resource_version}): "
            + json.dumps(patch)
        )
        current = self._written.get((namespace, name)) or next(
            (dict(g.raw) for g in super().list_gates(namespace) if g.name == name),
            {"metadata": {"name": name, "namespace": namespace}},
        )
        raw = _merge_patch(current, patch)
        raw["metadata"]["resourceVersion"] = "dry-run"
        self._written[(namespace, name)] = raw
        return RolloutGate.from_raw(raw)

    def warn(self, env: Environment, reason: str, message: str) -> None:
        self.writes.append(f"would record Event {reason} on {env.key}: {message}")

    def tell(self, env: Environment, kind: str, reason: str, message: str) -> None:
        self.writes.append(f"would record {kind} Event {reason} on {env.key}: {message}")


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as the API server applies `application/merge-patch+json`."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge_patch(merged.get(key), value)
    return merged


class _SaysDryRun(logging.Filter):
    """In a dry run every log line says so: nothing it reports was written."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = f"dry run, nothing written: {record.msg}"
        return True


class _WarningsOnly(logging.Filter):
    """The command's answer is its output (each gate written or not is a line of it): the log adds only
    what went wrong."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


class _HumanLines(logging.Formatter):
    """A person reads the command's stderr: one plain line per record, its fields after it (the
    functions keep their JSON lines for a log pipeline)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        detail = ", ".join(f"{k}={v}" for k, v in fields.items()) if isinstance(fields, dict) else ""
        line = f"stagegate: {record.levelname.lower()}: {record.getMessage()}"
        return redact(f"{line} ({detail})" if detail else line)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


INCOMPLETE = 3
"""Exit code of `explain` when it could not read the upstream's bake results (the answer is partial)."""


def explain(env: Environment, kube: RecomputeStore, upstream: Upstream | None, out: TextIO) -> bool:
    """Print why each of the governed Rollout's candidates is allowed or not; False when the answer is
    incomplete because the upstream's bake results could not be read."""
    print(f"Environment {env.key}: rollout {env.rollout_name}, project {env.project or '-'}", file=out)
    gates = [g for g in kube.list_gates(env.namespace) if is_owned_by(g, env)]
    for gate in gates:
        evidence = read_evidence(gate)
        held = _count(len(evidence.vetoes), "version")
        print(f"  gate {gate.name}: allowedVersions={_listed(gate.allowed_versions)} passing={gate.passing} "
              f"(computed for upstream {evidence.upstream or 'unknown'}, {held} held back from lagging "
              "answers)", file=out)  # fmt: skip
    if not gates:
        print("  no gate owned by this Environment", file=out)
    rel = env.relationship
    if rel is None:
        print("  no relationship: the gate does not restrict versions", file=out)
        return True
    rollout = kube.get_rollout(env.namespace, env.rollout_name)
    candidates = release_candidates(rollout) if rollout is not None else ()
    print(f"  relationship: {rel.type} {rel.environment}", file=out)
    unknown = unknown_upstream(env, kube.list_environments([env.namespace]))
    if upstream is None:
        if unknown is not None:
            print(f"  {unknown.sentence(env, github=False)}", file=out)
        print(
            "  neither GITHUB_TOKEN nor GITHUB_APP_* is set: cannot read the upstream's bake results",
            file=out,
        )
        return False
    if not env.project:
        print("  spec.backend.project is not set: cannot read the upstream's bake results", file=out)
        return False
    where = github_environment(env, rel.environment)
    lookups = upstream.commit_deployments(env.project, where, candidate_revisions(candidates))
    recorded = {lookup.environment_records for lookup in lookups.values()}
    if unknown is not None:
        print(f"  {unknown.sentence(env, github=recorded == {0})}", file=out)
    results = results_for(candidates, lookups)
    print(f"  bake records in {where} (GitHub {env.project}), per candidate build:", file=out)
    for candidate, result in results.items():
        found = describe_result(result) if result.deployed or not result.note else result.note
        print(f"    {candidate.tag} ({candidate.revision}): {found}", file=out)
    if not results:
        print("    none for the candidates' revisions", file=out)
    print(f"  candidates of Rollout {env.rollout_name}:", file=out)
    verdicts = allowed_tags(rel.type, rel.environment, candidates, results)
    for candidate in candidates:
        print(f"    {candidate.tag}: {verdicts.reasons[candidate.tag]}", file=out)
    if not candidates:
        print("    none (the Rollout lists no release candidates)", file=out)
    print(f"  the recompute would allow: {list(verdicts.tags)}", file=out)
    return True


def _listed(versions: tuple[str, ...] | None) -> str:
    return "null (no restriction)" if versions is None else json.dumps(list(versions))


def version() -> str:
    """The installed distribution's version: `pyproject.toml`'s, the one place it is written."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("stagegate")
    except PackageNotFoundError:
        return "unknown (not installed: pip install .)"


def _command(
    commands: Any, name: str, what: str, exits: str, target: str, target_help: str, *, optional: bool = False
) -> argparse.ArgumentParser:
    """A subcommand that names its object and its namespace, and says what its exit codes mean."""
    command: argparse.ArgumentParser = commands.add_parser(name, help=what, epilog=f"exit codes: {exits}")
    command.add_argument(target, nargs="?" if optional else None, help=target_help)
    command.add_argument(
        "-n", "--namespace", default="default", help="the namespace (default: default, as kubectl's)"
    )
    return command


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="stagegate", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    _command(
        commands, "explain", "why each candidate of an Environment is allowed or not",
        "0 the answer is complete, 2 a configuration or API error (the Environment not found among them), "
        "3 the upstream's bake results could not be read (the answer is partial)",
        "environment", "the Environment's metadata.name",
    )  # fmt: skip
    _command(
        commands, "status", "a deployment name's pipeline: version, bake, gate and wait of each environment",
        "0 printed, 1 no Environment of that name, 2 a configuration or API error, 4 an Environment carries "
        "no status yet",
        "name", "the Environments' spec.name (with or without kuberik/)",
    )  # fmt: skip
    recompute_cmd = _command(
        commands, "recompute", "recompute one Environment's gate, or --all",
        "0 done, 1 some Environment failed (named on stderr), 2 a configuration or API error",
        "environment", "the Environment's metadata.name", optional=True,
    )  # fmt: skip
    recompute_cmd.add_argument(
        "--all", action="store_true", help="every Environment (STAGEGATE_NAMESPACES applies)"
    )
    recompute_cmd.add_argument(
        "--dry-run", action="store_true", help="print the writes instead of making them"
    )
    args = parser.parse_args(argv)
    if args.command == "recompute" and bool(args.all) == bool(args.environment):
        parser.error("recompute takes an ENVIRONMENT or --all")
    filters = [_WarningsOnly()] + ([_SaysDryRun()] if getattr(args, "dry_run", False) else [])
    handlers = logging.getLogger("stagegate").handlers
    formatters = [handler.formatter for handler in handlers]
    for handler in handlers:
        handler.setFormatter(_HumanLines())
        for log_filter in filters:
            handler.addFilter(log_filter)
    try:
        return _run(args, out)
    except (ConfigError, StagegateError) as exc:
        print(f"stagegate: {exc}", file=sys.stderr)
        return 2
    finally:
        for handler, formatter in zip(handlers, formatters, strict=True):
            handler.setFormatter(formatter)
            for log_filter in filters:
                handler.removeFilter(log_filter)


def _run(args: argparse.Namespace, out: TextIO) -> int:
    settings = Settings.from_env()
    kube = KubeGates(api_client(settings.kubeconfig), timeout=settings.github_deadline_seconds)
    if args.command == "status":
        environments = kube.list_environments([args.namespace])
        return print_pipeline(args.name, args.namespace, environments, kube.list_gates(args.namespace), out)
    upstream = upstream_from(settings, settings.github_deadline_seconds)
    if args.command == "explain":
        complete = explain(_environment(kube, args.namespace, args.environment), kube, upstream, out)
        return 0 if complete else INCOMPLETE
    if upstream is None:
        raise ConfigError(f"{CREDENTIALS} is required to read bake results from GitHub")
    store = DryRun(kube) if args.dry_run else kube
    if args.all:
        summary = resync(
            store, upstream, settings.namespaces, settings.kube_conflict_retries,
            repositories=settings.github_repositories,
        )  # fmt: skip
        outcomes, errors = summary["gates"], summary["errors"]
    else:
        env = _environment(kube, args.namespace, args.environment)
        report = recompute(
            [env], store, upstream, settings.kube_conflict_retries, repositories=settings.github_repositories
        )
        outcomes = [o.to_json() for o in report.outcomes]
        errors = [f"{key}: {why}" for key, why in report.errors.items()]
    for outcome in outcomes:
        print(
            f"{outcome['environment']}: gate {outcome['gate']} {outcome['action']}: {outcome['reason']}",
            file=out,
        )
    for write in store.writes if isinstance(store, DryRun) else []:
        print(write, file=out)
    for error in errors:
        print(f"stagegate: {error}", file=sys.stderr)
    return 1 if errors else 0


def _environment(kube: KubeGates, namespace: str, name: str) -> Environment:
    env = kube.get_environment(namespace, name)
    if env is None:
        raise PermanentError(f"Environment {namespace}/{name} not found")
    return env
