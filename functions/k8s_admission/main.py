"""`admission.k8s.io/v1` AdmissionReviews in, answers out: the deploy guard and the gate at admission.

The kube-apiserver calls `k8s_admission` as a validating webhook (`infra/k8s/admission.yaml`): for Flux
OCIRepository and Kustomization writes it refuses a version the Rollout's gate does not allow; for
Environment writes it makes the gate before the Environment is stored. The entry point only bounds
the body (`install_middleware`, before functions-framework could drain it), parses the review
(malformed: 400 with the reason), calls the service (which answers within
`ADMISSION_DEADLINE_SECONDS`) and echoes `request.uid` in the answer.
"""

from __future__ import annotations

from typing import Any

import flask
import functions_framework

from shared.admission import parse_admission_review, review_response
from stagegate.admission_service import AdmissionContext, admit
from stagegate.http import Response, answer, install_middleware, read_body
from stagegate.kube import KubeGates, api_client
from stagegate.settings import Settings

SETTINGS = Settings.from_env()
install_middleware(SETTINGS.admission_max_body_bytes, SETTINGS.metrics_port)
CONTEXT = AdmissionContext(
    kube=KubeGates(api_client(SETTINGS.kubeconfig), timeout=SETTINGS.admission_deadline_seconds),
    attempts=SETTINGS.kube_conflict_retries,
    deadline=SETTINGS.admission_deadline_seconds,
    guard_label=SETTINGS.admission_guard_label,
)


@functions_framework.http
def k8s_admission(request: flask.Request) -> Response:
    """Validating webhook target: bounded body, strict review, bounded time, AdmissionReview answer."""

    def handle() -> dict[str, Any]:
        review = parse_admission_review(read_body(request, SETTINGS.admission_max_body_bytes))
        return review_response(review, admit(review, CONTEXT))

    return answer(handle, "k8s_admission")
