"""Where things live in the audit directory.

<dir>/YYYY-MM-DD.ndjson        one file per UTC day, one record per line
<dir>/quarantine/<ts>-<day>.torn   bytes cut off a damaged tail at start-up

A worker's chain replicated by the link (docs/design/1100) has the same layout under
``<state_dir>/link/hosts/<host>/audit/``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

DAY_FILE = re.compile(r"(\d{4}-\d{2}-\d{2})\.ndjson\Z")
QUARANTINE = "quarantine"
DEFAULT_AUDIT_DIR = Path("/var/lib/symphony/audit")
# The link's replicas of worker hosts' chains: <dir>/<host>/audit/ in the layout above.
DEFAULT_REPLICAS_DIR = Path("/var/lib/symphony/link/hosts")
REPLICA_SUBDIR = "audit"


def replica_dirs(root: Path) -> list[tuple[str, Path]]:
    """(host, directory) of every replica under ``root``, by host name; none if no root."""
    if not root.is_dir():
        return []
    found = []
    with os.scandir(root) as entries:
        for entry in entries:
            path = Path(entry.path) / REPLICA_SUBDIR
            if entry.is_dir(follow_symlinks=False) and path.is_dir():
                found.append((entry.name, path))
    return sorted(found)


def day_files(directory: Path) -> list[tuple[str, Path]]:
    """(day, path) of every regular day file in ``directory``, oldest first."""
    found = []
    with os.scandir(directory) as entries:
        for entry in entries:
            match = DAY_FILE.match(entry.name)
            if match and entry.is_file(follow_symlinks=False):
                found.append((match.group(1), Path(entry.path)))
    return sorted(found)
