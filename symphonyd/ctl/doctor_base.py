"""What every ``symphonyctl doctor`` check is built from: results, context, safe commands."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from symphonyd.core.config import ServiceConfig
from symphonyd.core.hostconfig import HostConfig

COMMAND_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class Check:
    status: str  # ok | warn | fail
    name: str
    detail: str
    fix: str | None = None


def ok(name: str, detail: str) -> Check:
    return Check("ok", name, detail)


def warn(name: str, detail: str, fix: str) -> Check:
    return Check("warn", name, detail, fix)


def fail(name: str, detail: str, fix: str) -> Check:
    return Check("fail", name, detail, fix)


@dataclass(slots=True)
class Context:
    host_config_path: str | None
    credentials_dir: Path
    host: HostConfig | None = None
    workflow: ServiceConfig | None = None


def systemd_is_pid1() -> bool:
    try:
        return Path("/proc/1/comm").read_text().strip() == "systemd"
    except OSError:
        return False


def run_command(argv: list[str]) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return None
    except OSError as exc:
        return subprocess.CompletedProcess(argv, 127, "", str(exc))


def first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:200]
