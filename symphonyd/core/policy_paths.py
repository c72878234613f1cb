"""Where the shipped policy lists live: /usr/share/symphonyd/policy when installed, the
source tree's ``policy/`` otherwise, or ``$SYMPHONY_POLICY_DIR`` (tests, custom lists)."""

from __future__ import annotations

import os
from pathlib import Path

_CANDIDATES = (
    Path("/usr/share/symphonyd/policy"),
    Path(__file__).resolve().parents[2] / "policy",
)


def find_policy_dir() -> Path | None:
    """The first candidate holding fs-deny.txt, or None."""
    override = os.environ.get("SYMPHONY_POLICY_DIR")
    for candidate in ((Path(override),) if override else ()) + _CANDIDATES:
        if (candidate / "fs-deny.txt").is_file():
            return candidate
    return None


def shipped_presets_dir() -> Path | None:
    found = find_policy_dir()
    return None if found is None else found / "egress" / "presets"
