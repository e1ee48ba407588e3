"""The command-line tool against the real kube-apiserver and the GitHub stand-in."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from tests.functions.test_github_webhook import App, rev


@pytest.fixture
def app(custom, gates, fake, namespace, kube_stack, monkeypatch: pytest.MonkeyPatch) -> App:
    monkeypatch.setenv("KUBECONFIG", str(kube_stack.function_kubeconfig))
    monkeypatch.setenv("GITHUB_TOKEN", fake.token)
    monkeypatch.setenv("GITHUB_API_URL", fake.url)
    monkeypatch.setenv("STAGEGATE_NAMESPACES", namespace)
    application = App(custom, gates, fake, namespace)
    application.environment("staging")
    application.environment("prod", upstream="staging")
    application.candidates("prod", ("v1", rev(1)), ("v2", rev(2)), ("v3", None))
    application.bake("staging", rev(1))
    application.bake("staging", rev(2), "failure", "Bake failed: p99 latency")
    return application


def cli(*argv: str) -> tuple[int, str]:
    from stagegate.cli import main

    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_explain_says_why_each_candidate_is_allowed_or_not(app: App) -> None:
    code, out = cli("explain", "prod", "-n", app.namespace)
    assert code == 0
    assert "gate prod-stagegate: allowedVersions=[]" in out
    assert f"v1 ({rev(1)}): bake result success (history entry 1, deployment" in out
    assert f"v2 ({rev(2)}): bake result failure (history entry 2, deployment" in out
    assert f"v1: allowed: v1 ({rev(1)}) baked successfully in staging" in out
    assert f"v2: blocked: v2 ({rev(2)}) has bake result failure (history entry 2, deployment" in out
    assert "v3: blocked: the candidate has no revision" in out
    assert "the recompute would allow: ['v1']" in out


def test_explain_as_a_command_prints_its_answer_and_logs_only_what_went_wrong(app: App) -> None:
    """Run as a user runs it: the answer on stdout, no INFO log lines around it on stderr."""
    run = subprocess.run([sys.executable, "-m", "stagegate", "explain", "prod", "-n", app.namespace],
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "the recompute would allow: ['v1']" in run.stdout
    assert "0 versions held back" in run.stdout
    assert run.stderr == ""


def test_recompute_dry_run_prints_the_write_and_changes_nothing(app: App) -> None:
    code, out = cli("recompute", "prod", "-n", app.namespace, "--dry-run")
    assert code == 0
    assert "would patch RolloutGate" in out
    assert '"allowedVersions": ["v1"]' in out
    assert app.gate("prod") == []


def test_recompute_writes_what_explain_promised(app: App) -> None:
    code, out = cli("recompute", "prod", "-n", app.namespace)
    assert code == 0, out
    assert "gate prod-stagegate update" in out
    assert app.gate("prod") == ["v1"]


def test_recompute_all_covers_every_environment_of_the_watched_namespaces(app: App) -> None:
    code, out = cli("recompute", "--all")
    assert code == 0, out
    assert f"{app.namespace}/prod: gate prod-stagegate update" in out
    assert f"{app.namespace}/staging: gate staging-stagegate unchanged" in out
    assert app.gate("prod") == ["v1"]


def test_unknown_environment_is_a_clear_error(app: App, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = cli("explain", "nope", "-n", app.namespace)
    assert code == 2
    assert f"Environment {app.namespace}/nope not found" in capsys.readouterr().err


def test_recompute_without_github_token_names_the_variable(app: App, monkeypatch, capsys) -> None:
    monkeypatch.delenv("GITHUB_TOKEN")
    assert cli("recompute", "prod", "-n", app.namespace)[0] == 2
    assert "GITHUB_TOKEN" in capsys.readouterr().err


def test_a_dry_run_for_an_environment_without_a_gate_yet_says_what_it_would_create_once(
    app: App, custom
) -> None:
    from tests.kube_objects import ENV_ARGS, environment

    body = environment(app.namespace, "canary", upstream="staging", rollout="myapp-canary")
    body["spec"]["backend"]["project"] = app.repo
    custom.create_namespaced_custom_object(*ENV_ARGS, app.namespace, "environments", body)  # no audit path
    code, out = cli("recompute", "canary", "-n", app.namespace, "--dry-run")
    assert code == 0, out
    assert out.count("would create RolloutGate") == 1, out
    assert app.gate("canary") is None  # nothing written


def test_explain_without_github_credentials_says_so_and_exits_incomplete(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN")
    code, out = cli("explain", "prod", "-n", app.namespace)
    assert code == 3
    assert "cannot read the upstream's bake results" in out


def test_a_dry_run_marks_its_own_log_lines_only(app: App) -> None:
    import logging

    cli("recompute", "prod", "-n", app.namespace, "--dry-run")
    record = logging.LogRecord(
        "stagegate.test", logging.WARNING, __file__, 1, "after the dry run", None, None
    )
    for handler in logging.getLogger("stagegate").handlers:
        assert handler.filter(record)
    assert record.msg == "after the dry run"  # the dry run's marker is gone with it


@pytest.mark.parametrize("command", ["explain", "status", "recompute"])
def test_each_command_says_its_namespace_default_and_exit_codes(command: str) -> None:
    run = subprocess.run([sys.executable, "-m", "stagegate", command, "--help"],
                         capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert "(default: default" in run.stdout, run.stdout
    assert "exit codes: 0 " in run.stdout, run.stdout


def test_a_dry_run_as_a_command_prints_plain_lines_and_no_json(app: App) -> None:
    """The writes it would make on stdout; on stderr only what went wrong, as plain lines: here GitHub
    refuses the token, so the recompute fails and says so."""
    run = subprocess.run([sys.executable, "-m", "stagegate", "recompute", "prod", "-n", app.namespace,
                          "--dry-run"], capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "would patch RolloutGate" in run.stdout
    assert run.stderr == "", run.stderr
    failing = subprocess.run(
        [sys.executable, "-m", "stagegate", "recompute", "prod", "-n", app.namespace, "--dry-run"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**__import__("os").environ, "GITHUB_TOKEN": "not-the-token"},
    )  # fmt: skip
    lines = failing.stderr.splitlines()
    assert failing.returncode == 1, failing.stderr
    assert lines, failing.stderr
    assert not any(line.startswith("{") for line in lines), failing.stderr
    assert any(line.startswith("stagegate: warning: dry run, nothing written: ") for line in lines), lines
    assert "not-the-token" not in failing.stderr
