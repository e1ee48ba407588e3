"""Capture real audit events from the local kube-apiserver into tests/payloads/audit/.

Runs a KubeStack with an audit log backend and a policy that records Environments at
RequestResponse and ConfigMaps at Metadata, performs create/update/patch/delete, and writes each
event as the webhook would post it (an EventList of one). Re-run when the apiserver version changes:
    .venv/bin/python scripts/capture_audit_payloads.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import yaml
from kubernetes import client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file: the checkout's packages

from stagegate_dev.commandline import no_arguments, stop_cleanly_on_signals
from stagegate_dev.devstack import KubeStack

OUT = Path(__file__).resolve().parent.parent / "tests" / "payloads" / "audit"
POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "RequestResponse", "resources": [{"group": "environments.kuberik.com"}]},
        {"level": "Metadata", "resources": [{"group": "", "resources": ["configmaps"]}]},
        {"level": "None"},
    ],
}
ENVIRONMENT = {
    "apiVersion": "environments.kuberik.com/v1alpha1",
    "kind": "Environment",
    "metadata": {"name": "prod", "namespace": "default"},
    "spec": {
        "name": "myapp",
        "environment": "production",
        "rolloutRef": {"name": "myapp"},
        "backend": {"type": "github", "project": "myorg/myapp"},
    },
}


def main() -> None:
    stack = KubeStack()
    policy = stack.dir / "capture-policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    log = stack.dir / "audit.log"
    stack.extra_args = ["--audit-policy-file", str(policy), "--audit-log-path", str(log)]
    with stack:
        api = client.CustomObjectsApi(stack.api_client())
        args = ("environments.kuberik.com", "v1alpha1", "default", "environments")
        api.create_namespaced_custom_object(*args, ENVIRONMENT)
        current = api.get_namespaced_custom_object(*args, "prod")
        current["spec"]["relationship"] = {"type": "After", "environment": "staging"}
        api.replace_namespaced_custom_object(*args, "prod", current)
        api.patch_namespaced_custom_object(*args, "prod", {"spec": {"rolloutRef": {"name": "myapp-v2"}}})
        api.delete_namespaced_custom_object(*args, "prod")
        core = client.CoreV1Api(stack.api_client())
        core.create_namespaced_config_map("default", {"metadata": {"name": "unrelated"}, "data": {"a": "b"}})
        time.sleep(1)
        events = [json.loads(line) for line in log.read_text().splitlines()]
    wanted = {
        ("environments", "create"): "environment-create.json",
        ("environments", "update"): "environment-update-add-relationship.json",
        ("environments", "patch"): "environment-patch-rollout-ref.json",
        ("environments", "delete"): "environment-delete.json",
        ("configmaps", "create"): "configmap-create-metadata.json",
    }
    for event in events:
        name = wanted.pop((event.get("objectRef", {}).get("resource"), event["verb"]), None)
        if name and event["stage"] == "ResponseComplete":
            body = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": [event]}
            (OUT / name).write_text(json.dumps(body, indent=2) + "\n")
            print("wrote", OUT / name)
    if wanted:
        raise SystemExit(f"not captured: {sorted(wanted.values())}")


if __name__ == "__main__":
    no_arguments("scripts/capture_audit_payloads.py", __doc__ or "")
    stop_cleanly_on_signals()
    main()
