"""Does this host's systemd really apply ``MemoryMax``/``TasksMax``/``CPUQuota`` to a unit?

systemd accepts those properties even where it cannot enforce them, silently: on a cgroup v1
host whose memory and pids hierarchies it may not write (an nspawn container on such a host,
for one) a "limited" agent can fork and allocate without bound. So before the first agent or
hook unit the launcher starts a throwaway probe unit with known limits, and the probe reports
what its own cgroup holds. A limit missing there is missing for agents too, and the launcher
refuses to start them unless the operator said otherwise (``[sandbox]
require_resource_limits = false``, docs/design/0809).

``python3 -m symphonyd.launcher.sandbox.unit_limits`` runs the probe and prints the report
(exit status 0 when every limit holds); the quick start uses it to configure a demo host.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from symphonyd.launcher.sandbox.systemd_unit import systemd_run_argv

# Values no default would produce, so a match means the limit came from the probe's unit.
PROBE_PROPERTIES = ("MemoryMax=1073737728", "TasksMax=4093", "CPUQuota=50%")
EXPECTED = {"memory": ("1073737728",), "pids": ("4093",), "cpu": ("50000 100000", "50000")}
# Runs inside the probe unit: reads the limits of its own cgroup (v2, else v1 hierarchies).
PROBE_SCRIPT = """
import json, os
paths = {}
for line in open("/proc/self/cgroup"):
    _, ctrls, path = line.rstrip("\\n").split(":", 2)
    for c in ctrls.split(",") if ctrls else [""]:
        paths[c] = path
def read(p):
    try:
        return open(p).read().strip()
    except OSError:
        return None
if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
    base = "/sys/fs/cgroup" + paths.get("", "/")
    out = {k: read(base + "/" + f) for k, f in
           (("memory", "memory.max"), ("pids", "pids.max"), ("cpu", "cpu.max"))}
else:
    def v1(ctrl, f):
        return read("/sys/fs/cgroup/" + ctrl + paths.get(ctrl, "/") + "/" + f)
    out = {"memory": v1("memory", "memory.limit_in_bytes"), "pids": v1("pids", "pids.max"),
           "cpu": v1("cpu", "cpu.cfs_quota_us")}
print(json.dumps(out))
"""
PROBE_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class LimitsReport:
    seen: dict[str, str | None]  # what the probe read in its own cgroup
    missing: tuple[str, ...]  # controllers whose limit did not hold ("probe" if it failed)
    detail: str = ""

    @property
    def enforced(self) -> bool:
        return not self.missing


def judge(seen: Mapping[str, str | None]) -> LimitsReport:
    missing = tuple(k for k, ok in EXPECTED.items() if seen.get(k) not in ok)
    return LimitsReport(dict(seen), missing)


async def probe_unit_limits(python: str = sys.executable) -> LimitsReport:
    unit = f"symphony-limits-probe-{secrets.token_hex(4)}"
    argv = systemd_run_argv(unit, PROBE_PROPERTIES, [python, "-c", PROBE_SCRIPT])
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), PROBE_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        return LimitsReport({}, ("probe",), f"probe unit did not run: {exc}")
    try:
        seen = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        detail = f"probe unit exited {proc.returncode}: {err.decode(errors='replace')[-300:]}"
        return LimitsReport({}, ("probe",), detail)
    if not isinstance(seen, dict):
        return LimitsReport({}, ("probe",), "probe printed no report")
    return judge({str(k): (None if v is None else str(v)) for k, v in seen.items()})


def main() -> int:
    report = asyncio.run(probe_unit_limits())
    print(json.dumps({"enforced": report.enforced, "missing": report.missing, "seen": report.seen}))
    return 0 if report.enforced else 1


if __name__ == "__main__":
    raise SystemExit(main())
