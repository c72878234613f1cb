"""Launching an agent CLI: environment from nothing, cwd checked, stdio pumped with bounds.

The agent's environment is built from an allowlist, never copied from the launcher's own
environment (which may hold tracker or host credentials, ARCHITECTURE.md invariant 8).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shlex
import signal
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from symphonyd.launcher.agents.session import AgentError
from symphonyd.launcher.agents.stream import (
    LineSplitter,
    StderrRing,
    StreamStats,
    decode_object,
    drain_stderr,
    read_lines,
)
from symphonyd.launcher.child_watch import start_process_group
from symphonyd.runtime.logging import log_event

log = logging.getLogger(__name__)

# Variables taken from the launcher's environment when present; everything else is dropped.
PASSTHROUGH = ("PATH", "LANG", "LC_ALL", "TERM", "TZ")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# Names an operator may never forward, whatever the config says: symphonyd's own settings and
# the conventional token variables of every tracker it has an adapter for (and Asana's), so a
# tracker credential in the launcher's environment cannot be forwarded under its usual name.
FORBIDDEN_PREFIXES = (
    "SYMPHONY_",
    "LINEAR_",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "GITLAB_",
    "JIRA_",
    "ASANA_",
)
FORBIDDEN_NAMES_TEXT = "SYMPHONY_*, LINEAR_*, GITHUB_TOKEN, GH_TOKEN, GITLAB_*, JIRA_*, ASANA_*"


def build_env(
    *,
    home: Path,
    tmpdir: Path | None = None,
    extra: Mapping[str, str] | None = None,
    parent: Mapping[str, str] | None = None,
    drop: Collection[str] = (),
) -> dict[str, str]:
    """A fresh environment: PATH/LANG/... from ``parent`` plus HOME, TMPDIR and ``extra``.

    ``extra`` carries what the runtime needs (CODEX_HOME, a model endpoint, an agent
    credential the operator configured for the agent); tracker secrets have no way in.
    Names in ``drop`` (the tracker's declared secret names) are removed last, whatever
    added them.
    """
    source = os.environ if parent is None else parent
    env = {k: source[k] for k in PASSTHROUGH if k in source}
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("LANG", "C.UTF-8")
    env["HOME"] = str(home)
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    for key, value in (extra or {}).items():
        if key.startswith(FORBIDDEN_PREFIXES):
            raise AgentError(f"refusing to pass {key} to an agent", code="invalid_config")
        env[key] = value
    for key in drop:
        env.pop(key, None)
    return env


def check_workspace_cwd(workspace: Path, root: Path | None) -> Path:
    """SPEC 9.5: the agent runs in its canonical workspace, inside the root, never the root."""
    try:
        real = workspace.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise AgentError(
            f"workspace {workspace} does not exist: {exc.__class__.__name__}",
            code="invalid_workspace_cwd",
        ) from None
    if not workspace.is_absolute() or not real.is_dir():
        raise AgentError(
            f"workspace {workspace} is not an absolute directory", code="invalid_workspace_cwd"
        )
    if root is not None:
        real_root = root.resolve()
        if real == real_root or real_root not in real.parents:
            raise AgentError(
                f"workspace {real} is not inside the workspace root {real_root}",
                code="invalid_workspace_cwd",
            )
    return real


# Starts ``argv`` with piped stdio in its own session: plainly by default, inside the run's
# kernel sandbox when the launcher supplies one (symphonyd.launcher.sandbox.agent_sandbox).
Spawner = Callable[[list[str], Path, dict[str, str]], Awaitable[asyncio.subprocess.Process]]
PIPE_LIMIT = 256 * 1024  # pipe buffering, not a line cap: lines are split by us


async def local_spawn(
    argv: list[str], cwd: Path, env: dict[str, str]
) -> asyncio.subprocess.Process:
    return await start_process_group(
        argv,
        cwd=str(cwd),
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group, so stop() reaches grandchildren
        limit=PIPE_LIMIT,
    )


@dataclass
class AgentProcess:
    """A ``bash -lc <command>`` child with a JSON-lines stdout and a ring-buffered stderr."""

    command: str
    cwd: Path
    env: dict[str, str]
    max_line: int = 10 * 1024 * 1024
    spawner: Spawner = local_spawn
    stats: StreamStats = field(default_factory=StreamStats)
    stderr: StderrRing = field(default_factory=StderrRing)
    last_activity: float = field(default_factory=time.monotonic)
    _proc: asyncio.subprocess.Process | None = None
    # Small on purpose: at most four capped lines wait here, so memory stays bounded.
    _lines: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(4))
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def spawn(self) -> None:
        if os.path.realpath(self.cwd) != str(self.cwd):
            raise AgentError(f"cwd {self.cwd} is not canonical", code="invalid_workspace_cwd")
        try:
            self._proc = await self.spawner(["bash", "-lc", self.command], self.cwd, self.env)
        except OSError as exc:
            raise AgentError(f"cannot start bash: {exc.strerror}", code="port_exit") from None
        # Debug only: bench/run_stages.py times spawn and exit from these two lines.
        log_event(log, "agent_process", level=logging.DEBUG, outcome="spawned", pid=self._proc.pid)
        assert self._proc.stdout is not None and self._proc.stderr is not None
        splitter = LineSplitter(self.stats, self.max_line)
        self._tasks = [
            asyncio.create_task(read_lines(self._proc.stdout, splitter, self._lines)),
            asyncio.create_task(drain_stderr(self._proc.stderr, self.stderr)),
        ]

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    async def next_object(self) -> dict[str, Any] | None:
        """The next JSON object from stdout, skipping garbage; None at end of stream."""
        while True:
            line = await self._lines.get()
            if line is None:
                self._lines.put_nowait(None)  # later readers see EOF too
                return None
            self.last_activity = time.monotonic()
            obj = decode_object(line, self.stats)
            if obj is not None:
                return obj

    async def send(self, message: Mapping[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        if self._proc is None or self._proc.stdin is None:
            raise AgentError("agent process is not running", code="port_exit")
        async with self._write_lock:
            try:
                self._proc.stdin.write(data)
                await self._proc.stdin.drain()
            except (OSError, RuntimeError) as exc:
                raise AgentError(
                    f"agent stdin closed: {exc.__class__.__name__}", code="port_exit"
                ) from None

    async def wait_exit(self, within: float) -> int | None:
        if self._proc is None:
            return None
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(self._proc.wait(), within)
        return None

    async def stop(self, grace: float = 3.0) -> int | None:
        """Close stdin, then SIGTERM, then SIGKILL the whole process group."""
        proc = self._proc
        if proc is None:
            return None
        if proc.returncode is None and proc.stdin is not None:
            with contextlib.suppress(OSError, RuntimeError):
                proc.stdin.close()
            await self.wait_exit(grace / 3)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if proc.returncode is not None:
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            await self.wait_exit(grace)
        # Leftovers in the group (the CLI's own children) must not outlive the run.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        log_event(log, "agent_process", level=logging.DEBUG, outcome="exited", pid=proc.pid,
                  returncode=proc.returncode)  # fmt: skip
        return proc.returncode


def shell_join(argv: Iterable[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
