"""The worker side of audit replication: stored lines after a seq, for the link (design 1100).

Served on the link's socket only (``audit-link.sock``, activated as ``link``), and that
socket serves nothing else: the link user can read the chain but never append to it. Lines
go out exactly as they are on disk (the control host rechecks every hash with the same chain
code); a damaged line is sent unchanged rather than skipped, so the replica stops at it
instead of silently having a gap. Only records the writer has fsynced are sent, so a worker
that loses its page cache can never have told the control host about a record it then lacks.

A page is bounded (``AUDIT_PAGE_MAX_RECORDS`` lines, about ``AUDIT_PAGE_MAX_BYTES``). The
reader remembers where the last page's last line is, so a replica that keeps up (it asks
from its head record, to recheck it) costs one seek per page; any other start is found from
the first line of each day file, then one scan of one file.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from symphonyd.core.api.audit import (
    AUDIT_PAGE_MAX_BYTES,
    AUDIT_PAGE_MAX_RECORDS,
    AUDIT_RECORDS_AFTER,
    AuditPage,
    AuditPageAfter,
)
from symphonyd.core.audit_layout import day_files
from symphonyd.core.errors import ValidationError
from symphonyd.runtime.ipc_server import IpcServer
from symphonyd.runtime.peer import Peer

LINK_SOCKET = "link"  # FileDescriptorName / --listen name of the link's read-only socket
READ_TIMEOUT_S = 120.0


def _seq_of(line: bytes) -> int | None:
    """The seq a stored line claims, or None when the line is not a record at all."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return None
    seq = obj.get("seq") if isinstance(obj, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


@dataclass(frozen=True)
class _Position:
    """Where the last page's last line is: a replica asks from it (to recheck it) or after it."""

    seq: int
    path: Path
    start: int
    end: int


class PageReader:
    """Reads pages of stored lines; one page at a time (the link holds one session a host)."""

    def __init__(self, directory: Path, durable_seq: Callable[[], int]) -> None:
        self.directory = Path(directory)
        self._durable_seq = durable_seq
        self._hint: _Position | None = None
        self._lock = threading.Lock()

    def page(self, after: int, limit: int = AUDIT_PAGE_MAX_RECORDS) -> AuditPage:
        if after < -1:
            raise ValidationError("after must be -1 or a seq", code="invalid_params")
        if not 1 <= limit <= AUDIT_PAGE_MAX_RECORDS:
            raise ValidationError(
                f"limit must be between 1 and {AUDIT_PAGE_MAX_RECORDS}", code="invalid_params"
            )
        with self._lock:
            head = self._durable_seq()  # read first: everything up to it is on disk
            lines: list[bytes] = []
            if after < head:
                self._collect(after, limit, head, lines)
            return AuditPage(
                [line.decode("utf-8", "surrogateescape") for line in lines], head_seq=head
            )

    def _start(self, after: int) -> tuple[list[Path], int]:
        files = [path for _day, path in day_files(self.directory)]
        hint = self._hint
        if hint is not None and hint.path in files and after + 1 in (hint.seq, hint.seq + 1):
            offset = hint.start if after + 1 == hint.seq else hint.end
            return files[files.index(hint.path) :], offset
        start = 0
        for index, path in enumerate(files):
            with path.open("rb") as fh:
                first = _seq_of(fh.readline().rstrip(b"\n"))
            if first is not None and first <= after + 1:
                start = index
        return files[start:], 0

    def _collect(self, after: int, limit: int, head: int, lines: list[bytes]) -> None:
        files, offset = self._start(after)
        size = 0
        reached = after < 0
        for path in files:
            with path.open("rb") as fh:
                fh.seek(offset)
                while len(lines) < limit and size < AUDIT_PAGE_MAX_BYTES:
                    start = fh.tell()
                    raw = fh.readline()
                    if not raw.endswith(b"\n"):
                        if raw:
                            return  # a line still being written: the end for now
                        break  # this file is done; the chain goes on in the next one
                    line = raw[:-1]
                    seq = _seq_of(line)
                    if seq is not None and seq <= after:
                        reached = reached or seq == after
                        continue
                    if seq is None and not reached:
                        continue
                    reached = True
                    if seq is not None and seq > head:
                        return  # written but not yet fsynced
                    lines.append(line)
                    size += len(raw)
                    if seq is not None:
                        self._hint = _Position(seq, path, start, fh.tell())
                else:
                    return
            offset = 0


def register_replication(server: IpcServer, reader: PageReader) -> None:
    async def records_after(params: AuditPageAfter, _peer: Peer) -> AuditPage:
        return await asyncio.to_thread(reader.page, params.after, params.limit)

    server.handle(AUDIT_RECORDS_AFTER, records_after, timeout=READ_TIMEOUT_S)
