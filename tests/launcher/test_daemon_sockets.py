"""The launcher daemon as a real process, talking over real sockets.

The test plays the dispatcher; the audit writer is the real daemon; the agent is the real
codex app-server against a mock model API; only the tracker is a double (an in-test IPC
server, i.e. the outside world of the launcher).
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from symphonyd.core.api.launcher import (
    LAUNCHER_ACK_RUNS,
    LAUNCHER_LIST_RUNS,
    LAUNCHER_START_RUN,
    LAUNCHER_SUBSCRIBE,
    AckRuns,
    ListRuns,
    RunEvent,
    RunInfo,
    StartRun,
    WorkflowSnapshot,
)
from symphonyd.core.api.shared import HEALTH, Empty
from symphonyd.core.api.tracker import (
    TRACKER_FETCH_BY_IDS,
    TRACKER_PROFILE,
    TRACKER_REDACT,
    TRACKER_TOOL_CALL,
    TRACKER_TOOL_SPECS,
    FetchByIds,
    IssueList,
    RedactedText,
    RedactText,
    ToolCall,
    ToolResult,
    ToolSpecList,
    TrackerProfile,
)
from symphonyd.core.issue import Issue, build_issue
from symphonyd.core.redact import Redactor
from symphonyd.core.run_progress import RunProgress
from symphonyd.runtime.ipc_client import IpcClient
from symphonyd.runtime.ipc_server import IpcServer
from symphonyd.runtime.peer import Peer
from tests.launcher.agents.conftest import claude_bin, codex_command
from tests.launcher.agents.mock_models import (
    MockServer,
    Reply,
    anthropic_calls_once,
    responses_call,
    responses_text,
)
from tests.launcher.test_service import COMMENT_TOOL

pytestmark = pytest.mark.agents
UID = os.getuid()
CLAUDE_MODEL = "claude-sonnet-4-5@20250929"
CLAUDE_TOOL = "mcp__symphony__tracker_comment"


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {}), "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )


def launcher_layout(tmp_path: Path) -> tuple[Path, Path, Path, Path, Path]:
    """Runtime, audit, workspace and agent-home directories and a host config naming them.

    The sandbox is off: these tests are about the launcher's wiring; the sandboxed path has
    its own tests.
    """
    run_dir, audit_dir, ws_root = tmp_path / "run", tmp_path / "audit", tmp_path / "ws"
    run_dir.mkdir()
    agent_home = tmp_path / "agent"
    (agent_home / ".codex").mkdir(parents=True)
    host_config = tmp_path / "symphonyd.toml"
    host_config.write_text(
        f'[paths]\nstate_dir = "{tmp_path}"\nruntime_dir = "{run_dir}"\n'
        f'workspace_root = "{ws_root}"\n[sandbox]\nenabled = false\n'
    )
    return run_dir, audit_dir, ws_root, agent_home, host_config


def spawn_audit(audit_dir: Path, run_dir: Path) -> subprocess.Popen[bytes]:
    """The real audit writer, serving the launcher's socket in ``run_dir``."""
    return spawn(
        "symphonyd.audit",
        "--dir",
        str(audit_dir),
        "--listen",
        f"launcher={run_dir / 'audit-launcher.sock'}",
        "--allow-uid",
        str(UID),
    )


def spawn_launcher(
    host_config: Path, run_dir: Path, agent_home: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``python -m symphonyd.launcher`` as its unit runs it, on a socket in ``run_dir``."""
    return spawn(
        "symphonyd.launcher",
        "--host-config",
        str(host_config),
        "--socket",
        str(run_dir / "launcher.sock"),
        "--agent-home",
        str(agent_home),
        "--dispatcher-uid",
        str(UID),
        env=env,
    )


def codex_against(agent_home: Path, port: int) -> None:
    """Codex's config in the agents' home: the mock Responses API on ``port``."""
    (agent_home / ".codex" / "config.toml").write_text(
        'model = "mock-model"\nmodel_provider = "mock"\n[model_providers.mock]\n'
        f'name = "mock"\nbase_url = "http://127.0.0.1:{port}/v1"\n'
        'wire_api = "responses"\nrequest_max_retries = 0\nstream_max_retries = 0\n'
        "supports_websockets = false\n"
    )


async def wait_for_socket(path: Path, proc: subprocess.Popen[bytes]) -> None:
    async with asyncio.timeout(30):
        while not path.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            await asyncio.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err.decode(errors="replace")


@asynccontextmanager
async def tracker_double(
    path: Path, *issues: Issue, declared: Sequence[str] = (), secrets: Sequence[str] = ()
) -> AsyncIterator[list[ToolCall]]:
    """The tracker daemon's launcher socket; ``declared``/``secrets``: its secret env names
    and the values it scrubs from ``tracker.redact`` text, as the real daemon would."""
    calls: list[ToolCall] = []
    server = IpcServer("tracker-launcher", allowed_uids={UID}, allow_root=UID == 0)
    redactor = Redactor(secrets)

    async def fetch(req: FetchByIds, peer: Peer) -> IssueList:
        return IssueList([i for i in issues if i.id in req.ids])

    async def profile(_: Empty, peer: Peer) -> TrackerProfile:
        return TrackerProfile("memory", ["Todo"], ["Done"], list(declared), "fp-1")

    async def redact(req: RedactText, peer: Peer) -> RedactedText:
        return RedactedText(redactor.text(req.text))

    async def specs(_: Empty, peer: Peer) -> ToolSpecList:
        return ToolSpecList([COMMENT_TOOL])

    async def call(req: ToolCall, peer: Peer) -> ToolResult:
        calls.append(req)
        return ToolResult(True, {"comment_id": "c1"})

    server.handle(TRACKER_FETCH_BY_IDS, fetch)
    server.handle(TRACKER_TOOL_SPECS, specs)
    server.handle(TRACKER_TOOL_CALL, call)
    server.handle(TRACKER_PROFILE, profile)
    server.handle(TRACKER_REDACT, redact)
    await server.start_path(path)
    try:
        yield calls
    finally:
        await server.close()


def agent_settings(runtime: str, port: int) -> dict[str, Any]:
    """The workflow's agent sections: the real CLI of ``runtime`` against the mock model."""
    if runtime == "codex":
        return {"codex": {"command": codex_command(), "approval_policy": "never"}}
    vertex = (
        "CLAUDE_CODE_USE_VERTEX=1 CLAUDE_CODE_SKIP_VERTEX_AUTH=1 "
        f"ANTHROPIC_VERTEX_BASE_URL=http://127.0.0.1:{port}/v1 "
        "ANTHROPIC_VERTEX_PROJECT_ID=offline-test CLOUD_ML_REGION=us-east5"
    )
    return {
        "agent": {"runtime": "claude", "max_turns": 1},
        "claude": {"command": f"{vertex} {shlex.quote(claude_bin())}", "model": CLAUDE_MODEL},
    }


def model_script(runtime: str) -> Callable[[int, dict[str, Any]], Reply]:
    """Call the tracker tool once, then finish; in each model API's own shape."""

    def codex(n: int, body: dict[str, Any]) -> Reply:
        if n == 1:
            return responses_call("tracker_comment", {"body": "done"})
        return responses_text("all done")

    if runtime == "codex":
        return codex
    return anthropic_calls_once(CLAUDE_TOOL, {"body": "done"}, "all done")


@pytest.mark.parametrize("runtime", ["codex", "claude"])
def test_dispatcher_drives_a_run_over_sockets_and_everything_is_audited(
    tmp_path: Path, runtime: str
) -> None:
    run_dir, audit_dir, ws_root, agent_home, host_config = launcher_layout(tmp_path)
    issue = build_issue(
        id="i-7",
        identifier="ABC-7",
        title="<b>hostile</b> $(id)",
        state="Todo",
        dispatchable=True,
    )
    audit = spawn_audit(audit_dir, run_dir)
    with MockServer(model_script(runtime)) as mock:
        # The workflow names another root; the host config's root must win (launcher side).
        workflow = WorkflowSnapshot(
            str(tmp_path / "WORKFLOW.md"),
            {
                "tracker": {"kind": "memory", "active_states": ["Todo"]},
                "workspace": {"root": str(tmp_path / "ignored")},
                "agent": {"max_turns": 1},
                **agent_settings(runtime, mock.port),
            },
            "Do {{ issue.identifier }}",
            "0" * 64,
        )
        codex_against(agent_home, mock.port)

        events: list[RunEvent] = []

        async def scenario() -> tuple[list[str], Any, Any]:
            await wait_for_socket(run_dir / "audit-launcher.sock", audit)
            async with tracker_double(run_dir / "tracker-launcher.sock", issue) as calls:
                launcher = spawn_launcher(host_config, run_dir, agent_home)
                try:
                    await wait_for_socket(run_dir / "launcher.sock", launcher)
                    client = await IpcClient.connect(run_dir / "launcher.sock")
                    health = await client.call(HEALTH, Empty())
                    assert health.daemon == "launcher"
                    await client.call(LAUNCHER_SUBSCRIBE, Empty())
                    started = await client.call(
                        LAUNCHER_START_RUN, StartRun("run-1", issue, None, workflow)
                    )
                    assert started.accepted, started
                    names: list[str] = []
                    async with asyncio.timeout(90):
                        async for ev in client.events():
                            names.append(ev.data.event)
                            events.append(ev.data)
                            if ev.data.event == "run_finished":
                                break
                    runs = (await client.call(LAUNCHER_LIST_RUNS, ListRuns())).runs
                    await client.call(LAUNCHER_ACK_RUNS, AckRuns(["run-1"]))
                    after_ack = (await client.call(LAUNCHER_LIST_RUNS, ListRuns())).runs
                    await client.close()
                finally:
                    code, err = stop(launcher)
                assert code == 0, err
                return names, (runs, after_ack), calls

        names, (runs, after_ack), calls = asyncio.run(scenario())
    code, err = stop(audit)
    assert code == 0, err

    assert names[0] == "session_started" and names[-1] == "run_finished"
    (info,) = runs
    assert info.outcome.status == "succeeded", info.outcome
    assert info.workspace_path == str(ws_root / "ABC-7")
    assert (ws_root / "ABC-7").is_dir() and not (tmp_path / "ignored").exists()
    assert after_ack == []
    assert [c.tool for c in calls] == ["tracker_comment"] and calls[0].issue.id == "i-7"
    # What list_runs reports is the fold of the events the launcher published, by the rule
    # the dispatcher folds the same stream with (core/run_progress.py).
    folded = RunProgress(workspace_path=info.workspace_path)
    for event in events:
        folded.apply(event)
    assert folded.fields_for(RunInfo) == RunProgress.of(info).fields_for(RunInfo)

    ctl = [sys.executable, "-m", "symphonyd.ctl", "audit"]
    verify = subprocess.run(
        [*ctl, "verify", "--dir", str(audit_dir)], capture_output=True, text=True, check=False
    )
    assert verify.returncode == 0 and verify.stdout.startswith("ok "), verify
    shown = subprocess.run(
        [*ctl, "show", "--dir", str(audit_dir), "--issue", "i-7", "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    records = [json.loads(line) for line in shown.splitlines() if line.strip()]
    types = [r["type"] for r in records]
    assert {"prompt_sent", "tool_call", "run_finished"} <= set(types), types
    prompt = next(r for r in records if r["type"] == "prompt_sent")
    # Prompts are kept as a hash and a preview, never whole (seed 001).
    assert len(prompt["payload"]["sha256"]) == 64 and "prompt" not in prompt["payload"]
    # The sender is who the kernel says, not what the message claims.
    assert {r["sender"]["uid"] for r in records} == {UID}
