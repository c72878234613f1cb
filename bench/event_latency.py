"""From an issue file written to its agent process running: change events against polling.

The four real daemons run as their own processes (tests/dispatcher/suite_tree.py: the
``local`` tracker, sandbox off, the agent through ``bash -lc`` as in production). The agent
is ``bench/data/stamped_zero_work.sh``, which first writes the time it started into its
workspace. For each of ``--issues`` issues, one at a time, the script waits a random part of
the poll interval (so a write lands at any phase of the poll timer), writes the issue file in
``Todo`` and notes the time; the latency is the agent's own start stamp minus that time.

Two modes, same tree shape and ``polling.interval_ms``:

- ``events``: the tracker watches the directory (``tracker.provider.watch: true``, the
  default) and the dispatcher ticks on each ``tracker.changed``;
- ``polling``: ``watch: false``, so only the poll tick finds the issue.

    .venv/bin/python bench/event_latency.py [--issues 100] [--poll-ms 2000] [--modes events polling]
        [--stages]

``--stages`` then breaks zero-work runs down by stage (event, tracker refresh, dispatch,
workspace, spawn, agent start, handshake, tool call, exit, durable acknowledgement, slot free)
one at a time and 100 at once, at a 100 ms poll: bench/run_stages.py, which can also run alone.

Last line: RESULT {json}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.run_stages import print_table, run_tree  # noqa: E402
from tests.dispatcher.suite_tree import SuiteTree  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def measure(mode: str, n: int, poll_ms: int, concurrency: int, base_dir: Path) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix=f"evlat-{mode}-", dir=base_dir))
    tree = SuiteTree(base, poll_ms=poll_ms, concurrency=concurrency)
    if mode == "polling":
        workflow = base / "WORKFLOW.md"
        workflow.write_text(
            workflow.read_text().replace("    tool_states:", "    watch: false\n    tool_states:")
        )
    rng = random.Random(21)
    latencies: list[float] = []
    try:
        tree.start()
        time.sleep(1.0)  # past the first tick and the dispatcher's subscription
        for i in range(n):
            time.sleep(rng.uniform(0, poll_ms / 1000))
            ident = f"L-{i}"
            written = time.time_ns()
            tree.write_issue(ident)
            tree.wait(f"{ident}'s agent", lambda i=ident: tree.agent_started_ns(i) is not None,
                      timeout=60 + poll_ms / 1000)  # fmt: skip
            started = tree.agent_started_ns(ident)
            assert started is not None
            latencies.append((started - written) / 1e6)
    finally:
        tree.stop()
        shutil.rmtree(base, ignore_errors=True)
    return {
        "mode": mode,
        "issues": n,
        "poll_ms": poll_ms,
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
        "min_ms": round(min(latencies), 1),
        "max_ms": round(max(latencies), 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--issues", type=int, default=100)
    p.add_argument("--poll-ms", type=int, default=2000, help="polling.interval_ms")
    p.add_argument("--concurrency", type=int, default=100, help="max_concurrent_agents")
    p.add_argument("--modes", nargs="+", default=["events", "polling"])
    p.add_argument("--dir", type=Path, default=Path("/var/tmp"))
    p.add_argument("--stages", action="store_true", help="also the per-stage breakdown")
    args = p.parse_args()
    results = []
    for mode in args.modes:
        r = measure(mode, args.issues, args.poll_ms, args.concurrency, args.dir)
        results.append(r)
        print(json.dumps(r), flush=True)
    stages = []
    if args.stages:
        for concurrency, runs in ((1, 30), (100, 300)):
            stages.append(run_tree(runs, concurrency, 100, args.dir))
            print_table(stages[-1])
    print("RESULT " + json.dumps({"runs": results, "stages": stages,
                                  "loadavg_1m": os.getloadavg()[0]}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
