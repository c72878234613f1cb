"""Reading head anchors back from the journal, for ``symphonyctl audit verify``.

We run ``journalctl -o json`` rather than python3-systemd's ``Reader``: journalctl ships
with systemd itself (python3-systemd is optional for symphonyd), it reads a journal
directory or file copied from another host (``--directory``/``--file``) as well as the live
one, and its JSON export is a documented, stable interface. Entries are streamed and only
the best one is kept, so a long journal costs time, not memory.

Which entries count: ``MESSAGE_ID`` is ours, ``SYMPHONY_AUDIT_DIR`` is the directory being
verified, and ``_UID`` (set by journald from the sender's credentials, not by the sender)
is the directory's owner, the audit writer's user. Among those the anchor with the highest
seq wins: the writer's user can always *add* journal entries, so trusting the newest one
would let it file a lower head after cutting the log; it cannot remove the higher one.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from symphonyd.audit.anchor import (
    FIELD_CHAIN,
    FIELD_DIR,
    FIELD_HASH,
    FIELD_REASON,
    FIELD_SEQ,
    FIELD_TS,
    MESSAGE_ID,
)

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_FIELDS = ",".join((FIELD_SEQ, FIELD_HASH, FIELD_TS, FIELD_DIR, FIELD_CHAIN, FIELD_REASON, "_UID"))


class AnchorReadError(Exception):
    """The journal could not be read (no journalctl, unreadable journal, bad path)."""


@dataclass(frozen=True)
class JournalAnchor:
    seq: int
    hash: str
    chain: str | None
    reason: str
    logged_at: str  # when journald received it (UTC), for messages

    @property
    def source(self) -> str:
        return f"the journal anchor of {self.logged_at}"


@dataclass(frozen=True)
class AnchorScan:
    best: JournalAnchor | None
    entries: int  # anchors for this directory and uid
    malformed: int  # such entries whose fields do not parse (ignored)


def _text(entry: dict[str, Any], name: str) -> str | None:
    value = entry.get(name)
    return value if isinstance(value, str) else None  # arrays/binary are not ours


def parse_entry(entry: dict[str, Any]) -> JournalAnchor | None:
    """One ``journalctl -o json`` object as an anchor, or None when it is not well formed."""
    seq, digest = _text(entry, FIELD_SEQ), _text(entry, FIELD_HASH)
    chain = _text(entry, FIELD_CHAIN)
    if seq is None or not seq.isdecimal() or digest is None or not _HEX64.match(digest):
        return None
    if chain is not None and not _HEX64.match(chain):
        return None
    stamp = _text(entry, "__REALTIME_TIMESTAMP") or ""
    logged = (
        datetime.fromtimestamp(int(stamp) / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if stamp.isdecimal()
        else "unknown time"
    )
    return JournalAnchor(int(seq), digest, chain, _text(entry, FIELD_REASON) or "", logged)


def furthest(lines: Iterable[str]) -> AnchorScan:
    """The anchor with the highest seq (the later one on a tie) among journalctl JSON lines."""
    best: JournalAnchor | None = None
    entries = malformed = 0
    for line in lines:
        if not line.strip():
            continue
        entries += 1
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = None
        anchor = parse_entry(entry) if isinstance(entry, dict) else None
        if anchor is None:
            malformed += 1
        elif best is None or anchor.seq >= best.seq:
            best = anchor
    return AnchorScan(best, entries, malformed)


def journalctl_argv(directory: str, uid: int, journal: Path | None) -> list[str]:
    exe = shutil.which("journalctl")
    if exe is None:
        raise AnchorReadError("journalctl not found (not a systemd host?)")
    argv = [exe, "--no-pager", "--quiet", "--output=json", f"--output-fields={_FIELDS}"]
    if journal is not None:
        if not journal.exists():
            raise AnchorReadError(f"no journal at {journal}")
        argv.append(f"--directory={journal}" if journal.is_dir() else f"--file={journal}")
    return [*argv, f"MESSAGE_ID={MESSAGE_ID}", f"{FIELD_DIR}={directory}", f"_UID={uid}"]


def read_anchors(directory: str, uid: int, journal: Path | None = None) -> AnchorScan:
    """Scan the journal (the system's, or a copied ``journal`` dir/file) for anchors."""
    argv = journalctl_argv(directory, uid, journal)
    with subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        scan = furthest(proc.stdout)
        err = proc.stderr.read()
    if proc.returncode != 0:
        detail = err.strip().splitlines()[-1] if err.strip() else f"exit {proc.returncode}"
        raise AnchorReadError(f"journalctl failed: {detail}")
    return scan
