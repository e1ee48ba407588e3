"""Tools for tests, benchmarks and the demo, never for a deploy: the local etcd + kube-apiserver stack
(`devstack`), the GitHub stand-in (`fake_github`), the model of kuberik's rollout controller
(`rollout_model`), `make demo` (`demo`), `make run` (`serve`), `make dev` (`dev`) and the stand-in's
bake recorder for `make dev` (`github_cli`).

Not part of the distribution (`pyproject.toml` packages only `shared` and `stagegate`); used from the
repository root. The deployed functions never import it (`tests/test_layout.py` checks).
"""
