# stagegate — one command for each job. Every target installs what it needs first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml requirements-dev.lock | cksum | cut -d' ' -f1)

.PHONY: help demo dev dev-managed install kube-assets octokit-assets test test-unit lint bench lock run image clean

demo: install kube-assets octokit-assets  ## replay the incident on a local stack; prints a timeline and a verdict
	$(PY) -m stagegate_dev.demo

dev: install kube-assets octokit-assets  ## the whole system locally until Ctrl-C: prints the KUBECONFIG to use
	$(PY) -m stagegate_dev.dev

dev-managed: install kube-assets octokit-assets  ## make dev as a managed cluster is: no audit webhook, the follower instead
	$(PY) -m stagegate_dev.dev --managed

install: $(STAMP)               ## the virtualenv with the pinned dependencies and the project

# The project's own install is -qq (errors only): setuptools tells every editable install of a flat
# layout (several top-level packages) to mind same-named folders in the working directory, a notice
# nobody can act on and all that -q would add.
$(STAMP): pyproject.toml requirements-dev.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.lock
	$(PY) -m pip install -qq --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

kube-assets:                    ## kube-apiserver, kube-controller-manager, etcd (KUBEBUILDER_ASSETS, or a cached build)
	bash scripts/kube-assets.sh >/dev/null

octokit-assets:                 ## GitHub's OpenAPI/GraphQL/webhook descriptions and examples (npm), cached
	bash scripts/octokit-assets.sh >/dev/null

test: install kube-assets octokit-assets  ## every test: real kube-apiserver, both CRD sets, fake GitHub
	$(PY) -m pytest --cov --cov-branch --cov-report=term-missing:skip-covered

test-unit: install              ## the pure core only, no cluster (minutes: mostly property tests)
	$(PY) -m pytest tests/shared

lint: install                   ## ruff, ruff format --check, mypy --strict
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

bench: install kube-assets octokit-assets  ## latency, API calls per event, import time, end-to-end cost
	$(PY) bench/bench_k8s_audit.py
	$(PY) bench/bench_github_webhook.py
	$(PY) bench/bench_revocation.py
	$(PY) bench/bench_environment_status.py
	$(PY) bench/bench_resync.py
	$(PY) bench/bench_admission.py
	$(PY) bench/bench_reporter.py
	$(PY) bench/bench_follower.py
	$(PY) bench/bench_cold_start.py

lock: install                   ## re-resolve the pinned dependency sets from pyproject.toml
	$(VENV)/bin/uv pip compile --quiet --python-version 3.11 pyproject.toml -o requirements.lock
	$(VENV)/bin/uv pip compile --quiet --python-version 3.11 --extra gcp pyproject.toml -o requirements-gcp.lock
	$(VENV)/bin/uv pip compile --quiet --python-version 3.11 --extra aws pyproject.toml -o requirements-aws.lock
	$(VENV)/bin/uv pip compile --quiet --python-version 3.11 --extra dev pyproject.toml -o requirements-dev.lock

image:                          ## build the install's OCI image with buildah (BASE=python:3.11-slim to build on the usual base)
	bash scripts/image.sh

run: install                    ## serve every function locally against $$KUBECONFIG and $$GITHUB_API_URL
	$(PY) -m stagegate_dev.serve

help:                           ## list the targets and what each does
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):[^#]*## /\1\t/; s/\$$\$$/$$/g' | expand -t 16

clean:                          ## remove the virtualenv and the tools' caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage .hypothesis
