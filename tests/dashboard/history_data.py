"""A day's worth of audit records for the issue and activity pages, written through the
real audit daemon by the same builders the dispatcher and the launcher use.

Sandbox and egress records are built by the launcher's own ``audit_event`` from the records
its proxy, resolver and sandbox manager emit (``agent_id`` = run id). The launcher now adds
the run's issue to them (``LauncherService._with_issue``); MT-1's first run has them
without, as older launchers wrote them, so the issue page must find those by run.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from symphonyd.core import audit_events as ev
from symphonyd.core.api.audit import AUDIT_APPEND, AuditAppend, AuditEventIn
from symphonyd.launcher.sandbox.manager import audit_event
from symphonyd.runtime.ipc_client import IpcClient

HOSTILE_ARG = "<script>alert('arg')</script>"


def _run(
    issue: str,
    ident: str,
    run_id: str,
    attempt: int | None,
    outcome: str,
    *,
    error: str | None = None,
    tokens: int = 0,
    tagged: bool = True,
) -> tuple[list[AuditEventIn], list[AuditEventIn], list[AuditEventIn]]:
    """(dispatcher's start, launcher's records, dispatcher's end) of one run."""
    start = [ev.dispatch(issue, ident, run_id, attempt)]
    tag = {"issue_id": issue, "issue_identifier": ident} if tagged else {}
    launcher = [
        audit_event({"type": ev.SANDBOX_READY, "agent_id": run_id, "address": "10.77.0.2",
                     "mode": "proxy", **tag}),
        ev.prompt_sent(issue, ident, f"You are working on {ident}. Read the issue and fix it.",
                       turn=1),
        audit_event({"type": ev.EGRESS_ALLOW, "agent_id": run_id, "host": "api.openai.com",
                     "port": 443, "via": "proxy", **tag}),
        # As the launcher writes them (launcher/transcript.py): scrubbed, cut previews.
        AuditEventIn(type=ev.AGENT_MESSAGE, issue_id=issue, issue_identifier=ident,
                     payload={"run_id": run_id, "chars": 900, "preview_truncated": True,
                              "preview": f"I will fix the parser {HOSTILE_ARG}"}),
        AuditEventIn(type=ev.COMMAND, issue_id=issue, issue_identifier=ident,
                     payload={"run_id": run_id, "chars": 40, "preview_truncated": False,
                              "preview": "/bin/bash -lc 'pytest -q tests' (exit 1)"}),
        AuditEventIn(type=ev.TRANSCRIPT_SUMMARY, issue_id=issue, issue_identifier=ident,
                     payload={"run_id": run_id, "kept": 200, "dropped": {"command": 7}}),
        ev.tool_call(issue, ident, "linear_graphql", True,
                     arguments={"query": "mutation { commentCreate }", "note": HOSTILE_ARG}),
        ev.file_change(issue, ident, "src/parser.py", "modified"),
        audit_event({"type": ev.EGRESS_DENY, "agent_id": run_id, "host": "pastebin.example",
                     "port": 443, "via": "proxy", "reason": "not_allowed", **tag}),
        audit_event({"type": ev.SANDBOX_TEARDOWN, "agent_id": run_id, **tag}),
    ]  # fmt: skip
    end = [
        ev.run_finished(issue, ident, run_id, outcome, error_code=error, turns=3,
                        total_tokens=tokens)
    ]  # fmt: skip
    return start, launcher, end


def append_history(audit_socks: dict[str, Path]) -> None:
    """MT-1: a failed run then a retry that succeeded; MT-2 stalled; MT-3 timed out."""
    runs = [
        _run(
            "id-1", "MT-1", "run-1a", None, "failed", error="turn_failed", tokens=5400, tagged=False
        ),
        _run("id-1", "MT-1", "run-1b", 1, "succeeded", tokens=8100),
        _run("id-2", "MT-2", "run-2a", None, "stalled", error="stall_timeout", tokens=900),
        _run("id-3", "MT-3", "run-3a", None, "timed_out", error="turn_timeout", tokens=12000),
    ]

    async def send() -> None:
        async with (
            await IpcClient.connect(audit_socks["dispatcher"]) as dispatcher,
            await IpcClient.connect(audit_socks["launcher"]) as launcher,
        ):
            for start, records, end in runs:
                await dispatcher.call(AUDIT_APPEND, AuditAppend(start))
                await launcher.call(AUDIT_APPEND, AuditAppend(records))
                await asyncio.sleep(1.1)  # runs that last a second: durations are not all zero
                await dispatcher.call(AUDIT_APPEND, AuditAppend(end))

    asyncio.run(asyncio.wait_for(send(), 60))
