"""Worker hosts (docs/design/1100): dispatch over the link vs locally, and the link at scale.

``latency`` (default ``--runs 20``): one worker host on this machine, every part real: the
dispatcher's composition (``assemble`` + ``loops``, in this process, with the host
config's ``[worker]``), the link daemon (``python -m symphonyd.link``), the ``ssh`` client, a
test-owned ``sshd`` whose key runs the bridge as its forced command, and the launcher daemon
(sandbox off) with its audit writer; the agent is ``bench/data/idle_app_server.sh``
(handshake, then idle until stopped). Only the control host's tracker and audit writer are
stand-ins. The same launcher process also serves the dispatcher's local socket, so the
local figures differ from the remote ones by the link alone. Runs go one at a time: the
issue appears, a tick dispatches it, the bench waits for the agent's first event at the
dispatcher, then stops the run. Per run:

- ``start_run``: the dispatcher's ``launcher.start_run`` round trip (sent after the
  dispatch audit record, until the launcher accepted);
- ``agent``: from that request being sent to the agent's first event (``session_started``)
  arriving at the dispatcher: "dispatch to agent running";
- CPU of the link daemon with its ``ssh`` clients, and of ``sshd`` with its sessions and
  bridges, per run, less the same processes' idle rate (keepalives, audit replication).

Also a new link session (connect, ``health``; ssh handshake and bridge start) vs a new
local connection.

``scale`` (default ``--hosts 10 100 --runs 5000``): one ``sshd`` on one port per worker
(``Match LocalPort`` forces the bridge with that worker's runtime directory), the real
link daemon, the real dispatcher as its own process (``python -m symphonyd.dispatcher``'s
``main``, with its ``Scheduler.tick`` and ``fire_due_retries`` timed), and one stand-in
process (``bench/remote_standins.py``) for the tracker, the audit writer and every worker's
launcher (accepts runs, reports the agent started, holds them until told to finish them
with a zero-work result) and empty audit-link socket. Phases: connect (every worker's event
stream up), fill (the tracker lists ``--runs`` issues; until every run is live on a worker),
hold (``--hold`` seconds with every run live: tick time, idle CPU), cycle (every run
reports a zero-work result; until the continuation retries have started them all again).
CPU is per phase and process tree: the dispatcher, the link daemon with its ``ssh``
clients, ``sshd`` with its sessions and bridges (the worker side). Peak RSS is sampled.

``core``: the scheduler alone, no IPC: the real orchestrator over in-process stand-ins with
1 to 1 000 connected hosts; CPU per run of the tick that starts ``--runs`` runs, of their
exits and of the retry round that starts them again (a per-run cost that grows with hosts
shows here first).

Root is needed for ``latency`` and ``scale`` (sshd, root login with the forced command), as
for tests/link.

    .venv/bin/python bench/remote_dispatch.py latency [--runs 20]
    .venv/bin/python bench/remote_dispatch.py scale [--hosts 10 100] [--runs 5000] [--hold 30]
    .venv/bin/python bench/remote_dispatch.py core [--hosts 1 10 100 1000] [--runs 5000]

Last line: RESULT {json}.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.remote_standins import (  # noqa: E402
    ControlStandIns,
    free_ports,
    keygen,
    make_issue,
    serve_empty_audit_link,
    serve_world,
    start_sshd,
)
from symphonyd.core.api.launcher import RunEvent, RunOutcome, StartRun, StartRunResult  # noqa: E402
from symphonyd.core.api.shared import HEALTH, Empty  # noqa: E402
from symphonyd.core.worker_hosts import LOCAL_HOST, WorkerHost, WorkerHosts  # noqa: E402
from symphonyd.runtime.ipc_client import IpcClient  # noqa: E402

IDLE_AGENT = REPO / "bench" / "data" / "idle_app_server.sh"
WORKFLOW = """---
tracker:
  kind: memory
  active_states: [Todo]
  terminal_states: [Done]
polling:
  interval_ms: {interval}
agent:
  max_concurrent_agents: {limit}
workspace:
  root: {root}
codex:
  command: exec {agent}
  stall_timeout_ms: 0
---
Work on {{{{ issue.identifier }}}}.
"""


# ---------------------------------------------------------------- processes and figures


def spawn_logged(log: Path, *argv: str) -> subprocess.Popen[bytes]:
    """A daemon with its journal lines in a file (a pipe nobody reads would fill up)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("wb") as fh:
        return subprocess.Popen([sys.executable, *argv], stdout=fh, stderr=fh, env=env)


def terminate(proc: subprocess.Popen[Any], timeout: float = 60) -> int | None:
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its live descendants and everything they reaped."""
    total = 0.0
    for p in tree(pid):
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def tree_rss_mib(pid: int, *, own: bool = False) -> float:
    procs = tree(pid)[:1] if own else tree(pid)
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def tree_pss_mib(pids: list[int]) -> float:
    """Proportional set size of process trees: shared pages (the interpreter, libcrypto)
    counted once overall, unlike summed RSS."""
    total = 0
    for pid in pids:
        for p in tree(pid):
            try:
                total += p.memory_full_info().pss
            except psutil.NoSuchProcess:
                continue
    return total / 2**20


def wait_for(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


async def until_true(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(60):  # only against a hang
        while not check():  # noqa: ASYNC110 - polling state another task changes
            await asyncio.sleep(0.002)


def ms(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    return {
        "median_ms": round(statistics.median(v) * 1000, 2),
        "p99_ms": round(v[min(len(v) - 1, math.ceil(len(v) * 0.99) - 1)] * 1000, 2),
        "max_ms": round(v[-1] * 1000, 2),
        "n": len(v),
    }


def link_config(path: Path, runtime: Path, state: Path, known: Path, ports: list[int],
                per_host: int) -> None:  # fmt: skip
    hosts = "".join(
        f'[[worker.hosts]]\nname = "h{i}"\naddress = "127.0.0.1"\nport = {p}\n'
        for i, p in enumerate(ports)
    )
    path.write_text(
        f'log_level = "info"\n[paths]\nruntime_dir = "{runtime}"\nstate_dir = "{state}"\n'
        f'[worker]\nssh_user = "root"\nknown_hosts = "{known}"\n'
        f"max_concurrent_agents_per_host = {per_host}\n{hosts}"
    )


# ---------------------------------------------------------------- latency


async def _timed_runs(
    base: Path,
    control: ControlStandIns,
    worker: WorkerHosts | None,
    first: int,
    runs: int,
    meter: Callable[[], float] = lambda: 0.0,
) -> dict[str, Any]:
    """``runs`` issues one after another through the dispatcher's composition; ``meter``
    (CPU seconds of some processes) is read once the host is connected and after the runs."""
    from symphonyd.dispatcher.config_source import WorkflowConfigSource
    from symphonyd.dispatcher.daemon import assemble, loops

    ctl = base / "ctl"
    name = "h0" if worker else LOCAL_HOST
    orch, service = assemble(
        ctl, base / f"state-{name}", WorkflowConfigSource(ctl / "WORKFLOW.md", env={}), worker
    )
    sent: dict[str, float] = {}
    replied: dict[str, float] = {}
    agent: dict[str, float] = {}
    finished: set[str] = set()
    client = orch.engine.hosts.launcher(name)
    start_run = client.start_run
    handle = orch.handle_run_event

    async def timed_start(req: StartRun) -> StartRunResult:
        sent[req.run_id] = time.perf_counter()
        res = await start_run(req)
        replied[req.run_id] = time.perf_counter()
        return res

    async def on_event(ev: RunEvent, host: str = LOCAL_HOST) -> None:
        if ev.event == "run_finished":
            finished.add(ev.run_id)
        else:
            agent.setdefault(ev.run_id, time.perf_counter())
        await handle(ev, host)

    # Timing hooks around the real client and handler (loops() binds them after this).
    setattr(client, "start_run", timed_start)  # noqa: B010
    setattr(orch, "handle_run_event", on_event)  # noqa: B010
    await orch.start()
    tasks = [asyncio.create_task(c) for c in loops(service, ctl).values()]
    rows: list[tuple[float, float]] = []
    try:
        host = orch.engine.hosts.hosts[name]
        await until_true(lambda: host.connected)
        await asyncio.sleep(0.5)
        cpu0, t0 = meter(), time.monotonic()
        for k in range(first, first + runs):
            issue = make_issue(k)
            control.put(issue)
            service.request_refresh()
            run_id = ""
            async with asyncio.timeout(60):
                while not run_id or run_id not in agent:
                    await asyncio.sleep(0.001)
                    entry = orch.running.get(issue.id)
                    run_id = entry.run_id if entry else run_id
            rows.append((replied[run_id] - sent[run_id], agent[run_id] - sent[run_id]))
            await orch.stop(issue.identifier, None)
            await until_true(functools.partial(finished.__contains__, run_id))
            control.issues.pop(issue.id)  # done: the next dispatcher never sees it
            await asyncio.sleep(0.05)
        cpu, seconds = meter() - cpu0, time.monotonic() - t0
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "start_run": ms([r[0] for r in rows]),
        "agent": ms([r[1] for r in rows]),
        "cpu_s": cpu,
        "seconds": seconds,
    }


async def _new_sessions(path: Path, n: int) -> dict[str, float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        async with await IpcClient.connect(path) as client:
            await client.call(HEALTH, Empty(), timeout=30)
        times.append(time.perf_counter() - t)
    return ms(times)


async def latency(runs: int) -> dict[str, Any]:
    from tests.launcher.test_daemon_sockets import launcher_layout, tracker_double

    base = Path(tempfile.mkdtemp(prefix="syrd", dir="/tmp"))  # AF_UNIX paths stay short
    ctl, wk = base / "ctl", base / "worker"
    ctl.mkdir()
    wk.mkdir()
    run_dir, audit_dir, ws_root, agent_home, host_config = launcher_layout(wk)
    (ctl / "WORKFLOW.md").write_text(
        WORKFLOW.format(interval=600_000, limit=4, root=ws_root, agent=IDLE_AGENT)
    )
    [port] = free_ports(1)
    [sshd], known = start_sshd(base, keygen(base / "control_key"), {port: run_dir})
    procs = {"sshd": sshd}
    control = ControlStandIns()
    servers = await control.start(ctl)
    servers.append(await serve_empty_audit_link(run_dir))
    issues = [make_issue(k) for k in range(2 * runs + 10)]
    try:
        async with tracker_double(run_dir / "tracker-launcher.sock", *issues):
            procs["audit"] = spawn_logged(
                base / "audit.log", "-m", "symphonyd.audit", "--dir", str(audit_dir),
                "--listen", f"launcher={run_dir / 'audit-launcher.sock'}", "--allow-uid", "0",
            )  # fmt: skip
            procs["launcher"] = spawn_logged(
                base / "launcher.log", "-m", "symphonyd.launcher", "--host-config",
                str(host_config), "--socket", str(ctl / "launcher-dispatcher.sock"),
                "--link-socket", str(run_dir / "launcher-link.sock"), "--link-uid", "0",
                "--agent-home", str(agent_home), "--dispatcher-uid", "0",
            )  # fmt: skip
            link_config(base / "link.toml", ctl, base / "state", known, [port], per_host=1)
            procs["link"] = spawn_logged(
                base / "link.log", "-m", "symphonyd.link", "--host-config",
                str(base / "link.toml"), "--hosts-dir", str(ctl / "hosts"), "--key",
                str(base / "control_key"), "--dispatcher-uid", "0",
                "--worker-tracker-socket", str(run_dir / "link" / "tracker.sock"),
            )  # fmt: skip
            for path in (run_dir / "launcher-link.sock", ctl / "hosts" / "h0.sock"):
                await until_true(path.exists)
            worker = WorkerHosts(hosts=(WorkerHost("h0", "127.0.0.1", port),),
                                 max_concurrent_agents_per_host=1)  # fmt: skip
            await asyncio.sleep(1)
            local = await _timed_runs(base, control, None, 0, runs)

            def link_side() -> float:
                return tree_cpu(procs["link"].pid) + tree_cpu(sshd.pid)

            idle0, t0 = link_side(), time.monotonic()
            await asyncio.sleep(5)
            idle_rate = (link_side() - idle0) / (time.monotonic() - t0)
            remote = await _timed_runs(base, control, worker, runs, runs, link_side)
            spent = remote.pop("cpu_s") - idle_rate * remote.pop("seconds")
            local.pop("cpu_s"), local.pop("seconds")
            sessions = {
                "remote": await _new_sessions(ctl / "hosts" / "h0.sock", 5),
                "local": await _new_sessions(ctl / "launcher-dispatcher.sock", 5),
            }
    finally:
        for proc in reversed(list(procs.values())):
            terminate(proc)
        for srv in servers:
            await srv.close()
    shutil.rmtree(base, ignore_errors=True)
    return {
        "runs": runs,
        "local": local,
        "remote": remote,
        "link_cpu_ms_per_run": round(spent * 1000 / runs, 2),
        "link_idle_cpu_ms_per_s": round(idle_rate * 1000, 2),
        "new_session": sessions,
    }


# ---------------------------------------------------------------- scale


class World:
    """The stand-in process (bench/remote_standins.py serve_world) and its commands."""

    def __init__(self, base: Path, hosts: int, runs: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-world", str(base), "--hosts", str(hosts),
             "--runs", str(runs)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        if self.stdout.readline().strip() != "ready":
            raise RuntimeError("the stand-in process did not start")

    def say(self, command: str) -> dict[str, Any]:
        self.stdin.write(command + "\n")
        self.stdin.flush()
        answer: dict[str, Any] = json.loads(self.stdout.readline())
        return answer

    def close(self) -> None:
        try:
            self.stdin.write("quit\n")
            self.stdin.flush()
        except OSError:
            pass  # already gone
        terminate(self.proc)


class Peaks(threading.Thread):
    """Samples peak RSS every 0.5 s."""

    def __init__(self, pids: dict[str, tuple[list[int], bool]]) -> None:
        super().__init__(daemon=True)
        self.pids = pids  # name -> (pid, own process only)
        self.peak = dict.fromkeys(pids, 0.0)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            for name, (pids, own) in self.pids.items():
                rss = sum(tree_rss_mib(pid, own=own) for pid in pids)
                self.peak[name] = max(self.peak[name], rss)


def read_ticks(
    path: Path, kind: str, start: float, end: float, *, cpu: bool = False
) -> list[float]:
    """Durations (``cpu``: the event loop thread's CPU meanwhile, which includes whatever
    else ran between the tick's awaits) of the ticks that started in [start, end]."""
    out = []
    for line in path.read_text().splitlines():
        what, at, took, used = line.split()
        if what == kind and start <= float(at) <= end:
            out.append(float(used if cpu else took))
    return out


def scale_one(hosts: int, runs: int, hold: float) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="syrs", dir="/tmp"))
    ctl = base / "ctl"
    ctl.mkdir()
    world = World(base, hosts, runs)
    procs: dict[str, subprocess.Popen[Any]] = {}
    peaks: Peaks | None = None
    try:
        ports = free_ports(hosts)
        routes = {p: base / "w" / f"h{i}" for i, p in enumerate(ports)}
        sshds, known = start_sshd(base, keygen(base / "control_key"), routes)
        procs.update((f"sshd{j}", proc) for j, proc in enumerate(sshds))
        per_host = math.ceil(runs / hosts)
        link_config(base / "host.toml", ctl, base / "state", known, ports, per_host)
        (base / "WORKFLOW.md").write_text(
            WORKFLOW.format(interval=1000, limit=runs, root=base / "ws", agent="true")
        )
        t_start = time.monotonic()
        procs["link"] = spawn_logged(
            base / "link.log", "-m", "symphonyd.link", "--host-config", str(base / "host.toml"),
            "--hosts-dir", str(ctl / "hosts"), "--key", str(base / "control_key"),
            "--dispatcher-uid", "0",
            # Every worker's forward on one path (sshd replaces the socket file; each session
            # keeps its listener): the stand-in launchers make no tracker calls.
            "--worker-tracker-socket", str(base / "w" / "tracker.sock"),
        )  # fmt: skip
        wait_for(lambda: all((ctl / "hosts" / f"h{i}.sock").exists() for i in range(hosts)),
                 "the link's sockets", 60)  # fmt: skip
        ticks = base / "ticks"
        procs["dispatcher"] = spawn_logged(
            base / "dispatcher.log", __file__, "--dispatcher-child", str(ticks),
            "--host-config", str(base / "host.toml"), "--workflow", str(base / "WORKFLOW.md"),
            "--state-dir", str(base / "dstate"), "--runtime-dir", str(ctl),
            "--ctl-socket", str(ctl / "ctl.sock"),
        )  # fmt: skip
        sshd_pids = [p.pid for p in sshds]
        peaks = Peaks({"dispatcher": ([procs["dispatcher"].pid], True),
                       "link": ([procs["link"].pid], True),
                       "link_ssh": ([procs["link"].pid], False),
                       "sshd": (sshd_pids, False)})  # fmt: skip
        peaks.start()

        def cpu() -> dict[str, float]:
            return {"dispatcher": tree_cpu(procs["dispatcher"].pid),
                    "link": tree_cpu(procs["link"].pid),
                    "sshd": sum(tree_cpu(pid) for pid in sshd_pids)}  # fmt: skip

        def alive() -> None:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited: {proc.returncode}")

        def until(pred: Callable[[dict[str, Any]], bool], what: str, timeout: float) -> None:
            def check() -> bool:
                alive()
                return pred(world.say("count"))

            wait_for(check, what, timeout)

        until(lambda c: c["subscribed"] == hosts, "every worker's event stream", 300)
        time.sleep(2)  # the dispatcher's resync after each subscription
        connect_s = time.monotonic() - t_start
        cpu0, t0 = cpu(), time.monotonic()
        world.say("open")
        until(lambda c: c["live"] == runs, "every run live", 600)
        cpu1, t1 = cpu(), time.monotonic()
        filled = world.say("count")
        time.sleep(hold)
        cpu2, t2 = cpu(), time.monotonic()
        pss = {"dispatcher": tree_pss_mib([procs["dispatcher"].pid]),
               "link_and_ssh": tree_pss_mib([procs["link"].pid]),
               "sshd": tree_pss_mib(sshd_pids)}  # fmt: skip
        world.say("finish")
        until(lambda c: c["live"] == runs and c["started"] == 2 * runs, "every run again", 600)
        cpu3, t3 = cpu(), time.monotonic()
        cycled = world.say("count")
        peaks.done.set()
        peaks.join()
    finally:
        if peaks is not None:
            peaks.done.set()
        for proc in reversed(procs.values()):
            terminate(proc)
        world.close()

    def per_run(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        return {k: round((b[k] - a[k]) * 1000 / runs, 3) for k in a}

    def per_s(a: dict[str, float], b: dict[str, float], secs: float) -> dict[str, float]:
        return {k: round((b[k] - a[k]) * 1000 / secs, 1) for k in a}

    result = {
        "hosts": hosts,
        "runs": runs,
        "per_host_cap": per_host,
        "connect_s": round(connect_s, 1),
        "fill": {
            "s": round(t1 - t0, 2),
            "first_to_last_start_s": round(filled["last_start"] - filled["first_start"], 2),
            "max_live_per_host": filled["max_live_per_host"],
            "cpu_ms_per_run": per_run(cpu0, cpu1),
            "ticks": ms(read_ticks(ticks, "tick", t0, t1) or [0.0]),
        },
        "hold": {
            "s": round(t2 - t1, 1),
            "ticks": ms(read_ticks(ticks, "tick", t1, t2) or [0.0]),
            "tick_cpu": ms(read_ticks(ticks, "tick", t1, t2, cpu=True) or [0.0]),
            "cpu_ms_per_s": per_s(cpu1, cpu2, t2 - t1),
        },
        "cycle": {
            "s": round(t3 - t2, 2),
            "cpu_ms_per_run": per_run(cpu2, cpu3),
            "ticks": ms(read_ticks(ticks, "tick", t2, t3) or [0.0]),
            "retry_batches": ms(read_ticks(ticks, "retry", t2, t3) or [0.0]),
            "audit_records": cycled["audit_records"],
        },
        "peak_rss_mib": {k: round(v, 1) for k, v in peaks.peak.items()},
        "pss_mib_at_hold_end": {k: round(v, 1) for k, v in pss.items()},
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    shutil.rmtree(base, ignore_errors=True)
    return result


async def core_one(hosts: int, runs: int) -> dict[str, float]:
    """The scheduler's own CPU per run with ``hosts`` worker hosts and no IPC: the real
    orchestrator over in-process stand-ins (bench/dispatch_throughput.py's), every host
    connected, ``runs`` spread at ``runs / hosts`` per host. One tick starts them all, every
    run then reports a zero-work result, and one round of retries starts them all again."""
    from bench.dispatch_throughput import Audit, Launcher, StaticConfig, Tracker, make_issues
    from symphonyd.dispatcher.engine import Engine
    from symphonyd.dispatcher.hosts import Host, HostPool
    from symphonyd.dispatcher.orchestrator import Orchestrator
    from symphonyd.dispatcher.ports import SystemClock
    from symphonyd.dispatcher.store import StateStore

    launcher = Launcher()
    pool = HostPool([Host(f"h{i}", launcher, remote=True, connected=True) for i in range(hosts)],
                    per_host=math.ceil(runs / hosts))  # fmt: skip
    state = Path(tempfile.mkdtemp(prefix="syrc"))
    try:
        orch = Orchestrator(Engine(tracker=Tracker(make_issues(runs)), launcher=launcher,
                                   audit=Audit(), config=StaticConfig(runs),
                                   store=StateStore(state), clock=SystemClock(),
                                   hosts=pool))  # fmt: skip
        await orch.start()
        t0 = time.process_time()
        await orch.tick()
        t1 = time.process_time()
        assert len(orch.running) == runs, len(orch.running)
        for e in list(orch.running.values()):
            ev = RunEvent(e.run_id, e.issue.id, "run_finished", "2026-01-01T00:00:00Z",
                          outcome=RunOutcome("succeeded"))  # fmt: skip
            await orch.handle_run_event(ev, e.host)
        t2 = time.process_time()
        await asyncio.sleep(1.1)  # SPEC 8.4: continuation retries are due after 1 s
        t3 = time.process_time()
        await orch.fire_due_retries()
        t4 = time.process_time()
        assert len(orch.running) == runs, len(orch.running)
        await orch.settle()
    finally:
        shutil.rmtree(state, ignore_errors=True)
    return {"tick_ms_per_run": (t1 - t0) * 1000 / runs, "exit_ms_per_run": (t2 - t1) * 1000 / runs,
            "retry_ms_per_run": (t4 - t3) * 1000 / runs}  # fmt: skip


def core(hosts_list: list[int], runs: int, repeat: int = 3) -> list[dict[str, Any]]:
    rows = []
    for hosts in hosts_list:
        samples = [asyncio.run(core_one(hosts, runs)) for _ in range(repeat)]
        row: dict[str, Any] = {"hosts": hosts, "runs": runs}
        for key in samples[0]:
            row[key] = round(statistics.median(s[key] for s in samples), 4)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def dispatcher_child(ticks: str, argv: list[str]) -> int:
    """``python -m symphonyd.dispatcher`` with its scheduler's tick and retry batch timed."""
    from symphonyd.dispatcher.__main__ import main
    from symphonyd.dispatcher.scheduler import Scheduler

    out = open(ticks, "a", buffering=1)  # noqa: SIM115 - open for the process's life

    def timed(kind: str, method: Callable[[Scheduler], Awaitable[None]]) -> Any:
        async def wrapper(self: Scheduler) -> None:
            start, t, cpu = time.monotonic(), time.perf_counter(), time.thread_time()
            try:
                await method(self)
            finally:
                took, used = time.perf_counter() - t, time.thread_time() - cpu
                out.write(f"{kind} {start:.4f} {took:.6f} {used:.6f}\n")

        return wrapper

    setattr(Scheduler, "tick", timed("tick", Scheduler.tick))  # noqa: B010
    setattr(Scheduler, "fire_due_retries", timed("retry", Scheduler.fire_due_retries))  # noqa: B010
    profile = os.environ.get("REMOTE_DISPATCH_PROFILE")
    if not profile:
        return main(argv)
    import cProfile

    with cProfile.Profile() as prof:
        code = main(argv)
    prof.dump_stats(profile)
    return code


def main() -> int:
    if sys.argv[1:2] == ["--dispatcher-child"]:  # TIMES_FILE DISPATCHER_ARGS...
        return dispatcher_child(sys.argv[2], sys.argv[3:])
    # Stopped with SIGTERM, the bench still takes down what it started (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", nargs="?", choices=["latency", "scale", "core"], default="latency")
    p.add_argument("--runs", type=int, default=None, help="latency: 20; scale: 5000")
    p.add_argument("--hosts", type=int, nargs="+", default=[10, 100])
    p.add_argument("--hold", type=float, default=30.0, help="scale: seconds with all runs live")
    p.add_argument("--profile", help="scale: cProfile the dispatcher into PATH.HOSTS")
    p.add_argument("--serve-world", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_world:
        asyncio.run(serve_world(Path(args.serve_world), args.hosts[0], args.runs))
        return 0
    if os.geteuid() != 0 and args.mode != "core":
        print("remote_dispatch.py needs root (sshd with a forced command)", file=sys.stderr)
        return 2
    load = os.getloadavg()[0]
    result: dict[str, Any]
    if args.mode == "latency":
        result = {"latency": asyncio.run(latency(args.runs or 20))}
        print(json.dumps(result["latency"], indent=1), flush=True)
    elif args.mode == "core":
        result = {"core": core(args.hosts, args.runs or 5000)}
    else:
        rows = []
        for hosts in args.hosts:
            if args.profile:
                os.environ["REMOTE_DISPATCH_PROFILE"] = f"{args.profile}.{hosts}"
            row = scale_one(hosts, args.runs or 5000, args.hold)
            print(json.dumps(row), flush=True)
            rows.append(row)
        result = {"scale": rows}
    result["loadavg_1m_at_start"] = round(load, 2)
    result["nproc"] = os.cpu_count()
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
