"""Anchoring the chain head outside the audit directory (the journal, by default).

The chain proves nothing about its own end: deleting the newest day file, or replacing the
whole directory with a self-consistent forged chain, leaves a valid chain. So the writer
copies its head (seq, hash, day file, chain id) to a place its own user cannot rewrite:
a structured journal entry with :data:`MESSAGE_ID`. Journal files belong to root; the
audit user can add entries but never change or remove old ones, and the verifier checks
against the *furthest* anchor (highest seq), so adding a lower one hides nothing.

When: at start, every ``interval`` seconds when the head moved, right after a batch that
opened a new day file (rotation), and at clean shutdown. Writing goes to the journal's
native socket directly (datagrams of ``FIELD=value`` lines, the documented protocol) so a
missing or refusing journal is an error we see, not a silent drop. An anchor that cannot
be written is logged and counted; the writer keeps recording (an audit outage would pause
every run, while a missed anchor only widens the window to the next one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from symphonyd.core.audit_chain import ChainHead, day_of
from symphonyd.runtime.logging import JOURNAL_SOCKET, log_event

log = logging.getLogger("symphonyd.audit.anchor")

# Fixed for every symphonyd audit anchor (`journalctl MESSAGE_ID=...`); never change it.
MESSAGE_ID = "9ca09438b6544138b13bedf8297221b7"
DEFAULT_INTERVAL = 60.0
_SEND_TIMEOUT = 5.0

FIELD_SEQ = "SYMPHONY_AUDIT_SEQ"
FIELD_HASH = "SYMPHONY_AUDIT_HASH"
FIELD_TS = "SYMPHONY_AUDIT_TS"
FIELD_FILE = "SYMPHONY_AUDIT_FILE"
FIELD_DIR = "SYMPHONY_AUDIT_DIR"
FIELD_CHAIN = "SYMPHONY_AUDIT_CHAIN"
FIELD_REASON = "SYMPHONY_AUDIT_ANCHOR_REASON"


class AnchorError(Exception):
    """The anchor could not be written."""


@dataclass(frozen=True)
class Anchor:
    """One copy of the head: what the verifier later compares the chain against."""

    seq: int
    hash: str
    ts: str  # the anchored record's own ts
    directory: str  # absolute path the writer was given (symlinks not resolved)
    chain: str | None  # record_hash of the genesis record, when the writer could read it
    reason: str  # start | schedule | rotation | shutdown

    @property
    def file(self) -> str:
        return f"{day_of(self.ts)}.ndjson"

    def fields(self) -> dict[str, str]:
        fields = {
            "MESSAGE": (
                f"event=audit_anchor reason={self.reason} seq={self.seq} hash={self.hash} "
                f"file={self.file}"
            ),
            "MESSAGE_ID": MESSAGE_ID,
            "PRIORITY": "6",
            "SYSLOG_IDENTIFIER": "symphony-audit",
            FIELD_SEQ: str(self.seq),
            FIELD_HASH: self.hash,
            FIELD_TS: self.ts,
            FIELD_FILE: self.file,
            FIELD_DIR: self.directory,
            FIELD_REASON: self.reason,
        }
        if self.chain is not None:
            fields[FIELD_CHAIN] = self.chain
        return fields


def anchor_directory(directory: Path) -> str:
    """The name anchors are filed under: absolute, but symlinks deliberately not resolved.

    A directory swapped for a symlink to a forged one must still meet the anchors of the
    path the operator verifies.
    """
    return os.path.abspath(directory)


class AnchorSink(Protocol):
    def write(self, anchor: Anchor) -> None: ...


class JournalSink:
    """The journal's native protocol: one datagram of ``FIELD=value\\n`` lines."""

    def __init__(self, path: str = JOURNAL_SOCKET) -> None:
        self.path = path

    def write(self, anchor: Anchor) -> None:
        lines = []
        for name, value in anchor.fields().items():
            if "\n" in value:  # every value here is ours and single-line; refuse otherwise
                raise AnchorError(f"journal field {name} holds a newline")
            lines.append(f"{name}={value}\n")
        data = "".join(lines).encode()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(_SEND_TIMEOUT)
            sock.sendto(data, self.path)
        except OSError as exc:
            raise AnchorError(f"journal at {self.path}: {exc.strerror or exc}") from None
        finally:
            sock.close()


SINKS: Mapping[str, Callable[[], AnchorSink]] = {"journal": JournalSink}


class Anchorer:
    """Decides when to anchor and writes anchors off the event loop, one at a time."""

    def __init__(
        self,
        sink: AnchorSink,
        *,
        directory: Path,
        chain: str | None,
        head: Callable[[], ChainHead],
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self._sink = sink
        self._directory = anchor_directory(directory)
        self._chain = chain
        self._head = head
        self._interval = interval
        self._wake = asyncio.Event()
        self._rotated = False
        self._task: asyncio.Task[None] | None = None
        self._day = day_of(head().ts)
        self.anchored: ChainHead | None = None
        self.written = 0
        self.failures = 0

    def observe(self, records: list[dict[str, Any]]) -> None:
        """Called after every durable batch: a new day file means anchor now."""
        if records and day_of(records[-1]["ts"]) != self._day:
            self._day = day_of(records[-1]["ts"])
            self._rotated = True
            self._wake.set()

    async def start(self) -> None:
        await self._write("start")
        self._task = asyncio.create_task(self._run(), name="audit-anchor")

    async def close(self) -> None:
        """Stop the schedule and anchor the final head (call after the committer drained)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._head() != self.anchored:
            await self._write("shutdown")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            reason = "rotation" if self._rotated else "schedule"
            self._rotated = False
            if reason == "rotation" or self._head() != self.anchored:
                await self._write(reason)

    async def _write(self, reason: str) -> None:
        head = self._head()
        anchor = Anchor(head.seq, head.hash, head.ts, self._directory, self._chain, reason)
        loop = asyncio.get_running_loop()
        try:
            # A datagram to a stalled journal can block: keep it off the event loop.
            await loop.run_in_executor(None, self._sink.write, anchor)
        except AnchorError as exc:
            self.failures += 1
            log_event(
                log,
                "audit_anchor_failed",
                level=logging.ERROR,
                reason=reason,
                seq=head.seq,
                error=str(exc),
            )
            return
        self.anchored = head
        self.written += 1
