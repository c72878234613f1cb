"""The audit writer anchors its head in a real journal; `audit verify` holds the chain to it.

The writer is the real daemon (``python -m symphonyd.audit`` with its default anchor sink),
logging to a real systemd-journald of the test's own (tests/audit/journald.py) at the
journal's production socket path; verification is ``symphonyctl audit verify`` reading that
journal's files with the real journalctl. The container suite (test_unit_e2e.py) does the
same against the packaged unit and the system journal.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from symphonyd.audit.anchor import MESSAGE_ID
from symphonyd.core.api.audit import AUDIT_APPEND, AuditAppend, AuditEventIn
from symphonyd.core.audit_chain import GENESIS_PREVIOUS_HASH, record_line, seal
from symphonyd.ctl.main import main
from symphonyd.runtime.ipc_client import IpcClient
from tests.audit.daemon_proc import AuditDaemon, short_dir
from tests.audit.helpers import fill, records_in
from tests.audit.journald import Journal, own_journald

pytestmark = [pytest.mark.root]
NOBODY = 65534


def _anchors(journal: Journal, directory: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [
            "journalctl",
            "--no-pager",
            "-q",
            "-o",
            "json",
            f"--directory={journal.directory}",
            f"MESSAGE_ID={MESSAGE_ID}",
            f"SYMPHONY_AUDIT_DIR={directory}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines()]


def _wait_anchor(journal: Journal, directory: Path, seq: int, reason: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for entry in _anchors(journal, directory):
            if (entry["SYMPHONY_AUDIT_SEQ"], entry["SYMPHONY_AUDIT_ANCHOR_REASON"]) == (
                str(seq),
                reason,
            ):
                return entry
        time.sleep(0.1)
    raise AssertionError(f"no {reason} anchor at seq {seq}: {_anchors(journal, directory)}")


def _append(daemon: AuditDaemon, count: int) -> None:
    async def send() -> None:
        client = await IpcClient.connect(daemon.sock("dispatcher"))
        try:
            for n in range(count):
                event = AuditEventIn(type="pause", payload={"n": n})
                await client.call(AUDIT_APPEND, AuditAppend(records=[event]))
        finally:
            await client.close()

    asyncio.run(asyncio.wait_for(send(), 60))


def _verify(capsys: pytest.CaptureFixture[str], audit: Path, journal: Journal) -> tuple[int, str]:
    code = main(
        ["audit", "verify", "--dir", str(audit), "--anchor-journal", str(journal.directory)]
    )
    return code, capsys.readouterr().out.strip()


def _forge_anchor(journal: Journal, directory: Path, seq: int, digest: str, uid: int) -> None:
    """Another process files an anchor of its own (native protocol, as any local user can)."""
    fields = {
        "MESSAGE": "forged",
        "MESSAGE_ID": MESSAGE_ID,
        "SYMPHONY_AUDIT_SEQ": str(seq),
        "SYMPHONY_AUDIT_HASH": digest,
        "SYMPHONY_AUDIT_DIR": str(directory),
    }
    payload = "".join(f"{k}={v}\n" for k, v in fields.items())
    send = (
        "import socket,sys; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
        "s.sendto(sys.argv[1].encode(), '/run/systemd/journal/socket')"
    )
    become = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    subprocess.run(
        [*journal.enter, *become, "/usr/bin/python3", "-I", "-c", send, payload], check=True
    )
    deadline = time.monotonic() + 30
    while not any(
        e.get("MESSAGE") == "forged" and e.get("_UID") == str(uid)
        for e in _anchors(journal, directory)
    ):
        assert time.monotonic() < deadline, "forged anchor never reached the journal"
        time.sleep(0.1)


def _rechain(records: list[dict[str, Any]]) -> list[bytes]:
    """Re-seal records with fresh seqs and links: a self-consistent rewritten history."""
    lines, prev = [], GENESIS_PREVIOUS_HASH
    for seq, record in enumerate(records):
        sealed = seal(dict(record, seq=seq, previous_hash=prev))
        lines.append(record_line(sealed))
        prev = sealed["record_hash"]
    return lines


def test_writer_anchors_head_in_journal_and_verify_catches_cut_and_forged_logs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with short_dir() as base, own_journald(base) as journal:
        audit = base / "audit"
        # First run: anchors at start and, once the head moved, on the 1 s schedule; the
        # head did not move after that, so stopping adds none.
        daemon = AuditDaemon(audit, base, extra=("--anchor-interval", "1"), prefix=journal.enter)
        with daemon:
            start = _wait_anchor(journal, audit, 0, "start")  # the genesis, at start
            _append(daemon, 3)
            scheduled = _wait_anchor(journal, audit, 3, "schedule")
            assert daemon.stop() == 0
        # Second run, schedule too slow to matter: the clean shutdown anchors the final head.
        daemon = AuditDaemon(audit, base, extra=("--anchor-interval", "3600"), prefix=journal.enter)
        with daemon:
            _wait_anchor(journal, audit, 3, "start")
            _append(daemon, 2)
            assert daemon.stop() == 0
        final = _wait_anchor(journal, audit, 5, "shutdown")
        reasons = [
            (e["SYMPHONY_AUDIT_SEQ"], e["SYMPHONY_AUDIT_ANCHOR_REASON"])
            for e in _anchors(journal, audit)
        ]
        assert reasons == [("0", "start"), ("3", "schedule"), ("3", "start"), ("5", "shutdown")]
        records = records_in(audit)
        assert [int(r["seq"]) for r in records] == list(range(6))
        assert final["SYMPHONY_AUDIT_HASH"] == records[5]["record_hash"]
        assert scheduled["SYMPHONY_AUDIT_HASH"] == records[3]["record_hash"]
        assert start["SYMPHONY_AUDIT_CHAIN"] == records[0]["record_hash"]
        (day_file,) = audit.glob("*.ndjson")
        assert final["SYMPHONY_AUDIT_FILE"] == day_file.name
        # journald, not the sender, set _UID: the writer's own (root here, as the dir owner).
        assert final["_UID"] == "0" and final["SYSLOG_IDENTIFIER"] == "symphony-audit"

        code, out = _verify(capsys, audit, journal)
        assert code == 0 and out.startswith("ok 6 records; the journal anchor of "), out
        assert out.endswith("(seq 5) matches")
        original = day_file.read_bytes()
        lines = original.splitlines(keepends=True)

        # The newest records cut at a line boundary: a valid chain, but short of the anchor.
        day_file.write_bytes(b"".join(lines[:4]))
        assert main(["audit", "verify", "--dir", str(audit), "--no-anchor"]) == 0
        capsys.readouterr()
        code, out = _verify(capsys, audit, journal)
        assert code == 4 and out.startswith(f"truncated at {day_file}:5: chain ends at seq 3 "), out
        assert out.endswith("has seq 5 (newest records truncated or deleted)")

        # A lower anchor filed afterwards by the writer's own uid does not hide the cut.
        _forge_anchor(journal, audit, 3, records[3]["record_hash"], 0)
        assert _verify(capsys, audit, journal)[0] == 4

        # The newest (here: the only) day file deleted.
        day_file.unlink()
        code, out = _verify(capsys, audit, journal)
        assert code == 4 and out.startswith(
            f"truncated at {audit}:0: no audit day files, but "
        ), out

        # History rewritten from record 2 on, hashes recomputed, padded back to 6 records.
        kept = [json.loads(line) for line in lines]
        forged = _rechain([*kept[:2], *kept[3:], dict(kept[5], payload={"n": "pad"})])
        day_file.write_bytes(b"".join(forged))
        assert main(["audit", "verify", "--dir", str(audit), "--no-anchor"]) == 0
        capsys.readouterr()
        code, out = _verify(capsys, audit, journal)
        assert (code, out) == (
            4,
            f"rewritten at {day_file}:6: record 5 differs from {_source(final)} "
            "(history rewritten)",
        )

        # The whole directory replaced by a self-consistent forged chain, longer than the
        # anchored one.
        shutil.rmtree(audit)
        fill(audit, ["2026-11-20", "2026-11-21"], 5)
        code, out = _verify(capsys, audit, journal)
        assert code == 4, out
        assert out.startswith(f"rewritten at {audit / '2026-11-20.ndjson'}:1: genesis record ")
        assert "(the directory was replaced by another chain)" in out

        # Back to the real log: it verifies again, and an anchor another user filed with a
        # higher seq is not taken for the writer's.
        shutil.rmtree(audit)
        audit.mkdir(mode=0o700)
        day_file.write_bytes(original)
        _forge_anchor(journal, audit, 99, "0" * 64, NOBODY)
        code, out = _verify(capsys, audit, journal)
        assert code == 0 and out.endswith("(seq 5) matches"), out


def _source(entry: dict[str, Any]) -> str:
    stamp = time.gmtime(int(entry["__REALTIME_TIMESTAMP"]) / 1e6)
    return "the journal anchor of " + time.strftime("%Y-%m-%dT%H:%M:%SZ", stamp)
