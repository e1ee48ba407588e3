"""The gate-state core imports no I/O library (STYLE.md rule 1), checked at run time and in the source."""

from __future__ import annotations

import ast
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.shared.conftest import NetworkUsed

PROJECT = Path(__file__).resolve().parents[2]
CORE = PROJECT / "shared"
CORE_MODULES = ("shared", "shared.gate", "shared.audit", "shared.views", "shared.errors")


def every_core_module() -> list[str]:
    """Every module of the core package, including ones added after these tests were written."""
    modules = [".".join(p.relative_to(PROJECT).with_suffix("").parts) for p in sorted(CORE.rglob("*.py"))]
    return [m.removesuffix(".__init__") for m in modules]


# Third-party clients and frameworks that do I/O; the first five are the ones STYLE.md names.
FORBIDDEN = (
    "kubernetes",
    "github",
    "functions_framework",
    "google.cloud",
    "boto3",
    "botocore",
    "requests",
    "urllib3",
    "flask",
    "httpx",
    "aiohttp",
    "cloudevents",
)
# Standard-library modules that do I/O, read clocks, reach the environment or draw random numbers.
# Pure helpers from the same packages (`urllib.parse`, `http.HTTPStatus`) are fine.
FORBIDDEN_STDLIB = (
    "socket",
    "ssl",
    "http.client",
    "http.server",
    "urllib.request",
    "subprocess",
    "asyncio",
    "os",
    "time",
    "random",
)

# `-S` skips site-packages' .pth files: functions-framework's namespace-package .pth alone would put
# `google.cloud` into every interpreter's sys.modules, before any code of ours runs. The probe then
# adds site-packages by hand, so an import of a forbidden library by the core still succeeds and shows.
PROBE = """
import json, sys
sys.path[:0] = [sys.argv[1]]
sys.path.extend(json.loads(sys.argv[2]))
import importlib
for module in json.loads(sys.argv[3]):
    importlib.import_module(module)
import shared
print(json.dumps({"file": shared.__file__, "modules": sorted(sys.modules)}))
"""


def loaded_after_importing(*modules: str) -> set[str]:
    site_packages = [p for p in sys.path if p.endswith("site-packages")]
    result = subprocess.run(
        [sys.executable, "-S", "-c", PROBE, str(PROJECT), json.dumps(site_packages), json.dumps(modules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=PROJECT,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert Path(report["file"]) == CORE / "__init__.py"
    return set(report["modules"])


def offenders(loaded: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden))


def test_importing_the_core_loads_no_io_library() -> None:
    modules = every_core_module()
    assert set(CORE_MODULES) <= set(modules)
    loaded = loaded_after_importing(*modules)
    assert set(modules) <= loaded
    assert offenders(loaded, FORBIDDEN) == []


def test_probe_sees_an_io_library_when_one_is_imported() -> None:
    loaded = loaded_after_importing("shared.gate", "kubernetes")
    assert "kubernetes" in offenders(loaded, FORBIDDEN)


def imported_modules(source: str) -> set[str]:
    """Absolute module names a source file imports (relative imports stay inside the package)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def core_sources() -> dict[str, str]:
    return {str(path.relative_to(PROJECT)): path.read_text() for path in sorted(CORE.rglob("*.py"))}


def test_scan_covers_every_core_module() -> None:
    assert {
        "shared/__init__.py",
        "shared/gate.py",
        "shared/audit.py",
        "shared/views.py",
        "shared/errors.py",
    } <= set(core_sources())


def test_scan_finds_imports_in_every_form() -> None:
    source = (
        "import kubernetes.client\n"
        "from google.cloud import pubsub_v1\n"
        "import os, json\n"
        "from urllib import parse, request\n"
        "from . import views\n"
    )
    found = imported_modules(source)
    assert offenders(found, FORBIDDEN) == ["google.cloud", "google.cloud.pubsub_v1", "kubernetes.client"]
    assert offenders(found, FORBIDDEN_STDLIB) == ["os", "urllib.request"]


@pytest.mark.parametrize("path", sorted(core_sources()))
def test_core_source_imports_no_io_library(path: str) -> None:
    assert offenders(imported_modules(core_sources()[path]), FORBIDDEN) == []


@pytest.mark.parametrize("path", sorted(core_sources()))
def test_core_source_imports_only_pure_standard_library_and_itself(path: str) -> None:
    imports = imported_modules(core_sources()[path])
    roots = {name.split(".")[0] for name in imports}
    assert roots <= set(sys.stdlib_module_names) | {"shared", "__future__"}
    assert offenders(imports, FORBIDDEN_STDLIB) == []


@pytest.mark.parametrize("path", sorted(core_sources()))
def test_core_source_does_not_import_dynamically(path: str) -> None:
    tree = ast.parse(core_sources()[path])
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert "__import__" not in names
    assert "importlib" not in imported_modules(core_sources()[path])


def test_unit_tests_of_the_core_cannot_reach_the_network() -> None:
    with pytest.raises(NetworkUsed):
        socket.create_connection(("192.0.2.1", 80), timeout=0.1)
    with socket.socket() as sock, pytest.raises(NetworkUsed):
        sock.connect(("192.0.2.1", 80))
