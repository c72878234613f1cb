"""The shipped policy lists (``policy/`` in the source tree, /usr/share/symphonyd/policy
when installed): built-in egress allowlists per runtime and the filesystem deny list."""

from __future__ import annotations

from pathlib import Path

from symphonyd.core.policy_paths import find_policy_dir
from symphonyd.launcher.sandbox.errors import FS_FAILED, SandboxError


def policy_dir() -> Path:
    found = find_policy_dir()
    if found is not None:
        return found
    raise SandboxError("policy directory with fs-deny.txt not found", code=FS_FAILED)


def _lines(path: Path) -> list[str]:
    out = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def builtin_domains(runtime: str) -> list[str]:
    """The model-API names a runtime cannot work without; empty for an unknown runtime."""
    path = policy_dir() / "egress" / f"{runtime}.txt"
    return _lines(path) if runtime.isidentifier() and path.is_file() else []


def fs_deny_entries() -> list[str]:
    return _lines(policy_dir() / "fs-deny.txt")
