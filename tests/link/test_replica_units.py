"""The pure parts of audit replication: the worker's page reader and the replica store.

The daemons, ssh and the ways they fail together are in test_audit_replica.py; here the
page bounds, the resume point and the verification rules are pinned one by one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from symphonyd.audit.replication import PageReader
from symphonyd.audit.verify import verify_dir
from symphonyd.core.audit_layout import day_files, replica_dirs
from symphonyd.core.errors import ValidationError
from symphonyd.link.replica_store import ReplicaStore, verify_page
from tests.audit.helpers import fill

DAYS = ["2026-11-20", "2026-11-21", "2026-11-22"]


def _stored(directory: Path) -> list[bytes]:
    return [line for _d, path in day_files(directory) for line in path.read_bytes().splitlines()]


def _replicate(source: Path, target: Path, *, limit: int) -> int:
    """Pull pages from ``source`` into a replica at ``target`` as the link does; page count."""
    reader = PageReader(source, lambda: len(_stored(source)) - 1)
    store = ReplicaStore(target)
    store.open()
    pages = 0
    while True:
        after = -1 if store.head is None else store.head.seq - 1
        page = reader.page(after, limit)
        pages += 1
        verified = verify_page(
            [line.encode("utf-8", "surrogateescape") for line in page.lines],
            store.head,
            store.head_line,
        )
        store.append(verified)
        if store.head is not None and store.head.seq >= page.head_seq:
            return pages


def test_pages_across_day_files_make_a_byte_identical_replica(tmp_path: Path) -> None:
    fill(tmp_path / "w", DAYS, per_day=7)  # 22 records over three day files
    pages = _replicate(tmp_path / "w", tmp_path / "r", limit=5)
    assert pages == 6  # 5 new records a page except the first (genesis + 4)
    for (day, ours), (their_day, theirs) in zip(
        day_files(tmp_path / "r"), day_files(tmp_path / "w"), strict=True
    ):
        assert day == their_day and ours.read_bytes() == theirs.read_bytes()
    assert verify_dir(tmp_path / "r").ok


def test_a_restarted_replica_resumes_with_no_duplicate_and_cuts_a_torn_line(
    tmp_path: Path,
) -> None:
    fill(tmp_path / "w", DAYS[:1], per_day=10)
    _replicate(tmp_path / "w", tmp_path / "r", limit=4)
    newest = day_files(tmp_path / "r")[-1][1]
    with newest.open("ab") as fh:
        fh.write(b'{"v":1,"seq":11')  # the link died in the middle of a write
    store = ReplicaStore(tmp_path / "r")
    assert store.open() is not None and store.head is not None and store.head.seq == 10
    assert newest.read_bytes() == (tmp_path / "w" / newest.name).read_bytes()


def test_the_reader_serves_only_durable_records(tmp_path: Path) -> None:
    fill(tmp_path / "w", DAYS[:1], per_day=10)
    page = PageReader(tmp_path / "w", lambda: 3).page(-1, 100)
    assert len(page.lines) == 4 and page.head_seq == 3
    assert PageReader(tmp_path / "w", lambda: 3).page(3, 100).lines == []


def test_the_reader_stops_at_a_line_still_being_written(tmp_path: Path) -> None:
    fill(tmp_path / "w", DAYS[:1], per_day=3)
    path = day_files(tmp_path / "w")[-1][1]
    with path.open("ab") as fh:
        fh.write(b'{"v":1,"seq":4')
    page = PageReader(tmp_path / "w", lambda: 10).page(1, 100)
    assert [line[:14] for line in page.lines] == ['{"issue_id":"i'] * 2


def test_a_damaged_line_is_sent_as_stored_and_stops_the_replica(tmp_path: Path) -> None:
    fill(tmp_path / "w", DAYS[:1], per_day=5)
    path = day_files(tmp_path / "w")[0][1]
    lines = path.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b'"n":2', b'"n":9')
    path.write_bytes(b"".join(lines))
    page = PageReader(tmp_path / "w", lambda: 5).page(-1, 100)
    assert page.lines[3].encode() == lines[3][:-1]
    verified = verify_page([line.encode() for line in page.lines], None, None)
    assert len(verified.records) == 3 and verified.head is not None and verified.head.seq == 2
    assert verified.broken is not None
    assert verified.broken.startswith("record 3: record_hash does not match")


def test_a_record_changed_after_replication_is_named(tmp_path: Path) -> None:
    fill(tmp_path / "w", DAYS[:1], per_day=5)
    _replicate(tmp_path / "w", tmp_path / "r", limit=100)
    store = ReplicaStore(tmp_path / "r")
    store.open()
    verified = verify_page([b'{"other":1}'], store.head, store.head_line)
    assert verified.records == [] and verified.head == store.head
    assert verified.broken is not None
    assert verified.broken.startswith("record 5 on the worker differs")


@pytest.mark.parametrize(("after", "limit"), [(-2, 10), (0, 0), (0, 1001)])
def test_bad_page_requests_are_typed_errors(tmp_path: Path, after: int, limit: int) -> None:
    fill(tmp_path / "w", DAYS[:1], per_day=1)
    with pytest.raises(ValidationError):
        PageReader(tmp_path / "w", lambda: 1).page(after, limit)


def test_replica_dirs_lists_hosts_with_an_audit_directory(tmp_path: Path) -> None:
    (tmp_path / "w2" / "audit").mkdir(parents=True)
    (tmp_path / "w1" / "audit").mkdir(parents=True)
    (tmp_path / "stray").mkdir()
    assert [name for name, _ in replica_dirs(tmp_path)] == ["w1", "w2"]
    assert replica_dirs(tmp_path / "missing") == []
