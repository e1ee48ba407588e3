"""The gate-state core of stagegate.

Pure functions from typed views of Kubernetes objects and audit events to the RolloutGate an
Environment should have. Nothing here does I/O, reads a clock or keeps state: the functions in
`functions/` and the adapters in `stagegate/` do that. A test fails if this package ever imports an
I/O library.
"""
