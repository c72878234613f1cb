"""/metrics counts real run outcomes: the launcher daemon runs them, the audit daemon keeps them.

Issue 22 item 3: ``symphony_run_failures_total{reason="unknown"}`` equalled the number of
successful runs, because the launcher wrote its own ``{"status": ...}`` payload and the
counter read ``outcome``. Here every part on the path is the production process: the
launcher daemon (real codex against a mock model API), the audit daemon, the dashboard. Only
the tracker (the launcher's outside world) and the dispatcher (whose snapshot feeds the other
series) are doubles.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from symphonyd.core import audit_events
from symphonyd.core.api.audit import AUDIT_APPEND, AuditAppend, AuditEventIn
from symphonyd.core.api.launcher import (
    LAUNCHER_START_RUN,
    LAUNCHER_SUBSCRIBE,
    RunEvent,
    RunOutcome,
    StartRun,
    WorkflowSnapshot,
)
from symphonyd.core.api.shared import Empty, TokenTotals
from symphonyd.core.issue import build_issue
from symphonyd.runtime.ipc_client import IpcClient
from tests.audit.daemon_proc import AuditDaemon
from tests.dashboard.double import DispatcherDouble
from tests.dashboard.harness import DashboardProcess, short_dir
from tests.dispatcher.doubles import issue, run_async
from tests.dispatcher.socket_doubles import eventually, socket_world
from tests.dispatcher.test_daemon_sockets import dispatcher
from tests.launcher.agents.mock_models import MockServer
from tests.launcher.test_daemon_sockets import (
    agent_settings,
    model_script,
    spawn,
    stop,
    tracker_double,
    wait_for_socket,
)

pytestmark = pytest.mark.agents
UID = os.getuid()


def _workflow(tmp: Path, codex: dict[str, Any]) -> WorkflowSnapshot:
    return WorkflowSnapshot(
        str(tmp / "WORKFLOW.md"),
        {
            "tracker": {"kind": "memory", "active_states": ["Todo"]},
            "agent": {"max_turns": 1},
            **codex,
        },
        "Do {{ issue.identifier }}",
        "0" * 64,
    )


def _series(text: str, name: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, _, value = line.rpartition(" ")
            out[key[len(name) :]] = float(value)
    return out


def test_a_succeeded_and_a_failed_run_are_counted_as_what_they_were(tmp_path: Path) -> None:
    run_dir, ws_root, agent_home = tmp_path / "run", tmp_path / "ws", tmp_path / "agent"
    run_dir.mkdir()
    (agent_home / ".codex").mkdir(parents=True)
    host_config = tmp_path / "symphonyd.toml"
    host_config.write_text(
        f'[paths]\nstate_dir = "{tmp_path}"\nruntime_dir = "{run_dir}"\n'
        f'workspace_root = "{ws_root}"\n[sandbox]\nenabled = false\n'
    )
    ok_issue = build_issue(id="i-1", identifier="MT-1", title="ok", state="Todo", dispatchable=True)
    bad_issue = build_issue(
        id="i-2", identifier="MT-2", title="bad", state="Todo", dispatchable=True
    )

    with (
        short_dir() as d,
        AuditDaemon(
            tmp_path / "audit", d, extra=("--listen", f"dashboard={d / 'dash-audit.sock'}")
        ) as audit,
        MockServer(model_script("codex")) as mock,
    ):
        (agent_home / ".codex" / "config.toml").write_text(
            'model = "mock-model"\nmodel_provider = "mock"\n[model_providers.mock]\n'
            f'name = "mock"\nbase_url = "http://127.0.0.1:{mock.port}/v1"\n'
            'wire_api = "responses"\nrequest_max_retries = 0\nstream_max_retries = 0\n'
            "supports_websockets = false\n"
        )
        good = _workflow(tmp_path, agent_settings("codex", mock.port))
        missing = _workflow(tmp_path, {"codex": {"command": f"{tmp_path}/no-codex app-server"}})

        async def scenario() -> dict[str, str]:
            outcomes: dict[str, str] = {}
            async with tracker_double(run_dir / "tracker-launcher.sock", ok_issue):
                launcher = spawn(
                    "symphonyd.launcher",
                    "--host-config", str(host_config),
                    "--socket", str(run_dir / "launcher.sock"),
                    "--audit-socket", str(audit.sock("launcher")),
                    "--agent-home", str(agent_home),
                    "--dispatcher-uid", str(UID),
                )  # fmt: skip
                try:
                    await wait_for_socket(run_dir / "launcher.sock", launcher)
                    client = await IpcClient.connect(run_dir / "launcher.sock")
                    await client.call(LAUNCHER_SUBSCRIBE, Empty())
                    for run_id, issue, wf in (
                        ("r-ok", ok_issue, good),
                        ("r-bad", bad_issue, missing),
                    ):
                        started = await client.call(
                            LAUNCHER_START_RUN, StartRun(run_id, issue, None, wf)
                        )
                        assert started.accepted, started
                    async with asyncio.timeout(120):
                        async for ev in client.events():
                            if ev.data.event == "run_finished":
                                outcomes[ev.data.run_id] = ev.data.outcome.status
                                if len(outcomes) == 2:
                                    break
                    await client.close()
                finally:
                    code, err = stop(launcher)  # drains its audit queue before exiting
                assert code == 0, err
            return outcomes

        outcomes = asyncio.run(scenario())
        assert outcomes == {"r-ok": "succeeded", "r-bad": "failed"}, outcomes

        with (
            DispatcherDouble(d / "disp.sock"),
            DashboardProcess(d / "disp.sock", d / "dash-audit.sock", d / "dash.log") as dash,
        ):
            text = httpx.get(dash.base + "/metrics").text
            finished = _series(text, "symphony_runs_finished_total")
            failures = _series(text, "symphony_run_failures_total")
            assert list(failures.values()) == [1] and "unknown" not in text, failures
            assert finished == {'{outcome="failed"}': 1, '{outcome="succeeded"}': 1}, text
            (reason,) = failures
            assert reason.startswith('{reason="') and "codex" in reason, reason
            assert _series(text, "symphony_audit_records_total")['{type="run_finished"}'] == 2

            # A run the dispatcher then holds as blocked gets its own run_finished record
            # (dispatcher/run_events.py); the same run must not be counted twice.
            async def dispatcher_blocked_record() -> None:
                async with await IpcClient.connect(audit.sock("dispatcher")) as client:
                    record = audit_events.run_finished(
                        "i-2", "MT-2", "r-bad", "blocked", error_code="turn_input_required"
                    )
                    await client.call(AUDIT_APPEND, AuditAppend([record]))

            asyncio.run(asyncio.wait_for(dispatcher_blocked_record(), 30))
            again = httpx.get(dash.base + "/metrics").text
            assert _series(again, "symphony_audit_records_total")['{type="run_finished"}'] == 3
            assert _series(again, "symphony_runs_finished_total") == finished
            assert _series(again, "symphony_run_failures_total") == failures


def test_records_written_by_older_launchers_count_by_their_status(tmp_path: Path) -> None:
    # Logs written before the fix carry {"status": ...}; they are history and must count
    # as what they were once the new dashboard reads them.
    def old(run_id: str, status: str, code: str | None) -> AuditEventIn:
        return AuditEventIn(
            type="run_finished",
            payload={"run_id": run_id, "status": status, "error_code": code},
            issue_id="i-1",
            issue_identifier="MT-1",
        )

    with (
        short_dir() as d,
        AuditDaemon(
            tmp_path / "audit", d, extra=("--listen", f"dashboard={d / 'dash-audit.sock'}")
        ) as audit,
    ):

        async def append() -> None:
            async with await IpcClient.connect(audit.sock("launcher")) as client:
                batch = [old("r1", "succeeded", None), old("r2", "stalled", "stalled")]
                await client.call(AUDIT_APPEND, AuditAppend(batch))

        asyncio.run(asyncio.wait_for(append(), 30))
        with (
            DispatcherDouble(d / "disp.sock"),
            DashboardProcess(d / "disp.sock", d / "dash-audit.sock", d / "dash.log") as dash,
        ):
            text = httpx.get(dash.base + "/metrics").text
    assert _series(text, "symphony_run_failures_total") == {'{reason="stalled"}': 1}, text
    finished = _series(text, "symphony_runs_finished_total")
    assert finished == {'{outcome="stalled"}': 1, '{outcome="succeeded"}': 1}, text


@run_async
async def test_snapshot_series_follow_a_real_dispatchers_runs() -> None:
    # The gauges and token counters come from the dispatcher's snapshot: here the real
    # orchestrator and control server (tests/dispatcher/test_daemon_sockets.py's wiring),
    # its launcher and tracker as socket doubles, and the real dashboard process reading it.
    async with socket_world() as world, dispatcher(world) as orch:
        world.tracker.put(issue(1), issue(2))
        await eventually(lambda: len(world.launcher.started) == 2, "two runs")
        runs = {r.issue.identifier: r.run_id for r in world.launcher.started}
        at = "2026-03-01T12:00:00Z"
        world.emit(RunEvent(runs["MT-1"], "id-1", "tokens", at, tokens=TokenTotals(100, 20, 120)))
        world.emit(RunEvent(runs["MT-2"], "id-2", "tokens", at, tokens=TokenTotals(10, 5, 15)))
        await eventually(
            lambda: sum(e.tokens.total_tokens for e in orch.running.values()) == 135, "tokens"
        )
        dash = DashboardProcess(world.root / "ctl.sock", None, world.root / "dash.log")
        await asyncio.to_thread(dash.start)
        try:

            async def metrics() -> str:
                reply = await asyncio.to_thread(httpx.get, dash.base + "/metrics")
                return reply.text

            during = await metrics()
            assert "symphony_dashboard_dispatcher_up 1" in during
            # Titles and tracker links travel from the real dispatcher to the pages.
            overview = (await asyncio.to_thread(httpx.get, dash.base + "/")).text
            for n in (1, 2):
                assert f'<span class="title">Issue {n}</span>' in overview, overview
                assert f'href="https://tracker.test/MT-{n}"' in overview
            assert "symphony_running 2" in during and "symphony_retrying 0" in during
            world.launcher.finish(runs["MT-1"], RunOutcome("succeeded"))
            world.launcher.finish(runs["MT-2"], RunOutcome("failed", "turn_failed", "boom"))
            world.emit_pending()
            await eventually(lambda: not orch.running, "both runs ended")
            after = ""
            for _ in range(100):  # the dashboard's copy follows the dispatcher's events
                after = await metrics()
                if "symphony_running 0" in after:
                    break
                await asyncio.sleep(0.1)
            # Retry rows name no title; the dashboard remembers it from the running rows.
            retries = (await asyncio.to_thread(httpx.get, dash.base + "/")).text
            retries = retries[retries.index("<h2>Retry queue</h2>") :]
            assert '<span class="title">Issue 1</span>' in retries.split("</section>")[0]
        finally:
            await asyncio.to_thread(dash.stop)
    assert "symphony_running 0" in after, after
    # The success waits for its continuation turn, the failure for its backoff retry.
    assert "symphony_retrying 2" in after, after
    tokens = _series(after, "symphony_tokens_total")
    assert tokens == {'{kind="input"}': 110, '{kind="output"}': 25, '{kind="total"}': 135}, after
    assert _series(after, "symphony_tokens_today")[""] == 135
