"""The audit directory: day files, durable appends, crash recovery.

Only this class writes the directory. It keeps the chain head (seq, hash, ts) in memory, so
an append never re-reads a file; on start it reads only the tail of the newest non-empty day
file. A torn tail (bytes after the last newline) or an unparsable last line is a crash
artefact: it is copied to ``quarantine/``, cut off, and a ``recovered`` record continues the
chain. Acknowledged records were fsynced before the acknowledgement, so they always sit
before the tear and are never touched.

Not thread-safe: the group committer calls it from one worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path
from typing import Any

from symphonyd.audit.shaping import ShapedEvent
from symphonyd.core import audit_events
from symphonyd.core.audit_chain import (
    GENESIS_PREVIOUS_HASH,
    RECORD_VERSION,
    ChainBreak,
    ChainHead,
    day_of,
    parse_line,
    record_line,
    seal,
)
from symphonyd.core.audit_layout import QUARANTINE, day_files
from symphonyd.core.errors import SymphonyError
from symphonyd.runtime.durable import fsync_dir, private_dir, write_all

_TAIL_CHUNK = 64 * 1024


class AuditStoreError(SymphonyError):
    """The audit directory cannot be written or its head cannot be trusted."""

    code = "audit_unavailable"


@dataclass(frozen=True)
class Sender:
    """Who sent an event, as the kernel said (SO_PEERCRED) and the socket it came in on."""

    uid: int
    pid: int
    unit: str | None = None
    socket: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"uid": self.uid, "pid": self.pid, "unit": self.unit, "socket": self.socket}


@dataclass(frozen=True)
class Pending:
    event: ShapedEvent
    sender: Sender


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _private_dir(path: Path) -> None:
    try:
        private_dir(path)
    except NotADirectoryError as exc:
        raise AuditStoreError(str(exc)) from None


@dataclass(frozen=True)
class _Tail:
    keep: int  # bytes of the file that stay
    head: ChainHead | None  # last valid record in the kept part, None if the part is empty
    reason: str | None  # why bytes after ``keep`` are cut, None if nothing is


def _read_tail(path: Path) -> _Tail:
    """Find the last valid record of a day file, reading backwards from its end only."""
    with path.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        pos, buf = size, b""
        # Enough to hold the torn fragment, the last line and the line before it.
        while pos > 0 and buf.count(b"\n") < 3:
            step = min(_TAIL_CHUNK, pos)
            pos -= step
            fh.seek(pos)
            buf = fh.read(step) + buf
    if pos > 0:
        buf = buf[buf.index(b"\n") + 1 :]  # drop the partial line at the window's start
    *lines, torn = buf.split(b"\n")
    keep = size - len(torn)
    reasons = ["torn last line (no trailing newline)"] if torn else []
    for index, line in enumerate(reversed(lines[-2:])):
        try:
            record = parse_line(line)
        except ChainBreak as exc:
            if index > 0:
                raise AuditStoreError(
                    f"{path.name}: the last two lines are damaged ({exc.reason}); "
                    "run `symphonyctl audit verify` and repair by hand"
                ) from None
            reasons.append(f"unparsable last line ({exc.reason})")
            keep -= len(line) + 1
            continue
        head = ChainHead(record["seq"], record["record_hash"], record["ts"])
        return _Tail(keep, head, "; ".join(reasons) or None)
    return _Tail(keep, None, "; ".join(reasons) or None)


def _genesis_hash(directory: Path) -> str | None:
    """The chain's identity: its genesis record's hash, if the oldest file still starts with it."""
    for _day, path in day_files(directory):
        with path.open("rb") as fh:
            first = fh.readline()
        if not first:
            continue
        try:
            record = parse_line(first.rstrip(b"\n"))
        except ChainBreak:
            return None
        return str(record["record_hash"]) if record["seq"] == 0 else None
    return None


class AuditStore:
    """Append-only, fsynced, hash-chained day files in one private directory."""

    def __init__(
        self,
        directory: Path,
        *,
        writer: Sender,
        clock: Callable[[], str] = utc_now,
    ) -> None:
        self.directory = Path(directory)
        self._writer = writer
        self._clock = clock
        self._head: ChainHead | None = None
        self._fd: int | None = None
        self._fd_day: str | None = None
        self._failed: str | None = None
        self.chain_id: str | None = None  # record_hash of the genesis record, once known

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> list[dict[str, Any]]:
        """Prepare the directory, recover the head; return records written while doing so."""
        _private_dir(self.directory)
        written: list[dict[str, Any]] = []
        recovered: list[dict[str, Any]] = []
        for _day, path in reversed(day_files(self.directory)):
            if path.stat().st_size == 0:
                continue
            tail = _read_tail(path)
            if tail.reason is not None:
                recovered.append(self._quarantine(path, tail))
            if tail.head is not None:
                self._head = tail.head
                break
        if self._head is None:
            written += self._append_records([self._genesis()])
        self.chain_id = _genesis_hash(self.directory)
        for payload in reversed(recovered):
            written += self._append_records([self._writer_event(audit_events.RECOVERED, payload)])
        return written

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd, self._fd_day = None, None

    @property
    def head(self) -> ChainHead:
        if self._head is None:
            raise AuditStoreError("audit store is not open")
        return self._head

    # ------------------------------------------------------------------ appends

    def append(self, batch: Sequence[Pending]) -> list[dict[str, Any]]:
        """Sequence, write and fsync ``batch``; return the sealed records once durable."""
        if self._failed is not None:
            raise AuditStoreError(f"audit store failed earlier: {self._failed}")
        records = [
            {
                "type": p.event.type,
                "sender": p.sender.as_dict(),
                "issue_id": p.event.issue_id,
                "issue_identifier": p.event.issue_identifier,
                "session_id": p.event.session_id,
                "payload": p.event.payload,
            }
            for p in batch
        ]
        return self._append_records(records)

    def _writer_event(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": kind,
            "sender": self._writer.as_dict(),
            "issue_id": None,
            "issue_identifier": None,
            "session_id": None,
            "payload": payload,
        }

    def _genesis(self) -> dict[str, Any]:
        return self._writer_event(
            audit_events.GENESIS, {"writer": "symphony-audit", "record_version": RECORD_VERSION}
        )

    def _append_records(self, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        head = self._head
        sealed = []
        for body in bodies:
            # The writer's clock never runs backwards in the chain, so day files stay ordered.
            ts = self._clock() if head is None else max(self._clock(), head.ts)
            record = seal(
                {
                    "v": RECORD_VERSION,
                    "seq": 0 if head is None else head.seq + 1,
                    "ts": ts,
                    **body,
                    "previous_hash": GENESIS_PREVIOUS_HASH if head is None else head.hash,
                }
            )
            sealed.append(record)
            head = ChainHead(record["seq"], record["record_hash"], ts)
        try:
            for day, group in groupby(sealed, key=lambda r: day_of(r["ts"])):
                fd = self._file_for(day)
                write_all(fd, b"".join(record_line(r) for r in group))
                os.fdatasync(fd)
        except OSError as exc:
            # After a failed write or fsync the file state is unknown: refuse everything from
            # now on; a restart recovers from what is actually on disk.
            self._failed = f"{exc.strerror or exc} ({errno.errorcode.get(exc.errno or 0, '?')})"
            with contextlib.suppress(OSError):
                self.close()
            self._fd, self._fd_day = None, None
            raise AuditStoreError(f"audit write failed: {self._failed}") from None
        self._head = head
        return sealed

    def _file_for(self, day: str) -> int:
        if self._fd is not None and self._fd_day == day:
            return self._fd
        self.close()
        path = self.directory / f"{day}.ndjson"
        flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
            created = True
        except FileExistsError:
            fd = os.open(path, flags)
            created = False
        os.fchmod(fd, 0o600)
        if created:
            fsync_dir(self.directory)
        self._fd, self._fd_day = fd, day
        return fd

    # ------------------------------------------------------------------ recovery

    def _quarantine(self, path: Path, tail: _Tail) -> dict[str, Any]:
        qdir = self.directory / QUARANTINE
        _private_dir(qdir)
        with path.open("rb") as fh:
            fh.seek(tail.keep)
            torn = fh.read()
        stamp = self._clock().replace(":", "")
        target = qdir / f"{stamp}-{path.stem}.torn"
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            write_all(fd, torn)
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(qdir)
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            os.ftruncate(fd, tail.keep)
            os.fsync(fd)
        finally:
            os.close(fd)
        return {
            "file": path.name,
            "offset": tail.keep,
            "bytes": len(torn),
            "sha256": hashlib.sha256(torn).hexdigest(),
            "quarantine": f"{QUARANTINE}/{target.name}",
            "reason": tail.reason,
        }
