"""Bounded parsing of an agent's stdout and stderr (ARCHITECTURE invariant 7, seed 000).

An agent process is untrusted: its stdout may carry lines of any length, bytes that are not
UTF-8, JSON of any shape or plain garbage. ``LineSplitter`` cuts a byte stream into lines
without ever holding more than ``max_line`` bytes of one line; a longer line is skipped up to
its newline and only counted. ``decode_object`` turns one line into a JSON object or ``None``
and counts why it refused. Nothing here raises on input.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

MAX_LINE = 10 * 1024 * 1024  # SPEC 10.1: 10 MB per protocol line
STDERR_RING = 8 * 1024
READ_CHUNK = 64 * 1024


@dataclass
class StreamStats:
    """Counters an operator can read after a run (never raw content)."""

    lines: int = 0
    bytes: int = 0
    oversized: int = 0
    malformed: int = 0  # not JSON, or JSON that is not an object
    unknown: int = 0  # a JSON object of a shape the protocol client does not know
    ignored: int = 0  # a documented protocol message the client has no use for (not an error)

    def as_dict(self) -> dict[str, int]:
        return {
            "lines": self.lines,
            "bytes": self.bytes,
            "oversized": self.oversized,
            "malformed": self.malformed,
            "unknown": self.unknown,
            "ignored": self.ignored,
        }


class LineSplitter:
    """Incremental newline splitter with a hard per-line cap."""

    def __init__(self, stats: StreamStats, max_line: int = MAX_LINE) -> None:
        self._stats = stats
        self._max = max_line
        self._buf = bytearray()
        self._discarding = False  # inside an oversized line, waiting for its newline

    def feed(self, chunk: bytes) -> list[bytes]:
        self._stats.bytes += len(chunk)
        out: list[bytes] = []
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                self._keep(chunk, start, len(chunk))
                return out
            if self._discarding:
                self._discarding = False
            elif len(self._buf) + (nl - start) > self._max:
                self._stats.oversized += 1
            else:
                self._buf += chunk[start:nl]
                out.append(bytes(self._buf))
                self._stats.lines += 1
            self._buf.clear()
            start = nl + 1

    def _keep(self, chunk: bytes, start: int, end: int) -> None:
        if self._discarding:
            return
        if len(self._buf) + (end - start) > self._max:
            # Drop what we held and everything up to the next newline, counted once.
            self._buf.clear()
            self._discarding = True
            self._stats.oversized += 1
            return
        self._buf += chunk[start:end]

    def finish(self) -> list[bytes]:
        """The final line when the stream ends without a newline."""
        if self._discarding or not self._buf:
            self._buf.clear()
            return []
        line = bytes(self._buf)
        self._buf.clear()
        self._stats.lines += 1
        return [line]


MAX_DEPTH = 256
MAX_STRUCTURE = 1_000_000  # structural brackets in one line
_STRING_RE = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def too_deep(line: bytes, limit: int = MAX_DEPTH) -> bool:
    """True when the JSON nesting exceeds ``limit``, checked without recursing.

    Refusing such lines up front keeps RecursionError (and the interpreter state it can
    leave behind) out of the daemon entirely.
    """
    if line.count(b"[") + line.count(b"{") <= limit:
        return False
    brackets = _STRING_RE.sub(b"", line).translate(None, _NOT_BRACKET)
    if len(brackets) > MAX_STRUCTURE:
        return True  # no real protocol line is this structured; do not spend time on it
    depth = 0
    for byte in brackets:
        depth += 1 if byte in (0x5B, 0x7B) else -1
        if depth > limit:
            return True
    return False


def decode_object(line: bytes, stats: StreamStats) -> dict[str, Any] | None:
    """One protocol line as a JSON object, or None (counted as malformed)."""
    if too_deep(line):
        stats.malformed += 1
        return None
    text = line.decode("utf-8", errors="replace").strip()
    if not text:
        return None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        stats.malformed += 1
        return None
    if not isinstance(obj, dict):
        stats.malformed += 1
        return None
    return obj


class StderrRing:
    """The last ``size`` bytes of a diagnostic stream, for failure messages only."""

    def __init__(self, size: int = STDERR_RING) -> None:
        self._size = size
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> None:
        self._buf += chunk[-self._size :]
        if len(self._buf) > self._size:
            del self._buf[: len(self._buf) - self._size]

    def text(self) -> str:
        return self._buf.decode("utf-8", errors="replace")

    def tail(self, limit: int = 400) -> str:
        """A short single-line excerpt for error messages."""
        lines = [ln.strip() for ln in self.text().splitlines() if ln.strip()]
        return " | ".join(lines[-3:])[-limit:]


async def read_lines(
    reader: asyncio.StreamReader, splitter: LineSplitter, queue: asyncio.Queue[bytes | None]
) -> None:
    """Pump ``reader`` into ``queue`` line by line; ``None`` marks end of stream."""
    try:
        while True:
            chunk = await reader.read(READ_CHUNK)
            if not chunk:
                break
            for line in splitter.feed(chunk):
                await queue.put(line)
        for line in splitter.finish():
            await queue.put(line)
    except (OSError, ValueError):
        pass  # a broken pipe ends the stream like EOF does
    finally:
        await queue.put(None)


async def drain_stderr(reader: asyncio.StreamReader, ring: StderrRing) -> None:
    try:
        while chunk := await reader.read(READ_CHUNK):
            ring.feed(chunk)
    except (OSError, ValueError):
        pass
