"""The tracker daemon as a real process on real Unix sockets, with a canary credential.

The token lives only in a systemd-style credentials directory. The test drives every kind of
reply (success, each error path, tool results, a provider that echoes the token back) and then
checks the raw IPC bytes, the audit traffic and the daemon's log for the token.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from symphonyd.core.api.audit import AUDIT_APPEND, AuditAck, AuditAppend
from symphonyd.core.api.tracker import TRACKER_FETCH_BY_STATES, TRACKER_MAX_FRAME, FetchByStates
from symphonyd.core.errors import SymphonyError
from symphonyd.core.issue import build_issue
from symphonyd.runtime.ipc_client import IpcClient
from symphonyd.runtime.ipc_server import IpcServer
from symphonyd.runtime.peer import Peer
from symphonyd.tracker.credentials import UNIT_CREDENTIAL_NAME
from symphonyd.tracker.daemon import TrackerDaemon
from symphonyd.tracker.memory import MemoryAdapter
from symphonyd.tracker.service import TrackerService, TrackerSource
from tests.tracker.fake_linear import TOKEN, FakeLinear, linear_node

ROOT = Path(__file__).resolve().parents[2]


class EchoingLinear(FakeLinear):
    """A hostile provider: puts whatever Authorization it got into errors and descriptions."""

    echo_error = False

    def answer(self, method, path, query, body, headers):
        status, hdrs, obj = super().answer(method, path, query, body, headers)
        auth = headers.get("Authorization", "")
        if self.echo_error:
            return 200, {}, {"errors": [{"message": f"token {auth} is not allowed here"}]}
        issues = obj.get("data", {}).get("issues") if isinstance(obj, dict) else None
        for node in issues["nodes"] if issues else []:
            if node["id"] == "lin-666":
                node["description"] = f"leaked: {auth}"
        return status, hdrs, obj


@dataclass
class Rig:
    dispatcher: Path
    launcher: Path
    audit_frames: list[bytes]
    srv: EchoingLinear
    log: Path


def _wait_for(paths: list[Path], proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while not all(p.exists() for p in paths):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"daemon did not start: {log.read_text()}")
        time.sleep(0.05)


def stop_daemon(
    proc: subprocess.Popen[bytes],
    log: Path,
    audit: IpcServer,
    loop: asyncio.AbstractEventLoop,
    thread: threading.Thread,
) -> None:
    """Stop the daemon this test started (it must exit 0) and the fake audit writer."""
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        asyncio.run_coroutine_threadsafe(audit.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


async def raw_call(path: Path, method: str, params: dict[str, Any], req_id: int = 1) -> bytes:
    reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 21)
    try:
        writer.write(
            json.dumps({"v": 1, "id": req_id, "method": method, "params": params}).encode() + b"\n"
        )
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 60)
    finally:
        writer.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    creds = tmp_path / "creds"
    creds.mkdir(mode=0o700)
    (creds / UNIT_CREDENTIAL_NAME).write_text(TOKEN + "\n")
    nodes = [linear_node(1), linear_node(2, state="In Progress"), linear_node(666)]
    with EchoingLinear(nodes) as srv:
        wf = tmp_path / "WORKFLOW.md"
        wf.write_text(
            "---\ntracker:\n  kind: linear\n  provider:\n"
            f"    endpoint: {srv.base_url}/graphql\n    api_key: $LINEAR_API_KEY\n"
            "    project_slug: symph\n    tool_states: [Human Review]\n"
            "    max_attempts: 1\n---\nprompt\n"
        )
        host = tmp_path / "symphonyd.toml"
        host.write_text(
            f'workflow = "{wf}"\nlog_level = "debug"\n' f'[paths]\nruntime_dir = "{tmp_path}"\n'
        )
        audit_frames: list[bytes] = []
        audit_sock = tmp_path / "audit-tracker.sock"

        async def on_append(req: AuditAppend, peer: Peer) -> AuditAck:
            audit_frames.append(json.dumps([r.__dict__ for r in req.records]).encode())
            return AuditAck(list(range(len(req.records))), "0" * 64)

        loop = asyncio.new_event_loop()
        audit = IpcServer("audit-test", allowed_uids=[os.getuid()], allow_root=True)
        audit.handle(AUDIT_APPEND, on_append)
        loop.run_until_complete(audit.start_path(audit_sock))
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        log = tmp_path / "daemon.log"
        rig = Rig(tmp_path / "d.sock", tmp_path / "l.sock", audit_frames, srv, log)
        env = {k: v for k, v in os.environ.items() if "LINEAR" not in k}
        env.update(CREDENTIALS_DIRECTORY=str(creds), PYTHONPATH=str(ROOT))
        uid = str(os.getuid())
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "symphonyd.tracker",
                    "--host-config",
                    str(host),
                    "--dispatcher-socket",
                    str(rig.dispatcher),
                    "--launcher-socket",
                    str(rig.launcher),
                    "--dispatcher-uid",
                    uid,
                    "--launcher-uid",
                    uid,
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_for([rig.dispatcher, rig.launcher], proc, log)
            yield rig
        finally:
            stop_daemon(proc, log, audit, loop, thread)


def test_canary_token_never_leaves_the_daemon(rig: Rig) -> None:
    async def go() -> list[bytes]:
        frames = [
            await raw_call(rig.dispatcher, "health", {}),
            await raw_call(rig.dispatcher, "tracker.profile", {}),
            await raw_call(rig.dispatcher, "tracker.fetch_by_states", {"states": ["Todo"]}),
            await raw_call(rig.dispatcher, "tracker.fetch_by_ids", {"ids": ["lin-2"]}),
            await raw_call(rig.dispatcher, "tracker.fetch_by_ids", {"ids": ["lin-666"]}),
            await raw_call(rig.dispatcher, "tracker.fetch_by_states", {"states": 5}),
            await raw_call(rig.dispatcher, "tracker.tool_call", {}),
            await raw_call(rig.launcher, "tracker.fetch_by_states", {"states": ["Todo"]}),
            await raw_call(rig.launcher, "tracker.tool_specs", {}),
            await raw_call(rig.launcher, "tracker.fetch_by_ids", {"ids": ["lin-1"]}),
        ]
        issue = build_issue(
            id="lin-1", identifier="ENG-1", title="t", state="Todo", dispatchable=True
        ).to_dict()
        for tool, args in [
            ("tracker_comment", {"body": "hello"}),
            ("tracker_move", {"state": "Human Review"}),
            ("tracker_read_issue", {}),
            ("tracker_comment", {"body": ""}),
            ("linear_graphql", {"query": "{ viewer { id } }"}),
        ]:
            frames.append(
                await raw_call(
                    rig.launcher,
                    "tracker.tool_call",
                    {"issue": issue, "tool": tool, "arguments": args},
                )
            )
        rig.srv.faults.append(("status", 500))
        frames.append(await raw_call(rig.dispatcher, "tracker.fetch_by_ids", {"ids": ["lin-1"]}))
        rig.srv.faults.append(("status", 429, {"Retry-After": "9999"}))
        frames.append(await raw_call(rig.dispatcher, "tracker.fetch_by_ids", {"ids": ["lin-1"]}))
        rig.srv.echo_error = True
        frames.append(await raw_call(rig.dispatcher, "tracker.fetch_by_ids", {"ids": ["lin-1"]}))
        frames.append(
            await raw_call(
                rig.launcher,
                "tracker.tool_call",
                {"issue": issue, "tool": "tracker_comment", "arguments": {"body": "x"}},
            )
        )
        return frames

    frames = asyncio.run(go())
    replies: list[Any] = [json.loads(f) for f in frames]
    assert replies[0]["result"]["ok"] is True
    assert replies[1]["result"]["secret_env_names"] == ["LINEAR_API_KEY"]
    assert [i["id"] for i in replies[2]["result"]["issues"]] == ["lin-1"]  # lin-666 omitted
    assert [i["id"] for i in replies[3]["result"]["issues"]] == ["lin-2"]
    assert replies[4]["error"]["code"] == "tracker_response"  # token in the requested issue
    assert replies[5]["error"]["code"] == "invalid_params"
    assert replies[6]["error"]["code"] == "unknown_method"  # tools only on the launcher
    assert replies[7]["error"]["code"] == "unknown_method"  # reads only on the dispatcher
    assert "tracker_move" in [t["name"] for t in replies[8]["result"]["tools"]]
    assert [i["id"] for i in replies.pop(9)["result"]["issues"]] == ["lin-1"]
    assert [r["result"]["success"] for r in replies[9:12]] == [True, True, True]
    assert replies[12]["result"]["output"]["error"]["code"] == "invalid_arguments"
    assert replies[13]["result"]["output"]["error"]["code"] == "unsupported_tool"
    assert replies[14]["error"]["code"] == "tracker_status"
    assert replies[15]["error"]["code"] == "tracker_rate_limited"
    assert replies[16]["error"]["code"] == "tracker_response"
    assert replies[17]["result"]["success"] is False
    # The canary did reach the provider, so its absence below means something.
    assert rig.srv.requests and all(r.headers["Authorization"] == TOKEN for r in rig.srv.requests)
    assert rig.srv.comments[0] == ("lin-1", "hello")
    assert len(rig.audit_frames) >= 2
    everything = b"".join(frames) + b"".join(rig.audit_frames)
    assert TOKEN.encode() not in everything
    time.sleep(0.2)
    log = rig.log.read_text()
    assert TOKEN not in log
    assert "credential" in log  # the daemon did notice and report the echoed token


def test_socket_peer_allowlist_refuses_other_uids(tmp_path: Path) -> None:
    def source() -> TrackerSource:
        return TrackerSource("memory", {}, None, None)

    async def go() -> str:
        daemon = TrackerDaemon(
            TrackerService(source, {}), dispatcher_uids=[65534], launcher_uids=[65534]
        )
        await daemon.start(tmp_path / "d.sock", tmp_path / "l.sock")
        try:
            client = await IpcClient.connect(tmp_path / "d.sock")
            try:
                await client.call(TRACKER_FETCH_BY_STATES, FetchByStates(["Todo"]))
            except Exception as exc:
                return getattr(exc, "error_code", type(exc).__name__)
            finally:
                await client.close()
            return "allowed"
        finally:
            await daemon.close()

    assert asyncio.run(go()) in ("peer_not_allowed", "unavailable")


def test_large_board_crosses_the_socket_with_the_tracker_frame_limit(tmp_path: Path) -> None:
    def source() -> TrackerSource:
        return TrackerSource("memory", {}, None, None)

    async def go() -> tuple[int, str]:
        service = TrackerService(source, {})
        daemon = TrackerDaemon(service, dispatcher_uids=[os.getuid()], launcher_uids=[os.getuid()])
        await daemon.start(tmp_path / "d.sock", tmp_path / "l.sock")
        try:
            adapter = service.adapter
            assert isinstance(adapter, MemoryAdapter)
            for n in range(10_000):
                adapter.put(
                    build_issue(
                        id=f"m-{n}",
                        identifier=f"M-{n}",
                        title="x" * 200,
                        state="Todo",
                        dispatchable=True,
                        labels=["a", "b"],
                    )
                )
            big = await IpcClient.connect(tmp_path / "d.sock", max_frame=TRACKER_MAX_FRAME)
            try:
                got = await big.call(TRACKER_FETCH_BY_STATES, FetchByStates(["Todo"]), timeout=120)
            finally:
                await big.close()
            small = await IpcClient.connect(tmp_path / "d.sock")
            try:
                await small.call(TRACKER_FETCH_BY_STATES, FetchByStates(["Todo"]), timeout=120)
                outcome = "fit"
            except SymphonyError as exc:
                outcome = exc.error_code
            finally:
                await small.close()
            return len(got.issues), outcome
        finally:
            await daemon.close()

    count, small_outcome = asyncio.run(go())
    assert count == 10_000
    # The default 1 MiB frame cannot carry a big board: why clients need TRACKER_MAX_FRAME.
    assert small_outcome != "fit"


def test_launcher_gets_prompt_text_back_scrubbed_of_the_credential(rig: Rig) -> None:
    """``tracker.redact``: the launcher's preview redaction, done where the token lives."""
    b64 = base64.b64encode(f"x:{TOKEN}".encode()).decode()
    text = f"issue body quoting {TOKEN} and {b64} and {quote(TOKEN)} end"

    async def go() -> list[bytes]:
        return [
            await raw_call(rig.launcher, "tracker.redact", {"text": text}),
            await raw_call(rig.dispatcher, "tracker.redact", {"text": text}),
        ]

    launcher, dispatcher = (json.loads(f) for f in asyncio.run(go()))
    clean = launcher["result"]["text"]
    assert clean.startswith("issue body quoting [REDACTED:") and clean.endswith(" end")
    assert TOKEN not in clean and TOKEN[:10] not in clean and b64 not in clean
    assert dispatcher["error"]["code"] == "unknown_method"  # the launcher's socket only
