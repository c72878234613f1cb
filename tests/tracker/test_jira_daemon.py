"""The tracker daemon process serving a Jira workflow: the email:token credential comes from a
systemd-style credentials directory and neither it, the bare token nor the Basic header ever
leaves the daemon (IPC replies, audit records, log), even when Jira echoes it back."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

from tests.tracker.daemon_process import tracker_process
from tests.tracker.fake_jira import CREDENTIAL, TOKEN, FakeJira, jira_issue
from tests.tracker.test_daemon import raw_call


class EchoingJira(FakeJira):
    """A hostile Jira: puts the Authorization it got into an issue description."""

    def answer(self, method, path, query, body, headers):
        status, hdrs, obj = super().answer(method, path, query, body, headers)
        for issue in obj.get("issues", []) if isinstance(obj, dict) else []:
            if issue["key"] == "ENG-666":
                auth = headers.get("Authorization", "")
                issue["fields"]["description"] = f"leaked {auth} {TOKEN}"
        return status, hdrs, obj


def test_daemon_serves_jira_and_the_credential_never_leaves(tmp_path: Path) -> None:
    header = base64.b64encode(CREDENTIAL.encode()).decode()
    issues = [jira_issue(1), jira_issue(2, state="In Progress"), jira_issue(666)]
    with EchoingJira(issues) as srv:
        workflow = (
            "---\ntracker:\n  kind: jira\n  provider:\n"
            f"    site: {srv.base_url}\n    project: ENG\n    api_key: $JIRA_API_TOKEN\n"
            "    tool_states: [Human Review]\n    max_attempts: 1\n---\nprompt\n"
        )
        with tracker_process(tmp_path, workflow, CREDENTIAL, hide_env="JIRA") as daemon:
            dsock, lsock = daemon.dispatcher_socket, daemon.launcher_socket

            async def go() -> list[bytes]:
                frames = [
                    await raw_call(dsock, "tracker.profile", {}),
                    await raw_call(
                        dsock, "tracker.fetch_by_states", {"states": ["To Do", "In Progress"]}
                    ),
                    await raw_call(dsock, "tracker.fetch_by_ids", {"ids": ["10002"]}),
                    await raw_call(dsock, "tracker.fetch_by_ids", {"ids": ["10666"]}),
                ]
                issue = json.loads(frames[2])["result"]["issues"][0]
                for tool, args in [
                    ("tracker_comment", {"body": "hello"}),
                    ("tracker_move", {"state": "Human Review"}),
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
                frames.append(await raw_call(dsock, "tracker.fetch_by_ids", {"ids": ["10001"]}))
                return frames

            frames = asyncio.run(go())
        seen_auth = {r.headers.get("Authorization") for r in srv.requests}
    replies: list[Any] = [json.loads(f) for f in frames]
    assert replies[0]["result"]["kind"] == "jira"
    assert replies[0]["result"]["secret_env_names"] == ["JIRA_API_TOKEN"]
    assert [i["identifier"] for i in replies[1]["result"]["issues"]] == ["ENG-1", "ENG-2"]
    assert replies[3]["error"]["code"] == "tracker_response"  # the echo in a requested issue
    assert [r["result"]["success"] for r in replies[4:7]] == [True, True, True]
    assert replies[6]["result"]["output"]["issue"]["state"] == "Human Review"
    assert replies[7]["error"]["code"] == "tracker_rate_limited"
    assert seen_auth == {f"Basic {header}"}  # the canary did reach Jira
    assert len(daemon.audit_frames) >= 2
    time.sleep(0.2)
    everything = b"".join(frames) + b"".join(daemon.audit_frames) + daemon.log.read_bytes()
    for secret in (TOKEN, header, CREDENTIAL):
        assert secret.encode() not in everything
