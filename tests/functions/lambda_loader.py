"""`functions/aws_lambda/main.py` loaded afresh, as a Lambda cold start loads it: its module-level
configuration (settings, secrets, clients) is read from the environment at that moment."""

from __future__ import annotations

import importlib.util
import uuid
from types import ModuleType

from stagegate_dev import devstack


def load_lambda_main() -> ModuleType:
    """A new module object each call, under a name of its own, so no earlier load is reused."""
    spec = importlib.util.spec_from_file_location(
        f"lambda_main_{uuid.uuid4().hex}", devstack.ROOT / "functions" / "aws_lambda" / "main.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
