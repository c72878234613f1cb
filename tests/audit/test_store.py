from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from symphonyd.audit.store import AuditStore, AuditStoreError
from symphonyd.audit.verify import verify_dir
from symphonyd.core.audit_chain import GENESIS_PREVIOUS_HASH
from symphonyd.core.audit_layout import day_files
from tests.audit.helpers import WRITER, Clock, fill, open_store, pending


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_fresh_directory_gets_genesis_private_modes(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    store = open_store(directory)
    records = store.append([pending(1), pending(2)])
    store.close()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    [(_day, path)] = day_files(directory)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    rows = _lines(path)
    assert rows[0]["type"] == "genesis" and rows[0]["previous_hash"] == GENESIS_PREVIOUS_HASH
    assert [r["seq"] for r in rows] == [0, 1, 2]
    assert rows[1:] == records
    assert rows[1]["sender"]["unit"] == "symphony-dispatcher.service"
    assert verify_dir(directory).summary() == "ok 3 records"


def test_loose_directory_mode_is_tightened(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    directory.mkdir()
    directory.chmod(0o755)
    open_store(directory).close()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_chain_continues_across_days_and_restarts(tmp_path: Path) -> None:
    fill(tmp_path, ["2026-11-20", "2026-11-21"], 3)
    store = open_store(tmp_path, Clock("2026-11-23"))
    assert store.head.seq == 6
    store.append([pending(99)])
    store.close()
    assert [d for d, _ in day_files(tmp_path)] == ["2026-11-20", "2026-11-21", "2026-11-23"]
    assert verify_dir(tmp_path).summary() == "ok 8 records"


def test_clock_going_backwards_keeps_the_chain_ordered(tmp_path: Path) -> None:
    clock = Clock("2026-11-21")
    store = open_store(tmp_path, clock)
    clock.day = "2026-11-20"
    [record] = store.append([pending(1)])
    store.close()
    assert record["ts"].startswith("2026-11-21")
    assert verify_dir(tmp_path).ok


def test_torn_tail_is_quarantined_and_recovered(tmp_path: Path) -> None:
    fill(tmp_path, ["2026-11-20"], 4)
    path = tmp_path / "2026-11-20.ndjson"
    intact = path.read_bytes()
    torn = b'{"v":1,"seq":5,"ts":"2026-11-20T'
    path.write_bytes(intact + torn)
    open_store(tmp_path, Clock("2026-11-20")).close()
    assert path.read_bytes().startswith(intact)
    recovered = _lines(path)[-1]
    assert recovered["type"] == "recovered" and recovered["seq"] == 5
    assert recovered["sender"] == WRITER.as_dict()
    payload = recovered["payload"]
    assert payload["bytes"] == len(torn) and payload["offset"] == len(intact)
    quarantined = tmp_path / payload["quarantine"]
    assert quarantined.read_bytes() == torn
    assert stat.S_IMODE(quarantined.stat().st_mode) == 0o600
    assert verify_dir(tmp_path).summary() == "ok 6 records"


def test_unparsable_complete_last_line_is_quarantined(tmp_path: Path) -> None:
    fill(tmp_path, ["2026-11-20"], 2)
    path = tmp_path / "2026-11-20.ndjson"
    path.write_bytes(path.read_bytes() + b"\x00\x00garbage\n")
    open_store(tmp_path, Clock("2026-11-20")).close()
    last = _lines(path)[-1]
    assert last["type"] == "recovered" and "unparsable last line" in last["payload"]["reason"]
    assert verify_dir(tmp_path).ok


def test_whole_torn_file_falls_back_to_previous_day(tmp_path: Path) -> None:
    fill(tmp_path, ["2026-11-20"], 2)
    (tmp_path / "2026-11-21.ndjson").write_bytes(b'{"v":1,"se')
    open_store(tmp_path, Clock("2026-11-21")).close()
    rows = _lines(tmp_path / "2026-11-21.ndjson")
    assert [r["type"] for r in rows] == ["recovered"]
    assert rows[0]["seq"] == 3
    assert verify_dir(tmp_path).ok


def test_two_damaged_lines_refuse_to_start(tmp_path: Path) -> None:
    fill(tmp_path, ["2026-11-20"], 2)
    path = tmp_path / "2026-11-20.ndjson"
    path.write_bytes(path.read_bytes() + b"bad one\nbad two\n")
    with pytest.raises(AuditStoreError, match="last two lines are damaged"):
        open_store(tmp_path)


@pytest.mark.root
def test_disk_full_fails_closed_and_recovers(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mnt)], check=True)
    try:
        store = open_store(mnt / "audit", Clock("2026-11-20"))
        acked = 0
        with pytest.raises(AuditStoreError, match="audit write failed"):
            for n in range(100):
                store.append([pending(n, blob="q" * 7000)])
                acked += 1
        with pytest.raises(AuditStoreError, match="failed earlier"):
            store.append([pending(1000)])
        # Room again: a restart recovers whatever partial write the full disk left behind.
        subprocess.run(["mount", "-o", "remount,size=4m", str(mnt)], check=True)
        reopened = open_store(mnt / "audit", Clock("2026-11-20"))
        reopened.close()
        result = verify_dir(mnt / "audit")
        assert result.ok, result.summary()
        assert result.records >= acked + 1
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_head_is_rebuilt_from_the_tail_only(tmp_path: Path) -> None:
    fill(tmp_path, ["2026-11-20", "2026-11-21"], 3)
    # Damage the older file: start-up must not read it (verify is the full check).
    older = tmp_path / "2026-11-20.ndjson"
    older.write_bytes(b"garbage\n" + older.read_bytes())
    store = AuditStore(tmp_path, writer=WRITER, clock=Clock("2026-11-21"))
    assert store.open() == []
    assert store.head.seq == 6
    store.close()
    assert not verify_dir(tmp_path).ok


def test_long_tail_lines_are_found_across_read_chunks(tmp_path: Path) -> None:
    store = open_store(tmp_path, Clock("2026-11-20"))
    big = "z" * 7000
    for n in range(30):
        store.append([pending(n, blob=big)])
    store.close()
    path = tmp_path / "2026-11-20.ndjson"
    path.write_bytes(path.read_bytes() + b'{"v":1,"seq":31' + b"x" * 70000)
    reopened = open_store(tmp_path, Clock("2026-11-20"))
    assert reopened.head.seq == 31  # 30 appends + genesis + the recovered record
    reopened.close()
    assert verify_dir(tmp_path).summary() == "ok 32 records"
