"""Streaming verification of an audit directory, and reading records back for display.

``verify_dir`` walks the day files oldest first, one line at a time, keeping only the
previous record's (seq, hash, ts): memory stays flat however long the log is. It stops at
the first record that does not fit and names its file and line. Read-only: it never
repairs anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from symphonyd.audit.layout import day_files
from symphonyd.core.audit_chain import ChainBreak, ChainHead, check_link, parse_stored_line

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class Checkpoint:
    """A head copied off-host earlier (``audit.head``); the chain must still contain it."""

    seq: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        seq, sep, digest = text.strip().partition(":")
        if not sep or not seq.isdecimal() or not _HEX64.fullmatch(digest):
            raise ValueError("checkpoint must look like SEQ:SHA256HEX")
        return cls(int(seq), digest.lower())


@dataclass(frozen=True)
class VerifyResult:
    records: int
    files: int
    head: ChainHead | None
    anchored: bool  # the range started mid-chain, so its first link was taken on trust
    broken_file: str | None = None
    broken_line: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    def summary(self) -> str:
        if self.ok:
            return f"ok {self.records} records"
        return f"broken at {self.broken_file}:{self.broken_line}: {self.reason}"


def _selected(directory: Path, from_day: str | None, to_day: str | None) -> tuple[list[Path], bool]:
    files = day_files(directory)
    chosen = [
        path
        for day, path in files
        if (from_day is None or day >= from_day) and (to_day is None or day <= to_day)
    ]
    skipped_before = bool(files) and bool(chosen) and files[0][1] != chosen[0]
    return chosen, skipped_before


def verify_dir(
    directory: Path,
    *,
    from_day: str | None = None,
    to_day: str | None = None,
    checkpoint: Checkpoint | None = None,
) -> VerifyResult:
    """Verify every record of the day files in [from_day, to_day] (all when None)."""
    files, anchored = _selected(Path(directory), from_day, to_day)
    if not files and from_day is None and to_day is None:
        return VerifyResult(0, 0, None, False, str(directory), 0, "no audit day files")
    head: ChainHead | None = None
    count = 0
    checkpoint_seen = False
    first = True
    for path in files:
        day = path.name[:10]
        with path.open("rb") as fh:
            for line_no, raw in enumerate(fh, 1):
                try:
                    record = parse_stored_line(raw)
                    if first and anchored:
                        head = _anchor(record)
                    head = check_link(record, head, day=day)
                    checkpoint_seen = _matches_checkpoint(record, checkpoint) or checkpoint_seen
                except ChainBreak as exc:
                    return VerifyResult(
                        count, files.index(path) + 1, head, anchored, str(path), line_no, exc.reason
                    )
                first = False
                count += 1
    if checkpoint is not None and not checkpoint_seen and files:
        last = files[-1]
        ends = "nothing" if head is None else f"seq {head.seq}"
        if head is None or head.seq < checkpoint.seq:
            return VerifyResult(
                count,
                len(files),
                head,
                anchored,
                str(last),
                _line_count(last) + 1,
                f"chain ends at {ends} but the checkpoint has seq {checkpoint.seq} "
                "(newest records truncated or deleted)",
            )
    return VerifyResult(count, len(files), head, anchored)


def _matches_checkpoint(record: dict[str, Any], checkpoint: Checkpoint | None) -> bool:
    if checkpoint is None or record["seq"] != checkpoint.seq:
        return False
    if record["record_hash"] != checkpoint.hash:
        raise ChainBreak(f"record {checkpoint.seq} differs from the checkpoint (history rewritten)")
    return True


def _anchor(record: dict[str, Any]) -> ChainHead | None:
    """Trust the first record's link when verification starts after the genesis file."""
    if record["seq"] == 0:
        return None
    return ChainHead(record["seq"] - 1, record["previous_hash"], record["ts"])


def _line_count(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


@dataclass(frozen=True)
class Located:
    file: str
    line: int
    record: dict[str, Any] | None  # None when the line could not be parsed
    error: str | None = None


def iter_records(
    directory: Path, *, from_day: str | None = None, to_day: str | None = None
) -> Iterator[Located]:
    """Every line of the selected day files, parsed; damaged lines come with an error."""
    files, _ = _selected(Path(directory), from_day, to_day)
    for path in files:
        with path.open("rb") as fh:
            for line_no, raw in enumerate(fh, 1):
                try:
                    yield Located(str(path), line_no, parse_stored_line(raw))
                except ChainBreak as exc:
                    yield Located(str(path), line_no, None, exc.reason)
