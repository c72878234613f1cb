"""Workspace hook runner (SPEC 5.3.4, 9.4, 15.4; ARCHITECTURE.md invariant 2).

A hook is a trusted shell script from WORKFLOW.md. It runs as
``bash --noprofile --norc -c <script>`` in the workspace, in its own session (so its whole
process group can be killed), with an environment built from nothing: PATH, HOME, LANG and
the ``ISSUE_*`` variables. Issue data reaches the script only through those variables; the
script text is never formatted with it. Nothing of the launcher's own environment (where a
tracker credential might live) is inherited. See docs/design/0602-hook-runner.md.

The sandbox helper can wrap the command (``command_wrapper``) and run it as an unprivileged
user (``run_as``); privileges are dropped in the child by ``subprocess`` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import subprocess
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from symphonyd.core.config import HOOK_NAMES, HooksConfig
from symphonyd.core.issue import Issue
from symphonyd.launcher.child_watch import kill_group, start_process_group
from symphonyd.runtime.logging import log_event

log = logging.getLogger("symphonyd.launcher.hooks")

DEFAULT_SHELL: tuple[str, ...] = ("bash", "--noprofile", "--norc", "-c")
ENV_BINARY = "/usr/bin/env"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OUTPUT_TAIL_BYTES = 4096
# One env string may not exceed MAX_ARG_STRLEN (128 KiB); stay well below it.
MAX_ENV_VALUE_CHARS = 16_384
# After the hook's main process ends, its output pipe is drained for at most this long; a
# process that escaped the process group (setsid) must not hold the launcher.
DRAIN_GRACE_S = 2.0

CommandWrapper = Callable[[list[str]], list[str]]


class RunsHooks(Protocol):
    """What a workspace needs of a hook runner: :class:`HookRunner`, or a sandboxed one."""

    async def run(
        self,
        name: str,
        script: str,
        cwd: Path,
        *,
        timeout_ms: int,
        issue: Issue | None = None,
        identifier: str | None = None,
    ) -> HookResult: ...


@dataclass(frozen=True)
class RunAs:
    """Unprivileged identity for hook processes (used when the launcher runs as root)."""

    uid: int
    gid: int


@dataclass(frozen=True)
class HookResult:
    name: str
    exit_code: int | None  # None when the hook could not start or was killed on timeout
    timed_out: bool
    output_tail: str  # last OUTPUT_TAIL_BYTES of combined stdout/stderr, decoded leniently
    output_bytes: int  # total bytes the hook wrote
    duration_ms: int
    error: str | None = None  # why it could not start

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def describe(self) -> str:
        if self.error is not None:
            return f"hook {self.name} could not start: {self.error}"
        if self.timed_out:
            return f"hook {self.name} timed out after {self.duration_ms} ms"
        return f"hook {self.name} exited with status {self.exit_code}"


def _env_value(value: object) -> str:
    """Issue text as an env value: no NUL, no unencodable surrogates, bounded length."""
    text = "" if value is None else str(value)
    text = text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")
    return text[:MAX_ENV_VALUE_CHARS]


def issue_env(issue: Issue | None, identifier: str | None = None) -> dict[str, str]:
    """The ISSUE_* contract; empty strings for what is unknown (e.g. age-based cleanup)."""
    if issue is None:
        return {
            "ISSUE_ID": "",
            "ISSUE_IDENTIFIER": _env_value(identifier),
            "ISSUE_TITLE": "",
            "ISSUE_STATE": "",
            "ISSUE_URL": "",
            "ISSUE_LABELS": "",
        }
    return {
        "ISSUE_ID": _env_value(issue.id),
        "ISSUE_IDENTIFIER": _env_value(issue.identifier),
        "ISSUE_TITLE": _env_value(issue.title),
        "ISSUE_STATE": _env_value(issue.state),
        "ISSUE_URL": _env_value(issue.url),
        "ISSUE_LABELS": _env_value(",".join(issue.labels)),
    }


def _home_of(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_dir
    except KeyError:
        return "/"


class _Tail:
    """Keeps only the last ``limit`` bytes written, and counts all of them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buf = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.buf += chunk
        if len(self.buf) > self.limit:
            del self.buf[: len(self.buf) - self.limit]

    def text(self) -> str:
        return self.buf.decode("utf-8", "replace")


class HookRunner:
    def __init__(
        self,
        *,
        shell: Sequence[str] = DEFAULT_SHELL,
        path: str = DEFAULT_PATH,
        home: str | None = None,
        lang: str = "C.UTF-8",
        command_wrapper: CommandWrapper | None = None,
        run_as: RunAs | None = None,
        output_tail_bytes: int = OUTPUT_TAIL_BYTES,
        drop_env: Collection[str] = (),
    ) -> None:
        self.shell = tuple(shell)
        self.path = path
        self.home = home
        self.lang = lang
        self.command_wrapper = command_wrapper
        self.run_as = run_as
        self.output_tail_bytes = output_tail_bytes
        self.drop_env = frozenset(drop_env)  # the tracker's declared secret names

    def environment(self, issue: Issue | None, identifier: str | None = None) -> dict[str, str]:
        uid = self.run_as.uid if self.run_as is not None else os.getuid()
        env = {
            "PATH": self.path,
            "HOME": self.home if self.home is not None else _home_of(uid),
            "LANG": self.lang,
        }
        env.update(issue_env(issue, identifier))
        return {k: v for k, v in env.items() if k not in self.drop_env}

    def argv(self, script: str, env: dict[str, str]) -> list[str]:
        """The command line; with a wrapper, the inner command carries its own env.

        Wrappers such as ``systemd-run`` start the command with the service manager's
        environment, not ours, so the wrapped command re-establishes the contract itself
        with ``env -i`` (values are separate argv items, never shell text).
        """
        argv = [*self.shell, script]
        if self.command_wrapper is None:
            return argv
        pinned = [ENV_BINARY, "-i", "--", *(f"{k}={v}" for k, v in env.items())]
        return list(self.command_wrapper([*pinned, *argv]))

    def _identity_kwargs(self) -> dict[str, object]:
        if self.run_as is None:
            return {}
        if os.geteuid() != 0 and self.run_as.uid == os.geteuid():
            return {}
        # Only root can switch; for anyone else Popen fails and the hook reports that.
        return {"user": self.run_as.uid, "group": self.run_as.gid, "extra_groups": []}

    async def run(
        self,
        name: str,
        script: str,
        cwd: Path,
        *,
        timeout_ms: int,
        issue: Issue | None = None,
        identifier: str | None = None,
    ) -> HookResult:
        """Run one hook to completion or timeout; never raises for hook failures."""
        ident = issue.identifier if issue is not None else identifier
        log_event(log, "hook", hook=name, outcome="starting", issue_identifier=ident, cwd=cwd)
        started = time.monotonic()
        tail = _Tail(self.output_tail_bytes)
        # Our own pipe rather than asyncio's: asyncio's wait() also waits for the pipe to
        # close, which a backgrounded grandchild could hold open forever.
        env = self.environment(issue, identifier)
        read_fd, write_fd = os.pipe()
        try:
            proc = await start_process_group(
                self.argv(script, env),
                cwd=str(cwd),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                start_new_session=True,
                close_fds=True,
                **self._identity_kwargs(),
            )
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            # SubprocessError: the child failed between fork and exec (e.g. dropping to a uid).
            os.close(read_fd)
            result = HookResult(name, None, False, "", 0, _elapsed_ms(started), str(exc))
            _log_result(result, ident)
            return result
        except BaseException:  # stopped while starting: nothing of it is left running
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)

        pipe = os.fdopen(read_fd, "rb", buffering=0)
        output: _PipeReader | None = None
        timed_out = False
        try:
            output = await _PipeReader.open(pipe, tail)
            await asyncio.wait_for(proc.wait(), timeout=max(timeout_ms, 0) / 1000)
        except TimeoutError:
            timed_out = True
        finally:
            # Kill whatever is left in the hook's process group: on timeout the hook itself,
            # on success or failure any background children it left behind.
            _kill_group(proc.pid)
            await proc.wait()
            if output is not None:
                await output.drain(DRAIN_GRACE_S)
            else:
                pipe.close()
        result = HookResult(
            name=name,
            exit_code=None if timed_out else proc.returncode,
            timed_out=timed_out,
            output_tail=tail.text(),
            output_bytes=tail.total,
            duration_ms=_elapsed_ms(started),
        )
        _log_result(result, ident)
        return result


def _log_result(result: HookResult, identifier: str | None) -> None:
    """One line per finished hook; a failure carries why and the tail of its output."""
    if result.ok:
        log_event(
            log,
            "hook",
            hook=result.name,
            outcome="ok",
            issue_identifier=identifier,
            duration_ms=result.duration_ms,
        )
        return
    log_event(
        log,
        "hook",
        level=logging.WARNING,
        hook=result.name,
        outcome="timed_out" if result.timed_out else "failed",
        issue_identifier=identifier,
        exit_code=result.exit_code,
        duration_ms=result.duration_ms,
        error=result.describe(),
        output_bytes=result.output_bytes,
        output_tail=result.output_tail or None,
    )


class _PipeReader(asyncio.Protocol):
    """Reads the hook's output pipe into a :class:`_Tail` until EOF or until closed."""

    def __init__(self, tail: _Tail) -> None:
        self.tail = tail
        self.eof = asyncio.get_running_loop().create_future()
        self.transport: asyncio.ReadTransport | None = None

    @classmethod
    async def open(cls, pipe: BinaryIO, tail: _Tail) -> _PipeReader:
        reader = cls(tail)
        await asyncio.get_running_loop().connect_read_pipe(lambda: reader, pipe)
        return reader

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.ReadTransport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.tail.add(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.eof.done():
            self.eof.set_result(None)

    async def drain(self, grace_s: float) -> None:
        """Wait for EOF for at most ``grace_s``, then stop reading regardless."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.eof), timeout=grace_s)
        if self.transport is not None and not self.eof.done():
            self.transport.close()
            await self.eof


def _kill_group(pgid: int) -> None:
    kill_group(pgid)


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def hook_script(hooks: HooksConfig | None, name: str) -> str | None:
    """The configured script for a hook name, or None when unset or blank."""
    if hooks is None or name not in HOOK_NAMES:
        return None
    script: str | None = getattr(hooks, name)
    if script is None or not script.strip():
        return None
    return script
