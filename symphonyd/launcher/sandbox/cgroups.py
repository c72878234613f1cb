"""Resource limits where systemd is not PID 1: one cgroup per sandbox, made by the launcher.

The systemd path gets ``MemoryMax``/``TasksMax``/``CPUQuota`` as unit properties; here the
launcher does the same by hand (docs/design/0808-cgroup-limits-without-systemd.md):

- **Which hierarchy.** cgroup v2 when a cgroup2 mount offers ``memory``, ``pids`` and
  ``cpu`` at the launcher's own cgroup and they can be enabled for a child
  (``symphony-sandbox``); else cgroup v1 with those three controllers mounted. Groups are
  made under the launcher's *own* cgroup in each hierarchy, so agents stay inside whatever
  limits the launcher itself runs under, and below this launcher instance's own group
  (``symphony-sandbox/<instance>/symv<N>``, instance.py), so crash cleanup finds exactly
  this instance's agents. Neither available: :class:`SandboxError`
  ``sandbox_resources_failed`` and no agent.
- **Joining.** The sandboxed command is prefixed with a root ``sh`` that writes its own pid
  into every ``cgroup.procs`` and then execs nsenter/bwrap, so the first instruction of the
  agent already runs limited. A failed write exits 125 before anything else starts.
- **Teardown** kills what is left in the group (``cgroup.kill`` on v2, SIGKILL until empty on
  v1) and removes it; :func:`reconcile` does the same for groups a crashed launcher of the same
  instance left, and never looks at another instance's.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from symphonyd.core.config_extensions import ResourcesConfig
from symphonyd.launcher.sandbox.errors import RESOURCES_FAILED, SandboxError
from symphonyd.launcher.sandbox.instance import is_instance

GROUP = "symphony-sandbox"
CONTROLLERS = ("memory", "pids", "cpu")
PERIOD_US = 100_000  # systemd's CPUQuota period
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_NAME = re.compile(r"symv[0-9]{1,6}")
# Becomes nsenter/bwrap after joining; $1 is how many cgroup.procs files follow.
JOIN = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do '
    'echo $$ > "$1" || { echo "symphonyd: cannot join cgroup $1" >&2; exit 125; }; '
    'n=$((n - 1)); shift; done; exec "$@"'
)


@dataclass(frozen=True, slots=True)
class Limits:
    memory_bytes: int | None  # None: no limit ("infinity")
    tasks: int
    cpu_quota_us: int  # per PERIOD_US


def limits_from(resources: ResourcesConfig) -> Limits:
    """systemd's syntax (``4G``, ``infinity``, ``200%``) as numbers; 1K is 1024 as there."""
    mem = resources.memory_max.strip()
    m = re.fullmatch(r"([1-9][0-9]{0,15})([KMGT]?)|infinity", mem)
    pct = re.fullmatch(r"([1-9][0-9]{0,5})%", resources.cpu_quota.strip())
    if m is None or pct is None or resources.tasks_max < 1:
        raise SandboxError(
            f"resource limits not understood: {resources.memory_max!r}, "
            f"{resources.tasks_max!r}, {resources.cpu_quota!r}",
            code=RESOURCES_FAILED,
        )
    memory = None if mem == "infinity" else int(m.group(1)) * _UNITS[m.group(2)]
    return Limits(memory, resources.tasks_max, int(pct.group(1)) * PERIOD_US // 100)


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """Where sandbox groups live: one base on v2, one per controller on v1."""

    version: int
    bases: dict[str, Path]  # controller ("" on v2) -> .../<own cgroup>/symphony-sandbox


@dataclass(frozen=True, slots=True)
class Cgroup:
    name: str
    version: int
    dirs: tuple[Path, ...]

    @property
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs]

    def join_prefix(self) -> list[str]:
        files = [str(p) for p in self.procs_files]
        return ["/bin/sh", "-c", JOIN, "symphony-cgroup", str(len(files)), *files]


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def locate(mounts: str | None = None, own: str | None = None) -> list[Hierarchy]:
    """Candidate hierarchies, v2 first; reads only, creates nothing."""
    mounts = Path("/proc/self/mounts").read_text() if mounts is None else mounts
    own = Path("/proc/self/cgroup").read_text() if own is None else own
    paths: dict[str, str] = {}
    for line in own.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for ctrl in parts[1].split(",") if parts[1] else [""]:
                paths[ctrl] = parts[2].lstrip("/")
    v2: list[Hierarchy] = []
    v1: dict[str, Path] = {}
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        point, fstype, opts = Path(_unescape(fields[1])), fields[2], fields[3].split(",")
        if fstype == "cgroup2" and "" in paths:
            v2.append(Hierarchy(2, {"": point / paths[""] / GROUP}))
        elif fstype == "cgroup":
            for ctrl in CONTROLLERS:
                if ctrl in opts and ctrl in paths and ctrl not in v1:
                    v1[ctrl] = point / paths[ctrl] / GROUP
    found = v2
    if set(v1) == set(CONTROLLERS):
        found.append(Hierarchy(1, v1))
    return found


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _ready_v2(h: Hierarchy, instance: str) -> bool:
    """Make ``symphony-sandbox/<instance>`` with the three controllers delegated to its
    children."""
    base = h.bases[""]
    enable = " ".join(f"+{c}" for c in CONTROLLERS)
    try:
        offered = (base.parent / "cgroup.controllers").read_text().split()
        if not set(CONTROLLERS) <= set(offered):
            return False
        # Fails with EBUSY where the launcher's own group holds processes (v2 forbids
        # controllers there); then v1 is the way, if it exists.
        _write(base.parent / "cgroup.subtree_control", enable)
        for d in (base, base / instance):
            d.mkdir(mode=0o755, exist_ok=True)
            _write(d / "cgroup.subtree_control", enable)
    except OSError:
        return False
    return True


def _ready_v1(h: Hierarchy, instance: str) -> str | None:
    """Make ``symphony-sandbox/<instance>`` in each controller; a problem, or None."""
    try:
        for base in h.bases.values():
            (base / instance).mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        return f"cgroup v1: {exc}"
    if not (h.bases["cpu"] / "cpu.cfs_quota_us").exists():
        return "cgroup v1: the kernel has no CFS bandwidth control (cpu.cfs_quota_us)"
    return None


def _checked(instance: str) -> str:
    if not is_instance(instance):
        raise SandboxError(f"bad sandbox instance id {instance!r}", code=RESOURCES_FAILED)
    return instance


def prepare(instance: str, candidates: list[Hierarchy] | None = None) -> Hierarchy:
    """The hierarchy to use, with this instance's groups made; or SandboxError."""
    _checked(instance)
    problems = []
    for h in locate() if candidates is None else candidates:
        if h.version == 2:
            if _ready_v2(h, instance):
                return h
            problems.append(f"cgroup v2 at {h.bases[''].parent}: controllers not available")
        elif (problem := _ready_v1(h, instance)) is None:
            return h
        else:
            problems.append(problem)
    raise SandboxError(
        "cannot enforce resource limits: no usable cgroup hierarchy with memory, pids and cpu "
        f"({'; '.join(problems) or 'none mounted'})",
        code=RESOURCES_FAILED,
    )


def _group_dirs(h: Hierarchy, instance: str, name: str) -> tuple[Path, ...]:
    return tuple(dict.fromkeys(base / instance / name for base in h.bases.values()))


def create(h: Hierarchy, instance: str, name: str, limits: Limits) -> Cgroup:
    """A fresh group ``name`` of this instance with ``limits`` written; a leftover of that
    name is removed."""
    if not _NAME.fullmatch(name):
        raise SandboxError(f"bad cgroup name {name!r}", code=RESOURCES_FAILED)
    dirs = _group_dirs(h, _checked(instance), name)
    cg = Cgroup(name, h.version, dirs)
    destroy(cg)
    try:
        for d in dirs:
            d.mkdir(mode=0o755)
        mem = limits.memory_bytes
        if h.version == 2:
            d = dirs[0]
            _write(d / "memory.max", "max" if mem is None else str(mem))
            _write(d / "pids.max", str(limits.tasks))
            _write(d / "cpu.max", f"{limits.cpu_quota_us} {PERIOD_US}")
        else:
            _write(
                h.bases["memory"] / instance / name / "memory.limit_in_bytes",
                str(-1 if mem is None else mem),
            )
            _write(h.bases["pids"] / instance / name / "pids.max", str(limits.tasks))
            cpu = h.bases["cpu"] / instance / name
            _write(cpu / "cpu.cfs_period_us", str(PERIOD_US))
            _write(cpu / "cpu.cfs_quota_us", str(limits.cpu_quota_us))
    except OSError as exc:
        destroy(cg)
        raise SandboxError(
            f"cannot set resource limits in {exc.filename or dirs[0]}: {exc.strerror or exc}",
            code=RESOURCES_FAILED,
        ) from exc
    return cg


def _members(cg: Cgroup) -> set[int]:
    pids: set[int] = set()
    for f in cg.procs_files:
        with contextlib.suppress(FileNotFoundError):
            pids.update(int(p) for p in f.read_text().split())
    return pids


def destroy(cg: Cgroup, timeout: float = 10.0) -> list[str]:
    """Kill every process in the group and remove it; returns problems (empty when gone)."""
    deadline = time.monotonic() + timeout
    if cg.version == 2:
        with contextlib.suppress(OSError):
            _write(cg.dirs[0] / "cgroup.kill", "1")  # Linux 5.14+; else the loop below
    while pids := _members(cg):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            return [f"cgroup {cg.name}: {len(pids)} processes survived SIGKILL"]
        time.sleep(0.02)
    problems = []
    for d in cg.dirs:
        while True:
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as exc:  # EBUSY while the last exits are being accounted
                if time.monotonic() > deadline:
                    problems.append(f"cgroup {d}: {exc.strerror}")
                    break
                time.sleep(0.02)
    return problems


def reconcile(
    keep: set[str], instance: str, candidates: list[Hierarchy] | None = None
) -> list[str]:
    """Kill and remove this instance's ``symv*`` groups no live sandbox owns (what a crashed
    launcher left: every process in them, whatever it did to its environment); their names.
    Other instances' groups, beside this one's, are never looked at."""
    _checked(instance)
    removed: set[str] = set()
    for h in locate() if candidates is None else candidates:
        names: set[str] = set()
        for base in h.bases.values():
            with contextlib.suppress(OSError):
                names.update(e.name for e in os.scandir(base / instance) if _NAME.fullmatch(e.name))
        for name in sorted(names - keep):
            if not destroy(Cgroup(name, h.version, _group_dirs(h, instance, name))):
                removed.add(name)
    return sorted(removed)


def release(instance: str, candidates: list[Hierarchy] | None = None) -> None:
    """Remove this instance's (empty) group directory; a stopped launcher leaves none."""
    for h in locate() if candidates is None else candidates:
        for base in h.bases.values():
            with contextlib.suppress(OSError):
                (base / _checked(instance)).rmdir()
