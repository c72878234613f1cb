"""One worker's audit chain on the control host: verified lines, appended durably.

The directory has the audit writer's own format (``core/audit_layout.py``: one
``YYYY-MM-DD.ndjson`` per UTC day, the lines byte for byte as the worker stored them), so
``symphonyctl audit verify`` checks a replica with the same code as the local chain. The
files are the cursor: the head is the last complete line, so "fsync, then advance" holds by
construction and a restart resumes from exactly what is on disk. A torn last line (the link
died mid-write) was never counted, so it is cut off and fetched again.

Every line is checked before it is written (``core/audit_chain.py``: canonical form, its own
hash, seq and previous_hash continuing the head); the lines before one that does not fit
are kept, and the replicator stops the host there (:class:`ReplicaBroken`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

from symphonyd.core.audit_chain import (
    ChainBreak,
    ChainHead,
    check_link,
    day_of,
    parse_line,
)
from symphonyd.core.audit_layout import day_files
from symphonyd.core.errors import SymphonyError
from symphonyd.runtime.durable import fsync_dir, private_dir, write_all

_TAIL_CHUNK = 64 * 1024


class ReplicaBroken(SymphonyError):
    """What the worker sent does not continue the replica: replication of the host stops."""

    code = "audit_replica_broken"


@dataclass(frozen=True)
class Verified:
    records: list[tuple[str, bytes]]  # (day, stored line with its newline) in chain order
    head: ChainHead | None  # after the page; None only for an empty page to an empty replica
    broken: str | None = None  # why the line after ``records`` does not fit, if one did not


def verify_page(lines: list[bytes], head: ChainHead | None, held: bytes | None) -> Verified:
    """Check a page of stored lines against the replica's head, up to the first that breaks.

    ``held`` is the replica's own copy of its head record: a page asked from the head's seq
    starts with the worker's copy of that record, which must be the same bytes (a record the
    worker changed after it was replicated is caught here, not only at the next record).
    """
    if held is not None:
        if not lines or lines[0] != held:
            seq = "the head" if head is None else f"record {head.seq}"
            why = (
                f"{seq} on the worker differs from the replicated copy (changed after replication)"
            )
            return Verified([], head, why)
        lines = lines[1:]
    out: list[tuple[str, bytes]] = []
    for line in lines:
        expected = 0 if head is None else head.seq + 1
        try:
            record = parse_line(line)
            head = check_link(record, head, day=None)
        except ChainBreak as exc:
            return Verified(out, head, f"record {expected}: {exc.reason}")
        out.append((day_of(record["ts"]), line + b"\n"))
    return Verified(out, head)


class ReplicaStore:
    """Append-only day files of one worker's chain. Not thread-safe: one replicator each."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.head: ChainHead | None = None
        self.head_line: bytes | None = None  # the head record's stored bytes, no newline

    def open(self) -> ChainHead | None:
        """Create the directory or find the head; cut a torn last line."""
        try:
            private_dir(self.directory)
        except NotADirectoryError as exc:
            raise ReplicaBroken(str(exc)) from None
        for _day, path in reversed(day_files(self.directory)):
            line = self._tail(path)
            if line is None:
                continue
            try:
                record = parse_line(line)
            except ChainBreak as exc:
                raise ReplicaBroken(
                    f"{path}: the last replicated record is damaged ({exc.reason}); "
                    "run `symphonyctl audit verify`"
                ) from None
            self.head = ChainHead(record["seq"], record["record_hash"], record["ts"])
            self.head_line = line
            break
        return self.head

    def _tail(self, path: Path) -> bytes | None:
        """The last complete line of ``path``; bytes after it are truncated and synced."""
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            pos, buf = size, b""
            while pos > 0 and buf.count(b"\n") < 2:
                step = min(_TAIL_CHUNK, pos)
                pos -= step
                fh.seek(pos)
                buf = fh.read(step) + buf
        torn = len(buf) - (buf.rfind(b"\n") + 1)
        if torn:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            try:
                os.ftruncate(fd, size - torn)
                os.fsync(fd)
            finally:
                os.close(fd)
            buf = buf[: len(buf) - torn]
        if not buf:
            return None
        return buf[:-1].rsplit(b"\n", 1)[-1]

    def append(self, page: Verified) -> None:
        """Write verified records to their day files, fsync, then move the head."""
        for day, group in groupby(page.records, key=lambda item: item[0]):
            path = self.directory / f"{day}.ndjson"
            flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
            created = not path.exists()
            fd = os.open(path, flags | os.O_CREAT, 0o600)
            try:
                write_all(fd, b"".join(line for _day, line in group))
                os.fdatasync(fd)
            finally:
                os.close(fd)
            if created:
                fsync_dir(self.directory)
        if page.records:
            self.head = page.head
            self.head_line = page.records[-1][1][:-1]
