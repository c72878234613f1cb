"""Streaming verification of an audit directory, and reading records back for display.

``verify_dir`` walks the day files oldest first, one line at a time, keeping only the
previous record's (seq, hash, ts): memory stays flat however long the log is. It stops at
the first record that does not fit and names its file and line. Read-only: it never
repairs anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from symphonyd.core.audit_chain import ChainBreak, ChainHead, check_link, parse_stored_line
from symphonyd.core.audit_layout import day_files

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class Checkpoint:
    """A head kept outside the directory (a journal anchor, or one copied off-host by hand);
    the chain must still contain it."""

    seq: int
    hash: str
    source: str = "the checkpoint"  # how messages name it
    chain: str | None = None  # genesis record_hash of the chain it was taken from, if known

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        seq, sep, digest = text.strip().partition(":")
        if not sep or not seq.isdecimal() or not _HEX64.fullmatch(digest):
            raise ValueError("checkpoint must look like SEQ:SHA256HEX")
        return cls(int(seq), digest.lower())


BROKEN, TRUNCATED, REWRITTEN = "broken", "truncated", "rewritten"


@dataclass(frozen=True)
class VerifyResult:
    records: int
    files: int
    head: ChainHead | None
    anchored: bool  # the range started mid-chain, so its first link was taken on trust
    broken_file: str | None = None
    broken_line: int | None = None
    reason: str | None = None
    # broken: the chain itself does not hold; truncated / rewritten: it holds, but does not
    # reach or does not contain a checkpoint taken earlier.
    kind: str | None = None
    first_seq: int | None = None  # seq of the first record verified

    @property
    def ok(self) -> bool:
        return self.reason is None

    def summary(self) -> str:
        if self.ok:
            return f"ok {self.records} records"
        return f"{self.kind or BROKEN} at {self.broken_file}:{self.broken_line}: {self.reason}"


def _selected(directory: Path, from_day: str | None, to_day: str | None) -> tuple[list[Path], bool]:
    files = day_files(directory)
    chosen = [
        path
        for day, path in files
        if (from_day is None or day >= from_day) and (to_day is None or day <= to_day)
    ]
    skipped_before = bool(files) and bool(chosen) and files[0][1] != chosen[0]
    return chosen, skipped_before


class _Mismatch(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.reason = kind, reason


def verify_dir(
    directory: Path,
    *,
    from_day: str | None = None,
    to_day: str | None = None,
    checkpoint: Checkpoint | None = None,
    checkpoints: Sequence[Checkpoint] = (),
) -> VerifyResult:
    """Verify every record of the day files in [from_day, to_day] (all when None).

    Every checkpoint must be in the chain with its hash (else ``rewritten``) or, when its seq
    lies beyond the chain's end, the chain was cut (``truncated``); a checkpoint that names
    its chain's genesis also catches a directory replaced by another chain at its first line.
    """
    marks = [*checkpoints, *([checkpoint] if checkpoint is not None else [])]
    files, anchored = _selected(Path(directory), from_day, to_day)
    if not files and from_day is None and to_day is None:
        if marks:
            cut = max(marks, key=lambda c: c.seq)
            return VerifyResult(
                0,
                0,
                None,
                False,
                str(directory),
                0,
                f"no audit day files, but {cut.source} has seq {cut.seq} "
                "(newest records truncated or deleted)",
                TRUNCATED,
            )
        return VerifyResult(0, 0, None, False, str(directory), 0, "no audit day files", BROKEN)
    by_seq: dict[int, list[Checkpoint]] = {}
    for mark in marks:
        by_seq.setdefault(mark.seq, []).append(mark)
    head: ChainHead | None = None
    first_seq: int | None = None
    count = 0
    for path in files:
        day = path.name[:10]
        with path.open("rb") as fh:
            for line_no, raw in enumerate(fh, 1):
                try:
                    record = parse_stored_line(raw)
                    if first_seq is None:
                        first_seq = record["seq"]
                        if anchored:
                            head = _anchor(record)
                    head = check_link(record, head, day=day)
                    if record["seq"] == 0:
                        _check_genesis(record["record_hash"], marks)
                    _check_marks(record, by_seq.get(record["seq"], ()))
                except (ChainBreak, _Mismatch) as exc:
                    kind = exc.kind if isinstance(exc, _Mismatch) else BROKEN
                    return VerifyResult(
                        count,
                        files.index(path) + 1,
                        head,
                        anchored,
                        str(path),
                        line_no,
                        exc.reason,
                        kind,
                        first_seq,
                    )
                count += 1
    beyond = [m for m in marks if head is None or m.seq > head.seq]
    if beyond and files and to_day is None:
        cut = max(beyond, key=lambda c: c.seq)
        ends = "nothing" if head is None else f"seq {head.seq}"
        return VerifyResult(
            count,
            len(files),
            head,
            anchored,
            str(files[-1]),
            _line_count(files[-1]) + 1,
            f"chain ends at {ends} but {cut.source} has seq {cut.seq} "
            "(newest records truncated or deleted)",
            TRUNCATED,
            first_seq,
        )
    return VerifyResult(count, len(files), head, anchored, first_seq=first_seq)


def _check_genesis(genesis: str, marks: Sequence[Checkpoint]) -> None:
    for mark in marks:
        if mark.chain is not None and mark.chain != genesis:
            raise _Mismatch(
                REWRITTEN,
                f"genesis record differs from the chain {mark.source} was taken from "
                "(the directory was replaced by another chain)",
            )


def _check_marks(record: dict[str, Any], marks: Sequence[Checkpoint]) -> None:
    for mark in marks:
        if record["record_hash"] != mark.hash:
            raise _Mismatch(
                REWRITTEN, f"record {mark.seq} differs from {mark.source} (history rewritten)"
            )


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
