"""The import layering of ARCHITECTURE.md: imports point down, daemons never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "symphonyd"
DAEMONS = {"tracker", "dispatcher", "launcher", "audit", "dashboard", "demo"}
# core stays free of network, process and event-loop machinery.
CORE_FORBIDDEN_MODULES = {"socket", "subprocess", "asyncio", "httpx", "pyroute2", "nftables"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative imports hide layering; use absolute ones")
    return found


def _layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "symphonyd" or len(parts) < 2:
        return None
    return parts[1]


def _package_files() -> list[tuple[str, Path]]:
    return [
        (p.relative_to(PKG).parts[0], p)
        for p in sorted(PKG.rglob("*.py"))
        if len(p.relative_to(PKG).parts) > 1
    ]


@pytest.mark.parametrize(("layer", "path"), _package_files(), ids=lambda v: str(v))
def test_imports_point_down(layer: str, path: Path) -> None:
    for module in _imports(path):
        target = _layer_of(module)
        if layer == "core":
            assert target in (None, "core"), f"{path}: core must not import {module}"
            assert module.split(".")[0] not in CORE_FORBIDDEN_MODULES, f"{path}: {module}"
        elif layer == "runtime":
            assert target in (None, "core", "runtime"), f"{path}: runtime imports {module}"
        elif layer in DAEMONS:
            assert target in (
                None,
                "core",
                "runtime",
                layer,
            ), f"{path}: daemon {layer!r} must not import {module}"


def test_layering_check_sees_a_violation(tmp_path: Path) -> None:
    # Guard against the check silently passing: a planted bad import must be found.
    bad = tmp_path / "bad.py"
    bad.write_text("from symphonyd.dispatcher import state\n")
    assert _layer_of(next(iter(_imports(bad)))) == "dispatcher"
