"""What the user-namespace gate (docs/design/0852) adds to starting a bubblewrap sandbox.

    sudo .venv/bin/python bench/userns_gate.py [--spawns 100]

Two cases, each a minimal bubblewrap sandbox running ``/bin/true`` as the launcher's chain
does (``--unshare-pid/ipc/uts``, ``--ro-bind / /``, ``--dev``, ``--proc``, ``setpriv``): without
the gate, and with ``userns.gate_prefix()`` in front and ``--assert-userns-disabled``. Per
spawn: wall time and the CPU of the reaped children (``getrusage``), the same measure as
spawn_floor.py. Needs root. Last line: RESULT {json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import time

from symphonyd.launcher.sandbox.userns import gate_prefix

BWRAP = ["bwrap", "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
VIEW = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
DROP = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs"]
CASES: dict[str, list[str]] = {
    "bwrap": [*BWRAP, *VIEW, "--", *DROP, "--", "/bin/true"],
    "gate + bwrap": [
        *gate_prefix(),
        *BWRAP,
        "--assert-userns-disabled",
        *VIEW,
        "--",
        *DROP,
        "--",
        "/bin/true",
    ],
}


def measure(argv: list[str], spawns: int) -> dict[str, float]:
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    walls = []
    for _ in range(spawns):
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin"})
        walls.append(time.perf_counter() - started)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (children.ru_utime - children0.ru_utime) + (children.ru_stime - children0.ru_stime)
    walls.sort()
    return {
        "wall_p50_ms": round(walls[len(walls) // 2] * 1e3, 2),
        "wall_p95_ms": round(walls[int(len(walls) * 0.95) - 1] * 1e3, 2),
        "child_cpu_ms": round(cpu / spawns * 1e3, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spawns", type=int, default=100)
    args = parser.parse_args()
    results: dict[str, object] = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_1m": os.getloadavg()[0],
    }
    for argv in CASES.values():
        measure(argv, 5)  # warm the page cache
    # Alternate the cases so a change in background load hits both alike.
    rounds = 4
    per = max(args.spawns // rounds, 1)
    collected: dict[str, list[dict[str, float]]] = {name: [] for name in CASES}
    for _ in range(rounds):
        for name, argv in CASES.items():
            collected[name].append(measure(argv, per))
    for name, runs in collected.items():
        results[name] = {
            key: round(sorted(r[key] for r in runs)[len(runs) // 2], 2) for key in runs[0]
        }
        print(f"{name:14} {results[name]}")
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main()
