"""Issues per second through the real daemons, end to end, with a zero-work agent.

For each size (default 1 000 and 10 000) a fresh directory tree gets that many local-tracker
issues in ``Todo``; then the four daemons start as their own processes, exactly as in
development (``python -m symphonyd.<daemon>`` with a host config and self-bound sockets in a
temporary runtime directory, the sandbox off by ``[sandbox] enabled = false``):

- audit writer: durable group commit (fdatasync before every acknowledgement);
- tracker: the ``local`` adapter on the issue files;
- launcher: a workspace per issue, the agent through ``bash -lc`` as in production;
- dispatcher: polls, audits each dispatch, starts runs, records exits.

The agent is ``bench/data/zero_work_app_server.sh``: it completes one turn at once and hands
the issue off to ``Human Review`` with the host's ``tracker_move`` tool, so the launcher's
post-turn refresh ends the run and the dispatcher's continuation check releases the issue.

Timing comes from the audit log afterwards: first ``dispatch`` record to the last launcher
``run_finished`` record (the issue is in the hand-off state and its run is over). ``drained``
is when the dispatcher holds no running or retrying entry any more (that includes the
SPEC 8.4 one-second continuation delay). Peak RSS per daemon is sampled with psutil.

    .venv/bin/python bench/pipeline_throughput.py [--issues 1000 10000] [--concurrency 256]

The trees go under ``--dir`` (default /var/tmp: a real disk, so fsync is not free).
Last line: RESULT {json}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from symphonyd.core.api.dispatcher import DISPATCHER_SNAPSHOT  # noqa: E402
from symphonyd.core.api.shared import Empty  # noqa: E402
from symphonyd.core.errors import SymphonyError  # noqa: E402
from symphonyd.runtime.ipc_client import IpcClient  # noqa: E402
from symphonyd.tracker.local_store import render  # noqa: E402
from tests.dispatcher.suite_tree import DAEMONS, SuiteTree  # noqa: E402

AGENT = REPO / "bench" / "data" / "zero_work_app_server.sh"
# Enough that the 1 s poll does not cap the rate (the dispatcher starts at most this many
# runs per poll, and a run holds its slot ~1 s), far below "every issue at once", which only
# starts thousands of agents in lockstep and runs the launcher out of file descriptors.
# A large real host runs tens to a few hundred agents (bench/README.md).
DEFAULT_CONCURRENCY = 256


def write_board(issues: Path, n: int) -> None:
    stamp = "2026-01-01T00:00:00Z"
    for i in range(n):
        ident = f"B-{i}"
        meta = {"id": ident, "identifier": ident, "title": f"bench issue {i}", "state": "Todo",
                "priority": 2, "created_at": stamp, "updated_at": stamp}  # fmt: skip
        (issues / f"{ident}.md").write_bytes(render(meta, "Nothing to do."))
    os.sync()


def audit_records(directory: Path) -> list[dict[str, Any]]:
    out = []
    for day in sorted(directory.glob("*.ndjson")):
        out += [json.loads(line) for line in day.read_text().splitlines() if line]
    return out


def count_finished(directory: Path, offsets: dict[Path, int]) -> int:
    """New non-failed run_finished records since the last call (reads only the new bytes)."""
    found = 0
    for day in sorted(directory.glob("*.ndjson")):
        with day.open("rb") as fh:
            fh.seek(offsets.get(day, 0))
            data = fh.read()
        cut = data.rfind(b"\n") + 1
        offsets[day] = offsets.get(day, 0) + cut
        # A failed attempt (e.g. EMFILE at spawn) is retried: only count runs that ended the
        # issue's work (succeeded, or stopped by reconciliation after the hand-off).
        for line in data[:cut].splitlines():
            if b'"type":"run_finished"' in line and b'"status":"failed"' not in line:
                found += 1
    return found


async def drained(sock: Path) -> bool:
    client = await IpcClient.connect(sock)
    try:
        snap = await client.call(DISPATCHER_SNAPSHOT, Empty())
    except SymphonyError as exc:
        if exc.error_code == "frame_too_large":
            return False  # thousands of rows still listed: not drained
        raise
    finally:
        await client.close()
    return snap.counts.running == 0 and snap.counts.retrying == 0


def measure(n: int, concurrency: int, poll_ms: int, base_dir: Path, keep: bool) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix=f"pipeline{n}-", dir=base_dir))
    tree = SuiteTree(base, poll_ms=poll_ms, concurrency=concurrency, agent=AGENT, max_turns=3,
                     log_level="warning")  # fmt: skip
    peak: dict[str, float] = dict.fromkeys(DAEMONS, 0.0)
    cpu: dict[str, float] = {}
    try:
        write_board(tree.issues, n)
        tree.start()
        ps = {name: psutil.Process(p.pid) for name, p in tree.procs.items()}
        offsets: dict[Path, int] = {}
        finished, deadline = 0, time.monotonic() + 60 + n * 0.1
        while finished < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {finished}/{n} finished: {tree.log('launcher')[-3000:]}")
            for name, proc in ps.items():
                peak[name] = max(peak[name], proc.memory_info().rss / 2**20)
                if tree.procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited: {tree.log(name)[-3000:]}")
            finished += count_finished(tree.audit, offsets)
            time.sleep(0.1)
        done_wall = time.time()
        while not asyncio.run(drained(tree.run / "dispatcher-ctl.sock")):
            time.sleep(0.1)
        drained_wall = time.time()
        for name, proc in ps.items():
            peak[name] = max(peak[name], proc.memory_info().rss / 2**20)
            times = proc.cpu_times()
            # The launcher's reaped children are the agents (and their bash).
            cpu[name] = times.user + times.system + times.children_user + times.children_system
            if name == "launcher":
                cpu["launcher_children"] = times.children_user + times.children_system
    finally:
        tree.stop()
    records = audit_records(tree.audit)
    ts = [(datetime.fromisoformat(r["ts"].replace("Z", "+00:00")).timestamp(), r) for r in records]
    first = min(t for t, r in ts if r["type"] == "dispatch")
    last = max(t for t, r in ts if r["type"] == "run_finished")
    outcomes = [r["payload"].get("outcome") for _, r in ts if r["type"] == "run_finished"]
    moved = sum(b"state: Human Review" in p.read_bytes() for p in tree.issues.glob("B-*.md"))
    workspaces = sum(1 for _ in tree.ws.iterdir())
    if not keep:
        shutil.rmtree(base, ignore_errors=True)
    seconds = last - first
    return {
        "issues": n,
        "seconds": round(seconds, 3),
        "issues_per_second": round(n / seconds, 1),
        "ms_per_issue": round(seconds * 1000 / n, 3),
        "drained_seconds": round(drained_wall - first, 3),
        "done_seen_late_s": round(done_wall - last, 3),
        "succeeded": outcomes.count("succeeded"),
        "handed_off": moved,
        "workspaces": workspaces,
        "audit_records": len(records),
        "peak_rss_mib": {k: round(v, 1) for k, v in peak.items()},
        "cpu_seconds": {k: round(v, 2) for k, v in cpu.items()},
        "cpu_ms_per_issue": round(sum(cpu[d] for d in DAEMONS) * 1000 / n, 2),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--issues", type=int, nargs="+", default=[1000, 10000])
    p.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"max_concurrent_agents (default {DEFAULT_CONCURRENCY}; 0: = issues)",
    )
    p.add_argument("--poll-ms", type=int, default=1000, help="polling.interval_ms")
    p.add_argument("--dir", type=Path, default=Path("/var/tmp"))
    p.add_argument("--keep", action="store_true", help="keep the trees (logs, audit) for a look")
    args = p.parse_args()
    results = []
    for n in args.issues:
        r = measure(n, args.concurrency or n, args.poll_ms, args.dir, args.keep)
        results.append(r)
        print(json.dumps(r), flush=True)
    print("RESULT " + json.dumps({"runs": results, "loadavg_1m": os.getloadavg()[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
