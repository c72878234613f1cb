"""The outside world of bench/remote_dispatch.py: a test-owned sshd and the stand-ins.

- :func:`start_sshd`: real OpenSSH servers on loopback, the bridge
  (``python -m symphonyd.link.bridge``) as the forced command. With one port it is the
  production shape (``restrict,command=...`` in authorized_keys, as tests/link/conftest.py
  does); with many ports one sshd plays up to 16 worker hosts: a ``Match LocalPort`` block
  per port forces the bridge with that host's own runtime directory (sshd's
  ``ForceCommand``, because a key's ``command=`` cannot depend on the port).
- :class:`WorkerLauncher`: a worker's launcher as the link reaches it, for the scale run:
  accepts every run and reports the agent started, keeps it live until told to finish it
  (a zero-work result), pages ``list_runs`` as the real launcher does.
- :func:`serve_world`: the scale run's stand-in process: the control host's tracker and
  audit writer (the dispatcher's clients) and every worker's launcher and audit-link sockets,
  driven by one-word commands on stdin.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from symphonyd.core.api.audit import (  # noqa: E402
    AUDIT_APPEND,
    AUDIT_HEAD,
    AUDIT_RECORDS_AFTER,
    AuditAck,
    AuditAppend,
    AuditHead,
    AuditPage,
    AuditPageAfter,
)
from symphonyd.core.api.launcher import (  # noqa: E402
    LAUNCHER_ACK_RUNS,
    LAUNCHER_LIST_RUNS,
    LAUNCHER_RUN_EVENT,
    LAUNCHER_START_RUN,
    LAUNCHER_STOP_RUN,
    LAUNCHER_SUBSCRIBE,
    AckRuns,
    ListRuns,
    RunEvent,
    RunInfo,
    RunList,
    RunOutcome,
    StartRun,
    StartRunResult,
    StopRun,
    StopRunResult,
)
from symphonyd.core.api.shared import Empty  # noqa: E402
from symphonyd.core.api.tracker import (  # noqa: E402
    TRACKER_FETCH_BY_IDS,
    TRACKER_FETCH_BY_STATES,
    TRACKER_MAX_FRAME,
    FetchByIds,
    FetchByStates,
    IssueList,
)
from symphonyd.core.issue import Issue  # noqa: E402
from symphonyd.runtime.ipc_events import EventSink  # noqa: E402
from symphonyd.runtime.ipc_server import IpcServer, ServerLimits  # noqa: E402
from symphonyd.runtime.peer import Peer  # noqa: E402

SSHD = "/usr/sbin/sshd"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True
    )
    return path.with_suffix(".pub").read_text().strip()


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def bridge_command(runtime: Path) -> str:
    bridge = f"{sys.executable} -m symphonyd.link.bridge"
    return f"env PYTHONPATH={REPO} {bridge} --runtime-dir {runtime}"


MAX_PORTS = 16  # sshd's MAX_LISTEN_SOCKS: one sshd listens on at most 16 sockets


def start_sshd(
    base: Path, client_pub: str, routes: dict[int, Path]
) -> tuple[list[subprocess.Popen[bytes]], Path]:
    """sshd on 127.0.0.1 at each port of ``routes`` (port -> the worker's runtime dir), as
    many sshd processes as 16 ports a process need, all with one host key; returns them and
    the known_hosts file pinning that key on every port."""
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    host_pub = keygen(base / "host_key")
    known = base / "known_hosts"
    known.write_text("".join(f"[127.0.0.1]:{p} {host_pub}\n" for p in routes))
    ports = list(routes)
    procs = []
    try:
        for j in range(0, len(ports), MAX_PORTS):
            chunk = {p: routes[p] for p in ports[j : j + MAX_PORTS]}
            directory = base / f"sshd{j // MAX_PORTS}"
            directory.mkdir()
            procs.append(_one_sshd(directory, base / "host_key", client_pub, chunk))
    except BaseException:
        for proc in procs:
            proc.terminate()
        raise
    return procs, known


def _one_sshd(
    base: Path, host_key: Path, client_pub: str, routes: dict[int, Path]
) -> subprocess.Popen[bytes]:
    lines = [f"Port {p}" for p in routes] + [
        "ListenAddress 127.0.0.1",
        f"HostKey {host_key}",
        f"PidFile {base / 'sshd.pid'}",
        f"AuthorizedKeysFile {base / 'authorized_keys'}",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "PrintMotd no",
        "ClientAliveInterval 5",
        "ClientAliveCountMax 3",
        "MaxStartups 2000",  # the link opens every session at once
        "LogLevel ERROR",
        # As a worker's sshd drop-in: the one remote Unix-socket forward (the tracker path).
        "AllowTcpForwarding remote",
        "PermitListen none",
        "AllowStreamLocalForwarding remote",
        "StreamLocalBindUnlink yes",
    ]
    if len(routes) == 1:
        [runtime] = routes.values()
        keys = f'restrict,port-forwarding,command="{bridge_command(runtime)}" {client_pub}\n'
        lines.append("PermitRootLogin forced-commands-only")
    else:
        keys = f"restrict,port-forwarding {client_pub}\n"
        lines.append("PermitRootLogin prohibit-password")
        for port, runtime in routes.items():
            lines += [f"Match LocalPort {port}", f"  ForceCommand {bridge_command(runtime)}"]
    (base / "authorized_keys").write_text(keys)
    (base / "sshd_config").write_text("\n".join(lines) + "\n")
    log = (base / "sshd.log").open("wb")
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(base / "sshd_config")], stdout=log, stderr=log
    )
    deadline = time.monotonic() + 30
    waiting = set(routes)
    while waiting:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {(base / 'sshd.log').read_text()[-2000:]}")
        for port in list(waiting):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    waiting.discard(port)
        if time.monotonic() > deadline:
            raise RuntimeError("sshd did not listen")
        time.sleep(0.05)
    return proc


def make_issue(k: int) -> Issue:
    return Issue(
        id=f"i{k}",
        identifier=f"R-{k}",
        title="t",
        state="Todo",
        dispatchable=True,
        priority=k % 4 + 1,
        created_at=T0 + timedelta(seconds=k),
    )


def server(name: str, limits: ServerLimits | None = None) -> IpcServer:
    return IpcServer(name, allowed_uids={os.getuid()}, allow_root=True, limits=limits)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class ControlStandIns:
    """The control host's tracker and audit writer as the dispatcher reaches them."""

    def __init__(self) -> None:
        self.issues: dict[str, Issue] = {}
        self.open = True  # False: fetch_by_states lists nothing yet
        self.audit_records = 0

    def put(self, *issues: Issue) -> None:
        for i in issues:
            self.issues[i.id] = i

    async def start(self, runtime: Path) -> list[IpcServer]:
        # As the tracker daemon: a board of thousands of issues is one large reply.
        tracker = server("tracker", ServerLimits(max_reply=TRACKER_MAX_FRAME))
        audit = server("audit")

        async def by_states(p: FetchByStates, _: Peer) -> IssueList:
            return IssueList(list(self.issues.values()) if self.open else [])

        async def by_ids(p: FetchByIds, _: Peer) -> IssueList:
            return IssueList([self.issues[i] for i in p.ids if i in self.issues])

        async def append(p: AuditAppend, _: Peer) -> AuditAck:
            first = self.audit_records + 1
            self.audit_records += len(p.records)
            return AuditAck(list(range(first, self.audit_records + 1)), "0" * 64)

        async def head(_: Empty, __: Peer) -> AuditHead:
            return AuditHead(self.audit_records, "0" * 64)

        tracker.handle(TRACKER_FETCH_BY_STATES, by_states)
        tracker.handle(TRACKER_FETCH_BY_IDS, by_ids)
        audit.handle(AUDIT_APPEND, append)
        audit.handle(AUDIT_HEAD, head)
        await tracker.start_path(runtime / "tracker-dispatcher.sock")
        await audit.start_path(runtime / "audit-dispatcher.sock")
        return [tracker, audit]


async def serve_empty_audit_link(runtime: Path) -> IpcServer:
    """A worker writer's ``audit-link.sock`` with an empty chain: the link's replicator holds
    its session and polls it, as it does a caught-up worker."""
    audit = server("audit-link")

    async def after(_: AuditPageAfter, __: Peer) -> AuditPage:
        return AuditPage([], -1)

    audit.handle(AUDIT_RECORDS_AFTER, after)
    await audit.start_path(runtime / "audit-link.sock")
    return audit


class WorkerLauncher:
    """One worker's launcher for the scale run (the launcher protocol, no agents)."""

    def __init__(self) -> None:
        self.runs: dict[int, RunInfo] = {}  # cursor -> run, in start order
        self.cursor: dict[str, int] = {}
        self.live: set[str] = set()
        self.sinks: set[EventSink] = set()
        self.next = 0
        self.started = 0
        self.first_start: float | None = None
        self.last_start: float | None = None

    def emit(self, ev: RunEvent) -> None:
        for sink in list(self.sinks):
            if not sink.send(LAUNCHER_RUN_EVENT, ev):
                self.sinks.discard(sink)

    def finish(self, run_id: str, outcome: RunOutcome) -> None:
        if run_id not in self.live:
            return
        self.live.discard(run_id)
        k = self.cursor[run_id]
        run = self.runs[k]
        self.runs[k] = RunInfo(run.run_id, run.issue_id, run.issue_identifier, run.attempt,
                               run.started_at, outcome=outcome)  # fmt: skip
        self.emit(RunEvent(run_id, run.issue_id, "run_finished", now_iso(), outcome=outcome))

    async def start(self, runtime: Path) -> IpcServer:
        srv = server("launcher-link")

        async def start_run(p: StartRun, _: Peer) -> StartRunResult:
            self.next += 1
            self.cursor[p.run_id] = self.next
            self.runs[self.next] = RunInfo(p.run_id, p.issue.id, p.issue.identifier, p.attempt,
                                           now_iso())  # fmt: skip
            self.live.add(p.run_id)
            self.started += 1
            self.last_start = time.monotonic()
            self.first_start = self.first_start or self.last_start
            self.emit(RunEvent(p.run_id, p.issue.id, "session_started", now_iso(),
                               session_id=f"s-{p.run_id}"))  # fmt: skip
            return StartRunResult(p.run_id, True)

        async def stop_run(p: StopRun, _: Peer) -> StopRunResult:
            found = p.run_id in self.live
            self.finish(p.run_id, RunOutcome("cancelled", error_code=p.reason))
            return StopRunResult(found)

        async def list_runs(p: ListRuns, _: Peer) -> RunList:
            after = [(k, r) for k, r in self.runs.items() if k > p.after]
            page = after[: p.limit]
            more = len(after) > len(page)
            return RunList([r for _, r in page], page[-1][0] if more else None)

        async def ack(p: AckRuns, _: Peer) -> Empty:
            for run_id in p.run_ids:
                k = self.cursor.get(run_id)
                if k is not None and run_id not in self.live:
                    del self.runs[k], self.cursor[run_id]
            return Empty()

        async def subscribe(_: Empty, __: Peer, sink: EventSink) -> Empty:
            self.sinks.add(sink)
            return Empty()

        srv.handle(LAUNCHER_START_RUN, start_run)
        srv.handle(LAUNCHER_STOP_RUN, stop_run)
        srv.handle(LAUNCHER_LIST_RUNS, list_runs)
        srv.handle(LAUNCHER_ACK_RUNS, ack)
        srv.subscription(LAUNCHER_SUBSCRIBE, subscribe)
        await srv.start_path(runtime / "launcher-link.sock")
        return srv


async def serve_world(base: Path, hosts: int, issues: int) -> None:
    """The scale run's stand-ins; commands on stdin, one JSON answer line each:
    ``open`` (the tracker lists the issues), ``count``, ``finish`` (every live run reports a
    zero-work result), ``quit``."""
    control = ControlStandIns()
    control.open = False
    control.put(*(make_issue(k) for k in range(issues)))
    servers = await control.start(base / "ctl")
    workers: list[WorkerLauncher] = []
    for i in range(hosts):
        runtime = base / "w" / f"h{i}"
        runtime.mkdir(parents=True)
        w = WorkerLauncher()
        servers += [await w.start(runtime), await serve_empty_audit_link(runtime)]
        workers.append(w)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        answer: dict[str, Any] = {}
        if line == "open":
            control.open = True
        elif line == "finish":
            for w in workers:
                for run_id in list(w.live):
                    w.finish(run_id, RunOutcome("succeeded"))
        elif line in ("quit", ""):
            break
        starts = [w.first_start for w in workers if w.first_start is not None]
        ends = [w.last_start for w in workers if w.last_start is not None]
        answer.update(
            live=sum(len(w.live) for w in workers),
            started=sum(w.started for w in workers),
            subscribed=sum(1 for w in workers if w.sinks),
            hosts_with_runs=sum(1 for w in workers if w.live),
            max_live_per_host=max((len(w.live) for w in workers), default=0),
            first_start=min(starts, default=None),
            last_start=max(ends, default=None),
            audit_records=control.audit_records,
        )
        print(json.dumps(answer), flush=True)
    for srv in servers:
        await srv.close()
