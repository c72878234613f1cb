"""Where one zero-work run's time goes, stage by stage, through the four real daemons.

The tree is bench/event_latency.py's (tests/dispatcher/suite_tree.py: the daemons as their own
processes, the ``local`` tracker watching its directory, the agent through ``bash -lc``,
durable audit, ``[sandbox] enabled = false``) at log level ``debug``. No timing code is added
for this: every milestone is something the daemons already record, read back afterwards:

=================  ==========================================================================
written            the bench, just before it writes the issue file (wall clock, ns)
refreshed          tracker ``tracker_events outcome=published`` (debug; one run at a time only)
dispatch_audited   the audit record ``dispatch`` (its ``ts``: the dispatcher's decision, durable)
run_accepted       launcher ``run outcome=started`` (the dispatcher's ``start_run`` arrived)
workspace          launcher ``workspace outcome=created``
spawned            launcher ``agent_process outcome=spawned`` (debug; ``bash -lc`` forked)
agent_running      the agent's own stamp (``.agent_started``, ns): bash and dash started
handshake          ``prompt_sent`` audit record's ``at`` (initialize, thread/start answered)
tool_done          ``tool_call`` audit record ``ts`` (tracker_move made and answered)
exited             launcher ``agent_process outcome=exited`` (debug; stdin closed, reaped)
finished           launcher ``run outcome=succeeded`` (after_run, run_finished sent)
audited            ``run_finished`` audit record ``ts`` (the durable acknowledgement)
slot_free          dispatcher ``retry outcome=scheduled`` (the running entry is gone)
=================  ==========================================================================

Log times have millisecond resolution; audit ``ts`` microseconds. The sandbox is off in this
tree (bench/sandbox_setup.py measures that stage on its own).

Two shapes: ``--concurrency 1`` writes one issue at a time and waits for its slot to be
free; a larger concurrency writes ``--runs`` issues at once (the 100-at-once case of
issue 21), so the runs compete for the daemons. Called by ``event_latency.py --stages``.

    .venv/bin/python bench/run_stages.py [--runs 30] [--concurrency 1 100] [--poll-ms 100]

Last line: RESULT {json}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psutil  # type: ignore[import-untyped]  # noqa: E402

from tests.dispatcher.suite_tree import DAEMONS, SuiteTree  # noqa: E402

MILESTONES = ("written", "refreshed", "dispatch_audited", "run_accepted", "workspace", "spawned",
              "agent_running", "handshake", "tool_done", "exited", "finished", "audited",
              "slot_free")  # fmt: skip
FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def wall_ms(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000


def log_lines(path: Path) -> list[tuple[float, dict[str, str]]]:
    """(wall ms, fields) of every ``key=value`` line of a daemon's stderr log."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        stamp, _, rest = line.partition(" ")
        if not stamp.endswith("Z"):
            continue
        fields = {k: v.strip('"') for k, v in FIELD.findall(rest)}
        out.append((wall_ms(stamp), fields))
    return out


def milestones(
    tree: SuiteTree, written: dict[str, float], one_at_a_time: bool
) -> dict[str, dict[str, float]]:
    """Per issue identifier: milestone -> wall ms (first occurrence)."""
    at: dict[str, dict[str, float]] = {i: {"written": t} for i, t in written.items()}

    def put(ident: str | None, name: str, t: float) -> None:
        if ident in at:
            at[ident].setdefault(name, t)

    launcher_marks = {("run", "started"): "run_accepted", ("workspace", "created"): "workspace",
                      ("agent_process", "spawned"): "spawned",
                      ("agent_process", "exited"): "exited",
                      ("run", "succeeded"): "finished"}  # fmt: skip
    for t, f in log_lines(tree.base / "launcher.log"):
        name = launcher_marks.get((f.get("event", ""), f.get("outcome", "")))
        if name:
            put(f.get("issue_identifier"), name, t)
    for t, f in log_lines(tree.base / "dispatcher.log"):
        if f.get("event") == "retry" and f.get("outcome") == "scheduled":
            put(f.get("issue_identifier"), "slot_free", t)
    published = sorted(
        t for t, f in log_lines(tree.base / "tracker.log")
        if f.get("event") == "tracker_events" and f.get("outcome") == "published"
    )  # fmt: skip
    if one_at_a_time:
        # One issue at a time: the first publication after its write is its refresh.
        for ident, w in written.items():
            after = [t for t in published if t >= w - 1]
            if after and after[0] <= at[ident].get("slot_free", float("inf")):
                put(ident, "refreshed", after[0])
    for day in sorted(tree.audit.glob("*.ndjson")):
        for line in day.read_text().splitlines():
            rec = json.loads(line)
            ident = rec.get("issue_identifier")
            kind = rec["type"]
            if kind == "dispatch":
                put(ident, "dispatch_audited", wall_ms(rec["ts"]))
            elif kind == "prompt_sent":
                put(ident, "handshake", wall_ms(rec["payload"]["at"]))
            elif kind == "tool_call":
                put(ident, "tool_done", wall_ms(rec["ts"]))
            elif kind == "run_finished":
                put(ident, "audited", wall_ms(rec["ts"]))
    for ident in at:
        ns = tree.agent_started_ns(ident)
        if ns is not None:
            put(ident, "agent_running", ns / 1e6)
    return at


def cpu_seconds(tree: SuiteTree) -> dict[str, float]:
    """CPU seconds so far per daemon; the launcher's reaped children (the agents and their
    bash) apart as ``agents``."""
    out = {}
    for name in DAEMONS:
        t = psutil.Process(tree.procs[name].pid).cpu_times()
        out[name] = t.user + t.system
        if name == "launcher":
            out["agents"] = t.children_user + t.children_system
    return out


def slot_freed(tree: SuiteTree) -> set[str]:
    return {f.get("issue_identifier", "") for _, f in log_lines(tree.base / "dispatcher.log")
            if f.get("event") == "retry" and f.get("outcome") == "scheduled"}  # fmt: skip


def run_tree(runs: int, concurrency: int, poll_ms: int, base_dir: Path) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix=f"stages{concurrency}-", dir=base_dir))
    tree = SuiteTree(base, poll_ms=poll_ms, concurrency=concurrency, log_level="debug")
    rng = random.Random(21)
    written: dict[str, float] = {}
    try:
        tree.start()
        time.sleep(1.0)  # past the first tick and the dispatcher's subscription
        idle = cpu_seconds(tree)  # start-up (imports) is not the runs' cost
        if concurrency == 1:
            for i in range(runs):
                time.sleep(rng.uniform(0, poll_ms / 1000))
                ident = f"S-{i}"
                written[ident] = time.time_ns() / 1e6
                tree.write_issue(ident)
                tree.wait(f"{ident}'s slot", lambda i=ident: i in slot_freed(tree), timeout=60)
        else:
            for i in range(runs):
                ident = f"S-{i}"
                written[ident] = time.time_ns() / 1e6
                tree.write_issue(ident)
            tree.wait("every slot", lambda: len(slot_freed(tree)) >= runs, timeout=60 + runs)
        time.sleep(0.2)  # the last lines reach the logs
        cpu = {k: v - idle[k] for k, v in cpu_seconds(tree).items()}
        at = milestones(tree, written, concurrency == 1)
    finally:
        tree.stop()
        shutil.rmtree(base, ignore_errors=True)
    out = summarise(at, runs, concurrency, poll_ms)
    out["cpu_ms_per_run"] = {k: round(v * 1000 / runs, 2) for k, v in cpu.items()}
    return out


def summarise(
    at: dict[str, dict[str, float]], runs: int, concurrency: int, poll_ms: int
) -> dict[str, Any]:
    stages: list[dict[str, Any]] = []
    prev = "written"
    for name in MILESTONES[1:]:
        spans = [m[name] - m[prev] for m in at.values() if name in m and prev in m]
        offsets = [m[name] - m["written"] for m in at.values() if name in m]
        if not spans:
            continue
        stages.append({"stage": f"{prev}->{name}", "n": len(spans),
                       "median_ms": round(percentile(spans, 50), 2),
                       "p90_ms": round(percentile(spans, 90), 2),
                       "at_median_ms": round(percentile(offsets, 50), 2)})  # fmt: skip
        prev = name
    held = [m["slot_free"] - m["dispatch_audited"] for m in at.values()
            if "slot_free" in m and "dispatch_audited" in m]  # fmt: skip
    first = min(m["written"] for m in at.values())
    last = max(m.get("slot_free", 0.0) for m in at.values())
    return {
        "concurrency": concurrency,
        "runs": runs,
        "poll_ms": poll_ms,
        "stages": stages,
        "slot_held_median_ms": round(percentile(held, 50), 1) if held else None,
        "slot_held_p90_ms": round(percentile(held, 90), 1) if held else None,
        "issues_per_second": round(runs / ((last - first) / 1000), 1) if concurrency > 1 else None,
    }


def print_table(r: dict[str, Any]) -> None:
    print(f"concurrency {r['concurrency']}, {r['runs']} runs, poll {r['poll_ms']} ms: slot held "
          f"median {r['slot_held_median_ms']} ms, p90 {r['slot_held_p90_ms']} ms"
          + (f", {r['issues_per_second']} issues/s" if r["issues_per_second"] else ""))  # fmt: skip
    print(f"  CPU ms per run (after start-up): {r['cpu_ms_per_run']}")
    for s in r["stages"]:
        print(f"  {s['stage']:<32} median {s['median_ms']:>8.2f}  p90 {s['p90_ms']:>8.2f}  "
              f"(at {s['at_median_ms']:.1f})")  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 100])
    p.add_argument(
        "--burst", type=int, default=300, help="issues written at once (concurrency > 1)"
    )
    p.add_argument("--poll-ms", type=int, default=100, help="polling.interval_ms")
    p.add_argument("--dir", type=Path, default=Path("/var/tmp"))
    args = p.parse_args()
    results = []
    for c in args.concurrency:
        r = run_tree(args.runs if c == 1 else args.burst, c, args.poll_ms, args.dir)
        results.append(r)
        print_table(r)
    print("RESULT " + json.dumps({"runs": results, "loadavg_1m": os.getloadavg()[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
