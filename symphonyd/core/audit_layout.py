"""Where things live in the audit directory.

<dir>/YYYY-MM-DD.ndjson        one file per UTC day, one record per line
<dir>/quarantine/<ts>-<day>.torn   bytes cut off a damaged tail at start-up
"""

from __future__ import annotations

import os
import re
from pathlib import Path

DAY_FILE = re.compile(r"(\d{4}-\d{2}-\d{2})\.ndjson\Z")
QUARANTINE = "quarantine"
DEFAULT_AUDIT_DIR = Path("/var/lib/symphony/audit")


def day_files(directory: Path) -> list[tuple[str, Path]]:
    """(day, path) of every regular day file in ``directory``, oldest first."""
    found = []
    with os.scandir(directory) as entries:
        for entry in entries:
            match = DAY_FILE.match(entry.name)
            if match and entry.is_file(follow_symlinks=False):
                found.append((match.group(1), Path(entry.path)))
    return sorted(found)
