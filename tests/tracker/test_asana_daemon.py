"""The tracker daemon process serving an Asana workflow: the personal access token comes from a
systemd-style credentials directory and never leaves the daemon (IPC replies, audit records,
log), even when Asana echoes it back."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from tests.tracker.daemon_process import tracker_process
from tests.tracker.fake_asana import PROJECT, TOKEN, WORKSPACE, FakeAsana, asana_task, gid_of
from tests.tracker.test_daemon import raw_call


class EchoingAsana(FakeAsana):
    """A hostile Asana: puts the Authorization it got into a task's notes."""

    def answer(self, method, path, query, body, headers):
        status, hdrs, obj = super().answer(method, path, query, body, headers)
        items = obj.get("data", []) if isinstance(obj, dict) else []
        for item in items if isinstance(items, list) else []:
            task = item.get("body", {}).get("data", item) if "status_code" in item else item
            if isinstance(task, dict) and task.get("gid") == gid_of(666):
                task["notes"] = f"leaked {headers.get('Authorization', '')} {TOKEN}"
        return status, hdrs, obj


def test_daemon_serves_asana_and_the_credential_never_leaves(tmp_path: Path) -> None:
    issues = [asana_task(1), asana_task(2, section="Doing"), asana_task(666)]
    with EchoingAsana(issues) as srv:
        workflow = (
            "---\ntracker:\n  kind: asana\n  provider:\n"
            f"    endpoint: {srv.base_url}/api/1.0\n    workspace: '{WORKSPACE}'\n"
            f"    project: '{PROJECT}'\n    api_key: $ASANA_TOKEN\n"
            "    tool_states: [Review]\n    max_attempts: 1\n---\nprompt\n"
        )
        with tracker_process(tmp_path, workflow, TOKEN, hide_env="ASANA") as daemon:
            dsock, lsock = daemon.dispatcher_socket, daemon.launcher_socket

            async def go() -> list[bytes]:
                frames = [
                    await raw_call(dsock, "tracker.profile", {}),
                    await raw_call(
                        dsock, "tracker.fetch_by_states", {"states": ["To do", "Doing"]}
                    ),
                    await raw_call(dsock, "tracker.fetch_by_ids", {"ids": [gid_of(2)]}),
                    await raw_call(dsock, "tracker.fetch_by_ids", {"ids": [gid_of(666)]}),
                ]
                issue = json.loads(frames[2])["result"]["issues"][0]
                for tool, args in [
                    ("tracker_comment", {"body": "hello"}),
                    ("tracker_move", {"state": "Review"}),
                    ("tracker_read_issue", {}),
                ]:
                    frames.append(
                        await raw_call(
                            lsock,
                            "tracker.tool_call",
                            {"issue": issue, "tool": tool, "arguments": args},
                        )
                    )
                srv.faults.append(("status", 429, {"Retry-After": "9999"}))
                frames.append(await raw_call(dsock, "tracker.fetch_by_ids", {"ids": [gid_of(1)]}))
                return frames

            frames = asyncio.run(go())
        seen_auth = {r.headers.get("Authorization") for r in srv.requests}
    replies: list[Any] = [json.loads(f) for f in frames]
    assert replies[0]["result"]["kind"] == "asana"
    assert replies[0]["result"]["secret_env_names"] == ["ASANA_TOKEN"]
    got = [i["identifier"] for i in replies[1]["result"]["issues"]]
    assert got == [f"ASANA-{gid_of(1)}", f"ASANA-{gid_of(2)}"]  # 666 echoes the token
    assert replies[3]["error"]["code"] == "tracker_response"  # the echo in a requested issue
    assert [r["result"]["success"] for r in replies[4:7]] == [True, True, True]
    assert replies[6]["result"]["output"]["issue"]["state"] == "Review"
    assert replies[7]["error"]["code"] == "tracker_rate_limited"
    assert seen_auth == {f"Bearer {TOKEN}"}  # the canary did reach Asana
    assert len(daemon.audit_frames) >= 2
    time.sleep(0.2)
    everything = b"".join(frames) + b"".join(daemon.audit_frames) + daemon.log.read_bytes()
    assert TOKEN.encode() not in everything
