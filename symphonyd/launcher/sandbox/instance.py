"""Which sandboxes are this launcher's: an instance id kept in the launcher's state directory.

Crash cleanup must find every process a crashed launcher left, and nothing of another
symphonyd on the same host (a container, a test run, a staging suite). The agent can change
its environment, so nothing it carries is trusted; what it cannot change is where the
launcher put it. Every sandbox of an instance lives in that instance's own place:

- bubblewrap path: cgroup ``symphony-sandbox/<instance>/symv<N>`` under the launcher's own
  cgroup (cgroups.py); the group's files are root's, so the agent cannot leave it;
- systemd path: slice ``system-symphony_sandbox_<instance>.slice`` (:func:`slice_name`),
  which systemd alone assigns;
- per-sandbox files: ``/run/symphony-sandbox/<instance>/``.

The id survives restarts (that is how a restarted launcher finds what its crashed
predecessor left), and differs between instances because each has its own state directory.
docs/design/0851-cleanup-by-instance.md.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from symphonyd.launcher.sandbox.errors import SandboxError

FILE_NAME = "sandbox-instance"
_ID = re.compile(r"[0-9a-f]{12}")
INVALID = "sandbox_instance_invalid"


def new_instance() -> str:
    return secrets.token_hex(6)


def is_instance(text: str) -> bool:
    return _ID.fullmatch(text) is not None


def load_or_create(directory: Path) -> str:
    """The instance id stored in ``directory``; made (and stored) on first use.

    A file that is there but not an id is an error, not a reason to make a new one: a new id
    would silently stop this launcher from finding what its predecessor left running."""
    path = directory / FILE_NAME
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        instance = new_instance()
        tmp = path.with_name(f".{FILE_NAME}.{os.getpid()}")
        tmp.write_text(instance + "\n")
        os.replace(tmp, path)
        return instance
    except OSError as exc:
        raise SandboxError(f"cannot read {path}: {exc.strerror}", code=INVALID) from None
    if not is_instance(text):
        raise SandboxError(
            f"{path} does not hold a sandbox instance id (12 hex digits); restore it or, if no "
            "agent of this launcher can still be running, delete it",
            code=INVALID,
        )
    return text


def slice_name(instance: str) -> str:
    """The systemd slice of every agent and hook unit of this instance.

    Under ``system.slice``, where the units ran before they had a slice of their own (the
    dash is systemd's hierarchy separator, so none after it: no intermediate slices that
    would stay behind once the launcher is gone)."""
    if not is_instance(instance):
        raise SandboxError(f"bad sandbox instance id {instance!r}", code=INVALID)
    return f"system-symphony_sandbox_{instance}.slice"
