"""The tracker's own copy of the workflow version in force, for a restart during a bad edit.

While an edit of WORKFLOW.md is refused, the running daemons keep the last good version in
memory. A tracker restarted in that window (a crash, the watchdog, an operator's
``systemctl restart symphony-tracker`` after fixing the credential) would otherwise find only
the refused file and serve nothing, pausing dispatch with ``tracker_unavailable``. So each
version the tracker adopts is written to its state directory (systemd's ``$STATE_DIRECTORY``,
mode 0600), and on a start where the file is refused it serves that copy, says so, and moves
to the file as soon as the file is good. The copy is tied to the workflow path and checked
against its SHA-256; anything else about it is treated as "no copy".
See docs/design/0155-one-last-good-workflow.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from symphonyd.core.errors import SymphonyError
from symphonyd.core.workflow import MAX_WORKFLOW_BYTES, parse_workflow_bytes
from symphonyd.runtime.workflow_file import LoadedWorkflow

log = logging.getLogger(__name__)
SAVED_NAME = "last-good-workflow.json"
# The JSON around a workflow of at most MAX_WORKFLOW_BYTES (escaping can double it).
MAX_SAVED_BYTES = 4 * MAX_WORKFLOW_BYTES


def location(env: Mapping[str, str]) -> Path | None:
    """Where the copy lives: the unit's first StateDirectory, None outside systemd."""
    first = env.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(first) / SAVED_NAME if first.startswith("/") else None


def save(target: Path, loaded: LoadedWorkflow) -> None:
    """Replace the copy with ``loaded``, atomically and durably; raises OSError."""
    doc = {"path": str(loaded.path), "sha256": loaded.sha256, "text": loaded.raw.decode()}
    data = json.dumps(doc).encode()
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def load(target: Path, path: Path) -> LoadedWorkflow | None:
    """The saved version of the workflow at ``path``, or None (absent, other path, damaged)."""
    try:
        with target.open("rb") as fh:
            data = fh.read(MAX_SAVED_BYTES + 1)
        doc = json.loads(data) if len(data) <= MAX_SAVED_BYTES else None
        if not isinstance(doc, dict) or doc.get("path") != str(path):
            return None
        raw = str(doc["text"]).encode()
        if hashlib.sha256(raw).hexdigest() != doc.get("sha256"):
            log.warning("ignoring %s: its content does not match its checksum", target)
            return None
        definition = parse_workflow_bytes(raw)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, SymphonyError) as exc:
        log.warning("ignoring %s: %s", target, exc)
        return None
    return LoadedWorkflow(definition, path, doc["sha256"], 0, len(raw), raw=raw)
