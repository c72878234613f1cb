"""Age cleanup and the orphan report through the shipped daemons.

The dispatcher, launcher and audit writer run as their own processes from their entry points
(``python -m symphonyd.<daemon>``), talking over real Unix sockets; only the tracker, the
outside world, is a double served in the test. Workspaces are real directories whose mtimes
the test sets. The agent is a process that never answers (``sleep``), so runs stay live.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from symphonyd.core.api.shared import Empty
from symphonyd.core.api.tracker import (
    TRACKER_FETCH_BY_IDS,
    TRACKER_FETCH_BY_STATES,
    TRACKER_PROFILE,
    TRACKER_REDACT,
    TRACKER_TOOL_CALL,
    TRACKER_TOOL_SPECS,
    FetchByIds,
    FetchByStates,
    IssueList,
    RedactedText,
    RedactText,
    ToolCall,
    ToolResult,
    ToolSpecList,
    TrackerProfile,
)
from symphonyd.core.issue import Issue, build_issue, state_key
from symphonyd.runtime.ipc_server import IpcServer
from symphonyd.runtime.peer import Peer
from tests.dashboard.harness import DashboardProcess, short_dir
from tests.dispatcher.doubles import run_async

UID = os.getuid()
DAY = 86400
REPO = Path(__file__).resolve().parents[2]

WORKFLOW = """---
tracker:
  kind: memory
  active_states: [Todo]
  terminal_states: [Done]
polling:
  interval_ms: 200
agent:
  max_concurrent_agents: 5
codex:
  command: sleep 600
  read_timeout_ms: 600000
workspace:
  root: {ws}
  cleanup:
    max_age_days: {days}
hooks:
  before_remove: echo "$ISSUE_IDENTIFIER" >> {hook_log}
---
Work on {{{{ issue.identifier }}}}.
"""


def issue(identifier: str, state: str) -> Issue:
    return build_issue(
        id=f"id-{identifier}", identifier=identifier, title="t", state=state, dispatchable=True
    )


@dataclass
class Tracker:
    """The tracker as both daemons see it; ``hidden`` ids are missing from by-id answers."""

    issues: dict[str, Issue] = field(default_factory=dict)
    hidden: set[str] = field(default_factory=set)

    def put(self, *issues: Issue) -> None:
        for i in issues:
            self.issues[i.id] = i

    def move(self, identifier: str, state: str) -> None:
        self.put(replace(self.issues[f"id-{identifier}"], state=state))

    async def by_states(self, p: FetchByStates, _: Peer) -> IssueList:
        keys = {state_key(s) for s in p.states}
        return IssueList([i for i in self.issues.values() if state_key(i.state) in keys])

    async def by_ids(self, p: FetchByIds, _: Peer) -> IssueList:
        return IssueList(
            [self.issues[i] for i in p.ids if i in self.issues and i not in self.hidden]
        )

    async def specs(self, _: Empty, __: Peer) -> ToolSpecList:
        return ToolSpecList([])

    async def call(self, _: ToolCall, __: Peer) -> ToolResult:
        return ToolResult(False, {"error": "no tools here"})

    async def profile(self, _: Empty, __: Peer) -> TrackerProfile:
        # What the launcher asks before each run: the declared secret names (none here).
        return TrackerProfile("memory", ["Todo"], ["Done"], [], "fp-1")

    async def redact(self, req: RedactText, __: Peer) -> RedactedText:
        return RedactedText(req.text)


@contextlib.asynccontextmanager
async def tracker_sockets(run: Path, tracker: Tracker) -> AsyncIterator[None]:
    servers = []
    for name in ("dispatcher", "launcher"):
        server = IpcServer(f"tracker-{name}", allowed_uids={UID}, allow_root=UID == 0)
        server.handle(TRACKER_FETCH_BY_IDS, tracker.by_ids)
        if name == "dispatcher":
            server.handle(TRACKER_FETCH_BY_STATES, tracker.by_states)
        else:
            server.handle(TRACKER_TOOL_SPECS, tracker.specs)
            server.handle(TRACKER_TOOL_CALL, tracker.call)
            server.handle(TRACKER_PROFILE, tracker.profile)
            server.handle(TRACKER_REDACT, tracker.redact)
        await server.start_path(run / f"tracker-{name}.sock")
        servers.append(server)
    try:
        yield
    finally:
        for server in servers:
            await server.close()


class Daemons:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.base / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", f"symphonyd.{name}", *args],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        log.close()
        self.procs.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        return (self.base / f"{name}.log").read_text(errors="replace")

    def stop(self, only: str | None = None) -> dict[str, int]:
        """SIGTERM in reverse start order (or just ``only``); the exit status of each."""
        codes: dict[str, int] = {}
        for name, proc in reversed(self.procs):
            if only is not None and name != only:
                continue
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                codes[name] = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        self.procs = [(n, p) for n, p in self.procs if n not in codes]
        return codes


async def wait_socket(path: Path, daemons: Daemons) -> None:
    async with asyncio.timeout(30):
        while not path.exists():
            for name, proc in daemons.procs:
                assert proc.poll() is None, f"{name} exited: {daemons.log(name)}"
            await asyncio.sleep(0.05)


def ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "symphonyd.ctl", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


async def status(sock: Path) -> dict[str, Any]:
    done = await asyncio.to_thread(ctl, "status", "--socket", str(sock), "--json")
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


async def wait_status(sock: Path, pred: Any, what: str) -> dict[str, Any]:
    """Poll ``status --json`` until ``pred(snapshot)``; the bound only prevents a hang."""
    snap: dict[str, Any] = {}
    for _ in range(300):
        snap = await status(sock)
        if pred(snap):
            return snap
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last status {snap}")


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def dashboard_page(dispatcher_sock: Path, log: Path) -> str:
    """The overview page of the real dashboard process once it shows the survey."""
    with DashboardProcess(dispatcher_sock, None, log) as dash:
        page = ""
        for _ in range(100):
            page = httpx.get(dash.base + "/", timeout=10).text
            if 'id="workspaces"' in page:
                break
            time.sleep(0.1)
        return page


def orphan_names(snap: dict[str, Any]) -> dict[str, str]:
    return {o["name"]: o["reason"] for o in snap["workspaces"]["orphans"]}


@run_async
async def test_age_cleanup_and_orphan_report_through_the_daemons() -> None:
    with short_dir() as base:
        await scenario(base)


async def scenario(base: Path) -> None:
    run, ws, audit_dir = base / "run", base / "ws", base / "audit"
    for d in (run, ws, base / "agent"):
        d.mkdir()
    # Where this host has the symphony-agent user, a root launcher runs hooks as it: the
    # hook's log must be writable by whoever runs them.
    base.chmod(0o711)
    (base / "hooklog").mkdir(mode=0o1777)
    (base / "hooklog").chmod(0o1777)
    hook_log, workflow = base / "hooklog" / "removed.log", base / "WORKFLOW.md"
    host = base / "host.toml"
    host.write_text(
        f'[paths]\nstate_dir = "{base}"\nruntime_dir = "{run}"\nworkspace_root = "{ws}"\n'
        "[sandbox]\nenabled = false\n"  # the sandbox has its own tests; this is about cleanup
    )
    fmt = {"ws": ws, "hook_log": hook_log}
    workflow.write_text(WORKFLOW.format(days=0, **fmt))
    # Entries under the root that no listed issue owns, or that are no workspace at all.
    for name in ("ORPHAN-5", "DONE-3", "YOUNG-4", "GONE-6", "bad name"):
        (ws / name).mkdir()
        age(ws / name, 30 * DAY)
    # Already Done when the dispatcher starts: SPEC 8.6 startup cleanup removes it, through
    # a launcher that has not started any run yet.
    (ws / "DONE-0").mkdir()
    tracker = Tracker()
    tracker.put(issue("RUN-1", "Todo"), issue("HOLD-2", "Todo"), issue("DONE-0", "Done"))

    daemons = Daemons(base)
    ctl_sock = run / "ctl.sock"
    async with tracker_sockets(run, tracker):
        try:
            daemons.spawn(
                "audit", "--dir", str(audit_dir), "--allow-uid", str(UID),
                "--listen", f"launcher={run / 'audit-launcher.sock'}",
                "--listen", f"dispatcher={run / 'audit-dispatcher.sock'}",
            )  # fmt: skip
            await wait_socket(run / "audit-dispatcher.sock", daemons)
            launcher_args = (
                "--host-config", str(host), "--agent-home", str(base / "agent"),
                "--socket", str(run / "launcher-dispatcher.sock"), "--dispatcher-uid", str(UID),
            )  # fmt: skip
            daemons.spawn("launcher", *launcher_args)
            await wait_socket(run / "launcher-dispatcher.sock", daemons)
            daemons.spawn(
                "dispatcher", "--host-config", str(host), "--workflow", str(workflow),
                "--ctl-socket", str(ctl_sock),
            )  # fmt: skip
            await wait_socket(ctl_sock, daemons)

            # At launcher start: orphans in symphonyctl status and in the journal.
            snap = await wait_status(
                ctl_sock,
                lambda s: s["workspaces"]["surveyed_at"] and s["counts"]["running"] == 2,
                "first survey and two runs",
            )
            assert not (ws / "DONE-0").exists()
            orphans = orphan_names(snap)
            assert orphans["ORPHAN-5"] == "no issue in the workflow's active or terminal states"
            assert orphans["bad name"] == "not a valid workspace key"
            assert "RUN-1" not in orphans and "HOLD-2" not in orphans
            assert snap["workspaces"]["max_age_days"] is None  # 0: age cleanup off
            text = await asyncio.to_thread(ctl, "status", "--socket", str(ctl_sock))
            assert "orphans (" in text.stdout and "ORPHAN-5" in text.stdout, text.stdout
            journal = daemons.log("dispatcher")
            assert "event=workspace_orphans" in journal and "ORPHAN-5" in journal, journal
            # ... and on the dashboard, which reads the dispatcher's control socket.
            page = await asyncio.to_thread(dashboard_page, ctl_sock, base / "dash.log")
            assert "Orphan workspaces" in page and "ORPHAN-5" in page and "bad name" in page

            # HOLD-2 is stopped by the operator (held), then closed in the tracker; the
            # other issues turn up Done. GONE-6 is listed Done but the fresh look by id no
            # longer finds it: a doubt.
            stopped = await asyncio.to_thread(ctl, "stop", "HOLD-2", "--socket", str(ctl_sock))
            assert stopped.returncode == 0, stopped.stderr
            await wait_status(ctl_sock, lambda s: s["counts"]["held"] == 1, "HOLD-2 held")
            tracker.move("HOLD-2", "Done")
            tracker.put(issue("DONE-3", "Done"), issue("YOUNG-4", "Done"))
            tracker.put(issue("GONE-6", "Done"))
            tracker.hidden.add("id-GONE-6")
            for name in ("RUN-1", "HOLD-2"):
                age(ws / name, 30 * DAY)
            age(ws / "YOUNG-4", 2 * DAY)

            # Turning the rule on is a WORKFLOW.md edit; the change triggers a sweep.
            workflow.write_text(WORKFLOW.format(days=7, **fmt))
            snap = await wait_status(
                ctl_sock, lambda s: s["workspaces"]["removed"] >= 1, "age cleanup"
            )
            await asyncio.sleep(1.0)  # the rest of that pass
            snap = await status(ctl_sock)
            assert snap["workspaces"]["removed"] == 1 and snap["workspaces"]["max_age_days"] == 7
            assert snap["counts"]["running"] == 1  # RUN-1 still runs
            survivors = {p.name for p in ws.iterdir()}
            assert survivors == {"RUN-1", "HOLD-2", "YOUNG-4", "GONE-6", "ORPHAN-5", "bad name"}
            assert orphan_names(snap).keys() >= {"ORPHAN-5", "bad name"}

            # Every launcher start is followed by a survey (no hourly wait).
            (ws / "LATE-7").mkdir()
            assert daemons.stop("launcher") == {"launcher": 0}, daemons.log("launcher")
            daemons.spawn("launcher", *launcher_args)
            await wait_status(
                ctl_sock, lambda s: "LATE-7" in orphan_names(s), "survey after a launcher restart"
            )
        finally:
            codes = daemons.stop()
    assert codes["dispatcher"] == 0, daemons.log("dispatcher")
    assert codes["launcher"] == 0, daemons.log("launcher")

    # before_remove ran for each removal, with the issue's identifier.
    assert hook_log.read_text().split() == ["DONE-0", "DONE-3"]
    shown = ctl("audit", "show", "--dir", str(audit_dir), "--type", "workspace_remove", "--json")
    assert shown.returncode == 0, shown.stderr
    records = [json.loads(line) for line in shown.stdout.splitlines() if line.strip()]
    steps = [(r["issue_identifier"], r["payload"]["outcome"]) for r in records]
    assert steps == [("DONE-3", "requested"), ("DONE-3", "removed")]
    assert records[0]["payload"]["reason"] == "age" and records[0]["issue_id"] == "id-DONE-3"
