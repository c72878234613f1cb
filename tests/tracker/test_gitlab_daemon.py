"""``kind: gitlab`` through the tracker daemon as the unit runs it: a real process started with
``python -m symphonyd.tracker``, the token only in a systemd-style credentials directory, the
dispatcher's and launcher's Unix sockets, the audit writer's socket, and a local GitLab."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from symphonyd.core.api.audit import AUDIT_APPEND, AuditAck, AuditAppend
from symphonyd.runtime.ipc_server import IpcServer
from symphonyd.runtime.peer import Peer
from symphonyd.tracker.credentials import UNIT_CREDENTIAL_NAME
from tests.tracker.fake_gitlab import PROJECT, TOKEN, FakeGitLab, gl_issue, link
from tests.tracker.test_daemon import ROOT, _wait_for, raw_call


def test_gitlab_through_the_daemon_process(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir(mode=0o700)
    (creds / UNIT_CREDENTIAL_NAME).write_text(TOKEN + "\n")
    issues = [
        gl_issue(1, labels=("status::todo",)),
        gl_issue(2, labels=("status::in-progress",)),
        gl_issue(3, labels=("status::todo",)),
        gl_issue(4, state="closed"),
    ]
    audit_frames: list[Any] = []

    async def on_append(req: AuditAppend, peer: Peer) -> AuditAck:
        audit_frames.extend(r.__dict__ for r in req.records)
        return AuditAck(list(range(len(req.records))), "0" * 64)

    with FakeGitLab(issues) as srv:
        srv.links = {3: [link(issues[1])]}
        wf = tmp_path / "WORKFLOW.md"
        wf.write_text(
            "---\ntracker:\n  kind: gitlab\n  provider:\n"
            f"    endpoint: {srv.base_url}\n    project: {PROJECT}\n"
            "    api_key: $GITLAB_TOKEN\n    page_size: 2\n    max_attempts: 1\n"
            "    state_labels: {Todo: 'status::todo', In Progress: 'status::in-progress',"
            " Review: 'status::review'}\n"
            "    tool_states: [Review]\n"
            "  active_states: [Todo, In Progress]\n  terminal_states: [Closed]\n---\nprompt\n"
        )
        host = tmp_path / "symphonyd.toml"
        host.write_text(f'workflow = "{wf}"\n[paths]\nruntime_dir = "{tmp_path}"\n')
        loop = asyncio.new_event_loop()
        audit = IpcServer("audit-test", allowed_uids=[os.getuid()], allow_root=True)
        audit.handle(AUDIT_APPEND, on_append)
        loop.run_until_complete(audit.start_path(tmp_path / "audit-tracker.sock"))
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        log = tmp_path / "daemon.log"
        env = {k: v for k, v in os.environ.items() if "GITLAB" not in k}
        env.update(CREDENTIALS_DIRECTORY=str(creds), PYTHONPATH=str(ROOT))
        d_sock, l_sock, uid = tmp_path / "d.sock", tmp_path / "l.sock", str(os.getuid())
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "symphonyd.tracker", "--host-config", str(host),
                 "--dispatcher-socket", str(d_sock), "--launcher-socket", str(l_sock),
                 "--dispatcher-uid", uid, "--launcher-uid", uid],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            _wait_for([d_sock, l_sock], proc, log)

            async def go() -> list[bytes]:
                active = {"states": ["Todo", "In Progress"]}
                frames = [
                    await raw_call(d_sock, "tracker.profile", {}),
                    await raw_call(d_sock, "tracker.fetch_by_states", active),
                    await raw_call(d_sock, "tracker.fetch_by_ids", {"ids": ["2", "4", "99"]}),
                    await raw_call(d_sock, "tracker.fetch_by_ids", {"ids": []}),
                    await raw_call(l_sock, "tracker.tool_specs", {}),
                ]  # fmt: skip
                issue = json.loads(frames[2])["result"]["issues"][0]
                for tool, args in [
                    ("tracker_comment", {"body": "hello from the run"}),
                    ("tracker_move", {"state": "Review"}),
                    ("tracker_read_issue", {}),
                    ("tracker_move", {"state": "Closed"}),
                    ("gitlab_graphql", {"query": "{ currentUser { id } }"}),
                ]:
                    params = {"issue": issue, "tool": tool, "arguments": args}
                    frames.append(await raw_call(l_sock, "tracker.tool_call", params))
                srv.faults.append(("status", 429, {"Retry-After": "9999"}))
                frames.append(await raw_call(d_sock, "tracker.fetch_by_ids", {"ids": ["1"]}))
                return frames

            frames = asyncio.run(go())
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                assert proc.wait(timeout=30) == 0, log.read_text()
            finally:
                if proc.poll() is None:
                    proc.kill()
                asyncio.run_coroutine_threadsafe(audit.close(), loop).result(10)
                loop.call_soon_threadsafe(loop.stop)
                thread.join(10)
    replies = [json.loads(f) for f in frames]
    assert replies[0]["result"]["secret_env_names"] == ["GITLAB_TOKEN"]
    listed = {i["identifier"]: i for i in replies[1]["result"]["issues"]}
    assert sorted(listed) == ["widgets-1", "widgets-2", "widgets-3"]
    assert listed["widgets-3"]["dispatchable"] is False  # blocked by widgets-2 (In Progress)
    assert listed["widgets-3"]["blocked_by"][0]["identifier"] == "widgets-2"
    assert [(i["id"], i["state"]) for i in replies[2]["result"]["issues"]] == [
        ("2", "In Progress"), ("4", "Closed"),
    ]  # fmt: skip
    assert replies[3]["result"]["issues"] == []
    assert [t["name"] for t in replies[4]["result"]["tools"]] == [
        "tracker_read_issue", "tracker_comment", "tracker_move",
    ]  # fmt: skip
    tools = [r["result"] for r in replies[5:10]]
    assert [t["success"] for t in tools] == [True, True, True, False, False]
    assert tools[1]["output"] == {"state": "Review"}
    assert tools[2]["output"]["comments"][-1]["body"] == "hello from the run"
    assert tools[3]["output"]["error"]["code"] == "state_not_allowed"
    assert tools[4]["output"]["error"]["code"] == "unsupported_tool"
    assert replies[10]["error"]["code"] == "tracker_rate_limited"
    assert srv.issues[1]["labels"] == ["status::review"] and srv.issues[1]["state"] == "opened"
    writes = [(a["payload"]["operation"], a["payload"]["detail"]) for a in audit_frames]
    assert [(op, d["tracker"], d["ok"]) for op, d in writes] == [
        ("comment", "gitlab", True), ("move", "gitlab", True),
    ]  # fmt: skip
    assert all(r.headers["PRIVATE-TOKEN"] == TOKEN for r in srv.requests)
    everything = b"".join(frames) + json.dumps(audit_frames).encode() + log.read_bytes()
    assert TOKEN.encode() not in everything
