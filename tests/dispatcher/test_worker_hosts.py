"""The dispatcher schedules onto worker hosts (design 1100, SPEC Appendix A).

Driven through the production wiring (``assemble`` with the host config's ``[worker]`` and
``loops``: one launcher client and one event-stream follower per host) against launcher
stand-ins behind link stand-ins on ``<runtime>/hosts/<name>.sock`` (:mod:`host_doubles`),
with the local launcher stand-in on its usual socket to prove nothing runs there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tomllib
from collections.abc import AsyncIterator

from symphonyd.core.api.dispatcher import DISPATCHER_BOUND_ISSUE, BoundIssueParams
from symphonyd.core.api.launcher import RunEvent, RunOutcome, StartRun, WorkflowSnapshot
from symphonyd.core.audit_events import HOST_DRAIN
from symphonyd.dispatcher.link_api import link_server
from symphonyd.dispatcher.orchestrator import Orchestrator
from symphonyd.runtime.ipc_client import IpcClient
from tests.dispatcher.doubles import issue, run_async
from tests.dispatcher.host_doubles import HostStandIn, worker_config
from tests.dispatcher.journal_capture import journal_capture
from tests.dispatcher.socket_doubles import SocketWorld, eventually, socket_world
from tests.dispatcher.test_daemon_sockets import ctl, dispatcher, status, write_workflow

NO_STALL = "codex:\n  stall_timeout_ms: 0\n"


def started(host: SocketWorld) -> list[tuple[str, int | None]]:
    return [(r.issue.identifier, r.attempt) for r in host.launcher.started]


@contextlib.asynccontextmanager
async def workers(world: SocketWorld, *names: str) -> AsyncIterator[dict[str, HostStandIn]]:
    hosts = {name: HostStandIn(world.root, name) for name in names}
    for host in hosts.values():
        await host.start()
    try:
        yield hosts
    finally:
        for host in hosts.values():
            await host.close()


def connected(orch: Orchestrator, *names: str) -> bool:
    return all(orch.engine.hosts.hosts[n].connected for n in names)


@contextlib.asynccontextmanager
async def link_socket(world: SocketWorld, orch: Orchestrator) -> AsyncIterator[IpcClient]:
    """The dispatcher's link socket as its daemon serves it, and the link's client on it."""
    server = link_server(orch, [os.getuid()])
    await server.start_path(world.root / "dispatcher-link.sock")
    try:
        async with await IpcClient.connect(world.root / "dispatcher-link.sock") as client:
            yield client
    finally:
        await server.close()


async def bound(client: IpcClient, host: str, issue_id: str) -> str | None:
    """The identifier of the issue the dispatcher binds to ``host``, as the link asks."""
    reply = await client.call(DISPATCHER_BOUND_ISSUE, BoundIssueParams(host, issue_id))
    return None if reply.issue is None else reply.issue.identifier


@run_async
async def test_runs_spread_within_per_host_caps_and_wait_when_all_are_full() -> None:
    async with socket_world() as world, workers(world, "w1", "w2") as hosts:
        write_workflow(world.root / "WORKFLOW.md", limit=10, extra=NO_STALL)
        world.tracker.put(issue(1), issue(2), issue(3))
        worker = worker_config("w1", "w2", per_host=1, lease_seconds=5)
        with journal_capture() as journal:
            async with dispatcher(world, worker) as orch:
                # (A run is in orch.running from just before its start_run is sent.)
                await eventually(lambda: orch.engine.starts == 2, "two runs")
                assert [len(h.launcher.started) for h in hosts.values()] == [1, 1]
                assert {e.host for e in orch.running.values()} == {"w1", "w2"}
                await asyncio.sleep(0.6)  # several ticks: both hosts are full
                assert len(orch.running) == 2 and orch.engine.starts == 2
                assert world.launcher.started == []  # never a local fallback
                snap = await status(world)
                assert sorted(r["host"] for r in snap["running"]) == ["w1", "w2"]
                code, out, _ = await ctl(world, "status")
                assert code == 0 and "HOST" in out and "w1" in out
                health = {d["daemon"]: d["ok"] for d in snap["daemons"]}
                assert health == {"tracker": True, "audit": True, "workflow": True,
                                  "host w1": True, "host w2": True}  # fmt: skip

                # A slot frees on w2: the waiting issue goes there, not elsewhere.
                run = hosts["w2"].launcher.started[0]
                hosts["w2"].launcher.finish(run.run_id, RunOutcome("blocked"))
                hosts["w2"].emit_pending()
                await eventually(lambda: len(hosts["w2"].launcher.started) == 2, "third run")
                assert world.launcher.started == []
        third = hosts["w2"].launcher.started[1].issue.identifier
        assert journal.events("dispatch", OUTCOME="started", HOST="w2", ISSUE_IDENTIFIER=third)


@run_async
async def test_an_unreachable_host_sends_the_issue_elsewhere_without_an_attempt() -> None:
    async with socket_world() as world, workers(world, "w1", "w2") as hosts:
        write_workflow(world.root / "WORKFLOW.md", limit=10, extra=NO_STALL)
        worker = worker_config("w1", "w2", per_host=2, lease_seconds=5)
        with journal_capture() as journal:
            async with dispatcher(world, worker) as orch:
                await eventually(lambda: connected(orch, "w1", "w2"), "both hosts up")
                # w1's link can no longer open sessions; its event stream stays up.
                hosts["w1"].refusing = True
                hosts["w1"].drop_sessions(keep_stream=True)
                world.tracker.put(issue(1))
                await eventually(lambda: started(hosts["w2"]) == [("MT-1", None)], "on w2")
                assert started(hosts["w1"]) == []
                assert orch.running["id-1"].host == "w2" and orch.running["id-1"].attempt is None
        [line] = journal.events("dispatch", OUTCOME="host_unreachable", ISSUE_IDENTIFIER="MT-1")
        assert line["HOST"] == "w1" and line["PRIORITY"] == "4"
        assert not any(r.type == "run_finished" for r in world.audit.records)


@run_async
async def test_a_lost_host_is_fenced_then_retried_once_elsewhere_and_its_stale_run_stopped() -> (
    None
):
    lease_s = 2
    async with socket_world() as world, workers(world, "w1", "w2") as hosts:
        write_workflow(world.root / "WORKFLOW.md", limit=10, extra=NO_STALL)
        worker = worker_config("w1", "w2", per_host=1, lease_seconds=lease_s)
        loop = asyncio.get_running_loop()
        with journal_capture() as journal:
            async with dispatcher(world, worker) as orch, link_socket(world, orch) as link:
                await eventually(lambda: connected(orch, "w1", "w2"), "both hosts up")
                world.tracker.put(issue(1))
                await eventually(lambda: orch.engine.starts == 1, "dispatched")
                first = orch.running["id-1"]
                lost_host = first.host
                other = "w2" if lost_host == "w1" else "w1"
                # Which worker may act on the issue's tracker (design 1100): only its host.
                assert await bound(link, lost_host, "id-1") == "MT-1"
                assert await bound(link, other, "id-1") is None
                hosts[lost_host].partition()
                lost_at = loop.time()
                await eventually(lambda: "id-1" in orch.retries, "fenced")
                assert orch.running == {}
                assert await bound(link, lost_host, "id-1") is None  # fenced: no longer
                snap = await status(world)
                [row] = [d for d in snap["daemons"] if d["daemon"] == f"host {lost_host}"]
                assert not row["ok"] and "event stream lost" in row["detail"]
                assert [(r["issue_identifier"], r["kind"]) for r in snap["retrying"]] == [
                    ("MT-1", "failure")
                ]
                # The agent may still run on the lost host: nothing starts before its lease
                # has ended.
                await eventually(lambda: started(hosts[other]) == [("MT-1", 1)], "new attempt")
                assert loop.time() - lost_at >= lease_s
                assert orch.running["id-1"].host == other
                assert await bound(link, other, "id-1") == "MT-1"
                assert await bound(link, lost_host, "id-1") is None

                # The partition heals; the worker still runs the old agent: it is stopped.
                hosts[lost_host].heal()
                await eventually(
                    lambda: [s.run_id for s in hosts[lost_host].launcher.stopped] == [first.run_id],
                    "stale run stopped",
                )
                # Its late result is acknowledged and applied nowhere.
                new_run = orch.running["id-1"].run_id
                hosts[lost_host].emit(RunEvent(first.run_id, "id-1", "run_finished",
                                               "2026-03-01T12:01:00Z",
                                               outcome=RunOutcome("succeeded")))  # fmt: skip
                await eventually(
                    lambda: first.run_id in hosts[lost_host].launcher.acked, "late result acked"
                )
                assert orch.running["id-1"].run_id == new_run and "id-1" not in orch.retries
                assert started(hosts[other]) == [("MT-1", 1)]
                assert started(hosts[lost_host]) == [("MT-1", None)]
                assert world.launcher.started == []
    finished = [r for r in world.audit.records if r.type == "run_finished"]
    assert [(r.payload["run_id"], r.payload["error_code"]) for r in finished] == [
        (first.run_id, "host_lost")
    ]
    [line] = journal.events("host_lost", ISSUE_IDENTIFIER="MT-1")
    assert line["HOST"] == lost_host and line["RETRY_IN_MS"] == str(int(lease_s * 1.5 * 1000))


@run_async
async def test_terminal_cleanup_and_prune_go_to_the_host_that_owns_the_workspace() -> None:
    async with socket_world() as world, workers(world, "w1", "w2") as hosts:
        write_workflow(world.root / "WORKFLOW.md", limit=10, extra=NO_STALL)
        world.tracker.put(issue(1))
        worker = worker_config("w1", "w2", per_host=1, lease_seconds=5)
        async with dispatcher(world, worker) as orch:
            await eventually(lambda: orch.engine.starts == 1, "dispatched")
            owner = orch.running["id-1"].host
            other = "w2" if owner == "w1" else "w1"
            # Both hosts have an old MT-1 directory; only the owner's is the dispatcher's.
            for host in hosts.values():
                root = host.launcher.workspace_root
                assert root is not None
                (root / "MT-1").mkdir(parents=True)
                os.utime(root / "MT-1", (1_000_000_000, 1_000_000_000))
            # The binding is durable: a restarted dispatcher knows where the workspace is.
            state = tomllib.loads((world.root / "state" / "dispatcher-state.toml").read_text())
            assert state["workspace_hosts"] == {"MT-1": [owner]}

            world.tracker.move("id-1", "Done")
            # The run leaves the table before its stop_run reaches the host: wait for both.
            await eventually(lambda: "id-1" not in orch.running and hosts[owner].launcher.stopped,
                             "terminal stop")  # fmt: skip
            [stop] = hosts[owner].launcher.stopped
            assert stop.cleanup_workspace and stop.reason == "terminal"
            code, out, err = await ctl(world, "prune", "--older-than", "1d")
            assert code == 0, err
            assert hosts[owner].launcher.removed == ["MT-1", "MT-1"]  # stop cleanup, prune
            assert f"MT-1 on {owner}" in out
            state = tomllib.loads((world.root / "state" / "dispatcher-state.toml").read_text())
            assert "workspace_hosts" not in state  # removed there: nothing left to clean
        assert hosts[other].launcher.stopped == [] and hosts[other].launcher.removed == []
        assert world.launcher.removed == []


@run_async
async def test_symphonyctl_hosts_lists_load_and_a_drained_host_takes_no_new_runs() -> None:
    async with socket_world() as world, workers(world, "w1", "w2") as hosts:
        write_workflow(world.root / "WORKFLOW.md", limit=10, extra=NO_STALL)
        worker = worker_config("w1", "w2", per_host=2, lease_seconds=5)
        async with dispatcher(world, worker) as orch:
            await eventually(lambda: connected(orch, "w1", "w2"), "both hosts up")
            code, out, err = await ctl(world, "hosts", "drain", "w1")
            assert code == 0 and "w1 drained" in out, err
            world.tracker.put(issue(1), issue(2))
            await eventually(lambda: orch.engine.starts == 2, "two runs")
            assert started(hosts["w1"]) == [] and len(hosts["w2"].launcher.started) == 2
            code, out, _ = await ctl(world, "hosts", "--json")
            rows = {h["name"]: h for h in json.loads(out)["hosts"]}
            assert (rows["w1"]["drained"], rows["w1"]["running"]) == (True, 0)
            assert (rows["w2"]["running"], rows["w2"]["capacity"], rows["w2"]["ok"]) == (2, 2, True)
            code, out, _ = await ctl(world, "hosts")
            assert "w2" in out and "2/2" in out and "drained" in out
            code, _, err = await ctl(world, "hosts", "drain", "nope")
            assert code != 0 and "host_not_found" in err + out
            code, _, _ = await ctl(world, "hosts", "drain", "w1")  # already drained: no record
            assert drain_records(world) == [{"host": "w1", "drained": True, "running": 0}]
            # Durable: a restarted dispatcher keeps w1 drained.
        state = tomllib.loads((world.root / "state" / "dispatcher-state.toml").read_text())
        assert state["drained_hosts"] == ["w1"]
        world.tracker.put(issue(3))
        async with dispatcher(world, worker) as orch:
            await eventually(lambda: connected(orch, "w1", "w2"), "both hosts up again")
            assert orch.engine.hosts.hosts["w1"].drained
            code, out, _ = await ctl(world, "hosts", "undrain", "w1")
            assert code == 0 and "takes runs again" in out
            await eventually(lambda: started(hosts["w1"]) == [("MT-3", None)], "MT-3 on w1")
        assert drain_records(world)[-1] == {"host": "w1", "drained": False, "running": 0}


def drain_records(world: SocketWorld) -> list[dict[str, object]]:
    """The audited drains and undrains, minus the operator uid (the test's own)."""
    rows = [r.payload for r in world.audit.records if r.type == HOST_DRAIN]
    assert all(r["operator_uid"] == os.getuid() for r in rows), rows
    return [{k: v for k, v in r.items() if k != "operator_uid"} for r in rows]


@run_async
async def test_a_worker_silent_at_start_holds_dispatch_until_its_lease_has_ended() -> None:
    lease_s = 2
    async with socket_world() as world, workers(world, "w1", "w2") as hosts:
        write_workflow(world.root / "WORKFLOW.md", limit=10, extra=NO_STALL)
        # A previous dispatcher started MT-1 on w1; now w1 is cut off as this one starts.
        snapshot = WorkflowSnapshot("WORKFLOW.md", {}, "", "0" * 64)
        await hosts["w1"].launcher.start_run(StartRun("r-old", issue(1), None, snapshot))
        hosts["w1"].partition()
        world.tracker.put(issue(1))
        worker = worker_config("w1", "w2", per_host=2, lease_seconds=lease_s)
        loop = asyncio.get_running_loop()
        with journal_capture() as journal:
            began = loop.time()
            async with dispatcher(world, worker) as orch:
                # MT-1 may still run on w1: nothing is dispatched before w1's lease is over.
                await eventually(lambda: started(hosts["w2"]) == [("MT-1", None)], "on w2")
                assert loop.time() - began >= lease_s
                # w1 comes back with the old agent still running: it is stopped, not adopted.
                hosts["w1"].heal()
                await eventually(
                    lambda: [s.run_id for s in hosts["w1"].launcher.stopped] == ["r-old"],
                    "stale run stopped",
                )
                assert orch.running["id-1"].host == "w2"
        [line] = journal.events("host_unknown")
        assert line["HOST"] == "w1" and line["PRIORITY"] == "4"
