"""The CPU floor of starting one agent process, whatever the daemons around it do.

    .venv/bin/python bench/spawn_floor.py [--spawns 300]

Each case starts a process the way the launcher starts an agent (three pipes, a minimal
environment with an empty ``HOME``, reaped before the next one) and measures the CPU of the
parent and of the reaped children per spawn, with ``getrusage``. Cases: a bare ``/bin/true``
(no shell), ``bash -c true``, and ``bash -lc true`` (the SPEC 10.1 launch: a login shell).

Why this exists: issue #9 asks for about 2 000 issues/s on this 2-CPU machine, which leaves
1 ms of CPU per issue for everything. If starting the agent alone costs that much, no
implementation that starts one agent process per issue can reach the figure here.
Last line: RESULT {json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import tempfile
import time

CASES: dict[str, list[str]] = {
    "exec /bin/true": ["/bin/true"],
    "bash -c true": ["bash", "-c", "true"],
    "bash -lc true": ["bash", "-lc", "true"],
}


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def measure(argv: list[str], spawns: int, home: str) -> dict[str, float]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8"}
    parent0, children0 = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    for _ in range(spawns):
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=home,
        )
        proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"{argv} exited {proc.returncode}")
    wall = time.perf_counter() - started
    parent = _cpu(resource.RUSAGE_SELF) - parent0
    children = _cpu(resource.RUSAGE_CHILDREN) - children0
    per_spawn = (parent + children) / spawns
    return {
        "parent_ms": round(parent / spawns * 1e3, 3),
        "child_ms": round(children / spawns * 1e3, 3),
        "total_ms": round(per_spawn * 1e3, 3),
        "wall_ms": round(wall / spawns * 1e3, 3),
        # Spawning and nothing else, every CPU busy: the ceiling on issues/s.
        "ceiling_per_s": round((os.cpu_count() or 1) / per_spawn),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spawns", type=int, default=300)
    args = parser.parse_args()
    results: dict[str, object] = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_1m": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory(prefix="spawn-floor-") as home:
        for name, argv in CASES.items():
            measure(argv, 10, home)  # warm the page cache
            row = measure(argv, args.spawns, home)
            results[name] = row
            print(
                f"{name:16} parent {row['parent_ms']:.3f} ms + child {row['child_ms']:.3f} ms"
                f" = {row['total_ms']:.3f} ms CPU/spawn; ceiling {row['ceiling_per_s']}/s"
            )
    results["loadavg_1m_end"] = os.getloadavg()[0]
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main()
