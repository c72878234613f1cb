"""Issues scheduled per second by the dispatcher, and its memory, with zero-work runs.

For 1 000 and 10 000 candidate issues (``max_concurrent_agents`` = N so every candidate is
dispatched), measures one poll tick: fetch candidates, sort, check eligibility and slots,
write the batch's dispatch audit records, start every run. Then every run exits at once and
the dispatcher records the exits (continuation retries queued). Two set-ups:

- ``core``: the real orchestrator with in-process tracker/launcher/audit stand-ins, i.e. the
  scheduler's own cost;
- ``ipc``: the real dispatcher object graph (``daemon.assemble``: IPC clients, WORKFLOW.md
  loading) against tracker/launcher/audit servers in a separate process over Unix sockets.
  Only 1 000 here: ``tracker.fetch_by_states`` has no paging, and 10 000 issues exceed the
  1 MiB frame limit.

Each figure runs in its own child process so RSS is per case (ru_maxrss of the dispatcher).

    .venv/bin/python bench/dispatch_throughput.py [--repeat 3] [--log]

``--log``: the dispatcher logs at INFO as in production (``setup_logging``, one line per
dispatch and per retry), written to /dev/null, so the figures include the decision lines.

Last line: RESULT {json}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from symphonyd.core.api.audit import (
    AUDIT_APPEND,
    AUDIT_HEAD,
    AuditAck,
    AuditAppend,
    AuditEventIn,
    AuditHead,
)
from symphonyd.core.api.launcher import (
    LAUNCHER_ACK_RUNS,
    LAUNCHER_LIST_RUNS,
    LAUNCHER_REMOVE_WORKSPACE,
    LAUNCHER_START_RUN,
    LAUNCHER_STOP_RUN,
    LAUNCHER_SUBSCRIBE,
    AckRuns,
    ListRuns,
    RemoveWorkspace,
    RemoveWorkspaceResult,
    RunEvent,
    RunInfo,
    RunList,
    RunOutcome,
    StartRun,
    StartRunResult,
    StopRun,
    StopRunResult,
    WorkflowSnapshot,
    WorkspaceListing,
)
from symphonyd.core.api.shared import Empty
from symphonyd.core.api.tracker import (
    TRACKER_FETCH_BY_IDS,
    TRACKER_FETCH_BY_STATES,
    FetchByIds,
    FetchByStates,
    IssueList,
)
from symphonyd.core.issue import Issue
from symphonyd.dispatcher.engine import Engine
from symphonyd.dispatcher.orchestrator import Orchestrator
from symphonyd.dispatcher.ports import DispatchSettings, LoadedConfig, SystemClock
from symphonyd.dispatcher.store import StateStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WORKFLOW = """---
tracker:
  kind: memory
polling:
  interval_ms: 3600000
agent:
  max_concurrent_agents: {n}
workspace:
  root: {root}
---
Work on {{{{ issue.identifier }}}}.
"""


def make_issues(n: int) -> list[Issue]:
    return [
        Issue(
            id=f"i{k}",
            identifier=f"B-{k}",
            title="t",
            state="Todo" if k % 2 else "In Progress",
            dispatchable=True,
            priority=k % 5 or None,
            created_at=T0 + timedelta(seconds=k % 977),
        )
        for k in range(n)
    ]


class Tracker:
    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        self.by_id = {i.id: i for i in issues}

    async def fetch_by_states(self, states: list[str]) -> list[Issue]:
        wanted = {s.lower() for s in states}
        return [i for i in self.issues if i.state.lower() in wanted]

    async def fetch_by_ids(self, ids: list[str]) -> list[Issue]:
        return [self.by_id[i] for i in ids if i in self.by_id]


class Launcher:
    """Zero-work runs: accepted at once; the bench ends them all after the tick."""

    def __init__(self) -> None:
        self.started: list[StartRun] = []

    async def start_run(self, req: StartRun) -> StartRunResult:
        self.started.append(req)
        return StartRunResult(req.run_id, True)

    async def stop_run(self, req: StopRun) -> StopRunResult:
        return StopRunResult(True)

    async def list_runs(self) -> list[RunInfo]:
        return []

    async def ack_runs(self, run_ids: list[str]) -> None:
        return None

    async def remove_workspace(
        self,
        identifier: str,
        *,
        min_idle_s: float | None = None,
        workflow: WorkflowSnapshot | None = None,
    ) -> bool:
        return True

    async def list_workspaces(self, workflow: WorkflowSnapshot | None) -> WorkspaceListing:
        return WorkspaceListing("/nonexistent", [])

    async def workspace_ages(self, identifiers: list[str]) -> dict[str, float | None]:
        return dict.fromkeys(identifiers)


class Audit:
    def __init__(self) -> None:
        self.count = 0

    async def append(self, records: list[AuditEventIn]) -> None:
        self.count += len(records)

    async def probe(self) -> None:
        return None


class StaticConfig:
    def __init__(self, n: int) -> None:
        self.loaded = LoadedConfig(
            DispatchSettings(max_concurrent_agents=n),
            WorkflowSnapshot("/bench/WORKFLOW.md", {}, "Work on it.", "0" * 64),
        )

    def load(self) -> LoadedConfig:
        return self.loaded


async def measure(orch: Orchestrator, n: int, started: Any) -> dict[str, float]:
    await orch.start()
    t0 = time.perf_counter()
    await orch.tick()
    t1 = time.perf_counter()
    runs = list(orch.running.values())
    assert len(runs) == n and started() == n, (len(runs), started())
    now = datetime.now(UTC).isoformat()
    for e in runs:
        await orch.handle_run_event(
            RunEvent(e.run_id, e.issue.id, "run_finished", now, outcome=RunOutcome("succeeded"))
        )
    t2 = time.perf_counter()
    assert len(orch.retries) == n
    return {"tick_s": t1 - t0, "exits_s": t2 - t1}


async def one_core(n: int, state_dir: Path) -> dict[str, float]:
    launcher = Launcher()
    orch = Orchestrator(
        Engine(
            tracker=Tracker(make_issues(n)),
            launcher=launcher,
            audit=Audit(),
            config=StaticConfig(n),
            store=StateStore(state_dir),
            clock=SystemClock(),
        )
    )
    return await measure(orch, n, lambda: len(launcher.started))


async def one_ipc(n: int, root: Path) -> dict[str, float]:
    from symphonyd.dispatcher.config_source import WorkflowConfigSource
    from symphonyd.dispatcher.daemon import assemble

    orch, _ = assemble(root, root / "state", WorkflowConfigSource(root / "WORKFLOW.md", env={}))
    return await measure(orch, n, lambda: n)


def run_ipc(n: int, root: Path) -> dict[str, float]:
    (root / "WORKFLOW.md").write_text(WORKFLOW.format(n=n, root=root / "ws"))
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(root), "--n", str(n)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        return asyncio.run(one_ipc(n, root))
    finally:
        server.terminate()
        server.wait(10)


async def serve(root: Path, n: int) -> None:
    """The tracker, launcher and audit daemons of the ipc case, in their own process."""
    from symphonyd.runtime.ipc_server import IpcServer

    issues = make_issues(n)
    tracker, launcher, audit = Tracker(issues), Launcher(), Audit()
    uid = os.getuid()

    def server(name: str) -> IpcServer:
        return IpcServer(name, allowed_uids={uid}, allow_root=True)

    async def by_states(p: FetchByStates, _: Any) -> IssueList:
        return IssueList(await tracker.fetch_by_states(p.states))

    async def by_ids(p: FetchByIds, _: Any) -> IssueList:
        return IssueList(await tracker.fetch_by_ids(p.ids))

    async def start(p: StartRun, _: Any) -> StartRunResult:
        return await launcher.start_run(p)

    async def stop(p: StopRun, _: Any) -> StopRunResult:
        return StopRunResult(True)

    async def list_runs(_: ListRuns, __: Any) -> RunList:
        return RunList([])

    async def ack(_: AckRuns, __: Any) -> Empty:
        return Empty()

    async def remove(p: RemoveWorkspace, _: Any) -> RemoveWorkspaceResult:
        return RemoveWorkspaceResult(True)

    async def subscribe(_: Empty, __: Any, sink: Any) -> Empty:
        return Empty()

    async def append(p: AuditAppend, _: Any) -> AuditAck:
        await audit.append(p.records)
        return AuditAck(list(range(len(p.records))), "0" * 64)

    async def head(_: Empty, __: Any) -> AuditHead:
        return AuditHead(audit.count, "0" * 64)

    t, la, au = server("tracker"), server("launcher"), server("audit")
    t.handle(TRACKER_FETCH_BY_STATES, by_states)
    t.handle(TRACKER_FETCH_BY_IDS, by_ids)
    la.handle(LAUNCHER_START_RUN, start)
    la.handle(LAUNCHER_STOP_RUN, stop)
    la.handle(LAUNCHER_LIST_RUNS, list_runs)
    la.handle(LAUNCHER_ACK_RUNS, ack)
    la.handle(LAUNCHER_REMOVE_WORKSPACE, remove)
    la.subscription(LAUNCHER_SUBSCRIBE, subscribe)
    au.handle(AUDIT_APPEND, append)
    au.handle(AUDIT_HEAD, head)
    for name, srv in (("tracker", t), ("launcher", la), ("audit", au)):
        await srv.start_path(root / f"{name}-dispatcher.sock")
    print("ready", flush=True)
    await asyncio.Event().wait()


def child(mode: str, n: int, repeat: int, log: bool = False) -> dict[str, Any]:
    if log:
        from symphonyd.runtime.logging import setup_logging

        setup_logging("dispatcher", stream=open(os.devnull, "w"))  # noqa: SIM115
    ticks, exits = [], []
    for _ in range(repeat):
        root = Path(tempfile.mkdtemp(prefix="sybench"))
        try:
            r = asyncio.run(one_core(n, root)) if mode == "core" else run_ipc(n, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        ticks.append(r["tick_s"])
        exits.append(r["exits_s"])
    tick = statistics.median(ticks)
    return {
        "mode": mode,
        "issues": n,
        "logging": log,
        "tick_s": round(tick, 4),
        "scheduled_per_s": round(n / tick),
        "exits_per_s": round(n / statistics.median(exits)),
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--one", nargs=2, metavar=("MODE", "N"))
    p.add_argument("--serve")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--log", action="store_true", help="log decisions at INFO to /dev/null")
    args = p.parse_args()
    if args.serve:
        asyncio.run(serve(Path(args.serve), args.n))
        return
    if args.one:
        print(json.dumps(child(args.one[0], int(args.one[1]), args.repeat, args.log)))
        return
    results = []
    for mode, n in (("core", 1000), ("core", 10000), ("ipc", 1000)):
        out = subprocess.run(
            [sys.executable, __file__, "--one", mode, str(n), "--repeat", str(args.repeat)]
            + (["--log"] if args.log else []),
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        ).stdout
        row = json.loads(out.strip().splitlines()[-1])
        results.append(row)
        print(
            f"{mode:4} {n:6} issues: {row['scheduled_per_s']:>8} scheduled/s "
            f"(tick {row['tick_s']} s), {row['exits_per_s']:>8} exits/s, "
            f"RSS {row['max_rss_mib']} MiB"
        )
    print("RESULT " + json.dumps({"dispatch_throughput": results}))


if __name__ == "__main__":
    main()
