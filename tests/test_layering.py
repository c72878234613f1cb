"""The layers of ARCHITECTURE.md: imports point down, daemons never import each other.

Every package and top-level module of ``symphonyd/`` must be placed in a layer here; one the
test cannot place fails it ("unclassified source file"), so a new package cannot slip past
the rules by being new.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "symphonyd"
DAEMONS = {"tracker", "dispatcher", "launcher", "audit", "dashboard", "demo", "link", "webhook"}
LAYERS = {"core", "runtime", "ctl"} | DAEMONS
# Top-level modules of symphonyd/ and what they are; nothing else may live there.
TOP_LEVEL_MODULES = {"__init__.py": "the version"}
# core stays free of network, process and event-loop machinery.
CORE_FORBIDDEN_MODULES = {"socket", "subprocess", "asyncio", "httpx", "pyroute2", "nftables"}
# symphonyctl may use core, runtime and itself, and of the daemons only these modules: it
# verifies the audit files itself and edits the local tracker's issue files as the operator.
CTL_MAY_IMPORT = {
    "symphonyd": "the version for --version",
    "symphonyd.audit.anchor": "audit verify: the head anchors in the journal",
    "symphonyd.audit.anchor_read": "audit verify: reading the anchors back",
    "symphonyd.audit.verify": "audit verify: the chain check itself",
    "symphonyd.tracker.errors": "issue: the local tracker's typed errors",
    "symphonyd.tracker.jira_format": "doctor: the shape of a Jira credential, never its value",
    "symphonyd.tracker.local": "issue: the local tracker's file format",
    "symphonyd.tracker.local_store": "issue: the local tracker's issue files",
    "symphonyd.tracker.provider_check": "workflow check: each adapter's own provider rules",
    "symphonyd.tracker.provider_config": "issue: where the local tracker keeps its files",
}


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


@cache
def _imports_in_fresh_interpreter() -> dict[str, list[str]]:
    # Parsing in this process can hit CPython 3.11's "AST constructor recursion depth
    # mismatch" after other tests changed the recursion limit; a fresh interpreter cannot.
    code = (
        "import json, sys\n"
        "from tests.test_layering import PKG, _imports\n"
        "print(json.dumps({str(p): sorted(_imports(p)) for p in PKG.rglob('*.py')}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=PKG.parent,
    )
    result: dict[str, list[str]] = json.loads(out.stdout)
    return result


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


def _unclassified(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if len(parts) == 1 and parts[0] not in TOP_LEVEL_MODULES:
            found.append(f"unclassified source file: {path}")
        elif len(parts) > 1 and parts[0] not in LAYERS:
            found.append(f"unclassified source file: {path} (package {parts[0]!r})")
    return found


def test_every_source_file_has_a_layer() -> None:
    assert _unclassified(PKG) == []


def test_an_unknown_package_or_module_is_unclassified(tmp_path: Path) -> None:
    # Guard against the check passing vacuously: a new package and a new top-level module.
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "workers").mkdir()
    (tmp_path / "workers" / "ssh.py").write_text("")
    (tmp_path / "helpers.py").write_text("")
    assert len(_unclassified(tmp_path)) == 2


def _allowed(layer: str, module: str) -> bool:
    target = _layer_of(module)
    if module == "symphonyd":
        return layer not in ("core", "runtime")
    if target is None:
        return True
    if layer == "core":
        return target == "core"
    if layer == "runtime":
        return target in ("core", "runtime")
    if layer == "ctl":
        return target in ("core", "runtime", "ctl") or module in CTL_MAY_IMPORT
    return target in ("core", "runtime", layer)


@pytest.mark.parametrize(("layer", "path"), _package_files(), ids=lambda v: str(v))
def test_imports_point_down(layer: str, path: Path) -> None:
    for module in _imports_in_fresh_interpreter()[str(path)]:
        assert _allowed(layer, module), f"{path}: {layer!r} must not import {module}"
        if layer == "core":
            assert module.split(".")[0] not in CORE_FORBIDDEN_MODULES, f"{path}: {module}"


def test_ctl_may_import_list_is_used() -> None:
    # A stale allowance would let ctl grow a dependency nobody chose; every entry is in use.
    used = {
        module
        for path, modules in _imports_in_fresh_interpreter().items()
        if Path(path).relative_to(PKG).parts[0] == "ctl"
        for module in modules
    }
    assert set(CTL_MAY_IMPORT) <= used, set(CTL_MAY_IMPORT) - used


def test_layering_check_sees_a_violation(tmp_path: Path) -> None:
    # Guard against the check silently passing: a planted bad import must be found.
    bad = tmp_path / "bad.py"
    bad.write_text("from symphonyd.dispatcher import state\n")
    module = next(iter(_imports(bad)))
    assert _layer_of(module) == "dispatcher"
    assert not _allowed("launcher", module)
    assert not _allowed("ctl", module)
    assert not _allowed("ctl", "symphonyd.tracker.linear")  # a daemon module not on the list
    assert _allowed("ctl", "symphonyd.audit.verify")
