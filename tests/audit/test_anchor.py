"""Head anchors without a journal of our own: when the writer anchors, how verify reads them.

The end-to-end proof (real daemon, real journald, real journalctl) is
test_anchor_journal.py and, under systemd, test_unit_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from symphonyd.audit.anchor import MESSAGE_ID, Anchor, Anchorer
from symphonyd.audit.anchor_read import furthest
from symphonyd.audit.commit import GroupCommitter
from symphonyd.audit.config import parse_args
from symphonyd.core.api.shared import HEALTH, Empty
from symphonyd.core.errors import ConfigError
from symphonyd.ctl.main import main
from symphonyd.runtime.ipc_client import IpcClient
from tests.audit.daemon_proc import AuditDaemon, short_dir
from tests.audit.helpers import Clock, fill, open_store, pending
from tests.audit.journald import WITHOUT_JOURNAL

HASH_A, HASH_B, HASH_C = "a" * 64, "b" * 64, "c" * 64


class _Recorder:
    """Stands in for the journal: keeps what the anchorer would have sent."""

    def __init__(self) -> None:
        self.anchors: list[Anchor] = []

    def write(self, anchor: Anchor) -> None:
        self.anchors.append(anchor)


def test_anchorer_writes_at_start_rotation_when_moved_and_at_shutdown(tmp_path: Path) -> None:
    clock = Clock("2026-11-20")
    store = open_store(tmp_path, clock)
    store.close()
    sink = _Recorder()

    async def body() -> None:
        committer = GroupCommitter(store)
        await committer.start()
        anchorer = Anchorer(
            sink,
            directory=tmp_path,
            chain=store.chain_id,
            head=lambda: committer.head,
            interval=0.2,
        )
        committer.listeners.append(anchorer.observe)
        await anchorer.start()
        await asyncio.sleep(0.5)  # head unchanged: the schedule adds nothing
        await committer.submit([pending(1)])
        await asyncio.sleep(0.5)  # moved: one scheduled anchor, then nothing again
        clock.day, clock.tick = "2026-11-21", 0
        await committer.submit([pending(2)])  # opens a new day file
        await asyncio.sleep(0.5)
        await committer.submit([pending(3)])
        await committer.close()
        await anchorer.close()

    asyncio.run(asyncio.wait_for(body(), 30))
    got = [(a.reason, a.seq, a.file) for a in sink.anchors]
    assert got == [
        ("start", 0, "2026-11-20.ndjson"),
        ("schedule", 1, "2026-11-20.ndjson"),
        ("rotation", 2, "2026-11-21.ndjson"),
        ("shutdown", 3, "2026-11-21.ndjson"),
    ]
    assert {a.chain for a in sink.anchors} == {store.chain_id} and store.chain_id is not None
    assert {a.directory for a in sink.anchors} == {str(tmp_path)}


def test_chain_id_is_unknown_once_the_genesis_file_is_retired(tmp_path: Path) -> None:
    fill(tmp_path, ["2026-11-20", "2026-11-21"], 2)
    (tmp_path / "2026-11-20.ndjson").unlink()
    assert open_store(tmp_path).chain_id is None


def _entry(seq: object, digest: object, **extra: object) -> str:
    fields = {
        "MESSAGE_ID": MESSAGE_ID,
        "SYMPHONY_AUDIT_SEQ": seq,
        "SYMPHONY_AUDIT_HASH": digest,
        "__REALTIME_TIMESTAMP": "1796600312797077",
        **extra,
    }
    return json.dumps(fields)


def test_furthest_anchor_wins_and_malformed_entries_are_counted() -> None:
    lines = [
        _entry("7", HASH_A),
        _entry("12", HASH_B, SYMPHONY_AUDIT_CHAIN=HASH_C, SYMPHONY_AUDIT_ANCHOR_REASON="schedule"),
        _entry("3", HASH_C),  # filed later, lower: must not win
        _entry([49, 50], HASH_A),  # journalctl's form of a binary field
        _entry("12x", HASH_A),
        _entry("13", "not-a-hash"),
        _entry("14", HASH_A, SYMPHONY_AUDIT_CHAIN="zz"),
        "{broken json",
        "",
    ]
    scan = furthest(lines)
    assert (scan.entries, scan.malformed) == (8, 5)
    assert scan.best is not None
    assert (scan.best.seq, scan.best.hash, scan.best.chain) == (12, HASH_B, HASH_C)
    assert scan.best.source == "the journal anchor of 2026-12-06T23:38:32Z"
    # A tie goes to the later entry.
    tie = furthest([_entry("12", HASH_A), _entry("12", HASH_B)])
    assert tie.best is not None and tie.best.hash == HASH_B
    assert furthest([]).best is None


def test_verify_without_any_anchor_passes_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The system journal (empty here, or one holding anchors of other directories) has
    # nothing for this directory.
    fill(tmp_path, ["2026-11-20"], 2)
    assert main(["audit", "verify", "--dir", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert out == "ok 3 records\n"
    assert f"note: no journal anchor for {tmp_path} (uid {os.getuid()}) yet" in err
    assert main(["audit", "verify", "--dir", str(tmp_path), "--require-anchor"]) == 4
    assert "--require-anchor" in capsys.readouterr().out
    assert main(["audit", "verify", "--dir", str(tmp_path), "--no-anchor"]) == 0
    assert "--no-anchor" in capsys.readouterr().err


def test_verify_with_a_missing_journal_copy_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(tmp_path, ["2026-11-20"], 1)
    args = ["audit", "verify", "--dir", str(tmp_path), "--anchor-journal", str(tmp_path / "j")]
    assert main(args) == 2
    assert "no journal at" in capsys.readouterr().err


@pytest.mark.parametrize("interval", ["0", "0.5", "nan", "100000"])
def test_anchor_interval_out_of_range_is_refused(interval: str) -> None:
    with pytest.raises(ConfigError, match="--anchor-interval"):
        parse_args(["--anchor-interval", interval], {})


@pytest.mark.root
def test_writer_without_a_journal_keeps_recording_and_reports_it(tmp_path: Path) -> None:
    # No journald at the socket path: the anchor fails, the log does not.
    with short_dir() as socks:
        daemon = AuditDaemon(tmp_path / "audit", socks, prefix=WITHOUT_JOURNAL)
        with daemon:

            async def health() -> dict[str, object]:
                client = await IpcClient.connect(daemon.sock("dispatcher"))
                try:
                    return (await client.call(HEALTH, Empty())).detail
                finally:
                    await client.close()

            detail = asyncio.run(asyncio.wait_for(health(), 30))
            assert daemon.stop() == 0
            output = daemon.output()
    assert detail["anchored_seq"] is None and detail["anchor_failures"] == 1
    assert "event=audit_anchor_failed" in output and "reason=start" in output


def test_writer_with_anchor_none_says_so(tmp_path: Path) -> None:
    with short_dir() as socks:
        daemon = AuditDaemon(tmp_path / "audit", socks, extra=("--anchor", "none"))
        with daemon:
            assert daemon.stop() == 0
            output = daemon.output()
    assert "event=audit_anchor outcome=disabled" in output
    assert "audit_anchor_failed" not in output
