"""The line that explains a hook failure names its issue, through the launcher daemon.

``symphonyctl logs ISSUE`` matches on the journal field ``ISSUE_IDENTIFIER``; a hook line
without it never shows up there (issue 22, item 6). The launcher runs as
``python -m symphonyd.launcher`` (its ``main``, ``build`` and ``startup``) beside the real audit
writer; the tracker is a double. Outside systemd the daemon logs ``key=value`` lines to
stderr, built from the same fields the journal handler turns into journal fields
(tests/runtime/test_log_context.py checks that side).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from symphonyd.core.api.launcher import (
    LAUNCHER_START_RUN,
    LAUNCHER_SUBSCRIBE,
    RunEvent,
    StartRun,
    WorkflowSnapshot,
)
from symphonyd.core.api.shared import Empty
from symphonyd.core.issue import build_issue
from symphonyd.runtime.ipc_client import IpcClient
from tests.launcher.test_daemon_sockets import (
    launcher_layout,
    spawn_audit,
    spawn_launcher,
    stop,
    tracker_double,
    wait_for_socket,
)

MARKER = "why-it-failed-7f3a"


def test_hook_failure_line_carries_the_issue_fields(tmp_path: Path) -> None:
    run_dir, audit_dir, _, agent_home, host_config = launcher_layout(tmp_path)
    issue = build_issue(id="i-9", identifier="ABC-9", title="t", state="Todo", dispatchable=True)
    config = {
        "tracker": {"kind": "memory", "active_states": ["Todo"]},
        "codex": {"command": "false"},
        "hooks": {"after_create": "sleep 1", "before_run": f"echo {MARKER}; exit 3"},
    }
    snapshot = WorkflowSnapshot(str(tmp_path / "WORKFLOW.md"), config, "x", "0" * 64)
    audit = spawn_audit(audit_dir, run_dir)

    async def scenario() -> tuple[RunEvent | None, str]:
        await wait_for_socket(run_dir / "audit-launcher.sock", audit)
        async with tracker_double(run_dir / "tracker-launcher.sock", issue):
            launcher = spawn_launcher(host_config, run_dir, agent_home)
            finished = None
            try:
                await wait_for_socket(run_dir / "launcher.sock", launcher)
                client = await IpcClient.connect(run_dir / "launcher.sock")
                await client.call(LAUNCHER_SUBSCRIBE, Empty())
                started = await client.call(
                    LAUNCHER_START_RUN, StartRun("run-9", issue, None, snapshot)
                )
                assert started.accepted, started
                async with asyncio.timeout(60):
                    async for ev in client.events():
                        if ev.data.event == "run_finished":
                            finished = ev.data
                            break
                await client.close()
            finally:
                code, err = stop(launcher)
            assert code == 0, err
            return finished, err

    finished, log = asyncio.run(scenario())
    stop(audit)
    assert finished is not None and finished.outcome is not None, finished
    assert finished.outcome.error_code == "hook_failed", finished
    # A second of hooks and no agent: no agent time (symphony_agent_seconds_total).
    assert finished.agent_seconds == 0.0, finished

    lines = log.splitlines()
    (failed,) = [line for line in lines if "event=hook" in line and "outcome=failed" in line]
    # The explaining line: which hook, how it ended, its output, and the issue's fields.
    assert "hook=before_run" in failed and "exit_code=3" in failed, failed
    assert MARKER in failed, failed
    assert "issue_identifier=ABC-9" in failed and "issue_id=i-9" in failed, failed
    assert "run_id=run-9" in failed, failed
    # Every hook and workspace line of the run names the issue, the hook that went well too.
    related = [line for line in lines if "event=hook" in line or "event=workspace" in line]
    assert len(related) >= 4, lines  # workspace created, after_create x2, before_run x2
    assert all("issue_identifier=ABC-9" in line for line in related), related
