"""The imperative shell of stagegate: settings, logging, adapters and request handling.

`shared` decides what a gate should be; this package reads the world, applies those decisions
through thin adapters (Kubernetes here, GitHub later) and turns outcomes and errors into answers.
"""
