"""The audit daemon over real Unix sockets, as a real subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from symphonyd.audit.verify import verify_dir
from symphonyd.core import audit_events
from symphonyd.core.api.audit import AUDIT_APPEND, AUDIT_HEAD, AuditAppend, AuditEventIn
from symphonyd.core.api.shared import HEALTH, Empty
from symphonyd.core.errors import SymphonyError
from symphonyd.runtime.ipc_client import IpcClient
from tests.audit.daemon_proc import AuditDaemon, short_dir
from tests.audit.helpers import records_in

CANARY = "canary-0b5e-daemon-secret-value"
NOBODY = 65534


def _run(coro: Any) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 60)

    return asyncio.run(bounded())


def test_append_over_the_socket_is_durable_stamped_and_scrubbed(tmp_path: Path) -> None:
    secret_file = tmp_path / "linear_api_key"
    secret_file.write_text(CANARY + "\n")
    with short_dir() as socks:
        daemon = AuditDaemon(tmp_path / "audit", socks, extra=("--secret-file", str(secret_file)))
        with daemon:

            async def body() -> tuple[Any, Any, Any]:
                client = await IpcClient.connect(daemon.sock("launcher"))
                try:
                    ack = await client.call(
                        AUDIT_APPEND,
                        AuditAppend(
                            records=[
                                audit_events.dispatch("id-1", "ABC-1", "run-1", None),
                                audit_events.prompt_sent("id-1", "ABC-1", f"key is {CANARY}"),
                                audit_events.egress(False, "denied.test", 443, issue_id="id-1"),
                            ]
                        ),
                    )
                    head = await client.call(AUDIT_HEAD, Empty())
                    health = await client.call(HEALTH, Empty())
                finally:
                    await client.close()
                return ack, head, health

            ack, head, health = _run(body())
            # Acknowledged means on disk: read the file while the daemon still runs.
            records = records_in(tmp_path / "audit")
            assert daemon.stop() == 0
    assert ack.seqs == [1, 2, 3] and head.seq == 3 and head.hash == ack.head_hash
    assert health.ok and health.daemon == "audit"
    assert {"head_seq": 3, "batches": 1, "records": 3}.items() <= health.detail.items()
    assert [r["type"] for r in records] == ["genesis", "dispatch", "prompt_sent", "egress_deny"]
    for record in records[1:]:
        assert record["sender"]["uid"] == os.getuid()
        assert record["sender"]["pid"] == os.getpid()
        assert record["sender"]["socket"] == "launcher"
    assert CANARY not in json.dumps(records)
    assert verify_dir(tmp_path / "audit").summary() == "ok 4 records"


# A client written without any symphonyd import, so it can run as another user.
_IMPOSTOR = textwrap.dedent(
    """
    import json, os, socket, sys
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    claim = {"uid": 0, "pid": 1, "unit": "symphony-launcher.service", "socket": "launcher"}
    frames = [
        {"type": "tool_call", "payload": {"sender": claim, "note": "I am the launcher"}},
        {"type": "tool_call", "sender": claim, "payload": {}},
    ]
    replies = []
    f = s.makefile("rb")
    for i, record in enumerate(frames, 1):
        req = {"v": 1, "id": i, "method": "audit.append", "params": {"records": [record]}}
        s.sendall(json.dumps(req).encode() + b"\\n")
        replies.append(json.loads(f.readline()))
    print(json.dumps({"pid": os.getpid(), "replies": replies}))
    """
)


@pytest.mark.root
def test_a_client_claiming_to_be_another_daemon_is_recorded_as_itself(tmp_path: Path) -> None:
    with short_dir() as socks:
        socks.chmod(0o711)
        daemon = AuditDaemon(tmp_path / "audit", socks, allow_uids=(0, NOBODY))
        with daemon:
            os.chown(daemon.sock("dispatcher"), NOBODY, -1)
            out = subprocess.run(
                ["/usr/bin/python3", "-I", "-c", _IMPOSTOR, str(daemon.sock("dispatcher"))],
                user=NOBODY,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            daemon.stop()
    result = json.loads(out.stdout)
    accepted, refused = result["replies"]
    assert accepted["result"]["seqs"] == [1]
    assert refused["error"]["code"] == "invalid_params"
    records = records_in(tmp_path / "audit")
    assert len(records) == 2  # genesis + the accepted one; the refused frame wrote nothing
    sender = records[1]["sender"]
    assert sender["uid"] == NOBODY
    assert sender["pid"] == result["pid"]
    assert sender["socket"] == "dispatcher"
    assert sender["unit"] != "symphony-launcher.service"
    assert records[1]["payload"]["sender"]["unit"] == "symphony-launcher.service"  # just data


# Connects and reads the server's first words without sending anything.
_PROBE = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    print(s.makefile("rb").readline().decode())
    """
)


@pytest.mark.root
def test_peer_outside_the_allowlist_is_refused_even_on_an_open_socket(tmp_path: Path) -> None:
    with short_dir() as socks:
        socks.chmod(0o711)
        daemon = AuditDaemon(tmp_path / "audit", socks, allow_uids=(0,))
        with daemon:
            daemon.sock("dispatcher").chmod(0o666)
            out = subprocess.run(
                ["/usr/bin/python3", "-I", "-c", _PROBE, str(daemon.sock("dispatcher"))],
                user=NOBODY,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            daemon.stop()
    assert json.loads(out.stdout)["error"]["code"] == "peer_not_allowed"
    assert [r["type"] for r in records_in(tmp_path / "audit")] == ["genesis"]


def test_bad_requests_get_typed_errors_and_the_daemon_keeps_serving(tmp_path: Path) -> None:
    with short_dir() as socks, AuditDaemon(tmp_path / "audit", socks) as daemon:

        async def body() -> list[str]:
            client = await IpcClient.connect(daemon.sock())
            codes = []
            try:
                for records in (
                    [],
                    [AuditEventIn(type="genesis")],
                    [AuditEventIn(type="recovered")],
                    [AuditEventIn(type="dispatch")] * 1001,
                ):
                    try:
                        await client.call(AUDIT_APPEND, AuditAppend(records=records))
                    except SymphonyError as exc:
                        codes.append(exc.error_code)
                ack = await client.call(
                    AUDIT_APPEND, AuditAppend(records=[AuditEventIn(type="pause")])
                )
                codes.append(str(ack.seqs))
            finally:
                await client.close()
            return codes

        assert _run(body()) == ["invalid_params"] * 4 + ["[1]"]
        assert daemon.stop() == 0


@pytest.mark.root
def test_disk_full_fails_closed_then_restart_recovers(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], check=True)
    try:
        with short_dir() as socks:
            daemon = AuditDaemon(mnt / "audit", socks)
            daemon.start()

            async def flood() -> tuple[int, str]:
                client = await IpcClient.connect(daemon.sock())
                acked = 0
                try:
                    while True:
                        event = AuditEventIn(type="file_change", payload={"d": "x" * 8000})
                        await client.call(AUDIT_APPEND, AuditAppend(records=[event]))
                        acked += 1
                except SymphonyError as exc:
                    return acked, exc.error_code
                finally:
                    await client.close()

            acked, code = _run(flood())
            assert code in ("audit_unavailable", "unavailable")
            assert daemon.proc is not None
            assert daemon.proc.wait(timeout=30) == 1  # the writer stops instead of limping on
            subprocess.run(["mount", "-o", "remount,size=8m", str(mnt)], check=True)
            daemon.start()
            assert daemon.stop() == 0
        result = verify_dir(mnt / "audit")
        assert result.ok, result.summary()
        assert result.records >= acked + 1
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
