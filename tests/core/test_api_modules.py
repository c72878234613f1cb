"""The IPC catalogue's layout (docs/design/0263-ipc-api-modules.md): one module per serving
daemon, none importing another, every method registered by the module of its daemon."""

from __future__ import annotations

import ast
from pathlib import Path

from symphonyd.core.api import audit, dispatcher, launcher, shared, tracker
from symphonyd.core.wire import EVENTS, METHODS

API = Path(__file__).resolve().parents[2] / "symphonyd" / "core" / "api"
DAEMON_MODULES = {
    "tracker": tracker,
    "dispatcher": dispatcher,
    "launcher": launcher,
    "audit": audit,
}


def _symphonyd_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("symphonyd")
    }


def test_daemon_api_modules_import_only_wire_shared_and_domain() -> None:
    for name in DAEMON_MODULES:
        imports = _symphonyd_imports(API / f"{name}.py")
        others = {f"symphonyd.core.api.{o}" for o in DAEMON_MODULES if o != name}
        assert not imports & others, (name, imports & others)
        assert not {m for m in imports if m.startswith("symphonyd.core.api.")} - {
            "symphonyd.core.api.shared"
        }


def test_every_method_and_event_lives_in_the_module_of_its_daemon() -> None:
    specs = list(METHODS.values()) + list(EVENTS.values())
    for spec in specs:
        owner = spec.name.split(".", 1)[0] if "." in spec.name else "shared"
        module = DAEMON_MODULES.get(owner, shared)
        assert any(value is spec for value in vars(module).values()), spec.name
    # A control: the catalogue is whole (health plus every daemon's methods).
    assert {s.name.split(".")[0] for s in specs} >= {"health", *DAEMON_MODULES}
