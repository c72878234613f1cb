"""The shipped policy lists (``policy/`` in the source tree, /usr/share/symphonyd/policy
when installed): built-in egress allowlists per runtime and the filesystem deny list."""

from __future__ import annotations

import os
from pathlib import Path

from symphonyd.launcher.sandbox.errors import FS_FAILED, SandboxError

_CANDIDATES = (
    Path("/usr/share/symphonyd/policy"),
    Path(__file__).resolve().parents[3] / "policy",
)


def policy_dir() -> Path:
    override = os.environ.get("SYMPHONY_POLICY_DIR")
    for candidate in ((Path(override),) if override else ()) + _CANDIDATES:
        if (candidate / "fs-deny.txt").is_file():
            return candidate
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
