"""Time from ``systemctl start symphony.target`` to every unit READY, and the idle RSS.

Builds the .deb, boots a throwaway Debian 12 container with systemd as PID 1
(``devtools/nspawn.py``, as the e2e tests do), installs the package with its shipped
configuration and measures, ``--repeat`` times:

- ``ready_ms``: from just before ``systemctl start symphony.target`` to the latest
  ``ActiveEnterTimestampMonotonic`` of the daemons' services and sockets. The services are
  ``Type=notify``, so "active" means the daemon sent ``READY=1`` (sockets bound, state
  loaded). Both clocks are the kernel's CLOCK_MONOTONIC, read inside the container.
- ``start_call_ms``: how long the ``systemctl start`` call itself took (it returns once the
  target's start job is done).

Between repetitions everything is stopped (services and sockets). After the last start the
dashboard is activated by one request (it is socket-activated) and, after ``--idle`` seconds,
each service's resident memory is read from ``/proc/<MainPID>/status`` (VmRSS; the host runs
cgroup v1, where systemd's ``MemoryCurrent`` is not available inside the container).

Needs root, debootstrap's cached root filesystem (``/var/cache/symphony-e2e``) and the same
lock as the e2e tests:

    flock /tmp/sandbox-tests.lock .venv/bin/python bench/suite_start.py [--repeat 5]

Last line: RESULT {json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from devtools.demo_setup import install_package  # noqa: E402
from devtools.nspawn import Container  # noqa: E402
from devtools.quickstart import build_deb  # noqa: E402

SERVICES = ("audit", "tracker", "launcher", "dispatcher")
SOCKETS = (
    "audit-dispatcher", "audit-tracker", "audit-launcher", "audit-dashboard",
    "tracker-dispatcher", "tracker-launcher", "launcher-dispatcher",
    "dispatcher-ctl", "dispatcher-dashboard", "dashboard",
)  # fmt: skip
UNITS = [f"symphony-{s}.service" for s in SERVICES] + [f"symphony-{s}.socket" for s in SOCKETS]
FETCH = "import urllib.request as u; u.urlopen('http://127.0.0.1:4000/api/v1/state', timeout=20)"
MONOTONIC_US = "import time; print(time.monotonic_ns() // 1000)"


def show(c: Container, unit: str, prop: str) -> str:
    return c.run(["systemctl", "show", "-P", prop, unit]).stdout.strip()


def start_once(c: Container) -> dict[str, float]:
    t0 = int(c.run(["python3", "-c", MONOTONIC_US]).stdout)
    began = time.monotonic()
    c.run(["systemctl", "start", "symphony.target"], timeout=120)
    call_ms = (time.monotonic() - began) * 1000
    deadline = time.monotonic() + 60
    while any(show(c, u, "ActiveState") != "active" for u in UNITS):
        if time.monotonic() > deadline:
            states = {u: show(c, u, "ActiveState") for u in UNITS}
            journal = c.run(["journalctl", "--no-pager", "-n", "60"], check=False).stdout
            raise RuntimeError(f"not all units active: {states}\n{journal}")
        time.sleep(0.1)
    entered = {u: int(show(c, u, "ActiveEnterTimestampMonotonic")) for u in UNITS}
    services = {u: (t - t0) / 1000 for u, t in entered.items() if u.endswith(".service")}
    return {
        "ready_ms": round((max(entered.values()) - t0) / 1000, 1),
        "start_call_ms": round(call_ms, 1),
        **{f"{u.removeprefix('symphony-').removesuffix('.service')}_ms": round(v, 1)
           for u, v in services.items()},
    }  # fmt: skip


def stop_all(c: Container) -> None:
    c.run(["systemctl", "stop", "symphony.target", "symphony-*.service", "symphony-*.socket"])


def idle_rss(c: Container, idle_s: float) -> dict[str, float]:
    c.run(["python3", "-c", FETCH])  # the dashboard starts on its first connection
    time.sleep(idle_s)
    rss: dict[str, float] = {}
    for name in (*SERVICES, "dashboard"):
        pid = show(c, f"symphony-{name}.service", "MainPID")
        status = c.run(["cat", f"/proc/{pid}/status"]).stdout
        kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        rss[name] = round(kib / 1024, 1)
    return rss


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--idle", type=float, default=10.0, help="seconds idle before reading RSS")
    args = p.parse_args()
    deb = build_deb()
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="suite-start-") as tmp, Container(Path(tmp)) as c:
        install_package(c, deb)
        for i in range(args.repeat):
            if i:
                stop_all(c)
            runs.append(start_once(c))
            print(json.dumps(runs[-1]), flush=True)
        rss = idle_rss(c, args.idle)
    ready = [r["ready_ms"] for r in runs]
    result = {
        "repeat": args.repeat,
        "ready_ms_median": round(statistics.median(ready), 1),
        "ready_ms_min": min(ready),
        "ready_ms_max": max(ready),
        "runs": runs,
        "idle_rss_mib": rss,
        "idle_rss_mib_total": round(sum(rss.values()), 1),
    }
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
