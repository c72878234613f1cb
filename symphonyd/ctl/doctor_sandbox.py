"""``symphonyctl doctor`` checks of the sandbox's host tools and kernel features."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Iterator

from symphonyd.ctl.doctor_base import (
    Check,
    Context,
    fail,
    first_line,
    ok,
    run_command,
    systemd_is_pid1,
    warn,
)

LIMITS_PROBE = [sys.executable, "-m", "symphonyd.launcher.sandbox.unit_limits"]


def check_nftables(ctx: Context) -> Iterator[Check]:
    if importlib.util.find_spec("nftables") is None:
        yield fail("nftables", "python3-nftables is not importable", "apt install python3-nftables")
    if shutil.which("nft") is None:
        yield fail("nftables", "nft not found", "apt install nftables")
        return
    if os.geteuid() != 0:
        yield warn("nftables", "not root; cannot list tables", "run symphonyctl doctor as root")
        return
    res = run_command(["nft", "list", "tables"])
    if res is None or res.returncode != 0:
        why = "timed out" if res is None else first_line(res.stderr)
        yield fail("nftables", f"nft list tables failed: {why}", "modprobe nf_tables; dmesg")
    else:
        yield ok("nftables", "nft works and python3-nftables is importable")


def check_bwrap(ctx: Context) -> Iterator[Check]:
    # Under systemd agents run as transient units; bubblewrap is the fallback sandbox.
    needed = not systemd_is_pid1()
    res = run_command(["bwrap", "--version"]) if shutil.which("bwrap") else None
    if res is not None and res.returncode == 0:
        yield ok("bwrap", first_line(res.stdout))
    elif needed:
        yield fail("bwrap", "bubblewrap is missing or broken", "apt install bubblewrap")
    else:
        yield warn(
            "bwrap",
            "bubblewrap is missing (only used when systemd is not PID 1)",
            "apt install bubblewrap",
        )


def check_resource_limits(ctx: Context) -> Iterator[Check]:
    # Agents run as transient units under systemd; limits the units get must really hold.
    if not systemd_is_pid1() or os.geteuid() != 0:
        return
    res = run_command(LIMITS_PROBE)
    if res is None or not res.stdout.strip():
        why = "timed out" if res is None else first_line(res.stderr)
        yield fail("resource-limits", f"probe unit did not run: {why}", "systemd-run --version")
        return
    try:
        missing = json.loads(res.stdout.strip().splitlines()[-1]).get("missing", [])
    except (ValueError, AttributeError):
        yield fail("resource-limits", f"probe printed {first_line(res.stdout)!r}", "report a bug")
        return
    if not missing:
        yield ok("resource-limits", "systemd applies MemoryMax, TasksMax and CPUQuota to units")
        return
    required = ctx.host is None or ctx.host.sandbox.require_resource_limits
    detail = f"systemd does not apply {', '.join(missing)} limits to units"
    fix = "use cgroup v2 (Debian 12 default) or writable v1 controllers; docs/sandbox.md"
    if required:
        yield fail("resource-limits", f"{detail}: agents will not start", fix)
    else:
        yield warn("resource-limits", f"{detail}; agents run without them (allowed)", fix)
