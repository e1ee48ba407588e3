"""The optional monitoring component (`infra/k8s/components/monitoring`) rendered with the install:
the PodMonitor scrapes exactly the containers' metrics ports, each container serves on the port its
`METRICS_PORT` names, and every stagegate metric the PrometheusRule reads is one stagegate serves (read
from a real `/metrics`, not from a list here)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest
import yaml

from stagegate_dev.devstack import ROOT, free_port
from tests.infra.test_kustomize import K8S, containers, of_kind

COMPONENT = K8S / "components" / "monitoring"


@pytest.fixture(scope="module")
def with_monitoring(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """An overlay of the install with the component, as the component's header tells users to write."""
    overlay = tmp_path_factory.mktemp("overlay")
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(K8S, overlay)],
                "components": [os.path.relpath(COMPONENT, overlay)],
            }
        )
    )
    out = subprocess.run(["kubectl", "kustomize", str(overlay)], check=True, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_the_podmonitor_scrapes_every_metrics_port_and_the_ports_are_what_the_containers_serve(
    with_monitoring: list[dict[str, Any]],
) -> None:
    [monitor] = of_kind(with_monitoring, "PodMonitor")
    scraped = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    served = {}
    for workload, _, container in containers(with_monitoring):
        if not workload.startswith("Deployment/"):
            continue  # the CronJob's one-shot curl serves nothing
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        [port] = [p for p in container.get("ports", []) if p["name"].startswith("metrics")] or [None]
        assert port is not None, f"{workload} {container['name']} serves no metrics"
        assert env.get("METRICS_PORT") == str(port["containerPort"]), (workload, container["name"])
        served[port["name"]] = container["name"]
    assert scraped == set(served), (scraped, served)
    labels = monitor["spec"]["selector"]["matchLabels"]
    for deployment in of_kind(with_monitoring, "Deployment"):
        assert labels.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def served_metric_names() -> set[str]:
    """The metric families a stagegate process serves once `METRICS_PORT` is set."""
    port = free_port()
    script = f"from stagegate import metrics; import time; metrics.serve({port}); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
                    text = answer.read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline, "no metrics served"
                time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
    return set(re.findall(r"^# TYPE (stagegate_\w+) ", text, re.M))


def test_every_stagegate_metric_an_alert_reads_is_served(with_monitoring: list[dict[str, Any]]) -> None:
    [rule] = of_kind(with_monitoring, "PrometheusRule")
    alerts = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert {a["alert"] for a in alerts} >= {
        "StagegateGuardErroring", "StagegateGuardUnreachable", "StagegateGitHubFailing",
        "StagegateReportsLagging", "StagegateGateStuck",
    }  # fmt: skip
    served = served_metric_names()
    for alert in alerts:
        assert alert["annotations"]["summary"], alert["alert"]
        assert alert["annotations"]["description"], alert["alert"]
        for name in re.findall(r"\b(stagegate_\w+)", alert["expr"]):
            histogram = re.sub(r"_(bucket|sum|count)$", "", name)
            assert served & {name, histogram}, f"{alert['alert']} reads {name}, not served ({sorted(served)})"


def test_the_readme_documents_every_metric_served() -> None:
    readme = (ROOT / "README.md").read_text()
    for family in served_metric_names():
        assert f"`{family}" in readme, f"{family} is not documented in the README"
